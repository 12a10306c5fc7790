/**
 * Raw images: the virtual disk is the file, byte for byte. Reads and writes
 * are positional (pread/pwrite through a FileHandle), so concurrent
 * requests need no locking here.
 *
 * Sparse handling: Node has no fallocate(2), so holes cannot be punched.
 * `discard` therefore leaves the data as it is (the interface allows reads
 * of a discarded range to return old data), and `writeZeroes` writes
 * zeroes whether or not `unmap` is set. A native `fallocate` in the addon
 * (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) would let both free space.
 *
 * The virtual size is the file size at open; a raw image does not grow.
 * Block devices are not supported yet (Node's fstat reports size 0 for them).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';
import { BlockError, type BlockImage } from './image.js';
import { checkRange, preadZeroFill, pwriteFull, pwriteZeroes, toBlockError } from './io.js';
import { lockImage } from './lock.js';

export interface RawOpenOptions {
  readOnly?: boolean;
  /** Take the flock(2) image lock (default true). */
  lock?: boolean;
}

export class RawImage implements BlockImage {
  readonly format = 'raw' as const;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly size: number,
    readonly readOnly: boolean,
  ) {}

  static async open(path: string, opts: RawOpenOptions = {}): Promise<RawImage> {
    const abs = resolve(path);
    const readOnly = opts.readOnly ?? false;
    let fh: FileHandle;
    try {
      fh = await open(abs, readOnly ? 'r' : 'r+');
    } catch (err) {
      throw toBlockError(err, `cannot open ${abs}`);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile())
        throw new BlockError(`${abs}: not a regular file (block devices are not supported yet)`, 'EINVAL');
      if (opts.lock ?? true) await lockImage(fh, abs, readOnly ? 'shared' : 'exclusive');
      return new RawImage(abs, fh, st.size, readOnly);
    } catch (err) {
      await fh.close().catch(() => {});
      throw toBlockError(err, `cannot open ${abs}`);
    }
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.checkOpen();
    checkRange(offset, length, this.size);
    const buf = into ? into.subarray(0, length) : new Uint8Array(length);
    if (buf.length < length)
      throw new BlockError(`read buffer of ${into!.length} bytes for ${length}`, 'EINVAL');
    try {
      // A file shortened behind our back reads as zeroes past its end.
      await preadZeroFill(this.fh, buf, offset);
    } catch (err) {
      throw toBlockError(err, `${this.path}: read at ${offset}`);
    }
    return buf;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    checkRange(offset, data.length, this.size);
    try {
      await pwriteFull(this.fh, data, offset);
    } catch (err) {
      throw toBlockError(err, `${this.path}: write at ${offset}`);
    }
  }

  async flush(): Promise<void> {
    this.checkOpen();
    if (this.readOnly) return;
    try {
      await this.fh.datasync();
    } catch (err) {
      throw toBlockError(err, `${this.path}: flush`);
    }
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    checkRange(offset, length, this.size);
    // No hole punching without fallocate(2): the data stays (see the file comment).
  }

  async writeZeroes(offset: number, length: number, _unmap?: boolean): Promise<void> {
    this.checkWritable();
    checkRange(offset, length, this.size);
    try {
      await pwriteZeroes(this.fh, offset, length);
    } catch (err) {
      throw toBlockError(err, `${this.path}: write zeroes at ${offset}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.readOnly) await this.fh.datasync();
    } finally {
      await this.fh.close();
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new BlockError(`${this.path}: image is closed`, 'EIO');
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.readOnly) throw new BlockError(`${this.path}: image is read-only`, 'EROFS');
  }
}
