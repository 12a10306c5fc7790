/**
 * One channel of the SFF-8038i bus-master IDE interface (the PIIX's BMIBA
 * registers, 82371SB datasheet §2.7): eight bytes per channel.
 *
 *   +0 BMIC   command: bit 0 Start/Stop, bit 3 direction (1: the engine
 *             writes memory, a device read)
 *   +2 BMIS   status: bit 0 Active (read only), bit 1 Error and bit 2
 *             Interrupt (write 1 to clear), bits 5-6 drive 0/1 DMA capable
 *             (read/write, for the BIOS), bit 7 simplex (0)
 *   +4 BMIDTP physical address of the PRD table (dword aligned)
 *
 * A PRD entry is 8 bytes: the region's address (bit 0 zero) and, in the
 * second dword, its byte count in bits 15:0 (0 means 64 KiB) with End Of
 * Table in bit 31. Every access to guest memory goes through GuestMemory:
 * a descriptor or region outside RAM ends the transfer with the Error bit
 * (logged as a guest error), never with an exception.
 */
import type { RateLimitedLog } from '../../core/log.js';
import type { GuestMemory } from '../../core/memory.js';
import type { DmaEngine, DmaResult } from './drive.js';

export const BM_CMD_START = 0x01;
export const BM_CMD_WRITE_MEMORY = 0x08;
export const BM_ST_ACTIVE = 0x01;
export const BM_ST_ERROR = 0x02;
export const BM_ST_INTERRUPT = 0x04;
export const BM_ST_DMA_CAPABLE = 0x60;

/** A PRD table lies in one 64 KiB page (SFF-8038i §3.3): at most 8192 entries. */
const MAX_PRD_ENTRIES = 8192;

export interface BusMasterOptions {
  name: string;
  memory: GuestMemory;
  guestErrors: RateLimitedLog;
  /** PCI Command bit 2: without it the engine cannot reach memory. */
  canMaster: () => boolean;
  /** Start went 0 -> 1. */
  onStart: () => void;
  /** Start went 1 -> 0. */
  onStop: () => void;
}

export class BusMasterChannel implements DmaEngine {
  private cmd = 0;
  private stat = 0;
  private prdt = 0;

  constructor(private readonly opts: BusMasterOptions) {}

  get started(): boolean {
    return (this.cmd & BM_CMD_START) !== 0;
  }

  get status(): number {
    return this.stat;
  }

  get prdTable(): number {
    return this.prdt;
  }

  /** The channel's device asserted its interrupt. */
  setInterrupt(): void {
    this.stat |= BM_ST_INTERRUPT;
  }

  reset(): void {
    this.cmd = 0;
    this.stat = 0;
    this.prdt = 0;
  }

  /** Reads of the channel's 8 bytes (any size, split into bytes). */
  read(offset: number, size: number): number {
    let v = 0;
    for (let i = 0; i < size; i++) v |= this.readByte(offset + i) << (8 * i);
    return v >>> 0;
  }

  write(offset: number, size: number, value: number): void {
    for (let i = 0; i < size; i++) this.writeByte(offset + i, (value >>> (8 * i)) & 0xff);
  }

  private readByte(o: number): number {
    switch (o) {
      case 0:
        return this.cmd;
      case 2:
        return this.stat;
      case 4:
      case 5:
      case 6:
      case 7:
        return (this.prdt >>> (8 * (o - 4))) & 0xff;
      default:
        return 0;
    }
  }

  private writeByte(o: number, v: number): void {
    switch (o) {
      case 0: {
        const was = this.cmd;
        // The direction may not change while the engine runs (SFF-8038i §3.1).
        const dir = was & BM_CMD_START ? was & BM_CMD_WRITE_MEMORY : v & BM_CMD_WRITE_MEMORY;
        this.cmd = (v & BM_CMD_START) | dir;
        if (!(was & BM_CMD_START) && v & BM_CMD_START) {
          this.stat |= BM_ST_ACTIVE;
          this.opts.onStart();
        } else if (was & BM_CMD_START && !(v & BM_CMD_START)) {
          // Stopping aborts a transfer in progress and clears Active.
          this.stat &= ~BM_ST_ACTIVE;
          this.opts.onStop();
        }
        return;
      }
      case 2:
        this.stat =
          (this.stat & BM_ST_ACTIVE) |
          (v & BM_ST_DMA_CAPABLE) |
          (this.stat & ~v & (BM_ST_ERROR | BM_ST_INTERRUPT));
        return;
      case 4:
      case 5:
      case 6:
      case 7: {
        const shift = 8 * (o - 4);
        const p = (this.prdt & ~(0xff << shift)) | (v << shift);
        this.prdt = (p & ~3) >>> 0;
        return;
      }
      default:
        return;
    }
  }

  /**
   * Moves `data` between the drive and the memory regions of the PRD
   * table. 'done' when all of `data` moved: Active is cleared if the table
   * ended exactly there, and stays set if the table was larger (SFF-8038i
   * table 3.2: "interrupt, active" means the device finished first).
   */
  transfer(data: Uint8Array, toMemory: boolean): DmaResult {
    const { memory, guestErrors, name } = this.opts;
    if (!this.started) return 'short';
    if (!this.opts.canMaster()) return this.error(`${name}: DMA with PCI bus mastering disabled`);
    if (toMemory !== ((this.cmd & BM_CMD_WRITE_MEMORY) !== 0)) {
      guestErrors.warn(
        'ide-bm-direction',
        () =>
          `${name}: bus-master direction bit disagrees with the drive's command; the command's direction is used`,
      );
    }
    let done = 0;
    for (let i = 0; i < MAX_PRD_ENTRIES; i++) {
      const at = this.prdt + 8 * i;
      const e = memory.tryView(at, 8);
      if (!e) return this.error(`${name}: PRD entry at 0x${at.toString(16)} is outside guest RAM`);
      const addr = (e[0]! | (e[1]! << 8) | (e[2]! << 16) | (e[3]! << 24)) & ~1;
      const region = (e[4]! | (e[5]! << 8)) & 0xfffe || 0x10000;
      const eot = (e[7]! & 0x80) !== 0;
      const n = Math.min(region, data.length - done);
      const mem = memory.tryView(addr >>> 0, n);
      if (!mem) {
        return this.error(
          `${name}: PRD region 0x${(addr >>> 0).toString(16)}+0x${n.toString(16)} is outside guest RAM`,
        );
      }
      if (toMemory) mem.set(data.subarray(done, done + n));
      else data.set(mem, done);
      done += n;
      if (done === data.length) {
        if (eot && n === region) this.stat &= ~BM_ST_ACTIVE;
        return 'done';
      }
      if (eot) {
        this.stat &= ~BM_ST_ACTIVE;
        return 'short';
      }
    }
    return this.error(`${name}: PRD table at 0x${this.prdt.toString(16)} has no end-of-table entry`);
  }

  private error(msg: string): DmaResult {
    this.opts.guestErrors.warn('ide-bm-error', () => msg);
    this.stat = (this.stat & ~BM_ST_ACTIVE) | BM_ST_ERROR;
    return 'error';
  }

  save(): number[] {
    return [this.cmd, this.stat, this.prdt];
  }

  load(saved: unknown): void {
    const a = Array.isArray(saved) ? saved : [];
    const n = (i: number) => (typeof a[i] === 'number' ? (a[i] as number) : 0);
    this.cmd = n(0) & (BM_CMD_START | BM_CMD_WRITE_MEMORY);
    this.stat = n(1) & (BM_ST_ACTIVE | BM_ST_ERROR | BM_ST_INTERRUPT | BM_ST_DMA_CAPABLE);
    this.prdt = (n(2) & ~3) >>> 0;
  }
}
