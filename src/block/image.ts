/**
 * What storage devices (virtio-blk, IDE/ATAPI, floppy, later AHCI and SCSI)
 * see of a disk image: a byte-addressed virtual disk with asynchronous
 * reads and writes, so that image I/O runs off the vCPU exit path and the
 * Node event loop stays free. Formats (raw.ts, qcow2.ts) implement it;
 * `openImage` (open.ts) picks one from the file and the options.
 *
 * Offsets and lengths are bytes inside the virtual disk; devices check
 * them against `size` and the sector size they emulate, and an image
 * rejects a range outside the disk with a BlockError (never a crash).
 * Errors the guest should see as an I/O error are `BlockError`s.
 */

export type ImageFormat = 'raw' | 'qcow2';

export class BlockError extends Error {
  constructor(
    message: string,
    /** errno-like reason, for a device's error status: EIO, ENOSPC, EROFS, EINVAL. */
    readonly code: 'EIO' | 'ENOSPC' | 'EROFS' | 'EINVAL' = 'EIO',
  ) {
    super(message);
  }
}

export interface BlockImage {
  /** Absolute path of the image file (the top of the chain for qcow2 overlays). */
  readonly path: string;
  readonly format: ImageFormat;
  /** Virtual disk size in bytes. */
  readonly size: number;
  /** Writes, discards and write-zeroes fail with EROFS. */
  readonly readOnly: boolean;
  /** Reads [offset, offset+length) into `into` (or a new buffer) and returns it. */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes every completed write durable (fdatasync of the files it touched). */
  flush(): Promise<void>;
  /** The guest no longer needs the range; reads of it may return zeroes or old data. */
  discard(offset: number, length: number): Promise<void>;
  /** The range reads as zeroes afterwards; `unmap` lets the image deallocate it. */
  writeZeroes(offset: number, length: number, unmap?: boolean): Promise<void>;
  /** Flushes and closes the files (and removes a snapshot overlay). */
  close(): Promise<void>;
}

export interface OpenImageOptions {
  /** Open read-only (no lock conflict with other readers). Default false. */
  readOnly?: boolean;
  /**
   * Keep writes in a temporary overlay that is deleted at close, as MVisor's
   * `snapshot: yes` and QEMU's `-snapshot` do: the image itself is opened
   * read-only and never changes.
   */
  snapshot?: boolean;
  /** The format; default: detected (qcow2 magic "QFI\xfb", else raw). */
  format?: ImageFormat;
}
