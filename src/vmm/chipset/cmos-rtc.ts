/**
 * MC146818 real-time clock and 128 bytes of CMOS at ports 0x70 (index) and
 * 0x71 (data). Register with `pio.register(0x70, 2, rtc, 'rtc')`: offset 0
 * is the index port (bit 7 masks NMI, bits 6-0 select the byte), offset 1
 * the data port.
 *
 * Time is not ticked: registers 0-9 and the century byte (0x32) are computed
 * from the host clock plus a guest-set offset when they are read. While the
 * clock is stopped (reg B SET, or the reg A divider held in reset) the time
 * bytes are latched in CMOS, guest writes change the latched copy, and
 * restarting the clock turns the latched time into a new offset. A write to
 * a time register while the clock runs takes effect at once.
 *
 * Interrupt flags are evaluated lazily (from the time elapsed since the last
 * look) when reg C is read, and by an unref'd Node timer that runs only
 * while PIE, AIE or UIE is set. IRQ 8's level follows reg C's IRQF.
 * UIP (reg A bit 7) is set during the last millisecond before each second
 * boundary, so guests that wait for an update cycle see one.
 *
 * The memory-size, CPU-count and boot-order bytes are filled as QEMU's pc
 * machine does, for SeaBIOS.
 */
import {
  DeviceStateError,
  expectVersion,
  type AccessSize,
  type Device,
  type DeviceContext,
  type DeviceState,
  type IoHandler,
} from '../core/device.js';

export interface CmosRtcOptions {
  /** Total guest RAM in bytes (informational; the split below is what the BIOS sees). */
  memoryBytes: number;
  /** RAM below 4 GiB in bytes. */
  belowFourGiB: number;
  /** RAM above 4 GiB in bytes. */
  aboveFourGiB: number;
  cpus: number;
  /** Up to 3 of 'a'/'b' (floppy), 'c' (disk), 'd' (CD-ROM), 'n' (network); default 'cdn'. */
  bootOrder?: string;
  /** Host clock in ms since the epoch (default Date.now); for tests. */
  clock?: () => number;
  /** Interrupt line (default 8). */
  irq?: number;
  /** Keep local time instead of UTC (Windows guests); default false. */
  localTime?: boolean;
  /** Floppy drive types (register 0x10: drive A in bits 7-4, B in 3-0); default 0, none. */
  floppyTypes?: number;
  /** Floppy drives present (0-2), for the equipment byte 0x14. */
  floppyDrives?: number;
  /** More configuration bytes [index, value] (IDE disk types and geometry at 0x12, 0x19-0x2C), within the checksum. */
  extraBytes?: ReadonlyArray<readonly [number, number]>;
  /** Instance name (default "rtc"). */
  name?: string;
  /** Called when the alarm fires with AIE set (the chipset's S3 wake event). */
  onAlarm?: () => void;
}

export const RTC_PORT_BASE = 0x70;

// Register indexes
const SECONDS = 0x00;
const SECONDS_ALARM = 0x01;
const MINUTES = 0x02;
const MINUTES_ALARM = 0x03;
const HOURS = 0x04;
const HOURS_ALARM = 0x05;
const DAY_OF_WEEK = 0x06;
const DAY_OF_MONTH = 0x07;
const MONTH = 0x08;
const YEAR = 0x09;
const REG_A = 0x0a;
const REG_B = 0x0b;
const REG_C = 0x0c;
const REG_D = 0x0d;
const CENTURY = 0x32;

const TIME_REGS: ReadonlySet<number> = new Set([
  SECONDS,
  MINUTES,
  HOURS,
  DAY_OF_WEEK,
  DAY_OF_MONTH,
  MONTH,
  YEAR,
  CENTURY,
]);

const A_UIP = 0x80;
const A_DIVIDER = 0x70;
const A_RATE = 0x0f;

const B_SET = 0x80;
const B_PIE = 0x40;
const B_AIE = 0x20;
const B_UIE = 0x10;
const B_SQWE = 0x08;
const B_DM_BINARY = 0x04;
const B_24H = 0x02;

const C_IRQF = 0x80;
const C_PF = 0x40;
const C_AF = 0x20;
const C_UF = 0x10;

const D_VRT = 0x80;

/** UIP is reported during this many ms before each second boundary. */
const UIP_WINDOW_MS = 1;
/** Beyond this many seconds without a look, the alarm surely matched once if it can match. */
const DAY_SECONDS = 86_400;

const KiB = 1024;
const MiB = 1024 * KiB;

interface TimeFields {
  year: number;
  month: number; // 1-12
  day: number;
  weekday: number; // 1 = Sunday
  hours: number;
  minutes: number;
  seconds: number;
}

export class CmosRtc implements Device, IoHandler {
  readonly name: string;
  private readonly cmos = new Uint8Array(128);
  private index = 0;
  private nmi = false;
  /** Guest time = host clock + offset (ms). */
  private offsetMs = 0;
  /** Host time up to which interrupt flags have been evaluated. */
  private lastCheck: number;
  private irqLevel = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly clock: () => number;
  private readonly irqLine: number;
  private readonly localTime: boolean;

  private readonly onAlarm: (() => void) | undefined;

  constructor(
    private readonly ctx: DeviceContext,
    options: CmosRtcOptions,
  ) {
    this.name = options.name ?? 'rtc';
    this.onAlarm = options.onAlarm;
    this.clock = options.clock ?? (() => Date.now());
    this.irqLine = options.irq ?? 8;
    this.localTime = options.localTime ?? false;
    this.lastCheck = this.clock();
    this.cmos[REG_A] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
    this.cmos[REG_B] = B_24H;
    this.cmos[REG_C] = 0;
    this.cmos[REG_D] = D_VRT;
    this.fillMachineBytes(options);
  }

  /** NMI mask (index port bit 7) as last written by the guest. */
  get nmiMasked(): boolean {
    return this.nmi;
  }

  /** The guest's wall-clock time in ms since the epoch. */
  guestTime(): number {
    return this.clock() + this.offsetMs;
  }

  /** Raw CMOS byte (no time computation, no side effects); for the machine and tests. */
  peek(index: number): number {
    return this.cmos[index & 0x7f]!;
  }

  read(offset: number, size: AccessSize): number {
    let v = 0;
    for (let i = 0; i < size; i++) v |= this.readByte(offset + i) << (8 * i);
    return v >>> 0;
  }

  write(offset: number, size: AccessSize, value: number): void {
    for (let i = 0; i < size; i++) this.writeByte(offset + i, (value >>> (8 * i)) & 0xff);
  }

  private readByte(port: number): number {
    if (port !== 1) return 0xff; // the index port is write-only
    const idx = this.index;
    switch (idx) {
      case REG_A: {
        let a = this.cmos[REG_A]! & ~A_UIP;
        if (this.running() && this.msIntoSecond(this.guestTime()) >= 1000 - UIP_WINDOW_MS) a |= A_UIP;
        return a;
      }
      case REG_C: {
        this.updateFlags();
        const c = this.cmos[REG_C]!;
        this.cmos[REG_C] = 0;
        this.setIrqLevel(false);
        return c;
      }
      default:
        if (TIME_REGS.has(idx) && this.running()) return this.encodeTime(this.fields(this.guestTime()), idx);
        return this.cmos[idx]!;
    }
  }

  private writeByte(port: number, v: number): void {
    if (port === 0) {
      this.nmi = (v & 0x80) !== 0;
      this.index = v & 0x7f;
      return;
    }
    if (port !== 1) return;
    const idx = this.index;
    switch (idx) {
      case REG_A:
        this.writeControl(v & ~A_UIP, this.cmos[REG_B]!);
        return;
      case REG_B: {
        let b = v;
        if (b & B_SET) b &= ~B_UIE; // SET clears UIE
        this.writeControl(this.cmos[REG_A]!, b);
        return;
      }
      case REG_C:
      case REG_D:
        return; // read-only
      default:
        if (TIME_REGS.has(idx) && this.running()) {
          this.updateFlags();
          const now = this.guestTime();
          this.latch(now);
          this.cmos[idx] = v;
          this.restart(this.msIntoSecond(now));
          this.schedule();
          return;
        }
        this.cmos[idx] = v;
    }
  }

  private writeControl(a: number, b: number): void {
    this.updateFlags();
    const wasRunning = this.running();
    this.cmos[REG_A] = a;
    this.cmos[REG_B] = b;
    const isRunning = this.running();
    if (wasRunning && !isRunning) this.latch(this.guestTime());
    else if (!wasRunning && isRunning) this.restart(0);
    this.raiseFlags(0); // new enables may assert IRQF for pending flags
    this.schedule();
  }

  /** Whether the time of day advances: SET clear and the divider not held in reset. */
  private running(): boolean {
    return (this.cmos[REG_B]! & B_SET) === 0 && (this.cmos[REG_A]! & A_DIVIDER) <= 0x20;
  }

  /** Copies the time at `guestMs` into the CMOS time bytes (clock stopping). */
  private latch(guestMs: number): void {
    const f = this.fields(guestMs);
    for (const idx of TIME_REGS) this.cmos[idx] = this.encodeTime(f, idx);
  }

  /** Turns the latched time bytes into the offset (clock starting), `msIntoSecond` past the second. */
  private restart(msIntoSecond: number): void {
    const t = this.timeFromCmos();
    const now = this.clock();
    if (t === undefined) {
      this.ctx.guestErrors.warn(
        `${this.name}-time`,
        () => `${this.name}: guest set an invalid time, ignored`,
      );
    } else {
      this.offsetMs = t + msIntoSecond - now;
    }
    this.lastCheck = now;
  }

  // --- time encoding -------------------------------------------------------

  private fields(ms: number): TimeFields {
    const d = new Date(ms);
    if (this.localTime) {
      return {
        year: d.getFullYear(),
        month: d.getMonth() + 1,
        day: d.getDate(),
        weekday: d.getDay() + 1,
        hours: d.getHours(),
        minutes: d.getMinutes(),
        seconds: d.getSeconds(),
      };
    }
    return {
      year: d.getUTCFullYear(),
      month: d.getUTCMonth() + 1,
      day: d.getUTCDate(),
      weekday: d.getUTCDay() + 1,
      hours: d.getUTCHours(),
      minutes: d.getUTCMinutes(),
      seconds: d.getUTCSeconds(),
    };
  }

  private toBcd(v: number): number {
    if (this.cmos[REG_B]! & B_DM_BINARY) return v & 0xff;
    return (((Math.floor(v / 10) % 10) << 4) | (v % 10)) & 0xff;
  }

  private fromBcd(v: number): number {
    if (this.cmos[REG_B]! & B_DM_BINARY) return v;
    return (v >> 4) * 10 + (v & 0x0f);
  }

  private encodeHours(h: number): number {
    if (this.cmos[REG_B]! & B_24H) return this.toBcd(h);
    return this.toBcd(h % 12 || 12) | (h >= 12 ? 0x80 : 0);
  }

  private decodeHours(v: number): number {
    if (this.cmos[REG_B]! & B_24H) return this.fromBcd(v & 0x7f);
    return (this.fromBcd(v & 0x7f) % 12) + (v & 0x80 ? 12 : 0);
  }

  private encodeTime(f: TimeFields, idx: number): number {
    switch (idx) {
      case SECONDS:
        return this.toBcd(f.seconds);
      case MINUTES:
        return this.toBcd(f.minutes);
      case HOURS:
        return this.encodeHours(f.hours);
      case DAY_OF_WEEK:
        return this.toBcd(f.weekday);
      case DAY_OF_MONTH:
        return this.toBcd(f.day);
      case MONTH:
        return this.toBcd(f.month);
      case YEAR:
        return this.toBcd(f.year % 100);
      case CENTURY:
        return this.toBcd(Math.floor(f.year / 100));
      default:
        return this.cmos[idx]!;
    }
  }

  /** The time the CMOS time bytes hold, as ms since the epoch, or undefined if not a date. */
  private timeFromCmos(): number | undefined {
    const c = this.cmos;
    const year = this.fromBcd(c[CENTURY]!) * 100 + this.fromBcd(c[YEAR]!);
    const month = this.fromBcd(c[MONTH]!) - 1;
    const day = this.fromBcd(c[DAY_OF_MONTH]!);
    const hours = this.decodeHours(c[HOURS]!);
    const minutes = this.fromBcd(c[MINUTES]!);
    const seconds = this.fromBcd(c[SECONDS]!);
    const d = new Date(0);
    if (this.localTime) {
      d.setFullYear(year, month, day);
      d.setHours(hours, minutes, seconds, 0);
    } else {
      d.setUTCFullYear(year, month, day);
      d.setUTCHours(hours, minutes, seconds, 0);
    }
    const t = d.getTime();
    return Number.isFinite(t) ? t : undefined;
  }

  private msIntoSecond(guestMs: number): number {
    return ((guestMs % 1000) + 1000) % 1000;
  }

  // --- interrupts -----------------------------------------------------------

  /** Periodic interrupt period in ms from reg A's rate bits, or 0 if off. */
  private periodMs(): number {
    const a = this.cmos[REG_A]!;
    let rate = a & A_RATE;
    if (rate === 0 || (a & 0x60) === 0x60) return 0; // no rate, or divider in reset
    if (rate <= 2) rate += 7;
    return ((1 << (rate - 1)) * 1000) / 32768;
  }

  /** Sets the flags of the events since the last evaluation. */
  private updateFlags(): void {
    const now = this.clock();
    const prev = this.lastCheck;
    this.lastCheck = now;
    if (now <= prev) return; // no time passed, or the host clock stepped back
    let flags = 0;
    const period = this.periodMs();
    if (period > 0 && Math.floor(now / period) !== Math.floor(prev / period)) flags |= C_PF;
    if (this.running()) {
      const s0 = Math.floor((prev + this.offsetMs) / 1000);
      const s1 = Math.floor((now + this.offsetMs) / 1000);
      if (s1 > s0) {
        flags |= C_UF;
        if (this.alarmMatches(s0 + 1, s1)) flags |= C_AF;
      }
    }
    this.raiseFlags(flags);
  }

  /** Whether the alarm matches any second in [from, to] (seconds since the epoch, guest time). */
  private alarmMatches(from: number, to: number): boolean {
    const as = this.cmos[SECONDS_ALARM]!;
    const am = this.cmos[MINUTES_ALARM]!;
    const ah = this.cmos[HOURS_ALARM]!;
    const any = (v: number): boolean => (v & 0xc0) === 0xc0;
    if (any(as) && any(am) && any(ah)) return true;
    const start = Math.max(from, to - DAY_SECONDS + 1);
    const tz = this.localTime ? -new Date(to * 1000).getTimezoneOffset() * 60 : 0;
    for (let s = start; s <= to; s++) {
      const t = s + tz;
      const sec = ((t % 60) + 60) % 60;
      const min = ((Math.floor(t / 60) % 60) + 60) % 60;
      const hour = ((Math.floor(t / 3600) % 24) + 24) % 24;
      if (
        (any(as) || as === this.toBcd(sec)) &&
        (any(am) || am === this.toBcd(min)) &&
        (any(ah) || ah === this.encodeHours(hour))
      ) {
        return true;
      }
    }
    return false;
  }

  private raiseFlags(flags: number): void {
    if (flags & C_AF && this.cmos[REG_B]! & B_AIE) this.onAlarm?.();
    let c = this.cmos[REG_C]! | flags;
    if (c & this.cmos[REG_B]! & (B_PIE | B_AIE | B_UIE)) c |= C_IRQF;
    this.cmos[REG_C] = c;
    this.setIrqLevel((c & C_IRQF) !== 0);
  }

  private setIrqLevel(level: boolean): void {
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.ctx.irq.setIrq(this.irqLine, level);
  }

  /** Arms the timer for the next periodic tick or second boundary, if an interrupt is enabled. */
  private schedule(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const b = this.cmos[REG_B]!;
    const now = this.clock();
    let delay = Infinity;
    const period = this.periodMs();
    if (b & B_PIE && period > 0) delay = (Math.floor(now / period) + 1) * period - now;
    if (b & (B_AIE | B_UIE) && this.running()) {
      delay = Math.min(delay, 1000 - this.msIntoSecond(now + this.offsetMs));
    }
    if (!Number.isFinite(delay)) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.updateFlags();
        this.schedule();
      },
      Math.max(1, Math.ceil(delay)),
    );
    this.timer.unref();
  }

  // --- CMOS contents the BIOS reads -------------------------------------------

  private fillMachineBytes(o: CmosRtcOptions): void {
    const c = this.cmos;
    const below = Math.max(0, o.belowFourGiB);
    const above = Math.max(0, o.aboveFourGiB);
    const put16 = (idx: number, v: number): void => {
      c[idx] = v & 0xff;
      c[idx + 1] = (v >> 8) & 0xff;
    };
    put16(0x15, Math.min(Math.floor(below / KiB), 640));
    const ext = Math.min(below > MiB ? Math.floor((below - MiB) / KiB) : 0, 0xffff);
    put16(0x17, ext);
    put16(0x30, ext);
    put16(0x34, Math.min(below > 16 * MiB ? Math.floor((below - 16 * MiB) / (64 * KiB)) : 0, 0xffff));
    const high = Math.min(Math.floor(above / (64 * KiB)), 0xffffff);
    c[0x5b] = high & 0xff;
    c[0x5c] = (high >> 8) & 0xff;
    c[0x5d] = (high >> 16) & 0xff;
    // More CPUs than fit a byte: 0 tells SeaBIOS to ask fw_cfg.
    c[0x5f] = o.cpus >= 1 && o.cpus <= 256 ? o.cpus - 1 : 0;
    c[0x0f] = 0; // shutdown status: normal power-on
    c[0x10] = (o.floppyTypes ?? 0) & 0xff;
    // Equipment: FPU, PS/2 mouse, VGA; bit 0 and bits 7-6 the floppy drives.
    const drives = Math.min(Math.max(o.floppyDrives ?? 0, 0), 2);
    c[0x14] = 0x06 | (drives ? 0x01 | ((drives - 1) << 6) : 0);
    const boot = bootNibbles(o.bootOrder ?? 'cdn');
    c[0x3d] = (boot[1]! << 4) | boot[0]!;
    c[0x38] = boot[2]! << 4; // bit 0 clear: floppy boot signature check on
    for (const [i, v] of o.extraBytes ?? []) if (i >= 0x0e && i < c.length) c[i] = v & 0xff;
    // Standard checksum over 0x10-0x2d.
    let sum = 0;
    for (let i = 0x10; i <= 0x2d; i++) sum += c[i]!;
    c[0x2e] = (sum >> 8) & 0xff;
    c[0x2f] = sum & 0xff;
  }

  // --- Device -----------------------------------------------------------------

  /** Chip reset: interrupt enables and flags clear; time, format and NVRAM are kept. */
  reset(): void {
    this.updateFlags();
    this.cmos[REG_B] = this.cmos[REG_B]! & ~(B_PIE | B_AIE | B_UIE | B_SQWE);
    this.cmos[REG_C] = 0;
    this.index = 0;
    this.nmi = false;
    this.setIrqLevel(false);
    this.schedule();
  }

  saveState(): DeviceState {
    this.updateFlags();
    return {
      version: 1,
      cmos: Array.from(this.cmos),
      index: this.index,
      nmiMasked: this.nmi,
      offsetMs: this.offsetMs,
    };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const { cmos, index, nmiMasked, offsetMs } = state;
    if (
      !Array.isArray(cmos) ||
      cmos.length !== 128 ||
      !cmos.every((b) => Number.isInteger(b) && b >= 0 && b <= 0xff) ||
      typeof index !== 'number' ||
      !Number.isInteger(index) ||
      index < 0 ||
      index > 0x7f ||
      typeof nmiMasked !== 'boolean' ||
      typeof offsetMs !== 'number' ||
      !Number.isFinite(offsetMs)
    ) {
      throw new DeviceStateError(`${this.name}: malformed state`);
    }
    this.cmos.set(cmos as number[]);
    this.index = index;
    this.nmi = nmiMasked;
    this.offsetMs = offsetMs;
    this.lastCheck = this.clock();
    const level = (this.cmos[REG_C]! & C_IRQF) !== 0;
    this.irqLevel = level;
    this.ctx.irq.setIrq(this.irqLine, level);
    this.schedule();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

function bootNibbles(order: string): number[] {
  if (order.length > 3) throw new RangeError(`rtc: too many boot devices in "${order}" (at most 3)`);
  const out = [0, 0, 0];
  for (let i = 0; i < order.length; i++) {
    const ch = order[i]!.toLowerCase();
    const n = ch === 'a' || ch === 'b' ? 1 : ch === 'c' ? 2 : ch === 'd' ? 3 : ch === 'n' ? 4 : 0;
    if (n === 0) throw new RangeError(`rtc: invalid boot device '${ch}' in "${order}"`);
    out[i] = n;
  }
  return out;
}
