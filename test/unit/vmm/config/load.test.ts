import { existsSync, mkdtempSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEVICE_REGISTRY } from '../../../../src/vmm/board/registry.js';
import schema from '../../../../schema/vmm-config.schema.json' with { type: 'json' };
import {
  ConfigError,
  DEFAULT_BIOS_PATH,
  SIZE_PATTERN,
  VMM_CONFIG_DEFAULTS,
  formatSize,
  loadVmmConfig,
  parseCharSinkSpec,
  parseCpuSpec,
  parseSize,
  parseVmmConfig,
  defaultVmUuid,
  normaliseUuid,
  uuidV5,
  type ResolvedVmmConfig,
} from '../../../../src/vmm/config/load.js';

const fixtures = fileURLToPath(new URL('../../../fixtures/vmm-config/', import.meta.url));
const fixture = (name: string) => join(fixtures, name);
const kernel = fixture('vmlinux.stub');

/** The ConfigError lines thrown by `fn`. */
function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) {
      expect(e.message).toBe(e.lines.join('\n'));
      return e.lines;
    }
    throw e;
  }
  throw new Error('expected a ConfigError');
}

/** Parses an inline config (relative paths against the fixture directory). */
function parse(text: string): ResolvedVmmConfig {
  return parseVmmConfig(text, fixture('inline.yaml'));
}
const inline = fixture('inline.yaml');

describe('loadVmmConfig: good configs', () => {
  it('fills defaults for a minimal config', () => {
    expect(loadVmmConfig(fixture('good-minimal.yaml'))).toEqual({
      name: 'minimal',
      configPath: fixture('good-minimal.yaml'),
      memory: 128 * 2 ** 20,
      vcpus: 1,
      cpu: { model: 'host', features: {} },
      machine: 'pc',
      firmware: { kind: 'direct' },
      acpi: true,
      uuid: defaultVmUuid('minimal'),
      boot: { order: [], menu: false, menuTimeoutMs: 0 },
      fwCfgFiles: [],
      kernel,
      cmdline: '',
      serial: { kind: 'stdio' },
      debugConsole: { kind: 'none' },
      onReset: 'exit',
      pitLostTicks: 'delay',
      onTripleFault: 'stop',
      devices: [],
    } satisfies ResolvedVmmConfig);
  });

  it('normalises every field of a full config', () => {
    const c = loadVmmConfig(fixture('good-full.yaml'));
    expect(c).toEqual({
      name: 'demo',
      configPath: fixture('good-full.yaml'),
      memory: 256 * 2 ** 20,
      vcpus: 2,
      cpu: { model: 'baseline', features: { cx16: false, xsaveerptr: true } },
      machine: 'pc',
      firmware: { kind: 'direct' },
      acpi: false,
      uuid: '0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70',
      boot: { order: [], menu: true, menuTimeoutMs: 2500 },
      fwCfgFiles: [
        { name: 'opt/org.example/file', path: fixture('initramfs.stub') },
        { name: 'opt/org.example/text', text: 'hello' },
      ],
      kernel,
      initrd: fixture('initramfs.stub'),
      cmdline: 'console=ttyS0 panic=-1',
      serial: { kind: 'file', path: fixture('out/console.log') },
      debugConsole: { kind: 'stderr' },
      onReset: 'exit',
      pitLostTicks: 'delay',
      onTripleFault: 'stop',
      devices: [
        {
          class: 'serial-port',
          port: 0x2f8,
          irq: 3,
          serial: { kind: 'socket', path: '/tmp/mvisor-com2.sock' },
        },
        { class: 'serial-port', port: 0x3e8, irq: 3, serial: { kind: 'none' } },
        { class: 'debug-console', port: 0x500, output: { kind: 'file', path: fixture('debug.log') } },
      ],
    } satisfies ResolvedVmmConfig);
    // Plain data: survives JSON.
    expect(JSON.parse(JSON.stringify(c))).toEqual(c);
  });

  it('accepts sizes as bytes and in every suffix form', () => {
    for (const [memory, bytes] of [
      ['2097152', 2 * 2 ** 20],
      ['2048K', 2 * 2 ** 20],
      ['512MiB', 512 * 2 ** 20],
      ['1G', 2 ** 30],
      ['3GB', 3 * 2 ** 30],
      ['1Ti', 2 ** 40],
    ] as const) {
      expect(parse(`name: a\nkernel: vmlinux.stub\nmemory: ${memory}\n`).memory).toBe(bytes);
    }
  });

  it('accepts the object form of cpu and the COM3 default IRQ', () => {
    const c = parse(
      'name: a\nkernel: vmlinux.stub\ncpu: {model: baseline, features: [-cx16, +avx2]}\n' +
        'devices:\n  - {class: serial-port, port: 0x3e8, serial: stdio}\n' +
        'serial: none\n',
    );
    expect(c.cpu).toEqual({ model: 'baseline', features: { cx16: false, avx2: true } });
    expect(c.devices).toEqual([{ class: 'serial-port', port: 0x3e8, irq: 4, serial: { kind: 'stdio' } }]);
    expect(c.serial).toEqual({ kind: 'none' });
  });

  it('keeps absolute paths and resolves relative ones against the config directory', () => {
    const c = parse(`name: a\nkernel: ${kernel}\ninitrd: ../vmm-config/initramfs.stub\n`);
    expect(c.kernel).toBe(kernel);
    expect(c.initrd).toBe(fixture('initramfs.stub'));
  });
});

describe('loadVmmConfig: bad fixtures', () => {
  const cases: [string, string[]][] = [
    ['bad-unknown-field.yaml', ['4:1: memroy: unknown field (did you mean "memory"?)']],
    [
      'bad-size.yaml',
      [
        '2:9: memory: invalid size "12Q": expected a number of bytes or a number with a K, M, G or T suffix ' +
          '(powers of 1024), e.g. 512M, 2G, 64KiB',
      ],
    ],
    ['bad-memory-too-small.yaml', ['2:9: memory: 1M is too small (minimum 2 MiB)']],
    ['bad-vcpus-zero.yaml', ['3:8: vcpus: must be >= 1, got 0']],
    [
      'bad-unknown-device.yaml',
      [
        `7:12: devices[1].class: unknown device class "virtio-blk" (known: ${Object.keys(DEVICE_REGISTRY).join(', ')})`,
      ],
    ],
    ['bad-missing-kernel.yaml', [`5:9: kernel: ${fixture('no-such-vmlinux')}: no such file`]],
    ['bad-yaml-syntax.yaml', ['6:1: Sequence item without - indicator']],
  ];
  for (const [name, expected] of cases) {
    it(name, () => {
      const file = fixture(name);
      expect(problems(() => loadVmmConfig(file))).toEqual(expected.map((line) => `${file}:${line}`));
    });
  }

  it('names the file as given (relative paths stay relative in messages)', () => {
    const rel = 'test/fixtures/vmm-config/bad-vcpus-zero.yaml';
    const lines = problems(() => parseVmmConfig('name: a\nkernel: k\nvcpus: 0\n', rel));
    expect(lines[0]).toBe(`${rel}:3:8: vcpus: must be >= 1, got 0`);
  });

  it('reports a missing config file', () => {
    const file = fixture('no-such-config.yaml');
    expect(problems(() => loadVmmConfig(file))).toEqual([`${file}: cannot read config file: no such file`]);
  });
});

describe('parseVmmConfig: messages', () => {
  it('reports every problem, one line each, in file order', () => {
    const text = [
      'name: Demo', // 1
      'kernel: 3', // 2
      'serial: foo', // 3
      'debugConsole: {file: 1}', // 4
      'cpu: skylake,+x', // 5
      'vcpus: "2"', // 6
      'onReset: reboot', // 7
    ].join('\n');
    expect(problems(() => parse(text))).toEqual([
      `${inline}:1:7: name: invalid name "Demo": use 1-63 lowercase letters, digits or '-', starting with a letter or digit`,
      `${inline}:2:9: kernel: expected a string, got 3`,
      `${inline}:3:9: serial: expected "stdio", "none", {file: ...} or {socket: ...}, got "foo"`,
      `${inline}:4:22: debugConsole.file: expected a string, got 1`,
      `${inline}:5:6: cpu: unknown CPU model "skylake" (known: host, baseline)`,
      `${inline}:6:8: vcpus: expected an integer, got "2"`,
      `${inline}:7:10: onReset: expected "exit" (the only supported value), got "reboot"`,
    ]);
  });

  it('points a missing required field at the enclosing mapping', () => {
    expect(problems(() => parse('# comment\nkernel: vmlinux.stub\n'))).toEqual([
      `${inline}:2:1: name: missing required field`,
    ]);
    expect(problems(() => parse('name: a\nkernel: k\ndevices:\n  - port: 1\n'))).toEqual([
      `${inline}:4:5: devices[0].class: missing required field (one of: ${Object.keys(DEVICE_REGISTRY).join(', ')})`,
    ]);
  });

  it('explains the alternative of a union that was meant', () => {
    const text = [
      'name: a', // 1
      'kernel: k', // 2
      'devices:', // 3
      '  - class: serial-port', // 4
      '    port: 0x3f8', // 5
      '    irq: 5', // 6
      '    serial: {file: }', // 7
      '  - class: debug-console', // 8
      '    port: 70000', // 9
      '    output: none', // 10
      'serial: {file: a, socket: b}', // 11
    ].join('\n');
    expect(problems(() => parse(text))).toEqual([
      `${inline}:5:11: devices[0].port: expected one of 0x2f8, 0x3e8, 0x2e8, got 0x3f8`,
      `${inline}:6:10: devices[0].irq: expected one of 3, 4, got 5`,
      `${inline}:7:20: devices[0].serial.file: expected a string, got nothing (null)`,
      `${inline}:9:11: devices[1].port: must be <= 65535, got 70000`,
      `${inline}:10:13: devices[1].output: expected "stderr" or {file: ...}, got "none"`,
      `${inline}:11:9: serial: expected "stdio", "none", {file: ...} or {socket: ...}, got a mapping with file, socket`,
    ]);
  });

  it('checks size bounds for byte counts and strings', () => {
    const memory = (m: string) => problems(() => parse(`name: a\nkernel: vmlinux.stub\nmemory: ${m}\n`));
    expect(memory('4097')).toEqual([`${inline}:3:9: memory: 4097 bytes is too small (minimum 2 MiB)`]);
    expect(memory('2097153')).toEqual([`${inline}:3:9: memory: 2097153 bytes is not a multiple of 4 KiB`]);
    expect(memory('2T')).toEqual([`${inline}:3:9: memory: 2T is too large (maximum 1 TiB)`]);
    expect(memory('2050K')).toEqual([`${inline}:3:9: memory: 2050K is not a multiple of 4 KiB`]);
    expect(memory('true')).toEqual([
      `${inline}:3:9: memory: expected a size (bytes, or a string such as 128M), got true`,
    ]);
  });

  it('checks CPU features, port clashes and stdio sharing', () => {
    const text = [
      'name: a', // 1
      'kernel: vmlinux.stub', // 2
      'cpu: baseline,+a,-a', // 3
      'debugConsole: stderr', // 4
      'devices:', // 5
      '  - {class: serial-port, port: 0x2f8, serial: stdio}', // 6
      '  - {class: debug-console, port: 0x2f9}', // 7
      '  - {class: debug-console, port: 0x3fa}', // 8
      '  - {class: debug-console, port: 0x402}', // 9
    ].join('\n');
    expect(problems(() => parse(text))).toEqual([
      `${inline}:3:6: cpu: CPU feature "a" is both added and removed`,
      `${inline}:6:47: devices[0].serial: stdio is already used by serial`,
      `${inline}:7:34: devices[1].port: port 0x2f9 is already used by devices[0] (serial-port)`,
      `${inline}:8:34: devices[2].port: port 0x3fa is already used by the COM1 serial port (serial)`,
      `${inline}:9:34: devices[3].port: port 0x402 is already used by debugConsole`,
    ]);
  });

  it('reports unreadable kernel and initrd files at their field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mvisor-config-'));
    const text = 'name: a\nkernel: .\ninitrd: missing.img\n';
    expect(problems(() => parseVmmConfig(text, join(dir, 'vm.yaml')))).toEqual([
      `${join(dir, 'vm.yaml')}:2:9: kernel: ${dir}: is a directory`,
      `${join(dir, 'vm.yaml')}:3:9: initrd: ${join(dir, 'missing.img')}: no such file`,
    ]);
  });

  it('reports YAML errors with positions', () => {
    expect(problems(() => parse('name: a\nname: b\n'))).toEqual([`${inline}:2:1: Map keys must be unique`]);
    expect(problems(() => parse('name: a\n---\nname: b\n'))).toEqual([
      `${inline}:2:1: a config file holds one YAML document ('---' starts another)`,
    ]);
    expect(problems(() => parse(''))).toEqual([
      `${inline}:1:1: the config is empty (expected a mapping with at least a name)`,
    ]);
    expect(problems(() => parse('- a\n'))).toEqual([`${inline}:1:1: expected a mapping, got a list`]);
  });

  it('follows aliases', () => {
    const text = 'name: a\nkernel: vmlinux.stub\nx-port: &p 0x3f8\n';
    expect(problems(() => parse(text))[0]).toBe(
      `${inline}:3:1: x-port: unknown field (known fields: name, memory, vcpus, cpu, machine, firmware, acpi, uuid, boot, fwCfg, kernel, initrd, modules, cmdline, serial, debugConsole, onReset, pitLostTicks, onTripleFault, devices)`,
    );
    const c = parse(
      'name: a\nkernel: vmlinux.stub\nserial: &s {file: log}\ndevices: [{class: serial-port, port: 0x2f8, serial: *s}]\n',
    );
    expect(c.devices[0]).toEqual({
      class: 'serial-port',
      port: 0x2f8,
      irq: 3,
      serial: { kind: 'file', path: fixture('log') },
    });
  });
});

/** A scratch directory with files (contents, or a size for a sparse file of zeros). */
function scratch(files: Record<string, Buffer | number>): { dir: string; file: (name: string) => string } {
  const dir = mkdtempSync(join(tmpdir(), 'mvisor-fw-'));
  for (const [name, content] of Object.entries(files)) {
    if (typeof content === 'number') {
      writeFileSync(join(dir, name), '');
      truncateSync(join(dir, name), content);
    } else writeFileSync(join(dir, name), content);
  }
  return { dir, file: (name) => join(dir, name) };
}

/** An option ROM image: 0x55 0xAA, the size in 512-byte blocks, zeros. */
function optionRom(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  b[0] = 0x55;
  b[1] = 0xaa;
  b[2] = Math.ceil(bytes / 512);
  return b;
}

describe('parseVmmConfig: firmware boot', () => {
  const KiB = 1024;
  const s = scratch({
    'bios.bin': 256 * KiB,
    'odd.bin': 100 * KiB,
    'tiny.bin': 32 * KiB,
    'huge.bin': 32 * 1024 * KiB,
    'boot.rom': optionRom(2048),
    'small.rom': optionRom(256),
    'big.rom': optionRom(192 * KiB),
    'text.rom': Buffer.from('#!/bin/sh\n'.padEnd(1024, '#')),
    'data.txt': Buffer.from('hello\n'),
    'vmlinux.stub': Buffer.from('ELF'),
    // magic, flags 0, checksum: a multiboot header at offset 0
    'multiboot.flat': Buffer.from(Uint32Array.of(0x1badb002, 0, -0x1badb002 >>> 0).buffer),
  });
  const cfg = s.file('vm.yaml');
  const parseIn = (text: string) => parseVmmConfig(text, cfg);
  const problemsIn = (text: string) => problems(() => parseIn(text));

  it('without a kernel boots the default BIOS, with every firmware default filled', () => {
    const text = 'name: fw\n';
    if (!existsSync(DEFAULT_BIOS_PATH)) {
      // Where Debian's seabios is not installed, the error says what to do.
      expect(problemsIn(text)).toEqual([
        `${cfg}:1:1: firmware: ${DEFAULT_BIOS_PATH}: no such file (the default BIOS image: install Debian's seabios package, or set firmware: {bios: PATH})`,
      ]);
      return;
    }
    const c = parseIn(text);
    expect(c).toEqual({
      name: 'fw',
      configPath: cfg,
      memory: 128 * 2 ** 20,
      vcpus: 1,
      cpu: { model: 'host', features: {} },
      machine: 'pc',
      firmware: { kind: 'bios', path: DEFAULT_BIOS_PATH },
      acpi: true,
      uuid: defaultVmUuid('fw'),
      boot: { order: [], menu: false, menuTimeoutMs: 0 },
      fwCfgFiles: [],
      cmdline: '',
      serial: { kind: 'stdio' },
      debugConsole: { kind: 'none' },
      onReset: 'exit',
      pitLostTicks: 'delay',
      onTripleFault: 'stop',
      devices: [],
    } satisfies ResolvedVmmConfig);
    expect('kernel' in c).toBe(false);
    expect(parseIn('name: fw\nfirmware: bios\n').firmware).toEqual({ kind: 'bios', path: DEFAULT_BIOS_PATH });
  });

  it("is Debian's SeaBIOS by default", () => {
    expect(DEFAULT_BIOS_PATH).toBe('/usr/share/seabios/bios-256k.bin');
  });

  it('takes a BIOS image relative to the config and checks its size', () => {
    expect(parseIn('name: a\nfirmware: {bios: bios.bin}\n').firmware).toEqual({
      kind: 'bios',
      path: s.file('bios.bin'),
    });
    const bios = (f: string) => problemsIn(`name: a\nfirmware:\n  bios: ${f}\n`);
    const size = '(a multiple of 64 KiB, 64 KiB .. 16 MiB)';
    expect(bios('odd.bin')).toEqual([
      `${cfg}:3:9: firmware.bios: ${s.file('odd.bin')}: 102400 bytes is not a BIOS image size ${size}`,
    ]);
    expect(bios('tiny.bin')).toEqual([
      `${cfg}:3:9: firmware.bios: ${s.file('tiny.bin')}: 32768 bytes is not a BIOS image size ${size}`,
    ]);
    expect(bios('huge.bin')).toEqual([
      `${cfg}:3:9: firmware.bios: ${s.file('huge.bin')}: 33554432 bytes is not a BIOS image size ${size}`,
    ]);
    expect(bios('nope.bin')).toEqual([`${cfg}:3:9: firmware.bios: ${s.file('nope.bin')}: no such file`]);
    expect(bios('.')).toEqual([`${cfg}:3:9: firmware.bios: ${s.dir}: is a directory`]);
  });

  it('takes only a multiboot kernel, with modules but no initrd, with firmware bios', () => {
    const text = [
      'name: a', // 1
      'firmware: {bios: bios.bin}', // 2
      'kernel: vmlinux.stub', // 3
      'initrd: data.txt', // 4
      'cmdline: console=ttyS0', // 5
    ].join('\n');
    expect(problemsIn(text)).toEqual([
      `${cfg}:3:9: kernel: ${s.file('vmlinux.stub')}: with firmware bios the kernel must be a multiboot kernel (magic 0x1badb002 in its first 8 KiB); boot a Linux kernel with firmware: direct`,
      `${cfg}:4:9: initrd: a multiboot kernel takes its files as modules; list it under modules instead`,
    ]);
    const c = parseIn(
      'name: a\nfirmware: {bios: bios.bin}\nkernel: multiboot.flat\ncmdline: -x\nmodules: [{file: data.txt, cmdline: env}]\n',
    );
    expect(c.firmware).toEqual({ kind: 'bios', path: s.file('bios.bin') });
    expect(c.kernel).toBe(s.file('multiboot.flat'));
    expect(c.cmdline).toBe('-x');
    expect(c.modules).toEqual([{ path: s.file('data.txt'), cmdline: 'env' }]);
    // Without a kernel the default is bios, which an initrd alone does not change.
    const lines = problemsIn('name: a\ninitrd: initrd.img\n').filter((l) => l.includes('initrd'));
    expect(lines).toEqual([
      `${cfg}:2:9: initrd: not used with firmware bios (the default without a kernel) and no kernel; remove it, or give a kernel`,
    ]);
  });

  it('needs a kernel for direct boot', () => {
    expect(problemsIn('name: a\nfirmware: direct\ncmdline: quiet\n')).toEqual([
      `${cfg}:2:11: kernel: required for direct kernel boot (or use firmware: bios)`,
    ]);
    // A kernel alone means direct boot.
    const c = parse('name: a\nkernel: vmlinux.stub\n');
    expect(c.firmware).toEqual({ kind: 'direct' });
    expect(c.kernel).toBe(kernel);
  });

  it('derives a stable UUID from the name and normalises a given one', () => {
    const a = parse('name: web\nkernel: vmlinux.stub\n').uuid;
    expect(parse('name: web\nkernel: vmlinux.stub\nvcpus: 2\n').uuid).toBe(a);
    expect(a).toBe(defaultVmUuid('web'));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parse('name: db\nkernel: vmlinux.stub\n').uuid).not.toBe(a);
    const given = 'name: web\nkernel: vmlinux.stub\nuuid: 0B4F2F2E-7D1C-4B5A-9F3E-2A6C8D1E5F70\n';
    expect(parse(given).uuid).toBe('0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70');
    expect(problems(() => parse('name: a\nkernel: vmlinux.stub\nuuid: "1234"\n'))).toEqual([
      `${inline}:3:7: uuid: invalid UUID "1234": expected 8-4-4-4-12 hex digits, e.g. 0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70`,
    ]);
  });

  it('makes UUIDs v5 as RFC 9562 does', () => {
    // The DNS namespace example every UUID library agrees on.
    expect(uuidV5('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'www.example.com')).toBe(
      '2ed6657d-e927-568b-95e1-2665a8aea6a2',
    );
    expect(normaliseUuid('6BA7B810-9DAD-11D1-80B4-00C04FD430C8')).toBe(
      '6ba7b810-9dad-11d1-80b4-00c04fd430c8',
    );
    expect(() => normaliseUuid('6ba7b810')).toThrow('invalid UUID "6ba7b810"');
  });

  it('boots named devices in the order given, with a menu', () => {
    const c = parseIn(
      [
        'name: a',
        'firmware: {bios: bios.bin}',
        'boot: {order: [pxe, disk], menu: true, menuTimeout: 3000}',
        'devices:',
        '  - {class: option-rom, name: disk, file: boot.rom}',
        '  - {class: option-rom, name: pxe, file: boot.rom}',
      ].join('\n'),
    );
    expect(c.boot).toEqual({ order: ['pxe', 'disk'], menu: true, menuTimeoutMs: 3000 });
    expect(c.devices).toEqual([
      { class: 'option-rom', name: 'disk', file: s.file('boot.rom') },
      { class: 'option-rom', name: 'pxe', file: s.file('boot.rom') },
    ]);
  });

  it('checks the boot order names devices, once each', () => {
    const text = [
      'name: a', // 1
      'firmware: {bios: bios.bin}', // 2
      'boot:', // 3
      '  order: [ipxe, cdrom, ipxe, ipx]', // 4
      '  menuTimeout: 70000', // 5
      'devices:', // 6
      '  - {class: option-rom, name: ipxe, file: boot.rom}', // 7
    ].join('\n');
    expect(problemsIn(text)).toEqual([`${cfg}:5:16: boot.menuTimeout: must be <= 65535, got 70000`]);
    expect(problemsIn(text.replace('  menuTimeout: 70000', '  menu: false'))).toEqual([
      `${cfg}:4:17: boot.order[1]: no device named "cdrom" (named devices: ipxe)`,
      `${cfg}:4:24: boot.order[2]: "ipxe" is already listed at boot.order[0]`,
      `${cfg}:4:30: boot.order[3]: no device named "ipx" (did you mean "ipxe"?)`,
    ]);
    expect(problemsIn('name: a\nfirmware: {bios: bios.bin}\nboot: {order: [hd]}\n')).toEqual([
      `${cfg}:3:16: boot.order[0]: no device named "hd" (no device has a name; option-rom and storage devices do)`,
    ]);
  });

  it('gives fw_cfg files and strings to the guest', () => {
    const c = parseIn(
      'name: a\nfirmware: {bios: bios.bin}\nfwCfg:\n' +
        '  - {name: opt/org.example/a, file: data.txt}\n  - {name: opt/b, string: "x=1"}\n',
    );
    expect(c.fwCfgFiles).toEqual([
      { name: 'opt/org.example/a', path: s.file('data.txt') },
      { name: 'opt/b', text: 'x=1' },
    ]);
  });

  it('checks fw_cfg names and files', () => {
    const long = `opt/${'é'.repeat(26)}`; // 30 characters, 56 bytes
    const text = [
      'name: a', // 1
      'firmware: {bios: bios.bin}', // 2
      'fwCfg:', // 3
      '  - {name: etc/boot-menu-wait, string: "0"}', // 4
      `  - {name: ${long}, string: x}`, // 5
      '  - {name: opt/a, file: nope.txt}', // 6
      '  - {name: opt/a, string: y}', // 7
      '  - {name: opt/c}', // 8
    ].join('\n');
    expect(problemsIn(text)).toEqual([
      `${cfg}:4:12: fwCfg[0].name: invalid fw_cfg name "etc/boot-menu-wait": user files must be named opt/..., e.g. opt/org.example/config`,
      `${cfg}:8:5: fwCfg[4]: expected {name: ..., file: ...} or {name: ..., string: ...}, got a mapping with name`,
    ]);
    expect(problemsIn(text.split('\n').slice(0, 7).join('\n').replace('etc/', 'opt/'))).toEqual([
      `${cfg}:5:12: fwCfg[1].name: too long: 56 bytes (at most 55)`,
      `${cfg}:6:25: fwCfg[2].file: ${s.file('nope.txt')}: no such file`,
      `${cfg}:7:12: fwCfg[3].name: fw_cfg name "opt/a" is already used by fwCfg[2]`,
    ]);
  });

  it('checks option ROM images and device names', () => {
    const text = [
      'name: a', // 1
      'firmware: {bios: bios.bin}', // 2
      'devices:', // 3
      '  - {class: option-rom, name: a, file: text.rom}', // 4
      '  - {class: option-rom, name: b, file: small.rom}', // 5
      '  - {class: option-rom, name: c, file: big.rom}', // 6
      '  - {class: option-rom, name: a, file: boot.rom}', // 7
      '  - {class: option-rom, name: B, file: boot.rom}', // 8
    ].join('\n');
    expect(problemsIn(text)).toEqual([
      `${cfg}:8:31: devices[4].name: invalid name "B": use 1-63 lowercase letters, digits or '-', starting with a letter or digit`,
    ]);
    expect(problemsIn(text.replace('name: B', 'name: e'))).toEqual([
      `${cfg}:4:40: devices[0].file: ${s.file('text.rom')}: not an option ROM (it does not start with the signature 0x55 0xAA)`,
      `${cfg}:5:40: devices[1].file: ${s.file('small.rom')}: 256 bytes is too small for an option ROM (at least 512)`,
      `${cfg}:6:40: devices[2].file: ${s.file('big.rom')}: 196608 bytes is too large for an option ROM (at most 128 KiB)`,
      `${cfg}:7:31: devices[3].name: device name "a" is already used by devices[0]`,
    ]);
  });

  it('refuses option ROMs with a direct kernel boot, at each ROM', () => {
    const text = [
      'name: a', // 1
      'firmware: direct', // 2
      'kernel: vmlinux.stub', // 3
      'devices:', // 4
      '  - {class: serial-port, port: 0x2f8}', // 5
      '  - {class: option-rom, name: pxe, file: boot.rom}', // 6
      '  - class: option-rom', // 7
      '    name: disk', // 8
      '    file: boot.rom', // 9
    ].join('\n');
    const why = 'an option ROM needs firmware: bios (a direct kernel boot runs no firmware)';
    const lines = [`${cfg}:6:5: devices[1]: ${why}`, `${cfg}:7:5: devices[2]: ${why}`];
    expect(problemsIn(text)).toEqual(lines);
    // Direct boot because a kernel is given, without `firmware:`.
    expect(problemsIn(text.replace('firmware: direct', 'acpi: true'))).toEqual(lines);
    // With the BIOS the same devices are fine.
    const bios = text
      .replace('firmware: direct', 'firmware: {bios: bios.bin}')
      .replace('kernel: vmlinux.stub', '');
    expect(parseIn(bios).devices.map((d) => d.class)).toEqual(['serial-port', 'option-rom', 'option-rom']);
  });

  it('machine debug sends the firmware debug port to stderr unless debugConsole says otherwise', () => {
    const base = 'name: a\nfirmware: {bios: bios.bin}\n';
    expect(parseIn(`${base}machine: pc\n`).debugConsole).toEqual({ kind: 'none' });
    expect(parseIn(`${base}machine: {type: pc}\n`).debugConsole).toEqual({ kind: 'none' });
    expect(parseIn(`${base}machine: {type: pc, debug: true}\n`).debugConsole).toEqual({ kind: 'stderr' });
    expect(parseIn(`${base}machine: {type: pc, debug: true}\ndebugConsole: none\n`).debugConsole).toEqual({
      kind: 'none',
    });
    expect(
      parseIn(`${base}machine: {type: pc, debug: true}\ndebugConsole: {file: fw.log}\n`).debugConsole,
    ).toEqual({ kind: 'file', path: s.file('fw.log') });
    expect(parseIn(`${base}machine: {type: pc, debug: true}\n`).machine).toBe('pc');
    expect(problemsIn(`${base}machine: q35\n`)).toEqual([
      `${cfg}:3:10: machine: expected "pc" or {type: ...}, got "q35"`,
    ]);
  });
});

describe('parseSize', () => {
  it('parses bytes and suffixed strings (powers of 1024)', () => {
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize('4K')).toBe(4096);
    expect(parseSize('4KiB')).toBe(4096);
    expect(parseSize('4KB')).toBe(4096);
    expect(parseSize('128M')).toBe(128 * 2 ** 20);
    expect(parseSize('2Gi')).toBe(2 * 2 ** 30);
    expect(parseSize('1T')).toBe(2 ** 40);
  });
  it('rejects anything else with a clear message', () => {
    expect(() => parseSize('12Q')).toThrow(
      /^invalid size "12Q": expected a number of bytes or a number with a K, M/,
    );
    expect(() => parseSize('12')).toThrow(/invalid size "12"/);
    expect(() => parseSize('1.5G')).toThrow(/invalid size "1.5G"/);
    expect(() => parseSize(' 1G')).toThrow(/invalid size/);
    expect(() => parseSize(-1)).toThrow('invalid size -1: expected a whole number of bytes');
    expect(() => parseSize(1.5)).toThrow('invalid size 1.5: expected a whole number of bytes');
    expect(() => parseSize('99999999999T')).toThrow('invalid size "99999999999T": too large');
  });
  it('formats sizes', () => {
    expect(formatSize(2 ** 21)).toBe('2 MiB');
    expect(formatSize(4100)).toBe('4100 bytes');
    expect(formatSize(2 ** 40)).toBe('1 TiB');
  });
});

describe('parseCpuSpec and parseCharSinkSpec', () => {
  it('parses CPU specs', () => {
    expect(parseCpuSpec('host')).toEqual({ model: 'host', features: {} });
    expect(parseCpuSpec('baseline,-cx16,+xsaveerptr,+sse4.1,+tsc-deadline')).toEqual({
      model: 'baseline',
      features: { cx16: false, xsaveerptr: true, 'sse4.1': true, 'tsc-deadline': true },
    });
    expect(() => parseCpuSpec('baseline,cx16')).toThrow(
      'invalid CPU feature "cx16": expected +name or -name',
    );
  });
  it('parses --serial overrides', () => {
    expect(parseCharSinkSpec('stdio')).toEqual({ kind: 'stdio' });
    expect(parseCharSinkSpec('none')).toEqual({ kind: 'none' });
    expect(parseCharSinkSpec('file:out.log', '/x')).toEqual({ kind: 'file', path: '/x/out.log' });
    expect(parseCharSinkSpec('socket:/run/a.sock', '/x')).toEqual({ kind: 'socket', path: '/run/a.sock' });
    expect(() => parseCharSinkSpec('tty')).toThrow(
      '--serial: invalid value "tty": expected stdio, none, file:PATH or socket:PATH',
    );
  });
});

describe('schema and code agree', () => {
  it('uses the same size pattern', () => {
    expect(schema.definitions.MemorySize.pattern).toBe(SIZE_PATTERN);
  });
  it('documents the same defaults', () => {
    const props = schema.properties as Record<string, { default?: unknown; $ref?: string }>;
    const defs = schema.definitions as Record<string, { default?: unknown }>;
    let checked = 0;
    for (const [field, value] of Object.entries(VMM_CONFIG_DEFAULTS)) {
      const prop = props[field];
      expect(prop, field).toBeDefined();
      const ref = prop?.$ref?.replace('#/definitions/', '');
      const documented = prop?.default ?? (ref ? defs[ref]?.default : undefined);
      if (documented === undefined) continue;
      expect(documented, field).toEqual(value);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(7);
  });
  it('accepts exactly the CPU specs the parser accepts', () => {
    const re = new RegExp(schema.definitions.CpuSpec.pattern);
    for (const spec of [
      'host',
      'baseline,-cx16',
      'baseline,+sse4.1,-x_y',
      'host,cx16',
      'skylake',
      'host,+',
      'Host',
    ]) {
      let ok = true;
      try {
        parseCpuSpec(spec);
      } catch {
        ok = false;
      }
      expect(re.test(spec), spec).toBe(ok);
    }
  });
  it('keeps resolved paths absolute', () => {
    expect(resolve(parse('name: a\nkernel: vmlinux.stub\n').kernel ?? '')).toBe(kernel);
  });
});
