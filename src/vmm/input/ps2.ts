/**
 * Pieces shared by the i8042 controller and the PS/2 devices behind it: the
 * link between a device and its controller port, the device's byte queue,
 * and the 8042's scancode set 2 -> set 1 translation.
 *
 * A PS/2 device is a serial peripheral: the host sends it one byte at a
 * time (`receive`) and it answers by queueing bytes, which the controller
 * pulls into its one-byte output buffer when that buffer is empty.
 */

/** What a PS/2 device calls on the controller port it is plugged into. */
export interface Ps2Port {
  /** The device queued bytes: the controller may move one into its output buffer. */
  dataAvailable(): void;
}

/** The controller's view of a device (keyboard on the first port, mouse on the aux port). */
export interface Ps2Device {
  readonly name: string;
  /** A byte the host sent to the device (command or command argument). */
  receive(byte: number): void;
  /** Whether the device has a byte to send. */
  hasData(): boolean;
  /** Takes the next byte the device sends, or undefined. */
  nextByte(): number | undefined;
  /** Connects the device to a controller port (undefined detaches it). */
  attach(port: Ps2Port | undefined): void;
}

/** A bounded FIFO of bytes; pushes past the capacity are dropped (and counted). */
export class ByteQueue {
  private items: number[] = [];
  dropped = 0;

  constructor(readonly capacity: number) {}

  get length(): number {
    return this.items.length;
  }

  /** Room left. */
  get free(): number {
    return this.capacity - this.items.length;
  }

  push(...bytes: number[]): boolean {
    let ok = true;
    for (const b of bytes) {
      if (this.items.length >= this.capacity) {
        this.dropped++;
        ok = false;
        continue;
      }
      this.items.push(b & 0xff);
    }
    return ok;
  }

  shift(): number | undefined {
    return this.items.shift();
  }

  clear(): void {
    this.items = [];
  }

  toArray(): number[] {
    return [...this.items];
  }

  /** Replaces the contents (state load); bytes past the capacity are dropped. */
  load(bytes: readonly number[]): void {
    this.items = bytes.slice(0, this.capacity).map((b) => b & 0xff);
  }
}

/** `pendingCommand` value when no command is waiting for its argument byte. */
export const PS2_NO_COMMAND = -1;

/**
 * The plumbing every PS/2 device shares: its byte queue, the controller
 * port it is attached to, the last byte sent (for the 0xFE resend command)
 * and the dispatch of host bytes to a command or, when the previous command
 * takes an argument, to that command's argument handler.
 */
export abstract class Ps2DeviceBase implements Ps2Device {
  protected readonly queue: ByteQueue;
  protected port: Ps2Port | undefined;
  /** Command waiting for its argument byte, or PS2_NO_COMMAND. */
  protected pendingCommand = PS2_NO_COMMAND;
  /** Last byte queued (what 0xFE resends). */
  protected lastSent = 0;

  constructor(
    readonly name: string,
    queueSize: number,
  ) {
    this.queue = new ByteQueue(queueSize);
  }

  attach(port: Ps2Port | undefined): void {
    this.port = port;
  }

  hasData(): boolean {
    return this.queue.length > 0;
  }

  nextByte(): number | undefined {
    return this.queue.shift();
  }

  receive(byte: number): void {
    const b = byte & 0xff;
    if (this.pendingCommand !== PS2_NO_COMMAND) {
      const cmd = this.pendingCommand;
      this.pendingCommand = PS2_NO_COMMAND;
      this.argument(cmd, b);
      return;
    }
    this.command(b);
  }

  /** A command byte from the host (no command was waiting for an argument). */
  protected abstract command(b: number): void;

  /** The argument byte `b` of the pending command `cmd`. */
  protected abstract argument(cmd: number, b: number): void;

  /** Queues reply bytes, records the last one and tells the controller. */
  protected send(...bytes: number[]): void {
    for (const b of bytes) {
      this.queue.push(b);
      this.lastSent = b & 0xff;
    }
    this.port?.dataAvailable();
  }
}

/**
 * The 8042's set 2 -> set 1 translation for 0x00-0x7f; bytes from 0x80 up
 * pass through unchanged except 0x83 (F7) and 0x84 (SysRq). A 0xF0 (break
 * prefix in set 2) is swallowed and sets bit 7 of the next translated byte.
 */
const SET2_TO_SET1_LOW: readonly number[] = [
  0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59, 0x65, 0x38,
  0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b, 0x67, 0x2e, 0x2d, 0x20,
  0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d, 0x69, 0x31, 0x30, 0x23, 0x22, 0x15,
  0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f, 0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60,
  0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61, 0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36,
  0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76, 0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b,
  0x47, 0x7e, 0x7f, 0x6f, 0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49,
  0x46, 0x54,
];

export const SET2_TO_SET1: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (let i = 0; i < 256; i++) t[i] = i < 0x80 ? SET2_TO_SET1_LOW[i]! : i;
  t[0x83] = 0x41;
  t[0x84] = 0x54;
  return t;
})();

/**
 * Translates a sequence of set 2 bytes to set 1 (as the 8042 does with CTR
 * bit 6 set): `F0 xx` becomes `t[xx] | 0x80`. A trailing lone 0xF0 is dropped.
 */
export function translateSet2ToSet1(bytes: readonly number[]): number[] {
  const out: number[] = [];
  let brk = false;
  for (const raw of bytes) {
    const b = raw & 0xff;
    if (b === 0xf0) {
      brk = true;
      continue;
    }
    out.push(SET2_TO_SET1[b]! | (brk ? 0x80 : 0));
    brk = false;
  }
  return out;
}

export function isByteArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((b) => Number.isInteger(b) && b >= 0 && b <= 0xff);
}

export function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

export function hex2(n: number): string {
  return '0x' + (n & 0xff).toString(16).toUpperCase().padStart(2, '0');
}
