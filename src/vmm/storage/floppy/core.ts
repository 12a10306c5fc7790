/**
 * The controller's internal state, shared by its parts: the registers and
 * command/result bytes behind the FIFO, the phase, the drives, the
 * command in its execution phase, and the INT and DRQ outputs with their
 * DOR gating; also the resets and the tracking of image I/O in flight.
 */
import type { DeviceContext } from '../../core/device.js';
import type { IsaDma } from '../../chipset/i8257-dma.js';
import {
  CONFIG_DEFAULT,
  DOR_DEFAULT,
  DOR_DMAGATE,
  DOR_NRESET,
  DSR_RATE,
  RATE_500K,
  RESET_SENSEI_COUNT,
  ST1_MA,
} from './constants.js';
import type { Drive, SectorId } from './drive.js';
import type { CommandInfo } from './opcodes.js';

export type TransferKind = 'read' | 'write' | 'format';
export type Stage = 'fetch' | 'transfer' | 'commit';

/** A data command in its execution phase. */
export interface Execution {
  kind: TransferKind;
  drive: number;
  /** The command bytes (opcode first). */
  cmd: number[];
  /** Sectors to transfer, in order (read/write); for format, the IDs arrive as data. */
  sectors: SectorId[];
  /** Why the sector list ends: EOT reached, or the next sector does not exist (ND). */
  end: 'eot' | 'notfound';
  /** The sector that was not found (end = notfound). */
  missing: SectorId | undefined;
  /** Sector data (read: from the image; write: from the guest) or format IDs. */
  data: Uint8Array;
  stage: Stage;
  /** Bytes moved between the guest and `data`. */
  done: number;
  /** Terminal count from the DMA controller ended the data phase. */
  tc: boolean;
  /** The implied seek moved the head (ST0 SE). */
  seeked: boolean;
}

export type Phase = 'command' | 'execution' | 'result';

/** What the controller is wired to, fixed at construction. */
export interface FdcWiring {
  readonly ctx: DeviceContext;
  readonly name: string;
  readonly dma: IsaDma;
  readonly irqLine: number;
  readonly dmaChannel: number;
  readonly drives: Drive[];
}

/** The controller's state and its INT/DRQ/reset logic; registers.ts, commands.ts, transfer.ts and state.ts act on it. */
export class FdcCore {
  readonly ctx: DeviceContext;
  readonly name: string;
  readonly dma: IsaDma;
  readonly irqLine: number;
  readonly dmaChannel: number;
  readonly drives: Drive[];

  dor = DOR_DEFAULT;
  tdr = 0;
  dsr = RATE_500K;
  phase: Phase = 'command';
  cmd: number[] = [];
  cmdInfo: CommandInfo = { op: 'invalid', params: 0 };
  result: number[] = [];
  resultPos = 0;
  exec: Execution | undefined;

  intPending = false;
  irqLevel = false;
  /** ST0 of the last SEEK/RECALIBRATE, until SENSE INTERRUPT STATUS. */
  senseSt0: number | undefined;
  senseDrive = 0;
  /** Drive-polling statuses left after a reset. */
  resetSensei = 0;
  driveBusy = 0;

  specify1 = 0;
  specify2 = 0;
  config = CONFIG_DEFAULT;
  pretrk = 0;
  locked = false;
  /** PERPENDICULAR MODE: D3-D0 in bits 5-2, GAP bit 1, WGATE bit 0. */
  perpendicular = 0;
  readonly driveSpec = [0, 0, 0, 0];
  powerdown = 0;
  /** SC of the last FORMAT or EOT of the last read/write, for DUMPREG. */
  lastScEot = 0;

  dreqHeld = false;
  /** Invalidates image I/O in flight (reset, eject, load). */
  generation = 0;
  pendingIo = 0;
  idleWaiters: (() => void)[] = [];

  constructor(wiring: FdcWiring) {
    this.ctx = wiring.ctx;
    this.name = wiring.name;
    this.dma = wiring.dma;
    this.irqLine = wiring.irqLine;
    this.dmaChannel = wiring.dmaChannel;
    this.drives = wiring.drives;
  }

  // --- phases ----------------------------------------------------------------

  toCommandPhase(): void {
    this.phase = 'command';
    this.cmd = [];
    this.result = [];
    this.resultPos = 0;
  }

  toResultPhase(bytes: number[]): void {
    this.phase = 'result';
    this.result = bytes;
    this.resultPos = 0;
  }

  /** In non-DMA mode (SPECIFY ND). */
  pio(): boolean {
    return (this.specify2 & 1) !== 0;
  }

  setInt(pending: boolean): void {
    this.intPending = pending;
    this.updateIrq();
  }

  /** A new interrupt condition; leftover drive-polling statuses are dropped (as QEMU does). */
  raiseInt(): void {
    this.resetSensei = 0;
    this.setInt(true);
  }

  updateIrq(): void {
    const level = this.intPending && (this.dor & DOR_DMAGATE) !== 0;
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.ctx.irq.setIrq(this.irqLine, level);
  }

  /** DRQ is asserted while a DMA-mode data phase waits for the DMA controller and DMAGATE is set. */
  updateDreq(): void {
    const x = this.exec;
    const want =
      this.phase === 'execution' &&
      x !== undefined &&
      x.stage === 'transfer' &&
      !this.pio() &&
      (this.dor & (DOR_DMAGATE | DOR_NRESET)) === (DOR_DMAGATE | DOR_NRESET);
    if (want && !this.dreqHeld) {
      this.dreqHeld = true;
      this.dma.holdDreq(this.dmaChannel); // may run the whole transfer at once
    } else if (!want && this.dreqHeld) {
      this.dreqHeld = false;
      this.dma.releaseDreq(this.dmaChannel);
    }
  }

  /** DOR or DSR reset: the command in progress is lost; SPECIFY and locked CONFIGURE values stay. */
  softReset(): void {
    this.generation++;
    this.exec = undefined;
    this.toCommandPhase();
    this.updateDreq();
    this.senseSt0 = undefined;
    this.resetSensei = 0;
    this.driveBusy = 0;
    this.setInt(false);
    if (!this.locked) {
      this.config = CONFIG_DEFAULT;
      this.pretrk = 0;
    } else {
      // LOCK keeps EFIFO, FIFOTHR and PRETRK; implied seek and polling return to their defaults.
      this.config = (this.config & 0x2f) | (CONFIG_DEFAULT & 0x50);
    }
    this.perpendicular &= ~0x03; // GAP and WGATE clear on reset; the drive bits stay
  }

  /** Leaving reset: drive polling sees every drive "not ready -> ready" and interrupts (82077AA 7.4). */
  resetDone(): void {
    this.raiseInt();
    this.resetSensei = RESET_SENSEI_COUNT;
  }

  /** Hardware reset: registers to their power-on values, no interrupt (as QEMU's machine reset). */
  hardReset(): void {
    this.softReset();
    this.dor = DOR_DEFAULT;
    this.tdr = 0;
    this.dsr = RATE_500K;
    this.specify1 = 0;
    this.specify2 = 0;
    this.config = CONFIG_DEFAULT;
    this.pretrk = 0;
    this.locked = false;
    this.perpendicular = 0;
    this.driveSpec.fill(0);
    this.powerdown = 0;
    this.lastScEot = 0;
    for (const d of this.drives) {
      d.track = 0;
      d.head = 0;
      d.sector = 1;
    }
    this.setInt(false);
    this.updateDreq();
  }

  /** Ends a command with a result phase and an interrupt. */
  finish(result: number[]): void {
    this.exec = undefined;
    this.updateDreq();
    this.toResultPhase(result);
    this.raiseInt();
  }

  /** Why a drive cannot read its disk at the programmed rate, or 0 (ST1 bits). */
  mediaError(d: Drive, mfm: boolean): number {
    if (!d.present || !d.image || !d.format) return ST1_MA;
    if (!mfm || (this.dsr & DSR_RATE) !== d.format.rate) return ST1_MA;
    return 0;
  }

  /** Tracks image I/O: results are dropped if the controller was reset, or the command aborted, meanwhile. */
  io<T>(p: Promise<T>, done: (v: T) => void, failed: (err: unknown) => void): void {
    const generation = this.generation;
    this.pendingIo++;
    const settle = (fn: () => void): void => {
      try {
        if (generation === this.generation) fn();
      } catch (err) {
        this.ctx.log.error(
          `${this.name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
        );
      } finally {
        if (--this.pendingIo === 0) for (const w of this.idleWaiters.splice(0)) w();
      }
    };
    p.then(
      (v) => settle(() => done(v)),
      (err: unknown) => settle(() => failed(err)),
    );
  }

  guestError(kind: string, msg: () => string): void {
    this.ctx.guestErrors.warn(`${this.name}-${kind}`, msg);
  }
}
