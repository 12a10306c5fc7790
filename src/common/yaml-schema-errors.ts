/**
 * Readable, positioned explanations of JSON Schema (ajv) validation errors
 * in YAML documents, shared by the VMM config loader (src/vmm/config/load.ts)
 * and the manifest loader (src/engine/manifest/).
 *
 * This is hand-written because no library does it: ajv reports errors
 * against JSON pointers into the parsed data (and, for unions, one error per
 * alternative, which is unreadable), and `yaml` knows source positions but
 * nothing about schemas. Nothing maps one onto the other, picks the `oneOf`
 * alternative the user meant, or suggests the field name they meant.
 *
 * Every problem becomes a `RawProblem`: a field path for the message, and
 * where to point in the YAML (`locateNode` turns that into line and column).
 * A failing union (`oneOf`/`anyOf`) is explained by picking the alternative
 * the user obviously meant (by value type, by a `const` discriminator such
 * as `class`, or by the keys present) and re-validating against that
 * alternative alone.
 *
 * Schemas are addressed by string references that the caller defines (a
 * JSON pointer into one schema, or a `<$id>#<pointer>` URI across several):
 * the caller provides the navigation as a `SchemaAccess`.
 */
import type { ErrorObject, Options, ValidateFunction } from 'ajv';
import {
  acceptsKind,
  definitionName,
  isLiteral,
  jsonKind,
  unionKey,
  type SchemaNode,
} from './schema-nodes.js';
import {
  asStrings,
  child,
  describeValue,
  instanceSegments,
  isPrefix,
  isRecord,
  joinOr,
  problem,
  typeName,
  unknownFieldMessage,
  valueAt,
  type RawProblem,
  type Segment,
} from './yaml-problems.js';

export { escapePointer, schemaNodeAt, type SchemaNode } from './schema-nodes.js';

export {
  closest,
  describeValue,
  firstLine,
  formatPath,
  hex,
  isRecord,
  locateNode,
  problem,
  unknownFieldMessage,
  type RawProblem,
  type Segment,
} from './yaml-problems.js';

/**
 * The ajv options explanations rely on: every error at once (`allErrors`),
 * and the failing value and its schema in each error (`verbose`).
 */
export const EXPLAIN_AJV_OPTIONS = {
  allErrors: true,
  verbose: true,
  allowUnionTypes: true,
  strict: true,
} as const satisfies Options;

/** How the explainer finds its way around the caller's schemas. */
export interface SchemaAccess {
  /** The schema node a reference names. */
  schemaAt(ref: string): SchemaNode;
  /** Follows `$ref`s to the reference of the real schema. */
  deref(ref: string): string;
  /** `child(r, 'properties', 'memory')` is the reference of `r`'s property `memory`. */
  child(ref: string, ...segs: readonly Segment[]): string;
  /** A validator for the schema a reference names. */
  validatorAt(ref: string): ValidateFunction;
}

/** How sizes (`128M`, or a number of bytes) are written and read. */
export interface SizeSyntax {
  /** The `pattern` of size strings in the schemas. */
  pattern: string;
  /** Bytes of a size; throws an Error with a one-line message. */
  parse(value: string | number): number;
  format(bytes: number): string;
  /** A size string shown as an example in messages (`128M`). */
  example: string;
}

export interface ExplainOptions {
  sizes: SizeSyntax;
  /**
   * A message for a string that does not match `pattern` (other than the
   * size pattern), or undefined for the generic one (the schema's
   * `x-mvisor-expected` hint, else the pattern).
   */
  patternMessage?: (pattern: string, data: unknown) => string | undefined;
  /** The message for an empty document (null at the root), instead of a type mismatch. */
  emptyDocument?: string;
}

export interface SizeCheck {
  bytes?: number;
  problem?: string;
}

export interface SchemaErrorExplainer {
  /** Problems of `data` (found at `base`) against the schema at `ref`; [] if it is valid. */
  explain(ref: string, data: unknown, base?: Segment[]): RawProblem[];
  /**
   * The reference of the schema `value` is validated by at `ref`: through
   * each union, the alternative the value satisfies or was meant to be.
   */
  throughUnions(ref: string, value: unknown): string;
  /** Parses a size and checks it against a size schema's minimum, maximum and multipleOf. */
  sizeCheck(value: unknown, schema: SchemaNode | undefined): SizeCheck;
  /**
   * Range checks of size strings (`1M` for a memory of at least 2 MiB), which
   * the schema cannot do: walks `data` along the schema at `ref` (through the
   * alternative of each union the value was meant to be) and checks every
   * well-formed size string against its schema's minimum, maximum and
   * multipleOf. Runs on invalid documents too, so that all problems are
   * reported at once.
   */
  checkSizeStrings(ref: string, data: unknown, base?: Segment[]): RawProblem[];
}

type BranchChoice =
  | { kind: 'branch'; index: number }
  | { kind: 'unknownTag'; tag: string; known: unknown[] }
  | { kind: 'missingTag'; tag: string; known: unknown[] }
  | { kind: 'none' };

export function createSchemaErrorExplainer(
  schemas: SchemaAccess,
  options: ExplainOptions,
): SchemaErrorExplainer {
  const { schemaAt, deref, child: childRef, validatorAt } = schemas;
  const { sizes } = options;
  const sizeRe = new RegExp(sizes.pattern);

  function explain(ref: string, data: unknown, base: Segment[] = []): RawProblem[] {
    const validate = validatorAt(ref);
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
      const unionRef = schemaRefAt(ref, data, rel);
      const path = [...base, ...rel];
      out.push(
        ...(unionRef === undefined
          ? [problem(path, e.message ?? 'invalid value')]
          : explainUnion(unionRef, valueAt(data, rel), path, e)),
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

  function branchRefs(ref: string): string[] {
    const node = schemaAt(ref);
    const key = unionKey(node);
    return key ? (node[key] ?? []).map((_, i) => childRef(ref, key, i)) : [];
  }

  function explainUnion(ref: string, value: unknown, path: Segment[], e: ErrorObject): RawProblem[] {
    const branches = branchRefs(ref);
    const passing: unknown = e.params.passingSchemas;
    if (Array.isArray(passing)) return [problem(path, 'matches more than one of the allowed forms')];
    const choice = chooseBranch(branches, value);
    const mismatch = () =>
      problem(path, `expected ${describeAlternatives(branches)}, got ${describeValue(value, path)}`);
    switch (choice.kind) {
      case 'branch': {
        const branch = branches[choice.index] ?? ref;
        if (isLiteral(schemaAt(deref(branch)))) return [mismatch()];
        const inner = explain(branch, value, path);
        return inner.length > 0 ? inner : [mismatch()];
      }
      case 'unknownTag': {
        const noun = definitionName(ref);
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

  /** One readable message for one (non-union) ajv error. */
  function explainError(e: ErrorObject, path: Segment[]): RawProblem {
    const parent = e.parentSchema as SchemaNode | undefined;
    const data: unknown = e.data;
    const params: Record<string, unknown> = e.params;
    const isSize = parent?.pattern === sizes.pattern;
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
        if (
          options.emptyDocument !== undefined &&
          path.length === 0 &&
          (data === null || data === undefined)
        ) {
          return problem(path, options.emptyDocument);
        }
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
        return problem(
          path,
          `must be a multiple of ${String(params.multipleOf)}, got ${describeValue(data)}`,
        );
      case 'minLength':
        if (hint !== undefined) return problem(path, `expected ${hint}, got ${describeValue(data)}`);
        return problem(
          path,
          params.limit === 1
            ? 'must not be empty'
            : `must be at least ${String(params.limit)} characters long`,
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

  function patternMessage(pattern: string, data: unknown, parent: SchemaNode | undefined): string {
    const text = describeValue(data);
    if (pattern === sizes.pattern) return sizeCheck(data, parent).problem ?? `invalid size ${text}`;
    const special = options.patternMessage?.(pattern, data);
    if (special !== undefined) return special;
    const hint = parent?.['x-mvisor-expected'];
    if (hint !== undefined) return `invalid value ${text}: expected ${hint}`;
    return `invalid value ${text} (must match ${pattern})`;
  }

  /**
   * The reference of the schema that applies to the value at `rel` below the
   * value validated by the schema at `ref` (through properties, items, and the
   * alternative of any union on the way that the value satisfies).
   */
  function schemaRefAt(ref: string, data: unknown, rel: readonly Segment[]): string | undefined {
    let r = deref(ref);
    let d = data;
    for (const seg of rel) {
      r = throughUnions(r, d);
      const node = schemaAt(r);
      if (typeof seg === 'number' && node.items) r = deref(childRef(r, 'items'));
      else if (typeof seg === 'string' && node.properties?.[seg]) r = deref(childRef(r, 'properties', seg));
      else if (typeof seg === 'string' && typeof node.additionalProperties === 'object') {
        r = deref(childRef(r, 'additionalProperties'));
      } else return undefined;
      d = child(d, seg);
    }
    return r;
  }

  function throughUnions(ref: string, value: unknown): string {
    for (let depth = 0; depth < 8 && unionKey(schemaAt(ref)); depth++) {
      const branches = branchRefs(ref);
      let next = branches.find((b) => validatorAt(b)(value));
      if (next === undefined) {
        const choice = chooseBranch(branches, value);
        next = choice.kind === 'branch' ? branches[choice.index] : undefined;
      }
      if (next === undefined) return ref;
      ref = deref(next);
    }
    return ref;
  }

  function sizeCheck(value: unknown, schema: SchemaNode | undefined): SizeCheck {
    if (typeof value !== 'string' && typeof value !== 'number') {
      return {
        problem: `expected a size (bytes, or a string such as ${sizes.example}), got ${describeValue(value)}`,
      };
    }
    let bytes: number;
    try {
      bytes = sizes.parse(value);
    } catch (e) {
      return { problem: e instanceof Error ? e.message : String(e) };
    }
    const pretty = sizes.format(bytes);
    const shown =
      typeof value === 'string' ? value : pretty === `${value} bytes` ? pretty : `${value} bytes (${pretty})`;
    if (schema?.minimum !== undefined && bytes < schema.minimum) {
      return { problem: `${shown} is too small (minimum ${sizes.format(schema.minimum)})` };
    }
    if (schema?.maximum !== undefined && bytes > schema.maximum) {
      return { problem: `${shown} is too large (maximum ${sizes.format(schema.maximum)})` };
    }
    if (schema?.multipleOf !== undefined && bytes % schema.multipleOf !== 0) {
      return { problem: `${shown} is not a multiple of ${sizes.format(schema.multipleOf)}` };
    }
    return { bytes };
  }

  /** Whether a size schema is at or below `ref` (remembered: a walk skips the values where none is). */
  const sizeBelow = new Map<string, boolean>();
  function hasSizeBelow(ref: string, depth = 0): boolean {
    const r = deref(ref);
    const known = sizeBelow.get(r);
    if (known !== undefined) return known;
    if (depth > 32) return true;
    sizeBelow.set(r, true); // A recursive schema is walked (as before this shortcut).
    const node = schemaAt(r);
    const below: string[] = [
      ...branchRefs(r),
      ...(node.items ? [childRef(r, 'items')] : []),
      ...Object.keys(node.properties ?? {}).map((k) => childRef(r, 'properties', k)),
      ...(typeof node.additionalProperties === 'object' ? [childRef(r, 'additionalProperties')] : []),
    ];
    const found = node.pattern === sizes.pattern || below.some((c) => hasSizeBelow(c, depth + 1));
    sizeBelow.set(r, found);
    return found;
  }

  /** `childRef(ref, how, key?)` remembered: the walk asks for the same few children of the same schemas. */
  const children = new Map<string, Map<string, string>>();
  function childOf(ref: string, how: 'items' | 'additionalProperties' | 'properties', key = ''): string {
    let byKey = children.get(ref);
    if (byKey === undefined) {
      byKey = new Map();
      children.set(ref, byKey);
    }
    const k = how === 'properties' ? `p${key}` : how;
    let c = byKey.get(k);
    if (c === undefined) {
      c = how === 'properties' ? childRef(ref, how, key) : childRef(ref, how);
      byKey.set(k, c);
    }
    return c;
  }

  function checkSizeStrings(ref: string, data: unknown, base: Segment[] = []): RawProblem[] {
    const out: RawProblem[] = [];
    const walk = (r: string, value: unknown, path: Segment[], depth: number) => {
      if (depth > 32 || !hasSizeBelow(r)) return;
      r = throughUnions(deref(r), value);
      const node = schemaAt(r);
      if (node.pattern === sizes.pattern && typeof value === 'string' && sizeRe.test(value)) {
        const check = sizeCheck(value, node);
        if (check.problem !== undefined) out.push(problem(path, check.problem));
        return;
      }
      if (Array.isArray(value) && node.items) {
        value.forEach((v, i) => walk(childOf(r, 'items'), v, [...path, i], depth + 1));
      } else if (isRecord(value)) {
        for (const [k, v] of Object.entries(value)) {
          if (node.properties?.[k]) walk(childOf(r, 'properties', k), v, [...path, k], depth + 1);
          else if (typeof node.additionalProperties === 'object') {
            walk(childOf(r, 'additionalProperties'), v, [...path, k], depth + 1);
          }
        }
      }
    };
    walk(ref, data, base, 0);
    return out;
  }

  return { explain, throughUnions, sizeCheck, checkSizeStrings };
}

function isUnionError(e: ErrorObject): boolean {
  return e.keyword === 'oneOf' || e.keyword === 'anyOf';
}
