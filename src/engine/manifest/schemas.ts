/**
 * The manifest JSON Schemas (schema/manifests/*.schema.json, plus the VMM
 * config schema whose device shapes VirtualMachine reuses): one ajv instance
 * that knows all of them, navigation by schema URI (`<$id>#<json pointer>`,
 * following `$ref`s across files), and the update policies the schemas
 * declare per field with `x-mvisor-update`.
 *
 * Annotations (not validation keywords) the schemas use:
 *   x-mvisor-update: 'in-place' | 'replace'  how a change to the field is applied
 *   x-mvisor-grow-only: true                 the value may grow in place, never shrink
 *   x-mvisor-expected: string                what a valid value looks like (error messages)
 */
import type { Ajv, ValidateFunction } from 'ajv';
import commonSchema from '../../../schema/manifests/common.schema.json' with { type: 'json' };
import diskSchema from '../../../schema/manifests/disk.schema.json' with { type: 'json' };
import hostSchema from '../../../schema/manifests/host.schema.json' with { type: 'json' };
import networkSchema from '../../../schema/manifests/network.schema.json' with { type: 'json' };
import vfioSchema from '../../../schema/manifests/vfio-assignment.schema.json' with { type: 'json' };
import vmSchema from '../../../schema/manifests/virtual-machine.schema.json' with { type: 'json' };
import vmmConfigSchema from '../../../schema/vmm-config.schema.json' with { type: 'json' };
import {
  EXPLAIN_AJV_OPTIONS,
  escapePointer,
  schemaNodeAt,
  type SchemaNode,
} from '../../common/yaml-schema-errors.js';
import { loadAjv, precompiledValidator, type ValidatorSet } from '../../common/precompiled-validators.js';
import type { Kind, UpdatePolicy, UpdatePolicyFn } from '../types.js';

/** Schema URI: `<$id>#<json pointer>` (the pointer is '' for a schema's root). */
export type SchemaUri = string;

const ANNOTATIONS = ['x-mvisor-update', 'x-mvisor-grow-only', 'x-mvisor-expected'] as const;

const SCHEMAS: readonly SchemaNode[] = [
  vmmConfigSchema,
  commonSchema,
  vmSchema,
  diskSchema,
  networkSchema,
  vfioSchema,
  hostSchema,
];

const BY_ID = new Map<string, SchemaNode>();
for (const s of SCHEMAS) {
  if (s.$id === undefined) throw new Error('internal: schema without $id');
  BY_ID.set(s.$id, s);
}

function idOf(s: SchemaNode): string {
  return s.$id ?? '';
}

/** The envelope schema (apiVersion, kind, metadata, spec as any object). */
export const ENVELOPE_URI: SchemaUri = `${idOf(commonSchema)}#`;

/** The document schema of each kind. */
export const KIND_SCHEMA_URI: Readonly<Record<Kind, SchemaUri>> = {
  VirtualMachine: `${idOf(vmSchema)}#`,
  Disk: `${idOf(diskSchema)}#`,
  Network: `${idOf(networkSchema)}#`,
  VfioAssignment: `${idOf(vfioSchema)}#`,
  Host: `${idOf(hostSchema)}#`,
};

/** URI of a definition in the common schema, e.g. `commonDefinition('Name')`. */
export function commonDefinition(name: string): SchemaUri {
  return `${idOf(commonSchema)}#/definitions/${name}`;
}

/** URI of a definition (or a path below one) in a kind's schema, e.g. `kindDefinition('Disk', 'DiskSize')`. */
export function kindDefinition(kind: Kind, path: string): SchemaUri {
  return `${KIND_SCHEMA_URI[kind]}/definitions/${path}`;
}

/** URI of a definition in the VMM config schema, e.g. `vmmDefinition('MemorySize')`. */
export function vmmDefinition(name: string): SchemaUri {
  return `${idOf(vmmConfigSchema)}#/definitions/${name}`;
}

/** The schema of a kind's `spec`. */
export function specUri(kind: Kind): SchemaUri {
  return deref(childUri(KIND_SCHEMA_URI[kind], 'properties', 'spec'));
}

/** The (dereferenced) schema of one spec field, e.g. `specField('Disk', 'size')`. */
export function specField(kind: Kind, field: string): SchemaNode {
  return schemaAt(deref(childUri(specUri(kind), 'properties', field)));
}

function splitUri(uri: SchemaUri): { id: string; pointer: string } {
  const hash = uri.indexOf('#');
  return hash < 0 ? { id: uri, pointer: '' } : { id: uri.slice(0, hash), pointer: uri.slice(hash + 1) };
}

/** `childUri(u, 'properties', 'memory')` is the URI of `u`'s property `memory`. */
export function childUri(uri: SchemaUri, ...segs: readonly (string | number)[]): SchemaUri {
  const base = uri.includes('#') ? uri : `${uri}#`;
  return base + segs.map((s) => `/${escapePointer(String(s))}`).join('');
}

/** The schema node at a URI. Throws for a URI that names nothing (an internal error). */
export function schemaAt(uri: SchemaUri): SchemaNode {
  const cached = NODE_AT.get(uri);
  if (cached !== undefined) return cached;
  const { id, pointer } = splitUri(uri);
  const root = BY_ID.get(id);
  if (root === undefined) throw new Error(`internal: unknown schema ${id}`);
  const node = schemaNodeAt(root, pointer, uri);
  NODE_AT.set(uri, node);
  return node;
}

// The schemas never change: look-ups by URI are remembered (a plan of 10,000 VMs walks the same few
// dozen URIs hundreds of thousands of times).
const NODE_AT = new Map<SchemaUri, SchemaNode>();
const CHAINS = new Map<SchemaUri, readonly SchemaUri[]>();

/** Resolves a `$ref` found in the schema at `from`. */
function resolveRef(from: SchemaUri, ref: string): SchemaUri {
  const { id } = splitUri(from);
  const url = new URL(ref, id);
  const hash = decodeURIComponent(url.hash.replace(/^#/, ''));
  url.hash = '';
  return `${url.href}#${hash}`;
}

/** The URIs along a `$ref` chain, starting with `uri` itself and ending with the real schema. */
export function refChain(uri: SchemaUri): readonly SchemaUri[] {
  const cached = CHAINS.get(uri);
  if (cached !== undefined) return cached;
  const first = uri;
  const chain = [uri];
  for (let i = 0; i < 32; i++) {
    const ref = schemaAt(uri).$ref;
    if (ref === undefined) {
      CHAINS.set(first, chain);
      return chain;
    }
    uri = resolveRef(uri, ref);
    chain.push(uri);
  }
  throw new Error(`internal: $ref loop at ${uri}`);
}

/** Follows `$ref`s to the URI of the real schema. */
export function deref(uri: SchemaUri): SchemaUri {
  const chain = refChain(uri);
  return chain[chain.length - 1] ?? uri;
}

/** The first value of an annotation along a `$ref` chain (the referring node wins over the definition). */
function annotation<K extends (typeof ANNOTATIONS)[number]>(
  uri: SchemaUri,
  key: K,
): SchemaNode[K] | undefined {
  for (const u of refChain(uri)) {
    const v = schemaAt(u)[key];
    if (v !== undefined) return v;
  }
  return undefined;
}

/** The manifest schemas as one validator set (compiled at build time: precompiled-validators.ts). */
export const MANIFEST_VALIDATORS: ValidatorSet = {
  name: 'manifests',
  schemas: SCHEMAS,
  vocabulary: ANNOTATIONS,
  options: EXPLAIN_AJV_OPTIONS,
};

let ajv: Ajv | undefined;
const validators = new Map<SchemaUri, ValidateFunction>();

function getAjv(): Ajv {
  if (!ajv) {
    ajv = new (loadAjv())(EXPLAIN_AJV_OPTIONS);
    ajv.addVocabulary([...ANNOTATIONS]);
    for (const s of SCHEMAS) ajv.addSchema(s);
  }
  return ajv;
}

/** A validator for the schema at `uri` (compiled once). */
export function validatorAt(uri: SchemaUri): ValidateFunction {
  const key = uri.endsWith('#') ? uri.slice(0, -1) : uri;
  let v = validators.get(key);
  if (!v) {
    v = precompiledValidator(MANIFEST_VALIDATORS, key) ?? getAjv().getSchema(key);
    if (!v) throw new Error(`internal: cannot compile schema at ${uri}`);
    validators.set(key, v);
  }
  return v;
}

// ---------------------------------------------------------------------------
// Update policies

/** What the schemas say about changing one field. */
export interface UpdateRule {
  policy: UpdatePolicy;
  /** The field may grow in place but not shrink (e.g. a Disk's size): shrinking is an error. */
  growOnly: boolean;
  /** False when the path names no field of the kind (the policy is then 'replace'). */
  known: boolean;
}

/** Spec fields no kind has: a path starting with one of these is about the resource's metadata. */
const METADATA_PATHS: Readonly<Record<string, readonly string[]>> = {
  metadata: [],
  labels: ['labels'],
};

/**
 * The update rule for a changed field of a kind. `path` is relative to the
 * spec (`['memory']`, `['disks', 0, 'readonly']`); a path starting with
 * `metadata` (or just `labels`, for `DesiredResource.labels`) addresses the
 * metadata instead. A field without its own annotation inherits the one of
 * the closest annotated field above it (a list or object field covers its
 * items and members); a path the schema does not know is 'replace'.
 */
export function updateRule(kind: Kind, path: readonly (string | number)[]): UpdateRule {
  let root: SchemaUri;
  let rel: readonly (string | number)[];
  const meta = typeof path[0] === 'string' ? METADATA_PATHS[path[0]] : undefined;
  if (meta !== undefined) {
    root = deref(childUri(KIND_SCHEMA_URI[kind], 'properties', 'metadata'));
    rel = [...meta, ...path.slice(1)];
  } else {
    root = specUri(kind);
    rel = path;
  }

  let candidates = [root];
  let policy: UpdatePolicy | undefined;
  let growOnly = false;
  for (const seg of rel) {
    const next: SchemaUri[] = [];
    for (const c of candidates.flatMap(expandUnions)) {
      const n = schemaAt(c);
      const isIndex = typeof seg === 'number' || /^[0-9]+$/.test(seg);
      if (isIndex && n.items) next.push(childUri(c, 'items'));
      else if (typeof seg === 'string' && n.properties?.[seg]) next.push(childUri(c, 'properties', seg));
      else if (typeof seg === 'string' && typeof n.additionalProperties === 'object') {
        next.push(childUri(c, 'additionalProperties'));
      }
    }
    if (next.length === 0) return { policy: 'replace', growOnly: false, known: false };
    const policies = next.map((u) => annotation(u, 'x-mvisor-update')).filter((p) => p !== undefined);
    if (policies.length > 0) {
      // Alternatives that disagree: the safe answer.
      policy = policies.every((p) => p === 'in-place') ? 'in-place' : 'replace';
      growOnly = next.some((u) => annotation(u, 'x-mvisor-grow-only') === true);
    }
    candidates = next;
  }
  return { policy: policy ?? 'replace', growOnly, known: true };
}

/** The URIs a value at `uri` may be validated by: the real schema, or each alternative of a union. */
function expandUnions(uri: SchemaUri, depth = 0): SchemaUri[] {
  const real = deref(uri);
  const n = schemaAt(real);
  const key = n.oneOf ? 'oneOf' : n.anyOf ? 'anyOf' : undefined;
  if (key === undefined || depth > 8) return [real];
  const branches = (n[key] ?? []).map((_, i) => childUri(real, key, i));
  return branches.flatMap((b) => expandUnions(b, depth + 1));
}

/** `updateRule(kind, path).policy`: how a change to a field is applied. */
export const updatePolicy: UpdatePolicyFn = (kind, path) => updateRule(kind, path).policy;

/** True when the field may only grow (shrinking it is an error the planner reports). */
export function isGrowOnly(kind: Kind, path: readonly (string | number)[]): boolean {
  return updateRule(kind, path).growOnly;
}

/** The `x-mvisor-expected` hint of the schema at `uri` (through `$ref`s). */
export function expectedHint(uri: SchemaUri): string | undefined {
  return annotation(uri, 'x-mvisor-expected');
}
