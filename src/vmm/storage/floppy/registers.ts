/**
 * The register file at 0x3F0-0x3F5 and 0x3F7 (82077AA/82078 PC-AT mode):
 * SRA/SRB, DOR, TDR, MSR/DSR, the FIFO (command bytes in, result bytes out,
 * non-DMA data) and DIR/CCR, as functions over the controller's state.
 */
import type { AccessSize } from '../../core/device.js';
import { execute } from './commands.js';
import {
  DIR_DSKCHG,
  DOR_MOTOR0,
  DOR_MOTOR1,
  DOR_NRESET,
  DOR_SEL,
  DSR_RATE,
  DSR_SWRESET,
  MSR_CB,
  MSR_DIO,
  MSR_NDMA,
  MSR_RQM,
  REG_DOR,
  REG_FIFO,
  REG_MSR_DSR,
  REG_SRA,
  REG_SRB,
  REG_TDR,
} from './constants.js';
import type { FdcCore } from './core.js';
import { decode } from './opcodes.js';
import { endDataPhase } from './transfer.js';

export function readBytes(fdc: FdcCore, offset: number, size: AccessSize): number {
  let v = 0;
  for (let i = 0; i < size; i++) v |= readReg(fdc, offset + i) << (8 * i);
  return v >>> 0;
}

function readReg(fdc: FdcCore, reg: number): number {
  switch (reg) {
    case REG_SRA:
      // PS/2 mode status A: INT pending, second drive not installed.
      return (fdc.irqLevel ? 0x80 : 0) | (fdc.drives[1]!.present ? 0 : 0x40);
    case REG_SRB:
      return (
        0xc0 |
        (fdc.dor & DOR_MOTOR0 ? 0x01 : 0) |
        (fdc.dor & DOR_MOTOR1 ? 0x02 : 0) |
        (fdc.dor & 1 ? 0x20 : 0)
      );
    case REG_DOR:
      return fdc.dor;
    case REG_TDR:
      return fdc.tdr;
    case REG_MSR_DSR:
      return msr(fdc);
    case REG_FIFO:
      return readFifo(fdc);
    default:
      return 0xff;
  }
}

export function writeReg(fdc: FdcCore, reg: number, v: number): void {
  switch (reg) {
    case REG_DOR:
      writeDor(fdc, v);
      return;
    case REG_TDR:
      if (fdc.dor & DOR_NRESET) fdc.tdr = v & 0x03;
      return;
    case REG_MSR_DSR:
      writeDsr(fdc, v);
      return;
    case REG_FIFO:
      writeFifo(fdc, v);
      return;
    default:
      return; // SRA/SRB are read-only
  }
}

function msr(fdc: FdcCore): number {
  if (!(fdc.dor & DOR_NRESET)) return 0;
  switch (fdc.phase) {
    case 'command':
      return MSR_RQM | (fdc.cmd.length > 0 ? MSR_CB : 0) | fdc.driveBusy;
    case 'result':
      return MSR_RQM | MSR_DIO | MSR_CB | fdc.driveBusy;
    case 'execution': {
      const x = fdc.exec;
      if (!x || !fdc.pio()) return MSR_CB | fdc.driveBusy;
      let v = MSR_CB | MSR_NDMA | fdc.driveBusy;
      if (x.stage === 'transfer') v |= MSR_RQM | (x.kind === 'read' ? MSR_DIO : 0);
      return v;
    }
  }
}

function writeDor(fdc: FdcCore, v: number): void {
  const old = fdc.dor;
  fdc.dor = v;
  if (!(v & DOR_NRESET)) {
    if (old & DOR_NRESET) fdc.softReset();
  } else if (!(old & DOR_NRESET)) {
    fdc.resetDone();
  }
  fdc.updateIrq();
  fdc.updateDreq();
}

function writeDsr(fdc: FdcCore, v: number): void {
  if (!(fdc.dor & DOR_NRESET)) return;
  if (v & DSR_SWRESET) {
    // Self-clearing software reset (Linux's reset_fdc on an 82072A or later).
    fdc.softReset();
    fdc.resetDone();
  }
  fdc.dsr = v & ~DSR_SWRESET;
}

/** CCR: only the data rate bits exist in PC-AT mode; they are shared with DSR. */
export function writeCcr(fdc: FdcCore, v: number): void {
  if (!(fdc.dor & DOR_NRESET)) return;
  fdc.dsr = (fdc.dsr & ~DSR_RATE) | (v & DSR_RATE);
}

export function readDir(fdc: FdcCore): number {
  const d = fdc.drives[fdc.dor & DOR_SEL]!;
  return d.present && (d.changed || !d.image) ? DIR_DSKCHG : 0;
}

function readFifo(fdc: FdcCore): number {
  if (!(fdc.dor & DOR_NRESET)) return 0;
  if (fdc.phase === 'result') {
    const v = fdc.result[fdc.resultPos++] ?? 0;
    if (fdc.resultPos >= fdc.result.length) {
      fdc.toCommandPhase();
      fdc.setInt(false);
    }
    return v;
  }
  const x = fdc.exec;
  if (fdc.phase === 'execution' && x && fdc.pio() && x.stage === 'transfer' && x.kind === 'read') {
    const v = x.data[x.done++]!;
    if (x.done >= x.data.length) endDataPhase(fdc);
    return v;
  }
  fdc.guestError('fifo-read', () => `${fdc.name}: data register read while the controller has no data`);
  return 0;
}

function writeFifo(fdc: FdcCore, v: number): void {
  if (!(fdc.dor & DOR_NRESET)) return;
  const x = fdc.exec;
  if (fdc.phase === 'execution') {
    if (x && fdc.pio() && x.stage === 'transfer' && x.kind !== 'read') {
      x.data[x.done++] = v;
      if (x.done >= x.data.length) endDataPhase(fdc);
      return;
    }
    fdc.guestError('fifo-busy', () => `${fdc.name}: data register write while a command executes, ignored`);
    return;
  }
  if (fdc.phase === 'result') {
    fdc.guestError('fifo-result', () => `${fdc.name}: data register write in the result phase, ignored`);
    return;
  }
  if (fdc.cmd.length === 0) fdc.cmdInfo = decode(v);
  fdc.cmd.push(v);
  const info = fdc.cmdInfo;
  // DRIVE SPECIFICATION ends at the first byte with bit 7 set (82078 datasheet).
  const complete = info.op === 'driveSpec' ? fdc.cmd.length > 1 && (v & 0x80) !== 0 : false;
  if (complete || fdc.cmd.length === info.params + 1) {
    const cmd = fdc.cmd;
    fdc.cmd = [];
    execute(fdc, info.op, cmd);
  }
}
