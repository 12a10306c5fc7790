/** Builders for planner and render tests. */

import type { Drift, ActualResource } from '../../../../src/engine/state/refresh.js';
import type { ResourceStatus } from '../../../../src/engine/state/store.js';
import type { DesiredResource, Kind, ResourceId, UpdatePolicyFn } from '../../../../src/engine/types.js';

/** What the manifest schemas declare (`x-mvisor-update`), for the fields these tests use. */
const IN_PLACE: Partial<Record<Kind, string[]>> = {
  VirtualMachine: ['running', 'shutdownTimeout'],
  Disk: ['size'],
  Host: ['address'],
};

export const policy: UpdatePolicyFn = (kind, path) =>
  IN_PLACE[kind]?.includes(String(path[0])) ? 'in-place' : 'replace';

export function id(key: string): ResourceId {
  const [kind, name] = key.split('/') as [Kind, string];
  return { kind, name };
}

export function want(key: string, spec: Record<string, unknown>, deps: string[] = []): DesiredResource {
  return {
    ...id(key),
    apiVersion: 'mvisor.dev/v1alpha1',
    labels: {},
    spec,
    source: { file: 'test.yaml', line: 1, col: 1 },
    dependsOn: deps.map(id),
  };
}

/** Details as refresh writes them. */
export const DRIFT_DETAIL: Record<Drift['what'], string> = {
  'vm-process-gone': 'VMM process 1000 is gone',
  'disk-file-missing': 'disk file /var/lib/mvisor/d.img is missing',
  'disk-resized': 'disk file /var/lib/mvisor/d.img is 2147483648 bytes, but 1073741824 were applied',
};

export function have(
  key: string,
  spec: Record<string, unknown>,
  opts: { deps?: string[]; status?: ResourceStatus; drift?: Drift['what'][]; error?: string } = {},
): ActualResource {
  const rid = id(key);
  const status =
    opts.status ??
    (rid.kind === 'VirtualMachine' ? (spec.running === false ? 'stopped' : 'running') : 'ready');
  return {
    ...rid,
    spec,
    dependsOn: (opts.deps ?? []).map(id),
    status,
    pid: status === 'running' ? 1000 : null,
    error: opts.error ?? null,
    drift: (opts.drift ?? []).map((what) => ({ id: rid, what, detail: DRIFT_DETAIL[what] })),
  };
}

export const VM = { memory: 134217728, vcpus: 1, running: true, shutdownTimeout: '30s' };
export const DISK = { path: '/var/lib/mvisor/d.img', size: 1073741824, format: 'raw' };
