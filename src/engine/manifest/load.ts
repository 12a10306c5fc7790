/**
 * Loads manifests: files, directories (their *.yaml and *.yml files, sorted,
 * not recursive) or `-` (stdin), each holding one or more YAML documents.
 * Every document is validated against the JSON Schema of its kind
 * (schema/manifests/*.schema.json, the single source of truth) and
 * normalised (./normalise.ts); then the set is checked as a whole: no two
 * resources of a kind with the same name, and every reference (a VM's disks,
 * networks and host, a VFIO assignment's VM and host) names a resource that
 * exists (the host `local` always does).
 *
 * All problems of all files are collected, then thrown as one
 * `ManifestError`, one line per problem:
 *   `file:line:col: Kind/name: spec.path: message`
 */
import { readdirSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { LineCounter, isScalar, parseAllDocuments, type Document } from 'yaml';
import { MANIFEST_LIMITS, checkManifestBytes, readBounded, readFileBounded, tooLarge } from './limits.js';
import {
  closest,
  describeValue,
  firstLine,
  formatPath,
  isRecord,
  locateNode,
  problem,
  type RawProblem,
  type Segment,
} from '../../common/yaml-schema-errors.js';
import {
  API_VERSION,
  KINDS,
  resourceKey,
  type DesiredResource,
  type Kind,
  type ResourceId,
  type SourcePos,
} from '../types.js';
import { ManifestError, type ManifestProblem } from './errors.js';
import { checkSizeStrings, explain } from './explain.js';
import { normaliseSpec } from './normalise.js';
import { fastParse } from './fast-yaml.js';
import { ENVELOPE_URI, KIND_SCHEMA_URI } from './schemas.js';
import { LOCAL_HOST, type NormalizedSpecs } from './types.js';

export { formatPath } from '../../common/yaml-schema-errors.js';
export { ManifestError, formatManifestProblem, type ManifestProblem } from './errors.js';
export { isGrowOnly, updatePolicy, updateRule, type UpdateRule } from './schemas.js';
export { canonicalCidr, canonicalCpu, parseDuration, resolveManifestPath } from './normalise.js';
export * from './types.js';

export interface LoadManifestsOptions {
  /** The text `-` stands for (default: read from the process's stdin). */
  stdin?: string;
  /** Directory relative inputs and stdin's relative paths are resolved against (default: process.cwd()). */
  cwd?: string;
}

/** The file name problems in stdin's manifests show. */
export const STDIN_NAME = '<stdin>';

/**
 * Reads, validates and normalises manifests. `inputs` are files, directories
 * or `-` (stdin). Returns the resources in input order (files in order, the
 * documents of a file in order). Throws `ManifestError`.
 */
export function loadManifests(inputs: readonly string[], opts: LoadManifestsOptions = {}): DesiredResource[] {
  const cwd = opts.cwd ?? process.cwd();
  const problems: SortableProblem[] = [];
  const sources = expandInputs(inputs, cwd, opts, problems);

  const docs: LoadedDoc[] = [];
  sources.forEach((src, fileIndex) => {
    if (src.text !== undefined) docs.push(...parseSource(src, fileIndex, problems));
  });

  checkDuplicates(docs, problems);
  checkReferences(docs, problems);

  if (problems.length > 0) {
    const sorted = problems
      .map((p, i) => ({ p, i }))
      .sort(
        (a, b) =>
          a.p.fileIndex - b.p.fileIndex ||
          (a.p.line ?? 0) - (b.p.line ?? 0) ||
          (a.p.col ?? 0) - (b.p.col ?? 0) ||
          a.i - b.i,
      )
      .map(({ p }) => withoutIndex(p));
    throw new ManifestError(dedupe(sorted));
  }
  return docs.flatMap((d) => (d.resource ? [d.resource] : []));
}

/**
 * Where a field of a loaded resource is in its manifest: `path` is relative
 * to the spec (`['size']`), or starts with `metadata`. Falls back to the
 * position of the document (or `resource.source` for a resource that did not
 * come from `loadManifests`).
 */
export function fieldSource(resource: DesiredResource, path: readonly Segment[] = []): SourcePos {
  const loc = LOCATORS.get(resource);
  if (!loc) return resource.source;
  const at: Segment[] = path[0] === 'metadata' ? [...path] : ['spec', ...path];
  return loc(at);
}

/**
 * A problem about a field of a loaded resource, in the same form as the
 * loader's (for the planner: `file:line:col: Disk/data: spec.size: cannot shrink...`).
 */
export function resourceProblem(
  resource: DesiredResource,
  path: readonly Segment[],
  message: string,
): ManifestProblem {
  const pos = fieldSource(resource, path);
  const full: Segment[] = path[0] === 'metadata' ? [...path] : ['spec', ...path];
  return {
    file: pos.file,
    line: pos.line,
    col: pos.col,
    resource: resourceKey(resource),
    path: formatPath(full),
    message,
  };
}

// ---------------------------------------------------------------------------
// Inputs

interface Source {
  /** As shown in messages. */
  name: string;
  /** Relative paths in its manifests are resolved against this directory. */
  baseDir: string;
  /** Undefined when it could not be read (a problem was recorded). */
  text?: string;
}

interface SortableProblem extends ManifestProblem {
  fileIndex: number;
}

function withoutIndex(p: SortableProblem): ManifestProblem {
  const { fileIndex: _fileIndex, ...rest } = p;
  return rest;
}

function dedupe(problems: ManifestProblem[]): ManifestProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = JSON.stringify([p.file, p.line, p.col, p.resource, p.path, p.message]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function expandInputs(
  inputs: readonly string[],
  cwd: string,
  opts: LoadManifestsOptions,
  problems: SortableProblem[],
): Source[] {
  const sources: Source[] = [];
  const seen = new Set<string>();
  const fail = (name: string, message: string) => {
    sources.push({ name, baseDir: cwd });
    problems.push({ fileIndex: sources.length - 1, file: name, message });
  };
  const addFile = (name: string, abs: string) => {
    let key = abs;
    try {
      key = realpathSync(abs);
    } catch {
      // Reported by the read below.
    }
    if (seen.has(key)) return;
    seen.add(key);
    let bytes: Buffer;
    try {
      const size = statSync(abs).size;
      if (size > MANIFEST_LIMITS.maxBytes) {
        fail(name, tooLarge(size));
        return;
      }
      bytes = readFileBounded(abs);
    } catch (e) {
      fail(name, `cannot read: ${fileErrorReason(e)}`);
      return;
    }
    addText(name, dirname(abs), bytes);
  };
  const addText = (name: string, baseDir: string, bytes: Buffer) => {
    const checked = checkManifestBytes(bytes);
    if ('text' in checked) {
      sources.push({ name, baseDir, text: checked.text });
      return;
    }
    sources.push({ name, baseDir });
    problems.push({
      fileIndex: sources.length - 1,
      file: name,
      ...(checked.line !== undefined ? { line: checked.line, col: checked.col ?? 1 } : {}),
      message: checked.problem,
    });
  };

  for (const input of inputs) {
    if (input === '-') {
      if (seen.has('-')) {
        fail(STDIN_NAME, "'-' (stdin) is given more than once");
        continue;
      }
      seen.add('-');
      let bytes: Buffer;
      try {
        bytes = opts.stdin !== undefined ? Buffer.from(opts.stdin, 'utf8') : readBounded(0);
      } catch (e) {
        fail(STDIN_NAME, `cannot read: ${fileErrorReason(e)}`);
        continue;
      }
      addText(STDIN_NAME, cwd, bytes);
      continue;
    }
    const abs = resolve(cwd, input);
    let isDir = false;
    try {
      isDir = statSync(abs).isDirectory();
    } catch (e) {
      fail(input, `cannot read: ${fileErrorReason(e)}`);
      continue;
    }
    if (!isDir) {
      addFile(input, abs);
      continue;
    }
    let names: string[];
    try {
      names = readdirSync(abs, { withFileTypes: true })
        .filter((e) => !e.isDirectory() && /\.ya?ml$/.test(e.name))
        .map((e) => e.name)
        .sort();
    } catch (e) {
      fail(input, `cannot read directory: ${fileErrorReason(e)}`);
      continue;
    }
    if (names.length === 0) fail(input, 'no manifests in this directory (no *.yaml or *.yml files)');
    for (const n of names) addFile(join(input, n), join(abs, n));
  }
  return sources;
}

function fileErrorReason(e: unknown): string {
  const code = isRecord(e) ? e.code : undefined;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'no such file or directory';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------
// Documents

type Locator = (at: readonly Segment[], atKey?: boolean) => SourcePos;

/** Source positions of the fields of each loaded resource. */
const LOCATORS = new WeakMap<DesiredResource, Locator>();

interface LoadedDoc {
  fileIndex: number;
  /** `Kind/name` for messages (`?` for a missing or invalid part). */
  label: string;
  /** Set when kind and name are valid (even if the rest is not): for duplicate and reference checks. */
  id?: ResourceId;
  locate: Locator;
  /** The loaded resource, when the document is valid. */
  resource?: DesiredResource;
}

function parseSource(src: Source, fileIndex: number, problems: SortableProblem[]): LoadedDoc[] {
  const text = src.text ?? '';
  const fast = fastParse(text);
  if (fast) {
    // Valid documents need positions only for later messages: `yaml` reads the file again then.
    let slow: Document[] | undefined;
    const slowDocs = () => {
      if (slow) return slow;
      const lineCounter = new LineCounter();
      const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
      slow = docs.filter((d) => !isEmptyDoc(d));
      SLOW_COUNTERS.set(slow, lineCounter);
      return slow;
    };
    const found: SortableProblem[] = [];
    const out: LoadedDoc[] = [];
    fast.forEach((d, i) => {
      const start: SourcePos = { file: src.name, line: d.line, col: d.col };
      const locate: Locator = (at, atKey = false) => {
        if (at.length === 0 && !atKey) return start;
        const docs = slowDocs();
        const doc = docs[i];
        const lc = SLOW_COUNTERS.get(docs);
        if (!doc || !lc || doc.errors.length > 0) return start;
        const { line, col } = locateNode(doc, lc, at, atKey);
        return { file: src.name, line, col };
      };
      const loaded = loadValue(d.value, locate, src, fileIndex, found);
      if (loaded) out.push(loaded);
    });
    // A file with a problem is read again with `yaml`: every message and position from one parser.
    if (found.length === 0) return out;
  }
  const lineCounter = new LineCounter();
  const parsed = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const out: LoadedDoc[] = [];
  for (const doc of parsed) {
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        const pos = lineCounter.linePos(err.pos[0]);
        problems.push({
          fileIndex,
          file: src.name,
          line: pos.line,
          col: pos.col,
          message: firstLine(err.message),
        });
      }
      continue;
    }
    // An empty document (e.g. after a trailing `---`, or only comments).
    if (isEmptyDoc(doc)) continue;
    const locate: Locator = (at, atKey = false) => {
      const { line, col } = locateNode(doc, lineCounter, at, atKey);
      return { file: src.name, line, col };
    };
    let data: unknown;
    try {
      data = doc.toJS({ maxAliasCount: MANIFEST_LIMITS.maxAliases });
    } catch (e) {
      const pos = locate([]);
      problems.push({ fileIndex, ...pos, message: e instanceof Error ? e.message : String(e) });
      continue;
    }
    const loaded = loadValue(data, locate, src, fileIndex, problems);
    if (loaded) out.push(loaded);
  }
  return out;
}

const SLOW_COUNTERS = new WeakMap<Document[], LineCounter>();

function isEmptyDoc(doc: Document): boolean {
  return doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null);
}

/** Validates and normalises one document's value; problems are reported at `locate`'s positions. */
function loadValue(
  data: unknown,
  locate: Locator,
  src: Source,
  fileIndex: number,
  problems: SortableProblem[],
): LoadedDoc | undefined {
  const report = (label: string | undefined, raw: readonly RawProblem[]) => {
    for (const p of raw) {
      const pos = locate(p.at, p.atKey);
      const path = formatPath(p.path);
      problems.push({
        fileIndex,
        ...pos,
        ...(label !== undefined ? { resource: label } : {}),
        ...(path !== '' ? { path } : {}),
        message: p.message,
      });
    }
  };

  if (!isRecord(data)) {
    report(undefined, [
      problem(
        [],
        `expected a manifest (a mapping with apiVersion, kind, metadata and spec), got ${describeValue(data)}`,
      ),
    ]);
    return undefined;
  }

  const kind = KINDS.find((k) => k === data.kind);
  const metadata = data.metadata;
  const rawName = isRecord(metadata) ? metadata.name : undefined;
  const label = `${typeof data.kind === 'string' && data.kind !== '' ? data.kind : '?'}/${
    typeof rawName === 'string' && rawName !== '' ? rawName : '?'
  }`;

  const schemaUri = kind ? KIND_SCHEMA_URI[kind] : ENVELOPE_URI;
  const schemaProblems = [...explain(schemaUri, data), ...checkSizeStrings(schemaUri, data)];
  // A valid kind and name identify the document even when the rest is wrong
  // (so that references to it do not fail as well).
  const nameValid = !schemaProblems.some((p) => formatPath(p.path).startsWith('metadata.name'));
  const id = kind && typeof rawName === 'string' && nameValid ? { kind, name: rawName } : undefined;
  const loaded: LoadedDoc = { fileIndex, label, locate, ...(id ? { id } : {}) };
  if (schemaProblems.length > 0 || !kind || !id) {
    // Without kind and name, `?/?` would only be noise.
    report(label === '?/?' ? undefined : label, schemaProblems);
    return loaded;
  }

  const raw: RawProblem[] = [];
  const spec = normaliseSpec(kind, data.spec ?? {}, { baseDir: src.baseDir, problems: raw, name: id.name });
  if (raw.length > 0) {
    report(label, raw);
    return loaded;
  }

  const labelsIn = isRecord(metadata) && isRecord(metadata.labels) ? metadata.labels : {};
  const labels: Record<string, string> = {};
  for (const k of Object.keys(labelsIn).sort()) labels[k] = String(labelsIn[k]);

  const resource: DesiredResource = {
    kind,
    name: id.name,
    apiVersion: API_VERSION,
    labels,
    spec: spec as Record<string, unknown>,
    source: locate([]),
    dependsOn: [],
  };
  LOCATORS.set(resource, locate);
  loaded.resource = resource;
  return loaded;
}

// ---------------------------------------------------------------------------
// Checks across documents

function checkDuplicates(docs: readonly LoadedDoc[], problems: SortableProblem[]): void {
  const first = new Map<string, LoadedDoc>();
  for (const d of docs) {
    if (!d.id) continue;
    const key = resourceKey(d.id);
    const prev = first.get(key);
    if (!prev) {
      first.set(key, d);
      continue;
    }
    const at = prev.locate(['metadata', 'name']);
    problems.push({
      fileIndex: d.fileIndex,
      ...d.locate(['metadata', 'name']),
      resource: d.label,
      path: 'metadata.name',
      message:
        `duplicate ${d.id.kind} named ${JSON.stringify(d.id.name)} ` +
        `(first defined at ${at.file}:${at.line}:${at.col})`,
    });
    // The duplicate is not loaded: one resource per kind and name.
    d.resource = undefined;
  }
}

interface Ref {
  kind: Kind;
  name: string;
  /** Path of the reference from the document root. */
  path: Segment[];
}

function referencesOf(r: DesiredResource): Ref[] {
  switch (r.kind) {
    case 'VirtualMachine': {
      const s = r.spec as NormalizedSpecs['VirtualMachine'];
      return [
        ...s.disks.map((d, i): Ref => ({ kind: 'Disk', name: d.disk, path: ['spec', 'disks', i, 'disk'] })),
        ...s.networks.map((n, i): Ref => ({
          kind: 'Network',
          name: n.network,
          path: ['spec', 'networks', i, 'network'],
        })),
        { kind: 'Host', name: s.host, path: ['spec', 'host'] },
      ];
    }
    case 'VfioAssignment': {
      const s = r.spec as NormalizedSpecs['VfioAssignment'];
      return [
        { kind: 'VirtualMachine', name: s.vm, path: ['spec', 'vm'] },
        { kind: 'Host', name: s.host, path: ['spec', 'host'] },
      ];
    }
    default:
      return [];
  }
}

function checkReferences(docs: readonly LoadedDoc[], problems: SortableProblem[]): void {
  const byKey = new Map<string, LoadedDoc>();
  for (const d of docs) if (d.id && !byKey.has(resourceKey(d.id))) byKey.set(resourceKey(d.id), d);
  const namesOf = (kind: Kind) => docs.flatMap((d) => (d.id?.kind === kind ? [d.id.name] : []));

  const push = (d: LoadedDoc, path: Segment[], message: string) =>
    problems.push({
      fileIndex: d.fileIndex,
      ...d.locate(path),
      resource: d.label,
      path: formatPath(path),
      message,
    });

  const pciUsers = new Map<string, LoadedDoc>();
  // Disks: who attaches each (a Disk a VM writes is attached by no other VM: the VMM locks it), and image paths.
  const diskUsers = new Map<string, { doc: LoadedDoc; writes: boolean }>();
  const diskPaths = new Map<string, LoadedDoc>();
  for (const d of docs) {
    const r = d.resource;
    if (!r) continue;
    const dependsOn: ResourceId[] = [];
    for (const ref of referencesOf(r)) {
      const implicit = ref.kind === 'Host' && ref.name === LOCAL_HOST;
      const target = byKey.get(resourceKey(ref));
      if (!target) {
        if (implicit) continue;
        const guess = closest(ref.name, namesOf(ref.kind));
        push(
          d,
          ref.path,
          `no ${ref.kind} named ${JSON.stringify(ref.name)}` +
            (guess !== undefined ? ` (did you mean ${JSON.stringify(guess)}?)` : ''),
        );
        continue;
      }
      if (!dependsOn.some((x) => x.kind === ref.kind && x.name === ref.name)) {
        dependsOn.push({ kind: ref.kind, name: ref.name });
      }
    }
    r.dependsOn = dependsOn;

    if (r.kind === 'Host' && r.name === LOCAL_HOST) {
      const s = r.spec as NormalizedSpecs['Host'];
      if (s.address !== LOCAL_HOST) {
        push(d, ['spec', 'address'], `the host named local is this machine: its address must be local`);
      }
    }
    if (r.kind === 'VirtualMachine') {
      const s = r.spec as NormalizedSpecs['VirtualMachine'];
      s.disks.forEach((a, i) => {
        const prev = diskUsers.get(a.disk);
        if (prev && (prev.writes || !a.readonly)) {
          const writer = prev.writes ? prev.doc.label : d.label;
          push(
            d,
            ['spec', 'disks', i, 'disk'],
            `Disk ${JSON.stringify(a.disk)} is also attached by ${prev.doc.label}, and ${writer} writes it; ` +
              'a Disk can be shared only when every VM attaches it read-only (readonly: true)',
          );
        } else if (!prev) diskUsers.set(a.disk, { doc: d, writes: !a.readonly });
      });
    }
    if (r.kind === 'Disk') {
      const s = r.spec as NormalizedSpecs['Disk'];
      if (s.path !== undefined) {
        const prev = diskPaths.get(s.path);
        if (prev) push(d, ['spec', 'path'], `${s.path} is already the file of ${prev.label}`);
        else diskPaths.set(s.path, d);
      }
    }
    if (r.kind === 'VfioAssignment') {
      const s = r.spec as NormalizedSpecs['VfioAssignment'];
      const vm = byKey.get(resourceKey({ kind: 'VirtualMachine', name: s.vm }))?.resource;
      const vmHost = vm ? (vm.spec as NormalizedSpecs['VirtualMachine']).host : undefined;
      if (vmHost !== undefined && vmHost !== s.host) {
        push(
          d,
          ['spec', 'host'],
          `VirtualMachine ${JSON.stringify(s.vm)} runs on host ${JSON.stringify(vmHost)}, ` +
            `not ${JSON.stringify(s.host)}`,
        );
      }
      const pciKey = `${s.host}/${s.address}`;
      const user = pciUsers.get(pciKey);
      if (user) {
        push(
          d,
          ['spec', 'address'],
          `PCI device ${s.address} on host ${JSON.stringify(s.host)} is already assigned by ${user.label}`,
        );
      } else pciUsers.set(pciKey, d);
    }
  }
}
