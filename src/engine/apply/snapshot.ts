/**
 * `mvctl snapshot` and `mvctl restore`: a whole running VM to a new file
 * through its VMM's control socket (then resumed, or stopped as `virsh save`
 * does), and a stopped VM started again from such a file (`mvisor
 * --restore`), launched as apply launches it. The caller holds the state
 * lock. What changed is recorded in one transaction after it happened; a
 * failure leaves the VM's record as it was (a restore that spawned a VMM
 * puts the record back once that VMM is gone), with a failed event.
 */
import { existsSync, lstatSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, relative, isAbsolute } from 'node:path';
import { stringify } from 'yaml';
import type { NormalizedVirtualMachineSpec } from '../manifest/types.js';
import type { ResourceRecord, StateStore } from '../state/store.js';
import type { ResourceId } from '../types.js';
import { ApplyError, diskImageInState, vmmConfigFor } from './apply.js';
import { ControlError, controlRequest } from './control-client.js';
import type { SnapshotResult } from '../../platform/control-protocol.js';
import {
  isVmmProcess,
  LaunchError,
  startVmm,
  stopVm,
  vmPaths,
  waitVmmGone,
  type VmPaths,
} from './vm-process.js';

export interface SnapshotOptions {
  /** The command line, for events ("mvctl snapshot"). */
  command: string;
  /** Stop the VM after the snapshot (`virsh save`) instead of resuming it. */
  stop: boolean;
  /** Directory of VM runtime files (default: next to the state file). */
  stateDir?: string;
  /** How long the VMM may take to write the snapshot (default 10 minutes). */
  timeoutMs?: number;
}

export interface SnapshotOutcome {
  vm: string;
  file: string;
  /** The file's apparent size (RAM's zero pages are holes). */
  bytes: number;
  /** What the file takes on disk. */
  diskBytes: number;
  ramDataBytes: number;
  pausedMs: number;
  drainedRequests: number;
  /** The VM was stopped after the snapshot. */
  stopped: boolean;
  takenAt: string;
}

export interface RestoreOptions {
  command: string;
  stateDir?: string;
  /** How long the restored VM may take to report running (default 2 minutes: it reads the file first). */
  timeoutMs?: number;
}

export interface RestoreOutcome {
  vm: string;
  file: string;
  pid: number;
  /** The VM was running and went back to the snapshot in its own process (virsh snapshot-revert). */
  inPlace: boolean;
  /** inPlace: how long its vCPUs were paused, in ms. */
  pausedMs?: number;
}

const SNAPSHOT_TIMEOUT_MS = 600_000;
const RESTORE_TIMEOUT_MS = 120_000;
/** How long a VMM may take to stop after a snapshot with then: stop (it closes its disks first). */
const STOP_AFTER_SNAPSHOT_MS = 30_000;

const vmId = (name: string): ResourceId => ({ kind: 'VirtualMachine', name });

function stateDirOf(store: StateStore, stateDir: string | undefined): string {
  return stateDir ?? dirname(store.path);
}

function recordOf(store: StateStore, name: string): ResourceRecord {
  const rec = store.get(vmId(name));
  if (!rec) throw new ApplyError(`VirtualMachine/${name}: not in state (see mvctl show)`);
  return rec;
}

/** Refuses a snapshot file that exists, has no directory, or lies where destroy deletes. */
function checkNewFile(file: string, paths: VmPaths, name: string): void {
  let exists = true;
  try {
    lstatSync(file); // a dangling symlink exists too: the VMM's exclusive create refuses it
  } catch {
    exists = false;
  }
  if (exists)
    throw new ApplyError(
      `${file} already exists: a snapshot is always a new file, never written over one; choose another name ` +
        `or remove it (VirtualMachine/${name} was not touched)`,
    );
  const dir = dirname(file);
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new ApplyError(`${file}: ${dir} is not a directory (VirtualMachine/${name} was not touched)`);
  const inside = relative(paths.dir, file);
  if (!inside.startsWith('..') && !isAbsolute(inside))
    throw new ApplyError(
      `${file} is in the VM's runtime directory ${paths.dir}, which destroy deletes: choose another place`,
    );
}

/** Why a VM in state is not running, for a message. */
function notRunning(rec: ResourceRecord): string {
  if (rec.status === 'running') return `its VMM process ${rec.pid ?? '(none recorded)'} is gone`;
  const saved = rec.savedSnapshot ? `; its state is saved in ${rec.savedSnapshot} (mvctl restore)` : '';
  return `it is ${rec.status}${saved}`;
}

/**
 * Snapshots a running VM in state to the new file `file` (absolute) and
 * records it: a row in the snapshots table, and with `stop` the VM as
 * stopped with its state saved in `file`.
 */
export async function snapshotVm(
  store: StateStore,
  name: string,
  file: string,
  opts: SnapshotOptions,
): Promise<SnapshotOutcome> {
  const id = vmId(name);
  const rec = recordOf(store, name);
  const paths = vmPaths(stateDirOf(store, opts.stateDir), name);
  checkNewFile(file, paths, name);
  const pid = rec.pid;
  if (rec.status !== 'running' || !pid || !isVmmProcess(pid))
    throw new ApplyError(
      `VirtualMachine/${name}: only a running VM can be snapshotted, and ${notRunning(rec)}`,
    );
  const socket = rec.controlSocket ?? paths.control;
  const then = opts.stop ? 'stop' : 'resume';
  store.recordEvent({ command: opts.command, id, action: 'snapshot', outcome: 'started', detail: file });
  let error: string | undefined;
  let report: SnapshotResult | undefined;
  try {
    const r = await controlRequest(socket, 'snapshot', opts.timeoutMs ?? SNAPSHOT_TIMEOUT_MS, { file, then });
    if (r.ok) report = r;
    else error = /EEXIST|already exists/.test(r.error) ? `${file} already exists` : r.error;
  } catch (e) {
    error = e instanceof ControlError ? e.message : String(e);
  }
  if (report === undefined) {
    // With then: stop, a failure after the disks were closed stops the VM (the VMM says so in its log).
    const stopped = opts.stop && (await waitVmmGone(pid, 2000));
    const detail =
      `snapshot to ${file} failed: ${error ?? 'no answer'}` +
      (stopped
        ? `; the VMM stopped the VM after the failure (see ${rec.logPath ?? paths.log}); mvctl plan shows it as drift`
        : '');
    store.recordEvent({ command: opts.command, id, action: 'snapshot', outcome: 'failed', detail });
    throw new ApplyError(`VirtualMachine/${name}: ${detail}`);
  }
  if (opts.stop && !(await waitVmmGone(pid, STOP_AFTER_SNAPSHOT_MS))) {
    // The snapshot is complete; a VMM that does not stop on its own is stopped.
    await stopVm(pid, socket, 0);
  }
  let diskBytes = report.bytes;
  try {
    diskBytes = statSync(file).blocks * 512;
  } catch {
    // keep the apparent size
  }
  const outcome = store.transaction((): SnapshotOutcome => {
    const taken = store.snapshots.record({
      vm: name,
      file,
      bytes: report.bytes,
      ramDataBytes: report.ramDataBytes,
      pausedMs: report.pausedMs,
      stoppedVm: opts.stop,
    });
    if (opts.stop) store.patch(id, { status: 'stopped', pid: null, savedSnapshot: file });
    store.recordEvent({
      command: opts.command,
      id,
      action: 'snapshot',
      outcome: 'succeeded',
      detail: `${file}: paused ${report.pausedMs} ms${opts.stop ? ', VM stopped' : ''}`,
    });
    return {
      vm: name,
      file,
      bytes: report.bytes,
      diskBytes,
      ramDataBytes: report.ramDataBytes,
      pausedMs: report.pausedMs,
      drainedRequests: report.drainedRequests,
      stopped: opts.stop,
      takenAt: taken.takenAt,
    };
  });
  return outcome;
}

/** The reason a VMM gave for refusing to start (its last error line), without its prefixes. */
export function vmmRefusal(logText: string, name: string): string | undefined {
  const lines = logText
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const line = [...lines].reverse().find((l) => /^mvisor: (error: |cannot )/.test(l)) ?? lines.at(-1);
  if (line === undefined) return undefined;
  return line
    .replace(/^mvisor: (error: )?/, '')
    .replace(`cannot restore VM ${name}: `, '')
    .replace(`cannot run VM ${name}: `, '');
}

/**
 * Starts a stopped VM in state from the snapshot `file` (absolute): the VMM
 * config the state records (written from the recorded spec when it is
 * missing), the VM's socket, log and pid file as apply gives them. Records
 * it running once it says so.
 */
export async function restoreVm(
  store: StateStore,
  name: string,
  file: string,
  opts: RestoreOptions,
): Promise<RestoreOutcome> {
  const id = vmId(name);
  const rec = recordOf(store, name);
  if (!existsSync(file)) throw new ApplyError(`${file}: no such snapshot file`);
  if (rec.status === 'creating' || rec.status === 'deleting')
    throw new ApplyError(
      `VirtualMachine/${name}: an apply was interrupted while it was ${rec.status === 'creating' ? 'starting' : 'deleting'} ` +
        'the VM; run mvctl apply first',
    );
  const stateDir = stateDirOf(store, opts.stateDir);
  const paths = vmPaths(stateDir, name);
  if (rec.pid && isVmmProcess(rec.pid)) return revertRunningVm(store, rec, file, paths, opts);
  const config = rec.vmmConfigPath && existsSync(rec.vmmConfigPath) ? rec.vmmConfigPath : paths.config;
  if (config === paths.config && !existsSync(config)) {
    // Never started (running: false): the config apply would have written.
    const cfg = vmmConfigFor(name, rec.spec as NormalizedVirtualMachineSpec, paths, diskImageInState(store));
    mkdirSync(paths.dir, { recursive: true });
    writeFileSync(config, stringify(cfg));
  }
  store.recordEvent({ command: opts.command, id, action: 'restore', outcome: 'started', detail: file });
  let spawned: number | undefined;
  try {
    const l = await startVmm({ ...paths, config }, name, {
      timeoutMs: opts.timeoutMs ?? RESTORE_TIMEOUT_MS,
      restore: file,
      onSpawn: (pid, p) => {
        spawned = pid;
        // Before anything can fail: a crash from here on leaves a 'creating' VM that the next apply replaces.
        store.patch(id, {
          status: 'creating',
          pid,
          controlSocket: p.control,
          vmmConfigPath: config,
          logPath: p.log,
        });
      },
    });
    const spec = rec.spec as Partial<NormalizedVirtualMachineSpec>;
    if (l.status.vcpus !== spec.vcpus || l.status.memory !== spec.memory)
      throw new ApplyError(
        `VirtualMachine/${name}: the restored VMM runs ${l.status.vcpus} vCPUs / ${l.status.memory} bytes, ` +
          `the state's spec says ${spec.vcpus} / ${spec.memory}`,
      );
    store.transaction(() => {
      store.patch(id, { status: 'running', pid: l.pid, error: null, savedSnapshot: null });
      store.snapshots.markRestored(name, file);
      store.recordEvent({
        command: opts.command,
        id,
        action: 'restore',
        outcome: 'succeeded',
        detail: `${file}: running, pid ${l.pid}`,
      });
    });
    return { vm: name, file, pid: l.pid, inPlace: false };
  } catch (e) {
    if (spawned && isVmmProcess(spawned)) await stopVm(spawned, paths.control, 0);
    const message = failureMessage(e, name);
    store.transaction(() => {
      // The record as it was: the VM stays stopped (and its saved snapshot, if any, saved).
      if (spawned)
        store.patch(id, {
          status: rec.status,
          pid: rec.pid,
          controlSocket: rec.controlSocket,
          vmmConfigPath: rec.vmmConfigPath,
          logPath: rec.logPath,
          error: rec.error,
          savedSnapshot: rec.savedSnapshot,
        });
      store.recordEvent({ command: opts.command, id, action: 'restore', outcome: 'failed', detail: message });
    });
    throw new ApplyError(message);
  }
}

/**
 * A running VM goes back to the snapshot `file` in its own VMM process (the
 * control request `restore`): the VMM checks the file in full first (this
 * VM's config, its disks unchanged since), and a refusal leaves the VM
 * running as it was.
 */
async function revertRunningVm(
  store: StateStore,
  rec: ResourceRecord,
  file: string,
  paths: VmPaths,
  opts: RestoreOptions,
): Promise<RestoreOutcome> {
  const name = rec.name;
  const id = vmId(name);
  const pid = rec.pid!;
  store.recordEvent({
    command: opts.command,
    id,
    action: 'restore',
    outcome: 'started',
    detail: `${file} (in place)`,
  });
  let error: string;
  try {
    const r = await controlRequest(
      rec.controlSocket ?? paths.control,
      'restore',
      opts.timeoutMs ?? RESTORE_TIMEOUT_MS,
      {
        file,
      },
    );
    if (r.ok) {
      store.transaction(() => {
        store.snapshots.markRestored(name, file);
        store.recordEvent({
          command: opts.command,
          id,
          action: 'restore',
          outcome: 'succeeded',
          detail: `${file}: in place, paused ${r.pausedMs} ms`,
        });
      });
      return { vm: name, file, pid, inPlace: true, pausedMs: r.pausedMs };
    }
    error = r.error;
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  const stopped = !isVmmProcess(pid) || (await waitVmmGone(pid, 2000));
  const detail = `the VMM refused to go back to ${file}: ${error} (${stopped ? 'the VM stopped; mvctl plan shows it as drift' : 'the VM runs on as it was; state is unchanged'})`;
  store.recordEvent({ command: opts.command, id, action: 'restore', outcome: 'failed', detail });
  throw new ApplyError(`VirtualMachine/${name}: ${detail}`);
}

function failureMessage(e: unknown, name: string): string {
  if (e instanceof LaunchError && e.exitCode === 2) {
    const why = vmmRefusal(e.logText, name);
    if (why !== undefined)
      return `VirtualMachine/${name}: the VMM refused to restore it: ${why} (the VM stays stopped; state is unchanged)`;
  }
  const msg = e instanceof Error ? e.message : String(e);
  // A LaunchError's message starts with the VM's name.
  if (e instanceof LaunchError) return `VirtualMachine/${msg}`;
  return msg.startsWith('VirtualMachine/') ? msg : `VirtualMachine/${name}: restore failed: ${msg}`;
}
