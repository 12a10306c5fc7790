import { describe, expect, it } from 'vitest';
import { pcMemoryLayout } from '../../../../src/vmm/boot/layout.js';
import {
  BOOT_CS,
  BOOT_DS,
  encodeGdtEntry,
  setupLongModeBoot,
  setupProtectedModeBoot,
  writeIdentityPageTables,
} from '../../../../src/vmm/boot/pagetables.js';
import { MiB, memoryFor, u64 } from './helpers.js';

const GIB = 0x4000_0000;

describe('writeIdentityPageTables', () => {
  it('identity-maps 4 GiB with 2 MiB pages', () => {
    const mem = memoryFor(pcMemoryLayout(16 * MiB));
    const cr3 = writeIdentityPageTables(mem);
    expect(cr3).toBe(0x9000);
    expect(u64(mem, 0x9000)).toBe(0xa000 | 3);
    expect(u64(mem, 0x9008)).toBe(0);
    for (let g = 0; g < 4; g++) expect(u64(mem, 0xa000 + g * 8)).toBe((0xb000 + g * 0x1000) | 3);
    expect(u64(mem, 0xa000 + 4 * 8)).toBe(0);
    expect(u64(mem, 0xb000)).toBe(0x83);
    expect(u64(mem, 0xb008)).toBe(0x200000 | 0x83);
    // Walk the tables for a few addresses.
    const translate = (va: number): number => {
      const pdpte = u64(mem, (u64(mem, cr3) & ~0xfff) + Math.floor(va / GIB) * 8);
      const pde = u64(mem, (pdpte & ~0xfff) + (Math.floor(va / 0x200000) % 512) * 8);
      expect(pde & 0x83).toBe(0x83);
      return pde - 0x83 + (va % 0x200000);
    };
    for (const va of [0, 0x7000, 0x100200, 0x1234567, 3 * GIB + 0x5000, 0xfee00000, 4 * GIB - 1]) {
      expect(translate(va)).toBe(va);
    }
  });
});

describe('boot GDT and CPU state', () => {
  it('encodes the flat descriptors the boot protocol needs', () => {
    const mem = memoryFor(pcMemoryLayout(16 * MiB));
    const st = setupLongModeBoot(mem);
    expect(st.gdt).toEqual({ base: 0x500, limit: 0x2f });
    expect(st.idt).toEqual({ base: 0x540, limit: 0 });
    expect(u64(mem, 0x500)).toBe(0);
    // Descriptor quadwords as the SDM draws them.
    const q = (off: number) => mem.dataView(0x500 + off, 8).getBigUint64(0, true);
    expect(q(0x08)).toBe(0x00cf9b000000ffffn); // 32-bit code
    expect(q(0x10)).toBe(0x00af9b000000ffffn); // __BOOT_CS: L=1
    expect(q(0x18)).toBe(0x00cf93000000ffffn); // __BOOT_DS
    expect(q(0x20)).toBe(0x00008b0000000067n); // busy TSS
    expect(q(0x28)).toBe(0n);
    expect(st.cs).toMatchObject({
      selector: BOOT_CS,
      base: 0,
      limit: 0xffffffff,
      type: 0xb,
      l: 1,
      db: 0,
      g: 1,
      s: 1,
    });
    expect(st.ds).toMatchObject({ selector: BOOT_DS, limit: 0xffffffff, type: 3, db: 1, present: 1 });
    expect(st.tss).toMatchObject({ selector: 0x20, limit: 0x67, type: 0xb, s: 0 });
    expect(st.cr3).toBe(0x9000);
    expect(st.cr0).toBe(0x80000011);
    expect(st.cr4 & 0x20).toBe(0x20);
    expect(st.efer).toBe(0x500);
    // Encoding round-trips from the kvm_segment form.
    expect(encodeGdtEntry(st.cs)).toEqual(mem.read(0x510, 8));
  });

  it('gives PVH a 32-bit flat code segment and paging off', () => {
    const mem = memoryFor(pcMemoryLayout(16 * MiB));
    const st = setupProtectedModeBoot(mem);
    expect(st.cs).toMatchObject({ selector: 0x08, limit: 0xffffffff, db: 1, l: 0, type: 0xb });
    expect(st.cr0).toBe(0x11);
    expect(st.efer).toBe(0);
    expect(st.cr4).toBe(0);
  });
});
