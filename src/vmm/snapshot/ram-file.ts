/**
 * Guest RAM to a sparse file and back, for snapshots (after MVisor's
 * "migration to sparse files"). The file is the RAM regions one after the
 * other, raw; a page of zeros is a hole, so an idle guest's snapshot takes
 * little disk. Restore reads only the file's data extents (lseek SEEK_DATA
 * and SEEK_HOLE, through the addon: Node's fs has neither) and zeroes the
 * rest of each region. The regions are views of guest RAM as the VMM maps
 * it, so pages the VMM itself wrote (boot structures, DMA) are included.
 *
 * The file is created new (never over an existing one: a snapshot must not
 * overwrite a user's file) and synced before the write returns. Which
 * regions a file holds, and their sizes, is the state stream's business:
 * a file of another total size is refused here, naming both.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { loadAddon } from '../kvm/addon.js';

/** The unit of hole detection: x86's small page. */
export const RAM_FILE_PAGE = 4096;

/** An error about a RAM file, naming it. */
export class RamFileError extends Error {
  override name = 'RamFileError';
}

export interface RamFileStats {
  /** The file's size: the regions' total. */
  size: number;
  /** Bytes written as data (the rest are holes). */
  dataBytes: number;
}

const ZERO_PAGE = Buffer.alloc(RAM_FILE_PAGE);

function isZeroPage(b: Uint8Array, at: number): boolean {
  return ZERO_PAGE.equals(b.subarray(at, at + RAM_FILE_PAGE));
}

/**
 * The runs of non-zero pages of `region` (a whole number of pages), as
 * [start, end) byte offsets, each at most `maxRun` bytes (a whole number of
 * pages) long: what a snapshot stores of it, a file or a stream alike.
 */
export function* dataRuns(region: Uint8Array, maxRun = Infinity): Generator<[number, number]> {
  let at = 0;
  while (at < region.length) {
    while (at < region.length && isZeroPage(region, at)) at += RAM_FILE_PAGE;
    const start = at;
    while (at < region.length && at - start < maxRun && !isZeroPage(region, at)) at += RAM_FILE_PAGE;
    if (at > start) yield [start, at];
  }
}

/**
 * Writes `regions` (each a whole number of pages) to a new file at `path`:
 * runs of non-zero pages as data, zero pages as holes.
 */
export function writeRamFile(path: string, regions: readonly Uint8Array[]): RamFileStats {
  const size = checkedSize(path, regions);
  const fd = openSync(path, 'wx', 0o600);
  try {
    ftruncateSync(fd, size);
    const dataBytes = writeRamRegions(fd, 0, regions);
    fsyncSync(fd);
    return { size, dataBytes };
  } finally {
    closeSync(fd);
  }
}

/** The regions' total size; each must be a whole number of pages. */
export function checkedSize(path: string, regions: readonly Uint8Array[]): number {
  for (const r of regions) {
    if (r.length % RAM_FILE_PAGE !== 0)
      throw new RamFileError(`${path}: a RAM region of ${r.length} bytes is not a whole number of pages`);
  }
  return regions.reduce((n, r) => n + r.length, 0);
}

/**
 * Writes `regions` one after the other from byte `base` (page-aligned) of
 * `fd`, a file already sized to hold them whose range is still a hole:
 * only runs of non-zero pages are written. Returns the bytes written.
 */
export function writeRamRegions(fd: number, base: number, regions: readonly Uint8Array[]): number {
  let dataBytes = 0;
  for (const r of regions) {
    for (const [start, end] of dataRuns(r)) {
      writeAll(fd, r.subarray(start, end), base + start);
      dataBytes += end - start;
    }
    base += r.length;
  }
  return dataBytes;
}

export function writeAll(fd: number, b: Uint8Array, position: number): void {
  let done = 0;
  while (done < b.length) done += writeSync(fd, b, done, b.length - done, position + done);
}

/**
 * Fills `regions` from the RAM file at `path`: its data extents are read,
 * its holes zero the RAM they cover. Returns the bytes read as data.
 */
export function readRamFile(path: string, regions: readonly Uint8Array[]): RamFileStats {
  const size = checkedSize(path, regions);
  const fd = openSync(path, 'r');
  try {
    const actual = fstatSync(fd).size;
    if (actual !== size)
      throw new RamFileError(
        `${path}: holds ${actual} bytes of RAM, the VM has ${size}: it is truncated or from another VM`,
      );
    return { size, dataBytes: readRamRegions(fd, 0, regions, path) };
  } finally {
    closeSync(fd);
  }
}

/**
 * Fills `regions` from byte `base` of `fd` (which must hold them all):
 * data extents are read, holes zero the RAM they cover. Returns the bytes
 * read as data.
 */
export function readRamRegions(
  fd: number,
  base: number,
  regions: readonly Uint8Array[],
  path: string,
): number {
  const addon = loadAddon();
  let dataBytes = 0;
  for (const r of regions) {
    const end = base + r.length;
    let at = base;
    while (at < end) {
      let data = addon.lseekData(fd, at);
      if (data < 0 || data > end) data = end;
      r.fill(0, at - base, data - base);
      if (data >= end) break;
      let hole = addon.lseekHole(fd, data);
      if (hole < 0 || hole > end) hole = end;
      readAll(fd, r.subarray(data - base, hole - base), data, path);
      dataBytes += hole - data;
      at = hole;
    }
    base = end;
  }
  return dataBytes;
}

export function readAll(fd: number, b: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < b.length) {
    const n = readSync(fd, b, done, b.length - done, position + done);
    if (n === 0) throw new RamFileError(`${path}: ends early at byte ${position + done}`);
    done += n;
  }
}
