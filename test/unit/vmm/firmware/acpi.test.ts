import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as aml from '../../../../src/vmm/firmware/acpi/aml.js';
import { runTableLoader } from '../../../../src/vmm/firmware/table-loader.js';
import {
  ACPI_RSDP_FILE,
  ACPI_TABLES_FILE,
  acpiTableLoader,
  buildAcpiTables,
  FADT,
  FADT_F_PWR_BUTTON,
  FADT_F_RESET_REG_SUP,
  IAPC_8042,
  linkAcpiTables,
  pciIntxGsi,
  piixPirq,
  type AcpiTables,
} from '../../../../src/vmm/firmware/acpi/tables.js';

const sum = (b: Uint8Array, start = 0, length = b.length - start) =>
  b.subarray(start, start + length).reduce((s, x) => s + x, 0) & 0xff;
const ascii = (b: Uint8Array, off: number, len: number) =>
  Buffer.from(b.subarray(off, off + len)).toString('latin1');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function table(t: AcpiTables, sig: string): { bytes: Uint8Array; dv: DataView } {
  const off = t.offsets[sig];
  if (off === undefined) throw new Error(`no ${sig}`);
  const len = new DataView(t.tables.buffer).getUint32(off + 4, true);
  const bytes = t.tables.subarray(off, off + len);
  return { bytes, dv: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

/** Reads a PkgLength at `off`: [value, bytes used]. */
function readPkgLength(b: Uint8Array, off: number): [number, number] {
  const lead = b[off]!;
  const follow = lead >> 6;
  if (follow === 0) return [lead & 0x3f, 1];
  let v = lead & 0x0f;
  for (let i = 0; i < follow; i++) v += b[off + 1 + i]! * 2 ** (4 + 8 * i);
  return [v, 1 + follow];
}

type Decoded = number | Decoded[];

/** Decodes an integer or a (nested) package of integers at `off`: [value, bytes used]. */
function decodeData(b: Uint8Array, off: number): [Decoded, number] {
  const op = b[off]!;
  const widths: Record<number, number> = { 0x0a: 1, 0x0b: 2, 0x0c: 4, 0x0e: 8 };
  if (op === 0x00) return [0, 1];
  if (op === 0x01) return [1, 1];
  if (widths[op]) {
    let v = 0;
    for (let i = 0; i < widths[op]; i++) v += b[off + 1 + i]! * 2 ** (8 * i);
    return [v, 1 + widths[op]];
  }
  if (op === 0x12) {
    const [len, n] = readPkgLength(b, off + 1);
    const count = b[off + 1 + n]!;
    const out: Decoded[] = [];
    let p = off + 2 + n;
    for (let i = 0; i < count; i++) {
      const [v, used] = decodeData(b, p);
      out.push(v);
      p += used;
    }
    expect(p).toBe(off + 1 + len);
    return [out, 1 + len];
  }
  throw new Error(`opcode 0x${op.toString(16)} at ${off}`);
}

/** The data object of the first `Name(seg, ...)` in an AML byte string. */
function namedData(b: Uint8Array, seg: string): Decoded {
  const needle = Buffer.from(seg, 'latin1');
  const at = Buffer.from(b).indexOf(needle);
  expect(at, `${seg} in the DSDT`).toBeGreaterThan(0);
  // NameOp, then either the bare seg or the root prefix and the seg.
  expect(b[at - 1] === 0x08 || (b[at - 1] === 0x5c && b[at - 2] === 0x08)).toBe(true);
  return decodeData(b, at + 4)[0];
}

describe('AML encoder', () => {
  it('encodes PkgLength in 1 to 4 bytes, the length counting itself', () => {
    expect(hex(aml.pkgLength(0))).toBe('01');
    expect(hex(aml.pkgLength(62))).toBe('3f');
    // 63 + 2 = 65 = 0x41: lead byte 0b01 << 6 | 0x1, then 0x41 >> 4.
    expect(hex(aml.pkgLength(63))).toBe('4104');
    expect(hex(aml.pkgLength(0xfff - 2))).toBe('4fff');
    expect(hex(aml.pkgLength(0xfff - 1))).toBe('810001');
    expect(hex(aml.pkgLength(0xfffff - 3))).toBe('8fffff');
    expect(hex(aml.pkgLength(0xfffff - 2))).toBe('c1000001');
    expect(() => aml.pkgLength(aml.MAX_PKG_LENGTH)).toThrow(RangeError);
    for (const n of [0, 1, 62, 63, 64, 300, 4093, 4094, 70000, 1_048_572, 1_048_573, 5_000_000]) {
      const enc = aml.pkgLength(n);
      expect(readPkgLength(enc, 0)).toEqual([n + enc.length, enc.length]);
    }
  });

  it('encodes integers with the shortest prefix', () => {
    expect(hex(aml.int(0))).toBe('00');
    expect(hex(aml.int(1))).toBe('01');
    expect(hex(aml.int(2))).toBe('0a02');
    expect(hex(aml.int(0xff))).toBe('0aff');
    expect(hex(aml.int(0x100))).toBe('0b0001');
    expect(hex(aml.int(0xffff))).toBe('0bffff');
    expect(hex(aml.int(0x1_0000))).toBe('0c00000100');
    expect(hex(aml.int(0xffff_ffff))).toBe('0cffffffff');
    expect(hex(aml.int(0x1_0000_0000))).toBe('0e0000000001000000');
    expect(hex(aml.int(0xffff_ffff_ffff_ffffn))).toBe('ff');
    expect(() => aml.int(-1)).toThrow(RangeError);
    expect(() => aml.int(2 ** 64 + 1)).toThrow(RangeError);
  });

  it('encodes strings, names and EISA ids', () => {
    expect(hex(aml.str('Hi'))).toBe('0d486900');
    expect(Buffer.from(aml.nameString('_S5')).toString('latin1')).toBe('_S5_');
    expect(Buffer.from(aml.nameString('\\_SB')).toString('latin1')).toBe('\\_SB_');
    expect(Buffer.from(aml.nameString('\\_SB.PCI0')).toString('latin1')).toBe('\\\x2e_SB_PCI0');
    expect(Buffer.from(aml.nameString('\\_SB.PCI0.ISA')).toString('latin1')).toBe('\\\x2f\x03_SB_PCI0ISA_');
    expect(Buffer.from(aml.nameString('^^LNKA')).toString('latin1')).toBe('^^LNKA');
    expect(hex(aml.nameString('\\'))).toBe('5c00');
    expect(() => aml.nameString('1ABC')).toThrow(RangeError);
    expect(() => aml.nameString('pci0')).toThrow(RangeError);
    expect(() => aml.nameString('ABCDE')).toThrow(RangeError);
    expect(hex(aml.eisaId('PNP0A03'))).toBe('0c41d00a03');
    expect(hex(aml.eisaId('PNP0501'))).toBe('0c41d00501');
  });

  it('encodes named objects, packages and buffers', () => {
    expect(hex(aml.name('_S5', aml.pkg([0, 0, 0, 0])))).toBe('085f53355f' + '120604' + '00000000');
    expect(hex(aml.buf(Uint8Array.of(1, 2)))).toBe('11050a020102');
    expect(hex(aml.device('DEV', aml.name('_UID', aml.int(1))))).toBe('5b820b' + '4445565f' + '085f55494401');
    expect(hex(aml.scope('\\', aml.name('ABCD', aml.int(0))))).toBe('1009' + '5c00' + '084142434400');
    expect(hex(aml.method('_STA', { args: 0 }, aml.ret(aml.int(0x0f))))).toBe(
      '1409' + '5f535441' + '00' + 'a40a0f',
    );
    expect(aml.method('M', { args: 2, serialized: true, syncLevel: 3 })[6]).toBe(0x3a);
    const big = aml.pkg(Array.from({ length: 300 }, () => 0));
    expect(big[0]).toBe(aml.VAR_PACKAGE_OP);
  });

  it('encodes resource descriptors and an End Tag whose checksum zeroes the template', () => {
    expect(hex(aml.io({ min: 0x3f8, max: 0x3f8, align: 8, length: 8 }))).toBe('4701f803f8030808');
    expect(hex(aml.irqNoFlags(4))).toBe('221000');
    expect(hex(aml.irqNoFlags(1, 12))).toBe('220210');
    expect(hex(aml.memory32Fixed(0xfed00000, 0x400))).toBe('8609000100' + '00d0fe' + '00040000');
    expect(hex(aml.wordBusNumber({ min: 0, max: 0xff }))).toBe(
      '880d00020c00' + '0000' + '0000' + 'ff00' + '0000' + '0001',
    );
    expect(hex(aml.wordIO({ min: 0xd00, max: 0xffff }))).toBe(
      '880d00010c03' + '0000' + '000d' + 'ffff' + '0000' + '00f3',
    );
    const mem = aml.dwordMemory({ min: 0xa0000, max: 0xbffff, cacheable: true });
    expect(mem.length).toBe(26);
    expect(hex(mem.subarray(0, 6))).toBe('871700000c03');
    const rt = aml.resourceTemplate(aml.io({ min: 0x70, max: 0x70, length: 2 }), aml.irqNoFlags(8));
    // BufferOp, PkgLength, BufferSize, then the descriptors and End Tag.
    const body = rt.subarray(4);
    expect(rt[3]).toBe(body.length);
    expect(body[body.length - 2]).toBe(0x79);
    expect(sum(body)).toBe(0);
  });
});

describe('buildAcpiTables', () => {
  const built = buildAcpiTables({ cpus: 4 });
  const sigs = ['FACS', 'DSDT', 'FACP', 'APIC', 'RSDT', 'XSDT'];

  it('lays the tables back to back, each with its signature, length and a zero checksum', () => {
    expect(Object.keys(built.offsets)).toEqual(sigs);
    let expected = 0;
    for (const sig of sigs) {
      const { bytes, dv } = table(built, sig);
      expect(built.offsets[sig]).toBe(expected);
      expect(ascii(bytes, 0, 4)).toBe(sig);
      expected += dv.getUint32(4, true);
      if (sig !== 'FACS') {
        expect(sum(bytes), `${sig} checksum`).toBe(0);
        expect(ascii(bytes, 10, 6)).toBe('MVISOR');
      }
    }
    expect(built.tables.length).toBe(expected);
    expect(built.offsets.FACS).toBe(0);
    expect(table(built, 'FACS').bytes.length).toBe(64);
  });

  it('builds a revision 2 RSDP with both checksums and pointers to the RSDT and XSDT', () => {
    const r = built.rsdp;
    const dv = new DataView(r.buffer);
    expect(r.length).toBe(36);
    expect(ascii(r, 0, 8)).toBe('RSD PTR ');
    expect(sum(r, 0, 20)).toBe(0);
    expect(sum(r)).toBe(0);
    expect(r[15]).toBe(2);
    expect(dv.getUint32(20, true)).toBe(36);
    expect(dv.getUint32(16, true)).toBe(built.offsets.RSDT);
    expect(Number(dv.getBigUint64(24, true))).toBe(built.offsets.XSDT);
  });

  it('lists the FADT and MADT in both the RSDT and the XSDT', () => {
    const rsdt = table(built, 'RSDT');
    const xsdt = table(built, 'XSDT');
    expect(rsdt.bytes.length).toBe(36 + 8);
    expect(xsdt.bytes.length).toBe(36 + 16);
    expect([rsdt.dv.getUint32(36, true), rsdt.dv.getUint32(40, true)]).toEqual([
      built.offsets.FACP,
      built.offsets.APIC,
    ]);
    expect([Number(xsdt.dv.getBigUint64(36, true)), Number(xsdt.dv.getBigUint64(44, true))]).toEqual([
      built.offsets.FACP,
      built.offsets.APIC,
    ]);
  });

  it('puts the PIIX4 PM blocks, SCI, reset register and boot flags at their FADT offsets', () => {
    const t = buildAcpiTables({ cpus: 1, pmBase: 0xb000, sciIrq: 10 });
    const { bytes, dv } = table(t, 'FACP');
    expect(bytes.length).toBe(276);
    expect(bytes[8]).toBe(6);
    expect(dv.getUint16(FADT.SCI_INT, true)).toBe(10);
    expect(dv.getUint32(FADT.SMI_CMD, true)).toBe(0);
    expect(dv.getUint32(FADT.PM1A_EVT_BLK, true)).toBe(0xb000);
    expect(dv.getUint32(FADT.PM1A_CNT_BLK, true)).toBe(0xb004);
    expect(dv.getUint32(FADT.PM_TMR_BLK, true)).toBe(0xb008);
    expect(dv.getUint32(FADT.GPE0_BLK, true)).toBe(0xb00c);
    expect([
      bytes[FADT.PM1_EVT_LEN],
      bytes[FADT.PM1_CNT_LEN],
      bytes[FADT.PM_TMR_LEN],
      bytes[FADT.GPE0_BLK_LEN],
    ]).toEqual([4, 2, 4, 4]);
    // X_ blocks: Generic Address Structures in System I/O space.
    for (const [off, port, bits] of [
      [FADT.X_PM1A_EVT_BLK, 0xb000, 32],
      [FADT.X_PM1A_CNT_BLK, 0xb004, 16],
      [FADT.X_PM_TMR_BLK, 0xb008, 32],
      [FADT.X_GPE0_BLK, 0xb00c, 32],
    ]) {
      expect([bytes[off!], bytes[off! + 1], Number(dv.getBigUint64(off! + 4, true))]).toEqual([
        1,
        bits,
        port,
      ]);
    }
    expect(hex(bytes.subarray(FADT.RESET_REG, FADT.RESET_REG + 12))).toBe(
      '010800' + '01' + 'f90c000000000000',
    );
    expect(bytes[FADT.RESET_VALUE]).toBe(0x06);
    const flags = dv.getUint32(FADT.FLAGS, true);
    expect(flags & FADT_F_RESET_REG_SUP).toBeTruthy();
    expect(flags & FADT_F_PWR_BUTTON).toBe(0); // the fixed power button
    expect(dv.getUint16(FADT.IAPC_BOOT_ARCH, true) & IAPC_8042).toBeTruthy();
    expect(dv.getUint32(FADT.FIRMWARE_CTRL, true)).toBe(t.offsets.FACS);
    expect(Number(dv.getBigUint64(FADT.X_FIRMWARE_CTRL, true))).toBe(t.offsets.FACS);
    expect(dv.getUint32(FADT.DSDT, true)).toBe(t.offsets.DSDT);
    expect(Number(dv.getBigUint64(FADT.X_DSDT, true))).toBe(t.offsets.DSDT);
    // The MADT's SCI override follows the SCI.
    expect(
      madtEntries(t)
        .filter((e) => e.type === 2)
        .map((e) => e.bytes[3]),
    ).toEqual([0, 10]);
  });

  it('writes SMI_CMD and its enable/disable values when asked', () => {
    const t = buildAcpiTables({ cpus: 1, smiCmd: { port: 0xb2, enable: 0xf1, disable: 0xf0 } });
    const { bytes, dv } = table(t, 'FACP');
    expect([dv.getUint32(FADT.SMI_CMD, true), bytes[FADT.ACPI_ENABLE], bytes[FADT.ACPI_DISABLE]]).toEqual([
      0xb2, 0xf1, 0xf0,
    ]);
  });

  interface MadtEntry {
    type: number;
    bytes: Uint8Array;
    dv: DataView;
  }
  function madtEntries(t: AcpiTables): MadtEntry[] {
    const { bytes } = table(t, 'APIC');
    const out: MadtEntry[] = [];
    for (let off = 44; off < bytes.length;) {
      const len = bytes[off + 1]!;
      expect(len).toBeGreaterThan(1);
      const e = bytes.subarray(off, off + len);
      out.push({ type: e[0]!, bytes: e, dv: new DataView(e.buffer, e.byteOffset, e.byteLength) });
      off += len;
    }
    return out;
  }

  it('describes every CPU, the IOAPIC, the ISA overrides and LINT1 NMI in the MADT', () => {
    const { dv } = table(built, 'APIC');
    expect(dv.getUint32(36, true)).toBe(0xfee00000);
    expect(dv.getUint32(40, true)).toBe(1); // PCAT_COMPAT
    const entries = madtEntries(built);
    const lapics = entries.filter((e) => e.type === 0);
    expect(lapics.map((e) => [e.bytes[2], e.bytes[3], e.dv.getUint32(4, true)])).toEqual([
      [0, 0, 1],
      [1, 1, 1],
      [2, 2, 1],
      [3, 3, 1],
    ]);
    const ioapics = entries.filter((e) => e.type === 1);
    expect(ioapics).toHaveLength(1);
    expect([
      ioapics[0]!.bytes[2],
      ioapics[0]!.dv.getUint32(4, true),
      ioapics[0]!.dv.getUint32(8, true),
    ]).toEqual([4, 0xfec00000, 0]);
    const overrides = entries.filter((e) => e.type === 2);
    expect(
      overrides.map((e) => [e.bytes[2], e.bytes[3], e.dv.getUint32(4, true), e.dv.getUint16(8, true)]),
    ).toEqual([
      [0, 0, 2, 0],
      [0, 9, 9, 0x000d],
    ]);
    const nmis = entries.filter((e) => e.type === 4);
    expect(nmis.map((e) => hex(e.bytes))).toEqual(['0406ff000001']);
  });

  it('adds level/active-high overrides for ISA IRQs used as PCI interrupts, like QEMU', () => {
    const t = buildAcpiTables({ cpus: 1, pciGsis: [10, 10, 11, 11], ioapicAddr: 0xfec01000, ioapicId: 0 });
    const entries = madtEntries(t);
    expect(entries.filter((e) => e.type === 2).map((e) => [e.bytes[3], e.dv.getUint16(8, true)])).toEqual([
      [0, 0],
      [9, 0xd],
      [10, 0xd],
      [11, 0xd],
    ]);
    const io = entries.find((e) => e.type === 1)!;
    expect([io.bytes[2], io.dv.getUint32(4, true)]).toEqual([0, 0xfec01000]);
  });

  it('has a static _PRT with the PIIX swizzle onto GSIs 16-19, and \\_S5', () => {
    const { bytes } = table(built, 'DSDT');
    expect(bytes[8]).toBe(2); // 64-bit integers
    const prt = namedData(bytes.subarray(36), '_PRT') as number[][];
    expect(prt).toHaveLength(32 * 4);
    for (const [i, entry] of prt.entries()) {
      const slot = i >> 2;
      const pin = i & 3;
      expect(entry).toEqual([slot * 0x10000 + 0xffff, pin, 0, pciIntxGsi(slot, (pin + 1) as 1 | 2 | 3 | 4)]);
    }
    // QEMU/SeaBIOS: slot 2 INTA is PIRQB, slot 3 INTA is PIRQC; slot 1 INTA is the SCI.
    expect(prt[2 * 4]![3]).toBe(17);
    expect(prt[3 * 4 + 3]![3]).toBe(17);
    expect(prt[1 * 4]![3]).toBe(9);
    expect([piixPirq(0, 1), piixPirq(1, 2), piixPirq(2, 1), piixPirq(4, 4)]).toEqual([3, 1, 1, 2]);
    expect(new Set(prt.map((e) => e[3])).size).toBe(5);
    expect(namedData(bytes.subarray(36), '_S5_')).toEqual([0, 0, 0, 0]);
    expect(Buffer.from(bytes).includes('_S3_')).toBe(false);
    // No methods: nothing for the guest to run.
    expect(Buffer.from(bytes).includes(Buffer.from('_STA'))).toBe(false);
  });

  it('sizes the _PRT by pciSlots and declares \\_S3 when asked', () => {
    const t = buildAcpiTables({ cpus: 1, pciSlots: 3, s3: true });
    const dsdt = table(t, 'DSDT').bytes.subarray(36);
    expect((namedData(dsdt, '_PRT') as number[][]).length).toBe(12);
    expect(namedData(dsdt, '_S3_')).toEqual([1, 1, 0, 0]);
  });

  it('rejects CPU counts and PCI GSIs it cannot describe', () => {
    expect(() => buildAcpiTables({ cpus: 0 })).toThrow(RangeError);
    expect(() => buildAcpiTables({ cpus: 255 })).toThrow(RangeError);
    expect(() => buildAcpiTables({ cpus: 1, pciGsis: [16, 17, 18, 24] })).toThrow(RangeError);
    expect(() => buildAcpiTables({ cpus: 1, oemId: 'TOOLONG' })).toThrow(RangeError);
  });

  it('lists pointers and checksums that cover every address field and table', () => {
    expect(built.pointers.map((p) => `${p.table}@${p.offset}:${p.size}->${p.target} ${p.field}`)).toEqual([
      `rsdp@16:4->tables RSDP.RsdtAddress`,
      `rsdp@24:8->tables RSDP.XsdtAddress`,
      `tables@${built.offsets.FACP! + 36}:4->tables FACP.FIRMWARE_CTRL`,
      `tables@${built.offsets.FACP! + 40}:4->tables FACP.DSDT`,
      `tables@${built.offsets.FACP! + 132}:8->tables FACP.X_FIRMWARE_CTRL`,
      `tables@${built.offsets.FACP! + 140}:8->tables FACP.X_DSDT`,
      `tables@${built.offsets.RSDT! + 36}:4->tables RSDT.Entry[0]=FACP`,
      `tables@${built.offsets.RSDT! + 40}:4->tables RSDT.Entry[1]=APIC`,
      `tables@${built.offsets.XSDT! + 36}:8->tables XSDT.Entry[0]=FACP`,
      `tables@${built.offsets.XSDT! + 44}:8->tables XSDT.Entry[1]=APIC`,
    ]);
    expect(built.checksums.map((c) => `${c.table}@${c.offset}`)).toEqual([
      ...['DSDT', 'FACP', 'APIC', 'RSDT', 'XSDT'].map((s) => `tables@${built.offsets[s]! + 9}`),
      'rsdp@8',
      'rsdp@32',
    ]);
  });

  it('links the tables at guest addresses for direct boot, pointers resolved and checksums kept', () => {
    const tablesAddr = 0x7ffe_0000;
    const rsdpAddr = 0xf_5a10;
    const linked = linkAcpiTables(built, { tablesAddr, rsdpAddr });
    expect(built.rsdp[16]).toBe(built.offsets.RSDT! & 0xff); // the input is untouched
    const at = (addr: number, len: number) => ascii(linked.tables, addr - tablesAddr, len);
    const rdv = new DataView(linked.rsdp.buffer);
    expect(sum(linked.rsdp, 0, 20)).toBe(0);
    expect(sum(linked.rsdp)).toBe(0);
    expect(at(rdv.getUint32(16, true), 4)).toBe('RSDT');
    expect(at(Number(rdv.getBigUint64(24, true)), 4)).toBe('XSDT');
    const t = { ...built, tables: linked.tables };
    for (const sig of ['DSDT', 'FACP', 'APIC', 'RSDT', 'XSDT']) expect(sum(table(t, sig).bytes), sig).toBe(0);
    for (const p of built.pointers.filter((q) => q.table === 'tables')) {
      const dv = new DataView(linked.tables.buffer);
      const addr = p.size === 4 ? dv.getUint32(p.offset, true) : Number(dv.getBigUint64(p.offset, true));
      const sig = p.field.split(/[.=]/).pop()!.replace('FIRMWARE_CTRL', 'FACS').replace(/^X_/, '');
      expect(at(addr, 4), p.field).toBe(sig === 'FACS' || sig === 'DSDT' ? sig : p.field.split('=')[1]);
    }
    expect(() => linkAcpiTables(built, { tablesAddr: 0x1000 + 32, rsdpAddr })).toThrow(RangeError);
    expect(() => linkAcpiTables(built, { tablesAddr: 0xffff_ffc0, rsdpAddr })).toThrow(RangeError);
  });
});

describe('acpiTableLoader', () => {
  it('gives firmware files and a script that link to what linkAcpiTables builds', () => {
    const built = buildAcpiTables({ cpus: 2 });
    const { files, loader } = acpiTableLoader(built);
    expect(loader.commands.slice(0, 2)).toEqual([
      { kind: 'allocate', file: ACPI_TABLES_FILE, align: 64, zone: 'high' },
      { kind: 'allocate', file: ACPI_RSDP_FILE, align: 16, zone: 'fseg' },
    ]);
    expect(loader.commands.filter((c) => c.kind === 'add-pointer')).toHaveLength(built.pointers.length);
    expect(loader.commands.filter((c) => c.kind === 'add-checksum')).toHaveLength(built.checksums.length);
    // Checksum bytes are left 0 for the firmware to fill in; the input keeps its own.
    for (const c of built.checksums)
      expect(files.get(c.table === 'rsdp' ? ACPI_RSDP_FILE : ACPI_TABLES_FILE)![c.offset]).toBe(0);
    expect(sum(table(built, 'DSDT').bytes)).toBe(0);

    const addrs: Record<string, number> = { [ACPI_TABLES_FILE]: 0x7ffe_0000, [ACPI_RSDP_FILE]: 0xf_5a10 };
    const loaded = runTableLoader(loader.build(), files, (file) => addrs[file]!);
    const linked = linkAcpiTables(built, {
      tablesAddr: addrs[ACPI_TABLES_FILE]!,
      rsdpAddr: addrs[ACPI_RSDP_FILE]!,
    });
    expect(loaded.get(ACPI_TABLES_FILE)!.data).toEqual(linked.tables);
    expect(loaded.get(ACPI_RSDP_FILE)!.data).toEqual(linked.rsdp);
  });
});

// The independent check: ACPICA's disassembler must accept what we encode.
const IASL = '/usr/bin/iasl';
const haveIasl = existsSync(IASL);

describe.skipIf(!haveIasl)('ACPI tables disassembled by iasl', () => {
  function iasl(dir: string, args: string[]): string {
    const r = spawnSync(IASL, args, { cwd: dir, encoding: 'utf8' });
    const output = `${r.stdout}\n${r.stderr}`;
    expect(r.status, output).toBe(0);
    expect(output).not.toMatch(/\bError\b|Could not|Invalid/i);
    return output;
  }

  /** `iasl -d` of one table; `recompile` also compiles the .dsl back (no optimizations) and returns the AML. */
  function disassemble(t: AcpiTables, sig: string, recompile = false): { dsl: string; aml?: Uint8Array } {
    const dir = mkdtempSync(join(tmpdir(), 'mvisor-acpi-'));
    try {
      const base = sig.toLowerCase();
      writeFileSync(join(dir, `${base}.dat`), table(t, sig).bytes);
      iasl(dir, ['-d', `${base}.dat`]);
      const dsl = readFileSync(join(dir, `${base}.dsl`), 'utf8');
      if (!recompile) return { dsl };
      const out = iasl(dir, ['-oa', '-p', 'again', `${base}.dsl`]);
      expect(out).toMatch(/0 Errors, 0 Warnings, 0 Remarks/);
      return { dsl, aml: new Uint8Array(readFileSync(join(dir, 'again.aml'))) };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const built = buildAcpiTables({ cpus: 2, s3: true });

  it('disassembles the DSDT into the PCI root, its _PRT, the ISA devices and \\_S5', () => {
    const { dsl } = disassemble(built, 'DSDT');
    for (const s of ['_PRT', 'PNP0A03', 'PNP0501', 'PNP0B00', 'PNP0303', 'PNP0F13', '_S5_', '_S3_']) {
      expect(dsl, s).toContain(s);
    }
    expect(dsl).toMatch(/WordBusNumber \(ResourceProducer/);
    expect(dsl).toMatch(/0x0D00,\s+\/\/ Range Minimum/);
    expect(dsl).toMatch(/0xFEBFFFFF,\s+\/\/ Range Maximum/);
    expect(dsl).toMatch(/IO \(Decode16,\s+0x03F8,\s+\/\/ Range Minimum/);
    expect(dsl).not.toMatch(/While|Method/);
  });

  it('compiles the disassembled DSDT back to the same AML, End Tag checksums aside (iasl writes 0)', () => {
    const ours = table(built, 'DSDT').bytes;
    const theirs = disassemble(built, 'DSDT', true).aml!;
    expect(theirs.length).toBe(ours.length);
    const differ: number[] = [];
    for (let i = 36; i < ours.length; i++) if (ours[i] !== theirs[i]) differ.push(i);
    // One per resource template: PCI0, KBD, MOU, COM1, RTC.
    expect(differ).toHaveLength(5);
    for (const i of differ) expect([ours[i - 1], theirs[i]]).toEqual([0x79, 0]);
  });

  it('disassembles the FADT with the PIIX4 blocks and the reset register', () => {
    const { dsl } = disassemble(built, 'FACP');
    expect(dsl).toMatch(/Revision : 06/);
    expect(dsl).toMatch(/PM1A Event Block Address : 00000600/);
    expect(dsl).toMatch(/PM Timer Block Address : 00000608/);
    expect(dsl).toMatch(/Reset Register Supported \(V2\) : 1/);
    expect(dsl).toMatch(/Value to cause reset : 06/);
    expect(dsl).toMatch(/SCI Interrupt : 0009/);
  });

  it('disassembles the MADT with one Processor Local APIC per CPU', () => {
    const { dsl } = disassemble(built, 'APIC');
    expect(dsl.match(/Subtable Type : 00 \[Processor Local APIC\]/g)).toHaveLength(2);
    expect(dsl).toMatch(/Subtable Type : 01 \[I\/O APIC\]/);
    expect(dsl.match(/Subtable Type : 02 \[Interrupt Source Override\]/g)).toHaveLength(2);
    expect(dsl).toMatch(/Subtable Type : 04 \[Local APIC NMI\]/);
  });
});

if (!haveIasl) {
  describe('ACPI tables disassembled by iasl', () => {
    it.skip(`skipped: ${IASL} is missing (apt-get install acpica-tools)`, () => {});
  });
}
