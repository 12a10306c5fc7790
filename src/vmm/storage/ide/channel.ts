/**
 * One IDE channel (a cable with up to two devices): the command block
 * registers (8 ports, 0x1F0-0x1F7 or 0x170-0x177 in legacy mode), the
 * control block (Alternate Status / Device Control at 0x3F6 or 0x376),
 * device selection, soft reset, the INTRQ line and the bus-master engine
 * that serves its DMA.
 *
 * As on the cable, both devices latch every write to the command block
 * (ATA/ATAPI-7 v2 §5.2), and only the selected one answers reads; an
 * absent device's registers latch too, and its Status reads 00h (what
 * ATA-7 asks of device 0 answering for a missing device 1, and what
 * QEMU's drives, whose probing guests are tuned to, return). A channel
 * with no devices reads 00h everywhere.
 *
 * INTRQ belongs to the channel: a device asserts it, reading Status or
 * writing Command deasserts it, and nIEN (Device Control bit 1) keeps it
 * off the pin. The pin is an ISA IRQ in legacy mode (14 and 15).
 */
import type { AccessSize, IoHandler } from '../../core/device.js';
import type { Logger, RateLimitedLog } from '../../core/log.js';
import {
  CMD,
  DC_HOB,
  DC_NIEN,
  DC_SRST,
  REG_DATA,
  REG_SELECT,
  REG_STATUS,
  SEL_DEV,
  SEL_OBSOLETE,
  ST_BSY,
  ST_DRQ,
} from './ata.js';
import type { BusMasterChannel } from './bus-master.js';
import { IdeDrive, TaskFile, type DriveHost } from './drive.js';

export interface IdeChannelOptions {
  name: string;
  log: Logger;
  guestErrors: RateLimitedLog;
  /** Drives the channel's interrupt pin. */
  setIrq: (level: boolean) => void;
  /** Whether the legacy ports decode (PIIX IDETIM bit 15); when not, they read as an empty bus. */
  decodeEnabled?: () => boolean;
}

const allOnes: Record<number, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff };

export class IdeChannel implements DriveHost {
  readonly name: string;
  readonly log: Logger;
  readonly guestErrors: RateLimitedLog;
  private readonly drives: [IdeDrive | undefined, IdeDrive | undefined] = [undefined, undefined];
  /** Task files of the two positions (a drive's own, or a bare one for an empty position). */
  private readonly regs: [TaskFile, TaskFile] = [new TaskFile(), new TaskFile()];
  private unit: 0 | 1 = 0;
  private control = 0;
  private intrq = false;
  private pin = false;
  private bm: BusMasterChannel | undefined;

  /** Ports 0-7 of the command block. */
  readonly commandBlock: IoHandler = {
    read: (offset, size) => this.readCommand(offset, size),
    write: (offset, size, value) => this.writeCommand(offset, size, value),
  };

  /** The control block port: Alternate Status on reads, Device Control on writes. */
  readonly controlBlock: IoHandler = {
    read: (offset, size) => this.readControl(offset, size),
    write: (offset, size, value) => this.writeControl(offset, size, value),
  };

  constructor(private readonly opts: IdeChannelOptions) {
    this.name = opts.name;
    this.log = opts.log;
    this.guestErrors = opts.guestErrors;
  }

  /** Plugs a drive in as device 0 (master) or 1 (slave); before the guest runs. */
  attach(unit: 0 | 1, drive: IdeDrive): void {
    if (this.drives[unit]) throw new Error(`${this.name}: device ${unit} is already attached`);
    this.drives[unit] = drive;
    this.regs[unit] = drive.tf;
    drive.attach(this, unit);
  }

  /** The bus-master engine serving this channel's DMA. */
  setBusMaster(bm: BusMasterChannel): void {
    this.bm = bm;
  }

  drive(unit: 0 | 1): IdeDrive | undefined {
    return this.drives[unit];
  }

  get selected(): 0 | 1 {
    return this.unit;
  }

  /** Whether the interrupt pin is asserted now. */
  get irqAsserted(): boolean {
    return this.pin;
  }

  private get empty(): boolean {
    return !this.drives[0] && !this.drives[1];
  }

  private get decoding(): boolean {
    return this.opts.decodeEnabled?.() ?? true;
  }

  // ---- DriveHost ---------------------------------------------------------

  raiseIrq(): void {
    this.intrq = true;
    // SFF-8038i: the bus master's Interrupt bit latches the device's interrupt.
    if (!(this.control & DC_NIEN)) this.bm?.setInterrupt();
    this.updatePin();
  }

  dmaReady(drive: IdeDrive): void {
    if (this.bm?.started) drive.runDma(this.bm);
  }

  /** The bus master's Start bit went to 1: a drive waiting for it moves its data. */
  dmaStarted(): void {
    const bm = this.bm;
    if (!bm) return;
    for (const u of [this.unit, this.unit ^ 1] as const) {
      const d = this.drives[u];
      if (d?.wantsDma) {
        d.runDma(bm);
        return;
      }
    }
  }

  /** The Start bit went to 0 before a drive got its data: the command is aborted. */
  dmaStopped(): void {
    for (const d of this.drives) d?.cancelDma();
  }

  private lowerIrq(): void {
    this.intrq = false;
    this.updatePin();
  }

  private updatePin(): void {
    const level = this.intrq && !(this.control & DC_NIEN);
    if (level === this.pin) return;
    this.pin = level;
    this.opts.setIrq(level);
  }

  // ---- command block -----------------------------------------------------

  private readCommand(offset: number, size: AccessSize): number {
    if (!this.decoding) return allOnes[size]!;
    if (offset === REG_DATA) {
      if (this.empty) return 0;
      return this.drives[this.unit]?.dataRead(size) ?? 0;
    }
    let v = 0;
    for (let i = 0; i < size; i++) {
      const o = offset + i;
      v |= (o < 8 ? this.readRegister(o) : 0xff) << (8 * i);
    }
    return v >>> 0;
  }

  private readRegister(reg: number): number {
    if (this.empty) return 0;
    const tf = this.regs[this.unit];
    const present = this.drives[this.unit] !== undefined;
    switch (reg) {
      case REG_SELECT:
        return tf.select;
      case REG_STATUS:
        this.lowerIrq();
        return present ? tf.status : 0;
      default:
        return tf.read(reg, (this.control & DC_HOB) !== 0);
    }
  }

  private writeCommand(offset: number, size: AccessSize, value: number): void {
    if (!this.decoding) return;
    if (offset === REG_DATA) {
      this.drives[this.unit]?.dataWrite(size, value);
      return;
    }
    for (let i = 0; i < size; i++) {
      const o = offset + i;
      if (o < 8) this.writeRegister(o, (value >>> (8 * i)) & 0xff);
    }
  }

  private writeRegister(reg: number, v: number): void {
    // ATA8-ACS §4.2.2: a write to any command block register clears HOB.
    this.control &= ~DC_HOB;
    if (reg === REG_STATUS) return this.command(v);
    if (reg === REG_SELECT) {
      // The host may not change the selection while the selected device is busy (ATA/ATAPI-7 v2 §5.2.6).
      if (this.regs[this.unit].status & ST_BSY && this.drives[this.unit]) return;
      for (const tf of this.regs) if (!(tf.status & ST_BSY)) tf.select = v | SEL_OBSOLETE;
      this.unit = v & SEL_DEV ? 1 : 0;
      return;
    }
    // A busy device ignores register writes (ATA/ATAPI-7 v2 §5.2); the other one latches them.
    for (const tf of this.regs) if (!(tf.status & ST_BSY)) tf.write(reg, v);
  }

  private command(cmd: number): void {
    this.lowerIrq();
    const d = this.drives[this.unit];
    if (!d) return; // nobody answers for an absent device
    if (cmd === CMD.EXECUTE_DEVICE_DIAGNOSTIC) {
      if (d.tf.status & (ST_BSY | ST_DRQ)) return;
      // Both devices run their diagnostics (ATA8-ACS §7.9); device 0 reports for both.
      for (const u of [0, 1] as const) {
        const drive = this.drives[u];
        if (drive) drive.diagnostic();
        else this.emptyPositionReset(u);
      }
      this.raiseIrq();
      return;
    }
    d.command(cmd);
  }

  // ---- control block -----------------------------------------------------

  private readControl(offset: number, size: AccessSize): number {
    if (!this.decoding) return allOnes[size]!;
    // Only the first byte is ours (0x3F7 belongs to the floppy controller).
    const hi = size > 1 ? (allOnes[size]! & ~0xff) >>> 0 : 0;
    if (offset !== 0) return allOnes[size]!;
    if (this.empty) return hi;
    const present = this.drives[this.unit] !== undefined;
    return (hi | (present ? this.regs[this.unit].status : 0)) >>> 0;
  }

  private writeControl(offset: number, _size: AccessSize, value: number): void {
    if (!this.decoding || offset !== 0) return;
    const was = this.control;
    const v = value & (DC_HOB | DC_SRST | DC_NIEN);
    this.control = v;
    if (!(was & DC_SRST) && v & DC_SRST) {
      // SRST asserted: every device is busy until it is released (ATA/ATAPI-7 v2 §9.2).
      for (const d of this.drives) d?.beginSoftReset();
      this.intrq = false;
    } else if (was & DC_SRST && !(v & DC_SRST)) {
      this.softResetDone();
    }
    this.updatePin();
  }

  /** After a reset device 0 is selected, and every device shows its signature. */
  private softResetDone(): void {
    this.unit = 0;
    for (const u of [0, 1] as const) {
      const d = this.drives[u];
      if (d) d.endSoftReset();
      else this.emptyPositionReset(u);
    }
  }

  /** The registers of a position without a device after a reset: an ATA signature, status 00h. */
  private emptyPositionReset(u: 0 | 1): void {
    const tf = this.regs[u];
    tf.select = SEL_OBSOLETE;
    tf.setSignature(false);
    tf.error = 0x01;
    tf.status = 0;
  }

  // ---- device ------------------------------------------------------------

  /** Power-on / hardware reset of the channel and its devices. */
  reset(): void {
    this.control = 0;
    this.intrq = false;
    this.unit = 0;
    for (const u of [0, 1] as const) {
      const d = this.drives[u];
      if (d) d.reset();
      else this.emptyPositionReset(u);
    }
    this.updatePin();
  }

  inFlight(): number {
    return this.drives.reduce((n, d) => n + (d?.inFlight() ?? 0), 0);
  }

  async drain(): Promise<void> {
    await Promise.all(this.drives.map((d) => d?.drain()));
  }

  save(): Record<string, unknown> {
    return {
      unit: this.unit,
      control: this.control,
      intrq: this.intrq,
      regs: this.regs.map((tf, i) => (this.drives[i] ? null : tf.save())),
      drives: this.drives.map((d) => (d ? d.saveState() : null)),
    };
  }

  load(saved: unknown): void {
    const s = (typeof saved === 'object' && saved !== null ? saved : {}) as Record<string, unknown>;
    this.unit = s.unit === 1 ? 1 : 0;
    this.control = typeof s.control === 'number' ? s.control & (DC_HOB | DC_SRST | DC_NIEN) : 0;
    this.intrq = s.intrq === true;
    const regs = Array.isArray(s.regs) ? s.regs : [];
    const drives = Array.isArray(s.drives) ? s.drives : [];
    for (const u of [0, 1] as const) {
      const d = this.drives[u];
      if (d) d.loadState(drives[u]);
      else this.regs[u].load(regs[u]);
    }
    this.updatePin();
    // A DMA phase saved while the engine ran continues once the load is over.
    if (this.bm?.started) queueMicrotask(() => this.dmaStarted());
  }
}
