/**
 * The snapshot file: one file that `mvisor --restore FILE` reads.
 *
 *   0      a preamble page: "MVISOR-SNAPSHOT\n" and one JSON line
 *          {format, stateBytes, ramOffset, ramBytes}, zero-padded to 4 KiB
 *   4096   the VM's state (everything but RAM) as UTF-8 JSON
 *   ram    guest RAM from `ramOffset` (page-aligned), sparse: zero pages
 *          are holes (./ram-file.ts)
 *
 * JSON because the state is small (kilobytes per vCPU and device) and the
 * devices' states are plain versioned objects already. The file is created
 * new, synced, and removed again if writing it fails half-way. Reading
 * checks the preamble, the format version and that the file holds all it
 * says, so a truncated file or another kind of file is refused naming the
 * file before anything of the VM is touched.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, rmSync } from 'node:fs';
import { fileErrorReason } from '../config/files.js';
import {
  RAM_FILE_PAGE,
  RamFileError,
  checkedSize,
  readAll,
  readRamRegions,
  writeAll,
  writeRamRegions,
} from './ram-file.js';

export const SNAPSHOT_MAGIC = 'MVISOR-SNAPSHOT\n';
/** The file format this code writes and reads. */
export const SNAPSHOT_FORMAT = 1;
const STATE_OFFSET = RAM_FILE_PAGE;
/** A state larger than this is not one of ours (it is read into memory whole). */
export const MAX_STATE_BYTES = 256 << 20;

export class SnapshotFileError extends Error {
  override name = 'SnapshotFileError';
}

interface Preamble {
  format: number;
  stateBytes: number;
  ramOffset: number;
  ramBytes: number;
}

const alignUp = (n: number) => Math.ceil(n / RAM_FILE_PAGE) * RAM_FILE_PAGE;

/** A new snapshot file being written. */
export interface SnapshotWriter {
  /** Writes the state and RAM and syncs; returns the file's size and the RAM bytes stored as data. */
  write(
    state: unknown,
    ram: readonly Uint8Array[],
  ): { size: number; ramDataBytes: number } | Promise<{ size: number; ramDataBytes: number }>;
  /** Removes the file (ours, half-written) after a failure. */
  discard(): void;
}

/**
 * Creates the snapshot file `path`, which must not exist: created first, so
 * that a name already taken is refused before the VM is touched.
 */
export function createSnapshotFile(path: string): SnapshotWriter {
  const fd = openSync(path, 'wx', 0o600);
  let open = true;
  const close = () => {
    if (open) closeSync(fd);
    open = false;
  };
  return {
    write(state, ram) {
      const stateBytes = Buffer.from(JSON.stringify(state), 'utf8');
      const ramBytes = checkedSize(path, ram);
      const ramOffset = alignUp(STATE_OFFSET + stateBytes.length);
      const pre: Preamble = { format: SNAPSHOT_FORMAT, stateBytes: stateBytes.length, ramOffset, ramBytes };
      const head = Buffer.alloc(RAM_FILE_PAGE);
      head.write(`${SNAPSHOT_MAGIC}${JSON.stringify(pre)}\n`, 'utf8');
      ftruncateSync(fd, ramOffset + ramBytes);
      writeAll(fd, head, 0);
      writeAll(fd, stateBytes, STATE_OFFSET);
      const ramDataBytes = writeRamRegions(fd, ramOffset, ram);
      fsyncSync(fd);
      close();
      return { size: ramOffset + ramBytes, ramDataBytes };
    },
    discard() {
      close();
      rmSync(path, { force: true });
    },
  };
}

/** A snapshot file opened for restore: its state, and its RAM to read into the VM's. */
export interface SnapshotReader {
  readonly state: unknown;
  readonly ramBytes: number;
  /** Fills `regions` (their total must be ramBytes) from the file; returns the bytes read as data. */
  readRam(regions: readonly Uint8Array[]): number | Promise<number>;
  close(): void;
}

/** Opens and checks a snapshot file. */
export function openSnapshotFile(path: string): SnapshotReader {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new SnapshotFileError(`${path}: ${fileErrorReason(e)}`);
  }
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(RAM_FILE_PAGE);
    const n = readSync(fd, head, 0, head.length, 0);
    const text = head.subarray(0, n).toString('latin1');
    if (!text.startsWith(SNAPSHOT_MAGIC)) throw new SnapshotFileError(`${path}: not an mvisor snapshot file`);
    const line = text.slice(SNAPSHOT_MAGIC.length, text.indexOf('\n', SNAPSHOT_MAGIC.length));
    let pre: Preamble;
    try {
      pre = JSON.parse(line) as Preamble;
    } catch {
      throw new SnapshotFileError(`${path}: its preamble is damaged`);
    }
    const ints = [pre.format, pre.stateBytes, pre.ramOffset, pre.ramBytes];
    if (!ints.every((v) => Number.isSafeInteger(v) && v >= 0))
      throw new SnapshotFileError(`${path}: its preamble is damaged`);
    if (pre.format !== SNAPSHOT_FORMAT)
      throw new SnapshotFileError(
        `${path}: snapshot format ${pre.format}, this mvisor reads format ${SNAPSHOT_FORMAT}`,
      );
    if (
      pre.stateBytes > MAX_STATE_BYTES ||
      pre.ramOffset % RAM_FILE_PAGE !== 0 ||
      pre.ramOffset < STATE_OFFSET + pre.stateBytes
    )
      throw new SnapshotFileError(`${path}: its preamble is damaged`);
    if (size < pre.ramOffset + pre.ramBytes)
      throw new SnapshotFileError(
        `${path}: truncated: ${size} bytes, the snapshot needs ${pre.ramOffset + pre.ramBytes}`,
      );
    const stateBuf = Buffer.alloc(pre.stateBytes);
    readAll(fd, stateBuf, STATE_OFFSET, path);
    let state: unknown;
    try {
      state = JSON.parse(stateBuf.toString('utf8'));
    } catch {
      throw new SnapshotFileError(`${path}: its state is damaged`);
    }
    let closed = false;
    return {
      state,
      ramBytes: pre.ramBytes,
      readRam(regions) {
        if (checkedSize(path, regions) !== pre.ramBytes)
          throw new RamFileError(
            `${path}: holds ${pre.ramBytes} bytes of RAM, the VM has ${checkedSize(path, regions)}`,
          );
        return readRamRegions(fd, pre.ramOffset, regions, path);
      },
      close() {
        if (closed) return;
        closed = true;
        closeSync(fd);
      },
    };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}
