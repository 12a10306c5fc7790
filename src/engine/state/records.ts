/**
 * The records the state store reads and writes (store.ts), and its errors.
 */
import type { ResourceId } from '../types.js';

export type ResourceStatus = 'creating' | 'running' | 'stopped' | 'ready' | 'failed' | 'deleting';
export const RESOURCE_STATUSES: readonly ResourceStatus[] = [
  'creating',
  'running',
  'stopped',
  'ready',
  'failed',
  'deleting',
];

/** One applied resource as stored. */
export interface ResourceRecord extends ResourceId {
  /** The normalised desired spec that was applied. */
  spec: Record<string, unknown>;
  /** `hashJson(spec)`. */
  specHash: string;
  /** What the resource referred to when it was applied (destroy walks this backwards). */
  dependsOn: ResourceId[];
  status: ResourceStatus;
  /** The VMM process of a VM. */
  pid: number | null;
  controlSocket: string | null;
  /** Hostname of the machine the resource lives on (pids are only meaningful there). */
  host: string | null;
  vmmConfigPath: string | null;
  logPath: string | null;
  /** Why the last operation on it failed (status 'failed'). */
  error: string | null;
  /**
   * Files mvctl created for the resource (a Disk's image): the only ones
   * destroy and replace delete without being told to (a Disk's deletePolicy).
   */
  ownedFiles: string[];
  /**
   * A VM stopped by `mvctl snapshot --stop`: the snapshot file its state is
   * in (`mvctl restore` goes on from it); null otherwise. Every write that
   * does not carry it (an apply starting or stopping the VM) clears it.
   */
  savedSnapshot: string | null;
  /** ISO 8601. */
  createdAt: string;
  updatedAt: string;
}

/** What `put` takes: a record without timestamps; omitted optional fields are stored as null / []. */
export interface ResourceInput extends ResourceId {
  spec: Record<string, unknown>;
  status: ResourceStatus;
  /** Defaults to `hashJson(spec)`. */
  specHash?: string;
  dependsOn?: ResourceId[];
  pid?: number | null;
  controlSocket?: string | null;
  host?: string | null;
  vmmConfigPath?: string | null;
  logPath?: string | null;
  error?: string | null;
  ownedFiles?: string[];
  /** Omitted: null (see ResourceRecord.savedSnapshot). */
  savedSnapshot?: string | null;
}

/** Fields `patch` may change. A changed `spec` recomputes `specHash` unless one is given. */
export type ResourcePatch = Partial<Omit<ResourceInput, 'kind' | 'name'>>;

/** What `mvctl snapshot` records of a snapshot it took (the VMM's report). */
export interface SnapshotInput {
  /** The VM's name (a VirtualMachine in state). */
  vm: string;
  /** The snapshot file, absolute. */
  file: string;
  /** The file's apparent size (RAM's zero pages are holes). */
  bytes: number;
  /** Guest RAM stored as data. */
  ramDataBytes: number;
  /** How long the guest was paused, in ms. */
  pausedMs: number;
  /** The VM stopped after it (`--stop`), rather than resuming. */
  stoppedVm: boolean;
}

export interface SnapshotRecord extends SnapshotInput {
  /** Order of taking, across the state. */
  seq: number;
  /** ISO 8601. */
  takenAt: string;
  /** When `mvctl restore` last started the VM from it (ISO 8601), or null. */
  restoredAt: string | null;
}

export type EventOutcome = 'started' | 'succeeded' | 'failed' | 'skipped';

export interface EventInput {
  /** The command line the user ran, e.g. `mvctl apply`. */
  command: string;
  /** The resource the step was about; absent for whole-state events (force-unlock). */
  id?: ResourceId;
  /** The step: create, delete, update, start, stop, replace, force-unlock... */
  action: string;
  outcome: EventOutcome;
  detail?: string;
}

export interface EventRecord extends EventInput {
  seq: number;
  /** ISO 8601. */
  at: string;
}

export interface LockInfo {
  pid: number;
  hostname: string;
  command: string;
  /** ISO 8601. */
  since: string;
  /** The holder's boot (Linux boot id) and process start time; absent in locks from before schema 3. */
  bootId?: string;
  startTime?: string;
}

/** The state's identity and version: a saved plan records these and apply refuses a mismatch. */
export interface StateVersion {
  /** Random id given to the state when it was created (tells two state files apart). */
  lineage: string;
  /** Incremented by every committed change to `resources`. */
  serial: number;
}

export class StateLockedError extends Error {
  constructor(
    readonly holder: LockInfo,
    /** The holder ran on this host and its pid no longer exists. */
    readonly stale: boolean,
  ) {
    const who = describeHolder(holder);
    super(
      stale
        ? `state is locked by ${who}, but pid ${holder.pid} is no longer running on this host, so the lock ` +
            `looks stale; if no apply is running, run \`mvctl force-unlock\``
        : `state is locked by ${who}; if that process is gone, run \`mvctl force-unlock\``,
    );
    this.name = 'StateLockedError';
  }
}

/** `\`mvctl apply\` (pid 42 on host h, since ...)` */
export function describeHolder(holder: LockInfo): string {
  return `\`${holder.command}\` (pid ${holder.pid} on host ${holder.hostname}, since ${holder.since})`;
}

/** The state file was written by a newer mvctl, or is otherwise not one we can use. */
export class StateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateError';
  }
}

/** A held state lock. */
export interface Lock {
  readonly info: LockInfo;
  /** The holder whose lock this one replaced: it had provably died (same host and boot, process gone). */
  readonly tookOver?: LockInfo;
  /** Whether the lock row is still ours (force-unlock may have broken it). */
  isHeld(): boolean;
  /** Deletes the lock row if it is still ours; returns whether it was. Safe to call twice. */
  release(): boolean;
}
