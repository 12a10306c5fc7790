/**
 * Multiboot (version 1, specification 0.6.96) direct boot: the kernels of
 * kvm-unit-tests, hobby and research kernels, Xen and GRUB's own test
 * kernels carry a Multiboot header in their first 8 KiB; a boot loader
 * loads the image at physical addresses, writes a `multiboot_info`
 * structure and enters the kernel in 32-bit protected mode.
 *
 * Loading (spec §3.1.3): when the header sets flag 16 ("address fields
 * valid", the "a.out kludge") its header_addr/load_addr/load_end_addr/
 * bss_end_addr/entry_addr say what to copy where, whatever the file format;
 * otherwise the image must be ELF and its PT_LOAD segments go to their
 * physical addresses (p_paddr). ELF32 (EM_386) is the format the spec
 * means; ELF64 (EM_X86_64) images are accepted too, as GRUB 2 does, if
 * everything lies below 4 GiB (kvm-unit-tests' x86_64 `.elf` files).
 *
 * Memory layout (all addresses physical, nothing above 4 GiB):
 *
 *   0x00500-0x0052F  boot GDT (pagetables.ts writeBootGdt), 0x540 empty IDT
 *   kernel           wherever its segments say, in e820 RAM, not over the
 *                    GDT/IDT and not over each other (kvm-unit-tests'
 *                    realmode.flat lives at 0x8000, most kernels at 1 MiB+)
 *   info block       the lowest free page-aligned address in 0x10000-0x9FFFF
 *                    (GRUB 2 keeps its MBI in 64-640 KiB too, away from
 *                    the kernel), else the lowest free one above 1 MiB:
 *                      +0    struct multiboot_info (116 bytes, zero padded)
 *                      +120  memory map: e820 entries, 24 bytes each
 *                            (u32 size = 20, u64 base, u64 length, u32 type)
 *                      ...   module list: 16 bytes each (start, end, string, 0)
 *                      ...   NUL-terminated strings: kernel command line,
 *                            boot loader name, module command lines
 *   modules          page aligned (header flag 0 or not), one after the
 *                    other from the first page at or above both the
 *                    kernel's end and 1 MiB, in RAM below `lowRamEnd`
 *
 * The boot CPU state (spec §3.2) is what PVH needs as well, so
 * setupProtectedModeBoot() provides it: CR0.PE with paging off, CS a flat
 * 4 GiB 32-bit execute/read segment, DS/ES/FS/GS/SS flat 4 GiB read/write,
 * EFLAGS with IF and VM clear, EAX = 0x2BADB002 and EBX = the info
 * structure. A20 needs nothing: KVM never masks address line 20.
 */
import type { GuestMemory } from '../core/memory.js';
import { type E820Entry, E820_RAM, isRam, ramEndBelow } from './e820.js';
import { isElf } from './elf.js';
import { BootError, hex } from './errors.js';
import type { LoadedRange } from './loader.js';
import {
  BOOT_GDT_START,
  BOOT_IDT_START,
  FOUR_GIB,
  HIMEM_START,
  LOW_MEMORY_END,
  PAGE_SIZE,
  alignUp,
} from './layout.js';
import {
  MB_HEADER_AOUT_KLUDGE,
  MB_HEADER_VIDEO_MODE,
  MULTIBOOT_HEADER_MAGIC,
  MULTIBOOT_SEARCH,
  REQUIRED_FLAGS_MASK,
  SUPPORTED_REQUIRED_FLAGS,
  findMultibootHeader,
  loadAoutKludge,
  loadElf,
  type KernelImage,
  type MultibootFormat,
  type Segment,
} from './multiboot-image.js';
import { type BootCpuState, setupProtectedModeBoot } from './pagetables.js';

export {
  MB_HEADER_AOUT_KLUDGE,
  MB_HEADER_MEMORY_INFO,
  MB_HEADER_PAGE_ALIGN,
  MB_HEADER_VIDEO_MODE,
  MULTIBOOT_HEADER_ALIGN,
  MULTIBOOT_HEADER_MAGIC,
  MULTIBOOT_SEARCH,
  findMultibootHeader,
  isMultiboot,
  type MultibootFormat,
  type MultibootHeader,
} from './multiboot-image.js';

/** Spec §3.2: EAX at the kernel entry, proof that a Multiboot loader started it. */
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
/** multiboot_info.flags bits (spec §3.3): which fields are valid. */
export const MB_INFO_MEMORY = 1 << 0;
export const MB_INFO_CMDLINE = 1 << 2;
export const MB_INFO_MODS = 1 << 3;
export const MB_INFO_MEM_MAP = 1 << 6;
export const MB_INFO_BOOT_LOADER_NAME = 1 << 9;

/** struct multiboot_info up to the framebuffer fields (multiboot.h of 0.6.96). */
export const MULTIBOOT_INFO_SIZE = 116;
/** Byte offsets in struct multiboot_info. */
export const MBI = {
  flags: 0,
  memLower: 4,
  memUpper: 8,
  bootDevice: 12,
  cmdline: 16,
  modsCount: 20,
  modsAddr: 24,
  mmapLength: 44,
  mmapAddr: 48,
  bootLoaderName: 64,
} as const;
/** A memory map entry: u32 size (of the rest, 20), u64 base_addr, u64 length, u32 type. */
export const MULTIBOOT_MMAP_ENTRY_SIZE = 24;
/** struct multiboot_mod_list: mod_start, mod_end (exclusive), cmdline, pad. */
export const MULTIBOOT_MODULE_SIZE = 16;
/** Where the info block may go in conventional memory: clear of page 0, which kernels reuse (kvm-unit-tests puts its AP trampoline there). */
export const MULTIBOOT_INFO_LOW_START = 0x10000;
export const DEFAULT_BOOT_LOADER_NAME = 'mvisor';
/** The boot GDT and IDT that setupProtectedModeBoot() writes; a kernel loaded over them is refused. */
const BOOT_TABLES = { start: BOOT_GDT_START, end: BOOT_IDT_START + 8 };
/** Bytes allowed per string, including its NUL (the Linux loaders' limit too). */
const STRING_MAX = 0x10000;

export interface MultibootModule {
  readonly data: Uint8Array;
  /** The module's string. By convention (GRUB, QEMU) its file name, then its arguments. */
  readonly cmdline: string;
  /** For messages. */
  readonly path?: string;
}

export interface MultibootLoadOptions {
  /**
   * The kernel's arguments. The info structure gets the kernel path, a
   * space, then these, as GRUB and QEMU pass them: kernels take the first
   * word as their own name (kvm-unit-tests' argv[0], Xen skips it).
   */
  readonly cmdline: string;
  readonly modules?: readonly MultibootModule[];
  readonly e820: readonly E820Entry[];
  /** Upper bound for modules and the info block; defaults to the end of RAM below 4 GiB in `e820`. */
  readonly lowRamEnd?: number;
  /** multiboot_info.boot_loader_name; "mvisor" by default. */
  readonly bootLoaderName?: string;
  /**
   * Room for this many memory map entries (at least e820.length): a loader
   * that runs in the guest (the firmware-boot option ROM) rewrites the map
   * with what the BIOS reports.
   */
  readonly mmapCapacity?: number;
  /** Keep the info block in conventional memory (below 640 KiB): real-mode code must reach it. */
  readonly infoInConventionalMemory?: boolean;
}

export interface MultibootBoot {
  /** How the image was loaded: ELF program headers or the header's address fields. */
  readonly format: MultibootFormat;
  /** EIP. */
  readonly entry: number;
  /** EBX: struct multiboot_info. */
  readonly infoAddr: number;
  /** EAX: MULTIBOOT_BOOTLOADER_MAGIC. */
  readonly eax: number;
  /** EFLAGS: only the reserved bit 1; IF and VM clear. */
  readonly rflags: number;
  /** Flat 32-bit protected mode, paging off: CR0/CR3/CR4/EFER, CS, DS (= ES, FS, GS, SS), GDT, IDT, TR. */
  readonly cpu: BootCpuState;
  readonly kernelStart: number;
  readonly kernelEnd: number;
  /** The whole info block (structure, memory map, module list, strings). */
  readonly info: LoadedRange;
  readonly cmdline: LoadedRange;
  readonly modules: readonly LoadedRange[];
  /** Things the user may want to know, e.g. an ignored video mode request. */
  readonly warnings: readonly string[];
}

/** Bytes to put into guest memory at `addr`: `data`, then `zeros` zero bytes. */
export interface MultibootWrite {
  readonly addr: number;
  readonly data: Uint8Array;
  readonly zeros: number;
}

/** What loading a multiboot kernel writes, without writing it (the firmware-boot ROM copies it). */
export interface MultibootPlan extends Omit<MultibootBoot, 'cpu'> {
  /** Kernel segments, modules, then the info block, in that order. */
  readonly writes: readonly MultibootWrite[];
  /** Guest address of the memory map (the first entry's size field) and its capacity in entries. */
  readonly mmap: { readonly addr: number; readonly capacity: number };
}

interface Range {
  readonly start: number;
  readonly end: number;
}

/** Every segment below 4 GiB, in RAM, off the boot GDT/IDT and off the others. */
function checkSegments(
  mem: GuestMemory,
  segments: readonly Segment[],
  e820: readonly E820Entry[],
  path: string,
): Range[] {
  if (segments.length === 0) throw new BootError(`${path}: the kernel has nothing to load`);
  const ranges = segments
    .map((s) => ({ start: s.addr, end: s.addr + s.memsz }))
    .sort((a, b) => a.start - b.start);
  for (const r of ranges) {
    const where = `kernel segment ${hex(r.start)}-${hex(r.end)}`;
    if (r.end > FOUR_GIB) {
      throw new BootError(
        `${path}: ${where} is above 4 GiB; a multiboot kernel starts with 32-bit addressing`,
      );
    }
    if (!isRam(e820, r.start, r.end - r.start) || !mem.tryView(r.start, r.end - r.start)) {
      throw new BootError(`${path}: ${where} is not inside guest RAM`);
    }
    if (overlaps(r, BOOT_TABLES)) {
      throw new BootError(
        `${path}: ${where} overlaps the boot GDT/IDT at ${hex(BOOT_TABLES.start)}-${hex(BOOT_TABLES.end)}`,
      );
    }
  }
  for (let i = 1; i < ranges.length; i++) {
    const a = ranges[i - 1]!;
    const b = ranges[i]!;
    if (b.start < a.end) {
      throw new BootError(
        `${path}: kernel segments ${hex(a.start)}-${hex(a.end)} and ${hex(b.start)}-${hex(b.end)} overlap`,
      );
    }
  }
  return ranges;
}

function overlaps(a: Range, b: Range): boolean {
  return a.start < b.end && b.start < a.end;
}

/**
 * The lowest `align`-aligned address at which `size` bytes fit inside one
 * RAM entry of `e820`, within [min, max), clear of every `busy` range.
 */
function allocateBottomUp(
  e820: readonly E820Entry[],
  size: number,
  bounds: { min: number; max: number; align: number },
  busy: readonly Range[],
): number | undefined {
  const ram = e820.filter((e) => e.type === E820_RAM).sort((a, b) => a.addr - b.addr);
  for (const e of ram) {
    const end = Math.min(e.addr + e.size, bounds.max);
    let addr = alignUp(Math.max(e.addr, bounds.min), bounds.align);
    while (addr + size <= end) {
      const want = { start: addr, end: addr + size };
      const hit = busy.find((r) => overlaps(want, r));
      if (!hit) return addr;
      addr = alignUp(hit.end, bounds.align);
    }
  }
  return undefined;
}

function cString(s: string, what: string): Uint8Array {
  const bytes = new TextEncoder().encode(s);
  if (bytes.includes(0)) throw new BootError(`${what} contains a NUL byte`);
  if (bytes.length + 1 > STRING_MAX) {
    throw new BootError(`${what} is ${bytes.length} bytes, at most ${STRING_MAX - 1} fit`);
  }
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** The end of the RAM that runs without a hole from `from`, at most `cap`. */
function contiguousRamEnd(e820: readonly E820Entry[], from: number, cap: number): number {
  const ram = e820.filter((e) => e.type === E820_RAM).sort((a, b) => a.addr - b.addr);
  let end = from;
  for (const e of ram) {
    if (e.addr <= end && end < e.addr + e.size) end = e.addr + e.size;
  }
  return Math.min(Math.max(end, from), cap);
}

/**
 * mem_lower: KiB of RAM from 0 (at most 640); mem_upper: KiB of RAM from
 * 1 MiB up to the first hole (spec §3.3).
 */
function memLowerUpper(e820: readonly E820Entry[]): { lower: number; upper: number } {
  const lowEnd = contiguousRamEnd(e820, 0, LOW_MEMORY_END);
  const highEnd = contiguousRamEnd(e820, HIMEM_START, FOUR_GIB);
  return { lower: Math.floor(lowEnd / 1024), upper: Math.floor((highEnd - HIMEM_START) / 1024) };
}

/**
 * Loads a Multiboot kernel and its modules, writes the info block and the
 * boot GDT. Every check runs before the first byte is written.
 */
/** Loads a multiboot kernel into guest memory and sets up the 32-bit boot CPU state (direct boot). */
export function loadMultibootKernel(
  mem: GuestMemory,
  image: Uint8Array,
  path: string,
  opts: MultibootLoadOptions,
): MultibootBoot {
  const { writes, mmap: _mmap, ...plan } = planMultibootKernel(mem, image, path, opts);
  void _mmap;
  for (const w of writes) {
    mem.write(w.addr, w.data);
    mem.fill(w.addr + w.data.length, w.zeros, 0);
  }
  return { ...plan, cpu: setupProtectedModeBoot(mem) };
}

/**
 * Where a multiboot kernel, its modules and the info block go, and what
 * they hold; `mem` is only asked whether ranges exist.
 */
export function planMultibootKernel(
  mem: GuestMemory,
  image: Uint8Array,
  path: string,
  opts: MultibootLoadOptions,
): MultibootPlan {
  const hdr = findMultibootHeader(image);
  if (!hdr) {
    throw new BootError(
      `${path}: no multiboot header (magic ${hex(MULTIBOOT_HEADER_MAGIC)} with a valid checksum, 4-byte aligned, in the first ${MULTIBOOT_SEARCH} bytes)`,
    );
  }
  const unsupported = hdr.flags & REQUIRED_FLAGS_MASK & ~SUPPORTED_REQUIRED_FLAGS;
  if (unsupported !== 0) {
    const bits = [...Array(16).keys()].filter((b) => unsupported & (1 << b));
    const what = bits.length > 1 ? `features mvisor lacks (flag bits` : `a feature mvisor lacks (flag bit`;
    throw new BootError(
      `${path}: the multiboot header requires ${what} ${bits.join(', ')} in ${hex(hdr.flags)})`,
    );
  }
  const warnings: string[] = [];
  if (hdr.flags & MB_HEADER_VIDEO_MODE) {
    warnings.push(`${path}: the kernel asks for a video mode (multiboot flag 2); it starts with none set`);
  }

  let kernel: KernelImage;
  if (hdr.flags & MB_HEADER_AOUT_KLUDGE) {
    kernel = loadAoutKludge(image, hdr, path);
  } else if (isElf(image)) {
    kernel = loadElf(image, path);
  } else {
    throw new BootError(
      `${path}: multiboot kernel is not ELF and its header lacks the address fields (flag 16) that say where to load it`,
    );
  }
  const kernelRanges = checkSegments(mem, kernel.segments, opts.e820, path);
  const kernelStart = kernelRanges[0]!.start;
  const kernelEnd = Math.max(...kernelRanges.map((r) => r.end));

  const limit = Math.min(opts.lowRamEnd ?? ramEndBelow(opts.e820, FOUR_GIB), FOUR_GIB);
  const busy: Range[] = [BOOT_TABLES, ...kernelRanges];
  const modules: LoadedRange[] = [];
  const moduleFloor = alignUp(Math.max(kernelEnd, HIMEM_START), PAGE_SIZE);
  let cursor = moduleFloor;
  for (const [i, m] of (opts.modules ?? []).entries()) {
    const size = m.data.length;
    const addr = allocateBottomUp(opts.e820, size, { min: cursor, max: limit, align: PAGE_SIZE }, busy);
    if (addr === undefined) {
      throw new BootError(
        `${m.path ?? `${path}: module ${i}`}: module of ${size} bytes does not fit in guest RAM between ${hex(cursor)} and ${hex(limit)}`,
      );
    }
    modules.push({ addr, size });
    busy.push({ start: addr, end: addr + size });
    cursor = alignUp(addr + size, PAGE_SIZE);
  }

  // The info block: structure, memory map, module list, then strings.
  const cmdline = cString(
    opts.cmdline ? `${path} ${opts.cmdline}` : path,
    `${path}: the kernel command line`,
  );
  const loaderName = cString(
    opts.bootLoaderName ?? DEFAULT_BOOT_LOADER_NAME,
    `${path}: the boot loader name`,
  );
  const modStrings = (opts.modules ?? []).map((m, i) =>
    cString(m.cmdline, `${m.path ?? `${path}: module ${i}`}: the module command line`),
  );
  const mmapOff = alignUp(MULTIBOOT_INFO_SIZE, 8);
  const mmapCapacity = Math.max(opts.e820.length, opts.mmapCapacity ?? 0);
  const modsOff = mmapOff + mmapCapacity * MULTIBOOT_MMAP_ENTRY_SIZE;
  const cmdlineOff = modsOff + modules.length * MULTIBOOT_MODULE_SIZE;
  const loaderOff = cmdlineOff + cmdline.length;
  let stringsEnd = loaderOff + loaderName.length;
  const modStringOffs = modStrings.map((s) => {
    const off = stringsEnd;
    stringsEnd += s.length;
    return off;
  });
  const blockSize = stringsEnd;
  const lowInfo = allocateBottomUp(
    opts.e820,
    blockSize,
    { min: MULTIBOOT_INFO_LOW_START, max: LOW_MEMORY_END, align: PAGE_SIZE },
    busy,
  );
  const infoAddr =
    lowInfo ??
    (opts.infoInConventionalMemory
      ? undefined
      : allocateBottomUp(opts.e820, blockSize, { min: HIMEM_START, max: limit, align: PAGE_SIZE }, busy));
  if (infoAddr === undefined || !mem.tryView(infoAddr, blockSize)) {
    const where = opts.infoInConventionalMemory ? ' below 640 KiB' : '';
    throw new BootError(
      `${path}: no room in guest RAM${where} for the ${blockSize}-byte multiboot information (structure, memory map, module list, command lines)`,
    );
  }
  for (const m of modules) {
    if (!mem.tryView(m.addr, m.size)) {
      throw new BootError(`${path}: module at ${hex(m.addr)}+${hex(m.size)} is not inside guest memory`);
    }
  }

  const block = new Uint8Array(blockSize);
  const dv = new DataView(block.buffer);
  const { lower, upper } = memLowerUpper(opts.e820);
  dv.setUint32(
    MBI.flags,
    MB_INFO_MEMORY | MB_INFO_CMDLINE | MB_INFO_MODS | MB_INFO_MEM_MAP | MB_INFO_BOOT_LOADER_NAME,
    true,
  );
  dv.setUint32(MBI.memLower, lower, true);
  dv.setUint32(MBI.memUpper, upper, true);
  dv.setUint32(MBI.cmdline, infoAddr + cmdlineOff, true);
  dv.setUint32(MBI.modsCount, modules.length, true);
  dv.setUint32(MBI.modsAddr, modules.length > 0 ? infoAddr + modsOff : 0, true);
  dv.setUint32(MBI.mmapLength, opts.e820.length * MULTIBOOT_MMAP_ENTRY_SIZE, true);
  // mmap_addr points at the first entry's size field (spec §3.3, "base_addr - 4").
  dv.setUint32(MBI.mmapAddr, infoAddr + mmapOff, true);
  dv.setUint32(MBI.bootLoaderName, infoAddr + loaderOff, true);
  opts.e820.forEach((e, i) => {
    const off = mmapOff + i * MULTIBOOT_MMAP_ENTRY_SIZE;
    dv.setUint32(off, MULTIBOOT_MMAP_ENTRY_SIZE - 4, true);
    dv.setBigUint64(off + 4, BigInt(e.addr), true);
    dv.setBigUint64(off + 12, BigInt(e.size), true);
    // e820 types 1-4 mean what multiboot types 1-4 mean (available, reserved, ACPI, NVS).
    dv.setUint32(off + 20, e.type, true);
  });
  modules.forEach((m, i) => {
    const off = modsOff + i * MULTIBOOT_MODULE_SIZE;
    dv.setUint32(off, m.addr, true);
    dv.setUint32(off + 4, m.addr + m.size, true);
    dv.setUint32(off + 8, infoAddr + modStringOffs[i]!, true);
  });
  block.set(cmdline, cmdlineOff);
  block.set(loaderName, loaderOff);
  modStrings.forEach((s, i) => block.set(s, modStringOffs[i]!));

  const writes: MultibootWrite[] = [
    ...kernel.segments.map((seg) => ({ addr: seg.addr, data: seg.data, zeros: seg.memsz - seg.data.length })),
    ...(opts.modules ?? []).map((m, i) => ({ addr: modules[i]!.addr, data: m.data, zeros: 0 })),
    { addr: infoAddr, data: block, zeros: 0 },
  ];

  return {
    format: kernel.format,
    entry: kernel.entry,
    infoAddr,
    eax: MULTIBOOT_BOOTLOADER_MAGIC,
    rflags: 0x2,
    kernelStart,
    kernelEnd,
    info: { addr: infoAddr, size: blockSize },
    cmdline: { addr: infoAddr + cmdlineOff, size: cmdline.length },
    modules,
    warnings,
    writes,
    mmap: { addr: infoAddr + mmapOff, capacity: mmapCapacity },
  };
}
