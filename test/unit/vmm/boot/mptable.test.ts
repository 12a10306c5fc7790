import { describe, expect, it } from 'vitest';
import { BootError } from '../../../../src/vmm/boot/errors.js';
import { MPTABLE_START, pcMemoryLayout } from '../../../../src/vmm/boot/layout.js';
import {
  MP_BUS,
  MP_EXTINT,
  MP_INTSRC,
  MP_IOAPIC,
  MP_LINTSRC,
  MP_NMI,
  MP_PROCESSOR,
  mpTableSize,
  writeMpTable,
} from '../../../../src/vmm/boot/mptable.js';
import { GuestMemory } from '../../../../src/vmm/core/memory.js';
import { MiB, memoryFor } from './helpers.js';

function sum(b: Uint8Array): number {
  return b.reduce((s, x) => (s + x) & 0xff, 0);
}

interface ParsedMp {
  cpus: { apicId: number; version: number; flags: number; signature: number; features: number }[];
  buses: { id: number; type: string }[];
  ioapics: { id: number; version: number; flags: number; addr: number }[];
  intsrc: { type: number; flags: number; bus: number; irq: number; apic: number; pin: number }[];
  lintsrc: { type: number; bus: number; irq: number; apic: number; lint: number }[];
  oem: string;
  product: string;
  lapic: number;
}

/** Finds and parses the MP table the way an OS would (MP spec 1.4 §4), checking every checksum. */
function parseMp(mem: GuestMemory, searchStart: number, searchLen: number): ParsedMp {
  const area = mem.view(searchStart, searchLen);
  let mpf = -1;
  for (let off = 0; off + 16 <= searchLen; off += 16) {
    if (
      new TextDecoder().decode(area.subarray(off, off + 4)) === '_MP_' &&
      sum(area.subarray(off, off + 16)) === 0
    ) {
      mpf = searchStart + off;
      break;
    }
  }
  expect(mpf).toBeGreaterThanOrEqual(0);
  const fp = mem.dataView(mpf, 16);
  expect(fp.getUint8(8)).toBe(1);
  expect(fp.getUint8(9)).toBe(4);
  expect(fp.getUint8(11)).toBe(0); // a config table follows, no default configuration
  const mpc = fp.getUint32(4, true);
  const hdr = mem.dataView(mpc, 44);
  expect(new TextDecoder().decode(mem.view(mpc, 4))).toBe('PCMP');
  const len = hdr.getUint16(4, true);
  expect(hdr.getUint8(6)).toBe(4);
  expect(sum(mem.view(mpc, len))).toBe(0);
  const extLen = hdr.getUint16(40, true);
  expect((sum(mem.view(mpc + len, extLen)) + hdr.getUint8(42)) & 0xff).toBe(0);
  const count = hdr.getUint16(34, true);
  const out: ParsedMp = {
    cpus: [],
    buses: [],
    ioapics: [],
    intsrc: [],
    lintsrc: [],
    oem: new TextDecoder().decode(mem.view(mpc + 8, 8)),
    product: new TextDecoder().decode(mem.view(mpc + 16, 12)),
    lapic: hdr.getUint32(36, true),
  };
  let off = mpc + 44;
  let lastType = 0;
  for (let i = 0; i < count; i++) {
    const e = mem.dataView(off, mem.view(off, 1)[0] === MP_PROCESSOR ? 20 : 8);
    const type = e.getUint8(0);
    expect(type).toBeGreaterThanOrEqual(lastType); // §4.3: entries sorted by type
    lastType = type;
    switch (type) {
      case MP_PROCESSOR:
        out.cpus.push({
          apicId: e.getUint8(1),
          version: e.getUint8(2),
          flags: e.getUint8(3),
          signature: e.getUint32(4, true),
          features: e.getUint32(8, true),
        });
        off += 20;
        continue;
      case MP_BUS:
        out.buses.push({ id: e.getUint8(1), type: new TextDecoder().decode(mem.view(off + 2, 6)) });
        break;
      case MP_IOAPIC:
        out.ioapics.push({
          id: e.getUint8(1),
          version: e.getUint8(2),
          flags: e.getUint8(3),
          addr: e.getUint32(4, true),
        });
        break;
      case MP_INTSRC:
        out.intsrc.push({
          type: e.getUint8(1),
          flags: e.getUint16(2, true),
          bus: e.getUint8(4),
          irq: e.getUint8(5),
          apic: e.getUint8(6),
          pin: e.getUint8(7),
        });
        break;
      case MP_LINTSRC:
        out.lintsrc.push({
          type: e.getUint8(1),
          bus: e.getUint8(4),
          irq: e.getUint8(5),
          apic: e.getUint8(6),
          lint: e.getUint8(7),
        });
        break;
      default:
        throw new Error(`unknown MP entry type ${type}`);
    }
    off += 8;
  }
  expect(off).toBe(mpc + len);
  return out;
}

describe('writeMpTable', () => {
  it('describes 4 CPUs, the ISA bus, the IOAPIC and the ISA IRQ wiring', () => {
    const mem = memoryFor(pcMemoryLayout(16 * MiB));
    const info = writeMpTable(mem, 4);
    expect(info.floatingPointer).toBe(MPTABLE_START);
    expect(info.size).toBe(mpTableSize(4));
    const mp = parseMp(mem, 0xf0000, 0x10000);
    expect(mp.oem).toBe('MVISOR  ');
    expect(mp.product.trim()).toBe('MVISOR-PC');
    expect(mp.lapic).toBe(0xfee00000);
    expect(mp.cpus.map((c) => c.apicId)).toEqual([0, 1, 2, 3]);
    expect(mp.cpus.map((c) => c.flags)).toEqual([3, 1, 1, 1]); // enabled, BSP on cpu 0 only
    expect(mp.cpus.every((c) => c.version === 0x14)).toBe(true);
    expect(mp.buses).toEqual([{ id: 0, type: 'ISA   ' }]);
    expect(mp.ioapics).toEqual([{ id: 4, version: 0x11, flags: 1, addr: 0xfec00000 }]);
    // IRQ 0 -> pin 2, IRQ 2 absent, everything else identity.
    expect(mp.intsrc).toHaveLength(15);
    const byIrq = new Map(mp.intsrc.map((e) => [e.irq, e]));
    expect(byIrq.get(0)?.pin).toBe(2);
    expect(byIrq.has(2)).toBe(false);
    for (let irq = 3; irq < 16; irq++) expect(byIrq.get(irq)?.pin).toBe(irq);
    expect(mp.intsrc.every((e) => e.apic === 4 && e.bus === 0 && e.type === 0 && e.flags === 0)).toBe(true);
    expect(mp.lintsrc).toEqual([
      { type: MP_EXTINT, bus: 0, irq: 0, apic: 0, lint: 0 },
      { type: MP_NMI, bus: 0, irq: 0, apic: 0xff, lint: 1 },
    ]);
  });

  it('supports identity IRQ wiring and custom CPU fields', () => {
    const mem = memoryFor(pcMemoryLayout(16 * MiB));
    writeMpTable(mem, 1, MPTABLE_START, {
      irq0Override: false,
      cpuSignature: 0x806f8,
      cpuFeatures: 0x178bfbff,
    });
    const mp = parseMp(mem, 0xf0000, 0x10000);
    expect(mp.intsrc.map((e) => [e.irq, e.pin])).toEqual(Array.from({ length: 16 }, (_, i) => [i, i]));
    expect(mp.cpus).toEqual([
      { apicId: 0, version: 0x14, flags: 3, signature: 0x806f8, features: 0x178bfbff },
    ]);
    expect(mp.ioapics[0]?.id).toBe(1);
  });

  it('handles 254 CPUs and rejects impossible counts', () => {
    const mem = memoryFor(pcMemoryLayout(16 * MiB));
    writeMpTable(mem, 254);
    expect(parseMp(mem, 0xf0000, 0x10000).cpus).toHaveLength(254);
    expect(() => writeMpTable(mem, 0)).toThrow(RangeError);
    expect(() => writeMpTable(mem, 255)).toThrow(RangeError);
  });

  it('fails cleanly when the BIOS area is not RAM', () => {
    const mem = new GuestMemory();
    mem.addRegion(0, new Uint8Array(0xa0000));
    expect(() => writeMpTable(mem, 2)).toThrow(BootError);
  });
});
