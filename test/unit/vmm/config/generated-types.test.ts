import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateAll, repoRoot, schemaFiles } from '../../../../scripts/gen-types.mjs';

describe('generated types', () => {
  it('are up to date (run `npm run gen:types` after editing schema/*.schema.json)', async () => {
    expect((await schemaFiles()).length).toBeGreaterThan(0);
    const generated = await generateAll();
    for (const [path, content] of generated) {
      const current = await readFile(path, 'utf8').catch(() => '<missing>');
      expect(current, `${relative(repoRoot, path)} is stale: run npm run gen:types`).toBe(content);
    }
  });
});
