/**
 * PVH direct boot of an uncompressed vmlinux (Xen's x86/HVM direct boot ABI,
 * docs/misc/pvh.pandoc, which Linux implements with CONFIG_PVH): the kernel
 * advertises a 32-bit entry point in an ELF note (owner "Xen", type
 * XEN_ELFNOTE_PHYS32_ENTRY), the VMM loads its segments at their physical
 * addresses and starts the vCPU there in 32-bit protected mode, paging off,
 * with EBX pointing at a struct hvm_start_info
 * (xen/include/public/arch-x86/hvm/start_info.h) that describes the
 * command line, modules (the initrd) and the memory map.
 */
import type { GuestMemory } from '../core/memory.js';
import { type E820Entry, ramEndBelow, serializeHvmMemmap } from './e820.js';
import { elfNotes, loadElfSegments, parseElf64, type ElfImage } from './elf.js';
import { BootError, hex } from './errors.js';
import { type InitrdImage, type LoadedRange, encodeCmdline, placeInitrd } from './loader.js';
import {
  CMDLINE_START,
  FOUR_GIB,
  PVH_INFO_START,
  PVH_MEMMAP_MAX_ENTRIES,
  PVH_MEMMAP_START,
  PVH_MODLIST_START,
} from './layout.js';

/** xen/include/public/elfnote.h */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
export const XEN_NOTE_OWNER = 'Xen';
/** "xEn3" with the top bit of the last byte set (start_info.h). */
export const HVM_START_MAGIC = 0x336ec578;
/** Version 1 added memmap_paddr / memmap_entries. */
export const HVM_START_INFO_VERSION = 1;
export const HVM_START_INFO_SIZE = 56;
export const HVM_MODLIST_ENTRY_SIZE = 32;
/** x86 COMMAND_LINE_SIZE is 2048 including the NUL; a longer line would be cut silently. */
export const PVH_CMDLINE_MAX = 2047;

export interface PvhLoadOptions {
  readonly cmdline: string;
  readonly initrd?: InitrdImage;
  readonly e820: readonly E820Entry[];
  /** Upper bound for the initrd; defaults to the end of RAM below 4 GiB in `e820`. */
  readonly lowRamEnd?: number;
  readonly acpiRsdp?: number;
}

export interface PvhBoot {
  /** EIP, in 32-bit protected mode with paging off. */
  readonly entry32: number;
  /** EBX: struct hvm_start_info. */
  readonly startInfo: number;
  readonly kernelStart: number;
  readonly kernelEnd: number;
  readonly cmdline: LoadedRange;
  readonly initrd?: LoadedRange;
}

/** The PVH entry point from the XEN_ELFNOTE_PHYS32_ENTRY note. */
export function findPvhEntry(bytes: Uint8Array, elf: ElfImage, path: string): number {
  const note = elfNotes(bytes, elf, path).find(
    (n) => n.owner === XEN_NOTE_OWNER && n.type === XEN_ELFNOTE_PHYS32_ENTRY,
  );
  if (!note) {
    throw new BootError(
      `${path}: vmlinux has no PVH entry point (no Xen PHYS32_ENTRY ELF note); build the kernel with CONFIG_PVH=y or boot a bzImage`,
    );
  }
  const dv = new DataView(note.desc.buffer, note.desc.byteOffset, note.desc.byteLength);
  // Linux emits the address with _ASM_PTR, 8 bytes on x86-64; the ABI value is 32-bit.
  let entry: number;
  if (note.desc.length === 4) entry = dv.getUint32(0, true);
  else if (note.desc.length === 8) entry = Number(dv.getBigUint64(0, true));
  else throw new BootError(`${path}: PVH entry note has a ${note.desc.length}-byte value, expected 4 or 8`);
  if (entry >= FOUR_GIB) throw new BootError(`${path}: PVH entry point ${hex(entry)} is above 4 GiB`);
  return entry;
}

/** Loads a vmlinux for PVH boot and writes hvm_start_info, module list, command line and memory map. */
export function loadPvhKernel(
  mem: GuestMemory,
  elfBytes: Uint8Array,
  path: string,
  opts: PvhLoadOptions,
): PvhBoot {
  const elf = parseElf64(elfBytes, path);
  const entry32 = findPvhEntry(elfBytes, elf, path);
  if (opts.e820.length > PVH_MEMMAP_MAX_ENTRIES) {
    throw new BootError(
      `${path}: ${opts.e820.length} memory map entries, room for ${PVH_MEMMAP_MAX_ENTRIES}`,
    );
  }
  const cmdline = encodeCmdline(opts.cmdline, PVH_CMDLINE_MAX, path);
  const kernel = loadElfSegments(mem, elfBytes, elf, path, opts.e820);
  if (entry32 < kernel.start || entry32 >= kernel.end) {
    throw new BootError(`${path}: PVH entry point ${hex(entry32)} is outside the loaded kernel`);
  }

  let initrd: LoadedRange | undefined;
  if (opts.initrd && opts.initrd.data.length > 0) {
    const limit = opts.lowRamEnd ?? ramEndBelow(opts.e820, FOUR_GIB);
    initrd = placeInitrd(opts.initrd, opts.e820, kernel.end, Math.min(limit, FOUR_GIB));
    mem.write(initrd.addr, opts.initrd.data);
  }
  mem.write(CMDLINE_START, cmdline);

  const memmap = serializeHvmMemmap(opts.e820);
  mem.write(PVH_MEMMAP_START, memmap);

  if (initrd) {
    // struct hvm_modlist_entry { u64 paddr; u64 size; u64 cmdline_paddr; u64 reserved; }
    const mod = new Uint8Array(HVM_MODLIST_ENTRY_SIZE);
    const mdv = new DataView(mod.buffer);
    mdv.setBigUint64(0, BigInt(initrd.addr), true);
    mdv.setBigUint64(8, BigInt(initrd.size), true);
    mem.write(PVH_MODLIST_START, mod);
  }

  // struct hvm_start_info (version 1): magic, version, flags, nr_modules,
  // modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr, memmap_entries, reserved.
  const si = new Uint8Array(HVM_START_INFO_SIZE);
  const dv = new DataView(si.buffer);
  dv.setUint32(0, HVM_START_MAGIC, true);
  dv.setUint32(4, HVM_START_INFO_VERSION, true);
  dv.setUint32(8, 0, true); // flags: SIF_* are for Xen PV domains
  dv.setUint32(12, initrd ? 1 : 0, true);
  dv.setBigUint64(16, initrd ? BigInt(PVH_MODLIST_START) : 0n, true);
  dv.setBigUint64(24, BigInt(CMDLINE_START), true);
  dv.setBigUint64(32, BigInt(opts.acpiRsdp ?? 0), true);
  dv.setBigUint64(40, BigInt(PVH_MEMMAP_START), true);
  dv.setUint32(48, opts.e820.length, true);
  mem.write(PVH_INFO_START, si);

  return {
    entry32,
    startInfo: PVH_INFO_START,
    kernelStart: kernel.start,
    kernelEnd: kernel.end,
    cmdline: { addr: CMDLINE_START, size: cmdline.length },
    ...(initrd ? { initrd } : {}),
  };
}
