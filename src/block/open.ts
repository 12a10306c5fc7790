/**
 * `openImage`: opens a disk image for a storage device, detecting the
 * format, following qcow2 backing chains and making `snapshot: yes`
 * overlays.
 *
 * Format detection (no `format` given): the qcow2 magic "QFI\xfb" means
 * qcow2, anything else raw. As in QEMU, a guest can write a qcow2 header
 * into a raw disk and have it probed as qcow2 (with a backing file of its
 * choosing) next time; manifests should name the format of writable disks.
 * Backing files are probed only when the overlay's header does not name
 * their format.
 *
 * Backing chains: relative backing names are relative to the directory of
 * the image that names them; every backing file is opened read-only with a
 * shared lock; a loop, or more than MAX_CHAIN backing levels, fails the
 * open with the chain in the message.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, open, realpath, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BlockError, type BlockImage, type ImageFormat, type OpenImageOptions } from './image.js';
import { preadFull, toBlockError } from './io.js';
import { Qcow2Image } from './qcow2.js';
import { createQcow2File } from './qcow2-create.js';
import { QCOW2_MAGIC } from './qcow2-format.js';
import { RawImage } from './raw.js';

/** Backing files below an image, at most (QEMU has no fixed limit; 16 is plenty and stops runaway chains). */
export const MAX_CHAIN = 16;

/**
 * Where `snapshot: yes` overlays go: $TMPDIR, else /var/tmp (as QEMU's
 * -snapshot does; /tmp is often a RAM-backed tmpfs, and a busy guest can
 * write gigabytes into its overlay).
 */
export function snapshotTempDir(): string {
  if (process.env.TMPDIR) return process.env.TMPDIR;
  return existsSync('/var/tmp') ? '/var/tmp' : tmpdir();
}

/** 'qcow2' if the file starts with the qcow2 magic, else 'raw'. */
export async function detectFormat(path: string): Promise<ImageFormat> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw toBlockError(err, `cannot open ${path}`);
  }
  try {
    const magic = Buffer.alloc(4);
    const n = await preadFull(fh, magic, 0);
    return n === 4 && magic.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  } finally {
    await fh.close();
  }
}

export async function openImage(path: string, opts: OpenImageOptions = {}): Promise<BlockImage> {
  if (opts.snapshot && !opts.readOnly) return openSnapshot(path, opts.format);
  return openChain(resolve(path), opts.format, opts.readOnly ?? false, []);
}

/** Opens `path` as the image below `chain` (real paths, top first). */
async function openChain(
  path: string,
  format: ImageFormat | undefined,
  readOnly: boolean,
  chain: readonly string[],
  extra: { lock?: boolean; noSync?: boolean } = {},
): Promise<BlockImage> {
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    const what = chain.length > 0 ? `backing file ${path} of ${chain[chain.length - 1]}` : path;
    throw toBlockError(err, `cannot open ${what}`);
  }
  if (chain.includes(real)) {
    throw new BlockError(`backing file loop: ${[...chain, real].join(' -> ')}`, 'EINVAL');
  }
  if (chain.length > MAX_CHAIN) {
    throw new BlockError(
      `backing chain deeper than ${MAX_CHAIN}: ${[...chain, real].join(' -> ')}`,
      'EINVAL',
    );
  }
  const fmt = format ?? (await detectFormat(path));
  if (fmt === 'raw') return RawImage.open(path, { readOnly, lock: extra.lock });
  if (fmt !== 'qcow2') throw new BlockError(`${path}: unknown image format '${String(fmt)}'`, 'EINVAL');
  const below = [...chain, real];
  return Qcow2Image.open(path, {
    readOnly,
    lock: extra.lock,
    noSync: extra.noSync,
    openBacking: (p, f) => openChain(p, f, true, below),
  });
}

/**
 * `snapshot: yes`: the image is opened read-only (shared lock) under a new
 * qcow2 overlay in `snapshotTempDir()`. The overlay file is unlinked
 * as soon as it is open, so it disappears with the process even after
 * kill -9; close() removes its directory. The overlay is never synced
 * (its contents die with the VM).
 */
async function openSnapshot(path: string, format: ImageFormat | undefined): Promise<BlockImage> {
  const abs = resolve(path);
  const fmt = format ?? (await detectFormat(abs));
  const dir = await mkdtemp(join(snapshotTempDir(), 'mvisor-snapshot-'));
  const overlayPath = join(dir, 'overlay.qcow2');
  try {
    const base = await openChain(abs, fmt, true, []);
    const size = base.size;
    await base.close();
    await createQcow2File(overlayPath, { size, backingFile: abs, backingFormat: fmt });
    const overlay = await openChain(overlayPath, 'qcow2', false, [], { lock: false, noSync: true });
    await unlink(overlayPath).catch(() => {});
    return new SnapshotImage(overlay, abs, fmt, dir);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A qcow2 overlay that presents itself as the image under it. */
class SnapshotImage implements BlockImage {
  readonly readOnly = false;

  constructor(
    private readonly overlay: BlockImage,
    readonly path: string,
    readonly format: ImageFormat,
    private readonly dir: string,
  ) {}

  get size(): number {
    return this.overlay.size;
  }

  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.overlay.read(offset, length, into);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.overlay.write(offset, data);
  }

  flush(): Promise<void> {
    return this.overlay.flush();
  }

  discard(offset: number, length: number): Promise<void> {
    return this.overlay.discard(offset, length);
  }

  writeZeroes(offset: number, length: number, unmap?: boolean): Promise<void> {
    return this.overlay.writeZeroes(offset, length, unmap);
  }

  async close(): Promise<void> {
    try {
      await this.overlay.close();
    } finally {
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}
