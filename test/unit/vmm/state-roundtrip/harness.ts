/**
 * The shape of the entries ../state-roundtrip.test.ts runs, and what they
 * share: a fake board (interrupt lines, machine requests, a host clock) and
 * guest RAM that a restored device finds as it was (the snapshot file holds
 * RAM beside the device states).
 *
 * An entry builds a rig (the device and what it needs), drives it through
 * guest-visible accesses into a state that is not its reset state, and
 * probes it: the accesses a guest makes next, returning what it saw. The
 * runner probes the driven rig, a rig that loaded its saved state, and a
 * fresh one, at the same host time.
 */
import type { Device, DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { GuestMemory } from '../../../../src/vmm/core/memory.js';

/** The host clock (ms since the epoch) every rig reads; the runner moves it, drives may too. */
export const hostClock = { ms: 0 };
/** The same clock in nanoseconds, for devices that take one. */
export const hostClockNs = (): bigint => BigInt(Math.round(hostClock.ms)) * 1_000_000n;

export interface Rig {
  /** The devices whose state is saved and loaded, in the machine's creation order. */
  readonly devices: readonly Device[];
  /** The guest's next accesses; returns what it saw (compared with toEqual). */
  probe(): unknown;
  /**
   * Takes over what is not the devices' own state from the rig that was
   * saved: guest RAM, disk contents, the guest driver's own bookkeeping,
   * fake peers. Runs before the states are loaded. Each rig types `from`
   * as itself (the runner passes a rig its entry built, hence `never` here).
   */
  adopt?(from: never): void;
  close?(): void;
}

export interface Entry<R extends Rig = Rig> {
  name: string;
  /** The classes (constructor names) whose saved state this entry round-trips. */
  covers: readonly string[];
  build(): R;
  /** Guest accesses (and host events) that leave the devices away from their reset state. */
  drive(r: R): void | Promise<void>;
  /** Set when the device has no state at all: then why (a fresh device must behave the same). */
  stateless?: string;
}

/** Erases an entry's rig type for the table. */
export function entry<R extends Rig>(e: Entry<R>): Entry {
  return e as unknown as Entry;
}

/** A DeviceContext that keeps the level of every line and what the devices asked the machine for. */
export interface TestBoard {
  ctx: DeviceContext;
  log: MemoryLogger;
  /** The lines driven high now, in order (a line never driven and one driven low look the same). */
  levels(): number[];
  level(line: number): boolean;
  /** Resets, power-offs, suspends and wakes asked for since the last call. */
  takeEvents(): string[];
}

export function testBoard(): TestBoard {
  const log = new MemoryLogger();
  const lines = new Map<number, boolean>();
  let events: string[] = [];
  const ctx: DeviceContext = {
    irq: { setIrq: (gsi, level) => void lines.set(gsi, level) },
    log,
    guestErrors: new RateLimitedLog(log, 100_000),
    requestReset: (why) => void events.push(`reset: ${why}`),
    requestPowerOff: (why) => void events.push(`power-off: ${why}`),
    requestSuspend: (why) => (events.push(`suspend: ${why}`), true),
    requestWake: (why) => void events.push(`wake: ${why}`),
  };
  return {
    ctx,
    log,
    levels: () =>
      [...lines]
        .filter(([, high]) => high)
        .map(([line]) => line)
        .sort((x, y) => x - y),
    level: (line) => lines.get(line) ?? false,
    takeEvents: () => {
      const e = events;
      events = [];
      return e;
    },
  };
}

/** Guest RAM of `regions` [gpa, size]; `copyFrom` makes it what another rig's holds. */
export function testRam(regions: ReadonlyArray<readonly [number, number]>) {
  const mem = new GuestMemory();
  const bytes = regions.map(([gpa, size]) => {
    const b = new Uint8Array(size);
    mem.addRegion(gpa, b);
    return b;
  });
  return {
    mem,
    bytes,
    copyFrom(other: { bytes: readonly Uint8Array[] }): void {
      bytes.forEach((b, i) => b.set(other.bytes[i]!));
    },
  };
}

export type TestRam = ReturnType<typeof testRam>;

/** A compact, comparable picture of guest bytes. */
export const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Lets promise callbacks and setImmediate work run. */
export async function settle(turns = 8): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}
