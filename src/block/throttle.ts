/**
 * I/O limits on a disk image (libvirt's `<iotune>`, QEMU's `throttling.*`):
 * a `BlockImage` wrapper that delays reads, writes, discards and
 * write-zeroes so that no more than `iops` requests and `bytesPerSecond`
 * bytes a second reach the image. One tenant's VM then cannot take a shared
 * disk's whole bandwidth. Flushes and close are not delayed.
 *
 * The schedule is a virtual clock per limit (GCRA with no burst): a request
 * may start when every limit's clock has reached now, and then advances each
 * clock by its cost (1/iops seconds; its bytes / bytesPerSecond seconds).
 * Requests start in the order they arrive; a delayed request is still in
 * flight for the device (a snapshot drains it like any other). Written here:
 * no npm package wraps an async API with a byte-and-operation rate in
 * issue order, and this is a few lines.
 */
import type { BlockImage } from './image.js';

export interface IoLimits {
  /** Requests a second (reads, writes, discards, write-zeroes), at least 1. */
  iops?: number;
  /** Bytes a second read or written, at least 512. */
  bytesPerSecond?: number;
}

export class ThrottledImage implements BlockImage {
  /** When (performance.now() ms) the next request may start. */
  private nextAt = 0;

  constructor(
    readonly inner: BlockImage,
    private readonly limits: IoLimits,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get path(): string {
    return this.inner.path;
  }
  get format(): BlockImage['format'] {
    return this.inner.format;
  }
  get size(): number {
    return this.inner.size;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    await this.admit(length);
    return this.inner.read(offset, length, into);
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.admit(data.length);
    return this.inner.write(offset, data);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  async discard(offset: number, length: number): Promise<void> {
    await this.admit(0);
    return this.inner.discard(offset, length);
  }
  async writeZeroes(offset: number, length: number, unmap?: boolean): Promise<void> {
    await this.admit(0);
    return this.inner.writeZeroes(offset, length, unmap);
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /** Milliseconds a request of `bytes` costs under the limits. */
  private cost(bytes: number): number {
    const { iops, bytesPerSecond } = this.limits;
    return Math.max(iops ? 1000 / iops : 0, bytesPerSecond ? (bytes * 1000) / bytesPerSecond : 0);
  }

  /** Resolves when a request of `bytes` may start. */
  private admit(bytes: number): Promise<void> {
    const now = this.now();
    const start = Math.max(now, this.nextAt);
    this.nextAt = start + this.cost(bytes);
    const wait = start - now;
    return wait > 0 ? new Promise((r) => setTimeout(r, wait)) : Promise.resolve();
  }
}

/** `image` limited by `limits`, or `image` itself when there are none. */
export function withIoLimits(image: BlockImage, limits: IoLimits | undefined): BlockImage {
  return limits && (limits.iops || limits.bytesPerSecond) ? new ThrottledImage(image, limits) : image;
}
