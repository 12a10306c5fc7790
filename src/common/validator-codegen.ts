/**
 * Build time only (scripts/validators.mjs and its test): the CommonJS module
 * of a validator set, written by ajv's standalone code generation, with the
 * set's fingerprint (precompiled-validators.ts loads it).
 */
import { Ajv } from 'ajv';
import standalone from 'ajv/dist/standalone/index.js';
import { FINGERPRINT_KEY, fingerprint, validatorKeys, type ValidatorSet } from './precompiled-validators.js';
import { escapePointer } from './yaml-schema-errors.js';

// A CommonJS module: the default import is module.exports, whose `default` is the function.
const standaloneCode = standalone.default;

/** The module's source text: `exports[key]` is the validator of each of validatorKeys(set). */
export function validatorModuleSource(set: ValidatorSet): string {
  const ajv = new Ajv({ ...set.options, code: { source: true } });
  if (set.vocabulary.length) ajv.addVocabulary([...set.vocabulary]);
  for (const s of set.schemas) ajv.addSchema(s);
  const refs: Record<string, string> = {};
  for (const key of validatorKeys(set, escapePointer)) refs[key] = key;
  const code = standaloneCode(ajv, refs);
  return `${code}\nexports[${JSON.stringify(FINGERPRINT_KEY)}] = ${JSON.stringify(fingerprint(set))};\n`;
}
