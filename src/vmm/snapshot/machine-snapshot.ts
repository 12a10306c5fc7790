/**
 * Snapshot and restore of a running PC machine: pause every vCPU, let the
 * block requests in flight finish (their completions land in guest RAM and
 * the interrupt controllers before anything is read, so none is lost or
 * done twice), write the state and the RAM to a new file, then resume or
 * stop. Restore builds nothing: it loads a file into a machine built from
 * the same config whose vCPUs have not run yet.
 */
import type { Device } from '../core/device.js';
import type { KvmVm } from '../core/kvm-vm.js';
import type { ResolvedVmmConfig } from '../config/types.js';
import type { SnapshotResult } from '../../platform/control-protocol.js';
import { openSnapshotFile, writeSnapshotFile } from './snapshot-file.js';
import { captureVm, checkSnapshot, restoreVm } from './vm-snapshot.js';

/** What a snapshot needs of the machine. */
export interface SnapshotMachine {
  readonly config: ResolvedVmmConfig;
  readonly vm: KvmVm;
  readonly devices: readonly Device[];
  /** Waits for the block requests in flight; returns how many there were. */
  drainStorage(): Promise<number>;
}

/**
 * Writes a snapshot of the running VM to the new file `file`. The VM is
 * paused meanwhile and then resumed, unless `then` is 'stop' (the caller
 * stops it: a snapshot to restore later, like `virsh save`).
 */
export async function takeSnapshot(
  m: SnapshotMachine,
  file: string,
  then: 'resume' | 'stop',
): Promise<SnapshotResult> {
  const t0 = performance.now();
  await m.vm.pause();
  try {
    const drainedRequests = await m.drainStorage();
    const state = captureVm(m, drainedRequests);
    const w = writeSnapshotFile(file, state, m.vm.ramViews());
    return {
      file,
      bytes: w.size,
      ramDataBytes: w.ramDataBytes,
      pausedMs: Math.round(performance.now() - t0),
      drainedRequests,
    };
  } finally {
    if (then === 'resume') m.vm.resume();
  }
}

/**
 * Loads the snapshot `file` into the machine (built from the same config,
 * vCPUs not started). Everything is checked before anything is loaded.
 * Returns warnings to log.
 */
export function restoreSnapshot(
  m: SnapshotMachine,
  file: string,
): { warnings: string[]; ramDataBytes: number } {
  const r = openSnapshotFile(file);
  try {
    const st = checkSnapshot(m, r.state, file);
    const ramDataBytes = r.readRam(m.vm.ramViews());
    return { warnings: restoreVm(m, st), ramDataBytes };
  } finally {
    r.close();
  }
}
