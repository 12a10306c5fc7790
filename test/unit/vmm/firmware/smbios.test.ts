import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildSmbios,
  encodeSmbiosUuid,
  memoryDeviceSizes,
  setSmbiosTableAddress,
  type Smbios,
} from '../../../../src/vmm/firmware/smbios.js';

const GIB = 2 ** 30;
const MIB = 2 ** 20;
const UUID = '00112233-4455-6677-8899-aabbccddeeff';

const sum = (b: Uint8Array, start = 0, length = b.length - start) =>
  b.subarray(start, start + length).reduce((s, x) => s + x, 0) & 0xff;
const ascii = (b: Uint8Array, off: number, len: number) =>
  Buffer.from(b.subarray(off, off + len)).toString('latin1');

interface Parsed {
  type: number;
  handle: number;
  formatted: Uint8Array;
  dv: DataView;
  strings: string[];
  /** The string a string-number field refers to (undefined for 0). */
  str(off: number): string | undefined;
}

/** Walks the structure table as a guest's DMI decoder does: formatted area, then strings up to a double NUL. */
function parse(tables: Uint8Array): Parsed[] {
  const out: Parsed[] = [];
  let off = 0;
  while (off < tables.length) {
    const len = tables[off + 1]!;
    expect(len).toBeGreaterThanOrEqual(4);
    const formatted = tables.subarray(off, off + len);
    let p = off + len;
    const strings: string[] = [];
    if (tables[p] === 0) {
      expect(tables[p + 1], 'a structure without strings ends in two NULs').toBe(0);
      p += 2;
    } else {
      while (tables[p] !== 0) {
        const end = tables.indexOf(0, p);
        expect(end).toBeGreaterThan(p);
        strings.push(ascii(tables, p, end - p));
        p = end + 1;
      }
      p += 1;
    }
    const dv = new DataView(formatted.buffer, formatted.byteOffset, formatted.byteLength);
    out.push({
      type: formatted[0]!,
      handle: dv.getUint16(2, true),
      formatted,
      dv,
      strings,
      str: (o) => (formatted[o] === 0 ? undefined : strings[formatted[o]! - 1]),
    });
    off = p;
  }
  expect(off).toBe(tables.length);
  return out;
}

const ofType = (s: Parsed[], type: number) => s.filter((x) => x.type === type);

function smbios(
  memory: { below4g: number; above4g: number },
  extra: Partial<Parameters<typeof buildSmbios>[0]> = {},
): Smbios {
  return buildSmbios({ uuid: UUID, cpus: 2, memory, ...extra });
}

describe('SMBIOS', () => {
  it('builds a 2.8 entry point with valid _SM_ and _DMI_ checksums that describes the table', () => {
    const s = smbios({ below4g: 128 * MIB, above4g: 0 }, { tableAddress: 0xf_1000 });
    const a = s.anchor;
    const dv = new DataView(a.buffer);
    expect(a.length).toBe(31);
    expect(ascii(a, 0, 4)).toBe('_SM_');
    expect(ascii(a, 16, 5)).toBe('_DMI_');
    expect(sum(a)).toBe(0);
    expect(sum(a, 16, 15)).toBe(0);
    expect([a[5], a[6], a[7], a[30]]).toEqual([31, 2, 8, 0x28]);
    expect(dv.getUint16(0x16, true)).toBe(s.tables.length);
    expect(dv.getUint32(0x18, true)).toBe(0xf_1000);
    expect(dv.getUint16(0x1c, true)).toBe(s.structureCount);
    expect(dv.getUint16(0x08, true)).toBe(s.maxStructureSize);
  });

  it('builds a 3.0 _SM3_ entry point on request', () => {
    const s = smbios({ below4g: 128 * MIB, above4g: 0 }, { entryPoint: '3.0', tableAddress: 0x1_2345_6000 });
    const a = s.anchor;
    const dv = new DataView(a.buffer);
    expect(a.length).toBe(24);
    expect(ascii(a, 0, 5)).toBe('_SM3_');
    expect(sum(a)).toBe(0);
    expect([a[6], a[7], a[8], a[10]]).toEqual([24, 3, 0, 1]);
    expect(dv.getUint32(0x0c, true)).toBe(s.tables.length);
    expect(Number(dv.getBigUint64(0x10, true))).toBe(0x1_2345_6000);
  });

  it('sets the table address later with checksums kept, leaving the input alone', () => {
    for (const entryPoint of ['2.8', '3.0'] as const) {
      const s = smbios({ below4g: 128 * MIB, above4g: 0 }, { entryPoint });
      const a = setSmbiosTableAddress(s.anchor, 0xe_8000);
      expect(sum(a)).toBe(0);
      if (entryPoint === '2.8') {
        expect(sum(a, 16, 15)).toBe(0);
        expect(new DataView(a.buffer).getUint32(0x18, true)).toBe(0xe_8000);
        expect(new DataView(s.anchor.buffer).getUint32(0x18, true)).toBe(0);
        expect(() => setSmbiosTableAddress(s.anchor, 2 ** 32)).toThrow(RangeError);
      } else {
        expect(Number(new DataView(a.buffer).getBigUint64(0x10, true))).toBe(0xe_8000);
      }
    }
  });

  it('has one structure of each type, one type 4 per socket and the end marker last', () => {
    const s = smbios({ below4g: 3 * GIB, above4g: 3 * GIB }, { cpus: 4, sockets: 2 });
    const parsed = parse(s.tables);
    expect(parsed.map((p) => p.type)).toEqual([0, 1, 3, 4, 4, 16, 17, 19, 19, 32, 127]);
    expect(s.structureCount).toBe(parsed.length);
    expect(parsed.map((p) => p.handle)).toEqual([
      0x0000, 0x0100, 0x0300, 0x0400, 0x0401, 0x1000, 0x1100, 0x1300, 0x1301, 0x2000, 0x7f00,
    ]);
    expect(new Set(parsed.map((p) => p.handle)).size).toBe(parsed.length);
    const cpus = ofType(parsed, 4);
    expect(cpus.map((c) => [c.str(0x04), c.formatted[0x23], c.formatted[0x25], c.formatted[0x18]])).toEqual([
      ['CPU 0', 2, 2, 0x41],
      ['CPU 1', 2, 2, 0x41],
    ]);
    expect(ofType(parsed, 32)[0]!.formatted.length).toBe(11);
    expect(parsed.at(-1)!.formatted.length).toBe(4);
    expect(Math.max(...parsed.map((p) => p.formatted.length))).toBeLessThanOrEqual(s.maxStructureSize);
  });

  it('stores the UUID with the SMBIOS mixed-endian rule', () => {
    expect(Buffer.from(encodeSmbiosUuid(UUID)).toString('hex')).toBe('33221100554477668899aabbccddeeff');
    const bytes = Uint8Array.from(Buffer.from('00112233445566778899aabbccddeeff', 'hex'));
    expect(encodeSmbiosUuid(bytes)).toEqual(encodeSmbiosUuid(UUID));
    const system = ofType(parse(smbios({ below4g: 128 * MIB, above4g: 0 }).tables), 1)[0]!;
    expect(Buffer.from(system.formatted.subarray(8, 24)).toString('hex')).toBe(
      '33221100554477668899aabbccddeeff',
    );
    expect(() => encodeSmbiosUuid('not-a-uuid')).toThrow(RangeError);
    expect(() => encodeSmbiosUuid(new Uint8Array(15))).toThrow(RangeError);
  });

  it('puts the vendor, product and version in the string sets they belong to', () => {
    const s = buildSmbios({
      uuid: UUID,
      cpus: 1,
      memory: { below4g: 128 * MIB, above4g: 0 },
      vendor: 'Acme',
      product: 'Roadrunner',
      version: '9.9',
      serial: 'SN-1',
    });
    const parsed = parse(s.tables);
    const bios = ofType(parsed, 0)[0]!;
    expect([bios.str(0x04), bios.str(0x05), bios.str(0x08)]).toEqual(['Acme', '9.9', '01/01/2026']);
    const system = ofType(parsed, 1)[0]!;
    expect(system.strings).toEqual(['Acme', 'Roadrunner', '9.9', 'SN-1']);
    expect([
      system.str(0x04),
      system.str(0x05),
      system.str(0x06),
      system.str(0x07),
      system.str(0x19),
    ]).toEqual(['Acme', 'Roadrunner', '9.9', 'SN-1', undefined]);
    // A repeated string is stored once.
    const cpu = ofType(parsed, 4)[0]!;
    expect(cpu.strings).toEqual(['CPU 0', 'Acme', 'Roadrunner']);
    // Structures without strings end in a double NUL.
    expect(ofType(parsed, 16)[0]!.strings).toEqual([]);
    const end = s.tables.subarray(s.tables.length - 6);
    expect(Array.from(end)).toEqual([127, 4, 0x00, 0x7f, 0, 0]);
    expect(() =>
      buildSmbios({ uuid: UUID, cpus: 1, memory: { below4g: MIB, above4g: 0 }, vendor: 'é' }),
    ).toThrow(RangeError);
  });

  it('describes 128 MiB as one 128 MiB memory device and one mapped range', () => {
    const parsed = parse(smbios({ below4g: 128 * MIB, above4g: 0 }).tables);
    const array = ofType(parsed, 16)[0]!;
    expect(array.dv.getUint32(0x07, true)).toBe(128 * 1024);
    expect(array.dv.getUint16(0x0d, true)).toBe(1);
    const devices = ofType(parsed, 17);
    expect(devices.map((d) => [d.dv.getUint16(0x0c, true), d.dv.getUint16(0x04, true), d.str(0x10)])).toEqual(
      [[128, 0x1000, 'DIMM 0']],
    );
    const mapped = ofType(parsed, 19);
    expect(
      mapped.map((m) => [m.dv.getUint32(4, true), m.dv.getUint32(8, true), m.dv.getUint16(0x0c, true)]),
    ).toEqual([[0, 128 * 1024 - 1, 0x1000]]);
  });

  it('describes 6 GiB split around the PCI hole as one 6 GiB device and two mapped ranges', () => {
    const parsed = parse(smbios({ below4g: 3 * GIB, above4g: 3 * GIB }).tables);
    expect(ofType(parsed, 17).map((d) => d.dv.getUint16(0x0c, true))).toEqual([6144]);
    expect(ofType(parsed, 19).map((m) => [m.dv.getUint32(4, true), m.dv.getUint32(8, true)])).toEqual([
      [0, 3 * 1024 * 1024 - 1],
      [4 * 1024 * 1024, 7 * 1024 * 1024 - 1],
    ]);
  });

  it('splits memory into 16 GiB devices like QEMU, with extended addresses past 4 TiB', () => {
    expect(memoryDeviceSizes(40 * GIB)).toEqual([16 * GIB, 16 * GIB, 8 * GIB]);
    expect(memoryDeviceSizes(16 * GIB)).toEqual([16 * GIB]);
    const parsed = parse(smbios({ below4g: 3 * GIB, above4g: 37 * GIB }).tables);
    expect(ofType(parsed, 17).map((d) => d.dv.getUint16(0x0c, true))).toEqual([16384, 16384, 8192]);
    expect(ofType(parsed, 16)[0]!.dv.getUint16(0x0d, true)).toBe(3);

    const huge = parse(smbios({ below4g: 3 * GIB, above4g: 4096 * GIB }).tables);
    const array = ofType(huge, 16)[0]!;
    expect(array.dv.getUint32(0x07, true)).toBe(0x8000_0000);
    expect(Number(array.dv.getBigUint64(0x0f, true))).toBe(4099 * GIB);
    const high = ofType(huge, 19)[1]!;
    expect([high.dv.getUint32(4, true), high.dv.getUint32(8, true)]).toEqual([0xffff_ffff, 0xffff_ffff]);
    expect(Number(high.dv.getBigUint64(0x0f, true))).toBe(4 * GIB);
    expect(Number(high.dv.getBigUint64(0x17, true))).toBe(4100 * GIB - 1);
  });

  it('rejects what it cannot describe', () => {
    expect(() => smbios({ below4g: 0, above4g: 0 })).toThrow(RangeError);
    expect(() => smbios({ below4g: 128 * MIB, above4g: 0 }, { cpus: 3, sockets: 2 })).toThrow(RangeError);
    expect(() => smbios({ below4g: 128 * MIB, above4g: 0 }, { cpus: 0 })).toThrow(RangeError);
  });
});

// The independent check: dmidecode decodes a dump laid out as it writes
// them (--dump-bin): the entry point at 0 and the table at 32.
const DMIDECODE = ['/usr/sbin/dmidecode', '/usr/bin/dmidecode'].find((p) => existsSync(p));

describe.skipIf(!DMIDECODE)('SMBIOS decoded by dmidecode', () => {
  function decode(entryPoint: '2.8' | '3.0'): string {
    const s = smbios({ below4g: 3 * GIB, above4g: 3 * GIB }, { entryPoint, tableAddress: 32 });
    const dump = new Uint8Array(32 + s.tables.length);
    dump.set(s.anchor);
    dump.set(s.tables, 32);
    const dir = mkdtempSync(join(tmpdir(), 'mvisor-smbios-'));
    try {
      writeFileSync(join(dir, 'dmi.bin'), dump);
      const r = spawnSync(DMIDECODE!, ['--from-dump', join(dir, 'dmi.bin')], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(`${r.stdout}${r.stderr}`).not.toMatch(/invalid|wrong|out of spec|truncated/i);
      return r.stdout;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  for (const entryPoint of ['2.8', '3.0'] as const) {
    it(`reads the ${entryPoint} entry point and every structure`, () => {
      const out = decode(entryPoint);
      expect(out).toContain(entryPoint === '2.8' ? 'SMBIOS 2.8 present.' : 'SMBIOS 3.0.0 present.');
      expect(out).toContain('UUID: 00112233-4455-6677-8899-aabbccddeeff');
      expect(out.match(/^Processor Information$/gm)).toHaveLength(2);
      expect(out).toMatch(/Memory Device\n(\t.*\n)*?\tSize: 6 GB/);
      expect(out).toMatch(/Starting Address: 0x00100000000\n\tEnding Address: 0x001BFFFFFFF/);
      expect(out).toContain('System Boot Information');
      expect(out).toContain('End Of Table');
    });
  }
});

if (!DMIDECODE) {
  describe('SMBIOS decoded by dmidecode', () => {
    it.skip('skipped: dmidecode is missing (apt-get install dmidecode)', () => {});
  });
}
