/**
 * The state's snapshots table (schema 4): each snapshot `mvctl snapshot`
 * took of a VM, and when `mvctl restore` last started the VM from it. The
 * rows belong to the VM's record: removing the record removes them (a
 * foreign key), the files stay. Used through `StateStore.snapshots`; each
 * write is a transaction of its own, or a savepoint of the caller's.
 */
import type Database from 'better-sqlite3';
import type { SnapshotInput, SnapshotRecord } from './records.js';

interface SnapshotRow {
  id: number;
  name: string;
  file: string;
  taken_at: string;
  bytes: number;
  ram_data_bytes: number;
  paused_ms: number;
  stopped_vm: number;
  restored_at: string | null;
}

function rowToSnapshot(row: SnapshotRow): SnapshotRecord {
  return {
    seq: row.id,
    vm: row.name,
    file: row.file,
    takenAt: row.taken_at,
    bytes: row.bytes,
    ramDataBytes: row.ram_data_bytes,
    pausedMs: row.paused_ms,
    stoppedVm: row.stopped_vm === 1,
    restoredAt: row.restored_at,
  };
}

export class SnapshotTable {
  constructor(
    /** The store's prepared statement cache. */
    private readonly sql: (text: string) => Database.Statement,
    /** The store's immediate transaction. */
    private readonly transaction: <T>(fn: () => T) => T,
  ) {}

  /** Records a snapshot of a VM that is in state (SQLite refuses one of a VM that is not); returns it. */
  record(input: SnapshotInput, takenAt = new Date().toISOString()): SnapshotRecord {
    return this.transaction(() => {
      const { lastInsertRowid } = this.sql(
        `INSERT INTO snapshots (kind, name, file, taken_at, bytes, ram_data_bytes, paused_ms, stopped_vm)
           VALUES ('VirtualMachine', ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        input.vm,
        input.file,
        takenAt,
        input.bytes,
        input.ramDataBytes,
        input.pausedMs,
        input.stoppedVm ? 1 : 0,
      );
      const row = this.sql('SELECT * FROM snapshots WHERE id = ?').get(lastInsertRowid) as SnapshotRow;
      return rowToSnapshot(row);
    });
  }

  /** Notes a restore of `vm` from `file` on its latest snapshot to that file; returns whether there was one. */
  markRestored(vm: string, file: string, at = new Date().toISOString()): boolean {
    return this.transaction(
      () =>
        this.sql(
          `UPDATE snapshots SET restored_at = ? WHERE id = (
             SELECT MAX(id) FROM snapshots WHERE kind = 'VirtualMachine' AND name = ? AND file = ?)`,
        ).run(at, vm, file).changes > 0,
    );
  }

  /** The snapshots in the order they were taken; with `vm`, only that VM's. */
  list(vm?: string): SnapshotRecord[] {
    const rows = (
      vm === undefined
        ? this.sql('SELECT * FROM snapshots ORDER BY id').all()
        : this.sql("SELECT * FROM snapshots WHERE kind = 'VirtualMachine' AND name = ? ORDER BY id").all(vm)
    ) as SnapshotRow[];
    return rows.map(rowToSnapshot);
  }
}
