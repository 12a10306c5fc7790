/**
 * Field diffs of specs: a deep diff of JSON values, and the update policy of
 * each changed field.
 */
import type { Kind, UpdatePolicyFn } from '../types.js';
import type { FieldChange, FieldPath, FieldPredicate } from './planner.js';

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Deep diff of two JSON values: leaves compared with `===`, arrays index by index, object keys sorted. */
export function diffJson(
  before: unknown,
  after: unknown,
  path: FieldPath = [],
): Omit<FieldChange, 'policy'>[] {
  if (Array.isArray(before) && Array.isArray(after)) {
    const out: Omit<FieldChange, 'policy'>[] = [];
    for (let i = 0; i < Math.max(before.length, after.length); i++) {
      if (i >= after.length) out.push({ path: [...path, i], before: before[i] });
      else if (i >= before.length) out.push({ path: [...path, i], after: after[i] });
      else out.push(...diffJson(before[i], after[i], [...path, i]));
    }
    return out;
  }
  if (isPlainObject(before) && isPlainObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    const out: Omit<FieldChange, 'policy'>[] = [];
    for (const key of keys) {
      const b = before[key];
      const a = after[key];
      if (b === undefined && a === undefined) continue;
      if (b === undefined) out.push({ path: [...path, key], after: a });
      else if (a === undefined) out.push({ path: [...path, key], before: b });
      else out.push(...diffJson(b, a, [...path, key]));
    }
    return out;
  }
  if (before === after) return [];
  const change: Omit<FieldChange, 'policy'> = { path };
  if (before !== undefined) change.before = before;
  if (after !== undefined) change.after = after;
  return [change];
}

/** Field changes of a spec with their update policies; a VM's `running` is always in place. */
export function diffSpecs(
  kind: Kind,
  before: Record<string, unknown>,
  after: Record<string, unknown>,
  policy: UpdatePolicyFn,
  computed: FieldPredicate,
): FieldChange[] {
  const diffs = diffJson(before, after).filter(
    (c) => !('before' in c && !('after' in c) && computed(kind, c.path)),
  );
  return diffs.map((c) => ({
    ...c,
    policy:
      kind === 'VirtualMachine' && c.path.length === 1 && c.path[0] === 'running'
        ? 'in-place'
        : policy(kind, c.path),
  }));
}
