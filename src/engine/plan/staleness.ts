/**
 * What a plan was made from: fingerprints of the actual and desired inputs,
 * and why a saved plan no longer applies to the inputs apply sees.
 */
import { hashJson } from '../canonical.js';
import type { ActualResource } from '../state/refresh.js';
import type { StateVersion } from '../state/store.js';
import { compareIds, resourceKey, type DesiredResource } from '../types.js';
import type { Plan } from './planner.js';

/** Fingerprint of the actual input (what a saved plan is checked against). */
export function fingerprintActual(actual: readonly ActualResource[]): string {
  return hashJson(
    [...actual].sort(compareIds).map((a) => ({
      id: resourceKey(a),
      spec: a.specHash ?? hashJson(a.spec),
      dependsOn: a.dependsOn.map(resourceKey),
      status: a.status,
      pid: a.pid,
      drift: a.drift.map((d) => d.what),
    })),
  );
}

/** Fingerprint of the desired input (source positions and labels excluded: they change no action). */
export function fingerprintDesired(
  desired: readonly DesiredResource[],
  specHashes: ReadonlyMap<string, string> = new Map(),
): string {
  return hashJson(
    [...desired].sort(compareIds).map((d) => ({
      id: resourceKey(d),
      spec: specHashes.get(resourceKey(d)) ?? hashJson(d.spec),
      dependsOn: d.dependsOn.map(resourceKey),
    })),
  );
}

/**
 * Why a saved plan no longer applies to the current inputs, or undefined if it still does. Apply
 * refreshes, then calls this with what it sees now.
 */
export function planStaleness(
  saved: Plan,
  now: { state?: StateVersion; actual: readonly ActualResource[]; desired: readonly DesiredResource[] },
): string | undefined {
  const from = saved.createdFrom;
  if (now.state && from.lineage !== null && from.lineage !== now.state.lineage) {
    return 'the plan was made from a different state file';
  }
  if (now.state && from.stateSerial !== null && from.stateSerial !== now.state.serial) {
    return `state has changed since the plan was made (serial ${from.stateSerial}, now ${now.state.serial})`;
  }
  if (from.actualHash !== fingerprintActual(now.actual)) {
    return 'the resources have changed since the plan was made (refresh found something different)';
  }
  if (from.desiredHash !== fingerprintDesired(now.desired)) {
    return 'the configuration has changed since the plan was made';
  }
  return undefined;
}
