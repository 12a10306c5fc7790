#!/usr/bin/env node
/**
 * Writes the device part of schema/vmm-config.schema.json from the device
 * descriptors (scripts/device-schemas.mjs), then generates TypeScript types
 * from the JSON Schemas: every `schema/[DIR/]NAME.schema.json` becomes `src/generated/[DIR/]NAME.ts` (e.g. `schema/manifests/disk.schema.json` ->
 * `src/generated/manifests/disk.ts`). The schemas are the single source of truth;
 * the generated files are checked in (a unit test fails when they are stale).
 *
 *   node scripts/gen-types.mjs          # write the files
 *   node scripts/gen-types.mjs --check  # exit 1 if a checked-in file is out of date
 */
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import process from 'node:process';
import { compile } from 'json-schema-to-typescript';
import { deviceSchemas, withDeviceSchemas } from './device-schemas.mjs';
import * as prettier from 'prettier';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const schemaDir = join(repoRoot, 'schema');
export const generatedDir = join(repoRoot, 'src', 'generated');

/** Generates the TypeScript source for one schema file (absolute path), or for `schema` as that file. */
export async function generateTypes(schemaPath, schema = undefined) {
  schema ??= JSON.parse(await readFile(schemaPath, 'utf8'));
  const source = relative(repoRoot, schemaPath);
  const banner =
    `/* eslint-disable */\n` +
    `/**\n` +
    ` * GENERATED FILE - DO NOT EDIT.\n` +
    ` * Generated from ${source} by scripts/gen-types.mjs (npm run gen:types).\n` +
    ` * Edit the schema and regenerate instead.\n` +
    ` */`;
  const ts = await compile(schema, schema.title ?? 'Root', {
    bannerComment: banner,
    cwd: dirname(schemaPath),
    format: false,
    additionalProperties: false,
    unreachableDefinitions: false,
    strictIndexSignatures: true,
  });
  const outPath = outputPathFor(schemaPath);
  const options = (await prettier.resolveConfig(outPath)) ?? {};
  return prettier.format(ts, { ...options, filepath: outPath });
}

/** `schema/foo-bar.schema.json` -> `src/generated/foo-bar.ts`, `schema/dir/x.schema.json` -> `src/generated/dir/x.ts`. */
export function outputPathFor(schemaPath) {
  const rel = relative(schemaDir, resolve(schemaPath));
  const inside = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
  const base = (inside ? rel : basename(schemaPath)).replace(/\.schema\.json$/, '');
  return join(generatedDir, `${base}.ts`);
}

/** All schema files (`schema/*.schema.json` and `schema/DIR/*.schema.json`), sorted. */
export async function schemaFiles() {
  const out = [];
  for (const entry of (await readdir(schemaDir, { withFileTypes: true })).sort(byName)) {
    if (entry.isFile() && entry.name.endsWith('.schema.json')) out.push(join(schemaDir, entry.name));
    else if (entry.isDirectory()) {
      const names = (await readdir(join(schemaDir, entry.name))).filter((n) => n.endsWith('.schema.json'));
      out.push(...names.sort().map((n) => join(schemaDir, entry.name, n)));
    }
  }
  return out;
}

function byName(a, b) {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** schema/vmm-config.schema.json: its device definitions come from the device descriptors. */
export const vmmConfigSchemaPath = join(schemaDir, 'vmm-config.schema.json');

/** The VMM config schema with the device descriptors' definitions, and its text as written. */
export async function vmmConfigSchema() {
  const current = JSON.parse(await readFile(vmmConfigSchemaPath, 'utf8'));
  const schema = withDeviceSchemas(current, await deviceSchemas(repoRoot));
  const options = (await prettier.resolveConfig(vmmConfigSchemaPath)) ?? {};
  const text = await prettier.format(JSON.stringify(schema, null, 2), {
    ...options,
    filepath: vmmConfigSchemaPath,
  });
  return { schema, text };
}

/**
 * Map of output path -> generated content: schema/vmm-config.schema.json
 * (device part from the descriptors), then the types of every schema.
 */
export async function generateAll() {
  const out = new Map();
  const vmm = await vmmConfigSchema();
  out.set(vmmConfigSchemaPath, vmm.text);
  for (const file of await schemaFiles()) {
    const own = file === vmmConfigSchemaPath ? vmm.schema : undefined;
    out.set(outputPathFor(file), await generateTypes(file, own));
  }
  return out;
}

async function main(argv) {
  const check = argv.includes('--check');
  // The manifest schemas' types read the VMM schema's definitions from the file: it goes first.
  if (!check) await writeFile(vmmConfigSchemaPath, (await vmmConfigSchema()).text);
  const files = await generateAll();
  let stale = 0;
  for (const [path, content] of files) {
    const rel = relative(repoRoot, path);
    if (check) {
      const current = await readFile(path, 'utf8').catch(() => undefined);
      if (current !== content) {
        stale++;
        process.stderr.write(`${rel}: out of date (run npm run gen:types)\n`);
      }
    } else {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, content);
      process.stdout.write(`wrote ${rel}\n`);
    }
  }
  return stale === 0 ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
