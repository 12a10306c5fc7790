/**
 * The state file's schema, as an append-only list of migrations (store.ts
 * runs the pending ones in one transaction when it opens a file). A released
 * migration is never edited: a change is a new one.
 */
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';

export interface Migration {
  version: number;
  description: string;
  up(db: Database.Database): void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'resources, events, locks, state_info',
    up(db) {
      db.exec(`
        CREATE TABLE resources (
          kind            TEXT NOT NULL,
          name            TEXT NOT NULL,
          spec            TEXT NOT NULL CHECK (json_valid(spec)),
          spec_hash       TEXT NOT NULL,
          depends_on      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(depends_on)),
          status          TEXT NOT NULL
                          CHECK (status IN ('creating', 'running', 'stopped', 'ready', 'failed', 'deleting')),
          pid             INTEGER,
          control_socket  TEXT,
          host            TEXT,
          vmm_config_path TEXT,
          log_path        TEXT,
          error           TEXT,
          created_at      TEXT NOT NULL,
          updated_at      TEXT NOT NULL,
          PRIMARY KEY (kind, name)
        ) STRICT;

        CREATE TABLE events (
          id      INTEGER PRIMARY KEY AUTOINCREMENT,
          at      TEXT NOT NULL,
          command TEXT NOT NULL,
          kind    TEXT,
          name    TEXT,
          action  TEXT NOT NULL,
          outcome TEXT NOT NULL,
          detail  TEXT
        ) STRICT;
        CREATE INDEX events_by_resource ON events (kind, name, id);

        -- At most one row (id = 1): the primary key makes two racing inserts
        -- impossible even outside a transaction.
        CREATE TABLE locks (
          id       INTEGER PRIMARY KEY CHECK (id = 1),
          pid      INTEGER NOT NULL,
          hostname TEXT NOT NULL,
          command  TEXT NOT NULL,
          since    TEXT NOT NULL,
          token    TEXT NOT NULL
        ) STRICT;

        CREATE TABLE state_info (
          id      INTEGER PRIMARY KEY CHECK (id = 1),
          lineage TEXT NOT NULL,
          serial  INTEGER NOT NULL
        ) STRICT;
      `);
      db.prepare('INSERT INTO state_info (id, lineage, serial) VALUES (1, ?, 0)').run(randomUUID());
    },
  },
  {
    version: 2,
    description: 'resources.owned_files: the files mvctl created for a resource (only those it deletes)',
    up(db) {
      // Records from before this version own nothing: mvctl keeps their files
      // (it cannot tell any more whether it created them).
      db.exec(
        `ALTER TABLE resources ADD COLUMN owned_files TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(owned_files))`,
      );
    },
  },
  {
    version: 3,
    description: 'locks.boot_id, locks.start_time: a lock whose holder provably died is taken over',
    up(db) {
      db.exec('ALTER TABLE locks ADD COLUMN boot_id TEXT');
      db.exec('ALTER TABLE locks ADD COLUMN start_time TEXT');
    },
  },
  {
    version: 4,
    description:
      'snapshots: the snapshots mvctl took of each VM; resources.saved_snapshot: the file a VM stopped by one is in',
    up(db) {
      // A VM's snapshots go with its record (destroy, replace, state rm): the
      // files stay (mvctl snapshot writes them where the user said), the
      // events keep the history.
      db.exec(`
        CREATE TABLE snapshots (
          id             INTEGER PRIMARY KEY AUTOINCREMENT,
          kind           TEXT NOT NULL DEFAULT 'VirtualMachine' CHECK (kind = 'VirtualMachine'),
          name           TEXT NOT NULL,
          file           TEXT NOT NULL,
          taken_at       TEXT NOT NULL,
          bytes          INTEGER NOT NULL CHECK (bytes >= 0),
          ram_data_bytes INTEGER NOT NULL CHECK (ram_data_bytes >= 0),
          paused_ms      INTEGER NOT NULL CHECK (paused_ms >= 0),
          stopped_vm     INTEGER NOT NULL CHECK (stopped_vm IN (0, 1)),
          restored_at    TEXT,
          FOREIGN KEY (kind, name) REFERENCES resources (kind, name) ON DELETE CASCADE
        ) STRICT;
        CREATE INDEX snapshots_by_vm ON snapshots (kind, name, id);
      `);
      db.exec('ALTER TABLE resources ADD COLUMN saved_snapshot TEXT');
    },
  },
];

/** The schema version this build writes. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
