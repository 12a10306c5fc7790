/**
 * The linker/loader script QEMU hands firmware as the fw_cfg file
 * `etc/table-loader` (QEMU hw/acpi/bios-linker-loader.c; SeaBIOS
 * src/fw/romfile_loader.c runs it). The VMM builds ACPI tables without
 * knowing where they will live in guest memory; the script tells the
 * firmware to
 *
 *   ALLOCATE      copy a fw_cfg file into memory it allocates (aligned, in
 *                 the high zone or the F-segment, where the RSDP must be),
 *   ADD_POINTER   add a file's final address to a 1/2/4/8-byte little-endian
 *                 field of another file (which holds the offset within it),
 *   ADD_CHECKSUM  subtract the 8-bit sum of a byte range from a checksum
 *                 byte (which the VMM leaves 0), making the range sum to 0.
 *
 * Each command is a 128-byte little-endian entry: u32 command, then a
 * union padded to 124 bytes; file names are 56-byte NUL-padded fields.
 * SeaBIOS runs commands in order, so a file must be allocated before
 * another command names it; the builder enforces that and checks every
 * offset against the allocated sizes.
 */
import { FW_CFG_MAX_FILE_PATH, fwCfgFileName } from './fw-cfg.js';

export const TABLE_LOADER_FILE = 'etc/table-loader';
export const LOADER_ENTRY_SIZE = 128;

export const LOADER_COMMAND_ALLOCATE = 1;
export const LOADER_COMMAND_ADD_POINTER = 2;
export const LOADER_COMMAND_ADD_CHECKSUM = 3;

export const LOADER_ZONE_HIGH = 1;
export const LOADER_ZONE_FSEG = 2;
export type LoaderZone = 'high' | 'fseg';
export type LoaderPointerSize = 1 | 2 | 4 | 8;

// Field offsets inside an entry (after the u32 command at 0).
const NAME = 4;
const ALLOC_ALIGN = NAME + FW_CFG_MAX_FILE_PATH; // 60
const ALLOC_ZONE = ALLOC_ALIGN + 4; // 64
const POINTER_SRC = NAME + FW_CFG_MAX_FILE_PATH; // 60
const POINTER_OFFSET = POINTER_SRC + FW_CFG_MAX_FILE_PATH; // 116
const POINTER_SIZE = POINTER_OFFSET + 4; // 120
const CKSUM_OFFSET = NAME + FW_CFG_MAX_FILE_PATH; // 60
const CKSUM_START = CKSUM_OFFSET + 4; // 64
const CKSUM_LENGTH = CKSUM_START + 4; // 68

export interface LoaderAllocate {
  kind: 'allocate';
  file: string;
  /** Power of two. */
  align: number;
  zone: LoaderZone;
}

export interface LoaderAddPointer {
  kind: 'add-pointer';
  /** The file holding the pointer field. */
  destFile: string;
  /** The file whose address is added. */
  srcFile: string;
  /** Offset of the pointer field in destFile. */
  offset: number;
  size: LoaderPointerSize;
}

export interface LoaderAddChecksum {
  kind: 'add-checksum';
  file: string;
  /** Offset of the checksum byte. */
  offset: number;
  /** The range summed. */
  start: number;
  length: number;
}

/** A command this code does not know (firmware skips those). */
export interface LoaderUnknown {
  kind: 'unknown';
  command: number;
}

export type LoaderCommand = LoaderAllocate | LoaderAddPointer | LoaderAddChecksum;

export class TableLoaderError extends Error {}

/** Builds an `etc/table-loader` script. */
export class TableLoader {
  private readonly list: LoaderCommand[] = [];
  /** Sizes of the allocated files, for bounds checks. */
  private readonly sizes = new Map<string, number>();

  /** Has the firmware copy `file` (of `size` bytes) into memory aligned to `align` in `zone`. */
  allocate(file: string, size: number, align: number, zone: LoaderZone = 'high'): this {
    checkName(file);
    if (this.sizes.has(file)) throw new TableLoaderError(`${file} is allocated twice`);
    if (!isU32(size) || size === 0) throw new TableLoaderError(`${file}: bad size ${size}`);
    if (!isU32(align) || align === 0 || (align & (align - 1)) !== 0) {
      throw new TableLoaderError(`${file}: alignment ${align} is not a power of two`);
    }
    this.sizes.set(file, size);
    this.list.push({ kind: 'allocate', file, align, zone });
    return this;
  }

  /** Adds the address of `srcFile` to the `size`-byte field at `offset` in `destFile`. */
  addPointer(destFile: string, offset: number, size: LoaderPointerSize, srcFile: string): this {
    const destSize = this.allocated(destFile);
    this.allocated(srcFile);
    if (size !== 1 && size !== 2 && size !== 4 && size !== 8) {
      throw new TableLoaderError(`${destFile}: bad pointer size ${String(size)}`);
    }
    if (!isU32(offset) || offset + size > destSize) {
      throw new TableLoaderError(
        `${destFile}: pointer at ${offset}+${size} is outside its ${destSize} bytes`,
      );
    }
    this.list.push({ kind: 'add-pointer', destFile, srcFile, offset, size });
    return this;
  }

  /** Makes bytes [start, start+length) of `file` sum to 0 by adjusting the byte at `offset`. */
  addChecksum(file: string, offset: number, start: number, length: number): this {
    const size = this.allocated(file);
    if (!isU32(offset) || offset >= size) {
      throw new TableLoaderError(`${file}: checksum byte ${offset} is outside its ${size} bytes`);
    }
    if (!isU32(start) || !isU32(length) || start + length > size) {
      throw new TableLoaderError(`${file}: checksum range ${start}+${length} is outside its ${size} bytes`);
    }
    this.list.push({ kind: 'add-checksum', file, offset, start, length });
    return this;
  }

  get commands(): readonly LoaderCommand[] {
    return this.list;
  }

  /** The script: 128 bytes per command, in the order they were added. */
  build(): Uint8Array {
    const out = new Uint8Array(LOADER_ENTRY_SIZE * this.list.length);
    this.list.forEach((c, i) => out.set(encodeLoaderCommand(c), LOADER_ENTRY_SIZE * i));
    return out;
  }

  private allocated(file: string): number {
    const size = this.sizes.get(file);
    if (size === undefined) throw new TableLoaderError(`${file} is used before it is allocated`);
    return size;
  }
}

/** One 128-byte entry. */
export function encodeLoaderCommand(cmd: LoaderCommand): Uint8Array {
  const e = new Uint8Array(LOADER_ENTRY_SIZE);
  const dv = new DataView(e.buffer);
  switch (cmd.kind) {
    case 'allocate':
      dv.setUint32(0, LOADER_COMMAND_ALLOCATE, true);
      e.set(fwCfgFileName(cmd.file), NAME);
      dv.setUint32(ALLOC_ALIGN, cmd.align, true);
      e[ALLOC_ZONE] = cmd.zone === 'fseg' ? LOADER_ZONE_FSEG : LOADER_ZONE_HIGH;
      break;
    case 'add-pointer':
      dv.setUint32(0, LOADER_COMMAND_ADD_POINTER, true);
      e.set(fwCfgFileName(cmd.destFile), NAME);
      e.set(fwCfgFileName(cmd.srcFile), POINTER_SRC);
      dv.setUint32(POINTER_OFFSET, cmd.offset, true);
      e[POINTER_SIZE] = cmd.size;
      break;
    case 'add-checksum':
      dv.setUint32(0, LOADER_COMMAND_ADD_CHECKSUM, true);
      e.set(fwCfgFileName(cmd.file), NAME);
      dv.setUint32(CKSUM_OFFSET, cmd.offset, true);
      dv.setUint32(CKSUM_START, cmd.start, true);
      dv.setUint32(CKSUM_LENGTH, cmd.length, true);
      break;
  }
  return e;
}

/** Decodes a script (for tests and for checking what a machine hands the firmware). */
export function parseTableLoader(script: Uint8Array): Array<LoaderCommand | LoaderUnknown> {
  if (script.length % LOADER_ENTRY_SIZE !== 0) {
    throw new TableLoaderError(
      `table-loader size ${script.length} is not a multiple of ${LOADER_ENTRY_SIZE}`,
    );
  }
  const out: Array<LoaderCommand | LoaderUnknown> = [];
  for (let at = 0; at < script.length; at += LOADER_ENTRY_SIZE) {
    const e = script.subarray(at, at + LOADER_ENTRY_SIZE);
    const dv = new DataView(e.buffer, e.byteOffset, e.byteLength);
    const command = dv.getUint32(0, true);
    switch (command) {
      case LOADER_COMMAND_ALLOCATE: {
        const zone = e[ALLOC_ZONE];
        if (zone !== LOADER_ZONE_HIGH && zone !== LOADER_ZONE_FSEG) {
          throw new TableLoaderError(`entry ${at / LOADER_ENTRY_SIZE}: bad zone ${zone}`);
        }
        out.push({
          kind: 'allocate',
          file: decodeName(e, NAME),
          align: dv.getUint32(ALLOC_ALIGN, true),
          zone: zone === LOADER_ZONE_FSEG ? 'fseg' : 'high',
        });
        break;
      }
      case LOADER_COMMAND_ADD_POINTER: {
        const size = e[POINTER_SIZE];
        if (size !== 1 && size !== 2 && size !== 4 && size !== 8) {
          throw new TableLoaderError(`entry ${at / LOADER_ENTRY_SIZE}: bad pointer size ${size}`);
        }
        out.push({
          kind: 'add-pointer',
          destFile: decodeName(e, NAME),
          srcFile: decodeName(e, POINTER_SRC),
          offset: dv.getUint32(POINTER_OFFSET, true),
          size,
        });
        break;
      }
      case LOADER_COMMAND_ADD_CHECKSUM:
        out.push({
          kind: 'add-checksum',
          file: decodeName(e, NAME),
          offset: dv.getUint32(CKSUM_OFFSET, true),
          start: dv.getUint32(CKSUM_START, true),
          length: dv.getUint32(CKSUM_LENGTH, true),
        });
        break;
      default:
        out.push({ kind: 'unknown', command });
    }
  }
  return out;
}

export interface LoadedFile {
  /** Where the allocator placed the file. */
  address: number;
  /** The file's bytes after linking. */
  data: Uint8Array;
}

/**
 * Runs a script as firmware would, strictly (any bad command throws, where
 * SeaBIOS would warn and go on): copies each allocated file, asks
 * `place` for its address, patches pointers and checksums. For tests of
 * the tables a machine builds.
 */
export function runTableLoader(
  script: Uint8Array,
  files: ReadonlyMap<string, Uint8Array>,
  place: (file: string, size: number, align: number, zone: LoaderZone) => number,
): Map<string, LoadedFile> {
  const loaded = new Map<string, LoadedFile>();
  const get = (name: string): LoadedFile => {
    const f = loaded.get(name);
    if (!f) throw new TableLoaderError(`${name} is used before it is allocated`);
    return f;
  };
  for (const cmd of parseTableLoader(script)) {
    switch (cmd.kind) {
      case 'allocate': {
        const src = files.get(cmd.file);
        if (!src || src.length === 0) throw new TableLoaderError(`no fw_cfg file ${cmd.file}`);
        if (loaded.has(cmd.file)) throw new TableLoaderError(`${cmd.file} is allocated twice`);
        if (cmd.align === 0 || (cmd.align & (cmd.align - 1)) !== 0) {
          throw new TableLoaderError(`${cmd.file}: alignment ${cmd.align} is not a power of two`);
        }
        const address = place(cmd.file, src.length, cmd.align, cmd.zone);
        loaded.set(cmd.file, { address, data: Uint8Array.from(src) });
        break;
      }
      case 'add-pointer': {
        const dest = get(cmd.destFile);
        const src = get(cmd.srcFile);
        if (cmd.offset + cmd.size > dest.data.length) {
          throw new TableLoaderError(
            `${cmd.destFile}: pointer at ${cmd.offset}+${cmd.size} is outside the file`,
          );
        }
        let value = 0n;
        for (let i = cmd.size - 1; i >= 0; i--) value = (value << 8n) | BigInt(dest.data[cmd.offset + i]!);
        value += BigInt(src.address);
        for (let i = 0; i < cmd.size; i++) {
          dest.data[cmd.offset + i] = Number(value & 0xffn);
          value >>= 8n;
        }
        break;
      }
      case 'add-checksum': {
        const f = get(cmd.file);
        if (cmd.offset >= f.data.length || cmd.start + cmd.length > f.data.length) {
          throw new TableLoaderError(`${cmd.file}: checksum outside the file`);
        }
        let sum = 0;
        for (let i = cmd.start; i < cmd.start + cmd.length; i++) sum += f.data[i]!;
        f.data[cmd.offset] = (f.data[cmd.offset]! - sum) & 0xff;
        break;
      }
      case 'unknown':
        break;
    }
  }
  return loaded;
}

function checkName(name: string): void {
  try {
    fwCfgFileName(name);
  } catch (err) {
    throw new TableLoaderError(err instanceof Error ? err.message : String(err));
  }
}

function decodeName(e: Uint8Array, at: number): string {
  const field = e.subarray(at, at + FW_CFG_MAX_FILE_PATH);
  const end = field.indexOf(0);
  if (end < 0) throw new TableLoaderError('file name is not NUL-terminated');
  return new TextDecoder().decode(field.subarray(0, end));
}

function isU32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}
