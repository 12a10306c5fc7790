/**
 * The kernel side of Multiboot (version 1, specification 0.6.96) direct
 * boot (multiboot.ts): finding and checking the Multiboot header, and
 * turning the image into the pieces to load, from the header's address
 * fields (the "a.out kludge", spec §3.1.3) or from ELF program headers.
 */
import { ELFCLASS64, ELFDATA2LSB, ET_EXEC, PT_LOAD, parseElf64 } from './elf.js';
import { BootError, hex } from './errors.js';
import { FOUR_GIB } from './layout.js';

/** Spec §3.1.2: the header's first field. */
export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
/** Spec §3.1.1: the header lies completely within the first 8192 bytes, 32-bit aligned. */
export const MULTIBOOT_SEARCH = 8192;
export const MULTIBOOT_HEADER_ALIGN = 4;
/** magic, flags, checksum */
const HEADER_MIN_SIZE = 12;
/** ... plus header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr */
const HEADER_ADDR_SIZE = 32;

/** Header flags (spec §3.1.2). Bits 0-15 are requirements: an unknown one means "don't boot". */
export const MB_HEADER_PAGE_ALIGN = 1 << 0;
export const MB_HEADER_MEMORY_INFO = 1 << 1;
export const MB_HEADER_VIDEO_MODE = 1 << 2;
export const MB_HEADER_AOUT_KLUDGE = 1 << 16;
export const REQUIRED_FLAGS_MASK = 0xffff;
/**
 * Modules are always page aligned and mem_* always given. Flag 2 asks for a
 * video mode, which §3.1.4 calls only a recommendation: we set none and pass
 * no VBE/framebuffer fields (info flags 11/12 clear), as QEMU does.
 */
export const SUPPORTED_REQUIRED_FLAGS = MB_HEADER_PAGE_ALIGN | MB_HEADER_MEMORY_INFO | MB_HEADER_VIDEO_MODE;

export interface MultibootHeader {
  /** File offset of the magic. */
  readonly offset: number;
  readonly flags: number;
}

export type MultibootFormat = 'elf32' | 'elf64' | 'a.out kludge';

/** A piece of the kernel image: `data` goes to `addr`, zeros from there up to `memsz`. */
export interface Segment {
  readonly addr: number;
  readonly data: Uint8Array;
  readonly memsz: number;
}

export interface KernelImage {
  readonly format: MultibootFormat;
  readonly segments: readonly Segment[];
  readonly entry: number;
}

function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * The first Multiboot header in `image`: a 32-bit aligned magic within the
 * first 8192 bytes whose flags and checksum add up to 0 (mod 2^32).
 */
export function findMultibootHeader(image: Uint8Array): MultibootHeader | undefined {
  const dv = viewOf(image);
  const end = Math.min(image.length, MULTIBOOT_SEARCH);
  for (let off = 0; off + HEADER_MIN_SIZE <= end; off += MULTIBOOT_HEADER_ALIGN) {
    if (dv.getUint32(off, true) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = dv.getUint32(off + 4, true);
    const checksum = dv.getUint32(off + 8, true);
    if ((MULTIBOOT_HEADER_MAGIC + flags + checksum) % FOUR_GIB === 0) return { offset: off, flags };
  }
  return undefined;
}

/** Whether `image` carries a valid Multiboot (v1) header. */
export function isMultiboot(image: Uint8Array): boolean {
  return findMultibootHeader(image) !== undefined;
}

/** Spec §3.1.3: one contiguous text+data block from the file, then bss. */
export function loadAoutKludge(image: Uint8Array, hdr: MultibootHeader, path: string): KernelImage {
  if (hdr.offset + HEADER_ADDR_SIZE > Math.min(image.length, MULTIBOOT_SEARCH)) {
    const past =
      image.length < MULTIBOOT_SEARCH ? 'the end of the file' : `the first ${MULTIBOOT_SEARCH} bytes`;
    throw new BootError(
      `${path}: the multiboot header at ${hex(hdr.offset)} sets flag 16 but its address fields end past ${past}`,
    );
  }
  const dv = viewOf(image);
  const headerAddr = dv.getUint32(hdr.offset + 12, true);
  const loadAddr = dv.getUint32(hdr.offset + 16, true);
  const loadEndAddr = dv.getUint32(hdr.offset + 20, true);
  const bssEndAddr = dv.getUint32(hdr.offset + 24, true);
  const entryAddr = dv.getUint32(hdr.offset + 28, true);
  const bad = (what: string): BootError => new BootError(`${path}: inconsistent multiboot header: ${what}`);
  if (loadAddr > headerAddr) {
    throw bad(`load_addr ${hex(loadAddr)} is above header_addr ${hex(headerAddr)}`);
  }
  // The header sits header_addr - load_addr bytes into the loaded text.
  const fileOffset = hdr.offset - (headerAddr - loadAddr);
  if (fileOffset < 0) {
    throw bad(
      `header_addr ${hex(headerAddr)} - load_addr ${hex(loadAddr)} puts the load start before the file start`,
    );
  }
  let loadSize: number;
  if (loadEndAddr === 0) {
    loadSize = image.length - fileOffset;
  } else {
    if (loadEndAddr < headerAddr + HEADER_MIN_SIZE) {
      throw bad(`load_end_addr ${hex(loadEndAddr)} leaves out the header at ${hex(headerAddr)}`);
    }
    loadSize = loadEndAddr - loadAddr;
    if (fileOffset + loadSize > image.length) {
      throw new BootError(
        `${path}: truncated kernel: multiboot load_addr-load_end_addr (${hex(loadAddr)}-${hex(loadEndAddr)}) needs` +
          ` ${hex(loadSize)} bytes from file offset ${hex(fileOffset)}, the file is ${hex(image.length)} bytes`,
      );
    }
  }
  const loadEnd = loadAddr + loadSize;
  if (bssEndAddr !== 0 && bssEndAddr < loadEnd) {
    throw bad(`bss_end_addr ${hex(bssEndAddr)} is below the end of the loaded image ${hex(loadEnd)}`);
  }
  const end = bssEndAddr === 0 ? loadEnd : bssEndAddr;
  if (entryAddr < loadAddr || entryAddr >= end) {
    throw bad(`entry_addr ${hex(entryAddr)} is outside the kernel at ${hex(loadAddr)}-${hex(end)}`);
  }
  return {
    format: 'a.out kludge',
    segments: [
      { addr: loadAddr, data: image.subarray(fileOffset, fileOffset + loadSize), memsz: end - loadAddr },
    ],
    entry: entryAddr,
  };
}

const ELFCLASS32 = 1;
const EM_386 = 3;
const ELF32_EHDR_SIZE = 52;
const ELF32_PHDR_SIZE = 32;

interface ElfLoad {
  readonly offset: number;
  readonly vaddr: bigint;
  readonly paddr: number;
  readonly filesz: number;
  readonly memsz: number;
}

/** ELF32 little-endian i386 executable: its entry and PT_LOAD headers (System V gABI, "ELF Header"). */
function parseElf32(image: Uint8Array, path: string): { entry: bigint; loads: ElfLoad[] } {
  if (image.length < ELF32_EHDR_SIZE) {
    throw new BootError(`${path}: truncated ELF file (${image.length} bytes, shorter than an ELF32 header)`);
  }
  if (image[5] !== ELFDATA2LSB) throw new BootError(`${path}: not a little-endian ELF file`);
  const dv = viewOf(image);
  const type = dv.getUint16(16, true);
  const machine = dv.getUint16(18, true);
  if (machine !== EM_386)
    throw new BootError(`${path}: 32-bit ELF machine ${machine} is not i386 (${EM_386})`);
  if (type !== ET_EXEC) throw new BootError(`${path}: ELF type ${type} is not an executable (ET_EXEC)`);
  const phoff = dv.getUint32(28, true);
  const phentsize = dv.getUint16(42, true);
  const phnum = dv.getUint16(44, true);
  if (phnum === 0) throw new BootError(`${path}: ELF file has no program headers`);
  if (phentsize !== ELF32_PHDR_SIZE) {
    throw new BootError(`${path}: ELF program header size ${phentsize} is not ${ELF32_PHDR_SIZE}`);
  }
  if (phoff + phnum * phentsize > image.length) {
    throw new BootError(`${path}: truncated ELF file (program headers end past ${image.length} bytes)`);
  }
  const loads: ElfLoad[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (dv.getUint32(p, true) !== PT_LOAD) continue;
    loads.push({
      offset: dv.getUint32(p + 4, true),
      vaddr: BigInt(dv.getUint32(p + 8, true)),
      paddr: dv.getUint32(p + 12, true),
      filesz: dv.getUint32(p + 16, true),
      memsz: dv.getUint32(p + 20, true),
    });
  }
  return { entry: BigInt(dv.getUint32(24, true)), loads };
}

/** PT_LOAD segments at their physical addresses; the entry translated to physical if it is virtual. */
export function loadElf(image: Uint8Array, path: string): KernelImage {
  let format: MultibootFormat;
  let entry: bigint;
  let loads: ElfLoad[];
  if (image[4] === ELFCLASS32) {
    format = 'elf32';
    ({ entry, loads } = parseElf32(image, path));
  } else if (image[4] === ELFCLASS64) {
    format = 'elf64';
    const elf = parseElf64(image, path); // insists on EM_X86_64, ET_EXEC, segments inside the file
    entry = elf.entry;
    loads = elf.programHeaders.filter((ph) => ph.type === PT_LOAD);
  } else {
    throw new BootError(`${path}: ELF class ${image[4]} is neither 32- nor 64-bit`);
  }
  for (const [i, ph] of loads.entries()) {
    if (ph.offset + ph.filesz > image.length) {
      throw new BootError(
        `${path}: truncated ELF file (segment ${i} covers ${hex(ph.offset)}+${hex(ph.filesz)},` +
          ` the file is ${hex(image.length)} bytes)`,
      );
    }
    if (ph.filesz > ph.memsz) {
      throw new BootError(
        `${path}: ELF segment ${i} has p_filesz ${hex(ph.filesz)} > p_memsz ${hex(ph.memsz)}`,
      );
    }
  }
  const live = loads.filter((ph) => ph.memsz > 0);
  // Higher-half kernels link e_entry virtual; GRUB and QEMU then jump to
  // the physical address of the same byte.
  const inPhys = live.find((ph) => BigInt(ph.paddr) <= entry && entry < BigInt(ph.paddr + ph.memsz));
  const inVirt = live.find((ph) => ph.vaddr <= entry && entry < ph.vaddr + BigInt(ph.memsz));
  let phys: number;
  if (inPhys) phys = Number(entry);
  else if (inVirt) phys = inVirt.paddr + Number(entry - inVirt.vaddr);
  else if (live.length === 0) throw new BootError(`${path}: ELF file has no loadable segments`);
  else throw new BootError(`${path}: ELF entry point ${hex(entry)} is outside every loadable segment`);
  return {
    format,
    segments: live.map((ph) => ({
      addr: ph.paddr,
      data: image.subarray(ph.offset, ph.offset + ph.filesz),
      memsz: ph.memsz,
    })),
    entry: phys,
  };
}
