/**
 * Apply commits the records of steps that change nothing on the host (a
 * stopped VM, a Network) together, and commits them before any step that
 * does change the host (a Disk's image): another process reading the state
 * file then sees them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { applyPlan } from '../../../../src/engine/apply/apply.js';
import { isGrowOnly, loadManifests, updatePolicy } from '../../../../src/engine/manifest/load.js';
import { plan } from '../../../../src/engine/plan/planner.js';
import { StateStore } from '../../../../src/engine/state/store.js';

let dir: string;
let store: StateStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mvisor-batch-'));
  store = StateStore.open(join(dir, 'state.db'));
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const doc = (kind: string, name: string, spec: string) =>
  `apiVersion: mvisor.dev/v1alpha1\nkind: ${kind}\nmetadata: {name: ${name}}\nspec: ${spec}\n`;

it('commits state-only steps before a step that touches the host, and all of them at the end', async () => {
  const text = [
    doc('Network', 'lan', '{mode: user}'),
    ...Array.from({ length: 5 }, (_, i) =>
      doc('VirtualMachine', `vm-${i}`, '{running: false, firmware: {kernel: k, cmdline: x}}'),
    ),
    doc('Disk', 'data', '{size: 1M}'),
  ].join('---\n');
  const desired = loadManifests(['-'], { stdin: text, cwd: dir });
  const p = plan(desired, [], updatePolicy, { growOnly: isGrowOnly });
  const reader = StateStore.open(join(dir, 'state.db'));
  const seenAtDisk: string[] = [];
  let seenBeforeEnd = -1;
  try {
    const result = await applyPlan(store, p, desired, {
      command: 'test',
      stateDir: dir,
      onEvent(e) {
        if (e.type !== 'step-start') return;
        // What another process sees when the Disk step begins, and at the last VM step.
        if (e.step.id.kind === 'Disk') seenAtDisk.push(...reader.list().map((r) => `${r.kind}/${r.name}`));
        if (e.step.id.name === 'vm-4') seenBeforeEnd = reader.list().length;
      },
    });
    expect(result).toMatchObject({ ok: true, done: 7 });
    const diskIndex = p.steps.findIndex((s) => s.id.kind === 'Disk');
    const before = p.steps.slice(0, diskIndex).map((s) => `${s.id.kind}/${s.id.name}`);
    expect(seenAtDisk.sort()).toEqual(before.sort());
    expect(seenBeforeEnd).toBeGreaterThanOrEqual(0);
    expect(reader.list()).toHaveLength(7);
    // One event per start and per success, each step.
    expect(reader.listEvents({ limit: 100 })).toHaveLength(14);
  } finally {
    reader.close();
  }
});

it('stops, saying so, when SQLite rolled a batch back by itself', async () => {
  const text = Array.from({ length: 3 }, (_, i) =>
    doc('VirtualMachine', `vm-${i}`, '{running: false, firmware: {kernel: k, cmdline: x}}'),
  ).join('---\n');
  const desired = loadManifests(['-'], { stdin: text, cwd: dir });
  const p = plan(desired, [], updatePolicy, { growOnly: isGrowOnly });
  const apply = applyPlan(store, p, desired, {
    command: 'test',
    stateDir: dir,
    onEvent(e) {
      // What SQLite does on SQLITE_FULL or an I/O error: the whole transaction is gone.
      if (e.type === 'step-start' && e.step.id.name === 'vm-1')
        (store as unknown as { db: { exec(sql: string): void } }).db.exec('ROLLBACK');
    },
  });
  await expect(apply).rejects.toThrow(/lost the records of the last 2 step\(s\).*plan and apply again/);
});
