/**
 * The PC guest-physical memory layout used for direct kernel boot.
 *
 * Below 1 MiB the boot structures sit where Firecracker and Cloud Hypervisor
 * put them (arch/x86_64/layout.rs): low enough to be identity mapped by any
 * page table, clear of the real-mode IVT/BDA (0-0x4FF) the kernel may still
 * look at, of the EBDA (0x9FC00) and of the legacy VGA/ROM hole
 * (0xA0000-0xFFFFF), except for the MP table which the MP spec 1.4 §4 wants
 * in the BIOS area 0xF0000-0xFFFFF.
 *
 *   0x00500  GDT (6 descriptors)          0x00540  IDT (empty, limit 0)
 *   0x05000  PVH memory map (hvm_memmap_table_entry[])
 *   0x06000  PVH hvm_start_info           0x06040  PVH module list
 *   0x07000  boot_params ("zero page")    0x08ff0  boot stack pointer
 *   0x09000  PML4   0x0A000 PDPT   0x0B000-0x0EFFF  4 page directories
 *   0x20000  kernel command line (up to 64 KiB)
 *   0x9FC00  EBDA (reserved)              0xF0000  MP table (reserved)
 *   0x100000 kernel (bzImage protected-mode part or vmlinux segments)
 *
 * RAM above what fits below the 32-bit PCI hole is placed from 4 GiB up,
 * as QEMU's pc machine does when the guest has more than 3 GiB.
 */

export const BOOT_GDT_START = 0x500;
/** Room for the GDT: 6 x 8 bytes (the TSS descriptor takes two slots). */
export const BOOT_GDT_MAX_SIZE = 0x40;
export const BOOT_IDT_START = 0x540;
export const PVH_MEMMAP_START = 0x5000;
export const PVH_MEMMAP_MAX_ENTRIES = 0x1000 / 24;
export const PVH_INFO_START = 0x6000;
export const PVH_MODLIST_START = 0x6040;
/** boot_params, one 4 KiB page (arch/x86/include/uapi/asm/bootparam.h). */
export const ZERO_PAGE_START = 0x7000;
export const ZERO_PAGE_SIZE = 0x1000;
/** Initial RSP; the 64-bit boot protocol doesn't need one but a sane value costs nothing. */
export const BOOT_STACK_POINTER = 0x8ff0;
export const PML4_START = 0x9000;
export const PDPT_START = 0xa000;
/** Four page directories, one per GiB of the identity map. */
export const PD_START = 0xb000;
export const CMDLINE_START = 0x20000;
/** Bytes reserved for the command line, including its terminating NUL. */
export const CMDLINE_MAX_SIZE = 0x10000;
/** Extended BIOS Data Area: the last KiB of conventional memory. */
export const EBDA_START = 0x9fc00;
/** End of conventional memory; 0xA0000-0xFFFFF is the VGA window and ROM area. */
export const LOW_MEMORY_END = 0xa0000;
/** BIOS area that holds the MP table (MP spec 1.4 §4: 0xF0000-0xFFFFF is searched). */
export const BIOS_AREA_START = 0xf0000;
export const MPTABLE_START = 0xf0000;
/** First byte above the legacy 1 MiB; where kernels are loaded. */
export const HIMEM_START = 0x100000;

/** Where the 32-bit PCI hole starts by default (QEMU pc machine with > 3 GiB of RAM). */
export const DEFAULT_PCI_HOLE_START = 0xc000_0000;
export const FOUR_GIB = 0x1_0000_0000;
export const IOAPIC_START = 0xfec0_0000;
export const LAPIC_START = 0xfee0_0000;

export const PAGE_SIZE = 0x1000;

export interface RamRange {
  readonly gpa: number;
  readonly size: number;
}

export interface PcMemoryLayout {
  /** RAM from 0 up to the PCI hole (or all of it). */
  readonly lowRam: RamRange;
  /** RAM that didn't fit below the hole, from 4 GiB up. */
  readonly highRam?: RamRange;
}

/**
 * Splits `totalBytes` of guest RAM around the 32-bit PCI hole. `holeStart`
 * must be page aligned, at least 1 MiB and at most the IOAPIC page, since
 * the IOAPIC/LAPIC pages (and PCI BARs) must never be RAM.
 */
export function pcMemoryLayout(totalBytes: number, opts: { holeStart?: number } = {}): PcMemoryLayout {
  const holeStart = opts.holeStart ?? DEFAULT_PCI_HOLE_START;
  if (!Number.isSafeInteger(holeStart) || holeStart % PAGE_SIZE !== 0) {
    throw new RangeError(`PCI hole start ${holeStart} is not a page-aligned address`);
  }
  if (holeStart < HIMEM_START || holeStart > IOAPIC_START) {
    throw new RangeError(
      `PCI hole start 0x${holeStart.toString(16)} is outside [0x${HIMEM_START.toString(16)}, 0x${IOAPIC_START.toString(16)}]`,
    );
  }
  if (!Number.isSafeInteger(totalBytes) || totalBytes % PAGE_SIZE !== 0) {
    throw new RangeError(`guest RAM size ${totalBytes} is not a multiple of the 4 KiB page size`);
  }
  if (totalBytes < HIMEM_START) {
    throw new RangeError(`guest RAM size ${totalBytes} is below the 1 MiB minimum`);
  }
  const lowSize = Math.min(totalBytes, holeStart);
  const lowRam: RamRange = { gpa: 0, size: lowSize };
  if (totalBytes === lowSize) return { lowRam };
  return { lowRam, highRam: { gpa: FOUR_GIB, size: totalBytes - lowSize } };
}

export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

export function alignDown(n: number, align: number): number {
  return Math.floor(n / align) * align;
}
