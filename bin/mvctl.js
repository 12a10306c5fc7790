#!/usr/bin/env node
// mvctl: the oclif CLI (commands compiled to dist/src/commands).
import { execute, settings } from '@oclif/core';

// Always run the compiled commands, even under NODE_ENV=test|development.
settings.enableAutoTranspile = false;

await execute({ dir: import.meta.url });
