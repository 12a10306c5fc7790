/**
 * Schema validators compiled when mvisor is built, not each time a process
 * starts. ajv turns a JSON Schema into JavaScript at run time; for the VMM
 * config and manifest schemas that was 100-170 ms of every mvisor and mvctl
 * start natively (measured with --cpu-prof; about 30 times that in the
 * nested test host). ajv's own standalone code generation writes the same
 * validators as a CommonJS module at build time (validator-codegen.ts,
 * scripts/validators.mjs, into dist/validators/); a process uses that module
 * only when its fingerprint (the schemas, ajv's options and version) is the
 * one of the schemas it was built with, and otherwise compiles at run time as
 * before (TypeScript sources under vitest, a stale build). Nothing here
 * imports ajv itself.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Ajv, Options, ValidateFunction } from 'ajv';
import type { SchemaNode } from './yaml-schema-errors.js';

/** A family of schemas validated together (one ajv instance, one generated module). */
export interface ValidatorSet {
  /** File name (without .cjs) in the validators folder. */
  name: string;
  schemas: readonly SchemaNode[];
  /** Annotation keywords the schemas use (ajv's addVocabulary). */
  vocabulary: readonly string[];
  options: Options;
}

/** The key under which a generated module records its fingerprint. */
export const FINGERPRINT_KEY = '#fingerprint';

const require = createRequire(import.meta.url);

/** Where `make build` writes the generated modules: dist/validators/ beside dist/src/. */
export const VALIDATORS_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../validators');

function ajvVersion(): string {
  try {
    return (require('ajv/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** What the generated code depends on: the schemas, the vocabulary, ajv's options and version. */
export function fingerprint(set: ValidatorSet): string {
  const text = JSON.stringify([set.schemas, set.vocabulary, set.options, ajvVersion()]);
  // Not a cryptographic hash: it tells a generated module of this build from
  // another's, and loading node:crypto for it cost a VM process's start-up 6 ms.
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return `${(h2 >>> 0).toString(16).padStart(8, '0')}${(h1 >>> 0).toString(16).padStart(8, '0')}-${text.length}`;
}

/**
 * The keys a set's module has validators for: each schema's root (its $id),
 * each definition, and each branch of every oneOf/anyOf (the explainer and
 * the size checks try a value against each branch), as `<$id>#<pointer>`.
 */
export function validatorKeys(set: ValidatorSet, escape: (seg: string) => string): string[] {
  const keys: string[] = [];
  const MAPS = new Set(['properties', 'patternProperties', 'definitions', '$defs', 'dependentSchemas']);
  const DATA = new Set(['enum', 'const', 'examples', 'default']);
  // `node` is a schema, or (`isMap`) an object whose values are schemas.
  const walk = (node: unknown, pointer: string, id: string, isMap: boolean): void => {
    if (node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      node.forEach((n, i) => walk(n, `${pointer}/${i}`, id, false));
      return;
    }
    const rec = node as Record<string, unknown>;
    if (!isMap)
      for (const union of ['oneOf', 'anyOf'] as const) {
        const branches = rec[union];
        if (Array.isArray(branches)) branches.forEach((_, i) => keys.push(`${id}#${pointer}/${union}/${i}`));
      }
    for (const [k, v] of Object.entries(rec)) {
      // Values of data keywords and annotations are not schemas.
      if (!isMap && (DATA.has(k) || k.startsWith('x-'))) continue;
      walk(v, `${pointer}/${escape(k)}`, id, !isMap && MAPS.has(k));
    }
  };
  for (const s of set.schemas) {
    const id = s.$id ?? '';
    keys.push(id);
    for (const name of Object.keys(s.definitions ?? {})) keys.push(`${id}#/definitions/${escape(name)}`);
    walk(s, '', id, false);
  }
  return [...new Set(keys)];
}

const loaded = new Map<string, Record<string, ValidateFunction> | null>();

/**
 * The validators of a generated module whose fingerprint matches `set`, or
 * undefined (no module, another build's, unreadable) to compile at run time.
 */
export function loadValidatorModule(
  file: string,
  set: ValidatorSet,
): Record<string, ValidateFunction> | undefined {
  let mod = loaded.get(file);
  if (mod === undefined) {
    mod = null;
    try {
      const m = require(file) as Record<string, unknown>;
      if (m[FINGERPRINT_KEY] === fingerprint(set)) mod = m as Record<string, ValidateFunction>;
    } catch {
      // no generated module: compile at run time
    }
    loaded.set(file, mod);
  }
  return mod ?? undefined;
}

/**
 * ajv's constructor, loaded on first use: a process whose validators were
 * all built ahead does not load ajv's compiler at all.
 */
export function loadAjv(): typeof Ajv {
  return (require('ajv') as typeof import('ajv')).Ajv;
}

/** The build-time validator for `key` (an ajv schema key, `<$id>` or `<$id>#<pointer>`), if there is one. */
export function precompiledValidator(set: ValidatorSet, key: string): ValidateFunction | undefined {
  const v = loadValidatorModule(join(VALIDATORS_DIR, `${set.name}.cjs`), set)?.[key];
  return typeof v === 'function' ? v : undefined;
}
