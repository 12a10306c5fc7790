/**
 * ACPI power management registers of a PIIX4-style PC (Intel 82371AB
 * datasheet §11, and the ACPI spec §4.8 "fixed hardware" register blocks),
 * at the I/O base the FADT names (default 0x600):
 *   +0x00 PM1a_STS (2)  status: TMR_STS bit 0, PWRBTN_STS bit 8, WAK_STS bit 15 (write 1 to clear)
 *   +0x02 PM1a_EN  (2)  enables for the bits above
 *   +0x04 PM1a_CNT (2)  SCI_EN bit 0, SLP_TYP bits 10-12, SLP_EN bit 13 (write-only, reads 0)
 *   +0x08 PM_TMR   (4)  24-bit ACPI timer at 3.579545 MHz
 *   +0x0C GPE0_STS (2), +0x0E GPE0_EN (2)
 * The SCI (IRQ 9, level) is asserted while an enabled status bit is set.
 * Writing SLP_EN with SLP_TYP = 0 (the PIIX4's soft-off, which the DSDT's
 * \_S5 names) powers the machine off. The power button (the control
 * socket's `powerdown`, or SIGPWR) sets PWRBTN_STS.
 * Only the register block here; the PCI function 00:01.3 that carries it
 * on a real PIIX4 comes with the PCI host bridge.
 */
import type { AccessSize, Device, DeviceContext, DeviceState, IoHandler } from '../core/device.js';
import { expectVersion } from '../core/device.js';

export const PM_TIMER_HZ = 3_579_545;
const TMR_STS = 1 << 0;
const PWRBTN_STS = 1 << 8;
const WAK_STS = 1 << 15;
const STS_MASK = TMR_STS | (1 << 4) | (1 << 5) | PWRBTN_STS | (1 << 9) | (1 << 10) | WAK_STS;
const SCI_EN = 1 << 0;
const SLP_EN = 1 << 13;
/** PIIX4 SLP_TYP for soft-off (S5). */
export const SLP_TYP_SOFT_OFF = 0;
export const SLP_TYP_S3 = 1;

export interface Piix4PmOptions {
  /** GSI of the SCI (default 9). */
  sciIrq?: number;
  /** Host monotonic clock in nanoseconds (tests). */
  clockNs?: () => bigint;
  name?: string;
}

export class Piix4Pm implements Device, IoHandler {
  readonly name: string;
  private sts = 0;
  private en = 0;
  private cnt = SCI_EN; // no SMI_CMD in the FADT: the machine is always in ACPI mode
  private gpeSts = 0;
  private gpeEn = 0;
  private sci = false;
  private readonly sciIrq: number;
  private readonly clockNs: () => bigint;
  private readonly t0: bigint;

  constructor(
    private readonly ctx: DeviceContext,
    opts: Piix4PmOptions = {},
  ) {
    this.name = opts.name ?? 'piix4-pm';
    this.sciIrq = opts.sciIrq ?? 9;
    this.clockNs = opts.clockNs ?? (() => process.hrtime.bigint());
    this.t0 = this.clockNs();
  }

  /** The ACPI power button: asks an ACPI guest to shut down. */
  pressPowerButton(): void {
    this.sts |= PWRBTN_STS;
    this.updateSci();
  }

  /** Whether the guest has enabled the power button event (an ACPI OS is listening). */
  get powerButtonEnabled(): boolean {
    return (this.en & PWRBTN_STS) !== 0 && (this.cnt & SCI_EN) !== 0;
  }

  private timer(): number {
    const ticks = ((this.clockNs() - this.t0) * BigInt(PM_TIMER_HZ)) / 1_000_000_000n;
    return Number(ticks & 0xffffffn);
  }

  private updateSci(): void {
    const level =
      (this.cnt & SCI_EN) !== 0 && ((this.sts & this.en) !== 0 || (this.gpeSts & this.gpeEn) !== 0);
    if (level === this.sci) return;
    this.sci = level;
    this.ctx.irq.setIrq(this.sciIrq, level);
  }

  private reg16(offset: number): number {
    switch (offset & ~1) {
      case 0x00:
        return this.sts;
      case 0x02:
        return this.en;
      case 0x04:
        return this.cnt & SCI_EN; // SLP_TYP/SLP_EN read as 0
      case 0x08:
        return this.timer() & 0xffff;
      case 0x0a:
        return this.timer() >>> 16;
      case 0x0c:
        return this.gpeSts;
      case 0x0e:
        return this.gpeEn;
      default:
        return 0;
    }
  }

  read(offset: number, size: AccessSize): number {
    if (size === 4) return ((this.reg16(offset + 2) << 16) | this.reg16(offset)) >>> 0;
    const v = this.reg16(offset);
    return size === 1 ? (offset & 1 ? v >> 8 : v) & 0xff : v;
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (size === 4) {
      this.write16(offset, value & 0xffff, 0xffff);
      this.write16(offset + 2, value >>> 16, 0xffff);
    } else if (size === 2) this.write16(offset, value & 0xffff, 0xffff);
    else {
      const shift = offset & 1 ? 8 : 0;
      this.write16(offset & ~1, (value & 0xff) << shift, 0xff << shift);
    }
    this.updateSci();
  }

  /** `mask`: the bits of the 16-bit register this access covers. */
  private write16(offset: number, value: number, mask: number): void {
    switch (offset & ~1) {
      case 0x00:
        this.sts &= ~(value & mask & STS_MASK); // write 1 to clear
        return;
      case 0x02:
        this.en = (this.en & ~mask) | (value & mask & STS_MASK);
        return;
      case 0x04: {
        const v = (this.cnt & ~mask) | (value & mask);
        this.cnt = v & SCI_EN ? SCI_EN : 0;
        if (v & SLP_EN & mask) {
          const typ = (v >> 10) & 7;
          if (typ === SLP_TYP_SOFT_OFF) this.ctx.requestPowerOff('ACPI S5 (soft off)');
          else
            this.ctx.guestErrors.warn(
              'pm-sleep',
              () => `${this.name}: sleep type ${typ} is not supported; ignored`,
            );
        }
        return;
      }
      case 0x0c:
        this.gpeSts &= ~(value & mask);
        return;
      case 0x0e:
        this.gpeEn = (this.gpeEn & ~mask) | (value & mask);
        return;
      default:
        this.ctx.guestErrors.warn(
          'pm-write',
          () => `${this.name}: write to read-only offset 0x${offset.toString(16)}`,
        );
    }
  }

  reset(): void {
    this.sts = this.en = this.gpeSts = this.gpeEn = 0;
    this.cnt = SCI_EN;
    this.updateSci();
  }

  saveState(): DeviceState {
    return { version: 1, sts: this.sts, en: this.en, cnt: this.cnt, gpeSts: this.gpeSts, gpeEn: this.gpeEn };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const n = (k: string) => (typeof state[k] === 'number' ? (state[k] as number) & 0xffff : 0);
    this.sts = n('sts') & STS_MASK;
    this.en = n('en') & STS_MASK;
    this.cnt = n('cnt') & SCI_EN;
    this.gpeSts = n('gpeSts');
    this.gpeEn = n('gpeEn');
    this.updateSci();
  }
}
