/**
 * What a plan can tell before apply changes anything: a Disk to be created
 * at a path where a file already exists (mvctl never overwrites a file it
 * did not create). `mvctl plan` and `mvctl apply` stop on these, naming the
 * manifest's file and line.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { NormalizedDiskSpec } from '../manifest/types.js';
import type { Plan } from '../plan/planner.js';
import { resourceKey, type DesiredResource } from '../types.js';

/** Where a Disk's image is: its spec.path, else a file under the state directory named after it. */
export function diskPath(stateDir: string, name: string, spec: NormalizedDiskSpec): string {
  return spec.path ?? join(stateDir, 'disks', `${name}.${spec.format === 'qcow2' ? 'qcow2' : 'img'}`);
}

/** What to do about a file at a Disk's path that mvctl did not create (plan's and apply's messages end so). */
export function neverOverwrites(name: string, path: string): string {
  return (
    `mvctl never overwrites a file it did not create: adopt it with mvctl import Disk/${name} ${path}, ` +
    'move it away, or set spec.path to another file'
  );
}

/** One line per problem, `file:line:col: Kind/name: spec.path: ...`; [] when apply may go ahead. */
export function preflight(
  plan: Plan,
  desired: readonly DesiredResource[],
  stateDir: string,
  exists: (path: string) => boolean = existsSync,
): string[] {
  const byKey = new Map(desired.map((d) => [resourceKey(d), d]));
  // A replace deletes first: its own (owned) file is gone by the time it creates.
  const deleted = new Set(plan.steps.filter((s) => s.op === 'delete').map((s) => resourceKey(s.id)));
  const problems: string[] = [];
  for (const step of plan.steps) {
    if (step.op !== 'create' || step.id.kind !== 'Disk' || deleted.has(resourceKey(step.id))) continue;
    const want = byKey.get(resourceKey(step.id));
    if (!want) continue;
    const path = diskPath(stateDir, want.name, want.spec as NormalizedDiskSpec);
    if (!exists(path)) continue;
    const { file, line, col } = want.source;
    problems.push(
      `${file}:${line}:${col}: Disk/${want.name}: spec.path: ${path} already exists and mvctl did not create it; ` +
        neverOverwrites(want.name, path),
    );
  }
  return problems;
}
