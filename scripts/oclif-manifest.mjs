#!/usr/bin/env node
// Writes oclif.manifest.json (what `oclif manifest` writes) from the compiled
// commands, so that mvctl imports only the command it runs: without it,
// oclif imports every command file, the whole engine and VMM, at each start.
// Run by `make build` after tsc; the file is not committed.
import { rmSync, writeFileSync } from 'node:fs';
import process from 'node:process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Config, settings } from '@oclif/core';

settings.enableAutoTranspile = false;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// oclif would read the old manifest back instead of the commands: start from none.
rmSync(join(root, 'oclif.manifest.json'), { force: true });
const config = await Config.load(root);
const plugin = config.getPluginsList().find((p) => p.root === root);
if (!plugin) throw new Error(`no oclif plugin at ${root}`);
writeFileSync(join(root, 'oclif.manifest.json'), JSON.stringify(plugin.manifest, null, 2) + '\n');
process.stdout.write(`oclif.manifest.json: ${Object.keys(plugin.manifest.commands).length} commands\n`);
