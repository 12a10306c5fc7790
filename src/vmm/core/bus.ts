/**
 * Port-I/O and MMIO buses: sorted, non-overlapping ranges mapped to
 * handlers (the pattern of Firecracker's `devices/bus.rs`). Lookups are a
 * binary search plus a one-entry cache for the range hit last, since a
 * guest tends to hammer one device at a time. Accesses nobody claimed are
 * logged (rate-limited) and read as all-ones, as on a PC's open bus.
 */
import type { AccessSize, IoHandler } from './device.js';
import type { RateLimitedLog } from './log.js';

export interface BusRange {
  readonly base: number;
  readonly length: number;
  readonly handler: IoHandler;
  readonly owner: string;
}

export class BusOverlapError extends Error {}

const allOnes: Record<AccessSize, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff };

export class Bus {
  private ranges: BusRange[] = [];
  private last: BusRange | undefined;
  /** Accesses that found no device, by kind: for exit statistics. */
  unhandled = 0;

  constructor(
    readonly kind: 'pio' | 'mmio',
    private readonly guestErrors?: RateLimitedLog,
  ) {}

  register(base: number, length: number, handler: IoHandler, owner: string): void {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || base < 0 || length <= 0) {
      throw new RangeError(`${owner}: bad ${this.kind} range ${base}+${length}`);
    }
    const end = base + length;
    for (const r of this.ranges) {
      if (base < r.base + r.length && r.base < end) {
        throw new BusOverlapError(
          `${owner}: ${this.kind} range ${hex(base)}-${hex(end - 1)} overlaps ${r.owner} at ${hex(r.base)}-${hex(r.base + r.length - 1)}`,
        );
      }
    }
    this.ranges.push({ base, length, handler, owner });
    this.ranges.sort((a, b) => a.base - b.base);
    this.last = undefined;
  }

  /** Removes the range that starts at `base` (BAR moves, hot-unplug). */
  unregister(base: number): boolean {
    const i = this.ranges.findIndex((r) => r.base === base);
    if (i < 0) return false;
    this.ranges.splice(i, 1);
    this.last = undefined;
    return true;
  }

  find(addr: number): BusRange | undefined {
    const l = this.last;
    if (l && addr >= l.base && addr < l.base + l.length) return l;
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.ranges[mid]!;
      if (addr < r.base) hi = mid - 1;
      else if (addr >= r.base + r.length) lo = mid + 1;
      else {
        this.last = r;
        return r;
      }
    }
    return undefined;
  }

  list(): readonly BusRange[] {
    return this.ranges;
  }

  read(addr: number, size: AccessSize): number {
    const r = this.find(addr);
    if (!r) {
      this.unhandled++;
      this.guestErrors?.warn(
        `${this.kind}-unhandled-read`,
        () => `unhandled ${this.kind} read of ${size} at ${hex(addr)}`,
      );
      return allOnes[size];
    }
    return r.handler.read(addr - r.base, size);
  }

  write(addr: number, size: AccessSize, value: number): void {
    const r = this.find(addr);
    if (!r) {
      this.unhandled++;
      this.guestErrors?.warn(
        `${this.kind}-unhandled-write`,
        () => `unhandled ${this.kind} write of ${size} at ${hex(addr)} value ${hex(value)}`,
      );
      return;
    }
    r.handler.write(addr - r.base, size, value);
  }
}

export function hex(n: number | bigint, width = 0): string {
  return '0x' + n.toString(16).padStart(width, '0');
}
