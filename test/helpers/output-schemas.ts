/** Validators of mvctl's published output schemas (schema/output/*.schema.json), for the CLI tests. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { repoRoot } from './mvisor.js';

const ajv = new Ajv({ strict: true, allowUnionTypes: true });
for (const f of ['plan', 'apply-event', 'show', 'state-list', 'state-resource', 'snapshot', 'restore'])
  ajv.addSchema(JSON.parse(readFileSync(join(repoRoot, `schema/output/${f}.schema.json`), 'utf8')) as object);

/** The validator of `schema/output/NAME.schema.json`. */
export function outputValidator(name: string): ValidateFunction {
  const v = ajv.getSchema(`https://mvisor.dev/schema/output/${name}.schema.json`);
  if (!v) throw new Error(`no output schema ${name}`);
  return v;
}

/** Why `value` is not valid against `validate`, for assertion messages. */
export function validationErrors(validate: ValidateFunction): string {
  return ajv.errorsText(validate.errors);
}
