/**
 * Disk resources as apply carries them out: images created (raw, qcow2 with
 * a backing file), grown, and deleted; a disk a VM still uses is neither
 * grown under a running VM nor deleted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyPlan, type ApplyResult } from '../../../../src/engine/apply/apply.js';
import { planAgainst } from '../../../../src/cli/common.js';
import { isGrowOnly, loadManifests, updatePolicy } from '../../../../src/engine/manifest/load.js';
import { plan, type Plan, type PlanStep, type StepOp } from '../../../../src/engine/plan/planner.js';
import { toActual } from '../../../../src/engine/state/refresh.js';
import { StateStore } from '../../../../src/engine/state/store.js';
import type { DesiredResource } from '../../../../src/engine/types.js';

const MiB = 2 ** 20;
let dir: string;
let store: StateStore;
const children: ChildProcess[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mvisor-disks-'));
  store = StateStore.open(join(dir, 'state.db'));
});

afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Disk manifests (YAML spec lines by name), loaded with paths relative to the test directory. */
function disks(specs: Record<string, string>): DesiredResource[] {
  const text = Object.entries(specs)
    .map(
      ([name, spec]) =>
        `apiVersion: mvisor.dev/v1alpha1\nkind: Disk\nmetadata: {name: ${name}}\nspec: ${spec}\n`,
    )
    .join('---\n');
  return loadManifests(['-'], { stdin: text, cwd: dir });
}

/** Plans `desired` against the state and applies it. */
async function apply(desired: DesiredResource[]): Promise<{ plan: Plan; result: ApplyResult }> {
  const p = plan(desired, store.list().map(toActual), updatePolicy, { growOnly: isGrowOnly });
  const result = await applyPlan(store, p, desired, { command: 'test', stateDir: dir });
  return { plan: p, result };
}

/** A plan of one step on a Disk (what the planner would never produce alone, for the apply-time checks). */
function onlyStep(op: StepOp, name: string): Plan {
  const step: PlanStep = { key: `${op}:Disk/${name}`, id: { kind: 'Disk', name }, op, after: [] };
  return { ...plan([], [], updatePolicy), steps: [step] };
}

/** Virtual size in a qcow2 header (QEMU docs/interop/qcow2.txt: bytes 24-31). */
function qcow2Size(path: string): number {
  const head = readFileSync(path).subarray(0, 32);
  expect(head.readUInt32BE(0)).toBe(0x514649fb);
  return Number(head.readBigUInt64BE(24));
}

describe('apply: Disk', () => {
  it('creates raw and qcow2 images (with a backing file), then grows them in place', async () => {
    writeFileSync(join(dir, 'base.img'), Buffer.alloc(MiB));
    const first = await apply(
      disks({
        data: '{size: 1M}',
        root: '{format: qcow2, size: 4M, backingFile: base.img, path: root.qcow2}',
      }),
    );
    expect(first.result).toMatchObject({ ok: true, done: 2 });
    const data = join(dir, 'disks', 'data.img');
    expect(statSync(data).size).toBe(MiB);
    expect(qcow2Size(join(dir, 'root.qcow2'))).toBe(4 * MiB);
    // The backing file's name is in the header (offset and length at bytes 8 and 16).
    const root = readFileSync(join(dir, 'root.qcow2'));
    const at = Number(root.readBigUInt64BE(8));
    expect(root.subarray(at, at + root.readUInt32BE(16)).toString()).toBe(join(dir, 'base.img'));
    expect(store.get({ kind: 'Disk', name: 'data' })).toMatchObject({
      status: 'ready',
      spec: { path: data },
    });

    const grown = await apply(
      disks({
        data: '{size: 3M}',
        root: '{format: qcow2, size: 8M, backingFile: base.img, path: root.qcow2}',
      }),
    );
    expect(grown.plan.actions.map((a) => `${a.action} ${a.key}`)).toEqual([
      'update Disk/data',
      'update Disk/root',
    ]);
    expect(grown.result).toMatchObject({ ok: true, done: 2 });
    expect(statSync(data).size).toBe(3 * MiB);
    expect(qcow2Size(join(dir, 'root.qcow2'))).toBe(8 * MiB);
    expect(store.get({ kind: 'Disk', name: 'root' })?.spec).toMatchObject({ size: 8 * MiB });

    const gone = await apply([]);
    expect(gone.result).toMatchObject({ ok: true, done: 2 });
    expect(existsSync(data)).toBe(false);
    expect(existsSync(join(dir, 'root.qcow2'))).toBe(false);
  });

  it('never overwrites or deletes a file it did not create: refuse, apply again, destroy; the bytes stay', async () => {
    const mine = join(dir, 'taken.img');
    const bytes = Buffer.from("the user's own data, not an image mvctl made\n");
    writeFileSync(mine, bytes);
    const manifests = disks({
      taken: '{size: 1M, path: taken.img}',
      orphan: '{format: qcow2, size: 1M, backingFile: nope.img}',
    });
    const message =
      `Disk/taken: ${mine} already exists and mvctl did not create it; nothing was changed or recorded. ` +
      `mvctl never overwrites a file it did not create: adopt it with mvctl import Disk/taken ${mine}, ` +
      'move it away, or set spec.path to another file';
    for (let attempt = 1; attempt <= 2; attempt++) {
      const r = await apply(manifests);
      expect(r.result.ok).toBe(false);
      // The second apply plans the same create again (nothing tainted to replace).
      expect(r.plan.steps.map((st) => `${st.op} ${st.id.kind}/${st.id.name}`).sort()).toEqual([
        'create Disk/orphan',
        'create Disk/taken',
      ]);
      const errors = r.result.failed.map((f) => f.error);
      expect(errors).toContainEqual(message);
      expect(errors.find((e) => e.startsWith('Disk/orphan: '))).toContain(join(dir, 'nope.img'));
      // A failed create records nothing and leaves no half-made image.
      expect(store.list()).toEqual([]);
      expect(existsSync(join(dir, 'disks', 'orphan.qcow2'))).toBe(false);
      expect(readFileSync(mine)).toEqual(bytes);
    }
    const gone = await apply([]);
    expect(gone.plan.steps).toEqual([]);
    expect(readFileSync(mine)).toEqual(bytes);
  });

  it('plan and apply stop on a Disk whose file exists, naming the manifest line, before anything changes', () => {
    const taken = join(dir, 'taken.img');
    writeFileSync(taken, 'mine');
    const file = join(dir, 'disks.yaml');
    writeFileSync(
      file,
      'apiVersion: mvisor.dev/v1alpha1\nkind: Disk\nmetadata: {name: fresh}\nspec: {size: 1M}\n---\n' +
        'apiVersion: mvisor.dev/v1alpha1\nkind: Disk\nmetadata: {name: taken}\nspec: {size: 1M, path: taken.img}\n',
    );
    const desired = loadManifests([file]);
    const serial = store.version().serial;
    let err: unknown;
    try {
      planAgainst(store, desired);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toMatch(
      new RegExp(
        `^${file}:\\d+:\\d+: Disk/taken: spec\\.path: ${taken} already exists and mvctl did not create it`,
      ),
    );
    expect((err as Error).message).toMatch(/\nnothing was changed$/);
    expect(store.version().serial).toBe(serial);
    expect(existsSync(join(dir, 'disks', 'fresh.img'))).toBe(false);
    expect(readFileSync(taken, 'utf8')).toBe('mine');
  });

  it('destroy and replace delete only the files mvctl created, unless deletePolicy says otherwise', async () => {
    // A file mvctl did not create, recorded as a Disk (as an import or a state from before ownership was recorded).
    const adopted = join(dir, 'adopted.img');
    writeFileSync(adopted, Buffer.alloc(MiB, 7));
    store.put({
      kind: 'Disk',
      name: 'adopted',
      spec: { format: 'raw', size: MiB, path: adopted },
      status: 'ready',
    });
    await apply(
      disks({
        adopted: '{size: 1M, path: adopted.img}',
        made: '{size: 1M}',
        kept: '{size: 1M, deletePolicy: keep}',
      }),
    );
    const made = join(dir, 'disks', 'made.img');
    const kept = join(dir, 'disks', 'kept.img');
    expect(store.get({ kind: 'Disk', name: 'made' })?.ownedFiles).toEqual([made]);
    expect(store.get({ kind: 'Disk', name: 'adopted' })?.ownedFiles).toEqual([]);

    // A replace (format change) of the adopted disk keeps its file, and then refuses to create over it.
    const swap = await apply(
      disks({
        adopted: '{format: qcow2, size: 1M, path: adopted.img}',
        made: '{size: 1M}',
        kept: '{size: 1M, deletePolicy: keep}',
      }),
    );
    expect(swap.result.ok).toBe(false);
    expect(swap.result.failed.map((f) => f.error)).toEqual([
      expect.stringContaining(`Disk/adopted: ${adopted} already exists and mvctl did not create it`),
    ]);
    expect(readFileSync(adopted)).toEqual(Buffer.alloc(MiB, 7));

    const gone = await apply([]);
    expect(gone.result.ok).toBe(true);
    const details = store
      .listEvents()
      .filter((e) => e.outcome === 'succeeded')
      .map((e) => e.detail);
    expect(existsSync(made)).toBe(false);
    expect(existsSync(kept)).toBe(true);
    expect(details).toContainEqual(`kept ${kept} (deletePolicy: keep)`);
    expect(readFileSync(adopted)).toEqual(Buffer.alloc(MiB, 7));

    // deletePolicy: delete deletes a file mvctl did not create.
    store.put({
      kind: 'Disk',
      name: 'adopted',
      spec: { format: 'raw', size: MiB, path: adopted },
      status: 'ready',
    });
    await apply(disks({ adopted: '{size: 1M, path: adopted.img, deletePolicy: delete}' }));
    await apply([]);
    expect(existsSync(adopted)).toBe(false);
  });

  it('refuses to delete a disk that a VM in state still uses', async () => {
    await apply(disks({ data: '{size: 1M}' }));
    store.put({
      kind: 'VirtualMachine',
      name: 'web',
      spec: { disks: [{ disk: 'data', bus: 'virtio', readonly: false }] },
      dependsOn: [{ kind: 'Disk', name: 'data' }],
      status: 'stopped',
    });
    const r = await applyPlan(store, onlyStep('delete', 'data'), [], { command: 'test', stateDir: dir });
    expect(r.failed.map((f) => f.error)).toEqual([
      'Disk/data: still used by VirtualMachine/web (spec.disks); detach it from the VM or delete the VM first',
    ]);
    expect(existsSync(join(dir, 'disks', 'data.img'))).toBe(true);
  });

  it('refuses to grow a disk under a running VM', async () => {
    await apply(disks({ data: '{size: 1M}' }));
    // A process that looks like a VMM (refresh and apply recognise them by their command line).
    const vmm = spawn(process.execPath, [
      '-e',
      'setInterval(() => {}, 1000)',
      join(dir, 'mvisor.js'),
      '--control',
    ]);
    children.push(vmm);
    store.put({
      kind: 'VirtualMachine',
      name: 'web',
      spec: { disks: [{ disk: 'data', bus: 'virtio', readonly: false }] },
      dependsOn: [{ kind: 'Disk', name: 'data' }],
      status: 'running',
      pid: vmm.pid ?? null,
    });
    // Only the disk's step (the VM is not in these manifests, so a plan would delete it).
    const desired = disks({ data: '{size: 2M}' });
    const r = await applyPlan(store, onlyStep('update', 'data'), desired, { command: 'test', stateDir: dir });
    expect(r.failed.map((f) => f.error)).toEqual([
      `Disk/data: cannot grow ${join(dir, 'disks', 'data.img')} while VirtualMachine/web runs with it; ` +
        'stop the VM (running: false), apply, then grow the disk',
    ]);
    expect(statSync(join(dir, 'disks', 'data.img')).size).toBe(MiB);
  });
});
