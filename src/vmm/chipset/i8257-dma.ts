/**
 * Legacy ISA DMA: two Intel 8237A controllers cascaded as on every PC/AT
 * (and in the PIIX/ICH south bridges that copy them), modelled the way
 * QEMU's hw/dma/i8257.c does: a device that wants DMA holds its DREQ, and
 * the controller calls the device back to move data while the channel is
 * unmasked (`transfer(pos, size)`), through `dmaRead`/`dmaWrite`, which
 * turn positions into guest-physical addresses and go through GuestMemory.
 *
 *  - DMA1, ports 0x00-0x0F: 8-bit channels 0-3 (byte counts, byte
 *    addresses inside a 64 KiB page).
 *  - DMA2, ports 0xC0-0xDF: 16-bit channels 4-7, registers on even ports
 *    (an odd port aliases the even one below it, as QEMU decodes them);
 *    counts are words and the address register holds a word address, so a
 *    transfer stays inside a 128 KiB page and page bit 0 is ignored.
 *  - Page registers 0x81-0x8F: 0x87 ch0, 0x83 ch1, 0x81 ch2, 0x82 ch3,
 *    0x8F ch4 (the refresh/cascade page), 0x8B ch5, 0x89 ch6, 0x8A ch7;
 *    the others are read/write scratch bytes. 8 page bits give the ISA
 *    16 MiB limit. Port 0x80 is the POST port, not ours.
 *  - Channel 4 is the cascade input from DMA1: it cannot be registered.
 *
 * Register the three ranges with (offsets are relative to each base):
 *
 *   pio.register(DMA1_PORT_BASE, DMA1_PORT_COUNT, dma.dma1Ports, dma.name);          // 0x00-0x0F
 *   pio.register(DMA2_PORT_BASE, DMA2_PORT_COUNT, dma.dma2Ports, dma.name);          // 0xC0-0xDF
 *   pio.register(DMA_PAGE_PORT_BASE, DMA_PAGE_PORT_COUNT, dma.pagePorts, dma.name);  // 0x81-0x8F
 *
 * Model (8237A datasheet, "Register description" and "Modes of operation"):
 *  - Transfers are instantaneous: single, demand and block mode behave the
 *    same (the whole programmed count may move in one callback); cascade
 *    mode on a DMA1 channel means no transfers. Memory-to-memory, fixed
 *    address, compressed timing, rotating priority and DREQ/DACK polarity
 *    (command register bits other than "controller disable") are not
 *    modelled; a guest setting them gets a logged guest error.
 *  - The transfer type in the mode register decides what reaches memory:
 *    `dmaWrite` (device to memory) writes only in "write" transfers,
 *    `dmaRead` reads memory only in "read" transfers; in verify transfers
 *    nothing is touched. Address decrement is honoured.
 *  - At terminal count the channel's TC status bit is set and, unless
 *    auto-initialize is on, its mask bit (8237A: "the mask bit is set when
 *    TC is reached"); with auto-initialize the current registers reload
 *    from the base registers.
 *  - DMA1 does not wait for channel 4 to be unmasked (QEMU does not model
 *    the cascade grant either), so direct-boot guests that never program
 *    the cascade still get their transfers.
 *  - A guest address outside RAM is a logged guest error: writes are
 *    dropped and reads see 0xFF, as on an ISA bus nobody answers.
 */
import {
  expectVersion,
  type AccessSize,
  type Device,
  type DeviceContext,
  type DeviceState,
  type IoHandler,
} from '../core/device.js';
import type { GuestMemory } from '../core/memory.js';
import {
  CMD_DISABLE,
  CMD_UNSUPPORTED,
  DMA_CASCADE_CHANNEL,
  DMA_MODE_READ,
  DMA_MODE_VERIFY,
  DMA_MODE_WRITE,
  DMA_PAGE_PORT_COUNT,
  MODE_DECREMENT,
  MODE_OP_CASCADE,
  MODE_OP_MASK,
  MODE_TYPE_MASK,
  PAGE_INDEX,
  REG_ALL_MASK,
  REG_CLEAR_FLIP_FLOP,
  REG_CLEAR_MASK,
  REG_MODE,
  REG_REQUEST,
  REG_SINGLE_MASK,
  REG_STATUS_COMMAND,
  REG_TEMP_MASTER_CLEAR,
  TYPE_NAMES,
  advanceChannel,
  bytewise,
  checkChannel,
  masterClear,
  newChannel,
  newController,
  parseDmaState,
  readControllerReg,
  saveDmaState,
  type Controller,
} from './i8257-channel.js';

export {
  DMA1_PORT_BASE,
  DMA1_PORT_COUNT,
  DMA2_PORT_BASE,
  DMA2_PORT_COUNT,
  DMA_CASCADE_CHANNEL,
  DMA_MODE_READ,
  DMA_MODE_VERIFY,
  DMA_MODE_WRITE,
  DMA_PAGE_PORT_BASE,
  DMA_PAGE_PORT_COUNT,
} from './i8257-channel.js';

/** A device that uses an ISA DMA channel (QEMU's DMA_transfer_handler). */
export interface IsaDmaClient {
  /**
   * Called while the channel is unmasked and the device holds DREQ (or the
   * guest set the channel's software request). `pos` is how many bytes the
   * programmed transfer has moved so far, `size` its length in bytes
   * ((count + 1) bytes or words). Move data with `dmaRead`/`dmaWrite`
   * starting at `pos` and return the new position (between `pos` and
   * `size`; `size` is terminal count). Returning `pos` means "nothing ready
   * yet": call `holdDreq` again when there is.
   */
  transfer(pos: number, size: number): number;
}

/** What an ISA DMA user (floppy, Sound Blaster, parallel ECP) sees of the controller. */
export interface IsaDma {
  registerChannel(channel: number, client: IsaDmaClient): void;
  /** Asserts DREQ and runs the transfer if the channel can go. Asserting it again re-runs it. */
  holdDreq(channel: number): void;
  releaseDreq(channel: number): void;
  /** Copies guest memory at transfer position `pos` into `buf[0..len)`; returns len. */
  dmaRead(channel: number, buf: Uint8Array, pos: number, len: number): number;
  /** Copies `buf[0..len)` to guest memory at transfer position `pos`; returns len. */
  dmaWrite(channel: number, buf: Uint8Array, pos: number, len: number): number;
  /** The channel's mode register (bits 3-2: 00 verify, 01 write to memory, 10 read from memory). */
  channelMode(channel: number): number;
}

export interface I8257DmaOptions {
  /** Guest RAM the controllers transfer to and from. */
  memory: GuestMemory;
  /** Instance name (default "dma"). */
  name?: string;
}

/** Transfers one run may call back per channel before it gives up (a client that never finishes). */
const MAX_CALLBACKS_PER_RUN = 64;

export class I8257Dma implements Device, IsaDma {
  readonly name: string;
  /** Ports 0x00-0x0F. */
  readonly dma1Ports: IoHandler;
  /** Ports 0xC0-0xDF. */
  readonly dma2Ports: IoHandler;
  /** Ports 0x81-0x8F. */
  readonly pagePorts: IoHandler;

  private readonly memory: GuestMemory;
  private readonly controllers: [Controller, Controller] = [newController(0), newController(1)];
  private readonly pages = new Uint8Array(DMA_PAGE_PORT_COUNT);
  private readonly clients: (IsaDmaClient | undefined)[] = new Array<IsaDmaClient | undefined>(8);
  private running = false;
  private rerun = false;

  constructor(
    private readonly ctx: DeviceContext,
    options: I8257DmaOptions,
  ) {
    this.name = options.name ?? 'dma';
    this.memory = options.memory;
    this.dma1Ports = this.portHandler(0);
    this.dma2Ports = this.portHandler(1);
    this.pagePorts = {
      read: (offset, size) => bytewise(size, (i) => this.pages[offset + i] ?? 0xff),
      write: (offset, size, value) => {
        for (let i = 0; i < size; i++) {
          if (offset + i < DMA_PAGE_PORT_COUNT) this.pages[offset + i] = (value >>> (8 * i)) & 0xff;
        }
      },
    };
  }

  // --- the ISA DMA API ---------------------------------------------------------

  registerChannel(channel: number, client: IsaDmaClient): void {
    checkChannel(channel);
    if (channel === DMA_CASCADE_CHANNEL) {
      throw new RangeError(`${this.name}: channel 4 is the cascade from DMA1 and cannot be used by a device`);
    }
    if (this.clients[channel]) throw new RangeError(`${this.name}: channel ${channel} is already in use`);
    this.clients[channel] = client;
  }

  holdDreq(channel: number): void {
    checkChannel(channel);
    this.controllers[channel >> 2].dreq |= 1 << (channel & 3);
    this.run();
  }

  releaseDreq(channel: number): void {
    checkChannel(channel);
    this.controllers[channel >> 2].dreq &= ~(1 << (channel & 3));
  }

  channelMode(channel: number): number {
    checkChannel(channel);
    return this.controllers[channel >> 2].channels[channel & 3]!.mode;
  }

  dmaRead(channel: number, buf: Uint8Array, pos: number, len: number): number {
    checkChannel(channel);
    const n = Math.max(0, Math.min(len, buf.length));
    const type = this.channelMode(channel) & MODE_TYPE_MASK;
    if (type !== DMA_MODE_READ) {
      if (type !== DMA_MODE_VERIFY) this.modeMismatch(channel, type, 'read from');
      buf.fill(0xff, 0, n);
      return len;
    }
    this.forEachSpan(channel, pos, n, (gpa, at, count) => {
      const ok = this.copyGuest(gpa, count, (view, off) => buf.set(view, at + off));
      if (!ok) buf.fill(0xff, at, at + count);
    });
    return len;
  }

  dmaWrite(channel: number, buf: Uint8Array, pos: number, len: number): number {
    checkChannel(channel);
    const n = Math.max(0, Math.min(len, buf.length));
    const type = this.channelMode(channel) & MODE_TYPE_MASK;
    if (type !== DMA_MODE_WRITE) {
      if (type !== DMA_MODE_VERIFY) this.modeMismatch(channel, type, 'write to');
      return len;
    }
    this.forEachSpan(channel, pos, n, (gpa, at, count) => {
      this.copyGuest(gpa, count, (view, off) => view.set(buf.subarray(at + off, at + off + view.length)));
    });
    return len;
  }

  /** The channel's current guest-physical address (for tests and debugging). */
  currentAddress(channel: number): number {
    checkChannel(channel);
    const c = this.controllers[channel >> 2];
    const ch = c.channels[channel & 3]!;
    return this.physical(channel, c.dshift ? ch.curAddr << 1 : ch.curAddr);
  }

  // --- port I/O --------------------------------------------------------------

  private portHandler(index: 0 | 1): IoHandler {
    const c = this.controllers[index];
    return {
      read: (offset: number, size: AccessSize) =>
        bytewise(size, (i) => readControllerReg(c, ((offset + i) >> c.dshift) & 0xf)),
      write: (offset: number, size: AccessSize, value: number) => {
        for (let i = 0; i < size; i++) {
          this.writeReg(c, ((offset + i) >> c.dshift) & 0xf, (value >>> (8 * i)) & 0xff);
        }
      },
    };
  }

  private writeReg(c: Controller, reg: number, v: number): void {
    if (reg < 8) {
      const ch = c.channels[reg >> 1]!;
      const high = c.flipFlop;
      c.flipFlop = !c.flipFlop;
      const set = (old: number): number => (high ? (old & 0xff) | (v << 8) : (old & 0xff00) | v);
      // Writing a channel register writes the base and the current register (8237A).
      if (reg & 1) {
        ch.baseCount = set(ch.baseCount);
        ch.curCount = ch.baseCount;
        ch.pos = 0;
      } else {
        ch.baseAddr = set(ch.baseAddr);
        ch.curAddr = ch.baseAddr;
      }
      return;
    }
    switch (reg) {
      case REG_STATUS_COMMAND:
        if (v & CMD_UNSUPPORTED) {
          this.guestError(
            'command',
            () =>
              `${this.name}: command register 0x${v.toString(16)} asks for unsupported modes; only "controller disable" is honoured`,
          );
        }
        c.command = v;
        this.run();
        return;
      case REG_REQUEST:
        if (v & 4) c.request |= 1 << (v & 3);
        else c.request &= ~(1 << (v & 3));
        this.run();
        return;
      case REG_SINGLE_MASK:
        if (v & 4) c.mask |= 1 << (v & 3);
        else c.mask &= ~(1 << (v & 3));
        this.run();
        return;
      case REG_MODE:
        c.channels[v & 3]!.mode = v;
        return;
      case REG_CLEAR_FLIP_FLOP:
        c.flipFlop = false;
        return;
      case REG_TEMP_MASTER_CLEAR:
        masterClear(c);
        return;
      case REG_CLEAR_MASK:
        c.mask = 0;
        this.run();
        return;
      case REG_ALL_MASK:
        c.mask = v & 0xf;
        this.run();
        return;
    }
  }

  // --- transfers -------------------------------------------------------------

  private canRun(channel: number): boolean {
    const c = this.controllers[channel >> 2];
    const bit = 1 << (channel & 3);
    const ch = c.channels[channel & 3]!;
    return (
      this.clients[channel] !== undefined &&
      (c.command & CMD_DISABLE) === 0 &&
      (c.mask & bit) === 0 &&
      ((c.dreq | c.request) & bit) !== 0 &&
      (ch.mode & MODE_OP_MASK) !== MODE_OP_CASCADE
    );
  }

  /** Calls back every channel that can transfer (re-entrant calls from a callback run again after it). */
  private run(): void {
    if (this.running) {
      this.rerun = true;
      return;
    }
    this.running = true;
    try {
      let rounds = 0;
      do {
        this.rerun = false;
        for (let channel = 0; channel < 8; channel++) {
          if (channel !== DMA_CASCADE_CHANNEL && this.canRun(channel)) this.runChannel(channel);
        }
      } while (this.rerun && ++rounds < MAX_CALLBACKS_PER_RUN);
    } finally {
      this.running = false;
      this.rerun = false;
    }
  }

  private runChannel(channel: number): void {
    const c = this.controllers[channel >> 2];
    const ch = c.channels[channel & 3]!;
    const client = this.clients[channel]!;
    for (let calls = 0; calls < MAX_CALLBACKS_PER_RUN && this.canRun(channel); calls++) {
      const pos = ch.pos << c.dshift;
      const size = (ch.pos + ch.curCount + 1) << c.dshift;
      let next: number;
      try {
        next = client.transfer(pos, size);
      } catch (err) {
        this.ctx.log.error(
          `${this.name}: channel ${channel} transfer callback failed: ${err instanceof Error ? err.message : String(err)}`,
        );
        return;
      }
      if (!Number.isSafeInteger(next) || next < pos || next > size) {
        this.ctx.log.error(
          `${this.name}: channel ${channel} callback returned position ${next} outside ${pos}..${size}`,
        );
        return;
      }
      const units = (next - pos) >> c.dshift;
      if (units === 0) return; // nothing ready: the device asserts DREQ again when it is
      advanceChannel(c, channel & 3, units);
    }
  }

  /** Guest-physical address of byte offset `byteOff` in the channel's 64 KiB (128 KiB) window. */
  private physical(channel: number, byteOff: number): number {
    const page = this.pages[PAGE_INDEX[channel]!]!;
    return channel < 4 ? page * 0x10000 + (byteOff & 0xffff) : (page & 0xfe) * 0x10000 + (byteOff & 0x1ffff);
  }

  /**
   * Calls `fn(gpa, bufOffset, count)` for the guest ranges that bytes
   * [pos, pos+len) of the channel's transfer occupy: the address wraps
   * inside the page (the page register never increments) and runs
   * downwards in decrement mode (word by word on 16-bit channels).
   */
  private forEachSpan(
    channel: number,
    pos: number,
    len: number,
    fn: (gpa: number, bufOffset: number, count: number) => void,
  ): void {
    if (len <= 0) return;
    const c = this.controllers[channel >> 2];
    const ch = c.channels[channel & 3]!;
    const unit = 1 << c.dshift;
    const window = 0x10000 << c.dshift;
    const rel = pos - (ch.pos << c.dshift); // bytes from the current address
    const start = ch.curAddr << c.dshift; // byte offset of the current address in the window
    if (!(ch.mode & MODE_DECREMENT)) {
      let off = (((start + rel) % window) + window) % window;
      let at = 0;
      while (at < len) {
        const count = Math.min(len - at, window - off);
        fn(this.physical(channel, off), at, count);
        at += count;
        off = 0;
      }
      return;
    }
    for (let at = 0; at < len;) {
      const byte = rel + at;
      const u = Math.floor(byte / unit);
      const inUnit = byte - u * unit;
      const count = Math.min(unit - inUnit, len - at);
      const off = ((((start - u * unit) % window) + window) % window) + inUnit;
      fn(this.physical(channel, off), at, count);
      at += count;
    }
  }

  /** Runs `fn` on host views of guest [gpa, gpa+len), split at RAM region edges; false if outside RAM. */
  private copyGuest(gpa: number, len: number, fn: (view: Uint8Array, offset: number) => void): boolean {
    const whole = this.memory.tryView(gpa, len);
    if (whole) {
      fn(whole, 0);
      return true;
    }
    const views: Uint8Array[] = [];
    for (let at = gpa, left = len; left > 0;) {
      const r = this.memory.list().find((reg) => at >= reg.gpa && at < reg.gpa + reg.size);
      if (!r) {
        this.guestError(
          'memory',
          () =>
            `${this.name}: DMA to guest memory 0x${gpa.toString(16)}+0x${len.toString(16)} outside RAM ignored`,
        );
        return false;
      }
      const n = Math.min(left, r.gpa + r.size - at);
      views.push(r.bytes.subarray(at - r.gpa, at - r.gpa + n));
      at += n;
      left -= n;
    }
    let offset = 0;
    for (const v of views) {
      fn(v, offset);
      offset += v.length;
    }
    return true;
  }

  private modeMismatch(channel: number, type: number, what: string): void {
    this.guestError(
      `mode-${channel}`,
      () =>
        `${this.name}: a device tried to ${what} memory on channel ${channel}, programmed for a ${TYPE_NAMES[type]} transfer; nothing transferred`,
    );
  }

  private guestError(kind: string, msg: () => string): void {
    this.ctx.guestErrors.warn(`${this.name}-${kind}`, msg);
  }

  // --- Device ----------------------------------------------------------------

  /** Power-on state: both controllers master-cleared, registers and pages zero. DREQs from devices stay. */
  reset(): void {
    for (const c of this.controllers) {
      masterClear(c);
      for (let i = 0; i < 4; i++) c.channels[i] = newChannel();
    }
    this.pages.fill(0);
  }

  saveState(): DeviceState {
    return saveDmaState(this.controllers, this.pages);
  }

  /** Restores registers (DREQ lines belong to the devices, which re-assert them), then runs pending transfers. */
  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const { controllers: parsed, pages } = parseDmaState(this.name, state);
    parsed.forEach(({ o, channels }, i) => {
      const c = this.controllers[i as 0 | 1];
      c.command = o.command as number;
      c.mask = o.mask as number;
      c.tc = o.tc as number;
      c.request = o.request as number;
      c.flipFlop = o.flipFlop as boolean;
      channels.forEach((ch, j) => (c.channels[j] = ch));
    });
    this.pages.set(pages);
    this.run();
  }
}
