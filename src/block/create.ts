/**
 * Creating and growing disk images (what `kind: Disk` manifests use):
 * raw files are sparse (ftruncate), qcow2 files are version 3 with 16-bit
 * refcounts and 64 KiB clusters by default, as `qemu-img create` makes them,
 * so `qemu-img check` and QEMU accept them.
 */
import { open, unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { BlockError, type ImageFormat } from './image.js';
import { toBlockError } from './io.js';
import { lockImage } from './lock.js';
import { detectFormat, openImage } from './open.js';
import { Qcow2Image } from './qcow2.js';
import { createQcow2File } from './qcow2-create.js';

export interface CreateImageOptions {
  format: ImageFormat;
  /** Virtual size in bytes, a multiple of 512; default (qcow2 with a backing file): the backing file's size. */
  size?: number;
  /** qcow2 only. Stored as given; a relative name is relative to the new image's directory. */
  backingFile?: string;
  /** Default: detected from the backing file. */
  backingFormat?: ImageFormat;
  /** qcow2 cluster size: a power of two from 512 to 2 MiB (default 64 KiB). */
  clusterSize?: number;
}

function checkSize(size: number, what: string): void {
  if (!Number.isSafeInteger(size) || size < 0 || size % 512 !== 0) {
    throw new BlockError(`${what} ${size} is not a non-negative multiple of 512`, 'EINVAL');
  }
}

/**
 * Creates a new image file; refuses to overwrite an existing file. With a
 * backing file, the whole backing chain is opened (read-only) first, so a
 * missing file, a loop or a bad image is reported now rather than at boot.
 */
export async function createImage(path: string, opts: CreateImageOptions): Promise<void> {
  const abs = resolve(path);
  if (opts.format === 'raw') {
    if (opts.backingFile !== undefined)
      throw new BlockError('raw images cannot have a backing file', 'EINVAL');
    if (opts.size === undefined) throw new BlockError('a raw image needs a size', 'EINVAL');
    checkSize(opts.size, 'size');
    let fh;
    try {
      fh = await open(abs, 'wx');
    } catch (err) {
      throw toBlockError(err, `cannot create ${abs}`);
    }
    try {
      await fh.truncate(opts.size);
    } catch (err) {
      await fh.close().catch(() => {});
      await unlink(abs).catch(() => {});
      throw toBlockError(err, `cannot create ${abs}`);
    }
    await fh.close();
    return;
  }
  if (opts.format !== 'qcow2')
    throw new BlockError(`unknown image format '${String(opts.format)}'`, 'EINVAL');
  let size = opts.size;
  let backingFormat = opts.backingFormat;
  if (opts.backingFile !== undefined) {
    if (opts.backingFile === '') throw new BlockError('empty backing file name', 'EINVAL');
    const backingPath = resolve(dirname(abs), opts.backingFile);
    backingFormat ??= await detectFormat(backingPath);
    const backing = await openImage(backingPath, { readOnly: true, format: backingFormat });
    size ??= backing.size;
    await backing.close();
  }
  if (size === undefined) throw new BlockError('a qcow2 image needs a size (or a backing file)', 'EINVAL');
  checkSize(size, 'size');
  await createQcow2File(abs, {
    size,
    clusterSize: opts.clusterSize,
    backingFile: opts.backingFile,
    backingFormat,
  });
}

/** Grows an image to `newSize` bytes (a multiple of 512); shrinking is refused. Takes the image's write lock. */
export async function resizeImage(path: string, newSize: number): Promise<void> {
  const abs = resolve(path);
  checkSize(newSize, 'new size');
  const format = await detectFormat(abs);
  if (format === 'raw') {
    let fh;
    try {
      fh = await open(abs, 'r+');
    } catch (err) {
      throw toBlockError(err, `cannot open ${abs}`);
    }
    try {
      await lockImage(fh, abs, 'exclusive');
      const { size } = await fh.stat();
      if (newSize < size)
        throw new BlockError(`${abs}: shrinking from ${size} to ${newSize} bytes is not supported`, 'EINVAL');
      if (newSize > size) await fh.truncate(newSize);
      await fh.datasync();
    } catch (err) {
      throw toBlockError(err, `cannot resize ${abs}`);
    } finally {
      await fh.close();
    }
    return;
  }
  const img = await openImage(abs, { format: 'qcow2' });
  try {
    if (!(img instanceof Qcow2Image)) throw new BlockError(`${abs}: not a qcow2 image`, 'EINVAL');
    if (newSize < img.size) {
      throw new BlockError(
        `${abs}: shrinking from ${img.size} to ${newSize} bytes is not supported`,
        'EINVAL',
      );
    }
    await img.grow(newSize);
  } finally {
    await img.close();
  }
}
