#!/usr/bin/env node
// mvisor: runs one VM. `mvisor -c vm.yaml [flags]` is `mvctl vm run -c vm.yaml [flags]`.
// Its own flags are parsed without oclif (start-up time: src/cli/vm-run.ts),
// from the one-file bundle of that path with its V8 code cache when it is up
// to date (scripts/bundle.mjs, src/cli/code-cache.ts; MVISOR_UNBUNDLED=1
// loads the modules instead);
// --help, --version and anything else go through oclif as `mvctl vm run`.
import { statSync } from 'node:fs';
import './node-check.js';
import process from 'node:process';
import { URL } from 'node:url';

/** The start-up path: the bundle when it is newer than the modules, else the modules. */
async function startupPath() {
  const modules = new URL('../dist/src/cli/vm-run.js', import.meta.url);
  if (process.env.MVISOR_UNBUNDLED !== '1') {
    try {
      const bundle = new URL('../dist/src/cli/vm-run.bundle.cjs', import.meta.url);
      if (statSync(bundle).mtimeMs >= statSync(modules).mtimeMs) {
        const { loadStartupBundle } = await import('../dist/src/cli/code-cache.js');
        return loadStartupBundle();
      }
    } catch {
      // no bundle: the modules
    }
  }
  return import(modules.href);
}

const argv = process.argv.slice(2);
const fast = await startupPath();
const flags = fast.parseMvisorArgs(argv);
if (flags) {
  await fast.exitProcess(await fast.runVmFromFlags(flags));
} else {
  const { execute, settings } = await import('@oclif/core');
  settings.enableAutoTranspile = false;
  const args =
    argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')
      ? ['--version']
      : ['vm', 'run', ...argv];
  await execute({ dir: import.meta.url, args });
}
