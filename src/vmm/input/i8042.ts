/**
 * Intel 8042 PS/2 controller ("keyboard controller") at ports 0x60/0x64.
 *
 * The machine registers the two ports as separate 1-byte ranges:
 *   pio.register(0x60, 1, i8042.dataPort, 'i8042');
 *   pio.register(0x64, 1, i8042.commandPort, 'i8042');
 * (the pair is not contiguous: 0x61 is the PIT/speaker control port).
 *
 * Model: a one-byte output buffer fed, whenever it is empty, from (in this
 * order) the controller's own replies, the keyboard's queue and the mouse's
 * queue. A byte from the keyboard is translated to scancode set 1 while CTR
 * bit 6 is set. IRQ 1 (keyboard byte) / IRQ 12 (mouse byte) follow "output
 * buffer full" when CTR bits 0 / 1 allow it; reading port 0x60 lowers the
 * line and refills the buffer, which raises it again for the next byte.
 * Disabling a port (CTR bits 4/5) holds that device's bytes back.
 *
 * Status register (port 0x64 read): bit 0 OBF, 1 IBF (always 0: writes are
 * consumed at once), 2 SYS (CTR bit 2), 3 A2 (last write was to 0x64),
 * 4 not inhibited (always 1), 5 AUXB (the buffered byte is from the mouse).
 */
import {
  DeviceStateError,
  expectVersion,
  type AccessSize,
  type Device,
  type DeviceContext,
  type DeviceState,
  type IoHandler,
} from '../core/device.js';
import { SET2_TO_SET1, hex2, isByteArray, isInt, type Ps2Device, type Ps2Port } from './ps2.js';

export const I8042_DATA_PORT = 0x60;
export const I8042_COMMAND_PORT = 0x64;

export interface I8042Options {
  /** Device on the first (keyboard) port. */
  keyboard: Ps2Device;
  /** Device on the aux (mouse) port, if any. */
  mouse?: Ps2Device;
  /** Instance name (default "i8042"). */
  name?: string;
  /** Keyboard interrupt line (default 1). */
  keyboardIrq?: number;
  /** Mouse interrupt line (default 12). */
  mouseIrq?: number;
  /** Called when the guest changes the A20 gate (output port bit 1, 0xDD/0xDF). */
  onA20?: (enabled: boolean) => void;
}

// Status register
const STS_OBF = 0x01;
const STS_SYS = 0x04;
const STS_A2 = 0x08;
const STS_NOT_INHIBITED = 0x10;
const STS_AUXB = 0x20;

// Controller configuration byte (RAM byte 0)
const CTR_KBDINT = 0x01;
const CTR_AUXINT = 0x02;
const CTR_SYS = 0x04;
const CTR_KBDDIS = 0x10;
const CTR_AUXDIS = 0x20;
const CTR_XLATE = 0x40;

// Output port
const OUT_RESET = 0x01; // 1 = running, 0 = CPU reset
const OUT_A20 = 0x02;
const OUT_KBD_OBF = 0x10;
const OUT_AUX_OBF = 0x20;
/** Power-on output port: not in reset, A20 on, keyboard clock/data lines high. */
const OUT_DEFAULT = 0xcf;

const CTR_DEFAULT = CTR_KBDINT | CTR_AUXINT | CTR_XLATE;

/** Controller replies queued (bounded: a guest could spam 0x20). */
const CONTROLLER_QUEUE_SIZE = 16;

/** No controller command waits for a data byte on port 0x60. */
const NO_COMMAND = 0;

interface ControllerByte {
  byte: number;
  aux: boolean;
}

export class I8042 implements Device {
  readonly name: string;
  /** Port 0x60 (offset 0): data in/out. */
  readonly dataPort: IoHandler;
  /** Port 0x64 (offset 0): status (read) / command (write). */
  readonly commandPort: IoHandler;

  private readonly keyboard: Ps2Device;
  private readonly mouse: Ps2Device | undefined;
  private readonly kbdIrq: number;
  private readonly auxIrq: number;

  /** Controller RAM; byte 0 is the configuration byte (CTR). */
  private readonly ram = new Uint8Array(32);
  private outByte = 0;
  private obf = false;
  private obAux = false;
  private a2 = true;
  private outPort = OUT_DEFAULT;
  /** Command written to 0x64 that takes its argument from 0x60, or 0. */
  private pendingCommand = NO_COMMAND;
  private controllerQueue: ControllerByte[] = [];
  /** A set 2 break prefix (0xF0) was swallowed by translation. */
  private xlatBreak = false;
  private kbdLevel = false;
  private auxLevel = false;

  constructor(
    private readonly ctx: DeviceContext,
    private readonly options: I8042Options,
  ) {
    this.name = options.name ?? 'i8042';
    this.keyboard = options.keyboard;
    this.mouse = options.mouse;
    this.kbdIrq = options.keyboardIrq ?? 1;
    this.auxIrq = options.mouseIrq ?? 12;
    this.ram[0] = CTR_DEFAULT;
    const port: Ps2Port = { dataAvailable: () => this.refill() };
    this.keyboard.attach(port);
    this.mouse?.attach(port);
    this.dataPort = {
      read: (_offset: number, _size: AccessSize) => this.readData(),
      write: (_offset: number, _size: AccessSize, value: number) => this.writeData(value & 0xff),
    };
    this.commandPort = {
      read: (_offset: number, _size: AccessSize) => this.readStatus(),
      write: (_offset: number, _size: AccessSize, value: number) => this.writeCommand(value & 0xff),
    };
  }

  /** Controller configuration byte. */
  get ctr(): number {
    return this.ram[0]!;
  }

  /** Status register as the guest reads it from port 0x64. */
  get status(): number {
    return this.readStatus();
  }

  /** A20 gate (output port bit 1). */
  get a20Enabled(): boolean {
    return (this.outPort & OUT_A20) !== 0;
  }

  private readStatus(): number {
    let s = STS_NOT_INHIBITED;
    if (this.obf) s |= STS_OBF;
    if (this.obf && this.obAux) s |= STS_AUXB;
    if (this.ctr & CTR_SYS) s |= STS_SYS;
    if (this.a2) s |= STS_A2;
    return s;
  }

  private readData(): number {
    if (!this.obf) return this.outByte; // empty: the last byte again, as a real 8042 does
    const v = this.outByte;
    this.obf = false;
    this.updateIrq();
    this.refill();
    return v;
  }

  private writeData(v: number): void {
    this.a2 = false;
    const cmd = this.pendingCommand;
    this.pendingCommand = NO_COMMAND;
    if (cmd === NO_COMMAND) {
      // Sending to the keyboard re-enables its interface.
      this.setCtr(this.ctr & ~CTR_KBDDIS);
      this.keyboard.receive(v);
      this.refill();
      return;
    }
    if (cmd >= 0x60 && cmd <= 0x7f) {
      if (cmd === 0x60) this.setCtr(v);
      else this.ram[cmd & 0x1f] = v;
      return;
    }
    switch (cmd) {
      case 0xd1:
        this.writeOutputPort(v);
        break;
      case 0xd2:
        this.reply(v, false);
        break;
      case 0xd3:
        this.reply(v, true);
        break;
      case 0xd4:
        if (this.mouse) {
          this.setCtr(this.ctr & ~CTR_AUXDIS);
          this.mouse.receive(v);
          this.refill();
        } else {
          this.reply(0xfe, true); // no device: time-out reply
        }
        break;
    }
  }

  private writeCommand(cmd: number): void {
    this.a2 = true;
    this.pendingCommand = NO_COMMAND;
    if (cmd >= 0x20 && cmd <= 0x3f) {
      this.reply(this.ram[cmd & 0x1f]!, false);
      return;
    }
    if ((cmd >= 0x60 && cmd <= 0x7f) || (cmd >= 0xd1 && cmd <= 0xd4)) {
      this.pendingCommand = cmd;
      return;
    }
    if (cmd >= 0xf0) {
      // Pulse output port bits 3-0 low for those clear in the mask; bit 0 is CPU reset.
      if ((cmd & 0x01) === 0) this.ctx.requestReset(`i8042 reset (${hex2(cmd)})`);
      return;
    }
    switch (cmd) {
      case 0xa4: // password installed? no
        this.reply(0xf1, false);
        break;
      case 0xa7:
        this.setCtr(this.ctr | CTR_AUXDIS);
        break;
      case 0xa8:
        this.setCtr(this.ctr & ~CTR_AUXDIS);
        break;
      case 0xa9: // aux interface test: 0 = ok
        this.reply(this.mouse ? 0x00 : 0x02, false);
        break;
      case 0xaa: // self test
        this.setCtr(this.ctr | CTR_SYS);
        this.reply(0x55, false);
        break;
      case 0xab: // keyboard interface test: 0 = ok
        this.reply(0x00, false);
        break;
      case 0xad:
        this.setCtr(this.ctr | CTR_KBDDIS);
        break;
      case 0xae:
        this.setCtr(this.ctr & ~CTR_KBDDIS);
        break;
      case 0xc0: // input port: keyboard not inhibited
        this.reply(0x80, false);
        break;
      case 0xd0:
        this.reply(this.outputPort(), false);
        break;
      case 0xdd:
        this.writeOutputPort(this.outPort & ~OUT_A20);
        break;
      case 0xdf:
        this.writeOutputPort(this.outPort | OUT_A20);
        break;
      case 0xe0: // test inputs: clock and data low
        this.reply(0x00, false);
        break;
      default:
        this.ctx.guestErrors.warn(
          `${this.name}-cmd`,
          () => `${this.name}: unsupported controller command ${hex2(cmd)}`,
        );
        break;
    }
  }

  private outputPort(): number {
    let v = this.outPort & ~(OUT_KBD_OBF | OUT_AUX_OBF);
    if (this.obf) v |= this.obAux ? OUT_AUX_OBF : OUT_KBD_OBF;
    return v;
  }

  private writeOutputPort(v: number): void {
    const a20Before = this.outPort & OUT_A20;
    this.outPort = (v & ~(OUT_KBD_OBF | OUT_AUX_OBF)) | OUT_RESET;
    if ((this.outPort & OUT_A20) !== a20Before) this.options.onA20?.((this.outPort & OUT_A20) !== 0);
    if ((v & OUT_RESET) === 0) this.ctx.requestReset('i8042 output port');
  }

  private setCtr(v: number): void {
    const old = this.ctr;
    this.ram[0] = v & 0xff;
    if ((old ^ v) & CTR_XLATE) this.xlatBreak = false;
    this.updateIrq();
    this.refill();
  }

  private reply(byte: number, aux: boolean): void {
    if (this.controllerQueue.length >= CONTROLLER_QUEUE_SIZE) {
      this.ctx.guestErrors.warn(`${this.name}-overrun`, () => `${this.name}: controller reply queue overrun`);
      return;
    }
    this.controllerQueue.push({ byte: byte & 0xff, aux });
    this.refill();
  }

  /** Moves the next pending byte into the output buffer if it is empty. */
  private refill(): void {
    if (this.obf) return;
    const c = this.controllerQueue.shift();
    if (c) {
      this.load(c.byte, c.aux);
      return;
    }
    if (!(this.ctr & CTR_KBDDIS)) {
      for (;;) {
        const b = this.keyboard.nextByte();
        if (b === undefined) break;
        if (!(this.ctr & CTR_XLATE)) {
          this.load(b, false);
          return;
        }
        if (b === 0xf0) {
          this.xlatBreak = true;
          continue;
        }
        const t = SET2_TO_SET1[b & 0xff]! | (this.xlatBreak ? 0x80 : 0);
        this.xlatBreak = false;
        this.load(t, false);
        return;
      }
    }
    if (this.mouse && !(this.ctr & CTR_AUXDIS)) {
      const b = this.mouse.nextByte();
      if (b !== undefined) {
        this.load(b, true);
        return;
      }
    }
  }

  private load(byte: number, aux: boolean): void {
    this.outByte = byte & 0xff;
    this.obAux = aux;
    this.obf = true;
    this.updateIrq();
  }

  private updateIrq(force = false): void {
    const kbd = this.obf && !this.obAux && (this.ctr & CTR_KBDINT) !== 0;
    const aux = this.obf && this.obAux && (this.ctr & CTR_AUXINT) !== 0;
    if (force || kbd !== this.kbdLevel) {
      this.kbdLevel = kbd;
      this.ctx.irq.setIrq(this.kbdIrq, kbd);
    }
    if (force || aux !== this.auxLevel) {
      this.auxLevel = aux;
      this.ctx.irq.setIrq(this.auxIrq, aux);
    }
  }

  /** Power-on state of the controller (the keyboard and mouse are reset by the machine). */
  reset(): void {
    this.ram.fill(0);
    this.ram[0] = CTR_DEFAULT;
    this.outByte = 0;
    this.obf = false;
    this.obAux = false;
    this.a2 = true;
    this.pendingCommand = NO_COMMAND;
    this.controllerQueue = [];
    this.xlatBreak = false;
    const a20Before = this.outPort & OUT_A20;
    this.outPort = OUT_DEFAULT;
    if (!a20Before) this.options.onA20?.(true);
    this.updateIrq();
    this.refill();
  }

  saveState(): DeviceState {
    return {
      version: 1,
      ram: Array.from(this.ram),
      outByte: this.outByte,
      obf: this.obf,
      obAux: this.obAux,
      a2: this.a2,
      outPort: this.outPort,
      pendingCommand: this.pendingCommand,
      controllerQueue: this.controllerQueue.map((c) => ({ byte: c.byte, aux: c.aux })),
      xlatBreak: this.xlatBreak,
    };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const s = state;
    const queue = s.controllerQueue;
    if (
      !isByteArray(s.ram) ||
      s.ram.length !== this.ram.length ||
      !isInt(s.outByte, 0, 0xff) ||
      typeof s.obf !== 'boolean' ||
      typeof s.obAux !== 'boolean' ||
      typeof s.a2 !== 'boolean' ||
      !isInt(s.outPort, 0, 0xff) ||
      !isInt(s.pendingCommand, 0, 0xff) ||
      typeof s.xlatBreak !== 'boolean' ||
      !Array.isArray(queue) ||
      queue.length > CONTROLLER_QUEUE_SIZE ||
      !queue.every(isControllerByte)
    ) {
      throw new DeviceStateError(`${this.name}: malformed state`);
    }
    this.ram.set(s.ram);
    this.outByte = s.outByte;
    this.obf = s.obf;
    this.obAux = s.obAux;
    this.a2 = s.a2;
    const a20Before = this.outPort & OUT_A20;
    this.outPort = s.outPort;
    if ((this.outPort & OUT_A20) !== a20Before) this.options.onA20?.((this.outPort & OUT_A20) !== 0);
    this.pendingCommand = s.pendingCommand;
    this.controllerQueue = queue.map((c) => ({ byte: c.byte, aux: c.aux }));
    this.xlatBreak = s.xlatBreak;
    this.updateIrq(true);
    this.refill();
  }
}

function isControllerByte(v: unknown): v is ControllerByte {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return isInt(o.byte, 0, 0xff) && typeof o.aux === 'boolean';
}
