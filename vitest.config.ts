import { defineConfig } from 'vitest/config';
import { scaled } from './test/helpers/timeouts.js';

export default defineConfig({
  // Inside the nested test host the repository is read-only (test/runner/).
  ...(process.env.MVISOR_VITE_CACHE ? { cacheDir: process.env.MVISOR_VITE_CACHE } : {}),
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: scaled(30_000),
    hookTimeout: scaled(60_000),
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
