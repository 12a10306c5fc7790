#!/usr/bin/env node
// mvisor: runs one VM. `mvisor -c vm.yaml [flags]` is `mvctl vm run -c vm.yaml [flags]`.
// Its own flags are parsed without oclif (start-up time: src/cli/vm-run.ts);
// --help, --version and anything else go through oclif as `mvctl vm run`.
import process from 'node:process';

const argv = process.argv.slice(2);
const fast = await import('../dist/src/cli/vm-run.js');
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
