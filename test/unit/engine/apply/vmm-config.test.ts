/**
 * The VMM config apply writes for a VirtualMachine: what the manifest says,
 * in the VMM's own terms, and a config the VMM's loader accepts as is.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  ApplyError,
  diskImageInState,
  vmmConfigFor,
  type DiskLookup,
} from '../../../../src/engine/apply/apply.js';
import { vmPaths } from '../../../../src/engine/apply/vm-process.js';
import { loadManifests, type NormalizedVirtualMachineSpec } from '../../../../src/engine/manifest/load.js';
import type { StateStore } from '../../../../src/engine/state/store.js';
import { defaultVmUuid, parseVmmConfig } from '../../../../src/vmm/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'mvisor-apply-'));
writeFileSync(join(dir, 'bios.bin'), Buffer.alloc(128 * 1024));
writeFileSync(join(dir, 'vmlinux'), 'not really a kernel');
const rom = Buffer.alloc(1024);
rom[0] = 0x55;
rom[1] = 0xaa;
writeFileSync(join(dir, 'pxe.rom'), rom);
writeFileSync(join(dir, 'seed.json'), '{}');

writeFileSync(join(dir, 'scratch.img'), Buffer.alloc(4096));

const paths = vmPaths(join(dir, 'state'), 'web');

/** Disk images as apply creates them (in the state directory). */
mkdirSync(join(dir, 'state', 'disks'), { recursive: true });
const img = (name: string) => join(dir, 'state', 'disks', name);
const QCOW2_HEADER = Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);
writeFileSync(img('root.qcow2'), Buffer.concat([QCOW2_HEADER, Buffer.alloc(504)]));
for (const name of ['data.img', 'cd.img', 'fd.img']) writeFileSync(img(name), Buffer.alloc(4096));
const lookup: DiskLookup = (disk) =>
  disk === 'root'
    ? { path: img('root.qcow2'), format: 'qcow2' }
    : { path: img(`${disk}.img`), format: 'raw' };

/** Disk manifests for the attachments of these tests. */
const DISKS = ['root', 'data', 'cd', 'fd']
  .map((n) => `---\napiVersion: mvisor.dev/v1alpha1\nkind: Disk\nmetadata: {name: ${n}}\nspec: {size: 1M}\n`)
  .join('');

/** The normalised spec of VirtualMachine/web with `spec` (YAML lines, indented by two). */
function spec(lines: string, more = ''): NormalizedVirtualMachineSpec {
  const rs = loadManifests(['-'], {
    stdin: `apiVersion: mvisor.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: web}\nspec:\n${lines}${more}`,
    cwd: dir,
  });
  const r = rs.find((x) => x.kind === 'VirtualMachine');
  if (!r) throw new Error('no resource');
  return r.spec as NormalizedVirtualMachineSpec;
}

/** The config as the VMM loads it (written as YAML next to the VM's other files). */
function asVmmLoadsIt(cfg: object) {
  return parseVmmConfig(stringify(cfg), paths.config);
}

describe('vmmConfigFor', () => {
  it('boots a BIOS image with the boot order, fw_cfg files, ACPI and UUID of the manifest', () => {
    const s = spec(
      [
        '  firmware: {bios: {image: bios.bin}}',
        '  serial: none',
        '  acpi: false',
        '  boot: {order: [pxe], menu: true, menuTimeout: 1500}',
        '  fwCfg: [{name: opt/seed, file: seed.json}, {name: opt/role, string: web}]',
        '  devices: [{class: option-rom, name: pxe, file: pxe.rom}]',
        '',
      ].join('\n'),
    );
    const cfg = vmmConfigFor('web', s, paths);
    expect(cfg).toEqual({
      name: 'web',
      memory: 128 * 2 ** 20,
      vcpus: 1,
      cpu: 'host',
      machine: 'pc',
      firmware: { bios: join(dir, 'bios.bin') },
      acpi: false,
      uuid: defaultVmUuid('web'),
      boot: { order: ['pxe'], menu: true, menuTimeout: 1500 },
      fwCfg: [
        { name: 'opt/seed', file: join(dir, 'seed.json') },
        { name: 'opt/role', string: 'web' },
      ],
      serial: 'none',
      devices: [{ class: 'option-rom', name: 'pxe', file: join(dir, 'pxe.rom') }],
    });
    const c = asVmmLoadsIt(cfg);
    expect(c.firmware).toEqual({ kind: 'bios', path: join(dir, 'bios.bin') });
    expect(c.uuid).toBe(defaultVmUuid('web'));
    expect(c.boot).toEqual({ order: ['pxe'], menu: true, menuTimeoutMs: 1500 });
    expect(c.fwCfgFiles).toEqual([
      { name: 'opt/seed', path: join(dir, 'seed.json') },
      { name: 'opt/role', text: 'web' },
    ]);
    expect(c.debugConsole).toEqual({ kind: 'none' });
    expect(c.kernel).toBeUndefined();
  });

  it('firmware bios leaves the image to the VMM (its default, Debian SeaBIOS)', () => {
    const cfg = vmmConfigFor('web', spec('  firmware: bios\n'), paths);
    expect(cfg.firmware).toBe('bios');
    expect(cfg).not.toHaveProperty('kernel');
    expect(cfg.serial).toEqual({ socket: paths.console });
  });

  it('direct boot passes the kernel, initrd and command line', () => {
    const cfg = vmmConfigFor('web', spec('  firmware: {kernel: vmlinux, cmdline: quiet}\n'), paths);
    expect(cfg).toMatchObject({ firmware: 'direct', kernel: join(dir, 'vmlinux'), cmdline: 'quiet' });
    expect(cfg).not.toHaveProperty('initrd');
    const c = asVmmLoadsIt(cfg);
    expect(c.firmware).toEqual({ kind: 'direct' });
    expect(c.kernel).toBe(join(dir, 'vmlinux'));
  });

  it('machine debug writes the firmware debug port to firmware.log in the VM directory', () => {
    const cfg = vmmConfigFor(
      'web',
      spec('  firmware: {bios: {image: bios.bin}}\n  machine: {type: pc, debug: true}\n'),
      paths,
    );
    expect(cfg.debugConsole).toEqual({ file: join(dir, 'state', 'vms', 'web', 'firmware.log') });
    expect(asVmmLoadsIt(cfg).debugConsole).toEqual({ kind: 'file', path: paths.firmwareLog });
    expect(vmmConfigFor('web', spec('  machine: pc\n'), paths)).not.toHaveProperty('debugConsole');
  });

  it('attaches each Disk as the storage device of its bus, named after it, before spec.devices', () => {
    const s = spec(
      [
        '  firmware: {bios: {image: bios.bin}}',
        '  boot: {order: [cd, root]}',
        '  disks:',
        '    - {disk: root}',
        '    - {disk: data, bus: ata, readonly: true}',
        '    - {disk: cd, bus: cdrom}',
        '    - {disk: fd, bus: floppy}',
        '  devices: [{class: virtio-block, name: scratch, image: scratch.img, snapshot: true}]',
        '',
      ].join('\n'),
      DISKS,
    );
    const cfg = vmmConfigFor('web', s, paths, lookup);
    expect(cfg.devices).toEqual([
      { class: 'virtio-block', name: 'root', image: img('root.qcow2'), format: 'qcow2', readonly: false },
      { class: 'ata-disk', name: 'data', image: img('data.img'), format: 'raw', readonly: true },
      { class: 'ata-cdrom', name: 'cd', image: img('cd.img'), format: 'raw' },
      { class: 'floppy', name: 'fd', image: img('fd.img'), format: 'raw', readonly: false },
      {
        class: 'virtio-block',
        name: 'scratch',
        image: join(dir, 'scratch.img'),
        readonly: false,
        snapshot: true,
        serial: 'scratch',
        queues: 1,
      },
    ]);
    // The VMM accepts it as is: images exist, positions are assigned in this order.
    const c = asVmmLoadsIt(cfg);
    expect(c.boot.order).toEqual(['cd', 'root']);
    expect(c.devices).toEqual([
      {
        class: 'virtio-block',
        name: 'root',
        image: { path: img('root.qcow2'), format: 'qcow2', readOnly: false, snapshot: false },
        serial: 'root',
        queues: 1,
        slot: 2,
      },
      {
        class: 'ata-disk',
        name: 'data',
        image: { path: img('data.img'), format: 'raw', readOnly: true, snapshot: false },
        channel: 0,
        unit: 0,
      },
      {
        class: 'ata-cdrom',
        name: 'cd',
        image: { path: img('cd.img'), format: 'raw', readOnly: true, snapshot: false },
        channel: 0,
        unit: 1,
      },
      {
        class: 'floppy',
        name: 'fd',
        image: { path: img('fd.img'), format: 'raw', readOnly: false, snapshot: false },
        drive: 0,
      },
      {
        class: 'virtio-block',
        name: 'scratch',
        image: { path: join(dir, 'scratch.img'), readOnly: false, snapshot: true },
        serial: 'scratch',
        queues: 1,
        slot: 3,
      },
    ]);
  });

  it('gives the VMM the I/O limits of an attachment', () => {
    const s = spec(
      '  firmware: {bios: {image: bios.bin}}\n  disks: [{disk: data, bus: ata, throttle: {iops: 50}}]\n',
      DISKS,
    );
    const cfg = vmmConfigFor('web', s, paths, lookup);
    expect(cfg.devices?.[0]).toMatchObject({ class: 'ata-disk', throttle: { iops: 50 } });
    expect(asVmmLoadsIt(cfg).devices[0]).toMatchObject({ image: { throttle: { iops: 50 } } });
  });

  it('attaches disks with a direct kernel boot too', () => {
    const s = spec('  firmware: {kernel: vmlinux}\n  disks: [{disk: root}]\n', DISKS);
    const c = asVmmLoadsIt(vmmConfigFor('web', s, paths, lookup));
    expect(c.firmware).toEqual({ kind: 'direct' });
    expect(c.devices.map((d) => d.class)).toEqual(['virtio-block']);
  });

  it('refuses a Disk that is not created yet, and networks', () => {
    const s = spec('  disks: [{disk: root}]\n', DISKS);
    expect(() => vmmConfigFor('web', s, paths)).toThrow(ApplyError);
    expect(() => vmmConfigFor('web', s, paths)).toThrow(
      'VirtualMachine/web: Disk/root (spec.disks) is not created yet; apply it first',
    );
    const withNic = { ...spec('  {}\n'), networks: [{ network: 'lan' }] };
    expect(() => vmmConfigFor('web', withNic, paths)).toThrow(/no network cards yet/);
  });

  it('finds the images of ready Disks in state', () => {
    const records = new Map<string, { status: string; spec: Record<string, unknown> }>([
      ['ready', { status: 'ready', spec: { format: 'qcow2', size: 512, path: '/d/ready.qcow2' } }],
      ['creating', { status: 'creating', spec: { format: 'raw', size: 512, path: '/d/creating.img' } }],
    ]);
    const find = diskImageInState({
      get: (id) => records.get(id.name) as ReturnType<StateStore['get']>,
    });
    expect(find('ready')).toEqual({ path: '/d/ready.qcow2', format: 'qcow2' });
    expect(find('creating')).toBeUndefined();
    expect(find('nope')).toBeUndefined();
  });
});
