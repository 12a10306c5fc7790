import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import schema from '../../../../schema/vmm-config.schema.json' with { type: 'json' };
import {
  ConfigError,
  SIZE_PATTERN,
  VMM_CONFIG_DEFAULTS,
  formatSize,
  loadVmmConfig,
  parseCharSinkSpec,
  parseCpuSpec,
  parseSize,
  parseVmmConfig,
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
      kernel,
      cmdline: '',
      serial: { kind: 'stdio' },
      debugConsole: { kind: 'none' },
      onReset: 'exit',
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
      kernel,
      initrd: fixture('initramfs.stub'),
      cmdline: 'console=ttyS0 panic=-1',
      serial: { kind: 'file', path: fixture('out/console.log') },
      debugConsole: { kind: 'stderr' },
      onReset: 'exit',
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
      ['7:12: devices[1].class: unknown device class "virtio-blk" (known: serial-port, debug-console)'],
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
    expect(problems(() => parse('# comment\nname: a\n'))).toEqual([
      `${inline}:2:1: kernel: missing required field`,
    ]);
    expect(problems(() => parse('name: a\nkernel: k\ndevices:\n  - port: 1\n'))).toEqual([
      `${inline}:4:5: devices[0].class: missing required field (one of: serial-port, debug-console)`,
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
      `${inline}:1:1: the config is empty (expected a mapping with at least name and kernel)`,
    ]);
    expect(problems(() => parse('- a\n'))).toEqual([`${inline}:1:1: expected a mapping, got a list`]);
  });

  it('follows aliases', () => {
    const text = 'name: a\nkernel: vmlinux.stub\nx-port: &p 0x3f8\n';
    expect(problems(() => parse(text))[0]).toBe(
      `${inline}:3:1: x-port: unknown field (known fields: name, memory, vcpus, cpu, kernel, initrd, cmdline, serial, debugConsole, onReset, onTripleFault, devices)`,
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
    expect(resolve(parse('name: a\nkernel: vmlinux.stub\n').kernel)).toBe(kernel);
  });
});
