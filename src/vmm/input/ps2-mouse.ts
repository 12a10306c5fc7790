/**
 * PS/2 mouse behind the i8042's aux port (reached by the guest through
 * controller command 0xD4), with the IntelliMouse wheel extension: setting
 * the sample rate to 200, 100, 80 in a row switches the device ID to 3 and
 * packets to 4 bytes (the fourth is the wheel delta).
 *
 * Input sources call `move(dx, dy, buttons, wheel)` with evdev-style
 * conventions: dx > 0 right, dy > 0 down (screen coordinates), wheel > 0
 * scrolled up (away from the user); buttons bit 0 left, bit 1 right, bit 2
 * middle. The model converts to PS/2 packets (Y up, wheel down positive).
 */
import {
  DeviceStateError,
  expectVersion,
  type Device,
  type DeviceContext,
  type DeviceState,
} from '../core/device.js';
import { PS2_NO_COMMAND as NO_COMMAND, Ps2DeviceBase, hex2, isByteArray, isInt } from './ps2.js';

export interface Ps2MouseOptions {
  /** Instance name (default "ps2-mouse"). */
  name?: string;
}

const ACK = 0xfa;
const RESEND = 0xfe;
const BAT_OK = 0xaa;

const QUEUE_SIZE = 256;
/** Largest delta a packet carries (9-bit two's complement). */
const MAX_DELTA = 255;
const MAX_WHEEL = 127;
/** Packets one `move` may queue for a large motion. */
const MAX_PACKETS_PER_MOVE = 16;

export class Ps2Mouse extends Ps2DeviceBase implements Device {
  private reporting = false;
  private remote = false;
  private wrap = false;
  private scale21 = false;
  private resolution = 2;
  private sampleRate = 100;
  private id = 0;
  private recentRates: number[] = [];
  private buttonBits = 0;
  /** Motion not yet reported (PS/2 orientation: y up, z down). */
  private dx = 0;
  private dy = 0;
  private dz = 0;

  constructor(
    private readonly ctx: DeviceContext,
    options: Ps2MouseOptions = {},
  ) {
    super(options.name ?? 'ps2-mouse', QUEUE_SIZE);
  }

  /** Device ID the mouse reports to 0xF2: 0 standard, 3 IntelliMouse (wheel). */
  get deviceId(): number {
    return this.id;
  }

  /** Whether the guest enabled data reporting (0xF4). */
  get reportingEnabled(): boolean {
    return this.reporting;
  }

  /**
   * Reports motion and the button state. Ignored while the guest has
   * reporting disabled. In stream mode packets are queued at once (a large
   * motion is split across packets); in remote mode motion accumulates
   * until the guest polls with 0xEB.
   */
  move(dx: number, dy: number, buttons: number, wheel = 0): void {
    this.buttonBits = buttons & 0x07;
    if (!this.reporting) return;
    this.dx += Math.trunc(dx) || 0;
    this.dy -= Math.trunc(dy) || 0;
    this.dz -= Math.trunc(wheel) || 0;
    if (this.remote || this.wrap) return;
    const packetSize = this.id === 3 ? 4 : 3;
    for (let i = 0; i < MAX_PACKETS_PER_MOVE; i++) {
      if (this.queue.free < packetSize) break;
      this.queuePacket(true);
      if (this.dx === 0 && this.dy === 0 && this.dz === 0) break;
    }
    this.port?.dataAvailable();
  }

  protected command(b: number): void {
    if (this.wrap && b !== 0xec && b !== 0xff) {
      this.send(b); // wrap (echo) mode
      return;
    }
    switch (b) {
      case 0xff: // reset: ACK, self test passed, ID 0
        this.defaults();
        this.id = 0;
        this.wrap = false;
        this.remote = false;
        this.queue.clear();
        this.send(ACK, BAT_OK, 0x00);
        break;
      case 0xfe:
        this.send(this.lastSent);
        break;
      case 0xf6: // set defaults
        this.defaults();
        this.queue.clear();
        this.send(ACK);
        break;
      case 0xf5: // disable reporting
        this.reporting = false;
        this.queue.clear();
        this.send(ACK);
        break;
      case 0xf4: // enable reporting
        this.reporting = true;
        this.send(ACK);
        break;
      case 0xf3: // sample rate (+ argument)
      case 0xe8: // resolution (+ argument)
        this.pendingCommand = b;
        this.send(ACK);
        break;
      case 0xf2: // get device ID
        this.send(ACK, this.id);
        break;
      case 0xf0: // remote mode
        this.remote = true;
        this.send(ACK);
        break;
      case 0xee: // wrap mode
        this.wrap = true;
        this.send(ACK);
        break;
      case 0xec: // leave wrap mode
        this.wrap = false;
        this.send(ACK);
        break;
      case 0xeb: // read data (one packet)
        this.send(ACK);
        this.queuePacket(false);
        this.port?.dataAvailable();
        break;
      case 0xea: // stream mode
        this.remote = false;
        this.send(ACK);
        break;
      case 0xe9: // status request
        this.send(ACK, this.statusByte(), this.resolution, this.sampleRate);
        break;
      case 0xe7:
        this.scale21 = true;
        this.send(ACK);
        break;
      case 0xe6:
        this.scale21 = false;
        this.send(ACK);
        break;
      default:
        this.ctx.guestErrors.warn(`${this.name}-cmd`, () => `${this.name}: unknown mouse command ${hex2(b)}`);
        this.send(RESEND);
        break;
    }
  }

  protected argument(cmd: number, b: number): void {
    if (cmd === 0xf3) {
      this.sampleRate = b;
      this.recentRates = [...this.recentRates, b].slice(-3);
      const [r0, r1, r2] = this.recentRates;
      if (r0 === 200 && r1 === 100 && r2 === 80) this.id = 3;
      this.send(ACK);
    } else {
      this.resolution = b & 0x03;
      this.send(ACK);
    }
  }

  private statusByte(): number {
    // bit 6 remote, 5 enabled, 4 scaling 2:1, 2 left, 1 middle, 0 right
    const left = this.buttonBits & 1;
    const right = (this.buttonBits >> 1) & 1;
    const middle = (this.buttonBits >> 2) & 1;
    return (
      (this.remote ? 0x40 : 0) |
      (this.reporting ? 0x20 : 0) |
      (this.scale21 ? 0x10 : 0) |
      (left << 2) |
      (middle << 1) |
      right
    );
  }

  private queuePacket(stream: boolean): void {
    const x = clamp(this.dx, MAX_DELTA);
    const y = clamp(this.dy, MAX_DELTA);
    const z = clamp(this.dz, MAX_WHEEL);
    this.dx -= x;
    this.dy -= y;
    this.dz -= z;
    const sx = stream && this.scale21 ? clamp(scale21(x), MAX_DELTA) : x;
    const sy = stream && this.scale21 ? clamp(scale21(y), MAX_DELTA) : y;
    const head = 0x08 | (this.buttonBits & 0x07) | (sx < 0 ? 0x10 : 0) | (sy < 0 ? 0x20 : 0);
    const bytes = [head, sx & 0xff, sy & 0xff];
    if (this.id === 3) bytes.push(z & 0xff);
    for (const b of bytes) this.queue.push(b);
    this.lastSent = bytes[bytes.length - 1]!;
  }

  private defaults(): void {
    this.reporting = false;
    this.scale21 = false;
    this.resolution = 2;
    this.sampleRate = 100;
    this.recentRates = [];
    this.pendingCommand = NO_COMMAND;
    this.dx = this.dy = this.dz = 0;
  }

  reset(): void {
    this.defaults();
    this.id = 0;
    this.remote = false;
    this.wrap = false;
    this.queue.clear();
    this.lastSent = 0;
    this.buttonBits = 0;
  }

  saveState(): DeviceState {
    return {
      version: 1,
      queue: this.queue.toArray(),
      reporting: this.reporting,
      remote: this.remote,
      wrap: this.wrap,
      scale21: this.scale21,
      resolution: this.resolution,
      sampleRate: this.sampleRate,
      id: this.id,
      recentRates: [...this.recentRates],
      pendingCommand: this.pendingCommand,
      lastSent: this.lastSent,
      buttons: this.buttonBits,
      dx: this.dx,
      dy: this.dy,
      dz: this.dz,
    };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const s = state;
    if (
      !isByteArray(s.queue) ||
      typeof s.reporting !== 'boolean' ||
      typeof s.remote !== 'boolean' ||
      typeof s.wrap !== 'boolean' ||
      typeof s.scale21 !== 'boolean' ||
      !isInt(s.resolution, 0, 3) ||
      !isInt(s.sampleRate, 0, 0xff) ||
      !isInt(s.id, 0, 0xff) ||
      !isByteArray(s.recentRates) ||
      s.recentRates.length > 3 ||
      !isInt(s.pendingCommand, NO_COMMAND, 0xff) ||
      !isInt(s.lastSent, 0, 0xff) ||
      !isInt(s.buttons, 0, 7) ||
      !isInt(s.dx, -0x7fffffff, 0x7fffffff) ||
      !isInt(s.dy, -0x7fffffff, 0x7fffffff) ||
      !isInt(s.dz, -0x7fffffff, 0x7fffffff)
    ) {
      throw new DeviceStateError(`${this.name}: malformed state`);
    }
    this.queue.load(s.queue);
    this.reporting = s.reporting;
    this.remote = s.remote;
    this.wrap = s.wrap;
    this.scale21 = s.scale21;
    this.resolution = s.resolution;
    this.sampleRate = s.sampleRate;
    this.id = s.id;
    this.recentRates = [...s.recentRates];
    this.pendingCommand = s.pendingCommand;
    this.lastSent = s.lastSent;
    this.buttonBits = s.buttons;
    this.dx = s.dx;
    this.dy = s.dy;
    this.dz = s.dz;
  }
}

function clamp(v: number, max: number): number {
  return v > max ? max : v < -max ? -max : v;
}

/** 2:1 scaling as the PS/2 spec defines it for small motions. */
function scale21(v: number): number {
  const table = [0, 1, 1, 3, 6, 9];
  const a = Math.abs(v);
  const s = a < table.length ? table[a]! : 2 * a;
  return v < 0 ? -s : s;
}
