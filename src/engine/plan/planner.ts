/**
 * The planner: desired resources (from manifests) against actual ones (from
 * state, after refresh) gives a Plan. Pure: no I/O, no clock, no randomness,
 * so the same inputs give the same plan, byte for byte.
 *
 * The plan is a value (Terraform's `internal/plans`): JSON-serialisable,
 * versioned, stamped with what it was computed from so apply can refuse a
 * saved plan whose state has moved on. It holds one action per resource,
 * for people, and the ordered steps apply executes, for machines: a replace
 * is a delete step and a create step, placed by the dependency graph (things
 * are created after what they use, and deleted before it).
 *
 * Which field changes force a replacement is the schema's business (the
 * `policy` function reads the `x-mvisor-update` annotations); the planner
 * only adds what no schema can say: power state is always changed in place,
 * a disk never shrinks, and a resource whose dependency is destroyed and
 * created again is replaced with it.
 */

import { formatPath } from '../../common/yaml-schema-errors.js';
import { hashJson } from '../canonical.js';
import type { ActualResource, Drift } from '../state/refresh.js';
import type { ResourceStatus, StateVersion } from '../state/store.js';
import {
  compareIds,
  resourceKey,
  type DesiredResource,
  type Kind,
  type ResourceId,
  type UpdatePolicy,
  type UpdatePolicyFn,
} from '../types.js';
import { diffSpecs, isPlainObject } from './diff.js';
import { CycleError, Graph } from './graph.js';
import { fingerprintActual, fingerprintDesired } from './staleness.js';
import { selectTargets } from './targets.js';

export { fingerprintActual, fingerprintDesired, planStaleness } from './staleness.js';

export { diffJson, diffSpecs } from './diff.js';

/** Bumped whenever the Plan's shape changes; a saved plan of another version is refused. */
export const PLAN_VERSION = 1;

export type PlanActionKind = 'create' | 'update' | 'replace' | 'delete' | 'noop' | 'start' | 'stop';
export type StepOp = 'create' | 'delete' | 'update' | 'start' | 'stop';
export type FieldPath = (string | number)[];

/** One changed field. An absent `before` or `after` means the field (or array element) is added or removed. */
export interface FieldChange {
  path: FieldPath;
  before?: unknown;
  after?: unknown;
  policy: UpdatePolicy;
}

export interface PlannedAction {
  id: ResourceId;
  /** `resourceKey(id)`, e.g. "VirtualMachine/web". */
  key: string;
  action: PlanActionKind;
  /** The spec as it is (state after refresh); absent for a create of something not in state. */
  before?: Record<string, unknown>;
  /** The spec as it will be; absent for a delete. */
  after?: Record<string, unknown>;
  /** Field diffs between before and after (empty for a plain create or delete). */
  changes: FieldChange[];
  /** Why, for people: "memory forces replacement", "drift: VMM process 1234 is gone". */
  reason: string;
}

/** One unit of work for apply. Apply runs a step once every step in `after` has succeeded. */
export interface PlanStep {
  /** `${op}:${resourceKey}`, unique in the plan. */
  key: string;
  id: ResourceId;
  op: StepOp;
  /** Keys of the steps that must finish first. */
  after: string[];
}

export interface PlanSummary {
  create: number;
  update: number;
  replace: number;
  delete: number;
  start: number;
  stop: number;
  noop: number;
}

export interface PlanOrigin {
  /** Lineage and serial of the state the plan was made from (null when planned without a store). */
  lineage: string | null;
  stateSerial: number | null;
  /** Hash of the actual resources (after refresh) the plan was made from. */
  actualHash: string;
  /** Hash of the desired resources. */
  desiredHash: string;
}

export interface Plan {
  version: typeof PLAN_VERSION;
  createdFrom: PlanOrigin;
  /** One per resource in desired or actual, in the order their first step runs (no-ops last). */
  actions: PlannedAction[];
  /** The work, in an order that respects every `after` (apply may also run independent steps in parallel). */
  steps: PlanStep[];
  /** What refresh found changed outside mvctl. */
  drift: Drift[];
  summary: PlanSummary;
  /** Some action is not a no-op. */
  hasChanges: boolean;
  /** Some action deletes or replaces a resource. */
  hasDestroy: boolean;
  hasDrift: boolean;
  /** Set when the plan covers only these resources and their dependencies (`--target`). */
  targets?: string[];
}

/** The inputs cannot be planned: each problem is one line. */
export class PlanError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string | readonly string[]) {
    const list = typeof problems === 'string' ? [problems] : problems;
    super(list.length === 1 ? (list[0] ?? '') : `cannot plan:\n${list.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'PlanError';
    this.problems = list;
  }
}

/** A predicate on a spec field of a kind (`path` as in FieldChange). */
export type FieldPredicate = (kind: Kind, path: readonly (string | number)[]) => boolean;

export interface PlanOptions {
  /** The state version refresh read; recorded in `createdFrom`. */
  state?: StateVersion;
  /**
   * Fields that may only grow (`x-mvisor-grow-only`; the manifest layer's `isGrowOnly`): a decrease is
   * a PlanError. Default: a Disk's `size`.
   */
  growOnly?: FieldPredicate;
  /**
   * Optional fields the engine fills in when the manifest leaves them out (Terraform's Optional +
   * Computed): absent in the desired spec, the applied value is kept and is no change. Default: a
   * Disk's `path`.
   */
  computed?: FieldPredicate;
  /** Plan only these resources and what they depend on (`--target`); all of them when absent. */
  targets?: readonly ResourceId[];
}

const isTopField =
  (kind: Kind, field: string): FieldPredicate =>
  (k, path) =>
    k === kind && path.length === 1 && path[0] === field;

export const defaultGrowOnly: FieldPredicate = isTopField('Disk', 'size');
export const defaultComputed: FieldPredicate = isTopField('Disk', 'path');

/** Statuses a previous apply leaves when it did not finish: such a resource is replaced (tainted). */
const TAINTED: readonly ResourceStatus[] = ['creating', 'failed', 'deleting'];

const FORWARD_OPS: readonly StepOp[] = ['create', 'update', 'start'];

/** Field paths print as "disks[0].disk", the way config errors print them. */
export { formatPath };

function isRunningPath(kind: Kind, path: FieldPath): boolean {
  return kind === 'VirtualMachine' && path.length === 1 && path[0] === 'running';
}

function wantsRunning(spec: Record<string, unknown>): boolean {
  return spec.running !== false;
}

function idOf(r: ResourceId): ResourceId {
  return { kind: r.kind, name: r.name };
}

/** A dependency that needs no manifest: the machine mvctl runs on. */
function isImplicit(dep: ResourceId): boolean {
  return dep.kind === 'Host' && dep.name === 'local';
}

function pathList(changes: readonly FieldChange[]): string {
  const paths = [...new Set(changes.map((c) => formatPath(c.path.length > 0 ? c.path : ['(spec)'])))];
  return paths.join(', ');
}

interface Decision {
  action: PlanActionKind;
  reason: string;
  changes: FieldChange[];
  /** A create of something that is in state (drift): its dependents are replaced with it. */
  recreate?: boolean;
  /** A replace that only follows a dependency's replace or re-create: that dependency's key. */
  forcedBy?: string;
}

/**
 * Plans `desired` against `actual`. Throws PlanError for inputs that cannot be planned: duplicate
 * resources, a dependency that is not declared, a dependency cycle, a disk that would shrink.
 */
export function plan(
  desired: readonly DesiredResource[],
  actual: readonly ActualResource[],
  policy: UpdatePolicyFn,
  options: PlanOptions = {},
): Plan {
  const problems: string[] = [];
  const desiredByKey = new Map<string, DesiredResource>();
  for (const d of desired) {
    const key = resourceKey(d);
    if (desiredByKey.has(key)) problems.push(`${key} is declared more than once`);
    else desiredByKey.set(key, d);
  }
  const actualByKey = new Map<string, ActualResource>(actual.map((a) => [resourceKey(a), a]));
  // Each desired spec hashed once: for the fingerprint, and to skip the diff of a spec equal to the applied one.
  const specHashes = new Map([...desiredByKey].map(([key, d]) => [key, hashJson(d.spec)]));

  // The desired dependency graph: a dependency before its dependents.
  const depGraph = new Graph();
  for (const d of [...desiredByKey.values()].sort(compareIds)) depGraph.addNode(resourceKey(d));
  for (const d of desiredByKey.values()) {
    for (const dep of d.dependsOn) {
      const depKey = resourceKey(dep);
      if (isImplicit(dep) && !desiredByKey.has(depKey)) continue;
      if (!desiredByKey.has(depKey)) {
        problems.push(
          actualByKey.has(depKey)
            ? `${resourceKey(d)} still uses ${depKey}, which is not in the configuration: ` +
                `${depKey} cannot be deleted while ${resourceKey(d)} uses it (remove the reference first)`
            : `${resourceKey(d)} depends on ${depKey}, which is not in the configuration`,
        );
        continue;
      }
      depGraph.addEdge(depKey, resourceKey(d));
    }
  }
  const cycle = depGraph.findCycle();
  if (cycle) problems.push(`dependency cycle: ${describeCycle(cycle, desired)}`);
  if (problems.length > 0) throw new PlanError(problems);

  // Decide an action per resource, dependencies first (a replaced dependency replaces its dependents).
  const decisions = new Map<string, Decision>();
  for (const key of depGraph.topoSort()) {
    const d = desiredByKey.get(key) as DesiredResource;
    const a = actualByKey.get(key);
    const unchanged = a?.specHash !== undefined && a.specHash === specHashes.get(key);
    const decision = decide(d, a, decisions, policy, options, problems, unchanged);
    decisions.set(key, decision);
  }
  for (const a of [...actual].sort(compareIds)) {
    const key = resourceKey(a);
    if (desiredByKey.has(key)) continue;
    decisions.set(key, {
      action: 'delete',
      reason:
        a.status === 'deleting'
          ? 'not in the configuration; an earlier delete did not finish'
          : 'not in the configuration',
      changes: [],
    });
  }
  if (options.targets && options.targets.length > 0) {
    const selected = selectTargets(options.targets, desiredByKey, actualByKey, problems);
    if (problems.length > 0) throw new PlanError(problems);
    // A resource left out would be replaced with what it uses: it must be targeted too.
    for (const [key, decision] of decisions) {
      if (selected.has(key) || decision.action !== 'replace') continue;
      const why = decision.forcedBy;
      if (why !== undefined && selected.has(why))
        problems.push(
          `--target: ${why} is replaced, so ${key}, which uses it, is replaced too: target ${key} as well`,
        );
    }
    if (problems.length > 0) throw new PlanError(problems);
    for (const key of [...decisions.keys()]) if (!selected.has(key)) decisions.delete(key);
  }
  // Nothing is deleted while a resource that stays uses it (as applied): such a user is deleted or
  // replaced (its teardown then runs first), or the plan is refused.
  for (const a of [...actual].sort(compareIds)) {
    const decision = decisions.get(resourceKey(a));
    if (decision?.action === 'delete' || decision?.action === 'replace') continue;
    for (const dep of a.dependsOn) {
      if (isImplicit(dep) || decisions.get(resourceKey(dep))?.action !== 'delete') continue;
      problems.push(
        `${resourceKey(dep)} cannot be deleted: ${resourceKey(a)} still uses it (as applied) and is not ` +
          'deleted or replaced',
      );
    }
  }
  if (problems.length > 0) throw new PlanError(problems);

  const steps = orderSteps(decisions, desiredByKey, actualByKey);

  // Actions in the order of their first step; no-ops after, dependencies first.
  const firstStep = new Map<string, number>();
  steps.forEach((s, i) => {
    const key = resourceKey(s.id);
    if (!firstStep.has(key)) firstStep.set(key, i);
  });
  const decided = new Map([...decisions.keys()].map((key, i) => [key, i]));
  const position = (key: string): number => firstStep.get(key) ?? steps.length + (decided.get(key) ?? 0);
  const actions: PlannedAction[] = [...decided.keys()]
    .sort((x, y) => position(x) - position(y))
    .map((key) => {
      const decision = decisions.get(key) as Decision;
      const d = desiredByKey.get(key);
      const a = actualByKey.get(key);
      const id = idOf((d ?? a) as ResourceId);
      const action: PlannedAction = {
        id,
        key,
        action: decision.action,
        changes: decision.changes,
        reason: decision.reason,
      };
      if (a) action.before = a.spec;
      if (d) action.after = d.spec;
      return action;
    });

  const summary: PlanSummary = { create: 0, update: 0, replace: 0, delete: 0, start: 0, stop: 0, noop: 0 };
  for (const a of actions) summary[a.action]++;
  const drift = [...actual].sort(compareIds).flatMap((a) => a.drift);

  return {
    version: PLAN_VERSION,
    createdFrom: {
      lineage: options.state?.lineage ?? null,
      stateSerial: options.state?.serial ?? null,
      actualHash: fingerprintActual(actual),
      desiredHash: fingerprintDesired([...desiredByKey.values()], specHashes),
    },
    actions,
    steps,
    drift,
    summary,
    hasChanges: actions.some((a) => a.action !== 'noop'),
    hasDestroy: actions.some((a) => a.action === 'delete' || a.action === 'replace'),
    hasDrift: drift.length > 0,
    ...(options.targets?.length ? { targets: options.targets.map(resourceKey) } : {}),
  };
}

/** "VirtualMachine/a -> Disk/b -> VirtualMachine/a": each depends on the next, starting at the first declared. */
function describeCycle(cycle: readonly string[], desired: readonly DesiredResource[]): string {
  // The graph's edges run dependency -> dependent; people read "depends on" the other way.
  const nodes = [...cycle.slice(0, -1)].reverse();
  const declared = desired.map(resourceKey);
  let start = 0;
  nodes.forEach((n, i) => {
    if (declared.indexOf(n) < declared.indexOf(nodes[start] as string)) start = i;
  });
  const rotated = [...nodes.slice(start), ...nodes.slice(0, start)];
  return [...rotated, rotated[0]].join(' -> ');
}

function decide(
  d: DesiredResource,
  a: ActualResource | undefined,
  decided: ReadonlyMap<string, Decision>,
  policy: UpdatePolicyFn,
  options: PlanOptions,
  problems: string[],
  /** The applied spec's hash is the desired one's: no field changed (the diff is skipped). */
  unchanged = false,
): Decision {
  const key = resourceKey(d);
  if (!a) return { action: 'create', reason: 'not in state', changes: [] };
  const changes = unchanged
    ? []
    : diffSpecs(d.kind, a.spec, d.spec, policy, options.computed ?? defaultComputed);

  if (TAINTED.includes(a.status)) {
    const why = a.error ? `: ${a.error}` : '';
    return { action: 'replace', reason: `tainted: an earlier apply left it ${a.status}${why}`, changes };
  }
  const fileMissing = a.drift.find((x) => x.what === 'disk-file-missing');
  if (fileMissing)
    return { action: 'create', reason: `drift: ${fileMissing.detail}`, changes, recreate: true };
  const processGone = a.drift.find((x) => x.what === 'vm-process-gone');
  if (processGone && wantsRunning(d.spec)) {
    return {
      action: 'create',
      reason: `drift: ${processGone.detail}`,
      changes,
      recreate: true,
    };
  }

  const forcing = changes.filter((c) => c.policy === 'replace');
  if (forcing.length > 0) {
    const paths = pathList(forcing);
    return {
      action: 'replace',
      reason: `${paths} ${forcing.length === 1 ? 'forces' : 'force'} replacement`,
      changes,
    };
  }
  for (const dep of d.dependsOn) {
    const depDecision = decided.get(resourceKey(dep));
    if (depDecision?.action === 'replace') {
      return {
        action: 'replace',
        reason: `${resourceKey(dep)} is replaced`,
        changes,
        forcedBy: resourceKey(dep),
      };
    }
    if (depDecision?.recreate) {
      return {
        action: 'replace',
        reason: `${resourceKey(dep)} is created again`,
        changes,
        forcedBy: resourceKey(dep),
      };
    }
  }

  const growOnly = options.growOnly ?? defaultGrowOnly;
  for (const c of changes) {
    if (!growOnly(d.kind, c.path) || typeof c.before !== 'number' || typeof c.after !== 'number') continue;
    if (c.after >= c.before) continue;
    const resized = a.drift.some((x) => x.what === 'disk-resized')
      ? ' (its file was resized outside mvctl)'
      : '';
    const field = formatPath(c.path);
    problems.push(
      d.kind === 'Disk' && field === 'size'
        ? `${key}: size ${c.after} is smaller than the disk's ${c.before} bytes${resized}; ` +
            'a disk can grow but never shrink (delete it, or declare a new disk, to start smaller)'
        : `${key}: ${field} ${c.after} is smaller than the current ${c.before}; ${field} can grow but never shrink`,
    );
  }

  const gone = processGone ? `drift: ${processGone.detail}; ` : '';
  if (changes.length === 0) {
    if (d.kind === 'VirtualMachine' && wantsRunning(d.spec) && a.status === 'stopped') {
      return { action: 'start', reason: `${gone}stopped, but running: true`, changes };
    }
    return { action: 'noop', reason: '', changes };
  }
  const power = changes.find((c) => isRunningPath(d.kind, c.path));
  const others = changes.filter((c) => !isRunningPath(d.kind, c.path));
  if (others.length === 0 && power) {
    return power.after === false
      ? { action: 'stop', reason: `${gone}running: false`, changes }
      : { action: 'start', reason: `${gone}running: true`, changes };
  }
  const paths = pathList(others);
  return {
    action: 'update',
    reason: `${gone}${paths} ${others.length === 1 ? 'changes' : 'change'} in place`,
    changes,
  };
}

/** The steps of one action, in the order they run. */
function stepOps(kind: Kind, decision: Decision): StepOp[] {
  switch (decision.action) {
    case 'create':
      return ['create'];
    case 'delete':
      return ['delete'];
    case 'replace':
      return ['delete', 'create'];
    case 'start':
      return ['start'];
    case 'stop':
      return ['stop'];
    case 'noop':
      return [];
    case 'update': {
      const power = decision.changes.find((c) => isRunningPath(kind, c.path));
      if (power?.after === false) return ['stop', 'update'];
      if (power?.after === true) return ['update', 'start'];
      return ['update'];
    }
  }
}

function orderSteps(
  decisions: ReadonlyMap<string, Decision>,
  desiredByKey: ReadonlyMap<string, DesiredResource>,
  actualByKey: ReadonlyMap<string, ActualResource>,
): PlanStep[] {
  const ids = new Map<string, ResourceId>();
  const opsOf = new Map<string, StepOp[]>();
  for (const [key, decision] of decisions) {
    const r = (desiredByKey.get(key) ?? actualByKey.get(key)) as ResourceId;
    ids.set(key, idOf(r));
    opsOf.set(key, stepOps(r.kind, decision));
  }
  const stepKey = (op: StepOp, key: string): string => `${op}:${key}`;
  const byRank = [...ids.values()].sort(compareIds).map(resourceKey);

  // Insertion order breaks ties: teardown from dependents down, then build-up from dependencies up.
  const g = new Graph();
  for (const key of [...byRank].reverse()) {
    for (const op of opsOf.get(key) ?? []) if (!FORWARD_OPS.includes(op)) g.addNode(stepKey(op, key));
  }
  for (const key of byRank) {
    for (const op of opsOf.get(key) ?? []) if (FORWARD_OPS.includes(op)) g.addNode(stepKey(op, key));
  }

  for (const [key, ops] of opsOf) {
    // An action's own steps run in sequence.
    for (let i = 1; i < ops.length; i++)
      g.addEdge(stepKey(ops[i - 1] as StepOp, key), stepKey(ops[i] as StepOp, key));

    // Build-up: after everything built up that the desired resource uses.
    const d = desiredByKey.get(key);
    for (const dep of d?.dependsOn ?? []) {
      const depKey = resourceKey(dep);
      for (const depOp of opsOf.get(depKey) ?? []) {
        if (!FORWARD_OPS.includes(depOp)) continue;
        for (const op of ops)
          if (FORWARD_OPS.includes(op)) g.addEdge(stepKey(depOp, depKey), stepKey(op, key));
      }
    }

    // Teardown: what the resource used as applied is destroyed (or created again) only after this
    // resource has stopped using it.
    const a = actualByKey.get(key);
    for (const dep of a?.dependsOn ?? []) {
      const depKey = resourceKey(dep);
      const depOps = opsOf.get(depKey) ?? [];
      const disrupt = depOps.includes('delete')
        ? 'delete'
        : depOps.includes('create') && actualByKey.has(depKey)
          ? 'create'
          : undefined;
      if (!disrupt) continue;
      for (const op of ops) {
        if (op === 'create' || op === 'start') continue;
        g.addEdge(stepKey(op, key), stepKey(disrupt, depKey));
      }
    }
  }

  let order: string[];
  try {
    order = g.topoSort();
  } catch (e) {
    if (e instanceof CycleError) {
      throw new PlanError(
        `the steps of this plan form a cycle (${e.cycle.join(' -> ')}); check dependencies in state`,
      );
    }
    throw e;
  }
  return order.map((sk) => {
    const colon = sk.indexOf(':');
    const op = sk.slice(0, colon) as StepOp;
    const key = sk.slice(colon + 1);
    return { key: sk, id: ids.get(key) as ResourceId, op, after: g.predecessors(sk) };
  });
}

/** Checks a parsed saved plan's shape and version; throws PlanError if it is not one this mvctl applies. */
export function parsePlan(value: unknown): Plan {
  if (!isPlainObject(value)) throw new PlanError('not a plan: expected a JSON object');
  if (value.version !== PLAN_VERSION) {
    throw new PlanError(
      `plan format version ${JSON.stringify(value.version)} is not supported (this mvctl reads version ${PLAN_VERSION}); plan again`,
    );
  }
  for (const field of ['actions', 'steps', 'drift']) {
    if (!Array.isArray(value[field])) throw new PlanError(`not a plan: "${field}" is missing or not a list`);
  }
  if (!isPlainObject(value.createdFrom) || typeof value.createdFrom.actualHash !== 'string') {
    throw new PlanError('not a plan: "createdFrom" is missing');
  }
  return value as unknown as Plan;
}
