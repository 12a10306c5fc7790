/**
 * Loading a bzImage with the 64-bit boot protocol (Documentation/x86/boot.rst,
 * "64-bit Boot Protocol"): no real-mode setup code runs. The VMM copies the
 * protected-mode part of the image into RAM, fills in boot_params (the "zero
 * page") with a copy of the image's setup header plus what a boot loader
 * reports (command line, initrd, e820 map), and starts the vCPU in long mode
 * at load address + 0x200 with RSI pointing at boot_params.
 *
 * boot_params and setup_header offsets are those of
 * arch/x86/include/uapi/asm/bootparam.h; the setup header sits at 0x1F1 both
 * in the image file and inside boot_params.
 */
import type { GuestMemory } from '../core/memory.js';
import { type E820Entry, isRam, serializeBootE820 } from './e820.js';
import { BootError, hex } from './errors.js';
import { CMDLINE_START, HIMEM_START, ZERO_PAGE_SIZE, ZERO_PAGE_START, alignUp } from './layout.js';
import { type InitrdImage, type LoadedRange, encodeCmdline, placeInitrd } from './loader.js';

/** Setup header field offsets (boot.rst, "The Real-Mode Kernel Header"). */
export const HDR = {
  setupSects: 0x1f1,
  syssize: 0x1f4,
  bootFlag: 0x1fe,
  jump: 0x200,
  header: 0x202,
  version: 0x206,
  typeOfLoader: 0x210,
  loadflags: 0x211,
  code32Start: 0x214,
  ramdiskImage: 0x218,
  ramdiskSize: 0x21c,
  heapEndPtr: 0x224,
  cmdLinePtr: 0x228,
  initrdAddrMax: 0x22c,
  kernelAlignment: 0x230,
  relocatableKernel: 0x234,
  xloadflags: 0x236,
  cmdlineSize: 0x238,
  payloadOffset: 0x248,
  payloadLength: 0x24c,
  setupData: 0x250,
  prefAddress: 0x258,
  initSize: 0x260,
} as const;

/** boot_params fields outside the setup header (bootparam.h). */
export const BOOT_PARAMS = {
  acpiRsdpAddr: 0x070,
  extRamdiskImage: 0x0c0,
  extRamdiskSize: 0x0c4,
  extCmdLinePtr: 0x0c8,
  e820Entries: 0x1e8,
  /** End of the area a setup header copy may occupy (edd_mbr_sig_buffer follows). */
  setupHeaderLimit: 0x290,
  e820Table: 0x2d0,
} as const;

/** E820_MAX_ENTRIES_ZEROPAGE: boot_params.e820_table has room for 128 entries. */
export const E820_MAX_ENTRIES_ZEROPAGE = 128;

/** "HdrS" read as a little-endian u32. */
export const HDRS_MAGIC = 0x53726448;
/** Protocol 2.12 introduced xloadflags, which is how a 64-bit entry point is advertised. */
export const MIN_BOOT_PROTOCOL = 0x020c;

export const LOADED_HIGH = 0x01;
export const CAN_USE_HEAP = 0x80;
export const XLF_KERNEL_64 = 0x01;
export const XLF_CAN_BE_LOADED_ABOVE_4G = 0x02;
/** type_of_loader 0xFF: "undefined" boot loader (boot.rst, "type_of_loader"). */
export const LOADER_TYPE_UNDEFINED = 0xff;
/**
 * heap_end_ptr: end of the setup heap relative to the real-mode code, minus
 * 0x200. The 64-bit entry never runs the setup code; this is the customary
 * value for a real-mode segment with a full 64 KiB (boot.rst, "Sample Boot
 * Configuration").
 */
export const HEAP_END_PTR = 0xfe00;
/** The 64-bit entry point is 0x200 past the start of the protected-mode kernel (boot.rst, "64-bit Boot Protocol"). */
export const ENTRY64_OFFSET = 0x200;

export interface BzImageHeader {
  readonly version: number;
  /** Number of 512-byte setup sectors after the boot sector (0 in the file means 4). */
  readonly setupSects: number;
  /** File offset of the protected-mode kernel: (setup_sects + 1) * 512. */
  readonly kernelOffset: number;
  /** Bytes of protected-mode kernel in the file. */
  readonly kernelSize: number;
  readonly loadflags: number;
  readonly xloadflags: number;
  readonly relocatable: boolean;
  readonly kernelAlignment: number;
  /** Highest address an initrd byte may occupy. */
  readonly initrdAddrMax: number;
  /** Longest command line, without its NUL. */
  readonly cmdlineSize: number;
  readonly prefAddress: number;
  /** Contiguous memory the kernel needs from its runtime start before it reads the memory map. */
  readonly initSize: number;
  /** Offset just past the setup header: 0x202 + the jump's displacement byte at 0x201. */
  readonly headerEnd: number;
}

export interface BzImageLoadOptions {
  readonly cmdline: string;
  readonly initrd?: InitrdImage;
  readonly e820: readonly E820Entry[];
  /** End of the RAM below the 32-bit PCI hole; the kernel and initrd stay below it. */
  readonly lowRamEnd: number;
  /** Physical address of the ACPI RSDP, if the machine built ACPI tables (boot_params.acpi_rsdp_addr). */
  readonly acpiRsdp?: number;
}

export interface BzImageBoot {
  /** RIP for the 64-bit entry. */
  readonly entry64: number;
  /** RSI: boot_params. */
  readonly bootParams: number;
  readonly loadAddr: number;
  /** First byte above everything the kernel needs before it reads e820 (load image and init_size). */
  readonly kernelEnd: number;
  readonly cmdline: LoadedRange;
  readonly initrd?: LoadedRange;
  readonly header: BzImageHeader;
}

/** Whether `image` carries the "HdrS" setup header signature. */
export function isBzImage(image: Uint8Array): boolean {
  return image.length >= HDR.header + 4 && viewOf(image).getUint32(HDR.header, true) === HDRS_MAGIC;
}

function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Validates and decodes the setup header of a bzImage. `path` only appears in messages. */
export function parseBzImage(image: Uint8Array, path: string): BzImageHeader {
  // Every field up to init_size (protocol 2.10) must be present in the file.
  if (image.length < HDR.initSize + 4) {
    throw new BootError(
      `${path}: truncated kernel image (${image.length} bytes, too short for a setup header)`,
    );
  }
  const dv = viewOf(image);
  if (dv.getUint32(HDR.header, true) !== HDRS_MAGIC) {
    throw new BootError(`${path}: not a bzImage (no "HdrS" signature at ${hex(HDR.header)})`);
  }
  const version = dv.getUint16(HDR.version, true);
  if (version < MIN_BOOT_PROTOCOL) {
    throw new BootError(
      `${path}: boot protocol ${protocolString(version)} is too old, need ${protocolString(MIN_BOOT_PROTOCOL)} or later`,
    );
  }
  const xloadflags = dv.getUint16(HDR.xloadflags, true);
  if ((xloadflags & XLF_KERNEL_64) === 0) {
    throw new BootError(`${path}: kernel has no 64-bit entry point (XLF_KERNEL_64 clear in xloadflags)`);
  }
  // boot.rst: "If this field is 0, the real value is 4."
  const setupSects = image[HDR.setupSects] || 4;
  const kernelOffset = (setupSects + 1) * 512;
  const payloadEnd =
    kernelOffset + dv.getUint32(HDR.payloadOffset, true) + dv.getUint32(HDR.payloadLength, true);
  // The compressed payload (protocol 2.08) lies inside the protected-mode
  // part; syssize can't be used for this check, as the build pads its
  // paragraph count beyond the end of the file.
  if (image.length <= kernelOffset + ENTRY64_OFFSET || image.length < payloadEnd) {
    throw new BootError(
      `${path}: truncated kernel image (${image.length} bytes, the protected-mode kernel starts at ${hex(kernelOffset)}` +
        ` and its payload ends at ${hex(payloadEnd)})`,
    );
  }
  const kernelAlignment = dv.getUint32(HDR.kernelAlignment, true);
  return {
    version,
    setupSects,
    kernelOffset,
    kernelSize: image.length - kernelOffset,
    loadflags: image[HDR.loadflags]!,
    xloadflags,
    relocatable: image[HDR.relocatableKernel] !== 0,
    kernelAlignment: kernelAlignment || 1,
    initrdAddrMax: dv.getUint32(HDR.initrdAddrMax, true),
    cmdlineSize: dv.getUint32(HDR.cmdlineSize, true),
    prefAddress: Number(dv.getBigUint64(HDR.prefAddress, true)),
    initSize: dv.getUint32(HDR.initSize, true),
    headerEnd: Math.min(HDR.header + image[HDR.jump + 1]!, BOOT_PARAMS.setupHeaderLimit, image.length),
  };
}

function protocolString(v: number): string {
  return `${v >> 8}.${(v & 0xff).toString().padStart(2, '0')}`;
}

/**
 * Where the image goes and the memory it claims. A relocatable kernel is
 * loaded at 1 MiB, like QEMU and Firecracker do; a non-relocatable one at
 * pref_address, where it would move itself anyway. Either way the
 * decompressor runs the kernel at max(align_up(load, kernel_alignment),
 * pref_address) (arch/x86/boot/compressed/head_64.S) and needs init_size
 * bytes from there, so that range is part of the footprint.
 */
export function bzImageFootprint(h: BzImageHeader): { loadAddr: number; runStart: number; end: number } {
  const loadAddr = h.relocatable || h.prefAddress < HIMEM_START ? HIMEM_START : h.prefAddress;
  const runStart = h.relocatable
    ? Math.max(alignUp(loadAddr, h.kernelAlignment), h.prefAddress)
    : h.prefAddress;
  const end = Math.max(loadAddr + h.kernelSize, runStart + h.initSize);
  return { loadAddr, runStart, end };
}

/** Loads a bzImage, its command line and initrd, and writes boot_params. */
export function loadBzImage(
  mem: GuestMemory,
  image: Uint8Array,
  path: string,
  opts: BzImageLoadOptions,
): BzImageBoot {
  const h = parseBzImage(image, path);
  const { loadAddr, runStart, end: kernelEnd } = bzImageFootprint(h);
  const footprintStart = Math.min(loadAddr, runStart);
  // The kernel needs its whole footprint as RAM before it has looked at the
  // memory map (boot.rst, "init_size"), and it must stay below the PCI hole.
  if (
    kernelEnd > opts.lowRamEnd ||
    !isRam(opts.e820, footprintStart, kernelEnd - footprintStart) ||
    !mem.tryView(footprintStart, kernelEnd - footprintStart)
  ) {
    throw new BootError(
      `${path}: kernel does not fit in RAM: it needs ${hex(footprintStart)}-${hex(kernelEnd)} (image and init_size),` +
        ` which is not all usable RAM below ${hex(opts.lowRamEnd)}`,
    );
  }
  if (opts.e820.length > E820_MAX_ENTRIES_ZEROPAGE) {
    throw new BootError(
      `${path}: ${opts.e820.length} e820 entries, boot_params holds ${E820_MAX_ENTRIES_ZEROPAGE}`,
    );
  }
  const cmdline = encodeCmdline(opts.cmdline, h.cmdlineSize, path);

  let initrd: LoadedRange | undefined;
  if (opts.initrd && opts.initrd.data.length > 0) {
    // initrd_addr_max is the highest address the initrd may *occupy*, so its end may be one past it.
    // Kernels with XLF_CAN_BE_LOADED_ABOVE_4G could take it above 4 GiB; below works for every kernel.
    initrd = placeInitrd(opts.initrd, opts.e820, kernelEnd, Math.min(h.initrdAddrMax + 1, opts.lowRamEnd));
  }

  mem.write(loadAddr, image.subarray(h.kernelOffset));
  mem.write(CMDLINE_START, cmdline);
  if (initrd && opts.initrd) mem.write(initrd.addr, opts.initrd.data);

  const zp = new Uint8Array(ZERO_PAGE_SIZE);
  const dv = viewOf(zp);
  // boot.rst, "64-bit Boot Protocol": boot_params is zeroed, then the setup
  // header is copied from the kernel image into it, then the loader fills
  // in the fields a boot loader is responsible for.
  zp.set(image.subarray(HDR.setupSects, h.headerEnd), HDR.setupSects);
  zp[HDR.typeOfLoader] = LOADER_TYPE_UNDEFINED;
  zp[HDR.loadflags] = h.loadflags | LOADED_HIGH | CAN_USE_HEAP;
  dv.setUint16(HDR.heapEndPtr, HEAP_END_PTR, true);
  dv.setUint32(HDR.code32Start, loadAddr, true);
  dv.setUint32(HDR.cmdLinePtr, CMDLINE_START, true);
  dv.setUint32(BOOT_PARAMS.extCmdLinePtr, Math.floor(CMDLINE_START / 0x1_0000_0000), true);
  // No setup_data chain.
  dv.setBigUint64(HDR.setupData, 0n, true);
  if (initrd) {
    // ramdisk_image/size hold the low 32 bits, ext_ramdisk_* the high ones (protocol 2.12).
    dv.setUint32(HDR.ramdiskImage, initrd.addr >>> 0, true);
    dv.setUint32(HDR.ramdiskSize, initrd.size >>> 0, true);
    dv.setUint32(BOOT_PARAMS.extRamdiskImage, Math.floor(initrd.addr / 0x1_0000_0000), true);
    dv.setUint32(BOOT_PARAMS.extRamdiskSize, Math.floor(initrd.size / 0x1_0000_0000), true);
  }
  if (opts.acpiRsdp !== undefined) dv.setBigUint64(BOOT_PARAMS.acpiRsdpAddr, BigInt(opts.acpiRsdp), true);
  zp[BOOT_PARAMS.e820Entries] = opts.e820.length;
  zp.set(serializeBootE820(opts.e820), BOOT_PARAMS.e820Table);
  mem.write(ZERO_PAGE_START, zp);

  return {
    entry64: loadAddr + ENTRY64_OFFSET,
    bootParams: ZERO_PAGE_START,
    loadAddr,
    kernelEnd,
    cmdline: { addr: CMDLINE_START, size: cmdline.length },
    ...(initrd ? { initrd } : {}),
    header: h,
  };
}
