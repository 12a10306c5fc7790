#!/usr/bin/env node
// Writes dist/src/cli/vm-run.bundle.cjs: mvisor's start-up path (src/cli/vm-run.ts
// and everything it imports, yaml and ajv's runtime included) as one CommonJS
// file, made by esbuild, and the V8 code cache of it and of the config
// validators it requires (src/cli/code-cache.ts). A VM process starts about a
// quarter faster from one file than from some 200 modules, and compiles
// little with the cache (bench/startup.ts). bin/mvisor.js uses the bundle only
// when it is newer than the tsc output beside it. The native addon stays a
// separate file; the bundle sits beside vm-run.js so that paths relative to
// the module resolve the same. Run by `make build` after tsc and validators.
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist/src/cli');
const result = await build({
  entryPoints: [join(cli, 'vm-run.js')],
  outfile: join(cli, 'vm-run.bundle.cjs'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['*.node'],
  // The modules locate files (the addon, the validators) from their own URL.
  define: { 'import.meta.url': '__mvisorModuleUrl' },
  banner: { js: "const __mvisorModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
  metafile: true,
});
// A dynamic import() would fail where the bundle runs from its code cache (src/cli/code-cache.ts).
const bundled = readFileSync(join(cli, 'vm-run.bundle.cjs'), 'utf8');
const dynamic = /[^\w$.]import\(/.exec(bundled);
if (dynamic) {
  process.stderr.write(
    `vm-run.bundle.cjs: a dynamic import() at offset ${dynamic.index}; bundle it statically\n`,
  );
  process.exit(1);
}
// The ES module bundle of earlier builds.
rmSync(join(cli, 'vm-run.bundle.js'), { force: true });
const { writeStartupCodeCache } = await import(pathToFileURL(join(cli, 'code-cache.js')).href);
const cached = writeStartupCodeCache();
const inputs = Object.keys(result.metafile.inputs).length;
process.stdout.write(`vm-run.bundle.cjs: ${inputs} modules; code cache for ${cached.length} files\n`);
