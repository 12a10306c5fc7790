/**
 * The e820 memory map: what the guest kernel believes is RAM. It is handed
 * over in boot_params.e820_table (bzImage, 20-byte `struct boot_e820_entry`)
 * or as the PVH memory map (24-byte `struct hvm_memmap_table_entry`,
 * xen/include/public/arch-x86/hvm/start_info.h).
 *
 * Only RAM the kernel may freely use is type 1. The EBDA and the BIOS area
 * holding the MP table are reserved; the VGA/ROM window 0xA0000-0xEFFFF and
 * the PCI hole (including the IOAPIC and LAPIC pages) are simply absent, or
 * reserved when the caller says so.
 */
import { BIOS_AREA_START, EBDA_START, HIMEM_START, LOW_MEMORY_END, type PcMemoryLayout } from './layout.js';

export const E820_RAM = 1;
export const E820_RESERVED = 2;
export const E820_ACPI = 3;
export const E820_NVS = 4;
export type E820Type = typeof E820_RAM | typeof E820_RESERVED | typeof E820_ACPI | typeof E820_NVS;

export interface E820Entry {
  readonly addr: number;
  readonly size: number;
  readonly type: E820Type;
}

/** Bytes per entry in boot_params.e820_table (struct boot_e820_entry, packed). */
export const BOOT_E820_ENTRY_SIZE = 20;
/** Bytes per struct hvm_memmap_table_entry. */
export const HVM_MEMMAP_ENTRY_SIZE = 24;

/**
 * The map for a PC layout: conventional memory below the EBDA, the EBDA,
 * the BIOS area (MP table), RAM from 1 MiB to the end of low RAM and the
 * RAM above 4 GiB, plus `extra` ranges (reserved MMIO such as the IOAPIC or
 * LAPIC page, ACPI tables). Where ranges overlap the higher type wins, as in
 * Linux's e820__update_table(), so a reserved range punches a hole into RAM.
 */
export function buildE820(layout: PcMemoryLayout, extra: readonly E820Entry[] = []): E820Entry[] {
  const low = layout.lowRam;
  if (low.gpa !== 0 || low.size < HIMEM_START) {
    throw new RangeError('the low RAM region must start at 0 and cover the first MiB');
  }
  const entries: E820Entry[] = [
    { addr: 0, size: EBDA_START, type: E820_RAM },
    { addr: EBDA_START, size: LOW_MEMORY_END - EBDA_START, type: E820_RESERVED },
    { addr: BIOS_AREA_START, size: HIMEM_START - BIOS_AREA_START, type: E820_RESERVED },
  ];
  const lowEnd = low.gpa + low.size;
  if (lowEnd > HIMEM_START) entries.push({ addr: HIMEM_START, size: lowEnd - HIMEM_START, type: E820_RAM });
  if (layout.highRam && layout.highRam.size > 0) {
    entries.push({ addr: layout.highRam.gpa, size: layout.highRam.size, type: E820_RAM });
  }
  return normalizeE820([...entries, ...extra]);
}

/**
 * Sorts, resolves overlaps (higher type wins) and merges adjacent ranges of
 * the same type. Zero-sized entries are dropped.
 */
export function normalizeE820(entries: readonly E820Entry[]): E820Entry[] {
  const live = entries.filter((e) => e.size > 0);
  for (const e of live) {
    if (!Number.isSafeInteger(e.addr) || !Number.isSafeInteger(e.size) || e.addr < 0 || e.size < 0) {
      throw new RangeError(`bad e820 range ${e.addr}+${e.size}`);
    }
    if (![E820_RAM, E820_RESERVED, E820_ACPI, E820_NVS].includes(e.type)) {
      throw new RangeError(`bad e820 type ${e.type}`);
    }
  }
  const bounds = [...new Set(live.flatMap((e) => [e.addr, e.addr + e.size]))].sort((a, b) => a - b);
  const out: E820Entry[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const start = bounds[i]!;
    const end = bounds[i + 1]!;
    let type = 0;
    for (const e of live) {
      if (e.addr <= start && end <= e.addr + e.size && e.type > type) type = e.type;
    }
    if (type === 0) continue;
    const prev = out[out.length - 1];
    if (prev && prev.type === type && prev.addr + prev.size === start) {
      out[out.length - 1] = { addr: prev.addr, size: end - prev.addr, type: prev.type };
    } else {
      out.push({ addr: start, size: end - start, type: type as E820Type });
    }
  }
  return out;
}

/** Highest end address of a RAM entry at or below `limit` (e.g. 4 GiB for 32-bit structures). */
export function ramEndBelow(entries: readonly E820Entry[], limit: number): number {
  let end = 0;
  for (const e of entries) {
    if (e.type === E820_RAM && e.addr < limit) end = Math.max(end, Math.min(e.addr + e.size, limit));
  }
  return end;
}

function setU64(dv: DataView, off: number, value: number): void {
  dv.setBigUint64(off, BigInt(value), true);
}

/** `struct boot_e820_entry { u64 addr; u64 size; u32 type; } __packed` (bootparam.h). */
export function serializeBootE820(entries: readonly E820Entry[]): Uint8Array {
  const out = new Uint8Array(entries.length * BOOT_E820_ENTRY_SIZE);
  const dv = new DataView(out.buffer);
  entries.forEach((e, i) => {
    const off = i * BOOT_E820_ENTRY_SIZE;
    setU64(dv, off, e.addr);
    setU64(dv, off + 8, e.size);
    dv.setUint32(off + 16, e.type, true);
  });
  return out;
}

/** `struct hvm_memmap_table_entry { u64 addr; u64 size; u32 type; u32 reserved; }` (start_info.h). */
export function serializeHvmMemmap(entries: readonly E820Entry[]): Uint8Array {
  const out = new Uint8Array(entries.length * HVM_MEMMAP_ENTRY_SIZE);
  const dv = new DataView(out.buffer);
  entries.forEach((e, i) => {
    const off = i * HVM_MEMMAP_ENTRY_SIZE;
    setU64(dv, off, e.addr);
    setU64(dv, off + 8, e.size);
    dv.setUint32(off + 16, e.type, true);
  });
  return out;
}

/** Whether [addr, addr+size) lies inside one RAM entry of a normalized map. */
export function isRam(entries: readonly E820Entry[], addr: number, size: number): boolean {
  return entries.some((e) => e.type === E820_RAM && e.addr <= addr && addr + size <= e.addr + e.size);
}

/**
 * The highest `align`-aligned address at which `size` bytes fit inside one
 * RAM entry, at or above `min` and ending at or below `max`; undefined when
 * there is none. Used to place initrds at the top of low memory, where
 * boot loaders put them (boot.rst, "initrd_addr_max") and where the kernel
 * won't decompress over them.
 */
export function allocateTopDown(
  entries: readonly E820Entry[],
  size: number,
  bounds: { min: number; max: number; align: number },
): number | undefined {
  const ram = entries.filter((e) => e.type === E820_RAM).sort((a, b) => b.addr + b.size - (a.addr + a.size));
  for (const e of ram) {
    const end = Math.min(e.addr + e.size, bounds.max);
    const addr = Math.floor((end - size) / bounds.align) * bounds.align;
    if (addr >= Math.max(e.addr, bounds.min) && addr + size <= end) return addr;
  }
  return undefined;
}
