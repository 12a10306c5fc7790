import { describe, expect, it } from 'vitest';
import {
  E820_ACPI,
  E820_RAM,
  E820_RESERVED,
  allocateTopDown,
  buildE820,
  normalizeE820,
  ramEndBelow,
  serializeBootE820,
  serializeHvmMemmap,
} from '../../../../src/vmm/boot/e820.js';
import { IOAPIC_START, LAPIC_START, pcMemoryLayout } from '../../../../src/vmm/boot/layout.js';
import { GiB, MiB } from './helpers.js';

describe('pcMemoryLayout', () => {
  it('keeps small guests below the hole', () => {
    expect(pcMemoryLayout(128 * MiB)).toEqual({ lowRam: { gpa: 0, size: 128 * MiB } });
  });

  it('puts RAM beyond 3 GiB above 4 GiB', () => {
    expect(pcMemoryLayout(6 * GiB)).toEqual({
      lowRam: { gpa: 0, size: 3 * GiB },
      highRam: { gpa: 4 * GiB, size: 3 * GiB },
    });
  });

  it('honours a custom hole start and rejects bad ones', () => {
    expect(pcMemoryLayout(4 * GiB, { holeStart: 0xe000_0000 }).highRam).toEqual({
      gpa: 4 * GiB,
      size: 4 * GiB - 0xe000_0000,
    });
    expect(() => pcMemoryLayout(4 * GiB, { holeStart: 0xff00_0000 })).toThrow(RangeError);
    expect(() => pcMemoryLayout(4 * GiB, { holeStart: 0x1234 })).toThrow(RangeError);
    expect(() => pcMemoryLayout(512 * 1024)).toThrow(RangeError);
    expect(() => pcMemoryLayout(128 * MiB + 1)).toThrow(RangeError);
  });
});

describe('buildE820', () => {
  it('maps 128 MiB', () => {
    expect(buildE820(pcMemoryLayout(128 * MiB))).toEqual([
      { addr: 0, size: 0x9fc00, type: E820_RAM },
      { addr: 0x9fc00, size: 0x400, type: E820_RESERVED },
      { addr: 0xf0000, size: 0x10000, type: E820_RESERVED },
      { addr: 0x100000, size: 127 * MiB, type: E820_RAM },
    ]);
  });

  it('maps 6 GiB around the PCI hole, with the IOAPIC and LAPIC pages reserved', () => {
    const e820 = buildE820(pcMemoryLayout(6 * GiB), [
      { addr: LAPIC_START, size: 0x1000, type: E820_RESERVED },
      { addr: IOAPIC_START, size: 0x1000, type: E820_RESERVED },
    ]);
    expect(e820).toEqual([
      { addr: 0, size: 0x9fc00, type: E820_RAM },
      { addr: 0x9fc00, size: 0x400, type: E820_RESERVED },
      { addr: 0xf0000, size: 0x10000, type: E820_RESERVED },
      { addr: 0x100000, size: 3 * GiB - MiB, type: E820_RAM },
      { addr: IOAPIC_START, size: 0x1000, type: E820_RESERVED },
      { addr: LAPIC_START, size: 0x1000, type: E820_RESERVED },
      { addr: 4 * GiB, size: 3 * GiB, type: E820_RAM },
    ]);
    // Nothing in the hole is RAM.
    for (const e of e820.filter((x) => x.type === E820_RAM)) {
      expect(e.addr + e.size <= 3 * GiB || e.addr >= 4 * GiB).toBe(true);
    }
    expect(ramEndBelow(e820, 4 * GiB)).toBe(3 * GiB);
  });
});

describe('normalizeE820', () => {
  it('sorts, lets the higher type win overlaps and merges neighbours', () => {
    expect(
      normalizeE820([
        { addr: 0x20000, size: 0x10000, type: E820_RAM },
        { addr: 0, size: 0x20000, type: E820_RAM },
        { addr: 0x8000, size: 0x1000, type: E820_RESERVED },
        { addr: 0x30000, size: 0, type: E820_ACPI },
      ]),
    ).toEqual([
      { addr: 0, size: 0x8000, type: E820_RAM },
      { addr: 0x8000, size: 0x1000, type: E820_RESERVED },
      { addr: 0x9000, size: 0x27000, type: E820_RAM },
    ]);
  });
});

describe('e820 serialisation', () => {
  const entries = [
    { addr: 0x100000, size: 0x7f00000, type: E820_RAM },
    { addr: 4 * GiB, size: 3 * GiB, type: E820_RAM },
  ] as const;

  it('writes 20-byte boot_e820_entry records', () => {
    const b = serializeBootE820(entries);
    const dv = new DataView(b.buffer);
    expect(b.length).toBe(40);
    expect(dv.getBigUint64(20, true)).toBe(0x1_0000_0000n);
    expect(dv.getBigUint64(28, true)).toBe(0xc000_0000n);
    expect(dv.getUint32(36, true)).toBe(E820_RAM);
  });

  it('writes 24-byte hvm_memmap_table_entry records', () => {
    const b = serializeHvmMemmap(entries);
    const dv = new DataView(b.buffer);
    expect(b.length).toBe(48);
    expect(dv.getBigUint64(24, true)).toBe(0x1_0000_0000n);
    expect(dv.getBigUint64(32, true)).toBe(0xc000_0000n);
    expect(dv.getUint32(40, true)).toBe(E820_RAM);
    expect(dv.getUint32(44, true)).toBe(0);
  });
});

describe('allocateTopDown', () => {
  it('takes the top of RAM and steps around reserved ranges', () => {
    const e820 = buildE820(pcMemoryLayout(128 * MiB), [
      { addr: 128 * MiB - 0x10000, size: 0x10000, type: E820_ACPI },
    ]);
    expect(allocateTopDown(e820, 0x1800, { min: 0, max: 128 * MiB, align: 0x1000 })).toBe(
      128 * MiB - 0x12000,
    );
    expect(allocateTopDown(e820, 0x1000, { min: 0, max: 64 * MiB, align: 0x1000 })).toBe(64 * MiB - 0x1000);
    expect(allocateTopDown(e820, 200 * MiB, { min: 0, max: 128 * MiB, align: 0x1000 })).toBeUndefined();
  });
});
