#!/usr/bin/env node
// Writes dist/validators/*.cjs: the schema validators, compiled by ajv's
// standalone code generation once at build time instead of at each process
// start (src/common/precompiled-validators.ts). Run by `make build` after
// tsc; a process whose schemas differ from these compiles at run time.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';
import { VALIDATORS_DIR } from '../dist/src/common/precompiled-validators.js';
import { validatorModuleSource } from '../dist/src/common/validator-codegen.js';
import { MANIFEST_VALIDATORS } from '../dist/src/engine/manifest/schemas.js';
import { VMM_VALIDATORS } from '../dist/src/platform/vmm-schema.js';

mkdirSync(VALIDATORS_DIR, { recursive: true });
for (const set of [VMM_VALIDATORS, MANIFEST_VALIDATORS]) {
  const source = validatorModuleSource(set);
  writeFileSync(join(VALIDATORS_DIR, `${set.name}.cjs`), source);
  process.stdout.write(`${set.name}.cjs: ${(source.length / 1024).toFixed(0)} KiB\n`);
}
