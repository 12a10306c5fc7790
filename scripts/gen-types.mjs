#!/usr/bin/env node
/**
 * Generates TypeScript types from the JSON Schemas: every `schema/[DIR/]NAME.schema.json`
 * becomes `src/generated/[DIR/]NAME.ts` (e.g. `schema/manifests/disk.schema.json` ->
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
import * as prettier from 'prettier';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const schemaDir = join(repoRoot, 'schema');
export const generatedDir = join(repoRoot, 'src', 'generated');

/** Generates the TypeScript source for one schema file (absolute path). */
export async function generateTypes(schemaPath) {
  const schema = JSON.parse(await readFile(schemaPath, 'utf8'));
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

/** Map of output path -> generated content, for every schema. */
export async function generateAll() {
  const out = new Map();
  for (const file of await schemaFiles()) out.set(outputPathFor(file), await generateTypes(file));
  return out;
}

async function main(argv) {
  const check = argv.includes('--check');
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
