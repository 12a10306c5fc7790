import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  realProbes,
  refresh,
  refreshState,
  toActual,
  vmmProcessAlive,
  type Probes,
  type StateReader,
} from '../../../../src/engine/state/refresh.js';
import { StateStore, type ResourceRecord } from '../../../../src/engine/state/store.js';
import { plan } from '../../../../src/engine/plan/planner.js';
import { policy, want } from '../plan/fixtures.js';

function record(partial: Partial<ResourceRecord> & Pick<ResourceRecord, 'kind' | 'name'>): ResourceRecord {
  return {
    spec: {},
    specHash: 'sha256:x',
    dependsOn: [],
    status: 'ready',
    pid: null,
    controlSocket: null,
    host: null,
    vmmConfigPath: null,
    logPath: null,
    error: null,
    ownedFiles: [],
    savedSnapshot: null,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...partial,
  };
}

function reader(records: ResourceRecord[]): StateReader {
  return { list: () => records, version: () => ({ lineage: 'L', serial: 7 }) };
}

function fakeProbes(alive: number[], files: Record<string, number>): Probes {
  return {
    pidAlive: (pid) => alive.includes(pid),
    fileExists: (path) => path in files,
    fileSize: (path) => files[path],
  };
}

describe('refresh', () => {
  const records = [
    record({ kind: 'Disk', name: 'ok', spec: { path: '/d/ok.img', size: 1024, format: 'raw' } }),
    record({ kind: 'Disk', name: 'gone', spec: { path: '/d/gone.img', size: 1024 } }),
    record({ kind: 'Disk', name: 'grown', spec: { path: '/d/grown.img', size: 1024 } }),
    record({ kind: 'Disk', name: 'qcow', spec: { path: '/d/q.qcow2', size: 1024, format: 'qcow2' } }),
    record({ kind: 'VirtualMachine', name: 'alive', status: 'running', pid: 10, spec: { running: true } }),
    record({ kind: 'VirtualMachine', name: 'dead', status: 'running', pid: 11, spec: { running: true } }),
    record({ kind: 'VirtualMachine', name: 'off', status: 'stopped', spec: { running: false } }),
    record({ kind: 'VirtualMachine', name: 'half', status: 'creating', pid: 12 }),
    record({ kind: 'VirtualMachine', name: 'remote', status: 'running', pid: 13, host: 'elsewhere' }),
  ];
  const probes = fakeProbes([10], { '/d/ok.img': 1024, '/d/grown.img': 4096, '/d/q.qcow2': 200 });

  it('reports each kind of drift and shows reality in the view', () => {
    const result = refresh(reader(records), probes, { hostname: 'here' });
    expect(result.state).toEqual({ lineage: 'L', serial: 7 });
    expect(result.drift).toEqual([
      {
        id: { kind: 'Disk', name: 'gone' },
        what: 'disk-file-missing',
        detail: 'disk file /d/gone.img is missing',
      },
      {
        id: { kind: 'Disk', name: 'grown' },
        what: 'disk-resized',
        detail: 'disk file /d/grown.img is 4096 bytes, but 1024 were applied',
      },
      {
        id: { kind: 'VirtualMachine', name: 'dead' },
        what: 'vm-process-gone',
        detail: 'VMM process 11 is gone',
      },
    ]);
    const view = Object.fromEntries(result.actual.map((a) => [a.name, a]));
    expect(view.grown?.spec.size).toBe(4096);
    expect(view.qcow?.drift).toEqual([]);
    expect(view.alive).toMatchObject({ status: 'running', pid: 10, drift: [] });
    expect(view.dead).toMatchObject({ status: 'stopped', pid: null });
    expect(view.off).toMatchObject({ status: 'stopped', drift: [] });
    expect(view.half).toMatchObject({ status: 'creating', pid: null, drift: [] });
    expect(view.remote).toMatchObject({ status: 'running', pid: 13, drift: [] });
  });

  it('writes nothing: the records are not modified', () => {
    const before = JSON.stringify(records);
    refresh(reader(records), probes, { hostname: 'here' });
    expect(JSON.stringify(records)).toBe(before);
  });

  it('toActual is the view without probing', () => {
    expect(toActual(records[5] as ResourceRecord)).toMatchObject({ status: 'running', pid: 11, drift: [] });
  });
});

/** The argv shape of a VMM the engine launched (engine/apply/vm-process.ts). */
const VMM_ARGV = ['/opt/mvisor/bin/mvisor.js', '-c', '/tmp/vm.yaml', '--control', '/tmp/control.sock'];

describe('realProbes', () => {
  it('pidAlive is true only for a live process that runs mvisor.js with --control', async () => {
    const ours = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', ...VMM_ARGV], {
      stdio: 'ignore',
    });
    // Mentions mvisor, as `tail -f ~/.local/state/mvisor/vms/a/vmm.log` would, but is no VMM.
    const other = spawn(
      process.execPath,
      ['-e', 'setInterval(() => {}, 1000)', '/root/.local/state/mvisor/vmm.log'],
      {
        stdio: 'ignore',
      },
    );
    try {
      await Promise.all([once(ours, 'spawn'), once(other, 'spawn')]);
      expect(vmmProcessAlive(ours.pid as number)).toBe(true);
      expect(vmmProcessAlive(other.pid as number)).toBe(false);
      ours.kill('SIGKILL');
      await once(ours, 'exit');
      expect(realProbes.pidAlive(ours.pid as number)).toBe(false);
      expect(vmmProcessAlive(0)).toBe(false);
      expect(vmmProcessAlive(-1)).toBe(false);
    } finally {
      ours.kill('SIGKILL');
      other.kill('SIGKILL');
    }
  });

  it('fileExists and fileSize look at the file system', () => {
    expect(realProbes.fileExists('/proc/self/cmdline')).toBe(true);
    expect(realProbes.fileExists('/nonexistent/disk.img')).toBe(false);
    expect(realProbes.fileSize('/nonexistent/disk.img')).toBeUndefined();
    expect(realProbes.fileSize(new URL(import.meta.url).pathname)).toBeGreaterThan(100);
  });
});

describe('refresh against a real state file and real processes', () => {
  it('plan after kill -9 of a VM process shows it as drifted and creates it again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mvisor-refresh-'));
    const vmm = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', ...VMM_ARGV], {
      stdio: 'ignore',
    });
    const store = StateStore.open(join(dir, 'state.db'));
    try {
      await once(vmm, 'spawn');
      const img = join(dir, 'root.img');
      writeFileSync(img, '');
      truncateSync(img, 1048576);
      const diskSpec = { path: img, size: 1048576, format: 'raw' };
      const vmSpec = { memory: 134217728, running: true };
      store.put({ kind: 'Disk', name: 'root', spec: diskSpec, status: 'ready' });
      store.put({
        kind: 'VirtualMachine',
        name: 'web',
        spec: vmSpec,
        status: 'running',
        pid: vmm.pid,
        dependsOn: [{ kind: 'Disk', name: 'root' }],
      });
      const desired = [want('Disk/root', diskSpec), want('VirtualMachine/web', vmSpec, ['Disk/root'])];

      const before = refresh(store);
      expect(before.drift).toEqual([]);
      expect(plan(desired, before.actual, policy, { state: before.state }).hasChanges).toBe(false);

      vmm.kill('SIGKILL');
      await once(vmm, 'exit');
      const after = refresh(store);
      expect(after.drift.map((d) => d.what)).toEqual(['vm-process-gone']);
      const p = plan(desired, after.actual, policy, { state: after.state });
      expect(p.actions.map((a) => `${a.action} ${a.key}`)).toEqual([
        'create VirtualMachine/web',
        'noop Disk/root',
      ]);
      expect(p.actions[0]?.reason).toBe(`drift: VMM process ${vmm.pid} is gone`);
      // refresh wrote nothing
      expect(store.get({ kind: 'VirtualMachine', name: 'web' })).toMatchObject({
        status: 'running',
        pid: vmm.pid,
      });

      rmSync(img);
      expect(refresh(store).drift.map((d) => d.what)).toEqual(['disk-file-missing', 'vm-process-gone']);
    } finally {
      vmm.kill('SIGKILL');
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('refreshState (mvctl refresh)', () => {
  it('records the drift in one transaction, with events, so that the next refresh finds none', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mvisor-refresh-'));
    const store = StateStore.open(join(dir, 'state.db'));
    try {
      store.put({ kind: 'VirtualMachine', name: 'web', spec: { memory: 1 }, status: 'running', pid: 4242 });
      store.put({
        kind: 'Disk',
        name: 'grown',
        spec: { format: 'raw', size: 512, path: '/d/grown.img' },
        status: 'ready',
      });
      store.put({
        kind: 'Disk',
        name: 'gone',
        spec: { format: 'raw', size: 512, path: '/d/gone.img' },
        status: 'ready',
      });
      store.put({
        kind: 'Disk',
        name: 'fine',
        spec: { format: 'raw', size: 512, path: '/d/fine.img' },
        status: 'ready',
      });
      const probes: Probes = {
        pidAlive: () => false,
        fileExists: (p) => p !== '/d/gone.img',
        fileSize: (p) => (p === '/d/grown.img' ? 1024 : 512),
      };
      const drift = refreshState(store, 'mvctl refresh', probes);
      expect(drift.map((d) => `${d.id.kind}/${d.id.name} ${d.what}`).sort()).toEqual([
        'Disk/gone disk-file-missing',
        'Disk/grown disk-resized',
        'VirtualMachine/web vm-process-gone',
      ]);
      expect(store.get({ kind: 'VirtualMachine', name: 'web' })).toMatchObject({
        status: 'stopped',
        pid: null,
      });
      expect(store.get({ kind: 'Disk', name: 'grown' })?.spec).toMatchObject({ size: 1024 });
      expect(store.get({ kind: 'Disk', name: 'gone' })).toBeUndefined();
      expect(store.get({ kind: 'Disk', name: 'fine' })?.status).toBe('ready');
      expect(store.listEvents().filter((e) => e.action === 'refresh')).toHaveLength(3);
      expect(refresh(store, probes).drift).toEqual([]);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
