/**
 * `mvctl snapshot` and `mvctl restore` end to end: a planted guest that
 * ticks forever, declared in a manifest and applied, is saved and stopped
 * (`snapshot --stop`), then restored in a new VMM process, where it goes on
 * from the very tick it was at. State records each step. A snapshot that
 * resumes, an in-place restore, and what is refused (an existing file, a
 * damaged snapshot) are tested against a stand-in VMM in
 * test/unit/engine/apply/snapshot.test.ts: each mvctl process costs seconds
 * in the nested test host, so this test starts four.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import { assertBuilt, tempDir } from '../helpers/mvisor.js';
import { mvctl } from '../helpers/mvctl.js';
import { outputValidator, validationErrors } from '../helpers/output-schemas.js';
import { tickOf, tickerGuest, tinyPvhElf } from '../helpers/tiny-elf.js';

/** mvctl with the test's state file. */
const run = (dir: string, args: string[]) =>
  mvctl(dir, [...args, '--state', join(dir, 'state.db')], {}, scaled(120_000));

function valid(name: string, text: string): unknown {
  const value: unknown = JSON.parse(text);
  const v = outputValidator(name);
  expect(v(value), `${name}: ${validationErrors(v)}`).toBe(true);
  return value;
}

interface VmRow {
  status: string;
  pid: number | null;
  savedSnapshot: string | null;
}

/** The VM's snapshots as the state file records them. */
function snapshotRows(dir: string): { file: string; stoppedVm: number; restored: number }[] {
  const db = new Database(join(dir, 'state.db'), { readonly: true });
  try {
    return db
      .prepare(
        "SELECT file, stopped_vm AS stoppedVm, restored_at IS NOT NULL AS restored FROM snapshots WHERE name = 'ticker' ORDER BY id",
      )
      .all() as { file: string; stoppedVm: number; restored: number }[];
  } finally {
    db.close();
  }
}

/** The VM's record, read from the state file itself (no mvctl process: they cost seconds nested). */
function vmRow(dir: string): VmRow | undefined {
  const db = new Database(join(dir, 'state.db'), { readonly: true });
  try {
    const row = db
      .prepare(
        "SELECT status, pid, saved_snapshot AS savedSnapshot FROM resources WHERE kind = 'VirtualMachine' AND name = 'ticker'",
      )
      .get() as VmRow | undefined;
    return row;
  } finally {
    db.close();
  }
}

/** Alive and not a zombie. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function waitFor(pred: () => boolean, ms: number, what: string): Promise<void> {
  const t = Date.now();
  while (!pred()) {
    if (Date.now() - t > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The ticks in console text (the ticker counts modulo 4096 in its lines). */
function ticks(text: string): number[] {
  return text
    .split('\n')
    .map(tickOf)
    .filter((t) => t !== undefined);
}

/** Whether every tick follows the one before it (modulo the 4096 a line can show). */
function consecutive(t: number[]): boolean {
  return t.every((x, i) => i === 0 || x === (t[i - 1]! + 1) % 4096);
}

describe('mvctl snapshot and restore', () => {
  it(
    'saves and stops a running VM, restores it where it was, each step recorded in state',
    async () => {
      assertBuilt();
      const dir = tempDir('mvctl-snapshot-');
      writeFileSync(join(dir, 'ticker.elf'), tinyPvhElf(tickerGuest(200_000)));
      writeFileSync(
        join(dir, 'vms.yaml'),
        `apiVersion: mvisor.dev/v1alpha1
kind: VirtualMachine
metadata: {name: ticker}
spec:
  memory: 64M
  firmware: {kernel: ticker.elf}
  serial: {file: ticker.log}
  disks: [{disk: scratch}]
---
apiVersion: mvisor.dev/v1alpha1
kind: Disk
metadata: {name: scratch}
spec: {format: raw, size: 4M}
`,
      );
      mkdirSync(join(dir, 'snaps'));
      const log = join(dir, 'ticker.log');
      const consoleText = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
      const ticksNow = () => ticks(consoleText()).length;

      let r = run(dir, ['apply', '-f', 'vms.yaml', '--auto-approve']);
      expect(r.code, r.stderr).toBe(0);
      const pid = vmRow(dir)!.pid!;
      expect(alive(pid)).toBe(true);
      await waitFor(() => ticksNow() >= 10, scaled(30_000), 'the guest to tick');

      // Saved and stopped (virsh save): state says stopped with its state in the file.
      const save = join(dir, 'snaps', 'save.snap');
      r = run(dir, ['snapshot', 'ticker', 'snaps/save.snap', '--stop', '--json']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(valid('snapshot', r.stdout)).toMatchObject({ vm: 'ticker', file: save, stopped: true });
      await waitFor(() => !alive(pid), scaled(10_000), 'the VMM to stop after the snapshot');
      expect(vmRow(dir)).toEqual({ status: 'stopped', pid: null, savedSnapshot: save });
      const before = consoleText();
      const lastTick = ticks(before).at(-1)!;

      // Restored: a new VMM process, and the guest goes on from the tick after the last one it printed.
      r = run(dir, ['restore', 'ticker', 'snaps/save.snap']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const restored = vmRow(dir)!;
      expect(restored).toMatchObject({ status: 'running', savedSnapshot: null });
      const pid2 = restored.pid!;
      expect(pid2).not.toBe(pid);
      expect(r.stdout).toBe(`ticker: restored from ${save}, running (pid ${pid2})\n`);
      expect(alive(pid2)).toBe(true);
      await waitFor(() => ticksNow() >= 10, scaled(30_000), 'the restored guest to tick');
      // Every tick once, in order, across the two processes (a line cut by the pause is completed after
      // it): a guest that booted afresh would start again from tick 0.
      const all = ticks(before + consoleText());
      expect(all.length).toBeGreaterThanOrEqual(ticks(before).length + 10);
      expect(consecutive(all), all.join(' ')).toBe(true);
      expect(all[ticks(before).length]).toBe((lastTick + 1) % 4096);

      expect(snapshotRows(dir)).toEqual([{ file: save, stoppedVm: 1, restored: 1 }]);

      // destroy stops the restored VM; the snapshot files are the user's and stay.
      r = run(dir, ['destroy', '--auto-approve']);
      expect(r.code, r.stderr).toBe(0);
      await waitFor(() => !alive(pid2), scaled(10_000), 'the VMM to stop');
      expect(vmRow(dir)).toBeUndefined();
      expect(existsSync(save)).toBe(true);
    },
    scaled(300_000),
  );
});
