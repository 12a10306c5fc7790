/**
 * Loads the low-level VMM config file (`mvisor -c vm.yaml`): YAML with
 * source positions, validated against schema/vmm-config.schema.json (the
 * single source of truth for its shape), then normalised into a plain
 * `ResolvedVmmConfig` (sizes in bytes, absolute paths, defaults filled).
 *
 * Every problem becomes one line `file:line:col: field.path: message` of a
 * `ConfigError`. Ajv's raw errors for unions (`oneOf`) are unreadable, so a
 * failing union is explained by picking the alternative the user obviously
 * meant (by value type, by a `const` discriminator such as `class`, or by
 * the keys present) and re-validating against that alternative alone.
 */
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { LineCounter, isAlias, isMap, isNode, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import schemaJson from '../../../schema/vmm-config.schema.json' with { type: 'json' };
import type {
  CharSink,
  DebugConsoleDevice,
  DebugSink,
  SerialPortDevice,
  VmmConfig,
} from '../../generated/vmm-config.js';
import { ConfigError, type ConfigProblem } from './errors.js';
import { SIZE_PATTERN, formatSize, parseSize } from './size.js';
import type {
  CpuModel,
  ResolvedCharSink,
  ResolvedCpu,
  ResolvedDebugSink,
  ResolvedDevice,
  ResolvedVmmConfig,
} from './types.js';

export { ConfigError, formatProblem, type ConfigProblem } from './errors.js';
export { SIZE_PATTERN, formatSize, parseSize } from './size.js';
export type * from './types.js';
export type { VmmConfig } from '../../generated/vmm-config.js';

/**
 * Defaults for optional fields (the schema's `default` annotations say the
 * same; a unit test checks they agree).
 */
export const VMM_CONFIG_DEFAULTS = {
  memory: '128M',
  vcpus: 1,
  cpu: 'host',
  cmdline: '',
  serial: 'stdio',
  debugConsole: 'none',
  onReset: 'exit',
  onTripleFault: 'stop',
  devices: [],
} as const satisfies Partial<VmmConfig>;

/** Reads, validates and normalises a VMM config file. Throws `ConfigError`. */
export function loadVmmConfig(path: string): ResolvedVmmConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError([{ file: path, message: `cannot read config file: ${fileErrorReason(e)}` }]);
  }
  return parseVmmConfig(text, path);
}

/**
 * Validates and normalises config text. `path` names the file in messages;
 * relative paths in the config are resolved against its directory.
 */
export function parseVmmConfig(text: string, path: string): ResolvedVmmConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (line: number, col: number) => ({ file: path, line, col });

  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((err) => {
        const pos = lineCounter.linePos(err.pos[0]);
        const message =
          err.code === 'MULTIPLE_DOCS'
            ? "a config file holds one YAML document ('---' starts another)"
            : firstLine(err.message);
        return { ...at(pos.line, pos.col), message };
      }),
    );
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    throw new ConfigError([{ ...at(1, 1), message: e instanceof Error ? e.message : String(e) }]);
  }

  const toProblem = (p: RawProblem): ConfigProblem => {
    const pos = locate(doc, lineCounter, p.at, p.atKey);
    return { ...at(pos.line, pos.col), path: formatPath(p.path), message: p.message };
  };

  const validate = rootValidator();
  if (!validate(data)) throw new ConfigError(sortProblems(dedupe(explain('', data, []).map(toProblem))));

  const problems: RawProblem[] = [];
  const resolved = normalise(data, resolvePath(path), problems);
  if (problems.length > 0) throw new ConfigError(sortProblems(dedupe(problems.map(toProblem))));
  return resolved;
}

/**
 * Parses a `--serial` override: `stdio`, `none`, `file:PATH` or
 * `socket:PATH` (relative paths against `baseDir`). Throws `ConfigError`.
 */
/** Resolves a path from a config: `~/` is the user's home, relative paths are against `base`. */
function resolvePath(base: string, p?: string): string {
  if (p === undefined) return resolve(base);
  if (p === '~' || p.startsWith('~/')) return join(homedir(), p.slice(1));
  return resolve(base, p);
}

export function parseCharSinkSpec(spec: string, baseDir: string = process.cwd()): ResolvedCharSink {
  if (spec === 'stdio' || spec === 'none') return { kind: spec };
  const m = /^(file|socket):(.+)$/.exec(spec);
  if (m?.[1] === 'file' || m?.[1] === 'socket') return { kind: m[1], path: resolvePath(baseDir, m[2] ?? '') };
  throw new ConfigError([
    {
      file: '--serial',
      message: `invalid value ${JSON.stringify(spec)}: expected stdio, none, file:PATH or socket:PATH`,
    },
  ]);
}

/**
 * Parses a CPU spec `<model>[,+feature|-feature...]` such as
 * `baseline,-cx16,+xsaveerptr`. Throws an Error with a one-line message.
 */
export function parseCpuSpec(spec: string): ResolvedCpu {
  const [model = '', ...items] = spec.split(',');
  return { model: cpuModel(model), features: cpuFeatures(items) };
}

// ---------------------------------------------------------------------------
// Schema access

interface SchemaNode {
  $id?: string;
  $ref?: string;
  title?: string;
  description?: string;
  type?: string | readonly string[];
  enum?: readonly unknown[];
  const?: unknown;
  default?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  multipleOf?: number;
  properties?: Readonly<Record<string, SchemaNode>>;
  required?: readonly string[];
  additionalProperties?: boolean;
  items?: SchemaNode;
  oneOf?: readonly SchemaNode[];
  anyOf?: readonly SchemaNode[];
  definitions?: Readonly<Record<string, SchemaNode>>;
}

const SCHEMA: SchemaNode = schemaJson;
const SCHEMA_ID = SCHEMA.$id ?? 'vmm-config';

/** The schema node at a JSON pointer ('' is the root). */
function schemaAt(pointer: string): SchemaNode {
  let node: unknown = SCHEMA;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (typeof node !== 'object' || node === null || !(seg in node)) {
      throw new Error(`internal: no schema at ${pointer}`);
    }
    node = (node as Record<string, unknown>)[seg];
  }
  return node as SchemaNode;
}

/** Follows `$ref`s (local ones only: `#/definitions/...`) to the pointer of the real schema. */
function deref(pointer: string): string {
  for (let i = 0; i < 32; i++) {
    const ref = schemaAt(pointer).$ref;
    if (ref === undefined) return pointer;
    if (!ref.startsWith('#')) throw new Error(`internal: non-local $ref ${ref}`);
    pointer = ref.slice(1);
  }
  throw new Error(`internal: $ref loop at ${pointer}`);
}

function escapePointer(seg: string): string {
  return seg.replace(/~/g, '~0').replace(/\//g, '~1');
}

let ajv: Ajv | undefined;
const validators = new Map<string, ValidateFunction>();

function getAjv(): Ajv {
  if (!ajv) {
    ajv = new Ajv({ allErrors: true, verbose: true, allowUnionTypes: true, strict: true });
    ajv.addSchema(schemaJson, SCHEMA_ID);
  }
  return ajv;
}

function rootValidator(): ValidateFunction<VmmConfig> {
  const v = getAjv().getSchema<VmmConfig>(SCHEMA_ID);
  if (!v) throw new Error('internal: VMM config schema did not compile');
  return v;
}

/** A validator for the sub-schema at `pointer` (compiled once). */
function validatorAt(pointer: string): ValidateFunction {
  let v = validators.get(pointer);
  if (!v) {
    v = pointer === '' ? rootValidator() : getAjv().getSchema(`${SCHEMA_ID}#${pointer}`);
    if (!v) throw new Error(`internal: cannot compile schema at ${pointer}`);
    validators.set(pointer, v);
  }
  return v;
}

// ---------------------------------------------------------------------------
// Explaining validation errors

type Segment = string | number;

interface RawProblem {
  /** Field path shown in the message. */
  path: Segment[];
  /** Where to point in the YAML (closest existing node is used). */
  at: Segment[];
  /** Point at the key of the last segment rather than its value. */
  atKey: boolean;
  message: string;
}

function problem(path: Segment[], message: string, at: Segment[] = path, atKey = false): RawProblem {
  return { path, at, atKey, message };
}

/** Problems of `data` (found at `base`) against the schema at `pointer`. */
function explain(pointer: string, data: unknown, base: Segment[]): RawProblem[] {
  const validate = validatorAt(pointer);
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
    const unionPointer = schemaPointerAt(pointer, data, rel);
    const path = [...base, ...rel];
    out.push(
      ...(unionPointer === undefined
        ? [problem(path, e.message ?? 'invalid value')]
        : explainUnion(unionPointer, valueAt(data, rel), path, e)),
    );
  }
  for (const e of errors) {
    if (isUnionError(e)) continue;
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

function branchPointers(pointer: string): string[] {
  const node = schemaAt(pointer);
  const key = unionKey(node);
  return key ? (node[key] ?? []).map((_, i) => `${pointer}/${key}/${i}`) : [];
}

function explainUnion(pointer: string, value: unknown, path: Segment[], e: ErrorObject): RawProblem[] {
  const branches = branchPointers(pointer);
  const passing: unknown = e.params.passingSchemas;
  if (Array.isArray(passing)) return [problem(path, 'matches more than one of the allowed forms')];
  const choice = chooseBranch(branches, value);
  const mismatch = () =>
    problem(path, `expected ${describeAlternatives(branches)}, got ${describeValue(value, path)}`);
  switch (choice.kind) {
    case 'branch': {
      const branch = branches[choice.index] ?? '';
      if (isLiteral(schemaAt(deref(branch)))) return [mismatch()];
      const inner = explain(branch, value, path);
      return inner.length > 0 ? inner : [mismatch()];
    }
    case 'unknownTag': {
      const noun = definitionName(pointer);
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

/** `Device` for `/definitions/Device` (lower-cased, for messages), else ''. */
function definitionName(pointer: string): string {
  const m = /^\/definitions\/([^/]+)$/.exec(pointer);
  return m?.[1] ? m[1].replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase() : '';
}

/** Picks the alternative of a union that `value` was evidently meant to be. */
function chooseBranch(branches: string[], value: unknown): BranchChoice {
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

function describeAlternatives(branches: string[]): string {
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

function describeValue(v: unknown, path: readonly Segment[] = []): string {
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

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** One readable message for one (non-union) ajv error. */
function explainError(e: ErrorObject, path: Segment[]): RawProblem {
  const parent = e.parentSchema as SchemaNode | undefined;
  const data: unknown = e.data;
  const params: Record<string, unknown> = e.params;
  const isSize = parent?.pattern === SIZE_PATTERN;
  switch (e.keyword) {
    case 'required':
      return problem([...path, String(params.missingProperty)], 'missing required field', path);
    case 'additionalProperties': {
      const name = String(params.additionalProperty);
      const known = Object.keys(parent?.properties ?? {});
      return problem([...path, name], unknownFieldMessage(name, known), [...path, name], true);
    }
    case 'type':
      if (path.length === 0 && (data === null || data === undefined)) {
        return problem(path, 'the config is empty (expected a mapping with at least name and kernel)');
      }
      if (isSize) return problem(path, sizeCheck(data, parent).problem ?? 'invalid size');
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
    case 'pattern':
      return problem(path, patternMessage(String(params.pattern), data, parent));
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

function patternMessage(pattern: string, data: unknown, parent: SchemaNode | undefined): string {
  const text = describeValue(data);
  if (pattern === SIZE_PATTERN) return sizeCheck(data, parent).problem ?? `invalid size ${text}`;
  if (pattern === schemaAt('/definitions/CpuSpec').pattern && typeof data === 'string') {
    try {
      parseCpuSpec(data);
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }
  if (pattern === schemaAt('/definitions/CpuObject/properties/features/items').pattern) {
    return `invalid CPU feature ${text}: expected +name or -name`;
  }
  if (pattern === schemaAt('/properties/name').pattern) {
    return `invalid name ${text}: use 1-63 lowercase letters, digits or '-', starting with a letter or digit`;
  }
  return `invalid value ${text} (must match ${pattern})`;
}

function unknownFieldMessage(name: string, known: readonly string[]): string {
  const close = known
    .map((k) => ({ k, d: editDistance(name.toLowerCase(), k.toLowerCase()) }))
    .filter(({ d }) => d <= Math.max(1, Math.min(2, Math.floor(name.length / 3))))
    .sort((a, b) => a.d - b.d)[0];
  if (close) return `unknown field (did you mean ${JSON.stringify(close.k)}?)`;
  return `unknown field (known fields: ${known.join(', ')})`;
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

/** Converts an ajv instancePath (`/devices/0/port`) into segments (array indices as numbers). */
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
 * The pointer of the schema that applies to the value at `rel` below the
 * value validated by the schema at `pointer` (through properties, items, and
 * the alternative of any union on the way that the value satisfies).
 */
function schemaPointerAt(pointer: string, data: unknown, rel: readonly Segment[]): string | undefined {
  let p = deref(pointer);
  let d = data;
  for (const seg of rel) {
    p = throughUnions(p, d);
    const node = schemaAt(p);
    if (typeof seg === 'number' && node.items) p = deref(`${p}/items`);
    else if (typeof seg === 'string' && node.properties?.[seg])
      p = deref(`${p}/properties/${escapePointer(seg)}`);
    else return undefined;
    d = child(d, seg);
  }
  return p;
}

function throughUnions(pointer: string, value: unknown): string {
  for (let depth = 0; depth < 8 && unionKey(schemaAt(pointer)); depth++) {
    const branches = branchPointers(pointer);
    const valid = branches.find((b) => validatorAt(b)(value));
    let next = valid;
    if (next === undefined) {
      const choice = chooseBranch(branches, value);
      next = choice.kind === 'branch' ? branches[choice.index] : undefined;
    }
    if (next === undefined) return pointer;
    pointer = deref(next);
  }
  return pointer;
}

// ---------------------------------------------------------------------------
// Source positions

function locate(
  doc: Document,
  lc: LineCounter,
  at: readonly Segment[],
  atKey: boolean,
): { line: number; col: number } {
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  for (let i = 0; i < at.length; i++) {
    if (isAlias(node)) node = node.resolve(doc);
    const seg = at[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => keyName(p.key) === String(seg));
      if (!pair) break;
      const last = i === at.length - 1;
      if ((last && atKey) || !isNode(pair.value)) {
        offset = rangeStart(pair.key) ?? offset;
        break;
      }
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item: unknown = node.items[seg];
      if (!isNode(item)) break;
      node = item;
    } else {
      break;
    }
    offset = rangeStart(node) ?? offset;
  }
  const pos = lc.linePos(offset);
  return { line: pos.line, col: pos.col };
}

function rangeStart(n: unknown): number | undefined {
  return isNode(n) && n.range ? n.range[0] : undefined;
}

function keyName(k: unknown): string {
  if (isScalar(k)) return String(k.value);
  return k === null || k === undefined ? '' : String(k);
}

function formatPath(path: readonly Segment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

function firstLine(s: string): string {
  return s.split('\n')[0]?.trim() ?? s;
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.line}:${p.col}:${p.path}:${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return [...problems].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------
// Normalisation (on schema-valid data)

interface SizeCheck {
  bytes?: number;
  problem?: string;
}

/** Parses a size and checks it against a size schema's minimum, maximum and multipleOf. */
function sizeCheck(value: unknown, schema: SchemaNode | undefined): SizeCheck {
  if (typeof value !== 'string' && typeof value !== 'number') {
    return { problem: `expected a size (bytes, or a string such as 128M), got ${describeValue(value)}` };
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

const CPU_MODELS: readonly CpuModel[] = ['host', 'baseline'];
const FEATURE_RE = /^[+-][a-z0-9][a-z0-9_.-]*$/;

function cpuModel(model: string): CpuModel {
  const m = CPU_MODELS.find((k) => k === model);
  if (!m) throw new Error(`unknown CPU model ${JSON.stringify(model)} (known: ${CPU_MODELS.join(', ')})`);
  return m;
}

function cpuFeatures(items: readonly string[]): Record<string, boolean> {
  const features: Record<string, boolean> = {};
  for (const item of items) {
    if (!FEATURE_RE.test(item)) {
      throw new Error(`invalid CPU feature ${JSON.stringify(item)}: expected +name or -name`);
    }
    const name = item.slice(1);
    const on = item[0] === '+';
    if (name in features && features[name] !== on) {
      throw new Error(`CPU feature ${JSON.stringify(name)} is both added and removed`);
    }
    features[name] = on;
  }
  return features;
}

function fileErrorReason(e: unknown): string {
  const code = isRecord(e) ? e.code : undefined;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return e instanceof Error ? e.message : String(e);
}

/** Why a file cannot be read, or undefined if it can. */
function unreadable(path: string): string | undefined {
  try {
    const st = statSync(path);
    if (st.isDirectory()) return 'is a directory';
    if (!st.isFile()) return 'not a regular file';
    accessSync(path, fsConstants.R_OK);
    return undefined;
  } catch (e) {
    return fileErrorReason(e);
  }
}

function normalise(config: VmmConfig, configPath: string, problems: RawProblem[]): ResolvedVmmConfig {
  const baseDir = dirname(configPath);
  const abs = (p: string) => resolvePath(baseDir, p);

  const memory = sizeCheck(config.memory ?? VMM_CONFIG_DEFAULTS.memory, schemaAt('/definitions/MemorySize'));
  if (memory.problem !== undefined) problems.push(problem(['memory'], memory.problem));

  let cpu: ResolvedCpu = { model: 'host', features: {} };
  const cpuIn = config.cpu ?? VMM_CONFIG_DEFAULTS.cpu;
  if (typeof cpuIn === 'string') {
    try {
      cpu = parseCpuSpec(cpuIn);
    } catch (e) {
      problems.push(problem(['cpu'], e instanceof Error ? e.message : String(e)));
    }
  } else {
    const list = cpuIn.features ?? [];
    try {
      cpu = { model: cpuIn.model, features: cpuFeatures(list) };
    } catch (e) {
      problems.push(problem(['cpu', 'features'], e instanceof Error ? e.message : String(e)));
    }
  }

  const kernel = abs(config.kernel);
  const kernelProblem = unreadable(kernel);
  if (kernelProblem) problems.push(problem(['kernel'], `${kernel}: ${kernelProblem}`));
  let initrd: string | undefined;
  if (config.initrd !== undefined) {
    initrd = abs(config.initrd);
    const initrdProblem = unreadable(initrd);
    if (initrdProblem) problems.push(problem(['initrd'], `${initrd}: ${initrdProblem}`));
  }

  const cmdline = config.cmdline ?? VMM_CONFIG_DEFAULTS.cmdline;
  const maxCmdline = schemaAt('/properties/cmdline').maxLength ?? Infinity;
  const cmdlineBytes = Buffer.byteLength(cmdline, 'utf8');
  if (cmdlineBytes > maxCmdline) {
    problems.push(problem(['cmdline'], `too long: ${cmdlineBytes} bytes (at most ${maxCmdline})`));
  }

  const charSink = (s: CharSink): ResolvedCharSink => {
    if (typeof s === 'string') return { kind: s };
    return 'file' in s ? { kind: 'file', path: abs(s.file) } : { kind: 'socket', path: abs(s.socket) };
  };
  const debugSink = (s: DebugSink): ResolvedDebugSink => {
    if (typeof s === 'string') return { kind: s };
    return { kind: 'file', path: abs(s.file) };
  };

  const serial = charSink(config.serial ?? VMM_CONFIG_DEFAULTS.serial);
  const debugConsole = debugSink(config.debugConsole ?? VMM_CONFIG_DEFAULTS.debugConsole);

  // I/O port ranges in use, to catch two devices on the same ports.
  const ports: { start: number; end: number; owner: string }[] = [
    { start: 0x3f8, end: 0x400, owner: 'the COM1 serial port (serial)' },
  ];
  if (debugConsole.kind !== 'none') ports.push({ start: 0x402, end: 0x403, owner: 'debugConsole' });
  const stdioUsers: string[] = serial.kind === 'stdio' ? ['serial'] : [];

  const devices: ResolvedDevice[] = [];
  const devicesIn = config.devices ?? [];
  devicesIn.forEach((d, i) => {
    const path: Segment[] = ['devices', i];
    const label = `${formatPath(path)} (${d.class})`;
    const claim = (start: number, len: number) => {
      const clash = ports.find((r) => start < r.end && r.start < start + len);
      if (clash)
        problems.push(problem([...path, 'port'], `port ${hex(start)} is already used by ${clash.owner}`));
      else ports.push({ start, end: start + len, owner: label });
    };
    if (d.class === 'serial-port') {
      const dev = d satisfies SerialPortDevice;
      const sink = charSink(dev.serial ?? 'none');
      if (sink.kind === 'stdio') {
        if (stdioUsers.length > 0) {
          problems.push(problem([...path, 'serial'], `stdio is already used by ${stdioUsers[0]}`));
        }
        stdioUsers.push(formatPath([...path, 'serial']));
      }
      claim(dev.port, 8);
      devices.push({
        class: 'serial-port',
        port: dev.port,
        irq: dev.irq ?? (dev.port === 0x3e8 ? 4 : 3),
        serial: sink,
      });
    } else {
      const dev = d satisfies DebugConsoleDevice;
      claim(dev.port, 1);
      devices.push({ class: 'debug-console', port: dev.port, output: debugSink(dev.output ?? 'stderr') });
    }
  });

  const resolved: ResolvedVmmConfig = {
    name: config.name,
    configPath,
    memory: memory.bytes ?? 0,
    vcpus: config.vcpus ?? VMM_CONFIG_DEFAULTS.vcpus,
    cpu,
    kernel,
    cmdline,
    serial,
    debugConsole,
    onReset: config.onReset ?? VMM_CONFIG_DEFAULTS.onReset,
    onTripleFault: config.onTripleFault ?? VMM_CONFIG_DEFAULTS.onTripleFault,
    devices,
  };
  if (initrd !== undefined) resolved.initrd = initrd;
  return resolved;
}
