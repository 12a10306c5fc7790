#!/usr/bin/env node
// mvctl: the oclif CLI (commands compiled to dist/src/commands).
import './node-check.js';
import process from 'node:process';
import { Errors, flush, handle, run, settings } from '@oclif/core';

// Always run the compiled commands, even under NODE_ENV=test|development.
settings.enableAutoTranspile = false;

// oclif's execute(), except for the exit code of a usage error (an unknown
// command or flag): 1, not 2, because 2 means "changes present" under
// --detailed-exitcode (README, "Exit codes").
try {
  await run(process.argv.slice(2), import.meta.url);
  await flush();
} catch (error) {
  if (error?.oclif?.exit === 2 && !(error instanceof Errors.ExitError)) error.oclif.exit = 1;
  await handle(error);
}
