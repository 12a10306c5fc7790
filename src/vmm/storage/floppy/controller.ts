/**
 * The FloppyController device: construction and wiring (ports, IRQ 6, ISA
 * DMA channel 2), the machine's API (CMOS drive types, inserting and
 * ejecting disks) and the Device lifecycle (reset, save, load). The
 * behaviour lives in the modules beside it; see ../floppy.ts for the model.
 */
import type { AccessSize, Device, DeviceContext, DeviceState, IoHandler } from '../../core/device.js';
import type { BlockImage } from '../../../block/image.js';
import type { IsaDma } from '../../chipset/i8257-dma.js';
import { FDC_DMA_CHANNEL, FDC_IRQ, MAX_DRIVES, ST1_MA } from './constants.js';
import { FdcCore } from './core.js';
import {
  CMOS_DRIVE_TYPE,
  FLOPPY_IMAGE_SIZES,
  floppyFormat,
  type Drive,
  type FloppyDriveOptions,
  type FloppyFormat,
} from './drive.js';
import { readBytes, readDir, writeCcr, writeReg } from './registers.js';
import { loadFdcState, saveFdcState } from './state.js';
import { abortExec, dmaTransfer } from './transfer.js';

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

export class FloppyController implements Device {
  readonly name: string;
  /** Ports 0x3F0-0x3F5 (offsets 0-5). */
  readonly ports: IoHandler;
  /** Port 0x3F7: DIR (read) / CCR (write). */
  readonly dirPort: IoHandler;

  private readonly fdc: FdcCore;

  constructor(ctx: DeviceContext, options: FloppyControllerOptions) {
    this.name = options.name ?? 'fdc';
    const dma = options.dma;
    const irqLine = options.irq ?? FDC_IRQ;
    const dmaChannel = options.dmaChannel ?? FDC_DMA_CHANNEL;
    if (options.drives.length < 1 || options.drives.length > MAX_DRIVES) {
      throw new RangeError(
        `${this.name}: a floppy controller has 1 or 2 drives, not ${options.drives.length}`,
      );
    }
    const drives = [0, 1, 2, 3].map((i): Drive => {
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
    const fdc = new FdcCore({ ctx, name: this.name, dma, irqLine, dmaChannel, drives });
    this.fdc = fdc;
    dma.registerChannel(dmaChannel, { transfer: (pos, size) => dmaTransfer(fdc, pos, size) });
    this.ports = {
      read: (offset: number, size: AccessSize) => readBytes(fdc, offset, size),
      write: (offset: number, size: AccessSize, value: number) => {
        for (let i = 0; i < size; i++) writeReg(fdc, offset + i, (value >>> (8 * i)) & 0xff);
      },
    };
    this.dirPort = {
      read: () => readDir(fdc),
      write: (_offset: number, _size: AccessSize, value: number) => writeCcr(fdc, value & 0xff),
    };
  }

  // --- API for the machine -----------------------------------------------------

  /** CMOS register 0x10: drive A:'s type in the high nibble, B:'s in the low one (0 = none). */
  cmosDriveTypes(): number {
    const drives = this.fdc.drives;
    const t = (i: number): number => (drives[i]!.present ? CMOS_DRIVE_TYPE[drives[i]!.type] : 0);
    return (t(0) << 4) | t(1);
  }

  /** Number of drives attached (for the equipment byte). */
  get driveCount(): number {
    return this.fdc.drives.filter((d) => d.present).length;
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
    if (image && this.fdc.exec?.drive === drive) abortExec(this.fdc, ST1_MA);
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

  /** Image requests in flight. */
  inFlight(): number {
    return this.fdc.pendingIo;
  }

  /** Resolves when no image I/O is in flight (tests; before closing an ejected image). */
  whenIdle(): Promise<void> {
    if (this.fdc.pendingIo === 0) return Promise.resolve();
    return new Promise((resolve) => this.fdc.idleWaiters.push(resolve));
  }

  private drive(i: number): Drive {
    const drives = this.fdc.drives;
    if (!Number.isInteger(i) || i < 0 || i >= MAX_DRIVES || !drives[i]!.present) {
      throw new RangeError(`${this.name}: there is no floppy drive ${i}`);
    }
    return drives[i]!;
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

  // --- Device ----------------------------------------------------------------

  /** Hardware reset: registers to their power-on values, no interrupt (as QEMU's machine reset). */
  reset(): void {
    this.fdc.hardReset();
  }

  saveState(): DeviceState {
    return saveFdcState(this.fdc);
  }

  /**
   * Restores registers, phase and any command in progress: image I/O that
   * was in flight is issued again, and a DMA data phase re-asserts DREQ, so
   * load the DMA controller's state first.
   */
  loadState(state: DeviceState): void {
    loadFdcState(this.fdc, state);
  }
}
