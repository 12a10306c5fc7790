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
 * SLP_TYP = 1 (\_S3) suspends to RAM when the machine can (the vCPUs stop
 * in the write's exit). A wake event ends it: the RTC alarm while RTC_EN
 * (bit 10) is enabled, or the power button; WAK_STS and the event's status
 * bit are then set and the machine restarts the CPUs at the waking vector.
 *
 * The block belongs to the PCI function 00:01.3 (82371AB function 3,
 * 8086:7113), which decodes it at PMBA (config 0x40, 64 bytes) while
 * PMREGMISC bit 0 (config 0x80) is set — SeaBIOS programs 0x600. A direct
 * kernel boot has no firmware, so the machine then powers on with the
 * block enabled at `ioBase`. DEVACTB (0x58) reads with APMC_EN set, the
 * way QEMU tells SeaBIOS that SMM is not to be set up. SMBus (0x90) is
 * not emulated: its registers hold what is written and decode nothing.
 */
import type { AccessSize, DeviceContext, IoHandler } from '../core/device.js';
import { PciDevice } from '../pci/device.js';
import type { BarMapper } from '../pci/host-bus.js';

export const PM_TIMER_HZ = 3_579_545;
const TMR_STS = 1 << 0;
const PWRBTN_STS = 1 << 8;
const RTC_STS = 1 << 10;
const WAK_STS = 1 << 15;
const STS_MASK = TMR_STS | (1 << 4) | (1 << 5) | PWRBTN_STS | (1 << 9) | (1 << 10) | WAK_STS;
const SCI_EN = 1 << 0;
const SLP_EN = 1 << 13;
/** PIIX4 SLP_TYP for soft-off (S5). */
export const SLP_TYP_SOFT_OFF = 0;
export const SLP_TYP_S3 = 1;

export const PIIX4_PM_VENDOR_ID = 0x8086;
export const PIIX4_PM_DEVICE_ID = 0x7113;
export const PIIX4_PMBA = 0x40;
export const PIIX4_DEVACTB = 0x58;
export const PIIX4_PMREGMISC = 0x80;
export const PIIX4_SMBBA = 0x90;
export const PIIX4_SMBHSTCFG = 0xd2;
/** Bytes of I/O space the PM block decodes. */
export const PM_IO_SIZE = 0x40;

export interface Piix4PmOptions {
  /** GSI of the SCI (default 9). */
  sciIrq?: number;
  /** Where the PM block is decoded (port I/O); without it the block is only reachable through read/write. */
  mapper?: BarMapper;
  /** The block enabled at this base at power-on (direct kernel boot); default: disabled until programmed. */
  ioBase?: number;
  /** Host monotonic clock in nanoseconds (tests). */
  clockNs?: () => bigint;
  name?: string;
}

export class Piix4Pm extends PciDevice implements IoHandler {
  private sts = 0;
  private en = 0;
  private cnt = SCI_EN; // no SMI_CMD in the FADT: the machine is always in ACPI mode
  private gpeSts = 0;
  private gpeEn = 0;
  private sci = false;
  /** In S3 (suspended to RAM), waiting for a wake event. */
  private sleeping = false;
  private readonly sciIrq: number;
  private readonly clockNs: () => bigint;
  /** Host time the PM timer counts from (moved by a load, so that the timer goes on from its saved value). */
  private t0: bigint;
  /** Port base the block is mapped at now. */
  private mappedBase: number | undefined;

  constructor(
    private readonly ctx: DeviceContext,
    private readonly opts: Piix4PmOptions = {},
  ) {
    super(opts.name ?? 'piix4-pm', {
      vendorId: PIIX4_PM_VENDOR_ID,
      deviceId: PIIX4_PM_DEVICE_ID,
      revision: 0x03,
      classCode: 0x068000,
      interruptPin: 1,
    });
    this.sciIrq = opts.sciIrq ?? 9;
    this.clockNs = opts.clockNs ?? (() => process.hrtime.bigint());
    this.t0 = this.clockNs();
    const c = this.config;
    c.set32(PIIX4_PMBA, 1); // bit 0: I/O space indicator
    c.setWmask(PIIX4_PMBA, 4, 0xffc0);
    c.setWmask(PIIX4_PMREGMISC, 1, 0x01);
    c.set32(PIIX4_DEVACTB, 0x0200_0000); // APMC_EN: "SMM already set up"
    c.set32(PIIX4_SMBBA, 1);
    c.setWmask(PIIX4_SMBBA, 4, 0xfff0);
    c.setWmask(PIIX4_SMBHSTCFG, 1, 0x01);
    this.powerOnConfig();
  }

  /** The I/O base the PM block is decoded at, or undefined when disabled. */
  get ioBase(): number | undefined {
    return this.mappedBase;
  }

  private powerOnConfig(): void {
    if (this.opts.ioBase !== undefined) {
      this.config.set32(PIIX4_PMBA, (this.opts.ioBase & 0xffc0) | 1);
      this.config.set8(PIIX4_PMREGMISC, 1);
    }
    this.remapIo();
  }

  /** Maps the PM block where PMBA and PMREGMISC say, unmapping the old place. */
  private remapIo(): void {
    const mapper = this.opts.mapper;
    if (!mapper) return;
    const base = this.config.get32(PIIX4_PMBA) & 0xffc0;
    const want = this.config.get8(PIIX4_PMREGMISC) & 1 && base !== 0 ? base : undefined;
    if (want === this.mappedBase) return;
    if (this.mappedBase !== undefined) mapper.unmap('pio', this.mappedBase);
    this.mappedBase = undefined;
    if (want === undefined) return;
    if (mapper.map('pio', want, PM_IO_SIZE, this, this.name)) this.mappedBase = want;
    else
      this.ctx.guestErrors.warn(
        'pm-base-refused',
        () => `${this.name}: PM I/O base 0x${want.toString(16)} overlaps another device; left disabled`,
      );
  }

  protected override onConfigWrite(offset: number, size: number): void {
    const end = offset + size;
    if ((offset < PIIX4_PMBA + 4 && PIIX4_PMBA < end) || (offset <= PIIX4_PMREGMISC && PIIX4_PMREGMISC < end))
      this.remapIo();
  }

  /** The ACPI power button: asks an ACPI guest to shut down, or wakes it from S3. */
  pressPowerButton(): void {
    if (this.sleeping) {
      this.wake(PWRBTN_STS, 'power button');
      return;
    }
    this.sts |= PWRBTN_STS;
    this.updateSci();
  }

  /** The RTC alarm fired: RTC_STS latches; it wakes the machine from S3 if the OS enabled RTC_EN. */
  rtcAlarm(): void {
    if (this.sleeping && this.en & RTC_STS) this.wake(RTC_STS, 'RTC alarm');
    else {
      this.sts |= RTC_STS;
      this.updateSci();
    }
  }

  /** Whether the machine is suspended to RAM (S3). */
  get suspended(): boolean {
    return this.sleeping;
  }

  private wake(status: number, why: string): void {
    this.sleeping = false;
    this.sts |= WAK_STS | status;
    this.updateSci();
    this.ctx.requestWake?.(`ACPI S3 wake by the ${why}`);
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
          else if (
            typ === SLP_TYP_S3 &&
            !this.sleeping &&
            this.ctx.requestSuspend?.('ACPI S3 (suspend to RAM)')
          ) {
            this.sleeping = true;
            // An enabled wake event already pending wakes the machine at once.
            if (this.sts & this.en & RTC_STS) this.wake(RTC_STS, 'RTC alarm (pending)');
          } else
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

  protected override resetDevice(): void {
    this.sts = this.en = this.gpeSts = this.gpeEn = 0;
    this.cnt = SCI_EN;
    this.sleeping = false;
    this.updateSci();
    this.powerOnConfig();
  }

  protected override saveDeviceState(): unknown {
    return {
      sts: this.sts,
      en: this.en,
      cnt: this.cnt,
      gpeSts: this.gpeSts,
      gpeEn: this.gpeEn,
      sleeping: this.sleeping,
      timer: this.timer(),
    };
  }

  protected override loadDeviceState(saved: unknown): void {
    const state = (typeof saved === 'object' && saved !== null ? saved : {}) as Record<string, unknown>;
    const n = (k: string) => (typeof state[k] === 'number' ? (state[k] as number) & 0xffff : 0);
    this.sts = n('sts') & STS_MASK;
    this.en = n('en') & STS_MASK;
    this.cnt = n('cnt') & SCI_EN;
    this.gpeSts = n('gpeSts');
    this.gpeEn = n('gpeEn');
    this.sleeping = state.sleeping === true;
    // PM_TMR goes on from the saved count, as the guest's other clocks do
    // after a restore (a timer that jumps back would look like a wrap).
    const timer = state.timer;
    if (typeof timer === 'number' && Number.isInteger(timer) && timer >= 0 && timer <= 0xffffff) {
      const ns = (BigInt(timer) * 1_000_000_000n + BigInt(PM_TIMER_HZ) - 1n) / BigInt(PM_TIMER_HZ);
      this.t0 = this.clockNs() - ns;
    }
    this.updateSci();
    this.remapIo();
  }
}
