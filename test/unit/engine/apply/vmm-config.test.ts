/**
 * The VMM config apply writes for a VirtualMachine: what the manifest says,
 * in the VMM's own terms, and a config the VMM's loader accepts as is.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ApplyError, vmmConfigFor } from '../../../../src/engine/apply/apply.js';
import { vmPaths } from '../../../../src/engine/apply/vm-process.js';
import { loadManifests, type NormalizedVirtualMachineSpec } from '../../../../src/engine/manifest/load.js';
import { defaultVmUuid, parseVmmConfig } from '../../../../src/vmm/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'mvisor-apply-'));
writeFileSync(join(dir, 'bios.bin'), Buffer.alloc(128 * 1024));
writeFileSync(join(dir, 'vmlinux'), 'not really a kernel');
const rom = Buffer.alloc(1024);
rom[0] = 0x55;
rom[1] = 0xaa;
writeFileSync(join(dir, 'pxe.rom'), rom);
writeFileSync(join(dir, 'seed.json'), '{}');

const paths = vmPaths(join(dir, 'state'), 'web');

/** The normalised spec of VirtualMachine/web with `spec` (YAML lines, indented by two). */
function spec(lines: string): NormalizedVirtualMachineSpec {
  const [r] = loadManifests(['-'], {
    stdin: `apiVersion: mvisor.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: web}\nspec:\n${lines}`,
    cwd: dir,
  });
  if (!r) throw new Error('no resource');
  return r.spec as NormalizedVirtualMachineSpec;
}

/** The config as the VMM loads it (written as YAML next to the VM's other files). */
function asVmmLoadsIt(cfg: Record<string, unknown>) {
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

  it('still refuses what the VMM cannot do yet', () => {
    const withDisk = { ...spec('  {}\n'), disks: [{ disk: 'root', readonly: false }] };
    expect(() => vmmConfigFor('web', withDisk, paths)).toThrow(ApplyError);
    expect(() => vmmConfigFor('web', withDisk, paths)).toThrow(/no disk controllers yet/);
  });
});
