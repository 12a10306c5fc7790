/**
 * Plans for people and for machines. The text form follows Terraform's:
 * drift first ("Changes outside mvctl"), then one block per action with a
 * marker and its field diffs, then a one-line count. The JSON form is the
 * Plan value itself (it already carries hasChanges / hasDestroy / hasDrift),
 * so a saved `--json` plan parses back with `parsePlan`.
 */

import {
  formatPath,
  type FieldChange,
  type Plan,
  type PlannedAction,
  type PlanActionKind,
} from './planner.js';

export interface RenderOptions {
  /** ANSI colours. Default true; pass false for files, pipes and snapshots. */
  color?: boolean;
}

const MARKERS: Record<Exclude<PlanActionKind, 'noop'>, string> = {
  create: '+',
  update: '~',
  replace: '-/+',
  delete: '-',
  start: '>',
  stop: '||',
};

const LEGEND: Record<Exclude<PlanActionKind, 'noop'>, string> = {
  create: 'create',
  update: 'update in place',
  replace: 'destroy and then create again',
  delete: 'destroy',
  start: 'start',
  stop: 'stop',
};

const ORDER: readonly Exclude<PlanActionKind, 'noop'>[] = [
  'create',
  'update',
  'replace',
  'delete',
  'start',
  'stop',
];

type Paint = (code: string, text: string) => string;

const ANSI = { bold: '1', red: '31', green: '32', yellow: '33', cyan: '36' } as const;

function painter(color: boolean): Paint {
  return color ? (code, text) => `\u001b[${code}m${text}\u001b[0m` : (_code, text) => text;
}

function markerColor(action: Exclude<PlanActionKind, 'noop'>): string {
  switch (action) {
    case 'create':
    case 'start':
      return ANSI.green;
    case 'update':
    case 'stop':
      return ANSI.yellow;
    case 'delete':
      return ANSI.red;
    case 'replace':
      return ANSI.red;
  }
}

function paintMarker(action: Exclude<PlanActionKind, 'noop'>, paint: Paint): string {
  const m = MARKERS[action].padStart(3);
  if (action === 'replace') return `${paint(ANSI.red, '-')}/${paint(ANSI.green, '+')}`;
  return paint(markerColor(action), m);
}

/** A value as it appears in a diff line: strings quoted, the rest as compact JSON. */
function show(value: unknown): string {
  return value === undefined ? '(absent)' : JSON.stringify(value);
}

/** Leaves of a JSON value with their paths; empty arrays and objects are leaves. */
function leaves(value: unknown, path: (string | number)[] = []): [string, unknown][] {
  if (Array.isArray(value) && value.length > 0) return value.flatMap((v, i) => leaves(v, [...path, i]));
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0) {
    return Object.keys(value)
      .sort()
      .flatMap((k) => leaves((value as Record<string, unknown>)[k], [...path, k]));
  }
  return [[formatPath(path), value]];
}

function changeLine(change: FieldChange, paint: Paint): string {
  const path = formatPath(change.path) || '(spec)';
  const forces = change.policy === 'replace' ? ' ' + paint(ANSI.red, '(forces replacement)') : '';
  if (!('before' in change) || change.before === undefined) {
    return `${paint(ANSI.green, '+')} ${path}: ${show(change.after)}${forces}`;
  }
  if (!('after' in change) || change.after === undefined) {
    return `${paint(ANSI.red, '-')} ${path}: ${show(change.before)}${forces}`;
  }
  return `${paint(ANSI.yellow, '~')} ${path}: ${show(change.before)} -> ${show(change.after)}${forces}`;
}

function headline(a: PlannedAction): string {
  const why = a.reason ? ` (${a.reason})` : '';
  switch (a.action) {
    case 'create':
      return a.before ? `will be created again${why}` : 'will be created';
    case 'update':
      return `will be updated in place${why}`;
    case 'replace':
      return `must be replaced${why}`;
    case 'delete':
      return `will be destroyed${why}`;
    case 'start':
      return `will be started${why}`;
    case 'stop':
      return `will be stopped${why}`;
    case 'noop':
      return 'is up to date';
  }
}

function actionBlock(a: PlannedAction & { action: Exclude<PlanActionKind, 'noop'> }, paint: Paint): string[] {
  const lines = [`  # ${paint(ANSI.bold, a.key)} ${headline(a)}`, `${paintMarker(a.action, paint)} ${a.key}`];
  const body: string[] = [];
  if (a.action === 'create' && !a.before) {
    for (const [path, value] of leaves(a.after ?? {})) {
      if (path !== '') body.push(`${paint(ANSI.green, '+')} ${path}: ${show(value)}`);
    }
  } else if (a.action === 'delete') {
    for (const [path, value] of leaves(a.before ?? {})) {
      if (path !== '') body.push(`${paint(ANSI.red, '-')} ${path}: ${show(value)}`);
    }
  } else {
    for (const c of a.changes) body.push(changeLine(c, paint));
  }
  return [...lines, ...body.map((l) => `      ${l}`), ''];
}

/** The plan for people. */
export function renderPlan(plan: Plan, options: RenderOptions = {}): string {
  const paint = painter(options.color ?? true);
  const out: string[] = [];

  if (plan.targets?.length) {
    out.push(
      `${paint(ANSI.yellow, 'Targeted plan:')} only ${plan.targets.join(', ')} and what ` +
        `${plan.targets.length === 1 ? 'it depends' : 'they depend'} on; the rest of the manifests is not compared.`,
      '',
    );
  }

  if (plan.drift.length > 0) {
    out.push(paint(ANSI.bold, 'Changes outside mvctl (drift):'), '');
    for (const d of plan.drift) {
      out.push(`  ${paint(ANSI.yellow, '!')} ${d.id.kind}/${d.id.name}: ${d.detail}`);
    }
    out.push('');
  }

  const changes = plan.actions.filter(
    (a): a is PlannedAction & { action: Exclude<PlanActionKind, 'noop'> } => a.action !== 'noop',
  );
  if (changes.length === 0) {
    out.push(paint(ANSI.bold, 'No changes.') + ' Your VMs match the configuration.');
    return out.join('\n') + '\n';
  }

  const used = ORDER.filter((k) => changes.some((a) => a.action === k));
  out.push('Actions are shown with these symbols:');
  for (const k of used) out.push(`${paintMarker(k, paint)} ${LEGEND[k]}`);
  out.push('', 'mvctl will perform the following actions:', '');
  for (const a of changes) out.push(...actionBlock(a, paint));

  const s = plan.summary;
  const add = s.create + s.replace;
  const change = s.update + s.start + s.stop;
  const destroy = s.delete + s.replace;
  out.push(`${paint(ANSI.bold, 'Plan:')} ${add} to add, ${change} to change, ${destroy} to destroy.`);
  return out.join('\n') + '\n';
}

/** The plan for machines: the Plan value as indented JSON (it includes hasChanges, hasDestroy, hasDrift). */
export function renderPlanJson(plan: Plan): string {
  return JSON.stringify(plan, null, 2) + '\n';
}

/**
 * Exit code of `mvctl plan`: 0, or with `detailedExitCode` 2 when the plan has changes (errors are
 * 1, raised elsewhere), as Terraform's `-detailed-exitcode`.
 */
export function planExitCode(plan: Plan, options: { detailedExitCode?: boolean } = {}): 0 | 2 {
  return options.detailedExitCode && plan.hasChanges ? 2 : 0;
}
