/**
 * 16550A UART (National Semiconductor PC16550D, "UART with FIFOs", and the
 * TI TL16C550 that copies it), wired as on a PC: eight byte registers at
 * the port base, the INTR output reaching the interrupt controller only
 * while MCR OUT2 is set.
 *
 * Model:
 *  - The transmitter is infinitely fast: a THR write goes to the backend at
 *    once and LSR THRE|TEMT never clear, so there is no TX FIFO to model
 *    (FCR's "clear XMIT FIFO" has nothing to clear).
 *  - The receiver has the 16-byte RX FIFO (or the single RBR in 16450
 *    mode). Host input beyond it waits in an input queue and moves in as
 *    the guest reads, so nothing the host sends is lost to overrun; only
 *    loopback can overrun, as on the chip.
 *  - No baud rate or timing: the divisor latch is storage only.
 *
 * Register and bit names follow the datasheet (and Linux's serial_reg.h).
 */
import {
  expectVersion,
  type AccessSize,
  type Device,
  type DeviceContext,
  type DeviceState,
  type IoHandler,
} from '../core/device.js';
import type { CharBackend } from '../chardev/backend.js';
import {
  ByteQueue,
  DEFAULT_DIVISOR,
  DEFAULT_INPUT_QUEUE_LIMIT,
  DEFAULT_MODEM_INPUTS,
  FCR_DMS,
  FCR_FE,
  FCR_RFR,
  FCR_TRIG,
  FIFO_SIZE,
  IER_DLM,
  IER_MASK,
  IER_MSI,
  IER_RDI,
  IER_RLSI,
  IER_THRI,
  IIR_CTI,
  IIR_FCR,
  IIR_FIFOS,
  IIR_MSI,
  IIR_NO_INT,
  IIR_RDI,
  IIR_RLSI,
  IIR_THRI,
  LCR,
  LCR_DLAB,
  LSR,
  LSR_DR,
  LSR_ERRORS,
  LSR_OE,
  LSR_TEMT,
  LSR_THRE,
  MCR,
  MCR_LOOP,
  MCR_MASK,
  MCR_OUT2,
  MSR,
  MSR_CTS,
  MSR_DCD,
  MSR_DSR,
  MSR_RI,
  RBR_THR_DLL,
  rxTriggerLevels,
  SCR,
  loopbackModemLines,
  modemDeltas,
  parseUartState,
} from './uart-16550a-regs.js';

/** Number of I/O ports a 16550A occupies. */
export const UART_16550A_PORTS = 8;

/** The PC's standard COM ports. */
export const PC_COM_PORTS: readonly { readonly base: number; readonly irq: number }[] = [
  { base: 0x3f8, irq: 4 },
  { base: 0x2f8, irq: 3 },
  { base: 0x3e8, irq: 4 },
  { base: 0x2e8, irq: 3 },
];

export interface Uart16550aOptions {
  /** ISA IRQ / GSI the INTR output drives (4 for COM1, 3 for COM2). */
  irq: number;
  /** Host side. The UART owns it: close() closes it. */
  backend: CharBackend;
  /** Host input held while the guest does not read (default 1 MiB); beyond it input is dropped. */
  inputQueueLimit?: number;
}

/** Modem input lines a machine can drive (e.g. DCD when a socket client connects). */
export interface ModemInputs {
  cts?: boolean;
  dsr?: boolean;
  ri?: boolean;
  dcd?: boolean;
}

export class Uart16550a implements Device, IoHandler {
  private readonly backend: CharBackend;
  private readonly irqNum: number;
  private readonly inputQueueLimit: number;

  private dll = DEFAULT_DIVISOR;
  private dlm = 0;
  private ier = 0;
  private fcr = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  /** LSR error bits (OE/PE/FE/BI): sticky until LSR is read. DR/THRE/TEMT are derived. */
  private lsrErrors = 0;
  /** MSR delta bits: sticky until MSR is read. The line bits are derived. */
  private msrDeltas = 0;
  /** External modem inputs, as MSR bits 4-7. */
  private modemInputs = DEFAULT_MODEM_INPUTS;
  /** The last byte read from RBR (re-read when the receiver is empty). */
  private rbr = 0;
  private rx: number[] = [];
  /** Host input that has not reached the receiver yet. */
  private readonly queue = new ByteQueue();
  /** The THRE interrupt is pending (see writeIer / readIir / writeThr). */
  private thrIPending = false;
  /** Current level of the INTR line as the interrupt controller sees it. */
  private irqLevel = false;
  private closed = false;
  private readonly txByte = new Uint8Array(1);

  constructor(
    readonly name: string,
    private readonly ctx: DeviceContext,
    opts: Uart16550aOptions,
  ) {
    this.backend = opts.backend;
    this.irqNum = opts.irq;
    this.inputQueueLimit = opts.inputQueueLimit ?? DEFAULT_INPUT_QUEUE_LIMIT;
    this.backend.onInput((data) => this.receiveFromHost(data));
  }

  /** Level of the interrupt line (after OUT2 gating). */
  get irqAsserted(): boolean {
    return this.irqLevel;
  }

  /** Host bytes waiting for room in the receiver. */
  get queuedInput(): number {
    return this.queue.length;
  }

  // ---- bus interface ----

  read(offset: number, size: AccessSize): number {
    // The chip has a byte-wide bus: a wider access is a run of byte accesses
    // (as QEMU's memory core splits it); bytes past the last register float high.
    if (size === 2 || size === 4) {
      let v = 0;
      for (let i = 0; i < size; i++) v |= this.readByte(offset + i) << (8 * i);
      return v >>> 0;
    }
    return this.readByte(offset);
  }

  write(offset: number, size: AccessSize, value: number): void {
    const v = Number.isFinite(value) ? value : 0;
    if (size === 2 || size === 4) {
      for (let i = 0; i < size; i++) this.writeByte(offset + i, Math.floor(v / 2 ** (8 * i)) & 0xff);
      return;
    }
    this.writeByte(offset, v & 0xff);
  }

  private readByte(offset: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR_DLL:
        return dlab ? this.dll : this.readRbr();
      case IER_DLM:
        return dlab ? this.dlm : this.ier;
      case IIR_FCR:
        return this.readIir();
      case LCR:
        return this.lcr;
      case MCR:
        return this.mcr;
      case LSR:
        return this.readLsr();
      case MSR:
        return this.readMsr();
      case SCR:
        return this.scr;
      default:
        this.ctx.guestErrors.warn(
          `${this.name}-bad-offset`,
          () => `${this.name}: read at bad offset ${offset}`,
        );
        return 0xff;
    }
  }

  private writeByte(offset: number, v: number): void {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR_DLL:
        if (dlab) this.dll = v;
        else this.writeThr(v);
        return;
      case IER_DLM:
        if (dlab) this.dlm = v;
        else this.writeIer(v);
        return;
      case IIR_FCR:
        this.writeFcr(v);
        return;
      case LCR:
        // Word length, stop bits, parity and break only matter on a wire;
        // bytes go to the backend unmasked (a guest that never programs LCR
        // is in 5-bit mode after reset, and QEMU does not mask either).
        this.lcr = v;
        return;
      case MCR:
        this.writeMcr(v);
        return;
      case LSR:
        // "The Line Status Register is intended for read operations only.
        // Writing to this register is not recommended as this operation is
        // only used for factory testing" (PC16550D, 8.4). Ignored.
        this.ctx.guestErrors.warn(`${this.name}-lsr-write`, () => `${this.name}: write to LSR ignored`);
        return;
      case MSR:
        this.ctx.guestErrors.warn(`${this.name}-msr-write`, () => `${this.name}: write to MSR ignored`);
        return;
      case SCR:
        this.scr = v;
        return;
      default:
        this.ctx.guestErrors.warn(
          `${this.name}-bad-offset`,
          () => `${this.name}: write at bad offset ${offset}`,
        );
    }
  }

  // ---- registers ----

  private fifoEnabled(): boolean {
    return (this.fcr & FCR_FE) !== 0;
  }

  private rxCapacity(): number {
    return this.fifoEnabled() ? FIFO_SIZE : 1;
  }

  private rxTrigger(): number {
    return rxTriggerLevels[(this.fcr & FCR_TRIG) >> 6]!;
  }

  private readRbr(): number {
    const b = this.rx.shift();
    if (b === undefined) return this.rbr;
    this.rbr = b;
    this.fillRx();
    this.updateIrq();
    return b;
  }

  private writeThr(v: number): void {
    // Writing THR clears a pending THRE interrupt (PC16550D Table IV, "Interrupt Reset
    // Control: ... Writing into the Transmitter Holding Register"); the
    // instant transmitter then empties THR again, which raises it anew. The
    // line really drops and rises, so an edge-triggered PIC sees a new edge
    // as it would from the chip one character time later.
    this.thrIPending = false;
    this.updateIrq();
    if (this.mcr & MCR_LOOP) {
      this.receiveLoopback(v);
    } else {
      this.txByte[0] = v;
      this.backend.write(this.txByte);
    }
    this.thrIPending = true;
    this.updateIrq();
  }

  private writeIer(v: number): void {
    const nv = v & IER_MASK;
    const changed = this.ier ^ nv;
    this.ier = nv;
    if (changed & IER_THRI) {
      // Setting ETBEI while THR is empty raises the THRE interrupt at once,
      // even if an IIR read had cleared it before: real 16550s do, Linux
      // tests for it at startup (UART_BUG_THRE) and Windows relies on it.
      // THR is always empty here. Clearing ETBEI forgets the pending one.
      this.thrIPending = (nv & IER_THRI) !== 0;
    }
    this.updateIrq();
  }

  private readIir(): number {
    const id = this.pendingInterrupt();
    if (id === IIR_THRI) {
      // "Reading the IIR Register (if source of interrupt)" resets the THRE
      // interrupt (PC16550D Table IV): only when THRE is the one reported,
      // not when a higher priority interrupt hides it.
      this.thrIPending = false;
      this.updateIrq();
    }
    return id | (this.fifoEnabled() ? IIR_FIFOS : 0);
  }

  private writeFcr(v: number): void {
    // "Writing a 0 to FCR0 will disable the XMIT and RCVR FIFOs. Resetting
    // FCR0 will clear all bytes in both FIFOs. When changing from the FIFO
    // Mode to the 16450 Mode and vice versa, data is automatically cleared
    // from the FIFOs. This bit must be a 1 when other FCR bits are written
    // to or they will not be programmed." (PC16550D, 8.5)
    const enable = (v & FCR_FE) !== 0;
    if (enable !== this.fifoEnabled()) {
      this.rx = [];
      // "The first transmitter interrupt after changing FCR0 will be
      // immediate, if it is enabled" (PC16550D, 8.11).
      if (this.ier & IER_THRI) this.thrIPending = true;
    }
    if (enable) {
      if (v & FCR_RFR) this.rx = []; // self-clearing; the XMIT clear (bit 2) has nothing to clear
      this.fcr = v & (FCR_FE | FCR_DMS | FCR_TRIG);
    } else {
      this.fcr &= ~FCR_FE;
    }
    this.fillRx();
    this.updateIrq();
  }

  private writeMcr(v: number): void {
    const before = this.modemLines();
    const wasLoop = (this.mcr & MCR_LOOP) !== 0;
    this.mcr = v & MCR_MASK;
    this.noteModemChange(before, this.modemLines());
    if (wasLoop && !(this.mcr & MCR_LOOP)) this.fillRx();
    this.updateIrq();
  }

  private readLsr(): number {
    let v = LSR_THRE | LSR_TEMT | this.lsrErrors;
    if (this.rx.length > 0) v |= LSR_DR;
    // Bit 7 (error in RCVR FIFO) would flag a parity/framing/break byte in
    // the FIFO; this receiver never produces one.
    if (this.lsrErrors) {
      // OE, PE, FE and BI are reset when the CPU reads LSR (PC16550D, 8.4).
      this.lsrErrors = 0;
      this.updateIrq();
    }
    return v;
  }

  private readMsr(): number {
    const v = this.msrDeltas | this.modemLines();
    if (this.msrDeltas) {
      this.msrDeltas = 0;
      this.updateIrq();
    }
    return v;
  }

  /**
   * MSR bits 4-7. In loopback "the four MODEM Control outputs (DTR, RTS,
   * OUT 1, and OUT 2) are internally connected to the four MODEM Control
   * inputs" (PC16550D, 8.8 and 8.9): CTS<-RTS, DSR<-DTR, RI<-OUT1, DCD<-OUT2. Linux's
   * autoconfig writes MCR=0x1A (LOOP|OUT2|RTS) and expects MSR & 0xF0 = 0x90.
   */
  private modemLines(): number {
    if (!(this.mcr & MCR_LOOP)) return this.modemInputs;
    return loopbackModemLines(this.mcr);
  }

  private noteModemChange(before: number, after: number): void {
    this.msrDeltas |= modemDeltas(before, after);
  }

  /** Drives the external modem inputs (ignored by the MSR while in loopback, as on the chip). */
  setModemInputs(lines: ModemInputs): void {
    const before = this.modemLines();
    const set = (bit: number, on: boolean | undefined): void => {
      if (on === undefined) return;
      this.modemInputs = on ? this.modemInputs | bit : this.modemInputs & ~bit;
    };
    set(MSR_CTS, lines.cts);
    set(MSR_DSR, lines.dsr);
    set(MSR_RI, lines.ri);
    set(MSR_DCD, lines.dcd);
    this.noteModemChange(before, this.modemLines());
    this.updateIrq();
  }

  // ---- receiver ----

  private receiveFromHost(data: Uint8Array): void {
    if (this.closed || data.length === 0) return;
    const room = this.inputQueueLimit - this.queue.length;
    if (room < data.length) {
      this.ctx.guestErrors.warn(
        `${this.name}-input-dropped`,
        () => `${this.name}: guest is not reading; ${data.length - Math.max(room, 0)} input bytes dropped`,
      );
    }
    if (room <= 0) return;
    this.queue.push(data.slice(0, room));
    this.fillRx();
    this.updateIrq();
  }

  /** Moves host input into the receiver while there is room. In loopback the serial input is disconnected. */
  private fillRx(): void {
    if (this.mcr & MCR_LOOP) return;
    const cap = this.rxCapacity();
    while (this.rx.length < cap && this.queue.length > 0) this.rx.push(this.queue.shift());
  }

  private receiveLoopback(v: number): void {
    if (this.rx.length < this.rxCapacity()) {
      this.rx.push(v);
      return;
    }
    this.lsrErrors |= LSR_OE;
    // Overrun: in 16450 mode "the next character was transferred into the
    // RBR before the previous was read, destroying the previous character";
    // in FIFO mode "the character in the shift register is overwritten, but
    // it is not transferred to the FIFO" (PC16550D, 8.4, LSR bit 1).
    if (!this.fifoEnabled()) this.rx[0] = v;
  }

  // ---- interrupts ----

  /**
   * The highest priority pending interrupt, PC16550D Table IV: receiver
   * line status > received data available / character timeout > THR empty >
   * modem status.
   *
   * Character timeout (PC16550D, 8.11): the chip raises it when the FIFO holds fewer bytes
   * than the trigger level and neither a byte arrived nor the CPU read for
   * four character times. With no time in this model those four character
   * times have always passed once the host's bytes are in, so data below
   * the trigger level reports a timeout at once; reaching the trigger level
   * reports "received data available". Both are cleared by reading the
   * FIFO (below the trigger level / empty).
   */
  private pendingInterrupt(): number {
    if (this.ier & IER_RLSI && this.lsrErrors & LSR_ERRORS) return IIR_RLSI;
    if (this.ier & IER_RDI && this.rx.length > 0) {
      if (!this.fifoEnabled() || this.rx.length >= this.rxTrigger()) return IIR_RDI;
      return IIR_CTI;
    }
    if (this.ier & IER_THRI && this.thrIPending) return IIR_THRI;
    if (this.ier & IER_MSI && this.msrDeltas) return IIR_MSI;
    return IIR_NO_INT;
  }

  /**
   * On a PC the INTR output reaches the PIC through a buffer enabled by the
   * OUT2 pin. In loopback "the MODEM Control output pins are forced to their
   * inactive state" (PC16550D, 8.8), so the IRQ is disconnected then; the
   * interrupts still show in IIR.
   */
  private updateIrq(): void {
    const out2 = (this.mcr & (MCR_OUT2 | MCR_LOOP)) === MCR_OUT2;
    const level = out2 && this.pendingInterrupt() !== IIR_NO_INT;
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.ctx.irq.setIrq(this.irqNum, level);
  }

  // ---- Device ----

  reset(): void {
    // PC16550D Table I (UART reset configuration): IER, FCR, LCR, MCR = 0; IIR =
    // 0x01; LSR = 0x60; MSR deltas = 0. The divisor latch and scratch
    // register are not affected by master reset; they are given fixed values.
    this.dll = DEFAULT_DIVISOR;
    this.dlm = 0;
    this.ier = 0;
    this.fcr = 0;
    this.lcr = 0;
    this.mcr = 0;
    this.scr = 0;
    this.lsrErrors = 0;
    this.msrDeltas = 0;
    this.rbr = 0;
    this.rx = [];
    this.queue.clear();
    this.thrIPending = false;
    this.updateIrq();
  }

  saveState(): DeviceState {
    return {
      version: 1,
      dll: this.dll,
      dlm: this.dlm,
      ier: this.ier,
      fcr: this.fcr,
      lcr: this.lcr,
      mcr: this.mcr,
      scr: this.scr,
      lsrErrors: this.lsrErrors,
      msrDeltas: this.msrDeltas,
      modemInputs: this.modemInputs,
      rbr: this.rbr,
      thrIPending: this.thrIPending,
      rxFifo: [...this.rx],
      inputQueue: Buffer.from(this.queue.toBytes()).toString('base64'),
    };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const { thrIPending: thr, rxFifo: fifo, inputQueue: q, ...s } = parseUartState(this.name, state);
    this.dll = s.dll;
    this.dlm = s.dlm;
    this.ier = s.ier;
    this.fcr = s.fcr;
    this.lcr = s.lcr;
    this.mcr = s.mcr;
    this.scr = s.scr;
    this.lsrErrors = s.lsrErrors;
    this.msrDeltas = s.msrDeltas;
    this.modemInputs = s.modemInputs;
    this.rbr = s.rbr;
    this.thrIPending = thr;
    this.rx = [...fifo];
    this.queue.clear();
    this.queue.push(new Uint8Array(Buffer.from(q, 'base64')));
    this.updateIrq();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.backend.onInput(() => {});
    this.backend.close();
  }
}
