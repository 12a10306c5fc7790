/**
 * What every device on an IDE channel shares (ATA disk, ATAPI CD-ROM): its
 * task file registers and the data phases of the ATA protocols
 * (ATA/ATAPI-7 volume 2 §9 and §11): PIO data-in, PIO data-out, DMA, and
 * a busy phase while the image works.
 *
 * Image I/O is asynchronous (BlockImage promises): the drive shows BSY
 * while a request is in flight and continues when it settles. Every step
 * that follows a phase is named (`next`) rather than held as a closure,
 * so a drive in the middle of a command can be saved and loaded: a
 * request in flight is issued again after a load (reads and writes of the
 * same bytes are idempotent), the data of a PIO or DMA phase is saved
 * with it. A reset bumps `epoch`, and completions of an older epoch are
 * dropped.
 */
import type { BlockImage } from '../../../block/image.js';
import { BlockError } from '../../../block/image.js';
import type { Logger, RateLimitedLog } from '../../core/log.js';
import {
  CMD,
  ERR_ABRT,
  MAX_TRANSFER_BYTES,
  REG_ERROR,
  REG_HCYL,
  REG_LCYL,
  REG_NSECTOR,
  REG_SECTOR,
  SEL_OBSOLETE,
  ST_BSY,
  ST_DRQ,
  ST_DRDY,
  ST_DSC,
  ST_ERR,
  fromBase64,
  toBase64,
} from './ata.js';

/** The outcome of a bus-master transfer. */
export type DmaResult =
  /** All the drive's bytes moved. */
  | 'done'
  /** The PRD table ended first (SFF-8038i: Active cleared, no interrupt). */
  | 'short'
  /** A descriptor or region outside guest RAM, or bus mastering disabled. */
  | 'error';

/** The bus-master engine of the drive's channel, as the drive sees it. */
export interface DmaEngine {
  /** Moves `data` into guest memory (`toMemory`) or fills it from guest memory, walking the PRD table. */
  transfer(data: Uint8Array, toMemory: boolean): DmaResult;
}

/** What a drive needs from the channel it is attached to. */
export interface DriveHost {
  readonly log: Logger;
  readonly guestErrors: RateLimitedLog;
  /** Asserts the channel's INTRQ (until the host reads Status or writes a command). */
  raiseIrq(): void;
  /** The drive entered a DMA phase: the channel runs it now if the bus master is started, else on start. */
  dmaReady(drive: IdeDrive): void;
}

/** The task file of one device position; an absent device keeps one too (its registers still latch writes). */
export class TaskFile {
  feature = 0;
  hobFeature = 0;
  nsector = 0;
  hobNsector = 0;
  sector = 0;
  hobSector = 0;
  lcyl = 0;
  hobLcyl = 0;
  hcyl = 0;
  hobHcyl = 0;
  select = SEL_OBSOLETE;
  status = 0;
  error = 0;

  /**
   * A host write to registers 1-5. Each keeps the previous value as its
   * "high order byte" for 48-bit commands (ATA8-ACS §4.2.2: the registers
   * are two-deep FIFOs).
   */
  write(reg: number, value: number): void {
    const v = value & 0xff;
    switch (reg) {
      case REG_ERROR:
        this.hobFeature = this.feature;
        this.feature = v;
        return;
      case REG_NSECTOR:
        this.hobNsector = this.nsector;
        this.nsector = v;
        return;
      case REG_SECTOR:
        this.hobSector = this.sector;
        this.sector = v;
        return;
      case REG_LCYL:
        this.hobLcyl = this.lcyl;
        this.lcyl = v;
        return;
      case REG_HCYL:
        this.hobHcyl = this.hcyl;
        this.hcyl = v;
        return;
    }
  }

  /** A host read of registers 1-5; `hob` (Device Control bit 7) reads the previous values. */
  read(reg: number, hob: boolean): number {
    switch (reg) {
      case REG_ERROR:
        return hob ? this.hobFeature : this.error;
      case REG_NSECTOR:
        return hob ? this.hobNsector : this.nsector;
      case REG_SECTOR:
        return hob ? this.hobSector : this.sector;
      case REG_LCYL:
        return hob ? this.hobLcyl : this.lcyl;
      case REG_HCYL:
        return hob ? this.hobHcyl : this.hcyl;
      default:
        return 0;
    }
  }

  /**
   * The signature a device leaves after a reset or EXECUTE DEVICE
   * DIAGNOSTIC (ATA8-ACS §9.12): Sector Count and LBA Low 01h, LBA Mid/High
   * 00h/00h for an ATA device, 14h/EBh for a packet device.
   */
  setSignature(packet: boolean): void {
    this.nsector = this.hobNsector = 1;
    this.sector = this.hobSector = 1;
    this.lcyl = this.hobLcyl = packet ? 0x14 : 0;
    this.hcyl = this.hobHcyl = packet ? 0xeb : 0;
    this.select &= 0xf0 | SEL_OBSOLETE; // head / LBA 27:24 cleared
  }

  save(): number[] {
    return [
      this.feature,
      this.hobFeature,
      this.nsector,
      this.hobNsector,
      this.sector,
      this.hobSector,
      this.lcyl,
      this.hobLcyl,
      this.hcyl,
      this.hobHcyl,
      this.select,
      this.status,
      this.error,
    ];
  }

  load(saved: unknown): void {
    const a = Array.isArray(saved) && saved.length === 13 ? saved : [];
    const b = (i: number, dflt = 0) => (typeof a[i] === 'number' ? (a[i] as number) & 0xff : dflt);
    this.feature = b(0);
    this.hobFeature = b(1);
    this.nsector = b(2);
    this.hobNsector = b(3);
    this.sector = b(4);
    this.hobSector = b(5);
    this.lcyl = b(6);
    this.hobLcyl = b(7);
    this.hcyl = b(8);
    this.hobHcyl = b(9);
    this.select = b(10, SEL_OBSOLETE) | SEL_OBSOLETE;
    this.status = b(11);
    this.error = b(12);
  }
}

export type Phase = 'idle' | 'pio-in' | 'pio-out' | 'dma-in' | 'dma-out' | 'io';

/** An image request; `write` writes the first `length` bytes of the drive's buffer. */
export interface IoRequest {
  kind: 'read' | 'write' | 'flush';
  offset: number;
  length: number;
}

const EMPTY = new Uint8Array(0);

export abstract class IdeDrive {
  abstract readonly kind: 'ata' | 'atapi';
  readonly tf = new TaskFile();
  protected host: DriveHost | undefined;
  /** Device number on the channel (IDENTIFY word 93 reports it). */
  protected unit: 0 | 1 = 0;

  /** The data phase in progress and what follows it. */
  protected phase: Phase = 'idle';
  protected next = '';
  protected buf: Uint8Array = EMPTY;
  /** Bytes of `buf` that belong to this command. */
  protected total = 0;
  /** Position of the next data-port access. */
  protected pos = 0;
  /** End of the current DRQ data block. */
  protected blockEnd = 0;
  protected blockSize = 0;
  /** The image request in flight (phase 'io'). */
  protected io: IoRequest | undefined;
  private epoch = 0;
  private inflight: Promise<void> | undefined;

  constructor(readonly name: string) {}

  /** The image requests go to (the CD-ROM's may be absent). */
  protected abstract image(): BlockImage | undefined;
  /** Runs a command the channel accepted (error cleared, interrupt lowered). */
  protected abstract execute(cmd: number): void;
  /** The host moved the last byte of a DRQ block. */
  protected abstract onBlockDone(): void;
  /** The image request of phase 'io' succeeded (`data`: what a read returned). */
  protected abstract onIoDone(data: Uint8Array): void;
  protected abstract onIoError(err: unknown): void;
  /** The bus master moved all the bytes of a DMA phase. */
  protected abstract onDmaDone(): void;
  /** Status bits of the device when idle after a reset (ATA: DRDY; packet devices: none). */
  protected abstract resetStatus(): number;
  protected abstract saveDrive(): unknown;
  protected abstract loadDrive(saved: unknown): void;
  /** Power-on state of the drive's own registers (multiple count, transfer mode, ...). */
  protected abstract resetDrive(): void;

  /** Called by the channel when the drive is plugged in as device `unit` (0 master, 1 slave). */
  attach(host: DriveHost, unit: 0 | 1): void {
    this.host = host;
    this.unit = unit;
  }

  get busy(): boolean {
    return (this.tf.status & ST_BSY) !== 0;
  }

  /** Whether the drive waits for the bus master. */
  get wantsDma(): boolean {
    return this.phase === 'dma-in' || this.phase === 'dma-out';
  }

  /** Image requests in flight: 0 or 1. */
  inFlight(): number {
    return this.inflight ? 1 : 0;
  }

  /** Resolves when no image request is in flight. */
  async drain(): Promise<void> {
    while (this.inflight) await this.inflight;
  }

  // ---- channel side ------------------------------------------------------

  /** A write to the Command register of this (selected) device. */
  command(cmd: number): void {
    const s = this.tf.status;
    // ATA8-ACS §6.1.9 / ATA/ATAPI-7 v2 §5.2.5: while BSY or DRQ, only
    // DEVICE RESET, and only to a packet device, is accepted.
    if (s & (ST_BSY | ST_DRQ) && !(cmd === CMD.DEVICE_RESET && this.kind === 'atapi')) {
      this.host?.guestErrors.warn(
        'ide-cmd-busy',
        () => `${this.name}: command 0x${cmd.toString(16)} while busy (status 0x${s.toString(16)}); ignored`,
      );
      return;
    }
    this.tf.error = 0;
    this.execute(cmd);
  }

  /** Reads of the data register (16-bit normally, 32-bit with the PIIX's dword I/O, bytes tolerated). */
  dataRead(size: number): number {
    if (this.phase !== 'pio-in') return 0;
    let v = 0;
    for (let i = 0; i < size && this.pos < this.blockEnd; i++) v |= this.buf[this.pos++]! << (8 * i);
    if (this.pos >= this.blockEnd) this.onBlockDone();
    return v >>> 0;
  }

  dataWrite(size: number, value: number): void {
    if (this.phase !== 'pio-out') return;
    for (let i = 0; i < size && this.pos < this.blockEnd; i++)
      this.buf[this.pos++] = (value >>> (8 * i)) & 0xff;
    if (this.pos >= this.blockEnd) this.onBlockDone();
  }

  /** Device Control SRST went to 1: the device is busy until it goes back to 0. */
  beginSoftReset(): void {
    this.cancel();
    this.tf.status = ST_BSY | ST_DSC;
    this.tf.error = 0x01;
  }

  /** SRST went back to 0 (or a power-on / hardware reset): signature, diagnostics passed. */
  endSoftReset(): void {
    this.cancel();
    this.tf.select = SEL_OBSOLETE;
    this.tf.setSignature(this.kind === 'atapi');
    this.tf.error = 0x01; // "device 0 passed, device 1 passed or not present"
    this.tf.status = this.resetStatus();
  }

  /** EXECUTE DEVICE DIAGNOSTIC on this device (the channel runs it on both and interrupts once). */
  diagnostic(): void {
    this.cancel();
    this.tf.setSignature(this.kind === 'atapi');
    this.tf.error = 0x01;
    this.tf.status = this.resetStatus();
  }

  /** Power-on / hardware reset. */
  reset(): void {
    this.resetDrive();
    this.endSoftReset();
  }

  /** The bus master is started and the drive waits for it: move the data. */
  runDma(engine: DmaEngine): void {
    if (!this.wantsDma) return;
    const r = engine.transfer(this.buf.subarray(0, this.total), this.phase === 'dma-in');
    if (r === 'done') {
      this.onDmaDone();
    } else if (r === 'short') {
      // SFF-8038i: the PRD table was smaller than the device's transfer.
      // The command cannot finish; the drive stops without an interrupt
      // and the host's timeout handling resets it.
      this.host?.guestErrors.warn('ide-prd-short', () => `${this.name}: PRD table shorter than the transfer`);
      this.phase = 'idle';
      this.tf.status = this.readyStatus();
    } else {
      this.fail(ERR_ABRT);
    }
  }

  /** The bus master was stopped while the drive waited for it: the command is aborted (no interrupt). */
  cancelDma(): void {
    if (!this.wantsDma) return;
    this.phase = 'idle';
    this.tf.error = ERR_ABRT;
    this.tf.status = this.readyStatus() | ST_ERR;
  }

  // ---- helpers for the command sets -------------------------------------

  /** Status of a device that is ready for a command. */
  protected readyStatus(): number {
    return ST_DRDY | ST_DSC;
  }

  protected raiseIrq(): void {
    this.host?.raiseIrq();
  }

  /** The command completed (no data phase left). */
  protected finish(irq: boolean): void {
    this.phase = 'idle';
    this.next = '';
    this.io = undefined;
    this.tf.status = this.readyStatus();
    if (irq) this.raiseIrq();
  }

  /** The command failed with `error` in the Error register. */
  protected fail(error: number, irq = true): void {
    this.phase = 'idle';
    this.next = '';
    this.io = undefined;
    this.tf.error = error;
    this.tf.status = this.readyStatus() | ST_ERR;
    if (irq) this.raiseIrq();
  }

  /** Starts a PIO data-in phase of `data` in DRQ blocks of `blockSize` bytes. */
  protected pioIn(data: Uint8Array, blockSize: number, next: string, irq = true): void {
    this.buf = data;
    this.total = data.length;
    this.pos = 0;
    this.blockSize = blockSize;
    this.blockEnd = Math.min(blockSize, this.total);
    this.phase = 'pio-in';
    this.next = next;
    this.tf.status = this.readyStatus() | ST_DRQ;
    if (irq) this.raiseIrq();
  }

  /** Starts a PIO data-out phase of `total` bytes in DRQ blocks of `blockSize` bytes. */
  protected pioOut(total: number, blockSize: number, next: string, irq = false): void {
    this.buf = new Uint8Array(total);
    this.total = total;
    this.pos = 0;
    this.blockSize = blockSize;
    this.blockEnd = Math.min(blockSize, total);
    this.phase = 'pio-out';
    this.next = next;
    this.tf.status = this.readyStatus() | ST_DRQ;
    if (irq) this.raiseIrq();
  }

  /** Opens the next DRQ block of the PIO phase. */
  protected nextBlock(irq: boolean): void {
    this.blockEnd = Math.min(this.pos + this.blockSize, this.total);
    this.tf.status = this.readyStatus() | ST_DRQ;
    if (irq) this.raiseIrq();
  }

  /** Starts a DMA phase: into guest memory from `data`, or from memory into a new buffer of `data` bytes. */
  protected dma(data: Uint8Array | number, next: string): void {
    const toMemory = typeof data !== 'number';
    this.buf = toMemory ? data : new Uint8Array(data);
    this.total = this.buf.length;
    this.pos = 0;
    this.phase = toMemory ? 'dma-in' : 'dma-out';
    this.next = next;
    // Waiting for the host's bus master: DRQ as on a real drive.
    this.tf.status = this.readyStatus() | ST_DRQ;
    this.host?.dmaReady(this);
  }

  /** Sends a request to the image; BSY until it settles. */
  protected startIo(req: IoRequest, next: string): void {
    this.phase = 'io';
    this.next = next;
    this.io = req;
    this.tf.status = ST_BSY | this.readyStatus();
    const img = this.image();
    const epoch = this.epoch;
    if (!img) {
      // The CD-ROM's medium went away since the command started.
      queueMicrotask(() => this.settle(epoch, undefined, new BlockError('no medium', 'EIO')));
      return;
    }
    let p: Promise<Uint8Array | void>;
    try {
      if (req.kind === 'read') p = img.read(req.offset, req.length);
      else if (req.kind === 'write') p = img.write(req.offset, this.buf.slice(0, req.length));
      else p = img.flush();
    } catch (e) {
      p = Promise.reject(e);
    }
    const done: Promise<void> = p.then(
      (d) => this.settle(epoch, d instanceof Uint8Array ? d : EMPTY, undefined),
      (e: unknown) => this.settle(epoch, undefined, e),
    );
    const tracked = done.finally(() => {
      if (this.inflight === tracked) this.inflight = undefined;
    });
    this.inflight = tracked;
  }

  private settle(epoch: number, data: Uint8Array | undefined, err: unknown): void {
    if (epoch !== this.epoch || this.phase !== 'io') return;
    this.io = undefined;
    try {
      if (data) this.onIoDone(data);
      else {
        const why = err instanceof Error ? err.message : String(err);
        this.host?.guestErrors.warn(`ide-io-${this.name}`, () => `${this.name}: image I/O failed: ${why}`);
        this.onIoError(err);
      }
    } catch (e) {
      // A completion must never become an unhandled rejection.
      this.host?.log.error(`${this.name}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      this.fail(ERR_ABRT);
    }
  }

  /** Drops the data phase and any request in flight (its completion will be ignored). */
  protected cancel(): void {
    this.epoch++;
    this.phase = 'idle';
    this.next = '';
    this.io = undefined;
    this.buf = EMPTY;
    this.total = this.pos = this.blockEnd = this.blockSize = 0;
  }

  // ---- state -------------------------------------------------------------

  saveState(): Record<string, unknown> {
    const s: Record<string, unknown> = {
      kind: this.kind,
      tf: this.tf.save(),
      phase: this.phase,
      next: this.next,
      total: this.total,
      pos: this.pos,
      blockEnd: this.blockEnd,
      blockSize: this.blockSize,
      drive: this.saveDrive(),
    };
    if (this.io) s.io = { ...this.io };
    // A read in flight is issued again after a load; any other phase needs its bytes.
    const needsData = this.phase !== 'idle' && !(this.phase === 'io' && this.io?.kind !== 'write');
    if (needsData) s.buf = toBase64(this.buf.subarray(0, this.total));
    return s;
  }

  /** Loads a saved drive; a request that was in flight is issued again. */
  loadState(saved: unknown): void {
    const s = (typeof saved === 'object' && saved !== null ? saved : {}) as Record<string, unknown>;
    this.cancel();
    this.tf.load(s.tf);
    this.loadDrive(s.drive);
    const phases: Phase[] = ['idle', 'pio-in', 'pio-out', 'dma-in', 'dma-out', 'io'];
    const phase = phases.includes(s.phase as Phase) ? (s.phase as Phase) : 'idle';
    const num = (k: string) =>
      typeof s[k] === 'number' && Number.isSafeInteger(s[k]) ? (s[k] as number) : 0;
    const buf = fromBase64(s.buf) ?? EMPTY;
    this.next = typeof s.next === 'string' ? s.next : '';
    this.total = Math.min(num('total'), MAX_TRANSFER_BYTES);
    this.blockSize = num('blockSize');
    if (phase === 'io') {
      const io = s.io as Partial<IoRequest> | undefined;
      const kind = io?.kind;
      if (
        (kind === 'read' || kind === 'write' || kind === 'flush') &&
        typeof io?.offset === 'number' &&
        typeof io.length === 'number' &&
        (kind !== 'write' || io.length <= buf.length)
      ) {
        this.buf = buf;
        this.startIo({ kind, offset: io.offset, length: io.length }, this.next);
      } else {
        this.fail(ERR_ABRT, false);
      }
      return;
    }
    if (phase === 'idle' || buf.length !== this.total) {
      // Nothing in progress, or a phase whose bytes did not survive: idle.
      if (phase !== 'idle') this.fail(ERR_ABRT, false);
      return;
    }
    this.buf = buf;
    this.pos = Math.min(num('pos'), this.total);
    this.blockEnd = Math.min(Math.max(num('blockEnd'), this.pos), this.total);
    this.phase = phase;
  }
}

/** Big-endian helpers for CDBs and SCSI replies. */
export function be16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
export function be32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}
export function putBe16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
export function putBe32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}
