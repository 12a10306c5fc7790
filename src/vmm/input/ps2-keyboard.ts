/**
 * PS/2 (MF2 AT) keyboard behind the i8042's first port.
 *
 * The keyboard speaks scancode set 2 natively; with the controller's
 * translation on (CTR bit 6, the PC default), the controller turns every
 * byte it forwards into set 1, so the identify reply `FA AB 83` reaches the
 * guest as `FA AB 41`, as on real hardware. Input sources call
 * `pressKey(bytes)` with set 2 make/break sequences (e.g. `[0x1c]` press
 * 'A', `[0xf0, 0x1c]` release, `[0xe0, 0x75]` up arrow).
 */
import {
  DeviceStateError,
  expectVersion,
  type Device,
  type DeviceContext,
  type DeviceState,
} from '../core/device.js';
import {
  PS2_NO_COMMAND as NO_COMMAND,
  Ps2DeviceBase,
  hex2,
  isByteArray,
  isInt,
  translateSet2ToSet1,
} from './ps2.js';

export interface Ps2KeyboardOptions {
  /** Instance name (default "ps2-kbd"). */
  name?: string;
  /** Called when the guest sets the LEDs (bit 0 scroll, 1 num, 2 caps lock). */
  onLeds?: (leds: number) => void;
}

const ACK = 0xfa;
const RESEND = 0xfe;
const BAT_OK = 0xaa;
const ECHO = 0xee;

/** Bytes of queue space kept for command replies when key input fills it. */
const REPLY_RESERVE = 8;
const QUEUE_SIZE = 256;

export class Ps2Keyboard extends Ps2DeviceBase implements Device {
  private scanning = true;
  private set = 2;
  private ledBits = 0;
  private typematic = 0x2b;

  constructor(
    private readonly ctx: DeviceContext,
    private readonly options: Ps2KeyboardOptions = {},
  ) {
    super(options.name ?? 'ps2-kbd', QUEUE_SIZE);
  }

  /** LED state last set by the guest (bit 0 scroll, 1 num, 2 caps lock). */
  get leds(): number {
    return this.ledBits;
  }

  /** Scancode set selected by the guest (1, 2 or 3). */
  get scancodeSet(): number {
    return this.set;
  }

  get scanningEnabled(): boolean {
    return this.scanning;
  }

  /**
   * Queues one key event given as scancode set 2 bytes. Dropped while the
   * guest has scanning disabled or the queue is full. If the guest chose
   * set 1 (without controller translation) the bytes are converted; set 3
   * is not modelled (set 2 bytes are sent as they are).
   */
  pressKey(scancodeBytes: number[]): boolean {
    if (!this.scanning || scancodeBytes.length === 0) return false;
    const bytes = this.set === 1 ? translateSet2ToSet1(scancodeBytes) : scancodeBytes.map((b) => b & 0xff);
    if (this.queue.free - REPLY_RESERVE < bytes.length) {
      this.ctx.log.debug(`${this.name}: queue full, key dropped`);
      return false;
    }
    this.send(...bytes);
    return true;
  }

  protected command(b: number): void {
    switch (b) {
      case 0xff: // reset and self test
        this.defaults();
        this.scanning = true;
        this.queue.clear();
        this.send(ACK, BAT_OK);
        break;
      case 0xfe: // resend the last byte
        this.send(this.lastSent);
        break;
      case 0xf6: // set defaults, keep scanning
        this.defaults();
        this.scanning = true;
        this.queue.clear();
        this.send(ACK);
        break;
      case 0xf5: // set defaults, disable scanning
        this.defaults();
        this.scanning = false;
        this.queue.clear();
        this.send(ACK);
        break;
      case 0xf4: // enable scanning
        this.scanning = true;
        this.send(ACK);
        break;
      case 0xf3: // typematic rate/delay (+ argument)
      case 0xf0: // get/set scancode set (+ argument)
      case 0xed: // LEDs (+ argument)
        this.pendingCommand = b;
        this.send(ACK);
        break;
      case 0xf2: // identify: MF2 keyboard
        this.send(ACK, 0xab, 0x83);
        break;
      case 0xee:
        this.send(ECHO);
        break;
      case 0xf7: // set 3 key type commands: accepted, no effect
      case 0xf8:
      case 0xf9:
      case 0xfa:
        this.send(ACK);
        break;
      case 0xfb: // set 3 key type for one key (+ argument)
      case 0xfc:
      case 0xfd:
        this.pendingCommand = b;
        this.send(ACK);
        break;
      default:
        this.ctx.guestErrors.warn(
          `${this.name}-cmd`,
          () => `${this.name}: unknown keyboard command ${hex2(b)}`,
        );
        this.send(RESEND);
        break;
    }
  }

  protected argument(cmd: number, b: number): void {
    switch (cmd) {
      case 0xed:
        this.ledBits = b & 0x07;
        this.send(ACK);
        this.options.onLeds?.(this.ledBits);
        break;
      case 0xf3:
        this.typematic = b & 0x7f;
        this.send(ACK);
        break;
      case 0xf0:
        if (b === 0) {
          this.send(ACK, this.set);
        } else if (b >= 1 && b <= 3) {
          this.set = b;
          this.send(ACK);
        } else {
          this.ctx.guestErrors.warn(`${this.name}-set`, () => `${this.name}: bad scancode set ${hex2(b)}`);
          this.send(RESEND);
        }
        break;
      default: // 0xfb-0xfd key argument
        this.send(ACK);
        break;
    }
  }

  private defaults(): void {
    this.set = 2;
    this.typematic = 0x2b;
    this.pendingCommand = NO_COMMAND;
    if (this.ledBits !== 0) {
      this.ledBits = 0;
      this.options.onLeds?.(0);
    }
  }

  reset(): void {
    this.defaults();
    this.scanning = true;
    this.queue.clear();
    this.lastSent = 0;
  }

  saveState(): DeviceState {
    return {
      version: 1,
      queue: this.queue.toArray(),
      scanning: this.scanning,
      scancodeSet: this.set,
      leds: this.ledBits,
      typematic: this.typematic,
      pendingCommand: this.pendingCommand,
      lastSent: this.lastSent,
    };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const { queue, scanning, scancodeSet, leds, typematic, pendingCommand, lastSent } = state;
    if (
      !isByteArray(queue) ||
      typeof scanning !== 'boolean' ||
      !isInt(scancodeSet, 1, 3) ||
      !isInt(leds, 0, 7) ||
      !isInt(typematic, 0, 0xff) ||
      !isInt(pendingCommand, NO_COMMAND, 0xff) ||
      !isInt(lastSent, 0, 0xff)
    ) {
      throw new DeviceStateError(`${this.name}: malformed state`);
    }
    this.queue.load(queue);
    this.scanning = scanning;
    this.set = scancodeSet;
    this.ledBits = leds;
    this.typematic = typematic;
    this.pendingCommand = pendingCommand;
    this.lastSent = lastSent;
    this.options.onLeds?.(leds);
  }
}
