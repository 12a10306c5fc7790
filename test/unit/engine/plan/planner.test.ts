import { describe, expect, it } from 'vitest';
import {
  diffJson,
  parsePlan,
  plan,
  PlanError,
  planStaleness,
  type Plan,
} from '../../../../src/engine/plan/planner.js';
import { isGrowOnly, loadManifests, updatePolicy } from '../../../../src/engine/manifest/load.js';
import type { ActualResource } from '../../../../src/engine/state/refresh.js';
import type { DesiredResource } from '../../../../src/engine/types.js';
import { DISK, have, policy, VM, want } from './fixtures.js';

const actionsOf = (p: Plan): string[] => p.actions.map((a) => `${a.action} ${a.key}`);
const stepsOf = (p: Plan): string[] => p.steps.map((s) => s.key);

interface Case {
  name: string;
  desired: DesiredResource[];
  actual: ActualResource[];
  actions: string[];
  steps: string[];
  reasons?: Record<string, RegExp | string>;
}

const cases: Case[] = [
  {
    name: 'creates dependencies before the VM that uses them',
    desired: [
      want('VirtualMachine/web', VM, ['Disk/root', 'Network/lan']),
      want('Disk/root', DISK),
      want('Network/lan', { bridge: 'br0' }),
    ],
    actual: [],
    actions: ['create Network/lan', 'create Disk/root', 'create VirtualMachine/web'],
    steps: ['create:Network/lan', 'create:Disk/root', 'create:VirtualMachine/web'],
    reasons: { 'Disk/root': 'not in state' },
  },
  {
    name: 'deletes in reverse dependency order',
    desired: [],
    actual: [
      have('Network/lan', { bridge: 'br0' }),
      have('Disk/root', DISK),
      have('VirtualMachine/web', VM, { deps: ['Disk/root', 'Network/lan'] }),
    ],
    actions: ['delete VirtualMachine/web', 'delete Disk/root', 'delete Network/lan'],
    steps: ['delete:VirtualMachine/web', 'delete:Disk/root', 'delete:Network/lan'],
    reasons: { 'Disk/root': 'not in the configuration' },
  },
  {
    name: 'updates in place when every changed field allows it',
    desired: [
      want('Disk/root', { ...DISK, size: 2 * DISK.size }),
      want('VirtualMachine/web', { ...VM, shutdownTimeout: '2m' }, ['Disk/root']),
    ],
    actual: [have('Disk/root', DISK), have('VirtualMachine/web', VM, { deps: ['Disk/root'] })],
    actions: ['update Disk/root', 'update VirtualMachine/web'],
    steps: ['update:Disk/root', 'update:VirtualMachine/web'],
    reasons: {
      'Disk/root': 'size changes in place',
      'VirtualMachine/web': 'shutdownTimeout changes in place',
    },
  },
  {
    name: 'replaces when a field forces it',
    desired: [want('VirtualMachine/web', { ...VM, memory: 268435456, vcpus: 2 })],
    actual: [have('VirtualMachine/web', VM)],
    actions: ['replace VirtualMachine/web'],
    steps: ['delete:VirtualMachine/web', 'create:VirtualMachine/web'],
    reasons: { 'VirtualMachine/web': 'memory, vcpus force replacement' },
  },
  {
    name: 'a replaced disk replaces its VM: VM down first, disk up first',
    desired: [want('Disk/root', { ...DISK, format: 'qcow2' }), want('VirtualMachine/web', VM, ['Disk/root'])],
    actual: [have('Disk/root', DISK), have('VirtualMachine/web', VM, { deps: ['Disk/root'] })],
    actions: ['replace VirtualMachine/web', 'replace Disk/root'],
    steps: ['delete:VirtualMachine/web', 'delete:Disk/root', 'create:Disk/root', 'create:VirtualMachine/web'],
    reasons: { 'Disk/root': 'format forces replacement', 'VirtualMachine/web': 'Disk/root is replaced' },
  },
  {
    name: 'a VM moved to a new disk: old disk deleted after the VM, new disk created before it',
    desired: [
      want('Disk/new', DISK),
      want('VirtualMachine/web', { ...VM, disks: [{ disk: 'new' }] }, ['Disk/new']),
    ],
    actual: [
      have('Disk/old', DISK),
      have('VirtualMachine/web', { ...VM, disks: [{ disk: 'old' }] }, { deps: ['Disk/old'] }),
    ],
    actions: ['replace VirtualMachine/web', 'delete Disk/old', 'create Disk/new'],
    steps: ['delete:VirtualMachine/web', 'delete:Disk/old', 'create:Disk/new', 'create:VirtualMachine/web'],
    reasons: { 'VirtualMachine/web': 'disks[0].disk forces replacement' },
  },
  {
    name: 'a VM whose process is gone is created again (drift)',
    desired: [want('VirtualMachine/web', VM)],
    actual: [
      { ...have('VirtualMachine/web', VM, { drift: ['vm-process-gone'] }), status: 'stopped', pid: null },
    ],
    actions: ['create VirtualMachine/web'],
    steps: ['create:VirtualMachine/web'],
    reasons: { 'VirtualMachine/web': 'drift: VMM process 1000 is gone' },
  },
  {
    name: 'a VM whose process is gone and that should be stopped is only recorded stopped',
    desired: [want('VirtualMachine/web', { ...VM, running: false })],
    actual: [
      { ...have('VirtualMachine/web', VM, { drift: ['vm-process-gone'] }), status: 'stopped', pid: null },
    ],
    actions: ['stop VirtualMachine/web'],
    steps: ['stop:VirtualMachine/web'],
    reasons: { 'VirtualMachine/web': 'drift: VMM process 1000 is gone; running: false' },
  },
  {
    name: 'a deleted disk file is created again, and the VM on it replaced',
    desired: [want('Disk/root', DISK), want('VirtualMachine/web', VM, ['Disk/root'])],
    actual: [
      have('Disk/root', DISK, { drift: ['disk-file-missing'] }),
      have('VirtualMachine/web', VM, { deps: ['Disk/root'] }),
    ],
    actions: ['replace VirtualMachine/web', 'create Disk/root'],
    steps: ['delete:VirtualMachine/web', 'create:Disk/root', 'create:VirtualMachine/web'],
    reasons: {
      'Disk/root': 'drift: disk file /var/lib/mvisor/d.img is missing',
      'VirtualMachine/web': 'Disk/root is created again',
    },
  },
  {
    name: 'running: false stops the VM in place',
    desired: [want('VirtualMachine/web', { ...VM, running: false })],
    actual: [have('VirtualMachine/web', VM)],
    actions: ['stop VirtualMachine/web'],
    steps: ['stop:VirtualMachine/web'],
    reasons: { 'VirtualMachine/web': 'running: false' },
  },
  {
    name: 'running: true starts a stopped VM',
    desired: [want('VirtualMachine/web', VM)],
    actual: [have('VirtualMachine/web', { ...VM, running: false })],
    actions: ['start VirtualMachine/web'],
    steps: ['start:VirtualMachine/web'],
  },
  {
    name: 'stop together with an in-place change: stop, then update',
    desired: [want('VirtualMachine/web', { ...VM, running: false, shutdownTimeout: '1m' })],
    actual: [have('VirtualMachine/web', VM)],
    actions: ['update VirtualMachine/web'],
    steps: ['stop:VirtualMachine/web', 'update:VirtualMachine/web'],
  },
  {
    name: 'an earlier apply that failed leaves the resource tainted: replace',
    desired: [want('VirtualMachine/web', VM)],
    actual: [have('VirtualMachine/web', VM, { status: 'failed', error: 'KVM_CREATE_VM: EBUSY' })],
    actions: ['replace VirtualMachine/web'],
    steps: ['delete:VirtualMachine/web', 'create:VirtualMachine/web'],
    reasons: { 'VirtualMachine/web': 'tainted: an earlier apply left it failed: KVM_CREATE_VM: EBUSY' },
  },
  {
    name: 'no changes: no-ops only',
    desired: [want('Disk/root', DISK), want('VirtualMachine/web', VM, ['Disk/root', 'Host/local'])],
    actual: [have('Disk/root', DISK), have('VirtualMachine/web', VM, { deps: ['Disk/root'] })],
    actions: ['noop Disk/root', 'noop VirtualMachine/web'],
    steps: [],
  },
];

describe('plan', () => {
  for (const c of cases) {
    it(c.name, () => {
      const p = plan(c.desired, c.actual, policy);
      expect(actionsOf(p)).toEqual(c.actions);
      expect(stepsOf(p)).toEqual(c.steps);
      for (const [key, reason] of Object.entries(c.reasons ?? {})) {
        expect(p.actions.find((a) => a.key === key)?.reason).toMatch(reason);
      }
      // every step comes after the steps it waits for
      const seen = new Set<string>();
      for (const s of p.steps) {
        for (const before of s.after) expect(seen.has(before), `${s.key} after ${before}`).toBe(true);
        seen.add(s.key);
      }
    });
  }

  it('no changes: hasChanges is false and the summary counts no-ops', () => {
    const p = plan([want('VirtualMachine/web', VM)], [have('VirtualMachine/web', VM)], policy);
    expect(p.hasChanges).toBe(false);
    expect(p.hasDestroy).toBe(false);
    expect(p.hasDrift).toBe(false);
    expect(p.summary).toEqual({ create: 0, update: 0, replace: 0, delete: 0, start: 0, stop: 0, noop: 1 });
  });

  it('records field changes with their policies, paths into arrays included', () => {
    const p = plan(
      [want('VirtualMachine/web', { ...VM, memory: 268435456, disks: [{ disk: 'a' }, { disk: 'c' }] })],
      [have('VirtualMachine/web', { ...VM, disks: [{ disk: 'a' }, { disk: 'b' }, { disk: 'x' }] })],
      policy,
    );
    const [web] = p.actions;
    expect(web?.action).toBe('replace');
    expect(web?.changes).toEqual([
      { path: ['disks', 1, 'disk'], before: 'b', after: 'c', policy: 'replace' },
      { path: ['disks', 2], before: { disk: 'x' }, policy: 'replace' },
      { path: ['memory'], before: 134217728, after: 268435456, policy: 'replace' },
    ]);
    expect(web?.before).toEqual({ ...VM, disks: [{ disk: 'a' }, { disk: 'b' }, { disk: 'x' }] });
    expect(web?.after?.memory).toBe(268435456);
    expect(p.hasDestroy).toBe(true);
    expect(p.summary.replace).toBe(1);
  });

  it('drift is listed and flagged', () => {
    const actual = [
      {
        ...have('VirtualMachine/web', VM, { drift: ['vm-process-gone'] }),
        status: 'stopped' as const,
        pid: null,
      },
    ];
    const p = plan([want('VirtualMachine/web', VM)], actual, policy);
    expect(p.hasDrift).toBe(true);
    expect(p.drift).toEqual([
      {
        id: { kind: 'VirtualMachine', name: 'web' },
        what: 'vm-process-gone',
        detail: 'VMM process 1000 is gone',
      },
    ]);
    expect(p.hasChanges).toBe(true);
    expect(p.hasDestroy).toBe(false);
  });

  it('rejects a dependency cycle, naming it', () => {
    const desired = [
      want('VirtualMachine/a', VM, ['Disk/b']),
      want('Disk/b', DISK, ['VirtualMachine/a']),
      want('Network/n', {}),
    ];
    expect(() => plan(desired, [], policy)).toThrow(PlanError);
    expect(() => plan(desired, [], policy)).toThrow(
      'dependency cycle: VirtualMachine/a -> Disk/b -> VirtualMachine/a',
    );
  });

  it('names a longer cycle from its first declared resource, in depends-on order', () => {
    const desired = [
      want('VirtualMachine/a', VM, ['Disk/b']),
      want('Disk/b', DISK, ['Network/c']),
      want('Network/c', {}, ['VirtualMachine/a']),
    ];
    expect(() => plan(desired, [], policy)).toThrow(
      'dependency cycle: VirtualMachine/a -> Disk/b -> Network/c -> VirtualMachine/a',
    );
  });

  it('refuses to shrink a disk', () => {
    let err: unknown;
    try {
      plan([want('Disk/root', { ...DISK, size: 512 })], [have('Disk/root', DISK)], policy);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PlanError);
    expect((err as PlanError).message).toBe(
      "Disk/root: size 512 is smaller than the disk's 1073741824 bytes; a disk can grow but never shrink " +
        '(delete it, or declare a new disk, to start smaller)',
    );
  });

  it('a disk resized outside mvctl: growing it further is an update, shrinking it back an error', () => {
    const resized = have('Disk/root', { ...DISK, size: 2 * DISK.size }, { drift: ['disk-resized'] });
    const grow = plan([want('Disk/root', { ...DISK, size: 4 * DISK.size })], [resized], policy);
    expect(actionsOf(grow)).toEqual(['update Disk/root']);
    expect(() => plan([want('Disk/root', DISK)], [resized], policy)).toThrow(/resized outside mvctl/);
  });

  it('a disk path the engine chose (absent in the manifest) is no change; a declared new path replaces', () => {
    const chosen = have('Disk/root', DISK);
    const { path: _path, ...withoutPath } = DISK;
    expect(actionsOf(plan([want('Disk/root', withoutPath)], [chosen], policy))).toEqual(['noop Disk/root']);
    expect(
      actionsOf(plan([want('Disk/root', { ...DISK, path: '/elsewhere.img' })], [chosen], policy)),
    ).toEqual(['replace Disk/root']);
  });

  it('grow-only fields come from the options', () => {
    const growOnly = (kind: string, path: readonly (string | number)[]) =>
      kind === 'Host' && path[0] === 'address';
    expect(() =>
      plan([want('Host/h', { address: 1 })], [have('Host/h', { address: 2 })], policy, { growOnly }),
    ).toThrow('Host/h: address 1 is smaller than the current 2; address can grow but never shrink');
  });

  it("works with the manifest schemas' update policies", () => {
    const vm = { ...VM, cpu: 'host', host: 'local' };
    const p = plan(
      [
        want('Disk/root', { ...DISK, size: 2 * DISK.size }),
        want('VirtualMachine/web', { ...vm, memory: 268435456 }),
      ],
      [have('Disk/root', DISK), have('VirtualMachine/web', vm)],
      updatePolicy,
      { growOnly: isGrowOnly },
    );
    expect(actionsOf(p)).toEqual(['replace VirtualMachine/web', 'update Disk/root']);
    expect(() =>
      plan([want('Disk/root', { ...DISK, size: 512 })], [have('Disk/root', DISK)], updatePolicy, {
        growOnly: isGrowOnly,
      }),
    ).toThrow(/never shrink/);
    expect(
      actionsOf(
        plan(
          [want('VirtualMachine/web', { ...vm, running: false })],
          [have('VirtualMachine/web', vm)],
          updatePolicy,
        ),
      ),
    ).toEqual(['stop VirtualMachine/web']);
  });

  it('a switch from direct boot to the BIOS and a new boot order replace the VM, field by field', () => {
    /** The VM `web` as the manifest loader normalises it. */
    const web = (spec: string): DesiredResource => {
      const [r] = loadManifests(['-'], {
        stdin: `apiVersion: mvisor.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: web}\nspec:\n${spec}`,
        cwd: '/',
      });
      if (!r) throw new Error('no resource');
      return r;
    };
    const roms =
      '  devices:\n' +
      '    - {class: option-rom, name: pxe, file: /roms/pxe.rom}\n' +
      '    - {class: option-rom, name: disk, file: /roms/disk.rom}\n';
    // A direct kernel boot runs no firmware, so it has no option ROMs to boot from.
    const direct = web('  firmware: {kernel: /boot/vmlinux, cmdline: quiet}\n');
    const bios = web(`  firmware: bios\n  boot: {order: [pxe, disk], menu: true}\n${roms}`);
    const p = plan([bios], [have('VirtualMachine/web', direct.spec)], updatePolicy, { growOnly: isGrowOnly });
    expect(actionsOf(p)).toEqual(['replace VirtualMachine/web']);
    expect(stepsOf(p)).toEqual(['delete:VirtualMachine/web', 'create:VirtualMachine/web']);
    expect(p.actions[0]?.changes).toEqual([
      { path: ['boot', 'menu'], before: false, after: true, policy: 'replace' },
      { path: ['boot', 'order', 0], after: 'pxe', policy: 'replace' },
      { path: ['boot', 'order', 1], after: 'disk', policy: 'replace' },
      {
        path: ['devices', 0],
        after: { class: 'option-rom', name: 'pxe', file: '/roms/pxe.rom' },
        policy: 'replace',
      },
      {
        path: ['devices', 1],
        after: { class: 'option-rom', name: 'disk', file: '/roms/disk.rom' },
        policy: 'replace',
      },
      {
        path: ['firmware'],
        before: { kernel: '/boot/vmlinux', cmdline: 'quiet' },
        after: 'bios',
        policy: 'replace',
      },
    ]);
    expect(p.actions[0]?.reason).toMatch(/firmware/);

    // The other firmware-boot fields replace too; the same spec is no change.
    for (const spec of [
      '  firmware: {bios: {image: /fw/bios.bin}}\n',
      '  machine: {type: pc, debug: true}\n',
      '  acpi: false\n',
      '  uuid: 0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70\n',
      '  fwCfg: [{name: opt/x, string: y}]\n',
    ]) {
      const changed = plan([web(spec)], [have('VirtualMachine/web', web('  {}\n').spec)], updatePolicy);
      expect(actionsOf(changed), spec).toEqual(['replace VirtualMachine/web']);
    }
    expect(
      actionsOf(
        plan([web('  {}\n')], [have('VirtualMachine/web', web('  machine: pc\n').spec)], updatePolicy),
      ),
    ).toEqual(['noop VirtualMachine/web']);
  });

  it('rejects undeclared dependencies and duplicates, listing every problem', () => {
    const desired = [want('VirtualMachine/a', VM, ['Disk/nope']), want('Disk/d', DISK), want('Disk/d', DISK)];
    expect(() => plan(desired, [], policy)).toThrow(
      'cannot plan:\n  - Disk/d is declared more than once\n' +
        '  - VirtualMachine/a depends on Disk/nope, which is not in the configuration',
    );
  });

  it('refuses to delete a Disk that a VM in the manifests still uses, naming the VM', () => {
    const desired = [want('VirtualMachine/web', { ...VM, disks: [{ disk: 'data' }] }, ['Disk/data'])];
    const actual = [
      have('Disk/data', DISK),
      have('VirtualMachine/web', { ...VM, disks: [{ disk: 'data' }] }, { deps: ['Disk/data'] }),
    ];
    expect(() => plan(desired, actual, policy)).toThrow(
      'VirtualMachine/web still uses Disk/data, which is not in the configuration: ' +
        'Disk/data cannot be deleted while VirtualMachine/web uses it (remove the reference first)',
    );
  });

  it('refuses to delete a Disk that a VM in state still uses when that VM stays', () => {
    // State says web uses data (as applied); the manifests keep web as it is and drop data.
    const desired = [want('VirtualMachine/web', VM)];
    const actual = [have('Disk/data', DISK), have('VirtualMachine/web', VM, { deps: ['Disk/data'] })];
    expect(() => plan(desired, actual, policy)).toThrow(
      'Disk/data cannot be deleted: VirtualMachine/web still uses it (as applied) and is not deleted or replaced',
    );
    // Detaching the disk replaces the VM, which then lets go of it first.
    const detached = plan(
      [want('VirtualMachine/web', VM)],
      [
        have('Disk/data', DISK),
        have('VirtualMachine/web', { ...VM, disks: [{ disk: 'data' }] }, { deps: ['Disk/data'] }),
      ],
      policy,
    );
    expect(stepsOf(detached)).toEqual([
      'delete:VirtualMachine/web',
      'delete:Disk/data',
      'create:VirtualMachine/web',
    ]);
    // Destroying everything deletes the VM first.
    expect(stepsOf(plan([], actual, policy))).toEqual(['delete:VirtualMachine/web', 'delete:Disk/data']);
  });

  it('plans a Disk created with a backing file, grown, and deleted, from manifests', () => {
    const [base, grown] = loadManifests(['-'], {
      stdin:
        'apiVersion: mvisor.dev/v1alpha1\nkind: Disk\nmetadata: {name: root}\n' +
        'spec: {format: qcow2, size: 10G, backingFile: /img/debian.qcow2}\n---\n' +
        'apiVersion: mvisor.dev/v1alpha1\nkind: Disk\nmetadata: {name: data}\nspec: {size: 2G, path: /d/data.img}\n',
    });
    if (!base || !grown) throw new Error('no disks');
    const p = plan(
      [base, grown],
      [
        have('Disk/data', { format: 'raw', size: 2 ** 30, path: '/d/data.img' }),
        have('Disk/old', { format: 'raw', size: 2 ** 30, path: '/d/old.img' }),
      ],
      updatePolicy,
      { growOnly: isGrowOnly },
    );
    expect(actionsOf(p)).toEqual(['delete Disk/old', 'update Disk/data', 'create Disk/root']);
    expect(p.actions.find((a) => a.key === 'Disk/data')?.changes).toEqual([
      { path: ['size'], before: 2 ** 30, after: 2 * 2 ** 30, policy: 'in-place' },
    ]);
    expect(p.actions.find((a) => a.key === 'Disk/root')?.after).toEqual({
      format: 'qcow2',
      size: 10 * 2 ** 30,
      backingFile: '/img/debian.qcow2',
    });
  });

  it('is deterministic: input order does not matter', () => {
    const desired = [
      want('VirtualMachine/web', VM, ['Disk/a', 'Disk/b']),
      want('Disk/b', DISK),
      want('Disk/a', DISK),
    ];
    const actual = [have('Disk/z', DISK), have('VirtualMachine/old', VM, { deps: ['Disk/z'] })];
    const one = plan(desired, actual, policy);
    const two = plan([...desired].reverse(), [...actual].reverse(), policy);
    expect(two).toEqual(one);
    expect(stepsOf(one)).toEqual([
      'delete:VirtualMachine/old',
      'delete:Disk/z',
      'create:Disk/a',
      'create:Disk/b',
      'create:VirtualMachine/web',
    ]);
    expect(one.steps.find((s) => s.key === 'create:VirtualMachine/web')?.after).toEqual([
      'create:Disk/a',
      'create:Disk/b',
    ]);
  });

  it('is a value: survives JSON and is refused when stale or of another version', () => {
    const desired = [want('VirtualMachine/web', { ...VM, memory: 268435456 })];
    const actual = [have('VirtualMachine/web', VM)];
    const state = { lineage: 'L1', serial: 3 };
    const p = plan(desired, actual, policy, { state });
    const saved = parsePlan(JSON.parse(JSON.stringify(p)));
    expect(saved).toEqual(p);
    expect(saved.version).toBe(1);
    expect(saved.createdFrom).toMatchObject({ lineage: 'L1', stateSerial: 3 });
    expect(planStaleness(saved, { state, actual, desired })).toBeUndefined();
    expect(planStaleness(saved, { state: { lineage: 'L1', serial: 4 }, actual, desired })).toMatch(
      'state has changed since the plan was made (serial 3, now 4)',
    );
    expect(planStaleness(saved, { state: { lineage: 'L2', serial: 3 }, actual, desired })).toMatch(
      'different state',
    );
    const drifted = [{ ...actual[0], drift: [], status: 'stopped' as const } as ActualResource];
    expect(planStaleness(saved, { state, actual: drifted, desired })).toMatch('resources have changed');
    expect(planStaleness(saved, { state, actual, desired: [want('VirtualMachine/web', VM)] })).toMatch(
      'configuration has changed',
    );
    expect(() => parsePlan({ ...p, version: 2 })).toThrow(/plan format version 2 is not supported/);
    expect(() => parsePlan('nope')).toThrow(PlanError);
  });
});

describe('diffJson', () => {
  it('diffs leaves, array elements and added or removed keys', () => {
    expect(diffJson({ a: 1, b: { c: [1, 2] }, d: 'x' }, { a: 1, b: { c: [1, 3, 4] }, e: null })).toEqual([
      { path: ['b', 'c', 1], before: 2, after: 3 },
      { path: ['b', 'c', 2], after: 4 },
      { path: ['d'], before: 'x' },
      { path: ['e'], after: null },
    ]);
    expect(diffJson({ a: [1] }, { a: { x: 1 } })).toEqual([{ path: ['a'], before: [1], after: { x: 1 } }]);
    expect(diffJson({ a: 1 }, { a: 1 })).toEqual([]);
  });
});
