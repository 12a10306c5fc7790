#!/usr/bin/env node
// mvisor: runs one VM. `mvisor -c vm.yaml [flags]` is `mvctl vm run -c vm.yaml [flags]`.
import process from 'node:process';
import { execute, settings } from '@oclif/core';

settings.enableAutoTranspile = false;

const argv = process.argv.slice(2);
const args =
  argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v') ? ['--version'] : ['vm', 'run', ...argv];

await execute({ dir: import.meta.url, args });
