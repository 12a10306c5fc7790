/**
 * What the bzImage and PVH loaders share: encoding the command line and
 * placing the initrd.
 */
import { type E820Entry, allocateTopDown } from './e820.js';
import { BootError, hex } from './errors.js';
import { CMDLINE_MAX_SIZE, PAGE_SIZE } from './layout.js';

export interface InitrdImage {
  readonly data: Uint8Array;
  /** For messages. */
  readonly path: string;
}

export interface LoadedRange {
  readonly addr: number;
  readonly size: number;
}

/**
 * Encodes a command line for the guest: its bytes plus the terminating
 * NUL. `maxLength` excludes the NUL, like boot.rst's cmdline_size. `path`
 * is the kernel's, for messages.
 */
export function encodeCmdline(cmdline: string, maxLength: number, path: string): Uint8Array {
  const bytes = new TextEncoder().encode(cmdline);
  if (bytes.includes(0)) {
    throw new BootError(`${path}: the kernel command line contains a NUL byte`);
  }
  const max = Math.min(maxLength, CMDLINE_MAX_SIZE - 1);
  if (bytes.length > max) {
    throw new BootError(
      `${path}: the kernel command line is ${bytes.length} bytes, the kernel accepts at most ${max}`,
    );
  }
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/**
 * Places the initrd at the highest page-aligned address where it lies in
 * RAM (per `e820`), ends at or below `limitEnd` and starts at or above
 * `kernelEnd`. The top of low memory is where boot loaders put it
 * (boot.rst, "initrd_addr_max"): far from where the kernel decompresses.
 */
export function placeInitrd(
  initrd: InitrdImage,
  e820: readonly E820Entry[],
  kernelEnd: number,
  limitEnd: number,
): LoadedRange {
  const size = initrd.data.length;
  const addr = allocateTopDown(e820, size, { min: kernelEnd, max: limitEnd, align: PAGE_SIZE });
  if (addr === undefined) {
    throw new BootError(
      `${initrd.path}: initrd of ${size} bytes does not fit in guest RAM between the kernel end ${hex(kernelEnd)}` +
        ` and ${hex(limitEnd)}`,
    );
  }
  return { addr, size };
}
