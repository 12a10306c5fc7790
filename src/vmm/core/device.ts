/**
 * The one small interface every device model implements to sit on the
 * port-I/O or MMIO bus (after Firecracker's and Cloud Hypervisor's `Bus`):
 * a device sees offsets inside the range it registered, never absolute
 * addresses, and never reads the CLI or manifests: it gets a typed options
 * object and a `DeviceContext` from the machine.
 */
import type { Logger, RateLimitedLog } from './log.js';

/** Access sizes the buses deliver. 8-byte MMIO accesses are split in two. */
export type AccessSize = 1 | 2 | 4;

export interface IoHandler {
  /** Returns the value read (only the low `size` bytes are used). */
  read(offset: number, size: AccessSize): number;
  write(offset: number, size: AccessSize, value: number): void;
}

/**
 * Saved state of a device: a plain, JSON-serialisable object with a
 * version, so that snapshots and live migration are a loop over devices.
 * A device refuses (throws) a state whose version it cannot read.
 */
export interface DeviceState {
  version: number;
  [field: string]: unknown;
}

export interface Device {
  /** Instance name, unique in a machine (e.g. "com1", "rtc"). */
  readonly name: string;
  /** Puts the device in its power-on state. */
  reset?(): void;
  saveState?(): DeviceState;
  loadState?(state: DeviceState): void;
  /** Releases host resources (timers, files, sockets). */
  close?(): void;
}

/** Interrupt lines as a device sees them (ISA IRQ numbers / GSIs). */
export interface IrqSink {
  /** Sets the level of an interrupt line; edge-triggered lines fire on 0->1. */
  setIrq(gsi: number, level: boolean): void;
}

/** What the machine hands a device when it is created. */
export interface DeviceContext {
  readonly irq: IrqSink;
  readonly log: Logger;
  readonly guestErrors: RateLimitedLog;
  /** Asks the machine to act: guest reset or power-off. */
  requestReset(reason: string): void;
  requestPowerOff(reason: string): void;
  /**
   * ACPI S3: stop every vCPU before it runs another instruction, keeping
   * RAM; false when the machine cannot sleep (the device then ignores the
   * request). Called from the exit of the instruction that asked.
   */
  requestSuspend?(reason: string): boolean;
  /** Ends an S3 sleep: the vCPUs restart from a CPU reset at the OS's waking vector. */
  requestWake?(reason: string): void;
}

export class DeviceStateError extends Error {}

/** Checks the version of a saved state before a device loads it. */
export function expectVersion(device: string, state: DeviceState, version: number): void {
  if (state.version !== version) {
    throw new DeviceStateError(`${device}: cannot load state version ${state.version} (expected ${version})`);
  }
}
