/**
 * The engine's state: what mvctl has applied, in one SQLite file.
 *
 * State is sacred (Terraform's lesson): every mutation runs in a
 * transaction, the file is in WAL mode so a crash (even `kill -9`) mid-write
 * leaves the last committed state, a versioned migration table lets later
 * versions change the schema without guessing, and a lock row keeps two
 * applies from interleaving. A lock left by a dead process is reported as
 * stale but never broken silently: `mvctl force-unlock` does that.
 */

import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { homedir, hostname as osHostname } from 'node:os';
import { dirname, join } from 'node:path';
import process from 'node:process';
import Database from 'better-sqlite3';
import { hashJson } from '../canonical.js';
import { KINDS, resourceKey, type Kind, type ResourceId } from '../types.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';

export { SCHEMA_VERSION };

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
}

/** Fields `patch` may change. A changed `spec` recomputes `specHash` unless one is given. */
export type ResourcePatch = Partial<Omit<ResourceInput, 'kind' | 'name'>>;

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
    const who = `\`${holder.command}\` (pid ${holder.pid} on host ${holder.hostname}, since ${holder.since})`;
    super(
      stale
        ? `state is locked by ${who}, but pid ${holder.pid} is no longer running on this host, so the lock ` +
            `looks stale; if no apply is running, run \`mvctl force-unlock\``
        : `state is locked by ${who}; if that process is gone, run \`mvctl force-unlock\``,
    );
    this.name = 'StateLockedError';
  }
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
  /** Whether the lock row is still ours (force-unlock may have broken it). */
  isHeld(): boolean;
  /** Deletes the lock row if it is still ours; returns whether it was. Safe to call twice. */
  release(): boolean;
}

export interface OpenOptions {
  /** How long a statement waits for another connection's write lock (ms). Default 5000. */
  busyTimeoutMs?: number;
  /** Decides whether a lock holder on this host is alive. Default: `process.kill(pid, 0)`. */
  pidAlive?: (pid: number) => boolean;
  /** This machine's hostname. Default `os.hostname()`. */
  hostname?: string;
}

/**
 * Where state lives: `$MVISOR_STATE` if set, else `$XDG_STATE_HOME/mvisor/state.db`, else
 * `~/.local/state/mvisor/state.db`.
 */
export function defaultStatePath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MVISOR_STATE) return env.MVISOR_STATE;
  const base = env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'mvisor', 'state.db');
}

/** `process.kill(pid, 0)`: true if the process exists (EPERM means it exists but is not ours). */
export function processExists(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface ResourceRow {
  kind: string;
  name: string;
  spec: string;
  spec_hash: string;
  depends_on: string;
  status: string;
  pid: number | null;
  control_socket: string | null;
  host: string | null;
  vmm_config_path: string | null;
  log_path: string | null;
  error: string | null;
  owned_files: string;
  created_at: string;
  updated_at: string;
}

interface EventRow {
  id: number;
  at: string;
  command: string;
  kind: string | null;
  name: string | null;
  action: string;
  outcome: string;
  detail: string | null;
}

interface LockRow extends LockInfo {
  token: string;
}

function toKind(kind: string): Kind {
  const k = KINDS.find((x) => x === kind);
  if (!k) throw new StateError(`state has a resource of unknown kind ${JSON.stringify(kind)}`);
  return k;
}

function toStatus(status: string): ResourceStatus {
  const s = RESOURCE_STATUSES.find((x) => x === status);
  if (!s) throw new StateError(`state has a resource with unknown status ${JSON.stringify(status)}`);
  return s;
}

function rowToRecord(row: ResourceRow): ResourceRecord {
  return {
    kind: toKind(row.kind),
    name: row.name,
    spec: JSON.parse(row.spec) as Record<string, unknown>,
    specHash: row.spec_hash,
    dependsOn: JSON.parse(row.depends_on) as ResourceId[],
    status: toStatus(row.status),
    pid: row.pid,
    controlSocket: row.control_socket,
    host: row.host,
    vmmConfigPath: row.vmm_config_path,
    logPath: row.log_path,
    error: row.error,
    ownedFiles: JSON.parse(row.owned_files) as string[],
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function rowToEvent(row: EventRow): EventRecord {
  const event: EventRecord = {
    seq: row.id,
    at: row.at,
    command: row.command,
    action: row.action,
    outcome: row.outcome as EventOutcome,
  };
  if (row.kind !== null && row.name !== null) event.id = { kind: toKind(row.kind), name: row.name };
  if (row.detail !== null) event.detail = row.detail;
  return event;
}

function isConstraintError(e: unknown): boolean {
  return (
    typeof (e as { code?: unknown }).code === 'string' &&
    (e as { code: string }).code.startsWith('SQLITE_CONSTRAINT')
  );
}

export class StateStore {
  private readonly pidAlive: (pid: number) => boolean;
  private readonly hostname: string;

  private constructor(
    private readonly db: Database.Database,
    /** The state file's path. */
    readonly path: string,
    options: OpenOptions,
  ) {
    this.pidAlive = options.pidAlive ?? processExists;
    this.hostname = options.hostname ?? osHostname();
  }

  /**
   * Opens (creating if needed, with its directory) the state file and brings its schema up to date.
   * Safe to call from several processes at once.
   */
  static open(path: string = defaultStatePath(), options: OpenOptions = {}): StateStore {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const db = new Database(path);
    try {
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
      db.pragma('journal_mode = WAL');
      // FULL: a committed transaction survives a power cut, not only a process crash.
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      const store = new StateStore(db, path, options);
      store.migrate();
      return store;
    } catch (e) {
      db.close();
      throw e;
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** Applies pending migrations, each with its `schema_migrations` row, in one immediate transaction. */
  private migrate(): void {
    this.transaction(() => {
      this.db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version     INTEGER PRIMARY KEY,
        description TEXT NOT NULL,
        applied_at  TEXT NOT NULL
      ) STRICT`);
      const current = this.schemaVersion();
      if (current > SCHEMA_VERSION) {
        throw new StateError(
          `${this.path} has state schema version ${current}, but this mvctl knows versions up to ` +
            `${SCHEMA_VERSION}: use a newer mvctl`,
        );
      }
      const record = this.db.prepare(
        'INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)',
      );
      for (const m of MIGRATIONS) {
        if (m.version <= current) continue;
        m.up(this.db);
        record.run(m.version, m.description, new Date().toISOString());
      }
    });
  }

  /** The highest applied migration (0 for an empty file). */
  schemaVersion(): number {
    const row = this.db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as
      { v: number | null } | undefined;
    return row?.v ?? 0;
  }

  /**
   * Runs `fn` in an immediate (write-locking) transaction: committed if it returns, rolled back if it
   * throws. Nested calls become savepoints. `fn` must be synchronous.
   */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** The state's lineage and serial. */
  version(): StateVersion {
    const row = this.db.prepare('SELECT lineage, serial FROM state_info WHERE id = 1').get() as
      StateVersion | undefined;
    if (!row) throw new StateError(`${this.path} has no state_info row`);
    return row;
  }

  private bumpSerial(): void {
    this.db.prepare('UPDATE state_info SET serial = serial + 1 WHERE id = 1').run();
  }

  get(id: ResourceId): ResourceRecord | undefined {
    const row = this.db
      .prepare('SELECT * FROM resources WHERE kind = ? AND name = ?')
      .get(id.kind, id.name) as ResourceRow | undefined;
    return row && rowToRecord(row);
  }

  /** Every resource, by kind (in `KINDS` order) then name. */
  list(): ResourceRecord[] {
    const rows = this.db.prepare('SELECT * FROM resources ORDER BY kind, name').all() as ResourceRow[];
    const rank = (k: Kind): number => KINDS.indexOf(k);
    return rows
      .map(rowToRecord)
      .sort((a, b) => rank(a.kind) - rank(b.kind) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Inserts or replaces a resource (its `createdAt` is kept on replace, and its
   * `ownedFiles` unless given); returns the stored record.
   */
  put(input: ResourceInput): ResourceRecord {
    return this.transaction(() => {
      const now = new Date().toISOString();
      this.db
        .prepare(
          `INSERT INTO resources (kind, name, spec, spec_hash, depends_on, status, pid, control_socket, host,
             vmm_config_path, log_path, error, owned_files, created_at, updated_at)
           VALUES (@kind, @name, @spec, @specHash, @dependsOn, @status, @pid, @controlSocket, @host,
             @vmmConfigPath, @logPath, @error, COALESCE(@ownedFiles, '[]'), @now, @now)
           ON CONFLICT (kind, name) DO UPDATE SET
             spec = excluded.spec, spec_hash = excluded.spec_hash, depends_on = excluded.depends_on,
             status = excluded.status, pid = excluded.pid, control_socket = excluded.control_socket,
             host = excluded.host, vmm_config_path = excluded.vmm_config_path, log_path = excluded.log_path,
             error = excluded.error, owned_files = COALESCE(@ownedFiles, owned_files), updated_at = excluded.updated_at`,
        )
        .run({
          kind: input.kind,
          name: input.name,
          spec: JSON.stringify(input.spec),
          specHash: input.specHash ?? hashJson(input.spec),
          dependsOn: JSON.stringify((input.dependsOn ?? []).map(({ kind, name }) => ({ kind, name }))),
          status: input.status,
          pid: input.pid ?? null,
          controlSocket: input.controlSocket ?? null,
          host: input.host ?? null,
          vmmConfigPath: input.vmmConfigPath ?? null,
          logPath: input.logPath ?? null,
          error: input.error ?? null,
          // Omitted: a new record owns nothing, an existing one keeps what it owns.
          ownedFiles: input.ownedFiles === undefined ? null : JSON.stringify(input.ownedFiles),
          now,
        });
      this.bumpSerial();
      const stored = this.get(input);
      if (!stored) throw new StateError(`${resourceKey(input)} vanished while being written`);
      return stored;
    });
  }

  /** Changes some fields of an existing resource; throws StateError if there is none. */
  patch(id: ResourceId, changes: ResourcePatch): ResourceRecord {
    return this.transaction(() => {
      const current = this.get(id);
      if (!current) throw new StateError(`${resourceKey(id)} is not in state`);
      const { createdAt: _c, updatedAt: _u, ...rest } = current;
      // An explicit `undefined` leaves a field as it is, like an omitted one.
      const defined = Object.fromEntries(
        Object.entries(changes).filter(([, v]) => v !== undefined),
      ) as ResourcePatch;
      const specHash = defined.specHash ?? (defined.spec ? hashJson(defined.spec) : current.specHash);
      return this.put({ ...rest, ...defined, kind: id.kind, name: id.name, specHash });
    });
  }

  /** Deletes a resource; returns whether it was there. */
  remove(id: ResourceId): boolean {
    return this.transaction(() => {
      const { changes } = this.db
        .prepare('DELETE FROM resources WHERE kind = ? AND name = ?')
        .run(id.kind, id.name);
      if (changes > 0) this.bumpSerial();
      return changes > 0;
    });
  }

  /** Appends to the event log; returns the event's sequence number. */
  recordEvent(event: EventInput): number {
    return this.transaction(() => {
      const { lastInsertRowid } = this.db
        .prepare(
          `INSERT INTO events (at, command, kind, name, action, outcome, detail)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          new Date().toISOString(),
          event.command,
          event.id?.kind ?? null,
          event.id?.name ?? null,
          event.action,
          event.outcome,
          event.detail ?? null,
        );
      return Number(lastInsertRowid);
    });
  }

  /** Events in the order they happened; with `id`, only that resource's; with `limit`, the last ones. */
  listEvents(options: { id?: ResourceId; limit?: number } = {}): EventRecord[] {
    const where = options.id ? 'WHERE kind = ? AND name = ?' : '';
    const params: (string | number)[] = options.id ? [options.id.kind, options.id.name] : [];
    const limit = options.limit === undefined ? -1 : Math.max(0, Math.floor(options.limit));
    const rows = this.db
      .prepare(`SELECT * FROM (SELECT * FROM events ${where} ORDER BY id DESC LIMIT ?) ORDER BY id`)
      .all(...params, limit) as EventRow[];
    return rows.map(rowToEvent);
  }

  /** The current lock holder, if any. */
  lockHolder(): LockInfo | undefined {
    const row = this.db
      .prepare('SELECT pid, hostname, command, since, token FROM locks WHERE id = 1')
      .get() as LockRow | undefined;
    if (!row) return undefined;
    return { pid: row.pid, hostname: row.hostname, command: row.command, since: row.since };
  }

  /** Whether a holder ran on this host and its process is gone. */
  isStale(holder: LockInfo): boolean {
    return holder.hostname === this.hostname && !this.pidAlive(holder.pid);
  }

  /**
   * Takes the state lock for `command` (the command line as the user would recognise it, e.g.
   * `mvctl apply`), or throws StateLockedError at once naming the holder. Two processes racing here
   * cannot both win: the check and the insert run in one immediate transaction, and the lock table's
   * primary key admits one row.
   */
  acquireLock(command: string): Lock {
    const info: LockInfo = {
      pid: process.pid,
      hostname: this.hostname,
      command,
      since: new Date().toISOString(),
    };
    const token = randomUUID();
    try {
      this.transaction(() => {
        const holder = this.lockHolder();
        if (holder) throw new StateLockedError(holder, this.isStale(holder));
        this.db
          .prepare('INSERT INTO locks (id, pid, hostname, command, since, token) VALUES (1, ?, ?, ?, ?, ?)')
          .run(info.pid, info.hostname, info.command, info.since, token);
      });
    } catch (e) {
      if (isConstraintError(e)) {
        const holder = this.lockHolder();
        if (holder) throw new StateLockedError(holder, this.isStale(holder));
      }
      throw e;
    }
    const isHeld = (): boolean =>
      this.db.open &&
      this.db.prepare('SELECT 1 FROM locks WHERE id = 1 AND token = ?').get(token) !== undefined;
    return {
      info,
      isHeld,
      release: () => {
        if (!this.db.open) return false;
        return this.transaction(
          () => this.db.prepare('DELETE FROM locks WHERE id = 1 AND token = ?').run(token).changes > 0,
        );
      },
    };
  }

  /** Breaks the lock whoever holds it (recording an event); returns the holder it removed. */
  forceUnlock(command = 'mvctl force-unlock'): LockInfo | undefined {
    return this.transaction(() => {
      const holder = this.lockHolder();
      if (!holder) return undefined;
      this.db.prepare('DELETE FROM locks WHERE id = 1').run();
      this.recordEvent({
        command,
        action: 'force-unlock',
        outcome: 'succeeded',
        detail:
          `removed the lock of \`${holder.command}\` (pid ${holder.pid} on host ${holder.hostname}, ` +
          `since ${holder.since})`,
      });
      return holder;
    });
  }

  /** `PRAGMA integrity_check`: 'ok', or SQLite's list of problems one per line. */
  integrityCheck(): string {
    const rows = this.db.pragma('integrity_check') as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).join('\n');
  }
}
