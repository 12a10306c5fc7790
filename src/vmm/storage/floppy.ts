/**
 * Intel 82078-compatible floppy disk controller in PC-AT mode, with up to
 * two 3.5"/5.25" drives (A: and B:) whose disks are raw images behind
 * BlockImage. Modelled after QEMU's hw/block/fdc.c, with the register and
 * command behaviour of the Intel 82077AA/82078 datasheets where QEMU
 * takes shortcuts.
 *
 * Wiring on a PC (the machine does it):
 *
 *   pio.register(FDC_PORT_BASE, FDC_PORT_COUNT, fdc.ports, fdc.name);   // 0x3F0-0x3F5
 *   pio.register(FDC_DIR_PORT, 1, fdc.dirPort, fdc.name);               // 0x3F7 (0x3F6 is IDE's)
 *   IRQ 6 (ctx.irq), ISA DMA channel 2 (the I8257Dma), CMOS byte 0x10 =
 *   fdc.cmosDriveTypes() (drive A: in the high nibble).
 *
 * Registers (offset from 0x3F0): 0 SRA and 1 SRB (PS/2 status, read-only),
 * 2 DOR, 3 TDR, 4 MSR (read) / DSR (write), 5 FIFO (data), 7 DIR (read) /
 * CCR (write).
 *
 * Model:
 *  - Geometry comes from the image size (360K, 720K, 1.2M, 1.44M, 1.68M
 *    DMF, 2.88M); every sector is 512 bytes (N = 2). The programmed data
 *    rate (DSR/CCR) must match the medium, or READ ID and transfers fail
 *    with "missing address mark", as QEMU does: SeaBIOS and Linux find the
 *    format by trying rates.
 *  - Read and write commands always seek to the cylinder in the command
 *    (an implied seek, whatever CONFIGURE's EIS says): SeaBIOS issues READ
 *    DATA without a SEEK first, and QEMU behaves the same way.
 *  - Image I/O is asynchronous. A read command fetches all its sectors (up
 *    to the end of the track, or of the cylinder with MT) first; meanwhile
 *    MSR shows the controller busy and the guest polls or waits for IRQ 6.
 *    Then data moves by DMA (DREQ on channel 2, the whole transfer in one
 *    DMA callback) or, after SPECIFY with ND set, through the FIFO (MSR
 *    RQM|NDMA), and the result phase raises the interrupt. Writes take the
 *    data from the guest first and write the image before the result.
 *  - Termination follows the datasheet's result phase table (82077AA table
 *    5-6): terminal count from the DMA controller ends a command normally
 *    and the result names the sector after the last one; running past EOT
 *    without TC (always the case in non-DMA mode) ends it with IC=01 and
 *    ST1 EN, naming the last sector, which Linux expects of pseudo-DMA.
 *    A sector cut short by TC is completed: read on, or written with
 *    zeroes (82077AA "WRITE DATA").
 *  - DOR bit 3 (DMAGATE) gates the INT and DRQ outputs as on a PC/AT.
 *    DOR reset (bit 2 low, then high) and DSR software reset end with the
 *    drive-polling interrupt: four SENSE INTERRUPT STATUS give 0xC0-0xC3.
 *  - No timing: seeks complete at once, motors need not spin, the FIFO
 *    never over- or underruns.
 *  - Not implemented (answer 0x80 "invalid"): READ/WRITE DELETED DATA,
 *    SCAN EQUAL/LOW/HIGH, SAVE, RESTORE, OPTION, FORMAT AND WRITE. Drives
 *    2 and 3 never exist. TDR boot-drive swapping is not modelled.
 */
import { Buffer } from 'node:buffer';
import {
  DeviceStateError,
  expectVersion,
  type AccessSize,
  type Device,
  type DeviceContext,
  type DeviceState,
  type IoHandler,
} from '../core/device.js';
import { BlockError, type BlockImage } from '../../block/image.js';
import type { IsaDma } from '../chipset/i8257-dma.js';

export const FDC_PORT_BASE = 0x3f0;
/** 0x3F0-0x3F5. */
export const FDC_PORT_COUNT = 6;
/** DIR (read) / CCR (write). */
export const FDC_DIR_PORT = 0x3f7;
export const FDC_IRQ = 6;
export const FDC_DMA_CHANNEL = 2;

export const FLOPPY_SECTOR_SIZE = 512;

// Data rates (DSR/CCR bits 1-0).
const RATE_500K = 0;
const RATE_300K = 1;
const RATE_250K = 2;
const RATE_1M = 3;

export type FloppyDriveType = '360K' | '1.2M' | '720K' | '1.44M' | '2.88M';

/** A disk format the controller recognises by image size. */
export interface FloppyFormat {
  readonly name: string;
  readonly tracks: number;
  readonly heads: number;
  readonly sectors: number;
  /** Data rate the medium is recorded at (DSR bits 1-0). */
  readonly rate: number;
  /** The drive type that reads it natively. */
  readonly drive: FloppyDriveType;
}

const FORMATS: readonly FloppyFormat[] = [
  { name: '360K', tracks: 40, heads: 2, sectors: 9, rate: RATE_300K, drive: '360K' },
  { name: '720K', tracks: 80, heads: 2, sectors: 9, rate: RATE_250K, drive: '720K' },
  { name: '1.2M', tracks: 80, heads: 2, sectors: 15, rate: RATE_500K, drive: '1.2M' },
  { name: '1.44M', tracks: 80, heads: 2, sectors: 18, rate: RATE_500K, drive: '1.44M' },
  { name: '1.68M (DMF)', tracks: 80, heads: 2, sectors: 21, rate: RATE_500K, drive: '1.44M' },
  { name: '2.88M', tracks: 80, heads: 2, sectors: 36, rate: RATE_1M, drive: '2.88M' },
];

/** CMOS register 0x10 drive type codes (as SeaBIOS and Linux read them). */
const CMOS_DRIVE_TYPE: Record<FloppyDriveType, number> = {
  '360K': 1,
  '1.2M': 2,
  '720K': 3,
  '1.44M': 4,
  '2.88M': 5,
};

function formatSize(f: FloppyFormat): number {
  return f.tracks * f.heads * f.sectors * FLOPPY_SECTOR_SIZE;
}

/** The image sizes a floppy drive accepts, for error messages. */
export const FLOPPY_IMAGE_SIZES: readonly string[] = FORMATS.map((f) => `${f.name} (${formatSize(f)} bytes)`);

/** The disk format of an image of `size` bytes, or undefined if no floppy has that size. */
export function floppyFormat(size: number): FloppyFormat | undefined {
  return FORMATS.find((f) => formatSize(f) === size);
}

/**
 * The CMOS drive type (register 0x10 nibble: 1 360K, 2 1.2M, 3 720K,
 * 4 1.44M, 5 2.88M) of the drive that reads an image of `imageSize` bytes.
 * The machine puts drive A: in the high nibble and B: in the low one, and
 * sets the equipment byte (0x14) bit 0 and bits 7-6 (drives - 1).
 */
export function cmosFloppyType(imageSize: number): number {
  const f = floppyFormat(imageSize);
  if (!f) {
    throw new RangeError(
      `a floppy image must be one of ${FLOPPY_IMAGE_SIZES.join(', ')}; this one has ${imageSize} bytes`,
    );
  }
  return CMOS_DRIVE_TYPE[f.drive];
}

export interface FloppyDriveOptions {
  /** The disk in the drive; none for an empty drive. The controller never closes images. */
  image?: BlockImage;
  /** Drive type (CMOS); default: the one native to the image's format, 1.44M for an empty drive. */
  type?: FloppyDriveType;
  /** Write-protect the disk even if the image is writable (a read-only image always is). */
  readOnly?: boolean;
}

export interface FloppyControllerOptions {
  /** The ISA DMA controller (channel `dmaChannel` is registered at construction). */
  dma: IsaDma;
  /** Drive A: and, optionally, drive B:. */
  drives: readonly FloppyDriveOptions[];
  /** Interrupt line (default 6). */
  irq?: number;
  /** ISA DMA channel (default 2). */
  dmaChannel?: number;
  /** Instance name (default "fdc"). */
  name?: string;
}

// Register offsets.
const REG_SRA = 0;
const REG_SRB = 1;
const REG_DOR = 2;
const REG_TDR = 3;
const REG_MSR_DSR = 4;
const REG_FIFO = 5;

// DOR.
const DOR_SEL = 0x03;
const DOR_NRESET = 0x04;
const DOR_DMAGATE = 0x08;
const DOR_MOTOR0 = 0x10;
const DOR_MOTOR1 = 0x20;
/** After power-on (as QEMU and what a BIOS leaves): out of reset, INT/DRQ enabled. */
const DOR_DEFAULT = DOR_NRESET | DOR_DMAGATE;

// DSR.
const DSR_SWRESET = 0x80;
const DSR_RATE = 0x03;

// MSR.
const MSR_RQM = 0x80;
const MSR_DIO = 0x40;
const MSR_NDMA = 0x20;
const MSR_CB = 0x10;

// DIR.
const DIR_DSKCHG = 0x80;

// ST0.
const ST0_EC = 0x10;
const ST0_SE = 0x20;
const ST0_ABNTERM = 0x40;
const ST0_INVALID = 0x80;
const ST0_POLLING = 0xc0;

// ST1.
const ST1_MA = 0x01;
const ST1_NW = 0x02;
const ST1_ND = 0x04;
const ST1_DE = 0x20;
const ST1_EN = 0x80;

// ST2.
const ST2_DD = 0x20;

// ST3.
const ST3_WP = 0x40;
const ST3_RDY = 0x20;
const ST3_T0 = 0x10;
const ST3_TS = 0x08;

/** CONFIGURE byte 2 after a reset: implied seek off, FIFO disabled, polling on, threshold 1. */
const CONFIG_DEFAULT = 0x20;
const VERSION_82077_UP = 0x90;
/** PART ID of QEMU's 82078 (Linux reports "S82078B"). */
const PART_ID = 0x41;
const RESET_SENSEI_COUNT = 4;
const MAX_DRIVES = 2;

type Op =
  | 'read'
  | 'write'
  | 'readTrack'
  | 'verify'
  | 'format'
  | 'readId'
  | 'specify'
  | 'senseDrive'
  | 'recalibrate'
  | 'senseInt'
  | 'seek'
  | 'relativeSeek'
  | 'version'
  | 'configure'
  | 'perpendicular'
  | 'lock'
  | 'dumpreg'
  | 'partId'
  | 'powerdown'
  | 'driveSpec'
  | 'invalid';

interface CommandInfo {
  readonly op: Op;
  /** Parameter bytes after the opcode (driveSpec: until a byte with bit 7 set). */
  readonly params: number;
}

/** Decodes an opcode byte (82078 command set; MT/MFM/SK bits masked where the command has them). */
function decode(v: number): CommandInfo {
  if ((v & 0x1f) === 0x06) return { op: 'read', params: 8 };
  if ((v & 0x1f) === 0x05) return { op: 'write', params: 8 }; // SK set is accepted, as QEMU does for BeOS
  if ((v & 0xbf) === 0x02) return { op: 'readTrack', params: 8 };
  if ((v & 0x1f) === 0x16) return { op: 'verify', params: 8 };
  if ((v & 0xbf) === 0x0d) return { op: 'format', params: 5 };
  if ((v & 0xbf) === 0x0a) return { op: 'readId', params: 1 };
  if ((v & 0xbf) === 0x8f) return { op: 'relativeSeek', params: 2 };
  if ((v & 0x7f) === 0x14) return { op: 'lock', params: 0 };
  switch (v) {
    case 0x03:
      return { op: 'specify', params: 2 };
    case 0x04:
      return { op: 'senseDrive', params: 1 };
    case 0x07:
      return { op: 'recalibrate', params: 1 };
    case 0x08:
      return { op: 'senseInt', params: 0 };
    case 0x0e:
      return { op: 'dumpreg', params: 0 };
    case 0x0f:
      return { op: 'seek', params: 2 };
    case 0x10:
      return { op: 'version', params: 0 };
    case 0x12:
      return { op: 'perpendicular', params: 1 };
    case 0x13:
      return { op: 'configure', params: 3 };
    case 0x17:
      return { op: 'powerdown', params: 1 };
    case 0x18:
      return { op: 'partId', params: 0 };
    case 0x8e:
      return { op: 'driveSpec', params: 5 };
    default:
      return { op: 'invalid', params: 0 };
  }
}

interface SectorId {
  c: number;
  h: number;
  r: number;
}

type TransferKind = 'read' | 'write' | 'format';
type Stage = 'fetch' | 'transfer' | 'commit';

/** A data command in its execution phase. */
interface Execution {
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

interface Drive {
  readonly present: boolean;
  readonly type: FloppyDriveType;
  image: BlockImage | undefined;
  format: FloppyFormat | undefined;
  forceReadOnly: boolean;
  /** Present cylinder number (the controller's PCN for the drive). */
  track: number;
  head: number;
  /** Sector last under the head, for READ ID. */
  sector: number;
  /** The disk change latch (DIR bit 7); cleared by a step with a disk in. */
  changed: boolean;
}

type Phase = 'command' | 'execution' | 'result';

export class FloppyController implements Device {
  readonly name: string;
  /** Ports 0x3F0-0x3F5 (offsets 0-5). */
  readonly ports: IoHandler;
  /** Port 0x3F7: DIR (read) / CCR (write). */
  readonly dirPort: IoHandler;

  private readonly dma: IsaDma;
  private readonly irqLine: number;
  private readonly dmaChannel: number;
  private readonly drives: Drive[];

  private dor = DOR_DEFAULT;
  private tdr = 0;
  private dsr = RATE_500K;
  private phase: Phase = 'command';
  private cmd: number[] = [];
  private cmdInfo: CommandInfo = { op: 'invalid', params: 0 };
  private result: number[] = [];
  private resultPos = 0;
  private exec: Execution | undefined;

  private intPending = false;
  private irqLevel = false;
  /** ST0 of the last SEEK/RECALIBRATE, until SENSE INTERRUPT STATUS. */
  private senseSt0: number | undefined;
  private senseDrive = 0;
  /** Drive-polling statuses left after a reset. */
  private resetSensei = 0;
  private driveBusy = 0;

  private specify1 = 0;
  private specify2 = 0;
  private config = CONFIG_DEFAULT;
  private pretrk = 0;
  private locked = false;
  /** PERPENDICULAR MODE: D3-D0 in bits 5-2, GAP bit 1, WGATE bit 0. */
  private perpendicular = 0;
  private readonly driveSpec = [0, 0, 0, 0];
  private powerdown = 0;
  /** SC of the last FORMAT or EOT of the last read/write, for DUMPREG. */
  private lastScEot = 0;

  private dreqHeld = false;
  /** Invalidates image I/O in flight (reset, eject, load). */
  private generation = 0;
  private pendingIo = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly ctx: DeviceContext,
    options: FloppyControllerOptions,
  ) {
    this.name = options.name ?? 'fdc';
    this.dma = options.dma;
    this.irqLine = options.irq ?? FDC_IRQ;
    this.dmaChannel = options.dmaChannel ?? FDC_DMA_CHANNEL;
    if (options.drives.length < 1 || options.drives.length > MAX_DRIVES) {
      throw new RangeError(
        `${this.name}: a floppy controller has 1 or 2 drives, not ${options.drives.length}`,
      );
    }
    this.drives = [0, 1, 2, 3].map((i): Drive => {
      const o = options.drives[i];
      const format = o?.image ? this.checkImage(i, o.image) : undefined;
      return {
        present: o !== undefined,
        type: o?.type ?? format?.drive ?? '1.44M',
        image: o?.image,
        format,
        forceReadOnly: o?.readOnly ?? false,
        track: 0,
        head: 0,
        sector: 1,
        changed: true, // the change latch is set at power-on
      };
    });
    this.dma.registerChannel(this.dmaChannel, { transfer: (pos, size) => this.dmaTransfer(pos, size) });
    this.ports = {
      read: (offset: number, size: AccessSize) => this.readBytes(offset, size),
      write: (offset: number, size: AccessSize, value: number) => {
        for (let i = 0; i < size; i++) this.writeReg(offset + i, (value >>> (8 * i)) & 0xff);
      },
    };
    this.dirPort = {
      read: () => this.readDir(),
      write: (_offset: number, _size: AccessSize, value: number) => this.writeCcr(value & 0xff),
    };
  }

  // --- API for the machine -----------------------------------------------------

  /** CMOS register 0x10: drive A:'s type in the high nibble, B:'s in the low one (0 = none). */
  cmosDriveTypes(): number {
    const t = (i: number): number => (this.drives[i]!.present ? CMOS_DRIVE_TYPE[this.drives[i]!.type] : 0);
    return (t(0) << 4) | t(1);
  }

  /** Number of drives attached (for the equipment byte). */
  get driveCount(): number {
    return this.drives.filter((d) => d.present).length;
  }

  hasMedia(drive: number): boolean {
    return this.drive(drive).image !== undefined;
  }

  /**
   * Takes the disk out of a drive and returns its image (close it after
   * `whenIdle()`); the disk change line goes active. A command running on
   * the drive ends with "missing address mark".
   */
  eject(drive: number): BlockImage | undefined {
    const d = this.drive(drive);
    const image = d.image;
    d.image = undefined;
    d.format = undefined;
    d.changed = true;
    if (image && this.exec?.drive === drive) this.abortExec(ST1_MA);
    return image;
  }

  /** Puts a disk in an empty drive (ejecting any disk first); the disk change line goes active. */
  insert(drive: number, image: BlockImage, options: { readOnly?: boolean } = {}): void {
    const d = this.drive(drive);
    const format = this.checkImage(drive, image);
    if (d.image) this.eject(drive);
    d.image = image;
    d.format = format;
    d.forceReadOnly = options.readOnly ?? false;
    d.changed = true;
  }

  /** Resolves when no image I/O is in flight (tests; before closing an ejected image). */
  whenIdle(): Promise<void> {
    if (this.pendingIo === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private drive(i: number): Drive {
    if (!Number.isInteger(i) || i < 0 || i >= MAX_DRIVES || !this.drives[i]!.present) {
      throw new RangeError(`${this.name}: there is no floppy drive ${i}`);
    }
    return this.drives[i]!;
  }

  private checkImage(drive: number, image: BlockImage): FloppyFormat {
    const f = floppyFormat(image.size);
    if (!f) {
      throw new RangeError(
        `${this.name}: drive ${String.fromCharCode(65 + drive)}: ${image.path} has ${image.size} bytes; a floppy image must be one of ${FLOPPY_IMAGE_SIZES.join(', ')}`,
      );
    }
    return f;
  }

  private writeProtected(d: Drive): boolean {
    return !d.image || d.image.readOnly || d.forceReadOnly;
  }

  // --- registers -------------------------------------------------------------

  private readBytes(offset: number, size: AccessSize): number {
    let v = 0;
    for (let i = 0; i < size; i++) v |= this.readReg(offset + i) << (8 * i);
    return v >>> 0;
  }

  private readReg(reg: number): number {
    switch (reg) {
      case REG_SRA:
        // PS/2 mode status A: INT pending, second drive not installed.
        return (this.irqLevel ? 0x80 : 0) | (this.drives[1]!.present ? 0 : 0x40);
      case REG_SRB:
        return (
          0xc0 |
          (this.dor & DOR_MOTOR0 ? 0x01 : 0) |
          (this.dor & DOR_MOTOR1 ? 0x02 : 0) |
          (this.dor & 1 ? 0x20 : 0)
        );
      case REG_DOR:
        return this.dor;
      case REG_TDR:
        return this.tdr;
      case REG_MSR_DSR:
        return this.msr();
      case REG_FIFO:
        return this.readFifo();
      default:
        return 0xff;
    }
  }

  private writeReg(reg: number, v: number): void {
    switch (reg) {
      case REG_DOR:
        this.writeDor(v);
        return;
      case REG_TDR:
        if (this.dor & DOR_NRESET) this.tdr = v & 0x03;
        return;
      case REG_MSR_DSR:
        this.writeDsr(v);
        return;
      case REG_FIFO:
        this.writeFifo(v);
        return;
      default:
        return; // SRA/SRB are read-only
    }
  }

  private msr(): number {
    if (!(this.dor & DOR_NRESET)) return 0;
    switch (this.phase) {
      case 'command':
        return MSR_RQM | (this.cmd.length > 0 ? MSR_CB : 0) | this.driveBusy;
      case 'result':
        return MSR_RQM | MSR_DIO | MSR_CB | this.driveBusy;
      case 'execution': {
        const x = this.exec;
        if (!x || !this.pio()) return MSR_CB | this.driveBusy;
        let v = MSR_CB | MSR_NDMA | this.driveBusy;
        if (x.stage === 'transfer') v |= MSR_RQM | (x.kind === 'read' ? MSR_DIO : 0);
        return v;
      }
    }
  }

  private writeDor(v: number): void {
    const old = this.dor;
    this.dor = v;
    if (!(v & DOR_NRESET)) {
      if (old & DOR_NRESET) this.softReset();
    } else if (!(old & DOR_NRESET)) {
      this.resetDone();
    }
    this.updateIrq();
    this.updateDreq();
  }

  private writeDsr(v: number): void {
    if (!(this.dor & DOR_NRESET)) return;
    if (v & DSR_SWRESET) {
      // Self-clearing software reset (Linux's reset_fdc on an 82072A or later).
      this.softReset();
      this.resetDone();
    }
    this.dsr = v & ~DSR_SWRESET;
  }

  /** CCR: only the data rate bits exist in PC-AT mode; they are shared with DSR. */
  private writeCcr(v: number): void {
    if (!(this.dor & DOR_NRESET)) return;
    this.dsr = (this.dsr & ~DSR_RATE) | (v & DSR_RATE);
  }

  private readDir(): number {
    const d = this.drives[this.dor & DOR_SEL]!;
    return d.present && (d.changed || !d.image) ? DIR_DSKCHG : 0;
  }

  private readFifo(): number {
    if (!(this.dor & DOR_NRESET)) return 0;
    if (this.phase === 'result') {
      const v = this.result[this.resultPos++] ?? 0;
      if (this.resultPos >= this.result.length) {
        this.toCommandPhase();
        this.setInt(false);
      }
      return v;
    }
    const x = this.exec;
    if (this.phase === 'execution' && x && this.pio() && x.stage === 'transfer' && x.kind === 'read') {
      const v = x.data[x.done++]!;
      if (x.done >= x.data.length) this.endDataPhase();
      return v;
    }
    this.guestError('fifo-read', () => `${this.name}: data register read while the controller has no data`);
    return 0;
  }

  private writeFifo(v: number): void {
    if (!(this.dor & DOR_NRESET)) return;
    const x = this.exec;
    if (this.phase === 'execution') {
      if (x && this.pio() && x.stage === 'transfer' && x.kind !== 'read') {
        x.data[x.done++] = v;
        if (x.done >= x.data.length) this.endDataPhase();
        return;
      }
      this.guestError(
        'fifo-busy',
        () => `${this.name}: data register write while a command executes, ignored`,
      );
      return;
    }
    if (this.phase === 'result') {
      this.guestError('fifo-result', () => `${this.name}: data register write in the result phase, ignored`);
      return;
    }
    if (this.cmd.length === 0) this.cmdInfo = decode(v);
    this.cmd.push(v);
    const info = this.cmdInfo;
    // DRIVE SPECIFICATION ends at the first byte with bit 7 set (82078 datasheet).
    const complete = info.op === 'driveSpec' ? this.cmd.length > 1 && (v & 0x80) !== 0 : false;
    if (complete || this.cmd.length === info.params + 1) {
      const cmd = this.cmd;
      this.cmd = [];
      this.execute(info.op, cmd);
    }
  }

  // --- phases ----------------------------------------------------------------

  private toCommandPhase(): void {
    this.phase = 'command';
    this.cmd = [];
    this.result = [];
    this.resultPos = 0;
  }

  private toResultPhase(bytes: number[]): void {
    this.phase = 'result';
    this.result = bytes;
    this.resultPos = 0;
  }

  /** In non-DMA mode (SPECIFY ND). */
  private pio(): boolean {
    return (this.specify2 & 1) !== 0;
  }

  private setInt(pending: boolean): void {
    this.intPending = pending;
    this.updateIrq();
  }

  /** A new interrupt condition; leftover drive-polling statuses are dropped (as QEMU does). */
  private raiseInt(): void {
    this.resetSensei = 0;
    this.setInt(true);
  }

  private updateIrq(): void {
    const level = this.intPending && (this.dor & DOR_DMAGATE) !== 0;
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.ctx.irq.setIrq(this.irqLine, level);
  }

  /** DRQ is asserted while a DMA-mode data phase waits for the DMA controller and DMAGATE is set. */
  private updateDreq(): void {
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
  private softReset(): void {
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
  private resetDone(): void {
    this.raiseInt();
    this.resetSensei = RESET_SENSEI_COUNT;
  }

  // --- commands --------------------------------------------------------------

  private execute(op: Op, cmd: number[]): void {
    switch (op) {
      case 'read':
      case 'readTrack':
      case 'write':
      case 'verify':
        this.startTransfer(op, cmd);
        return;
      case 'format':
        this.startFormat(cmd);
        return;
      case 'readId':
        this.readId(cmd);
        return;
      case 'specify':
        this.specify1 = cmd[1]!;
        this.specify2 = cmd[2]!;
        this.toCommandPhase();
        return;
      case 'senseDrive':
        this.senseDriveStatus(cmd);
        return;
      case 'recalibrate':
        this.seekTo(cmd[1]! & 3, 0, true);
        return;
      case 'senseInt':
        this.senseInterrupt();
        return;
      case 'seek':
        this.drives[cmd[1]! & 3]!.head = (cmd[1]! >> 2) & 1;
        this.seekTo(cmd[1]! & 3, cmd[2]!, false);
        return;
      case 'relativeSeek': {
        const drive = cmd[1]! & 3;
        const d = this.drives[drive]!;
        d.head = (cmd[1]! >> 2) & 1;
        const target = cmd[0]! & 0x40 ? d.track + cmd[2]! : d.track - cmd[2]!;
        this.seekTo(drive, Math.max(0, Math.min(0xff, target)), false);
        return;
      }
      case 'version':
        this.toResultPhase([VERSION_82077_UP]);
        return;
      case 'partId':
        this.toResultPhase([PART_ID]);
        return;
      case 'configure':
        this.config = cmd[2]! & 0x7f;
        this.pretrk = cmd[3]!;
        this.toCommandPhase();
        return;
      case 'perpendicular': {
        const v = cmd[1]!;
        const drives = v & 0x80 ? v & 0x3c : this.perpendicular & 0x3c; // OW: overwrite D3-D0
        this.perpendicular = drives | (v & 0x03);
        this.toCommandPhase();
        return;
      }
      case 'lock':
        this.locked = (cmd[0]! & 0x80) !== 0;
        this.toResultPhase([this.locked ? 0x10 : 0x00]);
        return;
      case 'dumpreg':
        this.toResultPhase([
          this.drives[0]!.track,
          this.drives[1]!.track,
          this.drives[2]!.track,
          this.drives[3]!.track,
          this.specify1,
          this.specify2,
          this.lastScEot,
          (this.locked ? 0x80 : 0) | this.perpendicular,
          this.config,
          this.pretrk,
        ]);
        return;
      case 'powerdown':
        this.powerdown = cmd[1]!;
        this.toResultPhase([cmd[1]!]);
        return;
      case 'driveSpec': {
        const last = cmd[cmd.length - 1]!;
        for (const b of cmd.slice(1)) if (!(b & 0x80)) this.driveSpec[b & 3] = b;
        if (!(last & 0x80)) {
          this.toResultPhase([ST0_INVALID]); // five specifications without "done"
        } else if (last & 0x40) {
          this.toCommandPhase(); // NRP: no result phase
        } else {
          this.toResultPhase([...this.driveSpec]);
        }
        return;
      }
      case 'invalid':
        this.guestError(
          `invalid-${cmd[0]}`,
          () => `${this.name}: unsupported command 0x${cmd[0]!.toString(16)}, answered "invalid"`,
        );
        this.toResultPhase([ST0_INVALID]);
        return;
    }
  }

  /** SEEK, RELATIVE SEEK and RECALIBRATE: instant; the interrupt reports the end. */
  private seekTo(drive: number, track: number, recalibrate: boolean): void {
    const d = this.drives[drive]!;
    let st0 = ST0_SE | drive;
    if (recalibrate && !d.present) {
      st0 |= ST0_ABNTERM | ST0_EC; // no TRK0 signal from a missing drive
    } else {
      this.step(d, track);
    }
    if (!d.present && !recalibrate) d.track = track; // the controller counts steps anyway
    this.toCommandPhase();
    this.driveBusy |= 1 << drive;
    this.senseSt0 = st0;
    this.senseDrive = drive;
    this.raiseInt();
  }

  /** Moves a drive's head; a step with a disk in clears the disk change latch. */
  private step(d: Drive, track: number): boolean {
    if (!d.present || d.track === track) return false;
    d.track = track;
    if (d.image) d.changed = false;
    return true;
  }

  private senseInterrupt(): void {
    if (this.resetSensei > 0) {
      const drive = RESET_SENSEI_COUNT - this.resetSensei;
      this.resetSensei--;
      this.toResultPhase([ST0_POLLING | drive, this.drives[drive]!.track]);
      this.setInt(false);
      return;
    }
    if (!this.intPending || this.senseSt0 === undefined) {
      this.toResultPhase([ST0_INVALID]);
      return;
    }
    const st0 = this.senseSt0;
    this.senseSt0 = undefined;
    this.driveBusy &= ~(1 << this.senseDrive);
    this.toResultPhase([st0, this.drives[this.senseDrive]!.track]);
    this.setInt(false);
  }

  private senseDriveStatus(cmd: number[]): void {
    const drive = cmd[1]! & 3;
    const head = (cmd[1]! >> 2) & 1;
    const d = this.drives[drive]!;
    d.head = head;
    let st3 = ST3_RDY | ST3_TS | (head << 2) | drive;
    if (d.present) {
      if (this.writeProtected(d)) st3 |= ST3_WP;
      if (d.track === 0) st3 |= ST3_T0;
    }
    this.toResultPhase([st3]);
  }

  /** Why a drive cannot read its disk at the programmed rate, or 0 (ST1 bits). */
  private mediaError(d: Drive, mfm: boolean): number {
    if (!d.present || !d.image || !d.format) return ST1_MA;
    if (!mfm || (this.dsr & DSR_RATE) !== d.format.rate) return ST1_MA;
    return 0;
  }

  private readId(cmd: number[]): void {
    const drive = cmd[1]! & 3;
    const head = (cmd[1]! >> 2) & 1;
    const d = this.drives[drive]!;
    d.head = head;
    const st0 = (head << 2) | drive;
    const err = this.mediaError(d, (cmd[0]! & 0x40) !== 0);
    const f = d.format;
    if (err || !f || d.track >= f.tracks || head >= f.heads) {
      this.finish([st0 | ST0_ABNTERM, err || ST1_MA, 0, d.track, head, d.sector, 2]);
      return;
    }
    // The disk spins: each READ ID sees the next sector header (QEMU does this for Coherent).
    d.sector = (d.sector % f.sectors) + 1;
    this.finish([st0, 0, 0, d.track, head, d.sector, 2]);
  }

  /** Ends a command with a result phase and an interrupt. */
  private finish(result: number[]): void {
    this.exec = undefined;
    this.updateDreq();
    this.toResultPhase(result);
    this.raiseInt();
  }

  /** READ DATA, READ TRACK, WRITE DATA, VERIFY: checks, implied seek, the sector list. */
  private startTransfer(op: 'read' | 'readTrack' | 'write' | 'verify', cmd: number[]): void {
    const drive = cmd[1]! & 3;
    const d = this.drives[drive]!;
    const mt = op !== 'readTrack' && (cmd[0]! & 0x80) !== 0;
    const [c, h, r0, n, eot] = [cmd[2]!, cmd[3]!, cmd[4]!, cmd[5]!, cmd[6]!];
    this.lastScEot = eot;
    const fail = (st1: number, st2 = 0): void =>
      this.finish([ST0_ABNTERM | ((h & 1) << 2) | drive, st1, st2, c, h, r0, n]);
    const err = this.mediaError(d, (cmd[0]! & 0x40) !== 0);
    if (err) return fail(err);
    if (op === 'write' && this.writeProtected(d)) return fail(ST1_NW);
    const seeked = this.step(d, c);
    d.head = h & 1;

    // The sectors from R to EOT (then, with MT, side 1 from sector 1), up to the first that does not exist.
    const sectors: SectorId[] = [];
    let end: Execution['end'] = 'eot';
    let missing: SectorId | undefined;
    let id: SectorId = { c, h, r: op === 'readTrack' ? 1 : r0 };
    const limit = op === 'verify' && cmd[1]! & 0x80 ? cmd[8]! : Infinity; // VERIFY with EC: SC sectors
    for (let guard = 0; guard < 512 && sectors.length < limit; guard++) {
      if (!this.sectorExists(d, id, n)) {
        end = 'notfound';
        missing = id;
        break;
      }
      sectors.push(id);
      if (id.r === eot) {
        if (mt && id.h === 0) id = { c, h: 1, r: 1 };
        else break;
      } else {
        id = { c, h: id.h, r: (id.r + 1) & 0xff };
      }
    }
    const x: Execution = {
      kind: op === 'write' ? 'write' : 'read',
      drive,
      cmd,
      sectors,
      end,
      missing,
      data: new Uint8Array(op === 'verify' ? 0 : sectors.length * FLOPPY_SECTOR_SIZE),
      stage: 'fetch',
      done: 0,
      tc: false,
      seeked,
    };
    this.phase = 'execution';
    this.exec = x;
    if (op === 'verify') {
      // Nothing goes to the host: the sectors are "read" and checked (an image has no CRC errors).
      x.tc = x.end === 'eot';
      this.finishTransfer(x, x.sectors.length);
      return;
    }
    if (sectors.length === 0) {
      this.finishTransfer(x, 0);
      return;
    }
    if (x.kind === 'read') this.fetch(x);
    else this.startDataPhase(x);
  }

  /** Whether sector `id` (size code n) exists on the disk in `d` where the head is. */
  private sectorExists(d: Drive, id: SectorId, n: number): boolean {
    const f = d.format;
    return (
      f !== undefined &&
      n === 2 &&
      id.c === d.track &&
      id.c < f.tracks &&
      id.h < f.heads &&
      id.r >= 1 &&
      id.r <= f.sectors
    );
  }

  private lba(f: FloppyFormat, id: SectorId): number {
    return (id.c * f.heads + id.h) * f.sectors + id.r - 1;
  }

  /** Runs of consecutive sectors: [first index in the list, count, byte offset in the image]. */
  private runs(f: FloppyFormat, sectors: SectorId[], count: number): [number, number, number][] {
    const out: [number, number, number][] = [];
    for (let i = 0; i < count; i++) {
      const lba = this.lba(f, sectors[i]!);
      const last = out[out.length - 1];
      if (last && this.lba(f, sectors[last[0] + last[1] - 1]!) + 1 === lba) last[1]++;
      else out.push([i, 1, lba * FLOPPY_SECTOR_SIZE]);
    }
    return out;
  }

  /** Reads the command's sectors from the image, then starts the data phase. */
  private fetch(x: Execution): void {
    x.stage = 'fetch';
    const d = this.drives[x.drive]!;
    const image = d.image;
    const f = d.format;
    if (!image || !f) {
      this.abortExec(ST1_MA);
      return;
    }
    const reads = this.runs(f, x.sectors, x.sectors.length).map(([first, count, offset]) =>
      image.read(
        offset,
        count * FLOPPY_SECTOR_SIZE,
        x.data.subarray(first * FLOPPY_SECTOR_SIZE, (first + count) * FLOPPY_SECTOR_SIZE),
      ),
    );
    this.io(
      Promise.all(reads),
      (parts) => {
        // An image may hand back its own buffer instead of filling ours.
        this.runs(f, x.sectors, x.sectors.length).forEach(([first], i) => {
          const part = parts[i]!;
          const at = first * FLOPPY_SECTOR_SIZE;
          if (part.buffer !== x.data.buffer || part.byteOffset !== x.data.byteOffset + at)
            x.data.set(part, at);
        });
        this.startDataPhase(x);
      },
      (err) => this.ioFailed(x, err, 'read'),
    );
  }

  /** Data moves: DMA (DRQ) or the FIFO (non-DMA mode: RQM and an interrupt). */
  private startDataPhase(x: Execution): void {
    x.stage = 'transfer';
    if (this.pio()) {
      this.raiseInt();
    } else {
      this.updateDreq();
    }
  }

  /** The DMA controller's callback for channel 2. */
  private dmaTransfer(pos: number, size: number): number {
    const x = this.exec;
    if (!x || this.phase !== 'execution' || x.stage !== 'transfer' || this.pio()) return pos;
    const n = Math.min(x.data.length - x.done, size - pos);
    const chunk = x.data.subarray(x.done, x.done + n);
    if (x.kind === 'read') this.dma.dmaWrite(this.dmaChannel, chunk, pos, n);
    else this.dma.dmaRead(this.dmaChannel, chunk, pos, n);
    x.done += n;
    if (pos + n >= size) x.tc = true;
    if (x.tc || x.done >= x.data.length) this.endDataPhase();
    return pos + n;
  }

  /** Terminal count or all data moved. */
  private endDataPhase(): void {
    const x = this.exec!;
    x.stage = x.kind === 'read' ? 'transfer' : 'commit';
    if (x.kind === 'read') {
      this.finishTransfer(x, Math.ceil(x.done / FLOPPY_SECTOR_SIZE));
      return;
    }
    this.updateDreq();
    // The guest must see the next interrupt as an edge (Linux's pseudo-DMA handler waits for it).
    this.setInt(false);
    this.commit(x);
  }

  /** Writes what the guest sent to the image (WRITE DATA, FORMAT TRACK). */
  private commit(x: Execution): void {
    x.stage = 'commit';
    const d = this.drives[x.drive]!;
    const image = d.image;
    const f = d.format;
    if (!image || !f) {
      this.abortExec(ST1_MA);
      return;
    }
    if (x.kind === 'format') {
      this.commitFormat(x, image, f);
      return;
    }
    const count = Math.ceil(x.done / FLOPPY_SECTOR_SIZE);
    x.data.fill(0, x.done, count * FLOPPY_SECTOR_SIZE); // a sector cut short by TC is completed with zeroes
    const writes = this.runs(f, x.sectors, count).map(([first, n, offset]) =>
      image.write(offset, x.data.subarray(first * FLOPPY_SECTOR_SIZE, (first + n) * FLOPPY_SECTOR_SIZE)),
    );
    this.io(
      Promise.all(writes),
      () => this.finishTransfer(x, count),
      (err) => this.ioFailed(x, err, 'write'),
    );
  }

  /**
   * The result of a read or write that moved `count` sectors (82077AA
   * table 5-6 for the ID it reports).
   */
  private finishTransfer(x: Execution, count: number): void {
    const cmd = x.cmd;
    const drive = x.drive;
    const mt = (cmd[0]! & 0x80) !== 0 && decode(cmd[0]!).op !== 'readTrack';
    const eot = cmd[6]!;
    const n = cmd[5]!;
    const last = count > 0 ? x.sectors[count - 1]! : undefined;
    const d = this.drives[drive]!;
    if (last) d.sector = last.r;
    const se = x.seeked ? ST0_SE : 0;
    const st0 = (h: number): number => se | ((h & 1) << 2) | drive;
    if (x.tc && last) {
      let next: SectorId;
      if (last.r !== eot) next = { c: last.c, h: last.h, r: last.r + 1 };
      else if (mt && last.h === 0) next = { c: last.c, h: 1, r: 1 };
      else next = { c: last.c + 1, h: mt ? last.h ^ 1 : last.h, r: 1 };
      this.finish([st0(last.h), 0, 0, next.c & 0xff, next.h, next.r & 0xff, n]);
      return;
    }
    if (x.tc || count < x.sectors.length || (x.end === 'eot' && !last)) {
      // TC before the first byte, or a data phase cut short: report where it stopped.
      const at = last ?? { c: cmd[2]!, h: cmd[3]!, r: cmd[4]! };
      this.finish([st0(at.h), 0, 0, at.c, at.h, at.r, n]);
      return;
    }
    if (x.end === 'notfound') {
      const m = x.missing!;
      this.finish([ST0_ABNTERM | st0(m.h), ST1_ND, 0, m.c, m.h, m.r, n]);
      return;
    }
    // Ran past EOT without terminal count: "end of cylinder", naming the last sector.
    const l = last!;
    this.finish([ST0_ABNTERM | st0(l.h), ST1_EN, 0, l.c, l.h, l.r, n]);
  }

  /** FORMAT TRACK: 4 ID bytes per sector from the guest, then sectors filled with the pattern. */
  private startFormat(cmd: number[]): void {
    const drive = cmd[1]! & 3;
    const head = (cmd[1]! >> 2) & 1;
    const d = this.drives[drive]!;
    const [n, sc] = [cmd[2]!, cmd[3]!];
    this.lastScEot = sc;
    d.head = head;
    const fail = (st1: number): void =>
      this.finish([ST0_ABNTERM | (head << 2) | drive, st1, 0, d.track, head, 1, n]);
    const err = this.mediaError(d, (cmd[0]! & 0x40) !== 0);
    if (err) return fail(err);
    if (this.writeProtected(d)) return fail(ST1_NW);
    const x: Execution = {
      kind: 'format',
      drive,
      cmd,
      sectors: [],
      end: 'eot',
      missing: undefined,
      data: new Uint8Array(sc * 4),
      stage: 'transfer',
      done: 0,
      tc: false,
      seeked: false,
    };
    this.phase = 'execution';
    this.exec = x;
    if (sc === 0) {
      this.finishFormat(x);
      return;
    }
    this.startDataPhase(x);
  }

  private commitFormat(x: Execution, image: BlockImage, f: FloppyFormat): void {
    const d = this.drives[x.drive]!;
    const head = (x.cmd[1]! >> 2) & 1;
    const fill = x.cmd[5]!;
    const writes: Promise<void>[] = [];
    for (let at = 0; at + 4 <= x.done; at += 4) {
      const [c, h, r, n] = [x.data[at]!, x.data[at + 1]!, x.data[at + 2]!, x.data[at + 3]!];
      // A raw image only holds the standard layout: IDs that do not name a slot in it are not kept.
      if (c !== d.track || h !== head || n !== 2 || !this.sectorExists(d, { c, h, r }, n)) continue;
      const lba = this.lba(f, { c, h, r });
      writes.push(image.write(lba * FLOPPY_SECTOR_SIZE, new Uint8Array(FLOPPY_SECTOR_SIZE).fill(fill)));
    }
    this.io(
      Promise.all(writes),
      () => this.finishFormat(x),
      (err) => this.ioFailed(x, err, 'write'),
    );
  }

  private finishFormat(x: Execution): void {
    const head = (x.cmd[1]! >> 2) & 1;
    const at = Math.max(0, Math.floor(x.done / 4) - 1) * 4;
    const id =
      x.done >= 4
        ? Array.from(x.data.subarray(at, at + 4))
        : [this.drives[x.drive]!.track, head, 1, x.cmd[2]!];
    this.finish([(head << 2) | x.drive, 0, 0, ...id]);
  }

  /** Ends the running data command with an error (disk gone, I/O error). */
  private abortExec(st1: number, st2 = 0): void {
    const x = this.exec;
    if (!x) return;
    this.generation++;
    const cmd = x.cmd;
    const head = x.kind === 'format' ? (cmd[1]! >> 2) & 1 : cmd[3]! & 1;
    const id =
      x.kind === 'format'
        ? [this.drives[x.drive]!.track, head, 1, cmd[2]!]
        : [cmd[2]!, cmd[3]!, cmd[4]!, cmd[5]!];
    this.finish([ST0_ABNTERM | (head << 2) | x.drive, st1, st2, ...id]);
  }

  private ioFailed(x: Execution, err: unknown, what: 'read' | 'write'): void {
    if (this.exec !== x) return;
    const image = this.drives[x.drive]!.image;
    this.ctx.log.warn(
      `${this.name}: ${what} of ${image?.path ?? 'the floppy image'} failed: ${err instanceof Error ? err.message : String(err)}`,
    );
    if (err instanceof BlockError && err.code === 'EROFS') this.abortExec(ST1_NW);
    else this.abortExec(ST1_DE, what === 'read' ? ST2_DD : 0);
  }

  /** Tracks image I/O: results are dropped if the controller was reset, or the command aborted, meanwhile. */
  private io<T>(p: Promise<T>, done: (v: T) => void, failed: (err: unknown) => void): void {
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

  private guestError(kind: string, msg: () => string): void {
    this.ctx.guestErrors.warn(`${this.name}-${kind}`, msg);
  }

  // --- Device ----------------------------------------------------------------

  /** Hardware reset: registers to their power-on values, no interrupt (as QEMU's machine reset). */
  reset(): void {
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

  saveState(): DeviceState {
    const x = this.exec;
    return {
      version: 1,
      dor: this.dor,
      tdr: this.tdr,
      dsr: this.dsr,
      phase: this.phase,
      cmd: [...this.cmd],
      result: [...this.result],
      resultPos: this.resultPos,
      intPending: this.intPending,
      senseSt0: this.senseSt0 ?? null,
      senseDrive: this.senseDrive,
      resetSensei: this.resetSensei,
      driveBusy: this.driveBusy,
      specify: [this.specify1, this.specify2],
      config: this.config,
      pretrk: this.pretrk,
      locked: this.locked,
      perpendicular: this.perpendicular,
      driveSpec: [...this.driveSpec],
      powerdown: this.powerdown,
      lastScEot: this.lastScEot,
      drives: this.drives.slice(0, MAX_DRIVES).map((d) => ({
        track: d.track,
        head: d.head,
        sector: d.sector,
        changed: d.changed,
      })),
      exec: x
        ? {
            kind: x.kind,
            drive: x.drive,
            cmd: [...x.cmd],
            sectors: x.sectors.map((s) => [s.c, s.h, s.r]),
            end: x.end,
            missing: x.missing ? [x.missing.c, x.missing.h, x.missing.r] : null,
            // Data the guest has seen or sent; a read still fetching is simply fetched again.
            data: x.stage === 'fetch' ? null : Buffer.from(x.data).toString('base64'),
            length: x.data.length,
            stage: x.stage,
            done: x.done,
            tc: x.tc,
            seeked: x.seeked,
          }
        : null,
    };
  }

  /**
   * Restores registers, phase and any command in progress: image I/O that
   * was in flight is issued again, and a DMA data phase re-asserts DREQ, so
   * load the DMA controller's state first.
   */
  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const bad = (what: string): never => {
      throw new DeviceStateError(`${this.name}: malformed state (${what})`);
    };
    const s = state as Record<string, unknown>;
    const byte = (k: string): number => {
      const v = s[k];
      return isUint(v, 0xff) ? v : bad(k);
    };
    const bytes = (v: unknown, k: string, max = 64): number[] =>
      Array.isArray(v) && v.length <= max && v.every((b) => isUint(b, 0xff)) ? (v as number[]) : bad(k);
    const phase = s.phase;
    if (phase !== 'command' && phase !== 'execution' && phase !== 'result') bad('phase');
    const result = bytes(s.result, 'result', 16);
    const rawPos = s.resultPos;
    const resultPos = isUint(rawPos, result.length) ? rawPos : bad('resultPos');
    const specify = bytes(s.specify, 'specify', 2);
    const driveSpec = bytes(s.driveSpec, 'driveSpec', 4);
    if (specify.length !== 2 || driveSpec.length !== 4) bad('specify');
    if (typeof s.intPending !== 'boolean' || typeof s.locked !== 'boolean') bad('flags');
    if (s.senseSt0 !== null && !isUint(s.senseSt0, 0xff)) bad('senseSt0');
    if (!isUint(s.senseDrive, 3) || !isUint(s.resetSensei, RESET_SENSEI_COUNT) || !isUint(s.driveBusy, 0xf)) {
      bad('sense');
    }
    const drives =
      Array.isArray(s.drives) && s.drives.length === MAX_DRIVES ? (s.drives as unknown[]) : bad('drives');
    const driveStates = drives.map((raw) => {
      const o = (typeof raw === 'object' && raw !== null ? raw : bad('drive')) as Record<string, unknown>;
      if (
        !isUint(o.track, 0xff) ||
        !isUint(o.head, 1) ||
        !isUint(o.sector, 0xff) ||
        typeof o.changed !== 'boolean'
      ) {
        bad('drive');
      }
      return o as { track: number; head: number; sector: number; changed: boolean };
    });
    const exec = s.exec === null ? undefined : this.parseExec(s.exec, bad);
    if ((phase === 'execution') !== (exec !== undefined)) bad('exec');
    const cmd = bytes(s.cmd, 'cmd', 16);

    this.generation++; // nothing in flight belongs to the loaded state
    this.dor = byte('dor');
    this.tdr = byte('tdr');
    this.dsr = byte('dsr');
    this.phase = phase as Phase;
    this.cmd = cmd;
    this.cmdInfo = cmd.length > 0 ? decode(cmd[0]!) : { op: 'invalid', params: 0 };
    this.result = result;
    this.resultPos = resultPos;
    this.senseSt0 = s.senseSt0 === null ? undefined : (s.senseSt0 as number);
    this.senseDrive = s.senseDrive as number;
    this.resetSensei = s.resetSensei as number;
    this.driveBusy = s.driveBusy as number;
    [this.specify1, this.specify2] = specify as [number, number];
    this.config = byte('config');
    this.pretrk = byte('pretrk');
    this.locked = s.locked as boolean;
    this.perpendicular = byte('perpendicular');
    driveSpec.forEach((v, i) => (this.driveSpec[i] = v));
    this.powerdown = byte('powerdown');
    this.lastScEot = byte('lastScEot');
    driveStates.forEach((o, i) => {
      const d = this.drives[i]!;
      d.track = o.track;
      d.head = o.head;
      d.sector = o.sector;
      d.changed = o.changed;
    });
    this.exec = exec;
    this.intPending = s.intPending as boolean;
    // The line level as the loaded state has it (an edge-triggered line is re-raised if pending).
    this.irqLevel = this.intPending && (this.dor & DOR_DMAGATE) !== 0;
    this.ctx.irq.setIrq(this.irqLine, this.irqLevel);
    this.dreqHeld = false;
    this.dma.releaseDreq(this.dmaChannel);
    if (exec?.stage === 'fetch') this.fetch(exec);
    else if (exec?.stage === 'commit') this.commit(exec);
    else this.updateDreq();
  }

  private parseExec(raw: unknown, bad: (what: string) => never): Execution {
    const o = (typeof raw === 'object' && raw !== null ? raw : bad('exec')) as Record<string, unknown>;
    const kind = o.kind;
    if (kind !== 'read' && kind !== 'write' && kind !== 'format') bad('exec.kind');
    const stage = o.stage;
    if (stage !== 'fetch' && stage !== 'transfer' && stage !== 'commit') bad('exec.stage');
    if (!isUint(o.drive, MAX_DRIVES - 1)) bad('exec.drive');
    const cmd =
      Array.isArray(o.cmd) && o.cmd.length >= 2 && o.cmd.length <= 9 && o.cmd.every((b) => isUint(b, 0xff))
        ? (o.cmd as number[])
        : bad('exec.cmd');
    const id = (v: unknown): SectorId =>
      Array.isArray(v) && v.length === 3 && v.every((b) => isUint(b, 0xff))
        ? { c: v[0] as number, h: v[1] as number, r: v[2] as number }
        : bad('exec.sector');
    const sectors =
      Array.isArray(o.sectors) && o.sectors.length <= 512 ? o.sectors.map(id) : bad('exec.sectors');
    if (o.end !== 'eot' && o.end !== 'notfound') bad('exec.end');
    const missing = o.missing === null ? undefined : id(o.missing);
    const rawLength = o.length;
    const length = isUint(rawLength, 512 * FLOPPY_SECTOR_SIZE) ? rawLength : bad('exec.length');
    let data = new Uint8Array(length);
    if (o.data !== null) {
      if (typeof o.data !== 'string') bad('exec.data');
      const decoded = Buffer.from(o.data as string, 'base64');
      if (decoded.length !== length) bad('exec.data');
      data = new Uint8Array(decoded);
    } else if (stage !== 'fetch') {
      bad('exec.data');
    }
    if (!isUint(o.done, length) || typeof o.tc !== 'boolean' || typeof o.seeked !== 'boolean')
      bad('exec.done');
    return {
      kind: kind as TransferKind,
      drive: o.drive as number,
      cmd,
      sectors,
      end: o.end as Execution['end'],
      missing,
      data,
      stage: stage as Stage,
      done: o.done as number,
      tc: o.tc as boolean,
      seeked: o.seeked as boolean,
    };
  }
}

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
}
