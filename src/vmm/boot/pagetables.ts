/**
 * The CPU state the direct kernel entries expect, built in guest memory:
 *
 * - 64-bit bzImage entry (boot.rst, "64-bit Boot Protocol"): long mode with
 *   paging on, an identity map covering the kernel, boot_params and the
 *   command line, a GDT with flat __BOOT_CS (0x10, execute/read) and
 *   __BOOT_DS (0x18, read/write), CS = __BOOT_CS, DS/ES/SS = __BOOT_DS.
 *   We identity-map the whole first 4 GiB with 2 MiB pages (PML4 -> PDPT ->
 *   4 page directories), enough for any kernel placed in low RAM.
 * - PVH entry (xen docs/misc/pvh.pandoc): 32-bit protected mode, paging
 *   off, CS a flat 32-bit read/execute segment, DS/ES/SS flat read/write.
 *
 * Descriptor values are returned in the shape of KVM's `struct kvm_segment`
 * (limit in bytes, i.e. already scaled by the granularity bit) so the
 * machine code can set vCPU registers without decoding the GDT.
 */
import type { GuestMemory } from '../core/memory.js';
import { BOOT_GDT_START, BOOT_IDT_START, PD_START, PDPT_START, PML4_START, PAGE_SIZE } from './layout.js';

/** Page table entry bits (Intel SDM vol. 3, §4.5). */
export const PTE_PRESENT = 0x1;
export const PTE_WRITABLE = 0x2;
/** PS: in a page directory entry, maps a 2 MiB page. */
export const PTE_LARGE_PAGE = 0x80;
export const IDENTITY_MAP_GIB = 4;
const TWO_MIB = 0x20_0000;
const TWO_32 = 0x1_0000_0000;

/** Control register bits (SDM vol. 3, §2.5). */
export const CR0_PE = 0x1;
export const CR0_ET = 0x10;
export const CR0_PG = 0x8000_0000;
export const CR4_PAE = 0x20;
export const EFER_LME = 0x100;
export const EFER_LMA = 0x400;

/** GDT selectors. The 64-bit boot protocol fixes 0x10 and 0x18 (__BOOT_CS, __BOOT_DS). */
export const SEL_CODE32 = 0x08;
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;
export const SEL_TSS = 0x20;

/** Mirrors `struct kvm_segment` (linux/kvm.h). */
export interface SegmentDescriptor {
  readonly base: number;
  /** Effective limit in bytes (0xFFFFFFFF for a flat 4 GiB segment). */
  readonly limit: number;
  readonly selector: number;
  readonly type: number;
  readonly present: number;
  readonly dpl: number;
  readonly db: number;
  readonly s: number;
  readonly l: number;
  readonly g: number;
  readonly avl: number;
  readonly unusable: number;
}

export interface DescriptorTable {
  readonly base: number;
  /** Size in bytes minus one, as in GDTR/IDTR. */
  readonly limit: number;
}

export interface BootGdt {
  readonly gdt: DescriptorTable;
  /** An empty IDT (limit 0): nothing may interrupt before the kernel installs its own. */
  readonly idt: DescriptorTable;
  readonly code32: SegmentDescriptor;
  readonly code64: SegmentDescriptor;
  readonly data: SegmentDescriptor;
  /** VMX requires a usable TR even though nothing uses the TSS. */
  readonly tss: SegmentDescriptor;
}

/** Everything the vCPU needs besides RIP and the boot-protocol argument register. */
export interface BootCpuState extends BootGdt {
  readonly cr0: number;
  readonly cr3: number;
  readonly cr4: number;
  readonly efer: number;
  /** CS for the entry. */
  readonly cs: SegmentDescriptor;
  /** DS, ES, FS, GS, SS. */
  readonly ds: SegmentDescriptor;
}

function segment(
  selector: number,
  base: number,
  rawLimit: number,
  access: { type: number; s: number; dpl?: number },
  flags: { g: number; db: number; l: number },
): SegmentDescriptor {
  return {
    base,
    limit: flags.g ? rawLimit * PAGE_SIZE + 0xfff : rawLimit,
    selector,
    type: access.type,
    present: 1,
    dpl: access.dpl ?? 0,
    db: flags.db,
    s: access.s,
    l: flags.l,
    g: flags.g,
    avl: 0,
    unusable: 0,
  };
}

// Code segments are execute/read and data segments read/write, both with the
// accessed bit set (type 0xB / 0x3): VMX entry insists on accessed segments,
// and the CPU then never writes to the GDT. 0xB for a system descriptor is a
// busy 32/64-bit TSS.
const CODE_TYPE = 0xb;
const DATA_TYPE = 0x3;
const TSS_TYPE = 0xb;
/** Minimal 32-bit TSS size minus one. */
const TSS_LIMIT = 0x67;

export const CODE32_SEGMENT = segment(
  SEL_CODE32,
  0,
  0xfffff,
  { type: CODE_TYPE, s: 1 },
  { g: 1, db: 1, l: 0 },
);
export const CODE64_SEGMENT = segment(BOOT_CS, 0, 0xfffff, { type: CODE_TYPE, s: 1 }, { g: 1, db: 0, l: 1 });
export const DATA_SEGMENT = segment(BOOT_DS, 0, 0xfffff, { type: DATA_TYPE, s: 1 }, { g: 1, db: 1, l: 0 });
export const TSS_SEGMENT = segment(SEL_TSS, 0, TSS_LIMIT, { type: TSS_TYPE, s: 0 }, { g: 0, db: 0, l: 0 });

/**
 * The 8-byte GDT encoding of a descriptor (SDM vol. 3, §3.4.5): limit
 * 15:0, base 23:0, access byte (type, S, DPL, P), flags (AVL, L, D/B, G)
 * with limit 19:16, base 31:24.
 */
export function encodeGdtEntry(d: SegmentDescriptor): Uint8Array {
  const raw = d.g ? Math.floor(d.limit / PAGE_SIZE) : d.limit;
  const e = new Uint8Array(8);
  e[0] = raw & 0xff;
  e[1] = (raw >>> 8) & 0xff;
  e[2] = d.base & 0xff;
  e[3] = (d.base >>> 8) & 0xff;
  e[4] = (d.base >>> 16) & 0xff;
  e[5] = (d.type & 0xf) | (d.s << 4) | ((d.dpl & 3) << 5) | (d.present << 7);
  e[6] = ((raw >>> 16) & 0xf) | (d.avl << 4) | (d.l << 5) | (d.db << 6) | (d.g << 7);
  e[7] = (d.base >>> 24) & 0xff;
  return e;
}

/**
 * Writes the boot GDT at `addr`: null, 32-bit code (0x08), __BOOT_CS 64-bit
 * code (0x10), __BOOT_DS data (0x18) and a TSS (0x20, 16 bytes: in long
 * mode system descriptors are twice as wide, the upper half being base
 * 63:32 = 0). Also zeroes the 8-byte IDT slot.
 */
export function writeBootGdt(mem: GuestMemory, addr: number = BOOT_GDT_START): BootGdt {
  const gdt = new Uint8Array(SEL_TSS + 16);
  gdt.set(encodeGdtEntry(CODE32_SEGMENT), SEL_CODE32);
  gdt.set(encodeGdtEntry(CODE64_SEGMENT), BOOT_CS);
  gdt.set(encodeGdtEntry(DATA_SEGMENT), BOOT_DS);
  gdt.set(encodeGdtEntry(TSS_SEGMENT), SEL_TSS);
  mem.write(addr, gdt);
  mem.fill(BOOT_IDT_START, 8, 0);
  return {
    gdt: { base: addr, limit: gdt.length - 1 },
    idt: { base: BOOT_IDT_START, limit: 0 },
    code32: CODE32_SEGMENT,
    code64: CODE64_SEGMENT,
    data: DATA_SEGMENT,
    tss: TSS_SEGMENT,
  };
}

function writeEntry(dv: DataView, off: number, addr: number, flags: number): void {
  // Entries are u64; physical addresses above 4 GiB don't survive JS bitwise ops, so write two halves.
  dv.setUint32(off, ((addr % TWO_32) + flags) >>> 0, true);
  dv.setUint32(off + 4, Math.floor(addr / TWO_32), true);
}

/**
 * Identity-maps [0, 4 GiB) with 2 MiB pages: PML4[0] -> PDPT, PDPT[0..3] ->
 * one page directory per GiB, each with 512 large-page entries. Returns
 * CR3 (the PML4 address).
 */
export function writeIdentityPageTables(mem: GuestMemory): number {
  const pml4 = new Uint8Array(PAGE_SIZE);
  writeEntry(new DataView(pml4.buffer), 0, PDPT_START, PTE_PRESENT | PTE_WRITABLE);
  const pdpt = new Uint8Array(PAGE_SIZE);
  const pdptView = new DataView(pdpt.buffer);
  const pds = new Uint8Array(IDENTITY_MAP_GIB * PAGE_SIZE);
  const pdView = new DataView(pds.buffer);
  for (let gib = 0; gib < IDENTITY_MAP_GIB; gib++) {
    writeEntry(pdptView, gib * 8, PD_START + gib * PAGE_SIZE, PTE_PRESENT | PTE_WRITABLE);
    for (let i = 0; i < 512; i++) {
      const page = gib * 512 + i;
      writeEntry(pdView, page * 8, page * TWO_MIB, PTE_PRESENT | PTE_WRITABLE | PTE_LARGE_PAGE);
    }
  }
  mem.write(PML4_START, pml4);
  mem.write(PDPT_START, pdpt);
  mem.write(PD_START, pds);
  return PML4_START;
}

/**
 * GDT, page tables and control registers for the 64-bit bzImage entry:
 * CR0.PE|PG, CR4.PAE, EFER.LME|LMA, CS = __BOOT_CS, data = __BOOT_DS. The
 * caller sets RIP = entry64, RSI = boot_params, RFLAGS = 0x2.
 */
export function setupLongModeBoot(mem: GuestMemory): BootCpuState {
  const gdt = writeBootGdt(mem);
  const cr3 = writeIdentityPageTables(mem);
  return {
    ...gdt,
    // >>> 0: CR0.PG is bit 31, and JS bitwise results are signed.
    cr0: (CR0_PE | CR0_ET | CR0_PG) >>> 0,
    cr3,
    cr4: CR4_PAE,
    efer: EFER_LME | EFER_LMA,
    cs: gdt.code64,
    ds: gdt.data,
  };
}

/**
 * GDT and control registers for the PVH entry: protected mode, paging off,
 * flat 32-bit CS. The caller sets EIP = entry32, EBX = start_info, RFLAGS = 0x2.
 */
export function setupProtectedModeBoot(mem: GuestMemory): BootCpuState {
  const gdt = writeBootGdt(mem);
  return { ...gdt, cr0: CR0_PE | CR0_ET, cr3: 0, cr4: 0, efer: 0, cs: gdt.code32, ds: gdt.data };
}
