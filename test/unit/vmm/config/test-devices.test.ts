/**
 * QEMU's test devices in the VMM config (isa-debug-exit, pc-testdev,
 * pci-testdev: what kvm-unit-tests needs) and multiboot modules: defaults,
 * ports checked against every other device, PCI slots shared with
 * virtio-block, modules only for a directly booted multiboot kernel.
 */
import { mkdtempSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  multibootProblem,
  parseVmmConfig,
  type ResolvedDevice,
  type ResolvedVmmConfig,
} from '../../../../src/vmm/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'mvisor-testdev-'));
const file = (name: string) => join(dir, name);
for (const [name, size] of [
  ['bios.bin', 128 * 1024],
  ['bios-16m.bin', 16 * 1024 * 1024],
  ['disk.img', 1 << 20],
  ['data.img', 1 << 20],
  ['vmlinux', 4096],
  ['env.txt', 100],
] as const) {
  writeFileSync(file(name), '');
  truncateSync(file(name), size);
}

/** A flat image with a multiboot header at `offset` (magic, flags, checksum), like kvm-unit-tests' .flat files. */
function multibootImage(offset: number, checksumOk = true): Buffer {
  const buf = Buffer.alloc(16384);
  const magic = 0x1badb002;
  const flags = 0x00010003;
  buf.writeUInt32LE(magic, offset);
  buf.writeUInt32LE(flags, offset + 4);
  buf.writeUInt32LE((-(magic + flags) + (checksumOk ? 0 : 1)) >>> 0, offset + 8);
  return buf;
}
writeFileSync(file('test.flat'), multibootImage(0x1000));
writeFileSync(file('late.flat'), multibootImage(8192));
writeFileSync(file('bad-sum.flat'), multibootImage(0x40, false));

const cfg = file('vm.yaml');
const parse = (text: string): ResolvedVmmConfig => parseVmmConfig(text, cfg);
const DIRECT = 'name: vm\nkernel: test.flat\n';
const devicesOf = (lines: string[], head = DIRECT): ResolvedDevice[] =>
  parse(`${head}devices:\n${lines.map((l) => `  - ${l}\n`).join('')}`).devices;

/** The ConfigError lines (without the file name) of `text`. */
function problemsOf(text: string): string[] {
  try {
    parse(text);
  } catch (e) {
    if (e instanceof ConfigError) return e.lines.map((l) => l.replace(`${cfg}:`, ''));
    throw e;
  }
  throw new Error('expected a ConfigError');
}
const problems = (lines: string[], head = DIRECT) =>
  problemsOf(`${head}devices:\n${lines.map((l) => `  - ${l}\n`).join('')}`);

describe('test devices', () => {
  it('resolves each class with QEMU defaults', () => {
    expect(devicesOf(['{class: isa-debug-exit}', '{class: pc-testdev}', '{class: pci-testdev}'])).toEqual([
      { class: 'isa-debug-exit', iobase: 0x501, iosize: 2 },
      { class: 'pc-testdev' },
      { class: 'pci-testdev', slot: 2 },
    ] satisfies ResolvedDevice[]);
  });

  it('takes the ports kvm-unit-tests uses (iobase 0xf4, iosize 4)', () => {
    expect(devicesOf(['{class: isa-debug-exit, iobase: 0xf4, iosize: 4}'])).toEqual([
      { class: 'isa-debug-exit', iobase: 0xf4, iosize: 4 },
    ]);
  });

  it('gives pci-testdev a PCI slot from the same pool as virtio-block', () => {
    const head = 'name: vm\nfirmware: {bios: bios.bin}\n';
    expect(
      devicesOf(
        [
          '{class: virtio-block, name: root, image: disk.img}',
          '{class: pci-testdev}',
          '{class: virtio-block, name: data, image: data.img, slot: 4}',
        ],
        head,
      ).map((d) => ('slot' in d ? d.slot : undefined)),
    ).toEqual([2, 3, 4]);
    expect(
      problems(
        ['{class: virtio-block, name: root, image: disk.img, slot: 5}', '{class: pci-testdev, slot: 5}'],
        head,
      ),
    ).toEqual(['5:32: devices[1].slot: PCI slot 5 is already used by devices[0] (virtio-block "root")']);
    expect(problems(['{class: pci-testdev, slot: 1}'])).toEqual([
      '4:32: devices[0].slot: must be >= 2, got 1',
    ]);
  });

  it('checks ports against fixed devices, COM1 and other devices', () => {
    expect(problems(['{class: isa-debug-exit, iobase: 0x3f8}'])).toEqual([
      '4:37: devices[0].iobase: port 0x3f8 is already used by the COM1 serial port (serial)',
    ]);
    expect(problems(['{class: isa-debug-exit, iobase: 0x50f, iosize: 4}'])).toEqual([
      '4:37: devices[0].iobase: port 0x510 is already used by fw_cfg',
    ]);
    expect(problems(['{class: pc-testdev}', '{class: pc-testdev}'])).toEqual([
      '5:13: devices[1].class: port 0xe0 is already used by devices[0] (pc-testdev)',
      '5:13: devices[1].class: port 0x2000 is already used by devices[0] (pc-testdev)',
    ]);
    expect(problems(['{class: pc-testdev}', '{class: isa-debug-exit, iobase: 0xe8, iosize: 4}'])).toEqual([
      '5:37: devices[1].iobase: port 0xe8 is already used by devices[0] (pc-testdev)',
    ]);
    expect(problems(['{class: debug-console, port: 0x2017}', '{class: pc-testdev}'])).toEqual([
      '5:13: devices[1].class: port 0x2017 is already used by devices[0] (debug-console)',
    ]);
    // Next to pc-testdev's ports is free.
    expect(
      devicesOf(['{class: pc-testdev}', '{class: isa-debug-exit, iobase: 0xec, iosize: 4}']).length,
    ).toBe(2);
  });

  it('refuses ports past 0xffff and widths other than 1, 2 or 4', () => {
    expect(problems(['{class: isa-debug-exit, iobase: 0xfffe, iosize: 4}'])).toEqual([
      '4:37: devices[0].iobase: ports 0xfffe+4 go beyond the last I/O port 0xffff',
    ]);
    expect(problems(['{class: isa-debug-exit, iosize: 3}'])).toEqual([
      '4:37: devices[0].iosize: expected one of 1, 2, 4, got 3',
    ]);
    expect(problems(['{class: pc-testdev, port: 0xe0}'])[0]).toMatch(
      /^4:25: devices\[0\]\.port: unknown field/,
    );
  });

  it('keeps pc-testdev test memory clear of a 16 MiB BIOS image', () => {
    expect(problems(['{class: pc-testdev}'], 'name: vm\nfirmware: {bios: bios-16m.bin}\n')).toEqual([
      '4:13: devices[0].class: its test memory 0xff000000-0xff00ffff overlaps the BIOS image mapped from ' +
        '0xff000000 (use a BIOS image of at most 16320 KiB)',
    ]);
    expect(devicesOf(['{class: pc-testdev}'], 'name: vm\nfirmware: {bios: bios.bin}\n')).toEqual([
      { class: 'pc-testdev' },
    ]);
  });
});

describe('multiboot modules', () => {
  it('resolves module paths against the config file, cmdline default empty', () => {
    const c = parse(`${DIRECT}modules:\n  - {file: env.txt}\n  - {file: ${file('vmlinux')}, cmdline: a b}\n`);
    expect(c.modules).toEqual([
      { path: file('env.txt'), cmdline: '' },
      { path: file('vmlinux'), cmdline: 'a b' },
    ]);
    expect(c.kernel).toBe(file('test.flat'));
    expect('modules' in parse(DIRECT)).toBe(false);
    expect(parse(`${DIRECT}modules: []\n`).modules).toEqual([]);
  });

  it('checks each module file', () => {
    expect(problemsOf(`${DIRECT}modules:\n  - {file: env.txt}\n  - {file: nope.txt}\n`)).toEqual([
      `5:12: modules[1].file: ${file('nope.txt')}: no such file`,
    ]);
    expect(problemsOf(`${DIRECT}modules:\n  - {cmdline: x}\n`)).toEqual([
      '4:5: modules[0].file: missing required field',
    ]);
  });

  it('needs a multiboot kernel, without an initrd', () => {
    expect(problemsOf('name: vm\nfirmware: {bios: bios.bin}\nmodules: [{file: env.txt}]\n')).toEqual([
      '3:10: modules: not used with firmware bios and no kernel; remove it, or give a kernel',
    ]);
    expect(problemsOf('name: vm\nkernel: vmlinux\nmodules: [{file: env.txt}]\n')).toEqual([
      `3:10: modules: modules need a multiboot kernel, and ${file('vmlinux')} has no multiboot header ` +
        '(magic 0x1badb002 in its first 8 KiB)',
    ]);
    expect(problemsOf(`${DIRECT}initrd: env.txt\nmodules: [{file: env.txt}]\n`)).toEqual([
      '4:10: modules: a multiboot kernel takes its files as modules; remove initrd (or list it here)',
    ]);
  });

  it('finds the multiboot header where the specification puts it', () => {
    expect(multibootProblem(file('test.flat'))).toBeUndefined();
    // Past the first 8192 bytes, or with a wrong checksum: not a header.
    expect(multibootProblem(file('late.flat'))).toMatch(/has no multiboot header/);
    expect(multibootProblem(file('bad-sum.flat'))).toMatch(/has no multiboot header/);
  });
});

describe('PIT lost ticks', () => {
  it('delays by default and discards on request (what kvm-unit-tests asks of QEMU)', () => {
    expect(parse(DIRECT).pitLostTicks).toBe('delay');
    expect(parse(`${DIRECT}pitLostTicks: discard\n`).pitLostTicks).toBe('discard');
  });
});
