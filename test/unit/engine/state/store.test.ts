import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { MIGRATIONS } from '../../../../src/engine/state/migrations.js';
import ts from 'typescript';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  defaultStatePath,
  SCHEMA_VERSION,
  StateError,
  StateLockedError,
  StateStore,
} from '../../../../src/engine/state/store.js';

const REPO = fileURLToPath(new URL('../../../../', import.meta.url));

let dir: string;
let dbPath: string;
const open: StateStore[] = [];
const children: ChildProcess[] = [];
/** Everything each child has printed so far. */
const outputs = new WeakMap<ChildProcess, string>();
/** Settles once a child has exited and its output streams are drained. */
const closed = new WeakMap<ChildProcess, Promise<void>>();

function openStore(path = dbPath, options = {}): StateStore {
  const s = StateStore.open(path, options);
  open.push(s);
  return s;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mvisor-state-'));
  dbPath = join(dir, 'nested', 'state.db');
});

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of open.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs an ES module script under node with the state file as argv[1]; resolves once it prints `ready`. */
function runChild(script: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, dbPath], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  closed.set(child, new Promise((resolve) => child.once('close', () => resolve())));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      outputs.set(child, out);
      if (out.includes('ready\n')) resolve(child);
    });
    child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
    child.on('exit', (code, signal) => reject(new Error(`child exited (${code ?? signal}) early: ${err}`)));
  });
}

/**
 * The store's modules transpiled to JavaScript under .vitest/ in the repo (so child processes can import
 * them and still resolve better-sqlite3 from node_modules). Returns the path of store.js.
 */
function transpileStore(): string {
  const out = join(REPO, '.vitest', `engine-store-${process.pid}`);
  for (const file of [
    'src/engine/types.ts',
    'src/engine/canonical.ts',
    'src/engine/state/migrations.ts',
    'src/engine/state/records.ts',
    'src/engine/state/process-identity.ts',
    'src/engine/state/snapshots.ts',
    'src/engine/state/store.ts',
  ]) {
    const { outputText } = ts.transpileModule(readFileSync(join(REPO, file), 'utf8'), {
      compilerOptions: {
        module: ts.ModuleKind.ES2022,
        target: ts.ScriptTarget.ES2022,
        esModuleInterop: true,
      },
    });
    const target = join(out, file.replace(/\.ts$/, '.js'));
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, outputText);
  }
  return join(out, 'src/engine/state/store.js');
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

const vm = (name: string, extra: Record<string, unknown> = {}) => ({
  kind: 'VirtualMachine' as const,
  name,
  spec: { memory: 134217728, vcpus: 1, running: true },
  status: 'running' as const,
  pid: 4242,
  ...extra,
});

describe('defaultStatePath', () => {
  it('honours MVISOR_STATE, then XDG_STATE_HOME, then ~/.local/state', () => {
    expect(defaultStatePath({ MVISOR_STATE: '/x/s.db', XDG_STATE_HOME: '/y' })).toBe('/x/s.db');
    expect(defaultStatePath({ XDG_STATE_HOME: '/y' })).toBe('/y/mvisor/state.db');
    expect(defaultStatePath({})).toMatch(/\/\.local\/state\/mvisor\/state\.db$/);
  });
});

describe('StateStore.open', () => {
  it('creates the directory and the schema, in WAL mode', () => {
    const s = openStore();
    expect(existsSync(dbPath)).toBe(true);
    expect(statSync(join(dir, 'nested')).mode & 0o777).toBe(0o700);
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    const raw = new Database(dbPath, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(
        (
          raw.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
            name: string;
          }[]
        )
          .map((r) => r.name)
          .filter((n) => !n.startsWith('sqlite_')),
      ).toEqual(['events', 'locks', 'resources', 'schema_migrations', 'snapshots', 'state_info']);
    } finally {
      raw.close();
    }
  });

  it('migrations are idempotent on reopen and keep data and lineage', () => {
    const s1 = openStore();
    s1.put(vm('web'));
    const { lineage } = s1.version();
    s1.close();
    const s2 = openStore();
    const s3 = openStore();
    expect(s2.get({ kind: 'VirtualMachine', name: 'web' })?.spec).toEqual({
      memory: 134217728,
      vcpus: 1,
      running: true,
    });
    expect(s3.version().lineage).toBe(lineage);
    const raw = new Database(dbPath, { readonly: true });
    try {
      expect(raw.prepare('SELECT version FROM schema_migrations').all()).toEqual([
        { version: 1 },
        { version: 2 },
        { version: 3 },
        { version: 4 },
      ]);
    } finally {
      raw.close();
    }
  });

  it('a state file from schema version 1 gains owned_files; its resources own no file', () => {
    mkdirSync(dirname(dbPath), { recursive: true });
    const raw = new Database(dbPath);
    raw.exec(
      'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT',
    );
    MIGRATIONS[0]!.up(raw);
    raw.prepare("INSERT INTO schema_migrations VALUES (1, 'v1', '2026-01-01')").run();
    raw
      .prepare(
        `INSERT INTO resources (kind, name, spec, spec_hash, status, created_at, updated_at)
         VALUES ('Disk', 'old', '{"path":"/data/old.img"}', 'x', 'ready', '2026-01-01', '2026-01-01')`,
      )
      .run();
    raw.close();
    const s = openStore();
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    expect(s.get({ kind: 'Disk', name: 'old' })?.ownedFiles).toEqual([]);
    // put keeps what a record owns unless told otherwise
    s.put({ kind: 'Disk', name: 'new', spec: {}, status: 'creating', ownedFiles: ['/x.img'] });
    s.put({ kind: 'Disk', name: 'new', spec: {}, status: 'ready' });
    expect(s.get({ kind: 'Disk', name: 'new' })?.ownedFiles).toEqual(['/x.img']);
    s.patch({ kind: 'Disk', name: 'new' }, { ownedFiles: [] });
    expect(s.get({ kind: 'Disk', name: 'new' })?.ownedFiles).toEqual([]);
  });

  it('refuses a state file from a newer schema', () => {
    openStore().close();
    const raw = new Database(dbPath);
    raw.prepare("INSERT INTO schema_migrations VALUES (99, 'future', '2030-01-01')").run();
    raw.close();
    expect(() => StateStore.open(dbPath)).toThrow(StateError);
    expect(() => StateStore.open(dbPath)).toThrow(/schema version 99.*use a newer mvctl/);
  });
});

describe('resources', () => {
  it('put upserts, keeps createdAt, hashes the spec and bumps the serial', () => {
    const s = openStore();
    expect(s.version().serial).toBe(0);
    const first = s.put(vm('web', { dependsOn: [{ kind: 'Disk', name: 'root' }] }));
    expect(first).toMatchObject({
      kind: 'VirtualMachine',
      name: 'web',
      status: 'running',
      pid: 4242,
      controlSocket: null,
      dependsOn: [{ kind: 'Disk', name: 'root' }],
    });
    expect(first.specHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    const second = s.put(
      vm('web', { status: 'stopped', pid: null, spec: { memory: 1, vcpus: 1, running: false } }),
    );
    expect(second.createdAt).toBe(first.createdAt);
    expect(second.specHash).not.toBe(first.specHash);
    expect(second.dependsOn).toEqual([]);
    expect(s.version().serial).toBe(2);
  });

  it('patch changes only the given fields; remove deletes', () => {
    const s = openStore();
    s.put(vm('web', { controlSocket: '/run/web.sock' }));
    const patched = s.patch(
      { kind: 'VirtualMachine', name: 'web' },
      { status: 'failed', error: 'boom', pid: undefined },
    );
    expect(patched).toMatchObject({
      status: 'failed',
      error: 'boom',
      pid: 4242,
      controlSocket: '/run/web.sock',
    });
    expect(() => s.patch({ kind: 'Disk', name: 'nope' }, { status: 'ready' })).toThrow(
      /Disk\/nope is not in state/,
    );
    expect(s.remove({ kind: 'VirtualMachine', name: 'web' })).toBe(true);
    expect(s.remove({ kind: 'VirtualMachine', name: 'web' })).toBe(false);
    expect(s.list()).toEqual([]);
  });

  it('list orders by kind (dependencies first) then name', () => {
    const s = openStore();
    s.put(vm('b'));
    s.put({ kind: 'Disk', name: 'z', spec: { size: 512 }, status: 'ready' });
    s.put(vm('a'));
    s.put({ kind: 'Network', name: 'n', spec: {}, status: 'ready' });
    expect(s.list().map((r) => `${r.kind}/${r.name}`)).toEqual([
      'Network/n',
      'Disk/z',
      'VirtualMachine/a',
      'VirtualMachine/b',
    ]);
  });

  it('a transaction that throws leaves nothing behind', () => {
    const s = openStore();
    s.put(vm('keep'));
    const serial = s.version().serial;
    expect(() =>
      s.transaction(() => {
        s.put(vm('lost'));
        s.remove({ kind: 'VirtualMachine', name: 'keep' });
        s.recordEvent({ command: 'mvctl apply', action: 'create', outcome: 'started' });
        throw new Error('crash in the middle');
      }),
    ).toThrow('crash in the middle');
    expect(s.list().map((r) => r.name)).toEqual(['keep']);
    expect(s.listEvents()).toEqual([]);
    expect(s.version().serial).toBe(serial);
    // and a successful one commits everything
    s.transaction(() => {
      s.put(vm('a'));
      s.put(vm('b'));
    });
    expect(s.list().map((r) => r.name)).toEqual(['a', 'b', 'keep']);
  });
});

describe('events', () => {
  it('records every step and lists them in order, by resource and last N', () => {
    const s = openStore();
    const web = { kind: 'VirtualMachine' as const, name: 'web' };
    s.recordEvent({ command: 'mvctl apply', id: web, action: 'create', outcome: 'started' });
    s.recordEvent({
      command: 'mvctl apply',
      id: web,
      action: 'create',
      outcome: 'succeeded',
      detail: 'pid 7',
    });
    s.recordEvent({
      command: 'mvctl apply',
      id: { kind: 'Disk', name: 'd' },
      action: 'delete',
      outcome: 'failed',
    });
    const all = s.listEvents();
    expect(all.map((e) => [e.seq, e.action, e.outcome])).toEqual([
      [1, 'create', 'started'],
      [2, 'create', 'succeeded'],
      [3, 'delete', 'failed'],
    ]);
    expect(all[1]).toMatchObject({ command: 'mvctl apply', id: web, detail: 'pid 7' });
    expect(s.listEvents({ id: web }).map((e) => e.seq)).toEqual([1, 2]);
    expect(s.listEvents({ limit: 2 }).map((e) => e.seq)).toEqual([2, 3]);
  });
});

describe('locks', () => {
  it('a second connection is refused with a message naming the holder', () => {
    const a = openStore();
    const b = openStore();
    const lock = a.acquireLock('mvctl apply');
    expect(lock.isHeld()).toBe(true);
    let err: unknown;
    try {
      b.acquireLock('mvctl destroy');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateLockedError);
    const locked = err as StateLockedError;
    expect(locked.stale).toBe(false);
    expect(locked.holder).toMatchObject({ pid: process.pid, hostname: hostname(), command: 'mvctl apply' });
    expect(locked.message).toBe(
      `state is locked by \`mvctl apply\` (pid ${process.pid} on host ${hostname()}, since ${lock.info.since}); ` +
        'if that process is gone, run `mvctl force-unlock`',
    );
    expect(lock.release()).toBe(true);
    expect(lock.release()).toBe(false);
    const again = b.acquireLock('mvctl destroy');
    expect(a.lockHolder()).toMatchObject({ command: 'mvctl destroy' });
    again.release();
    expect(a.lockHolder()).toBeUndefined();
  });

  it('force-unlock breaks the lock; the old holder cannot release the new one', () => {
    const a = openStore();
    const b = openStore();
    const old = a.acquireLock('mvctl apply');
    expect(b.forceUnlock()).toMatchObject({ command: 'mvctl apply', pid: process.pid });
    expect(old.isHeld()).toBe(false);
    const fresh = b.acquireLock('mvctl apply');
    expect(old.release()).toBe(false);
    expect(fresh.isHeld()).toBe(true);
    expect(b.forceUnlock()).toBeDefined();
    expect(b.forceUnlock()).toBeUndefined();
    expect(a.listEvents().map((e) => e.action)).toEqual(['force-unlock', 'force-unlock']);
  });

  it('a lock row of an older mvctl (no boot id, start time) is refused, then reported stale once its holder dies, never broken', async () => {
    const s = openStore();
    const child = await runChild(`
      import Database from 'better-sqlite3';
      import { hostname } from 'node:os';
      const db = new Database(process.argv[1]);
      db.pragma('busy_timeout = 5000');
      db.prepare('INSERT INTO locks (id, pid, hostname, command, since, token) VALUES (1, ?, ?, ?, ?, ?)')
        .run(process.pid, hostname(), 'mvctl apply', new Date().toISOString(), 'child');
      process.stdout.write('ready\\n');
      setInterval(() => {}, 1000);
    `);
    const childPid = child.pid as number;
    expect(() => s.acquireLock('mvctl apply')).toThrow(
      new RegExp(`^state is locked by \`mvctl apply\` \\(pid ${childPid} on host .*if that process is gone`),
    );
    child.kill('SIGKILL');
    await waitExit(child);
    let err: unknown;
    try {
      s.acquireLock('mvctl apply');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateLockedError);
    expect((err as StateLockedError).stale).toBe(true);
    expect((err as Error).message).toMatch(`pid ${childPid} is no longer running on this host`);
    expect((err as Error).message).toMatch('run `mvctl force-unlock`');
    expect(s.lockHolder()?.pid).toBe(childPid);
    s.forceUnlock();
    s.acquireLock('mvctl apply').release();
  });

  it('the lock of an mvctl killed with -9 is taken over on the same host and boot, with an event', async () => {
    openStore().close();
    const storeJs = transpileStore();
    try {
      const child = await runChild(`
        const { StateStore } = await import(${JSON.stringify(storeJs)});
        StateStore.open(process.argv[1]).acquireLock('mvctl apply');
        process.stdout.write('ready\\n');
        setInterval(() => {}, 1000);
      `);
      const s = openStore();
      expect(() => s.acquireLock('mvctl destroy')).toThrow(StateLockedError);
      child.kill('SIGKILL');
      await waitExit(child);
      const lock = s.acquireLock('mvctl destroy');
      expect(lock.tookOver?.pid).toBe(child.pid);
      expect(lock.tookOver?.command).toBe('mvctl apply');
      expect(s.lockHolder()?.pid).toBe(process.pid);
      const last = s.listEvents({ limit: 1 })[0];
      expect(last?.action).toBe('lock-takeover');
      expect(last?.detail).toMatch(
        new RegExp(`^took over the lock of \`mvctl apply\` \\(pid ${child.pid} on host`),
      );
      lock.release();
    } finally {
      rmSync(join(REPO, '.vitest', `engine-store-${process.pid}`), { recursive: true, force: true });
    }
  });

  it('a live holder is never taken over, nor one from another boot or host; a reused PID is not the holder', () => {
    const row = (pid: number, host: string, bootId: string, startTime: string) => {
      const raw = new Database(dbPath);
      raw.prepare('DELETE FROM locks').run();
      raw
        .prepare(
          'INSERT INTO locks (id, pid, hostname, command, since, token, boot_id, start_time) VALUES (1, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(pid, host, 'mvctl apply', '2026-01-01T00:00:00.000Z', 't', bootId, startTime);
      raw.close();
    };
    const s = openStore(dbPath, {
      hostname: 'h1',
      bootId: 'boot-1',
      startTime: (pid: number) => `start-${pid}`,
    });
    row(4242, 'h1', 'boot-1', 'start-4242'); // alive: same pid, same start time
    expect(() => s.acquireLock('mvctl apply')).toThrow(StateLockedError);
    row(4242, 'h1', 'boot-0', 'start-0'); // an earlier boot: force-unlock only
    expect(() => s.acquireLock('mvctl apply')).toThrow(StateLockedError);
    row(4242, 'h2', 'boot-1', 'start-0'); // another host
    expect(() => s.acquireLock('mvctl apply')).toThrow(StateLockedError);
    row(4242, 'h1', 'boot-1', 'start-1'); // pid 4242 is now another process
    const lock = s.acquireLock('mvctl apply');
    expect(lock.tookOver).toMatchObject({ pid: 4242, bootId: 'boot-1', startTime: 'start-1' });
    expect(s.lockHolder()).toMatchObject({ pid: process.pid, hostname: 'h1', bootId: 'boot-1' });
    lock.release();
  });

  it('of several processes racing for the lock, exactly one wins', async () => {
    openStore().close();
    const storeJs = transpileStore();
    try {
      const startAt = Date.now() + 2500;
      const racers = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          runChild(`
            const { StateStore } = await import(${JSON.stringify(storeJs)});
            const store = StateStore.open(process.argv[1]);
            process.stdout.write('ready\\n');
            while (Date.now() < ${startAt}) {}
            try {
              store.acquireLock('racer ${i}');
              process.stdout.write('won\\n');
            } catch (e) {
              process.stdout.write((e.name === 'StateLockedError' ? 'lost: ' : 'error: ') + e.message + '\\n');
            }
            // The winner stays alive while the others try: a dead holder's lock is taken over.
            setTimeout(() => store.close(), 3000);
          `),
        ),
      );
      await Promise.all(racers.map((child) => closed.get(child)));
      const said = racers.map((child) => outputs.get(child) ?? '');
      const winners = said.filter((o) => o.includes('won'));
      const losers = said.filter((o) => o.includes('lost: state is locked by `racer'));
      expect(winners).toHaveLength(1);
      expect(losers).toHaveLength(5);
      const holder = openStore().lockHolder();
      const winner = racers[said.findIndex((o) => o.includes('won'))];
      expect(holder?.pid).toBe(winner?.pid);
      for (const l of losers) expect(l).toContain(`(pid ${winner?.pid} on host`);
    } finally {
      rmSync(dirname(dirname(dirname(dirname(storeJs)))), { recursive: true, force: true });
    }
  });

  it('a lock held on another host is never called stale', () => {
    const s = openStore(dbPath, { hostname: 'here', pidAlive: () => false });
    const other = openStore(dbPath, { hostname: 'elsewhere' });
    other.acquireLock('mvctl apply');
    expect(() => s.acquireLock('mvctl apply')).toThrow(/on host elsewhere.*if that process is gone/);
  });
});

describe('crash safety', () => {
  it('after kill -9 of a process mid-transaction, the file is intact and the transaction absent', async () => {
    const s = openStore();
    s.recordEvent({
      command: 'mvctl apply',
      action: 'create',
      outcome: 'succeeded',
      detail: 'before the crash',
    });
    s.put(vm('committed'));
    s.close();

    // A small page cache makes SQLite spill uncommitted pages into the WAL while the child writes, so
    // the kill lands with half a transaction on disk, not only in memory.
    const child = await runChild(`
      import Database from 'better-sqlite3';
import ts from 'typescript';
      import { writeSync } from 'node:fs';
      const db = new Database(process.argv[1]);
      db.pragma('busy_timeout = 5000');
      db.pragma('cache_size = 8');
      const ins = db.prepare("INSERT INTO events (at, command, action, outcome, detail) VALUES ('now', 'crash', 'create', 'started', ?)");
      const put = db.prepare("INSERT OR REPLACE INTO resources (kind, name, spec, spec_hash, status, created_at, updated_at) VALUES ('Disk', ?, '{}', 'h', 'creating', 'now', 'now')");
      db.exec('BEGIN IMMEDIATE');
      for (let i = 0; i < 20000; i++) { ins.run('x'.repeat(200)); put.run('d' + i); }
      writeSync(1, 'ready\\n');
      for (let i = 0; ; i++) { ins.run('y'.repeat(200)); put.run('e' + (i % 50000)); }
    `);
    expect(statSync(`${dbPath}-wal`).size).toBeGreaterThan(1_000_000);
    child.kill('SIGKILL');
    await waitExit(child);
    expect(child.signalCode).toBe('SIGKILL');

    const after = openStore();
    expect(after.integrityCheck()).toBe('ok');
    expect(after.listEvents().map((e) => e.detail)).toEqual(['before the crash']);
    expect(after.list().map((r) => r.name)).toEqual(['committed']);
    // and the store is writable again (no stale write lock left behind)
    after.put(vm('next'));
    after.acquireLock('mvctl apply').release();
  });
});
