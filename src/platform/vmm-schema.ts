/**
 * The VMM config schema (schema/vmm-config.schema.json) as the loader
 * validates with, its defaults and the messages for its patterns. No KVM:
 * the manifest loader explains VirtualMachine specs with it too.
 */
import type { Ajv, ValidateFunction } from 'ajv';
import schemaJson from '../../schema/vmm-config.schema.json' with { type: 'json' };
import {
  EXPLAIN_AJV_OPTIONS,
  createSchemaErrorExplainer,
  describeValue,
  escapePointer,
  schemaNodeAt,
  type SchemaNode,
  type Segment,
} from '../common/yaml-schema-errors.js';
import type { VmmConfig } from '../generated/vmm-config.js';
import { loadAjv, precompiledValidator, type ValidatorSet } from '../common/precompiled-validators.js';
import { parseCpuSpec } from './cpu-spec.js';
import { SIZE_PATTERN, formatSize, parseSize } from './size.js';

/**
 * Defaults for optional fields (the schema's `default` annotations say the
 * same; a unit test checks they agree).
 */
export const VMM_CONFIG_DEFAULTS = {
  memory: '128M',
  vcpus: 1,
  cpu: 'host',
  machine: 'pc',
  acpi: true,
  boot: { order: [], menu: false, menuTimeout: 0 },
  fwCfg: [],
  cmdline: '',
  serial: 'stdio',
  debugConsole: 'none',
  onReset: 'exit',
  onTripleFault: 'stop',
  devices: [],
} as const satisfies Partial<VmmConfig>;

/**
 * The schema as the loader validates with. In the file, `VmmDevice` (what
 * `devices` holds) is a union of `Device` (the classes VirtualMachine
 * manifests share) and the test devices; here `Device` is widened to one
 * flat union of every class a VMM config can have, and `devices` holds it,
 * so that a wrong `class`, or a wrong field of a known class, is explained
 * as before ("unknown device class ... (known: ...)"). The two schemas
 * accept the same documents: the classes are distinct constants.
 */
const SCHEMA: SchemaNode = vmmValidationSchema(schemaJson);
const SCHEMA_ID = SCHEMA.$id ?? 'vmm-config';

export function vmmValidationSchema(schema: SchemaNode): SchemaNode {
  const copy = structuredClone(schema) as SchemaNode & {
    definitions: Record<string, SchemaNode>;
    properties: Record<string, SchemaNode>;
  };
  const defs = copy.definitions;
  const flat = (defs.VmmDevice?.oneOf ?? []).flatMap((b) =>
    b.$ref === '#/definitions/Device' ? (defs.Device?.oneOf ?? []) : [b],
  );
  defs.Device = { ...defs.Device, oneOf: flat };
  copy.properties.devices = { ...copy.properties.devices, items: { $ref: '#/definitions/Device' } };
  return copy;
}

/** The schema node at a JSON pointer ('' is the root). */
export function schemaAt(pointer: string): SchemaNode {
  return schemaNodeAt(SCHEMA, pointer);
}

/** Follows `$ref`s (local ones only: `#/definitions/...`) to the pointer of the real schema. */
export function deref(pointer: string): string {
  for (let i = 0; i < 32; i++) {
    const ref = schemaAt(pointer).$ref;
    if (ref === undefined) return pointer;
    if (!ref.startsWith('#')) throw new Error(`internal: non-local $ref ${ref}`);
    pointer = ref.slice(1);
  }
  throw new Error(`internal: $ref loop at ${pointer}`);
}

/** The pointer of a node below the one at `pointer` (`childPointer(p, 'properties', 'memory')`). */
export function childPointer(pointer: string, ...segs: readonly Segment[]): string {
  return pointer + segs.map((s) => `/${escapePointer(String(s))}`).join('');
}

/** The VMM config schema as a validator set (compiled at build time: precompiled-validators.ts). */
export const VMM_VALIDATORS: ValidatorSet = {
  name: 'vmm-config',
  schemas: [SCHEMA],
  vocabulary: [],
  options: EXPLAIN_AJV_OPTIONS,
};

let ajv: Ajv | undefined;
const validators = new Map<string, ValidateFunction>();

function getAjv(): Ajv {
  if (!ajv) {
    ajv = new (loadAjv())(EXPLAIN_AJV_OPTIONS);
    ajv.addSchema(SCHEMA, SCHEMA_ID);
  }
  return ajv;
}

export function rootValidator(): ValidateFunction<VmmConfig> {
  const v =
    (precompiledValidator(VMM_VALIDATORS, SCHEMA_ID) as ValidateFunction<VmmConfig> | undefined) ??
    getAjv().getSchema<VmmConfig>(SCHEMA_ID);
  if (!v) throw new Error('internal: VMM config schema did not compile');
  return v;
}

/** A validator for the sub-schema at `pointer` (compiled once). */
export function validatorAt(pointer: string): ValidateFunction {
  let v = validators.get(pointer);
  if (!v) {
    const key = `${SCHEMA_ID}#${pointer}`;
    v =
      pointer === ''
        ? rootValidator()
        : (precompiledValidator(VMM_VALIDATORS, key) ?? getAjv().getSchema(key));
    if (!v) throw new Error(`internal: cannot compile schema at ${pointer}`);
    validators.set(pointer, v);
  }
  return v;
}

/**
 * The message for a string that does not match a pattern of the VMM config
 * schema, or undefined for the generic one. The manifest loader uses it too
 * (VirtualMachine specs reuse the VMM's device, boot and fw_cfg shapes).
 */
export function vmmPatternMessage(pattern: string, data: unknown): string | undefined {
  if (pattern === schemaAt('/definitions/CpuSpec').pattern && typeof data === 'string') {
    try {
      parseCpuSpec(data);
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }
  const text = describeValue(data);
  if (pattern === schemaAt('/definitions/CpuObject/properties/features/items').pattern) {
    return `invalid CPU feature ${text}: expected +name or -name`;
  }
  if (
    pattern === schemaAt('/properties/name').pattern ||
    pattern === schemaAt('/definitions/DeviceName').pattern
  ) {
    return `invalid name ${text}: use 1-63 lowercase letters, digits or '-', starting with a letter or digit`;
  }
  if (pattern === schemaAt('/definitions/Uuid').pattern) {
    return `invalid UUID ${text}: expected 8-4-4-4-12 hex digits, e.g. 0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70`;
  }
  if (pattern === schemaAt('/definitions/VirtioBlockDevice/properties/serial').pattern) {
    return `invalid serial ${text}: use printable ASCII characters (letters, digits, punctuation, spaces)`;
  }
  if (pattern === schemaAt('/definitions/FwCfgName').pattern) {
    return `invalid fw_cfg name ${text}: user files must be named opt/..., e.g. opt/org.example/config`;
  }
  return undefined;
}

/** Explains validation errors of a VMM config, and checks its size strings. */
export const vmmExplainer = createSchemaErrorExplainer(
  { schemaAt, deref, child: childPointer, validatorAt },
  {
    sizes: { pattern: SIZE_PATTERN, parse: parseSize, format: formatSize, example: '128M' },
    patternMessage: vmmPatternMessage,
    emptyDocument: 'the config is empty (expected a mapping with at least a name)',
  },
);
