/**
 * The snapshots table and a VM's saved snapshot (schema 4), on a real
 * SQLite file: recorded, listed, marked restored, gone with the VM's record,
 * and never half-written.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../../../src/engine/state/migrations.js';
import { SCHEMA_VERSION, StateStore } from '../../../../src/engine/state/store.js';

let dir: string;
let dbPath: string;
const open: StateStore[] = [];

function openStore(): StateStore {
  const s = StateStore.open(dbPath);
  open.push(s);
  return s;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mvisor-snapshots-'));
  dbPath = join(dir, 'state.db');
});

afterEach(() => {
  for (const s of open.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

const vm = (name: string) => ({
  kind: 'VirtualMachine' as const,
  name,
  spec: { memory: 67108864, vcpus: 1, running: true },
  status: 'running' as const,
  pid: 4242,
});

const snap = (name: string, file: string, stoppedVm = false) => ({
  vm: name,
  file,
  bytes: 67_200_000,
  ramDataBytes: 40_960,
  pausedMs: 12,
  stoppedVm,
});

describe('snapshots', () => {
  it('are recorded per VM in the order taken, with their report, and marked when restored', () => {
    const s = openStore();
    s.put(vm('a'));
    s.put(vm('b'));
    const serial = s.version().serial;
    const first = s.snapshots.record(snap('a', '/snaps/a-1'));
    s.snapshots.record(snap('b', '/snaps/b-1'));
    s.snapshots.record(snap('a', '/snaps/a-2', true));
    // A snapshot alone changes no resource: a saved plan stays valid.
    expect(s.version().serial).toBe(serial);
    expect(first).toMatchObject({ vm: 'a', file: '/snaps/a-1', bytes: 67_200_000, ramDataBytes: 40_960 });
    expect(first.takenAt).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
    expect(first.restoredAt).toBeNull();
    expect(s.snapshots.list('a').map((x) => [x.file, x.stoppedVm, x.pausedMs])).toEqual([
      ['/snaps/a-1', false, 12],
      ['/snaps/a-2', true, 12],
    ]);
    expect(s.snapshots.list().map((x) => x.file)).toEqual(['/snaps/a-1', '/snaps/b-1', '/snaps/a-2']);

    expect(s.snapshots.markRestored('a', '/snaps/a-2', '2026-12-01T10:00:00.000Z')).toBe(true);
    expect(s.snapshots.markRestored('a', '/snaps/b-1')).toBe(false); // not one of a's
    expect(s.snapshots.list('a').map((x) => x.restoredAt)).toEqual([null, '2026-12-01T10:00:00.000Z']);
  });

  it('refuses a snapshot of a VM that is not in state', () => {
    const s = openStore();
    expect(() => s.snapshots.record(snap('ghost', '/snaps/g'))).toThrow(/FOREIGN KEY/);
    expect(s.snapshots.list()).toEqual([]);
  });

  it("go with the VM's record (destroy, replace, state rm), and stay through its updates", () => {
    const s = openStore();
    s.put(vm('a'));
    s.put(vm('b'));
    s.snapshots.record(snap('a', '/snaps/a-1'));
    s.snapshots.record(snap('b', '/snaps/b-1'));
    s.put({ ...vm('a'), status: 'stopped', pid: null });
    s.patch({ kind: 'VirtualMachine', name: 'a' }, { status: 'running', pid: 7 });
    expect(s.snapshots.list('a')).toHaveLength(1);
    s.remove({ kind: 'VirtualMachine', name: 'a' });
    expect(s.snapshots.list().map((x) => x.vm)).toEqual(['b']);
  });
});

describe('a VM stopped by a snapshot', () => {
  it('keeps its saved snapshot through patches; a put that does not carry it (an apply starting it) clears it', () => {
    const s = openStore();
    const id = { kind: 'VirtualMachine' as const, name: 'a' };
    expect(s.put(vm('a')).savedSnapshot).toBeNull();
    s.patch(id, { status: 'stopped', pid: null, savedSnapshot: '/snaps/a-1' });
    expect(s.get(id)).toMatchObject({ status: 'stopped', pid: null, savedSnapshot: '/snaps/a-1' });
    s.patch(id, { error: null });
    expect(s.get(id)?.savedSnapshot).toBe('/snaps/a-1');
    s.put({ ...vm('a'), status: 'creating', pid: null });
    expect(s.get(id)?.savedSnapshot).toBeNull();
  });

  it('is recorded in one transaction with its snapshot: a failure leaves state as it was', () => {
    const s = openStore();
    const id = { kind: 'VirtualMachine' as const, name: 'a' };
    s.put(vm('a'));
    const before = s.get(id);
    const serial = s.version().serial;
    expect(() =>
      s.transaction(() => {
        s.snapshots.record(snap('a', '/snaps/a-1', true));
        s.patch(id, { status: 'stopped', pid: null, savedSnapshot: '/snaps/a-1' });
        s.recordEvent({ command: 'mvctl snapshot', id, action: 'snapshot', outcome: 'succeeded' });
        throw new Error('disk full');
      }),
    ).toThrow('disk full');
    expect(s.get(id)).toEqual(before);
    expect(s.version().serial).toBe(serial);
    expect(s.snapshots.list()).toEqual([]);
    expect(s.listEvents()).toEqual([]);
  });
});

describe('migration 4', () => {
  it('gives a schema-3 state file the snapshots table; its VMs have no saved snapshot', () => {
    mkdirSync(dirname(dbPath), { recursive: true });
    const raw = new Database(dbPath);
    raw.exec(
      'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT',
    );
    for (const m of MIGRATIONS.filter((x) => x.version <= 3)) {
      m.up(raw);
      raw.prepare("INSERT INTO schema_migrations VALUES (?, 'old', '2026-01-01')").run(m.version);
    }
    raw
      .prepare(
        `INSERT INTO resources (kind, name, spec, spec_hash, status, pid, created_at, updated_at)
         VALUES ('VirtualMachine', 'old', '{}', 'x', 'running', 99, '2026-01-01', '2026-01-01')`,
      )
      .run();
    raw.close();
    const s = openStore();
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBe(4);
    expect(s.get({ kind: 'VirtualMachine', name: 'old' })).toMatchObject({ pid: 99, savedSnapshot: null });
    s.snapshots.record(snap('old', '/snaps/old-1'));
    expect(s.snapshots.list('old')).toHaveLength(1);
  });
});
