/**
 * Turns ajv's errors into readable problems (`field.path: message`), the same
 * way the VMM config loader does (src/vmm/config/load.ts), but across the
 * several manifest schemas: a failing union (`oneOf`) is explained by
 * picking the alternative the user obviously meant (by value type, by a
 * `const` discriminator such as `class`, or by the keys present) and
 * re-validating against that alternative alone.
 */
import type { ErrorObject } from 'ajv';
import { SIZE_PATTERN, formatSize, parseCpuSpec, parseSize } from '../../vmm/config/load.js';
import {
  childUri,
  deref,
  schemaAt,
  specField,
  validatorAt,
  type SchemaNode,
  type SchemaUri,
} from './schemas.js';

export type Segment = string | number;

/** A problem found in one document, before it gets a source position. */
export interface RawProblem {
  /** Field path shown in the message (from the document root: `spec.memory`). */
  path: Segment[];
  /** Where to point in the YAML (the closest existing node is used). */
  at: Segment[];
  /** Point at the key of the last segment rather than its value. */
  atKey: boolean;
  message: string;
}

export function problem(path: Segment[], message: string, at: Segment[] = path, atKey = false): RawProblem {
  return { path, at, atKey, message };
}

/** Problems of `data` (found at `base`) against the schema at `uri`; [] if it is valid. */
export function explain(uri: SchemaUri, data: unknown, base: Segment[] = []): RawProblem[] {
  const validate = validatorAt(uri);
  if (validate(data)) return [];
  const errors = validate.errors ?? [];
  const out: RawProblem[] = [];
  const unionPaths: Segment[][] = [];

  const unions = errors
    .filter(isUnionError)
    .map((e) => ({ e, rel: instanceSegments(e.instancePath, data) }))
    .sort((a, b) => a.rel.length - b.rel.length);
  for (const { e, rel } of unions) {
    if (unionPaths.some((u) => isPrefix(u, rel))) continue;
    unionPaths.push(rel);
    const unionUri = schemaUriAt(uri, data, rel);
    const path = [...base, ...rel];
    out.push(
      ...(unionUri === undefined
        ? [problem(path, e.message ?? 'invalid value')]
        : explainUnion(unionUri, valueAt(data, rel), path, e)),
    );
  }
  for (const e of errors) {
    if (isUnionError(e) || e.keyword === 'propertyNames') continue;
    const rel = instanceSegments(e.instancePath, data);
    if (unionPaths.some((u) => isPrefix(u, rel))) continue;
    out.push(explainError(e, [...base, ...rel]));
  }
  return out;
}

function isUnionError(e: ErrorObject): boolean {
  return e.keyword === 'oneOf' || e.keyword === 'anyOf';
}

type BranchChoice =
  | { kind: 'branch'; index: number }
  | { kind: 'unknownTag'; tag: string; known: unknown[] }
  | { kind: 'missingTag'; tag: string; known: unknown[] }
  | { kind: 'none' };

function unionKey(node: SchemaNode): 'oneOf' | 'anyOf' | undefined {
  return node.oneOf ? 'oneOf' : node.anyOf ? 'anyOf' : undefined;
}

function branchUris(uri: SchemaUri): SchemaUri[] {
  const node = schemaAt(uri);
  const key = unionKey(node);
  return key ? (node[key] ?? []).map((_, i) => childUri(uri, key, i)) : [];
}

function explainUnion(uri: SchemaUri, value: unknown, path: Segment[], e: ErrorObject): RawProblem[] {
  const branches = branchUris(uri);
  const passing: unknown = e.params.passingSchemas;
  if (Array.isArray(passing)) return [problem(path, 'matches more than one of the allowed forms')];
  const choice = chooseBranch(branches, value);
  const mismatch = () =>
    problem(path, `expected ${describeAlternatives(branches)}, got ${describeValue(value, path)}`);
  switch (choice.kind) {
    case 'branch': {
      const branch = branches[choice.index] ?? uri;
      if (isLiteral(schemaAt(deref(branch)))) return [mismatch()];
      const inner = explain(branch, value, path);
      return inner.length > 0 ? inner : [mismatch()];
    }
    case 'unknownTag': {
      const noun = definitionName(uri);
      const given = isRecord(value) ? value[choice.tag] : undefined;
      return [
        problem(
          [...path, choice.tag],
          `unknown ${noun ? `${noun} ` : ''}${choice.tag} ${describeValue(given, path)} ` +
            `(known: ${choice.known.map(String).join(', ')})`,
        ),
      ];
    }
    case 'missingTag':
      return [
        problem(
          [...path, choice.tag],
          `missing required field (one of: ${choice.known.map(String).join(', ')})`,
          path,
        ),
      ];
    case 'none':
      return [mismatch()];
  }
}

/** `device` for `...#/definitions/Device` (lower-cased, for messages), else ''. */
function definitionName(uri: SchemaUri): string {
  const m = /#\/definitions\/([^/]+)$/.exec(uri);
  return m?.[1] ? m[1].replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase() : '';
}

/** Picks the alternative of a union that `value` was evidently meant to be. */
function chooseBranch(branches: SchemaUri[], value: unknown): BranchChoice {
  const kind = jsonKind(value);
  const nodes = branches.map((b) => schemaAt(deref(b)));
  const candidates = nodes.map((n, i) => ({ n, i })).filter(({ n }) => acceptsKind(n, kind));
  if (isRecord(value)) {
    const first = candidates[0]?.n;
    const tag = Object.keys(first?.properties ?? {}).find((k) =>
      candidates.every(({ n }) => n.properties?.[k]?.const !== undefined),
    );
    if (tag !== undefined) {
      const known = candidates.map(({ n }) => n.properties?.[tag]?.const);
      if (!(tag in value)) return { kind: 'missingTag', tag, known };
      const hit = candidates.find(({ n }) => n.properties?.[tag]?.const === value[tag]);
      return hit ? { kind: 'branch', index: hit.i } : { kind: 'unknownTag', tag, known };
    }
    const withRequired = candidates.filter(({ n }) => (n.required ?? []).every((k) => k in value));
    if (withRequired.length === 1 && withRequired[0]) return { kind: 'branch', index: withRequired[0].i };
  }
  if (candidates.length === 1 && candidates[0]) return { kind: 'branch', index: candidates[0].i };
  return { kind: 'none' };
}

function isLiteral(n: SchemaNode): boolean {
  return (n.enum !== undefined || n.const !== undefined) && n.properties === undefined;
}

type JsonKind = 'null' | 'boolean' | 'integer' | 'number' | 'string' | 'array' | 'object';

function jsonKind(v: unknown): JsonKind {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'boolean';
  return 'object';
}

function acceptsKind(n: SchemaNode, kind: JsonKind): boolean {
  let types: readonly string[];
  if (n.type !== undefined) types = typeof n.type === 'string' ? [n.type] : n.type;
  else if (n.enum !== undefined) types = n.enum.map(jsonKind);
  else if (n.const !== undefined) types = [jsonKind(n.const)];
  else return true;
  return types.includes(kind) || (kind === 'integer' && types.includes('number'));
}

function describeAlternatives(branches: SchemaUri[]): string {
  const parts: string[] = [];
  for (const b of branches) {
    const n = schemaAt(deref(b));
    if (n.enum) parts.push(...n.enum.map((v) => JSON.stringify(v)));
    else if (n.const !== undefined) parts.push(JSON.stringify(n.const));
    else if (n.properties) {
      const keys = n.required?.length ? n.required : Object.keys(n.properties);
      parts.push(`{${keys.map((k) => `${k}: ...`).join(', ')}}`);
    } else {
      const types = typeof n.type === 'string' ? [n.type] : (n.type ?? ['value']);
      parts.push(...types.map(typeName));
    }
  }
  return joinOr(parts);
}

function joinOr(parts: readonly string[]): string {
  if (parts.length <= 1) return parts[0] ?? '';
  return `${parts.slice(0, -1).join(', ')} or ${parts[parts.length - 1]}`;
}

function typeName(t: string): string {
  switch (t) {
    case 'integer':
      return 'an integer';
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'null':
      return 'null';
    default:
      return `a ${t}`;
  }
}

export function describeValue(v: unknown, path: readonly Segment[] = []): string {
  if (v === null || v === undefined) return 'nothing (null)';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (typeof v === 'number') {
    return path[path.length - 1] === 'port' && Number.isInteger(v) && v >= 0 ? hex(v) : String(v);
  }
  if (typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list' : 'a list';
  if (isRecord(v)) {
    const keys = Object.keys(v);
    return keys.length === 0 ? 'an empty mapping' : `a mapping with ${keys.join(', ')}`;
  }
  return typeof v;
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** One readable message for one (non-union) ajv error. */
function explainError(e: ErrorObject, path: Segment[]): RawProblem {
  const parent = e.parentSchema as SchemaNode | undefined;
  const data: unknown = e.data;
  const params: Record<string, unknown> = e.params;
  const isSize = parent?.pattern === SIZE_PATTERN;
  const hint = parent?.['x-mvisor-expected'];
  switch (e.keyword) {
    case 'required':
      return problem([...path, String(params.missingProperty)], 'missing required field', path);
    case 'additionalProperties': {
      const name = String(params.additionalProperty);
      const known = Object.keys(parent?.properties ?? {});
      return problem([...path, name], unknownFieldMessage(name, known), [...path, name], true);
    }
    case 'type':
      if (isSize) return problem(path, sizeCheck(data, parent).problem ?? 'invalid size');
      if (hint !== undefined) return problem(path, `expected ${hint}, got ${describeValue(data)}`);
      return problem(
        path,
        `expected ${joinOr(asStrings(params.type).map(typeName))}, got ${describeValue(data)}`,
      );
    case 'enum': {
      const allowed = Array.isArray(params.allowedValues) ? params.allowedValues : [];
      const shown = allowed.map((v: unknown) => describeValue(v, path));
      const msg =
        shown.length === 1
          ? `expected ${shown[0]} (the only supported value)`
          : `expected one of ${shown.join(', ')}`;
      return problem(path, `${msg}, got ${describeValue(data, path)}`);
    }
    case 'const':
      return problem(
        path,
        `expected ${describeValue(params.allowedValue, path)}, got ${describeValue(data, path)}`,
      );
    case 'pattern': {
      // Inside `propertyNames`, the error is about a key of the mapping at `path`.
      const key = typeof e.propertyName === 'string' ? e.propertyName : undefined;
      if (key !== undefined) {
        const what = hint !== undefined ? `: expected ${hint}` : ` (must match ${String(params.pattern)})`;
        return problem([...path, key], `invalid key ${JSON.stringify(key)}${what}`, [...path, key], true);
      }
      return problem(path, patternMessage(String(params.pattern), data, parent));
    }
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      if (isSize) return problem(path, sizeCheck(data, parent).problem ?? 'invalid size');
      return problem(
        path,
        `must be ${String(params.comparison)} ${String(params.limit)}, got ${describeValue(data)}`,
      );
    case 'multipleOf':
      if (isSize) return problem(path, sizeCheck(data, parent).problem ?? 'invalid size');
      return problem(path, `must be a multiple of ${String(params.multipleOf)}, got ${describeValue(data)}`);
    case 'minLength':
      if (hint !== undefined) return problem(path, `expected ${hint}, got ${describeValue(data)}`);
      return problem(
        path,
        params.limit === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters long`,
      );
    case 'maxLength':
      return problem(
        path,
        `too long: ${typeof data === 'string' ? data.length : '?'} characters (at most ${String(params.limit)})`,
      );
    default:
      return problem(path, e.message ?? `invalid (${e.keyword})`);
  }
}

function asStrings(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  return typeof v === 'string' ? v.split(',') : [];
}

const CPU_PATTERN = specField('VirtualMachine', 'cpu').pattern;

function patternMessage(pattern: string, data: unknown, parent: SchemaNode | undefined): string {
  const text = describeValue(data);
  if (pattern === SIZE_PATTERN) return sizeCheck(data, parent).problem ?? `invalid size ${text}`;
  if (pattern === CPU_PATTERN && typeof data === 'string') {
    try {
      parseCpuSpec(data);
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }
  const hint = parent?.['x-mvisor-expected'];
  if (hint !== undefined) return `invalid value ${text}: expected ${hint}`;
  return `invalid value ${text} (must match ${pattern})`;
}

export function unknownFieldMessage(name: string, known: readonly string[]): string {
  const close = closest(name, known);
  if (close !== undefined) return `unknown field (did you mean ${JSON.stringify(close)}?)`;
  return `unknown field (known fields: ${known.join(', ')})`;
}

/** The candidate closest to `name` if it is close enough to be a typo of it. */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  return candidates
    .map((k) => ({ k, d: editDistance(name.toLowerCase(), k.toLowerCase()) }))
    .filter(({ d }) => d <= Math.max(1, Math.min(2, Math.floor(name.length / 3))))
    .sort((a, b) => a.d - b.d)[0]?.k;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** Converts an ajv instancePath (`/spec/disks/0/disk`) into segments (array indices as numbers). */
function instanceSegments(instancePath: string, data: unknown): Segment[] {
  if (instancePath === '') return [];
  const out: Segment[] = [];
  let cur: unknown = data;
  for (const raw of instancePath.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    const s: Segment = Array.isArray(cur) && /^[0-9]+$/.test(seg) ? Number(seg) : seg;
    out.push(s);
    cur = child(cur, s);
  }
  return out;
}

function child(v: unknown, seg: Segment): unknown {
  if (Array.isArray(v) && typeof seg === 'number') return v[seg];
  if (isRecord(v)) return v[String(seg)];
  return undefined;
}

function valueAt(v: unknown, path: readonly Segment[]): unknown {
  return path.reduce<unknown>((cur, seg) => child(cur, seg), v);
}

function isPrefix(prefix: readonly Segment[], path: readonly Segment[]): boolean {
  return prefix.length <= path.length && prefix.every((s, i) => s === path[i]);
}

/**
 * The URI of the schema that applies to the value at `rel` below the value
 * validated by the schema at `uri` (through properties, items, and the
 * alternative of any union on the way that the value satisfies).
 */
function schemaUriAt(uri: SchemaUri, data: unknown, rel: readonly Segment[]): SchemaUri | undefined {
  let u = deref(uri);
  let d = data;
  for (const seg of rel) {
    u = throughUnions(u, d);
    const node = schemaAt(u);
    if (typeof seg === 'number' && node.items) u = deref(childUri(u, 'items'));
    else if (typeof seg === 'string' && node.properties?.[seg]) u = deref(childUri(u, 'properties', seg));
    else if (typeof seg === 'string' && typeof node.additionalProperties === 'object') {
      u = deref(childUri(u, 'additionalProperties'));
    } else return undefined;
    d = child(d, seg);
  }
  return u;
}

function throughUnions(uri: SchemaUri, value: unknown): SchemaUri {
  for (let depth = 0; depth < 8 && unionKey(schemaAt(uri)); depth++) {
    const branches = branchUris(uri);
    let next = branches.find((b) => validatorAt(b)(value));
    if (next === undefined) {
      const choice = chooseBranch(branches, value);
      next = choice.kind === 'branch' ? branches[choice.index] : undefined;
    }
    if (next === undefined) return uri;
    uri = deref(next);
  }
  return uri;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------
// Sizes

/**
 * Range checks of size strings (`1M` for a memory of at least 2 MiB), which
 * the schema cannot do: walks `data` along the schema at `uri` (through the
 * alternative of each union the value was meant to be) and checks every
 * well-formed size string against its schema's minimum, maximum and
 * multipleOf. Runs on invalid documents too, so that all problems are
 * reported at once.
 */
export function checkSizeStrings(uri: SchemaUri, data: unknown, base: Segment[] = []): RawProblem[] {
  const out: RawProblem[] = [];
  const walk = (u: SchemaUri, value: unknown, path: Segment[], depth: number) => {
    if (depth > 32) return;
    u = throughUnions(deref(u), value);
    const node = schemaAt(u);
    if (node.pattern === SIZE_PATTERN && typeof value === 'string' && SIZE_RE.test(value)) {
      const check = sizeCheck(value, node);
      if (check.problem !== undefined) out.push(problem(path, check.problem));
      return;
    }
    if (Array.isArray(value) && node.items) {
      value.forEach((v, i) => walk(childUri(u, 'items'), v, [...path, i], depth + 1));
    } else if (isRecord(value)) {
      for (const [k, v] of Object.entries(value)) {
        if (node.properties?.[k]) walk(childUri(u, 'properties', k), v, [...path, k], depth + 1);
        else if (typeof node.additionalProperties === 'object') {
          walk(childUri(u, 'additionalProperties'), v, [...path, k], depth + 1);
        }
      }
    }
  };
  walk(uri, data, base, 0);
  return out;
}

const SIZE_RE = new RegExp(SIZE_PATTERN);

export interface SizeCheck {
  bytes?: number;
  problem?: string;
}

/** Parses a size and checks it against a size schema's minimum, maximum and multipleOf. */
export function sizeCheck(value: unknown, schema: SchemaNode | undefined): SizeCheck {
  if (typeof value !== 'string' && typeof value !== 'number') {
    return { problem: `expected a size (bytes, or a string such as 10G), got ${describeValue(value)}` };
  }
  let bytes: number;
  try {
    bytes = parseSize(value);
  } catch (e) {
    return { problem: e instanceof Error ? e.message : String(e) };
  }
  const pretty = formatSize(bytes);
  const shown =
    typeof value === 'string' ? value : pretty === `${value} bytes` ? pretty : `${value} bytes (${pretty})`;
  if (schema?.minimum !== undefined && bytes < schema.minimum) {
    return { problem: `${shown} is too small (minimum ${formatSize(schema.minimum)})` };
  }
  if (schema?.maximum !== undefined && bytes > schema.maximum) {
    return { problem: `${shown} is too large (maximum ${formatSize(schema.maximum)})` };
  }
  if (schema?.multipleOf !== undefined && bytes % schema.multipleOf !== 0) {
    return { problem: `${shown} is not a multiple of ${formatSize(schema.multipleOf)}` };
  }
  return { bytes };
}
