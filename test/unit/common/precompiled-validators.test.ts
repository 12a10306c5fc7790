/**
 * The validators ajv writes at build time behave as the ones it compiles at
 * run time, and a process uses them only for the schemas they were built
 * from.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parseAllDocuments } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import {
  fingerprint,
  loadValidatorModule,
  validatorKeys,
  type ValidatorSet,
} from '../../../src/common/precompiled-validators.js';
import { validatorModuleSource } from '../../../src/common/validator-codegen.js';
import { escapePointer } from '../../../src/common/yaml-schema-errors.js';
import { MANIFEST_VALIDATORS } from '../../../src/engine/manifest/schemas.js';
import { VMM_VALIDATORS } from '../../../src/vmm/config/load.js';
import { repoRoot } from '../../helpers/mvisor.js';

function runtimeAjv(set: ValidatorSet): Ajv {
  const ajv = new Ajv(set.options);
  if (set.vocabulary.length) ajv.addVocabulary([...set.vocabulary]);
  for (const s of set.schemas) ajv.addSchema(s);
  return ajv;
}

function docs(file: string): unknown[] {
  return parseAllDocuments(readFileSync(join(repoRoot, file), 'utf8')).map((d) => d.toJS() as unknown);
}

/** Valid documents and broken copies of them (wrong types, unknown fields, bad sizes, a bad union branch). */
function samples(valid: unknown[]): unknown[] {
  const out: unknown[] = [...valid, null, 42, 'text', []];
  for (const v of valid) {
    const rec = v as Record<string, unknown>;
    out.push({ ...rec, bogus: 1 });
    out.push({ ...rec, memory: 'lots' }, { ...rec, memory: -1 });
    out.push({ ...rec, devices: [{ type: 'no-such-device' }, { type: 'serial', port: 'x' }] });
    if (rec.spec && typeof rec.spec === 'object')
      out.push(
        { ...rec, spec: { ...rec.spec, memory: '1Q', vcpus: 'two' } },
        { ...rec, spec: { ...rec.spec, disks: [{ nope: true }] } },
      );
    out.push({ ...rec, kind: 42 });
  }
  return out;
}

const cases: [string, ValidatorSet, string][] = [
  ['VMM config', VMM_VALIDATORS, 'examples/vmm/demo.yaml'],
  ['manifests', MANIFEST_VALIDATORS, 'examples/demo/demo.yaml'],
];

describe.each(cases)('build-time validators: %s', (_name, set, example) => {
  // Inside the tree, so that the generated code finds ajv's runtime in node_modules.
  mkdirSync(join(repoRoot, 'dist'), { recursive: true });
  const dir = mkdtempSync(join(repoRoot, 'dist', '.validators-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, `${set.name}.cjs`);
  writeFileSync(file, validatorModuleSource(set));
  const built = loadValidatorModule(file, set);
  const ajv = runtimeAjv(set);
  const keys = validatorKeys(set, escapePointer);

  it('has a validator for every root, definition and union branch', () => {
    expect(built).toBeDefined();
    expect(keys.length).toBeGreaterThan(20);
    for (const k of keys) expect(typeof built?.[k], k).toBe('function');
    expect(keys.filter((k) => /\/(oneOf|anyOf)\/\d+$/.test(k)).length).toBeGreaterThan(3);
  });

  it('gives the same verdicts and errors as ajv at run time, for valid and broken documents', () => {
    const data = samples(docs(example));
    let invalid = 0;
    for (const k of keys) {
      const pre = built![k]!;
      const rt = ajv.getSchema(k)!;
      for (const d of data) {
        const ok = pre(d);
        expect(ok, `${k} on ${JSON.stringify(d)}`).toBe(rt(d));
        expect(pre.errors ?? null).toEqual(rt.errors ?? null);
        if (!ok) invalid++;
      }
    }
    expect(invalid).toBeGreaterThan(0);
  });

  it('is not used for other schemas: a changed schema changes the fingerprint and falls back to run time', () => {
    const changed: ValidatorSet = {
      ...set,
      schemas: set.schemas.map((s, i) => (i === 0 ? { ...s, title: `${s.title ?? ''} changed` } : s)),
    };
    expect(fingerprint(changed)).not.toBe(fingerprint(set));
    const copy = join(dir, `${set.name}-copy.cjs`);
    writeFileSync(copy, readFileSync(file));
    expect(loadValidatorModule(copy, changed)).toBeUndefined();
    expect(loadValidatorModule(join(dir, 'missing.cjs'), set)).toBeUndefined();
  });

  it('make build wrote the module for the schemas in this tree (dist/validators/)', () => {
    const dist = join(repoRoot, 'dist/validators', `${set.name}.cjs`);
    expect(existsSync(dist), `${dist}: run make build`).toBe(true);
    expect(loadValidatorModule(dist, set), 'dist/validators is stale: run make build').toBeDefined();
  });
});
