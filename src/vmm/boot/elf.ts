/**
 * A minimal ELF64 little-endian reader for uncompressed kernels (vmlinux):
 * header and program header validation, PT_LOAD segment loading at their
 * physical addresses and PT_NOTE lookup. Field offsets follow the System V
 * gABI ("ELF Header", "Program Header", "Note Section"); sections are never
 * needed to boot.
 */
import type { GuestMemory } from '../core/memory.js';
import { type E820Entry, isRam } from './e820.js';
import { BootError, hex } from './errors.js';
import { HIMEM_START } from './layout.js';

export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const EV_CURRENT = 1;
export const ET_EXEC = 2;
export const EM_X86_64 = 62;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const ELF64_EHDR_SIZE = 64;
export const ELF64_PHDR_SIZE = 56;

export interface ElfProgramHeader {
  readonly type: number;
  readonly flags: number;
  readonly offset: number;
  /** Kernel virtual addresses don't fit a double (0xffffffff81000000), hence bigint. */
  readonly vaddr: bigint;
  readonly paddr: number;
  readonly filesz: number;
  readonly memsz: number;
  readonly align: number;
}

export interface ElfImage {
  readonly entry: bigint;
  readonly programHeaders: readonly ElfProgramHeader[];
}

export interface ElfNote {
  readonly owner: string;
  readonly type: number;
  readonly desc: Uint8Array;
}

/** Whether `bytes` starts with the ELF magic. */
export function isElf(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46
  );
}

function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Validates the ELF header and every program header (each must lie inside the file). */
export function parseElf64(bytes: Uint8Array, path: string): ElfImage {
  if (bytes.length < ELF64_EHDR_SIZE) {
    throw new BootError(`${path}: truncated ELF file (${bytes.length} bytes, shorter than an ELF64 header)`);
  }
  if (!isElf(bytes)) throw new BootError(`${path}: not an ELF file (no \\x7fELF magic)`);
  if (bytes[4] !== ELFCLASS64 || bytes[5] !== ELFDATA2LSB || bytes[6] !== EV_CURRENT) {
    throw new BootError(`${path}: not a 64-bit little-endian ELF file`);
  }
  const dv = viewOf(bytes);
  const type = dv.getUint16(16, true);
  const machine = dv.getUint16(18, true);
  if (machine !== EM_X86_64)
    throw new BootError(`${path}: ELF machine ${machine} is not x86-64 (${EM_X86_64})`);
  if (type !== ET_EXEC) throw new BootError(`${path}: ELF type ${type} is not an executable (ET_EXEC)`);
  const u64 = (off: number, what: string): number => {
    const v = dv.getBigUint64(off, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new BootError(`${path}: ELF ${what} ${hex0(v)} is out of range`);
    return Number(v);
  };
  const phoff = u64(32, 'e_phoff');
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  if (phnum === 0) throw new BootError(`${path}: ELF file has no program headers`);
  if (phentsize !== ELF64_PHDR_SIZE) {
    throw new BootError(`${path}: ELF program header size ${phentsize} is not ${ELF64_PHDR_SIZE}`);
  }
  if (phoff + phnum * phentsize > bytes.length) {
    throw new BootError(`${path}: truncated ELF file (program headers end past ${bytes.length} bytes)`);
  }
  const programHeaders: ElfProgramHeader[] = [];
  for (let i = 0; i < phnum; i++) {
    const off = phoff + i * phentsize;
    const ph: ElfProgramHeader = {
      type: dv.getUint32(off, true),
      flags: dv.getUint32(off + 4, true),
      offset: u64(off + 8, 'p_offset'),
      vaddr: dv.getBigUint64(off + 16, true),
      paddr: u64(off + 24, 'p_paddr'),
      filesz: u64(off + 32, 'p_filesz'),
      memsz: u64(off + 40, 'p_memsz'),
      align: u64(off + 48, 'p_align'),
    };
    if (ph.type === PT_LOAD || ph.type === PT_NOTE) {
      if (ph.offset + ph.filesz > bytes.length) {
        throw new BootError(
          `${path}: truncated ELF file (program header ${i} covers ${hex(ph.offset)}+${hex(ph.filesz)},` +
            ` the file is ${hex(bytes.length)} bytes)`,
        );
      }
      if (ph.type === PT_LOAD && ph.filesz > ph.memsz) {
        throw new BootError(
          `${path}: ELF segment ${i} has p_filesz ${hex(ph.filesz)} > p_memsz ${hex(ph.memsz)}`,
        );
      }
    }
    programHeaders.push(ph);
  }
  return { entry: dv.getBigUint64(24, true), programHeaders };
}

function hex0(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/**
 * Every note of every PT_NOTE segment. Notes are (namesz, descsz, type,
 * name, desc) with name and desc padded to the segment's alignment: 4 in
 * Linux's vmlinux, 8 allowed by the gABI for ELF64.
 */
export function elfNotes(bytes: Uint8Array, elf: ElfImage, path: string): ElfNote[] {
  const dv = viewOf(bytes);
  const notes: ElfNote[] = [];
  for (const ph of elf.programHeaders) {
    if (ph.type !== PT_NOTE) continue;
    const align = ph.align === 8 ? 8 : 4;
    const pad = (n: number): number => Math.ceil(n / align) * align;
    const end = ph.offset + ph.filesz;
    let off = ph.offset;
    while (off + 12 <= end) {
      const namesz = dv.getUint32(off, true);
      const descsz = dv.getUint32(off + 4, true);
      const type = dv.getUint32(off + 8, true);
      const nameOff = off + 12;
      const descOff = nameOff + pad(namesz);
      const next = descOff + pad(descsz);
      if (descOff + descsz > end)
        throw new BootError(`${path}: malformed ELF note at file offset ${hex(off)}`);
      // The name includes its NUL terminator.
      const nameBytes = bytes.subarray(nameOff, nameOff + namesz);
      const nul = nameBytes.indexOf(0);
      const owner = new TextDecoder('latin1').decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes);
      notes.push({ owner, type, desc: bytes.subarray(descOff, descOff + descsz) });
      off = next;
    }
  }
  return notes;
}

export interface LoadedSegments {
  /** Lowest physical address written. */
  readonly start: number;
  /** One past the highest (p_paddr + p_memsz). */
  readonly end: number;
}

/**
 * Copies every PT_LOAD segment to p_paddr: p_filesz bytes from the file,
 * then zeros up to p_memsz (the .bss). Each segment must lie in RAM at or
 * above 1 MiB, where it can't clobber the boot structures.
 */
export function loadElfSegments(
  mem: GuestMemory,
  bytes: Uint8Array,
  elf: ElfImage,
  path: string,
  e820?: readonly E820Entry[],
): LoadedSegments {
  const loads = elf.programHeaders.filter((ph) => ph.type === PT_LOAD && ph.memsz > 0);
  if (loads.length === 0) throw new BootError(`${path}: ELF file has no loadable segments`);
  for (const ph of loads) {
    const inRam = mem.tryView(ph.paddr, ph.memsz) !== undefined && (!e820 || isRam(e820, ph.paddr, ph.memsz));
    if (ph.paddr < HIMEM_START || !inRam) {
      throw new BootError(
        `${path}: ELF segment at ${hex(ph.paddr)}-${hex(ph.paddr + ph.memsz)} is not inside guest RAM above 1 MiB`,
      );
    }
  }
  for (const ph of loads) {
    mem.write(ph.paddr, bytes.subarray(ph.offset, ph.offset + ph.filesz));
    mem.fill(ph.paddr + ph.filesz, ph.memsz - ph.filesz, 0);
  }
  return {
    start: Math.min(...loads.map((ph) => ph.paddr)),
    end: Math.max(...loads.map((ph) => ph.paddr + ph.memsz)),
  };
}
