/**
 * Small helpers the image formats share: range checks, positional reads and
 * writes that loop over short transfers, and the translation of Node's file
 * errors into `BlockError`s (the guest sees EIO/ENOSPC/EROFS, never a
 * stack trace).
 */
import type { FileHandle } from 'node:fs/promises';
import { BlockError } from './image.js';

/** A shared buffer of zeroes, never written to (1 MiB). */
export const ZEROES = new Uint8Array(1 << 20);

/** Rejects a request outside [0, size) or with a negative or fractional offset/length. */
export function checkRange(offset: number, length: number, size: number): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > size
  ) {
    throw new BlockError(`request [${offset}, +${length}) is outside the disk (size ${size})`, 'EINVAL');
  }
}

/** Turns an fs error (or anything thrown) into a BlockError with the closest errno-like code. */
export function toBlockError(err: unknown, what: string): BlockError {
  if (err instanceof BlockError) return err;
  const e = err as NodeJS.ErrnoException;
  const detail = e?.message ?? String(err);
  switch (e?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return new BlockError(`${what}: ${detail}`, 'ENOSPC');
    case 'EROFS':
    case 'EBADF':
      return new BlockError(`${what}: ${detail}`, 'EROFS');
    default:
      return new BlockError(`${what}: ${detail}`, 'EIO');
  }
}

/**
 * Reads up to `buf.length` bytes at `pos`, looping over short reads; returns
 * how many bytes the file had there (fewer at end of file). The rest of
 * `buf` is left untouched.
 */
export async function preadFull(fh: FileHandle, buf: Uint8Array, pos: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, pos + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** Like preadFull, but zero-fills whatever lies past the end of the file. */
export async function preadZeroFill(fh: FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  const n = await preadFull(fh, buf, pos);
  if (n < buf.length) buf.fill(0, n);
}

/** Writes all of `buf` at `pos`, looping over short writes. */
export async function pwriteFull(fh: FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, pos + done);
    if (bytesWritten === 0) throw new BlockError(`short write at ${pos + done}`, 'EIO');
    done += bytesWritten;
  }
}

/** Writes `length` zero bytes at `pos` in chunks of at most 1 MiB. */
export async function pwriteZeroes(fh: FileHandle, pos: number, length: number): Promise<void> {
  while (length > 0) {
    const n = Math.min(length, ZEROES.length);
    await pwriteFull(fh, ZEROES.subarray(0, n), pos);
    pos += n;
    length -= n;
  }
}
