/**
 * `plan --target KIND/NAME` (Terraform's `-target`): a plan limited to some
 * resources and everything they depend on in the manifests, for a repair or
 * a staged roll-out. A target that is in state but not in the manifests is
 * planned for deletion; what still uses it must be targeted too (the planner
 * refuses to delete something a resource that stays uses).
 */
import { resourceKey, type DesiredResource, type ResourceId } from '../types.js';
import type { ActualResource } from '../state/refresh.js';

/**
 * The keys a targeted plan covers: each target and, through the manifests' `dependsOn`, what it
 * uses. Problems (a target that is neither in the manifests nor in state) are pushed to `problems`.
 */
export function selectTargets(
  targets: readonly ResourceId[],
  desiredByKey: ReadonlyMap<string, DesiredResource>,
  actualByKey: ReadonlyMap<string, ActualResource>,
  problems: string[],
): Set<string> {
  const selected = new Set<string>();
  const visit = (key: string) => {
    if (selected.has(key)) return;
    selected.add(key);
    for (const dep of desiredByKey.get(key)?.dependsOn ?? []) {
      const depKey = resourceKey(dep);
      if (desiredByKey.has(depKey)) visit(depKey);
    }
  };
  for (const t of targets) {
    const key = resourceKey(t);
    if (!desiredByKey.has(key) && !actualByKey.has(key)) {
      problems.push(`--target ${key}: no such resource in the manifests or in state`);
      continue;
    }
    visit(key);
  }
  return selected;
}
