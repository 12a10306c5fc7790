import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests boot real guests under KVM; the machine has two
    // cores, so guests run one file at a time.
    fileParallelism: false,
    // Libraries such as ink change what they render when CI is set (final
    // frame only); tests assert the interactive behaviour users see.
    env: { CI: 'false', CONTINUOUS_INTEGRATION: 'false' },
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results.json' },
  },
});
