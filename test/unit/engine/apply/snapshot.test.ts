/**
 * `mvctl snapshot` and `mvctl restore` as the engine carries them out,
 * against a stand-in VMM (a script named mvisor.js, through MVISOR_BIN)
 * that speaks the control protocol: what is recorded, what is refused, and
 * that a refused restore leaves the VM's record as it was. The real VMM's
 * side is in test/integration/mvctl-snapshot.test.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApplyError } from '../../../../src/engine/apply/apply.js';
import { restoreVm, snapshotVm, vmmRefusal } from '../../../../src/engine/apply/snapshot.js';
import { isVmmProcess, vmPaths, waitVmmGone } from '../../../../src/engine/apply/vm-process.js';
import { StateStore } from '../../../../src/engine/state/store.js';

/** The stand-in VMM: FAKE_VMM=refuse makes it refuse the snapshot as mvisor does (exit code 2). */
const FAKE_VMM = String.raw`
const net = require('node:net');
const fs = require('node:fs');
const args = process.argv.slice(2);
const arg = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const control = arg('--control');
const restore = arg('--restore');
process.stderr.write('mvisor: starting\n');
if (process.env.FAKE_VMM === 'refuse') {
  process.stderr.write('mvisor: error: cannot restore VM a: ' + restore + ': a snapshot of another config of VM "a"\n');
  process.exit(2);
}
const stopSoon = () => setTimeout(() => process.exit(0), 50);
const answer = (req) => {
  if (req.cmd === 'status')
    return { ok: true, name: 'a', state: 'running', pid: process.pid, vcpus: 1, memory: 67108864, uuid: 'u',
      images: [], uptimeMs: 1, exits: { io: 0, mmio: 0, other: 0 } };
  if (req.cmd === 'snapshot') {
    try {
      fs.writeFileSync(req.file, 'snapshot', { flag: 'wx' });
    } catch (e) {
      return { ok: false, error: e.message };
    }
    if (req.then === 'stop') stopSoon();
    return { ok: true, file: req.file, bytes: 8, ramDataBytes: 4096, pausedMs: 7, drainedRequests: 1 };
  }
  if (req.cmd === 'restore')
    return req.file.endsWith('other.snap')
      ? { ok: false, error: req.file + ': a snapshot of VM "b"; restore it with the config it was taken with' }
      : { ok: true, file: req.file, pausedMs: 5, ramDataBytes: 4096 };
  if (req.cmd === 'stop' || req.cmd === 'powerdown') {
    stopSoon();
    return { ok: true };
  }
  return { ok: false, error: 'unknown' };
};
fs.rmSync(control, { force: true });
net.createServer((c) => {
  let buf = '';
  c.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1))
      c.write(JSON.stringify({ v: 1, ...answer(JSON.parse(buf.slice(0, i))) }) + '\n');
  });
}).listen(control);
process.on('SIGTERM', () => process.exit(0));
`;

const id = { kind: 'VirtualMachine' as const, name: 'a' };
let dir: string;
let store: StateStore;
const saved = { bin: process.env.MVISOR_BIN, mode: process.env.FAKE_VMM };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mvisor-snap-'));
  mkdirSync(join(dir, 'fake'));
  writeFileSync(join(dir, 'fake', 'mvisor.js'), FAKE_VMM);
  process.env.MVISOR_BIN = join(dir, 'fake', 'mvisor.js');
  delete process.env.FAKE_VMM;
  store = StateStore.open(join(dir, 'state.db'));
  // A VM applied with running: false: in state, never started, no VMM config yet.
  store.put({
    ...id,
    spec: {
      memory: 67108864,
      vcpus: 1,
      cpu: 'baseline',
      machine: 'pc',
      acpi: true,
      uuid: '0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70',
      boot: {},
      fwCfg: [],
      firmware: { kernel: join(dir, 'k.elf'), cmdline: '' },
      serial: 'none',
      disks: [],
      devices: [],
      networks: [],
      host: 'local',
      running: false,
    },
    status: 'stopped',
    host: 'local',
  });
});

afterEach(async () => {
  const pid = store.get(id)?.pid;
  if (pid && isVmmProcess(pid)) {
    process.kill(pid, 'SIGKILL');
    await waitVmmGone(pid, 2000);
  }
  store.close();
  rmSync(dir, { recursive: true, force: true });
  for (const [k, v] of [
    ['MVISOR_BIN', saved.bin],
    ['FAKE_VMM', saved.mode],
  ] as const)
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
});

const opts = { command: 'mvctl test' };

describe('snapshot and restore through the engine', () => {
  it('restore starts a stopped VM; snapshot resumes it or stops it with its state saved; each is recorded', async () => {
    const first = join(dir, 'first.snap');
    writeFileSync(first, 'made by an earlier mvisor');
    const r = await restoreVm(store, 'a', first, opts);
    expect(isVmmProcess(r.pid)).toBe(true);
    const paths = vmPaths(dir, 'a');
    // The VMM config apply would have written, and the VM's runtime files where apply puts them.
    expect(existsSync(paths.config)).toBe(true);
    expect(store.get(id)).toMatchObject({
      status: 'running',
      pid: r.pid,
      controlSocket: paths.control,
      vmmConfigPath: paths.config,
      logPath: paths.log,
      savedSnapshot: null,
    });

    const keep = join(dir, 'keep.snap');
    const s1 = await snapshotVm(store, 'a', keep, { ...opts, stop: false });
    expect(s1).toMatchObject({
      vm: 'a',
      file: keep,
      bytes: 8,
      ramDataBytes: 4096,
      pausedMs: 7,
      stopped: false,
    });
    expect(isVmmProcess(r.pid)).toBe(true);
    expect(store.get(id)).toMatchObject({ status: 'running', pid: r.pid, savedSnapshot: null });

    const save = join(dir, 'save.snap');
    const s2 = await snapshotVm(store, 'a', save, { ...opts, stop: true });
    expect(s2.stopped).toBe(true);
    expect(isVmmProcess(r.pid)).toBe(false);
    expect(store.get(id)).toMatchObject({ status: 'stopped', pid: null, savedSnapshot: save });
    expect(store.snapshots.list('a').map((x) => [x.file, x.stoppedVm, x.restoredAt])).toEqual([
      [keep, false, null],
      [save, true, null],
    ]);
    // Not running: nothing to snapshot, and the message says where its state is.
    await expect(snapshotVm(store, 'a', join(dir, 'x.snap'), { ...opts, stop: false })).rejects.toThrow(
      `VirtualMachine/a: only a running VM can be snapshotted, and it is stopped; its state is saved in ${save} (mvctl restore)`,
    );

    const r2 = await restoreVm(store, 'a', save, opts);
    expect(store.get(id)).toMatchObject({ status: 'running', pid: r2.pid, savedSnapshot: null });
    expect(store.snapshots.list('a')[1]?.restoredAt).toMatch(/Z$/);
    expect(
      store
        .listEvents({ id })
        .map((e) => `${e.action} ${e.outcome}`)
        .filter((e) => e.endsWith('succeeded')),
    ).toEqual(['restore succeeded', 'snapshot succeeded', 'snapshot succeeded', 'restore succeeded']);

    // A running VM goes back to it in its own process; one the VMM refuses leaves it running, state as it was.
    const back = await restoreVm(store, 'a', save, opts);
    expect(back).toEqual({ vm: 'a', file: save, pid: r2.pid, inPlace: true, pausedMs: 5 });
    const other = join(dir, 'other.snap');
    writeFileSync(other, 'x');
    const running = store.get(id);
    await expect(restoreVm(store, 'a', other, opts)).rejects.toThrow(
      `VirtualMachine/a: the VMM refused to go back to ${other}: ${other}: a snapshot of VM "b"; restore it with the ` +
        'config it was taken with (the VM runs on as it was; state is unchanged)',
    );
    expect(store.get(id)).toEqual(running);
    expect(isVmmProcess(r2.pid)).toBe(true);
    // An existing file: refused before the VM is asked anything.
    const before = store.get(id);
    await expect(snapshotVm(store, 'a', keep, { ...opts, stop: true })).rejects.toThrow(
      `${keep} already exists: a snapshot is always a new file`,
    );
    expect(store.get(id)).toEqual(before);
    expect(isVmmProcess(r2.pid)).toBe(true);
  });

  it('a restore the VMM refuses is one line, and the VM stays as it was in state', async () => {
    const save = join(dir, 'save.snap');
    writeFileSync(save, 'x');
    store.patch(id, { savedSnapshot: save, error: 'an old error' });
    const before = store.get(id)!;
    process.env.FAKE_VMM = 'refuse';
    const e = (await restoreVm(store, 'a', save, opts).catch((x: unknown) => x)) as Error;
    expect(e).toBeInstanceOf(ApplyError);
    expect(e.message).toBe(
      `VirtualMachine/a: the VMM refused to restore it: ${save}: a snapshot of another config of VM "a" ` +
        '(the VM stays stopped; state is unchanged)',
    );
    const { updatedAt: _a, ...now } = store.get(id)!;
    const { updatedAt: _b, ...was } = before;
    expect(now).toEqual(was);
    expect(store.listEvents({ id }).at(-1)).toMatchObject({ action: 'restore', outcome: 'failed' });
  });

  it('refuses what it cannot do before anything changes', async () => {
    await expect(snapshotVm(store, 'nope', join(dir, 'n.snap'), { ...opts, stop: false })).rejects.toThrow(
      'VirtualMachine/nope: not in state (see mvctl show)',
    );
    await expect(
      snapshotVm(store, 'a', join(dir, 'no-dir', 'n.snap'), { ...opts, stop: false }),
    ).rejects.toThrow(`${join(dir, 'no-dir')} is not a directory`);
    mkdirSync(vmPaths(dir, 'a').dir, { recursive: true });
    await expect(
      snapshotVm(store, 'a', join(vmPaths(dir, 'a').dir, 'n.snap'), { ...opts, stop: false }),
    ).rejects.toThrow('which destroy deletes');
    await expect(restoreVm(store, 'a', join(dir, 'missing.snap'), opts)).rejects.toThrow(
      `${join(dir, 'missing.snap')}: no such snapshot file`,
    );
    writeFileSync(join(dir, 'f.snap'), 'x');
    store.patch(id, { status: 'creating' });
    await expect(restoreVm(store, 'a', join(dir, 'f.snap'), opts)).rejects.toThrow(
      'an apply was interrupted while it was starting the VM; run mvctl apply first',
    );
    expect(store.listEvents({ id })).toEqual([]);
  });
});

describe('vmmRefusal', () => {
  it("is the VMM's last error line without its prefixes", () => {
    const log =
      'mvisor: old run\nmvisor: error: cannot restore VM web: /s/w.snap: truncated (4 of 9 bytes)\n\n';
    expect(vmmRefusal(log, 'web')).toBe('/s/w.snap: truncated (4 of 9 bytes)');
    expect(vmmRefusal('mvisor: cannot run VM web: /dev/kvm is missing\n', 'web')).toBe('/dev/kvm is missing');
    expect(vmmRefusal('', 'web')).toBeUndefined();
  });
});
