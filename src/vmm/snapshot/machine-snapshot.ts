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
import {
  createSnapshotFile,
  openSnapshotFile,
  type SnapshotReader,
  type SnapshotWriter,
} from './snapshot-file.js';
import { connectSnapshotSocket, receiveSnapshot } from './snapshot-stream.js';
import { captureVm, checkSnapshot, checkSnapshotDisks, restoreVm, SnapshotError } from './vm-snapshot.js';

/** What a snapshot needs of the machine. */
export interface SnapshotMachine {
  readonly config: ResolvedVmmConfig;
  readonly vm: KvmVm;
  readonly devices: readonly Device[];
  /** Block requests in flight now. */
  storageInFlight(): number;
  /** Waits for the block requests in flight; returns how many there were. */
  drainStorage(): Promise<number>;
  /** The guest is suspended to RAM (ACPI S3): its vCPUs are parked until a wake event. */
  suspendedToRam(): boolean;
}

/**
 * Makes the disk images on disk what the guest wrote (after the block
 * requests drained): flush them, or close them when the VM stops after the
 * snapshot (a qcow2 image's close frees clusters it reserved, which would
 * otherwise change the file after its identity was taken).
 */
export type SettleDisks = (then: 'resume' | 'stop') => Promise<void>;

/**
 * A sleeping guest's vCPUs are parked by the machine, not running: a state
 * taken or loaded now would have them run. Refused, as QEMU refuses to
 * migrate a guest in S3 unless told it may; nothing is written or loaded.
 */
function refuseSuspended(m: SnapshotMachine): void {
  if (m.suspendedToRam())
    throw new SnapshotError(
      'the guest is suspended to RAM (ACPI S3): wake it (the power button: control `powerdown`) and try again',
    );
}

/** Where a snapshot goes: a new file, or the socket of a VMM waiting with `--incoming`. */
export type SnapshotTarget = { file: string } | { socket: string };

/**
 * Writes a snapshot of the running VM to `to`. The VM is paused meanwhile
 * and then resumed, unless `then` is 'stop' (the caller stops it: a
 * snapshot to restore later, like `virsh save`, or sent to another VMM). A
 * file that exists, or a socket nobody listens on, is refused before
 * anything else; a failure removes the file.
 */
export async function takeSnapshot(
  m: SnapshotMachine,
  to: SnapshotTarget,
  then: 'resume' | 'stop',
  settleDisks: SettleDisks,
): Promise<SnapshotResult> {
  const file = 'file' in to ? to.file : `unix:${to.socket}`;
  refuseSuspended(m);
  const t0 = performance.now();
  // Counted as the pause begins too: while the vCPUs are being stopped
  // (a while, nested), requests go on completing.
  if ('socket' in to && then !== 'stop')
    throw new SnapshotError(
      'a snapshot sent to a socket stops the VM (then: stop): the receiver takes over its disks',
    );
  const out: SnapshotWriter =
    'file' in to ? createSnapshotFile(to.file) : await connectSnapshotSocket(to.socket);
  const atPause = m.storageInFlight();
  await m.vm.pause();
  let settled = false;
  try {
    try {
      // At least this many were in flight and completed before the state was taken.
      const drainedRequests = Math.max(atPause, await m.drainStorage());
      settled = true;
      await settleDisks(then);
      const w = await out.write(captureVm(m, drainedRequests), m.vm.ramViews());
      return {
        file,
        bytes: w.size,
        ramDataBytes: w.ramDataBytes,
        pausedMs: Math.round(performance.now() - t0),
        drainedRequests,
      };
    } catch (e) {
      out.discard();
      throw e;
    }
  } finally {
    // A failure before the disks were settled leaves the VM as it was; after
    // (then: stop closed them) the caller stops it, as it was asked to.
    if (then === 'resume' || !settled) m.vm.resume();
  }
}

/**
 * Opens the snapshot `file` for a restore and checks its disks, before the
 * VMM opens them (./vm-snapshot.ts checkSnapshotDisks).
 */
export function openRestore(file: string): SnapshotReader {
  const r = openSnapshotFile(file);
  try {
    checkSnapshotDisks(r.state, file);
    return r;
  } catch (e) {
    r.close();
    throw e;
  }
}

/**
 * Waits on the Unix socket `path` for a VMM's `snapshot {socket}` and reads
 * its state, then checks its disks, before the VMM opens them; the RAM
 * follows in restoreSnapshot.
 */
export async function receiveRestore(path: string, onListening: () => void): Promise<SnapshotReader> {
  const r = await receiveSnapshot(path, onListening);
  try {
    checkSnapshotDisks(r.state, `${path} (incoming)`);
    return r;
  } catch (e) {
    r.close();
    throw e;
  }
}

/** What an in-place restore reports. */
export interface RestoreResult {
  file: string;
  pausedMs: number;
  ramDataBytes: number;
  warnings: string[];
}

/**
 * Puts the running VM back to the snapshot `file` (control `restore`, like
 * QEMU's loadvm): the VM is paused, its block requests finish and its disks
 * are flushed, then the file is checked in full (this VM's config, disks
 * unchanged since: a snapshot taken with then: resume of a VM that has not
 * written to its disks since) before anything is loaded, so that a refused
 * restore resumes the VM as it was. A failure once loading began leaves a
 * VM in no known state: `loaded` says so, and the caller stops it.
 */
export async function restoreInPlace(
  m: SnapshotMachine,
  file: string,
  flushDisks: () => Promise<void>,
): Promise<RestoreResult> {
  refuseSuspended(m);
  const r = openSnapshotFile(file);
  const t0 = performance.now();
  let loading = false;
  try {
    await m.vm.pause();
    try {
      await m.drainStorage();
      await flushDisks();
      checkSnapshotDisks(r.state, file);
      const st = checkSnapshot(m, r.state, file);
      loading = true;
      const ramDataBytes = await r.readRam(m.vm.ramViews());
      const warnings = restoreVm(m, st);
      loading = false;
      return { file, pausedMs: Math.round(performance.now() - t0), ramDataBytes, warnings };
    } catch (e) {
      if (loading) throw new RestoreLoadError(`restoring ${file} failed half-way: ${(e as Error).message}`);
      throw e;
    } finally {
      // Half-loaded, the VM stays paused for the caller to stop.
      if (!loading) m.vm.resume();
    }
  } finally {
    r.close();
  }
}

/** A restore that failed after it began to replace the VM's state: the VM must stop. */
export class RestoreLoadError extends Error {
  override name = 'RestoreLoadError';
}

/**
 * Loads an opened snapshot into the machine (built from the same config,
 * vCPUs not started); everything is checked before anything is loaded.
 * Closes the reader. Returns warnings to log.
 */
export async function restoreSnapshot(
  m: SnapshotMachine,
  r: SnapshotReader,
  file: string,
): Promise<{ warnings: string[]; ramDataBytes: number }> {
  try {
    const st = checkSnapshot(m, r.state, file);
    const ramDataBytes = await r.readRam(m.vm.ramViews());
    return { warnings: restoreVm(m, st), ramDataBytes };
  } finally {
    r.close();
  }
}
