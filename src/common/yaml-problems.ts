/**
 * Problems in YAML documents, before and after they get a position: field
 * paths (`spec.disks[0].disk`), where a path is in a parsed document (line
 * and column), and the wording messages share (values, typos of field
 * names). Used by the schema explainer (./yaml-schema-errors.ts) and the
 * loaders.
 */
import { isAlias, isMap, isNode, isScalar, isSeq, type Document, type LineCounter } from 'yaml';

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

/** A value as shown in messages (a port, the last segment of `path`, in hex). */
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

/** `['spec', 'disks', 0, 'disk']` -> `spec.disks[0].disk`. */
export function formatPath(path: readonly Segment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

/** The first line of a (YAML parser's) multi-line message. */
export function firstLine(s: string): string {
  return s.split('\n')[0]?.trim() ?? s;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------
// Source positions

/**
 * The line and column (1-based) of the node at `at` in a YAML document (of
 * its key when `atKey`), or of the closest existing node above it.
 */
export function locateNode(
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

export function asStrings(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  return typeof v === 'string' ? v.split(',') : [];
}

export function joinOr(parts: readonly string[]): string {
  if (parts.length <= 1) return parts[0] ?? '';
  return `${parts.slice(0, -1).join(', ')} or ${parts[parts.length - 1]}`;
}

export function typeName(t: string): string {
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

// ---------------------------------------------------------------------------
// Data

/** Converts an ajv instancePath (`/spec/disks/0/disk`) into segments (array indices as numbers). */
export function instanceSegments(instancePath: string, data: unknown): Segment[] {
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

export function child(v: unknown, seg: Segment): unknown {
  if (Array.isArray(v) && typeof seg === 'number') return v[seg];
  if (isRecord(v)) return v[String(seg)];
  return undefined;
}

export function valueAt(v: unknown, path: readonly Segment[]): unknown {
  return path.reduce<unknown>((cur, seg) => child(cur, seg), v);
}

export function isPrefix(prefix: readonly Segment[], path: readonly Segment[]): boolean {
  return prefix.length <= path.length && prefix.every((s, i) => s === path[i]);
}
