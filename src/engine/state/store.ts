/**
 * The engine's state: what mvctl has applied, in one SQLite file.
 *
 * State is sacred (Terraform's lesson): every mutation runs in a
 * transaction, the file is in WAL mode so a crash (even `kill -9`) mid-write
 * leaves the last committed state, a versioned migration table lets later
 * versions change the schema without guessing, and a lock row keeps two
 * applies from interleaving. A lock whose holder provably died (same host
 * and boot, no process with its PID and start time) is taken over, with an
 * event and a message; any other is reported (as stale when its PID is gone
 * from this host) and only `mvctl force-unlock` breaks it.
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
import { currentBootId, processStartTime } from './process-identity.js';
import { SnapshotTable } from './snapshots.js';

export { SCHEMA_VERSION };
export * from './records.js';
import {
  RESOURCE_STATUSES,
  StateError,
  StateLockedError,
  describeHolder,
  type EventInput,
  type EventOutcome,
  type EventRecord,
  type Lock,
  type LockInfo,
  type ResourceInput,
  type ResourcePatch,
  type ResourceRecord,
  type ResourceStatus,
  type StateVersion,
} from './records.js';

export interface OpenOptions {
  /** How long a statement waits for another connection's write lock (ms). Default 5000. */
  busyTimeoutMs?: number;
  /** Decides whether a lock holder on this host is alive. Default: `process.kill(pid, 0)`. */
  pidAlive?: (pid: number) => boolean;
  /** This machine's hostname. Default `os.hostname()`. */
  hostname?: string;
  /** This boot's id. Default: Linux's boot id. */
  bootId?: string;
  /** A process's start time, undefined if there is none. Default: from /proc. */
  startTime?: (pid: number) => string | undefined;
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
  saved_snapshot: string | null;
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

interface LockRow {
  pid: number;
  hostname: string;
  command: string;
  since: string;
  token: string;
  boot_id: string | null;
  start_time: string | null;
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
    savedSnapshot: row.saved_snapshot,
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
  private readonly bootId: string | undefined;
  private readonly startTime: (pid: number) => string | undefined;
  private readonly hostname: string;
  /** Prepared statements by SQL text: preparing costs more than running a small statement. */
  private readonly statements = new Map<string, Database.Statement>();
  /** The snapshots `mvctl snapshot` took (snapshots.ts). */
  readonly snapshots: SnapshotTable;

  private constructor(
    private readonly db: Database.Database,
    /** The state file's path. */
    readonly path: string,
    options: OpenOptions,
  ) {
    this.pidAlive = options.pidAlive ?? processExists;
    this.hostname = options.hostname ?? osHostname();
    this.bootId = options.bootId ?? currentBootId();
    this.startTime = options.startTime ?? processStartTime;
    this.snapshots = new SnapshotTable(
      (text) => this.sql(text),
      (fn) => this.transaction(fn),
    );
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

  private sql(text: string): Database.Statement {
    let s = this.statements.get(text);
    if (s === undefined) {
      s = this.db.prepare(text);
      this.statements.set(text, s);
    }
    return s;
  }

  /**
   * Runs the writes of several steps in one transaction (one commit, one sync, instead of one per
   * write): `begin` opens it (the writes in it become savepoints), `commit` ends it. For work that
   * changes nothing but state: a crash before the commit loses the batch, and a later plan does
   * that work again. Each write inside still sees the batch's earlier writes.
   */
  beginBatch(): void {
    if (!this.db.inTransaction) this.db.exec('BEGIN IMMEDIATE');
  }

  commitBatch(): void {
    if (this.db.inTransaction) this.db.exec('COMMIT');
  }

  /** Whether a batch (or any transaction) is open: false after SQLite rolled one back by itself. */
  inBatch(): boolean {
    return this.db.inTransaction;
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
      const record = this.sql(
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
    const row = this.sql('SELECT MAX(version) AS v FROM schema_migrations').get() as
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

  /**
   * Runs `fn` in a read transaction: every read in it sees one committed
   * state (WAL gives readers a snapshot), whatever another process commits
   * meanwhile. `fn` must be synchronous and must not write.
   */
  snapshot<T>(fn: () => T): T {
    return this.db.transaction(fn).deferred();
  }

  /** The state's lineage and serial. */
  version(): StateVersion {
    const row = this.sql('SELECT lineage, serial FROM state_info WHERE id = 1').get() as
      StateVersion | undefined;
    if (!row) throw new StateError(`${this.path} has no state_info row`);
    return row;
  }

  private bumpSerial(): void {
    this.sql('UPDATE state_info SET serial = serial + 1 WHERE id = 1').run();
  }

  get(id: ResourceId): ResourceRecord | undefined {
    const row = this.sql('SELECT * FROM resources WHERE kind = ? AND name = ?').get(id.kind, id.name) as
      ResourceRow | undefined;
    return row && rowToRecord(row);
  }

  /** Every resource, by kind (in `KINDS` order) then name. */
  list(): ResourceRecord[] {
    const rows = this.sql('SELECT * FROM resources ORDER BY kind, name').all() as ResourceRow[];
    const rank = (k: Kind): number => KINDS.indexOf(k);
    return rows
      .map(rowToRecord)
      .sort((a, b) => rank(a.kind) - rank(b.kind) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Inserts or replaces a resource (its `createdAt` is kept on replace, and its
   * `ownedFiles` unless given; its `savedSnapshot` is cleared unless given);
   * returns the stored record.
   */
  put(input: ResourceInput): ResourceRecord {
    return this.transaction(() => {
      const now = new Date().toISOString();
      this.sql(
        `INSERT INTO resources (kind, name, spec, spec_hash, depends_on, status, pid, control_socket, host,
             vmm_config_path, log_path, error, owned_files, saved_snapshot, created_at, updated_at)
           VALUES (@kind, @name, @spec, @specHash, @dependsOn, @status, @pid, @controlSocket, @host,
             @vmmConfigPath, @logPath, @error, COALESCE(@ownedFiles, '[]'), @savedSnapshot, @now, @now)
           ON CONFLICT (kind, name) DO UPDATE SET
             spec = excluded.spec, spec_hash = excluded.spec_hash, depends_on = excluded.depends_on,
             status = excluded.status, pid = excluded.pid, control_socket = excluded.control_socket,
             host = excluded.host, vmm_config_path = excluded.vmm_config_path, log_path = excluded.log_path,
             error = excluded.error, owned_files = COALESCE(@ownedFiles, owned_files),
             saved_snapshot = excluded.saved_snapshot, updated_at = excluded.updated_at`,
      ).run({
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
        savedSnapshot: input.savedSnapshot ?? null,
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
      const { changes } = this.sql('DELETE FROM resources WHERE kind = ? AND name = ?').run(id.kind, id.name);
      if (changes > 0) this.bumpSerial();
      return changes > 0;
    });
  }

  /** Appends to the event log; returns the event's sequence number. */
  recordEvent(event: EventInput): number {
    return this.transaction(() => {
      const { lastInsertRowid } = this.sql(
        `INSERT INTO events (at, command, kind, name, action, outcome, detail)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ).run(
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
    const rows = this.sql(
      `SELECT * FROM (SELECT * FROM events ${where} ORDER BY id DESC LIMIT ?) ORDER BY id`,
    ).all(...params, limit) as EventRow[];
    return rows.map(rowToEvent);
  }

  /** The current lock holder, if any. */
  lockHolder(): LockInfo | undefined {
    const row = this.sql(
      'SELECT pid, hostname, command, since, token, boot_id, start_time FROM locks WHERE id = 1',
    ).get() as LockRow | undefined;
    if (!row) return undefined;
    const info: LockInfo = { pid: row.pid, hostname: row.hostname, command: row.command, since: row.since };
    if (row.boot_id !== null) info.bootId = row.boot_id;
    if (row.start_time !== null) info.startTime = row.start_time;
    return info;
  }

  /**
   * Whether a holder has provably died: it ran on this host in this boot,
   * and no process has its PID with its start time (a reused PID is not the
   * holder). Only such a lock is taken over without force-unlock.
   */
  holderIsGone(holder: LockInfo): boolean {
    if (holder.hostname !== this.hostname || holder.bootId === undefined || holder.startTime === undefined)
      return false;
    if (this.bootId === undefined || holder.bootId !== this.bootId) return false;
    return this.startTime(holder.pid) !== holder.startTime;
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
    if (this.bootId !== undefined) info.bootId = this.bootId;
    const startTime = this.startTime(process.pid);
    if (startTime !== undefined) info.startTime = startTime;
    const token = randomUUID();
    let tookOver: LockInfo | undefined;
    try {
      this.transaction(() => {
        const holder = this.lockHolder();
        if (holder && this.holderIsGone(holder)) {
          this.sql('DELETE FROM locks WHERE id = 1').run();
          this.recordEvent({
            command,
            action: 'lock-takeover',
            outcome: 'succeeded',
            detail: `took over the lock of ${describeHolder(holder)}: that process is no longer running`,
          });
          tookOver = holder;
        } else if (holder) throw new StateLockedError(holder, this.isStale(holder));
        this.sql(
          'INSERT INTO locks (id, pid, hostname, command, since, token, boot_id, start_time) VALUES (1, ?, ?, ?, ?, ?, ?, ?)',
        ).run(
          info.pid,
          info.hostname,
          info.command,
          info.since,
          token,
          info.bootId ?? null,
          info.startTime ?? null,
        );
      });
    } catch (e) {
      if (isConstraintError(e)) {
        const holder = this.lockHolder();
        if (holder) throw new StateLockedError(holder, this.isStale(holder));
      }
      throw e;
    }
    const isHeld = (): boolean =>
      this.db.open && this.sql('SELECT 1 FROM locks WHERE id = 1 AND token = ?').get(token) !== undefined;
    return {
      info,
      ...(tookOver ? { tookOver } : {}),
      isHeld,
      release: () => {
        if (!this.db.open) return false;
        return this.transaction(
          () => this.sql('DELETE FROM locks WHERE id = 1 AND token = ?').run(token).changes > 0,
        );
      },
    };
  }

  /** Breaks the lock whoever holds it (recording an event); returns the holder it removed. */
  forceUnlock(command = 'mvctl force-unlock'): LockInfo | undefined {
    return this.transaction(() => {
      const holder = this.lockHolder();
      if (!holder) return undefined;
      this.sql('DELETE FROM locks WHERE id = 1').run();
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
