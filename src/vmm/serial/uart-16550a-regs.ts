/**
 * Register map of the 16550A UART (uart-16550a.ts): register offsets and
 * bit names (PC16550D datasheet, Linux's serial_reg.h), the model's
 * defaults, the queue that holds host input, the modem-line logic of
 * MCR/MSR, and the checks applied to a saved state before it is loaded.
 */
import { DeviceStateError, type DeviceState } from '../core/device.js';

// Register offsets.
export const RBR_THR_DLL = 0;
export const IER_DLM = 1;
export const IIR_FCR = 2;
export const LCR = 3;
export const MCR = 4;
export const LSR = 5;
export const MSR = 6;
export const SCR = 7;

// IER: the upper four bits are always 0 on a 16550A (Linux's autoconfig checks IER & 0x0F).
export const IER_RDI = 0x01; // ERBFI: received data available
export const IER_THRI = 0x02; // ETBEI: transmitter holding register empty
export const IER_RLSI = 0x04; // ELSI: receiver line status
export const IER_MSI = 0x08; // EDSSI: modem status
export const IER_MASK = 0x0f;

// IIR: bit 0 clear = interrupt pending; bits 1-3 identify it; bits 6-7 set in FIFO mode.
export const IIR_NO_INT = 0x01;
export const IIR_MSI = 0x00;
export const IIR_THRI = 0x02;
export const IIR_RDI = 0x04;
export const IIR_RLSI = 0x06;
export const IIR_CTI = 0x0c; // character timeout indication (FIFO mode only)
export const IIR_FIFOS = 0xc0;

// FCR.
export const FCR_FE = 0x01;
export const FCR_RFR = 0x02;
export const FCR_DMS = 0x08; // DMA mode select: only changes the RXRDY/TXRDY pins, kept for read-back of state
export const FCR_TRIG = 0xc0;
export const rxTriggerLevels = [1, 4, 8, 14] as const;

// LCR.
export const LCR_DLAB = 0x80;

// MCR: bits 5-7 are always 0 on a 16550A.
export const MCR_DTR = 0x01;
export const MCR_RTS = 0x02;
export const MCR_OUT1 = 0x04;
export const MCR_OUT2 = 0x08;
export const MCR_LOOP = 0x10;
export const MCR_MASK = 0x1f;

// LSR.
export const LSR_DR = 0x01;
export const LSR_OE = 0x02;
export const LSR_PE = 0x04;
export const LSR_FE = 0x08;
export const LSR_BI = 0x10;
export const LSR_THRE = 0x20;
export const LSR_TEMT = 0x40;
export const LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

// MSR.
export const MSR_DCTS = 0x01;
export const MSR_DDSR = 0x02;
export const MSR_TERI = 0x04;
export const MSR_DDCD = 0x08;
export const MSR_CTS = 0x10;
export const MSR_DSR = 0x20;
export const MSR_RI = 0x40;
export const MSR_DCD = 0x80;
export const MSR_DELTAS = 0x0f;
export const MSR_LINES = 0xf0;

export const FIFO_SIZE = 16;
export const DEFAULT_INPUT_QUEUE_LIMIT = 1024 * 1024;

/**
 * The modem inputs of the virtual cable when not in loopback: CTS, DSR and
 * DCD asserted (a null-modem peer that is always there), RI not. QEMU
 * presents the same lines.
 */
export const DEFAULT_MODEM_INPUTS = MSR_CTS | MSR_DSR | MSR_DCD;

/** Power-on divisor: undefined on the chip; 12 (9600 baud at 1.8432 MHz) here. */
export const DEFAULT_DIVISOR = 12;

/** A FIFO of host bytes stored as the chunks they arrived in. */
export class ByteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0;
  length = 0;

  push(data: Uint8Array): void {
    if (data.length === 0) return;
    this.chunks.push(data);
    this.length += data.length;
  }

  shift(): number {
    const c = this.chunks[0]!;
    const b = c[this.head++]!;
    this.length--;
    if (this.head >= c.length) {
      this.chunks.shift();
      this.head = 0;
    }
    return b;
  }

  toBytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    this.chunks.forEach((c, i) => {
      const part = i === 0 ? c.subarray(this.head) : c;
      out.set(part, o);
      o += part.length;
    });
    return out;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.length = 0;
  }
}

/**
 * MSR bits 4-7 in loopback: the MODEM Control outputs are internally
 * connected to the MODEM Control inputs (PC16550D, 8.8 and 8.9):
 * CTS<-RTS, DSR<-DTR, RI<-OUT1, DCD<-OUT2.
 */
export function loopbackModemLines(mcr: number): number {
  let v = 0;
  if (mcr & MCR_RTS) v |= MSR_CTS;
  if (mcr & MCR_DTR) v |= MSR_DSR;
  if (mcr & MCR_OUT1) v |= MSR_RI;
  if (mcr & MCR_OUT2) v |= MSR_DCD;
  return v;
}

/** The MSR delta bits that a change of the modem lines (MSR bits 4-7) from `before` to `after` sets. */
export function modemDeltas(before: number, after: number): number {
  let deltas = 0;
  const changed = before ^ after;
  if (changed & MSR_CTS) deltas |= MSR_DCTS;
  if (changed & MSR_DSR) deltas |= MSR_DDSR;
  if (changed & MSR_DCD) deltas |= MSR_DDCD;
  // TERI: "the RI input to the chip has changed from a low to a high
  // state" (PC16550D, 8.9) - the pin is active low, so this is the trailing edge of a ring:
  // MSR RI going from 1 to 0.
  if (before & MSR_RI && !(after & MSR_RI)) deltas |= MSR_TERI;
  return deltas;
}

/** A saved UART state (version 1, checked by the caller) after the checks of parseUartState(). */
export interface UartSavedState {
  dll: number;
  dlm: number;
  ier: number;
  fcr: number;
  lcr: number;
  mcr: number;
  scr: number;
  lsrErrors: number;
  msrDeltas: number;
  modemInputs: number;
  rbr: number;
  thrIPending: boolean;
  rxFifo: number[];
  /** Base64 of the host input not yet in the receiver. */
  inputQueue: string;
}

/** Checks every register of a saved state; throws DeviceStateError naming the first bad one. */
export function parseUartState(name: string, state: DeviceState): UartSavedState {
  const byte = (key: string, mask = 0xff): number => {
    const v = state[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff || (v & ~mask) !== 0) {
      throw new DeviceStateError(`${name}: bad saved ${key}: ${String(v)}`);
    }
    return v;
  };
  const s = {
    dll: byte('dll'),
    dlm: byte('dlm'),
    ier: byte('ier', IER_MASK),
    fcr: byte('fcr', FCR_FE | FCR_DMS | FCR_TRIG),
    lcr: byte('lcr'),
    mcr: byte('mcr', MCR_MASK),
    scr: byte('scr'),
    lsrErrors: byte('lsrErrors', LSR_ERRORS),
    msrDeltas: byte('msrDeltas', MSR_DELTAS),
    modemInputs: byte('modemInputs', MSR_LINES),
    rbr: byte('rbr'),
  };
  const thr = state.thrIPending;
  if (typeof thr !== 'boolean') throw new DeviceStateError(`${name}: bad saved thrIPending`);
  const fifo = state.rxFifo;
  const cap = s.fcr & FCR_FE ? FIFO_SIZE : 1;
  if (
    !Array.isArray(fifo) ||
    fifo.length > cap ||
    !fifo.every((b): b is number => typeof b === 'number' && Number.isInteger(b) && b >= 0 && b <= 0xff)
  ) {
    throw new DeviceStateError(`${name}: bad saved rxFifo`);
  }
  const q = state.inputQueue;
  if (typeof q !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(q)) {
    throw new DeviceStateError(`${name}: bad saved inputQueue`);
  }
  return { ...s, thrIPending: thr, rxFifo: fifo, inputQueue: q };
}
