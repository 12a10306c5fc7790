/**
 * Refresh: compare what state says with what is really there, before
 * planning. A VM whose VMM process died, a disk file deleted or resized by
 * hand: each becomes a Drift, and the view of actual resources handed to
 * the planner shows reality (the VM stopped, the disk at its real size).
 *
 * `refresh` only reads: the apply engine decides what to record once it has
 * acted on the plan. `refreshState` (mvctl refresh) records what it observed.
 */

import { existsSync, readFileSync, statSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { LOCAL_HOST } from '../manifest/types.js';
import type { ResourceId } from '../types.js';
import {
  processExists,
  type ResourceRecord,
  type ResourceStatus,
  type StateStore,
  type StateVersion,
} from './store.js';

export type DriftKind = 'vm-process-gone' | 'disk-file-missing' | 'disk-resized';

/** A difference between state and reality, found by refresh. */
export interface Drift {
  id: ResourceId;
  what: DriftKind;
  /** One line for people, e.g. "VMM process 1234 is gone". */
  detail: string;
}

/** A resource as the planner sees it: state, corrected by what refresh observed. */
export interface ActualResource extends ResourceId {
  /** The applied spec; a raw disk's `size` is its file's real size when that differs (see drift). */
  spec: Record<string, unknown>;
  /** `hashJson(spec)` as recorded, when refresh left `spec` as applied (the planner skips the diff of equal hashes). */
  specHash?: string;
  /** What it referred to when applied: the destroy order walks these backwards. */
  dependsOn: ResourceId[];
  /** Observed status: a 'running' VM whose process is gone is 'stopped' here. */
  status: ResourceStatus;
  pid: number | null;
  /** Why the last operation failed (status 'failed'). */
  error?: string | null;
  /** The drift refresh found on this resource (empty when none). */
  drift: Drift[];
}

/** What refresh asks of the machine; tests pass fakes. */
export interface Probes {
  /** The process exists and is an mvisor VMM (not a reused pid). */
  pidAlive(pid: number): boolean;
  fileExists(path: string): boolean;
  /** Apparent size in bytes, or undefined if the file cannot be stat'ed. */
  fileSize(path: string): number | undefined;
}

/** True if `pid` exists and its command line mentions mvisor (so a reused pid is not mistaken for our VMM). */
export function vmmProcessAlive(pid: number): boolean {
  if (!processExists(pid)) return false;
  let cmdline: Buffer;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // No /proc at all: trust kill(0). The process exited between the two calls: gone.
    if (code === 'ENOENT' || code === 'ESRCH') return !existsSync('/proc/self/cmdline');
    return true; // exists, but we may not look at it (EACCES)
  }
  // A zombie's cmdline is empty: it has exited, only its parent has not reaped it.
  // Our VMMs run bin/mvisor.js with --control (see engine/apply/vm-process.ts).
  const argv = cmdline.toString('utf8').split('\0');
  return argv.some((a) => a.endsWith('mvisor.js')) && argv.includes('--control');
}

export const realProbes: Probes = {
  pidAlive: vmmProcessAlive,
  fileExists: (path) => existsSync(path),
  fileSize(path) {
    try {
      return statSync(path).size;
    } catch {
      return undefined;
    }
  },
};

export interface RefreshOptions {
  /** This machine's hostname: pids and files of resources recorded on other hosts are not probed. */
  hostname?: string;
}

export interface RefreshResult {
  /** Every resource in state, as observed. */
  actual: ActualResource[];
  /** All drift found, in state order. */
  drift: Drift[];
  /** The state version refresh read (a plan records it). */
  state: StateVersion;
}

/** Anything with the store's read side (a StateStore, or a fake in tests). */
export interface StateReader {
  list(): ResourceRecord[];
  version(): StateVersion;
}

/** The planner's view of a record without probing anything (`plan --refresh=false`). */
export function toActual(record: ResourceRecord): ActualResource {
  return {
    kind: record.kind,
    name: record.name,
    spec: record.spec,
    specHash: record.specHash,
    dependsOn: record.dependsOn,
    status: record.status,
    pid: record.pid,
    error: record.error,
    drift: [],
  };
}

/** Probes every resource in state; returns the observed view and the drift. Writes nothing. */
export function refresh(
  store: StateReader,
  probes: Probes = realProbes,
  options: RefreshOptions = {},
): RefreshResult {
  const here = options.hostname ?? osHostname();
  const state = store.version();
  const actual = store.list().map((record) => {
    const view = toActual(record);
    // Resources on the Host named 'local' are on this machine, whatever its hostname.
    if (record.host !== null && record.host !== here && record.host !== LOCAL_HOST) return view;
    if (record.kind === 'VirtualMachine') refreshVm(record, view, probes);
    if (record.kind === 'Disk') refreshDisk(record, view, probes);
    return view;
  });
  return { actual, drift: actual.flatMap((a) => a.drift), state };
}

function refreshVm(record: ResourceRecord, view: ActualResource, probes: Probes): void {
  const id = { kind: record.kind, name: record.name };
  const alive = record.pid !== null && probes.pidAlive(record.pid);
  if (alive) return;
  if (record.status === 'running') {
    view.drift.push({
      id,
      what: 'vm-process-gone',
      detail:
        record.pid === null
          ? 'state says running but records no VMM process'
          : `VMM process ${record.pid} is gone`,
    });
    view.status = 'stopped';
  }
  // A dead pid means nothing in any status; 'creating' and 'deleting' stay as they are (tainted).
  view.pid = null;
}

function refreshDisk(record: ResourceRecord, view: ActualResource, probes: Probes): void {
  if (record.status !== 'ready') return; // creating/failed/deleting: the planner replaces or deletes it
  const path = record.spec.path;
  if (typeof path !== 'string') return;
  const id = { kind: record.kind, name: record.name };
  if (!probes.fileExists(path)) {
    view.drift.push({ id, what: 'disk-file-missing', detail: `disk file ${path} is missing` });
    return;
  }
  // Only a raw image's file size is its disk size (a qcow2 file grows as it is written).
  const format = record.spec.format ?? 'raw';
  const recorded = record.spec.size;
  if (format !== 'raw' || typeof recorded !== 'number') return;
  const size = probes.fileSize(path);
  if (size === undefined || size === recorded) return;
  view.drift.push({
    id,
    what: 'disk-resized',
    detail: `disk file ${path} is ${size} bytes, but ${recorded} were applied`,
  });
  view.spec = { ...record.spec, size };
  delete view.specHash;
}

/**
 * `mvctl refresh`: records in state what refresh observed, so that drift
 * stops being reported as drift: a VM whose process is gone is recorded as
 * stopped, a raw disk resized by hand at its real size, and a Disk whose
 * file is gone is dropped from state (as Terraform's refresh drops what no
 * longer exists; the next plan creates it). One transaction, an event per
 * change. Returns the drift it recorded.
 */
export function refreshState(
  store: Pick<StateStore, 'list' | 'version' | 'transaction' | 'patch' | 'remove' | 'recordEvent'>,
  command: string,
  probes: Probes = realProbes,
  options: RefreshOptions = {},
): Drift[] {
  return store.transaction(() => {
    const r = refresh(store, probes, options);
    const byKey = new Map(r.actual.map((a) => [`${a.kind}/${a.name}`, a]));
    for (const d of r.drift) {
      const a = byKey.get(`${d.id.kind}/${d.id.name}`);
      if (!a) continue;
      if (d.what === 'vm-process-gone') store.patch(d.id, { status: 'stopped', pid: null });
      else if (d.what === 'disk-resized') store.patch(d.id, { spec: a.spec });
      else store.remove(d.id);
      store.recordEvent({ command, id: d.id, action: 'refresh', outcome: 'succeeded', detail: d.detail });
    }
    return r.drift;
  });
}
