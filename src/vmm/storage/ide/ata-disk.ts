/**
 * An ATA hard disk on an IDE channel (ATA8-ACS command set, ATA/ATAPI-7
 * volume 2 protocols) over a BlockImage of 512-byte sectors: IDENTIFY
 * DEVICE, PIO (per sector or per multiple block) and DMA reads and writes
 * with 28- and 48-bit addresses (and CHS for old software), FLUSH CACHE,
 * SET FEATURES, and the power and legacy commands as no-ops. What it does
 * not know it aborts (ABRT), as ATA8-ACS §6.3.1 asks.
 */
import type { BlockImage } from '../../../block/image.js';
import { BlockError } from '../../../block/image.js';
import {
  CMD,
  ERR_ABRT,
  ERR_IDNF,
  ERR_UNC,
  MAX_TRANSFER_BYTES,
  SEL_LBA,
  SETF_DISABLE_RLA,
  SETF_DISABLE_REVERT,
  SETF_DISABLE_WCACHE,
  SETF_ENABLE_RLA,
  SETF_ENABLE_REVERT,
  SETF_ENABLE_WCACHE,
  SETF_XFER_MODE,
  ST_DRDY,
  ST_DSC,
  decodeTransferMode,
  dmaModeWords,
  identifyBytes,
  nameHash,
  putAtaString,
  type TransferMode,
} from './ata.js';
import { IdeDrive } from './drive.js';
import type { AtaDiskDevice } from '../../../generated/vmm-config.js';
import { idePositionOf } from '../../../platform/placement.js';
import { DISK_IMAGE_PROPERTIES, type DeviceDescriptor } from '../../board/board.js';
import type { ResolvedAtaDiskDevice } from '../../config/types.js';
import { BootError } from '../../boot/errors.js';
import { ideBootPath } from './piix-ide.js';

export const SECTOR_SIZE = 512;
/** Sectors per DRQ block that READ/WRITE MULTIPLE may use (IDENTIFY word 47). */
export const MAX_MULTIPLE = 16;
/** LBA28 addresses 2^28 sectors; IDENTIFY words 60-61 saturate there (ATA8-ACS §7.16.7.27). */
const LBA28_LIMIT = 0x0fff_ffff;

export interface AtaGeometry {
  cylinders: number;
  heads: number;
  sectors: number;
}

/**
 * The default CHS geometry of a disk of `total` sectors: 16 heads and 63
 * sectors per track, at most 16383 cylinders (ATA8-ACS annex: the
 * geometry IDENTIFY reports for disks over 8.4 GB).
 */
export function ataGeometry(total: number): AtaGeometry {
  const cylinders = Math.max(1, Math.min(16383, Math.floor(total / (16 * 63))));
  return { cylinders, heads: 16, sectors: 63 };
}

export interface AtaDiskOptions {
  name: string;
  image: BlockImage;
  /** IDENTIFY words 10-19 (20 characters); default derived from the name. */
  serial?: string;
  /** IDENTIFY words 23-26 (8 characters). */
  firmware?: string;
  /** IDENTIFY words 27-46 (40 characters). */
  model?: string;
}

/** What a read or write command asked for, kept until it completes. */
interface RwOp {
  lba: number;
  count: number;
}

export class AtaDisk extends IdeDrive {
  readonly kind = 'ata' as const;
  /** Sectors of the disk (the image size rounded down). */
  readonly sectors: number;
  readonly geometry: AtaGeometry;
  private readonly serial: string;
  private readonly firmware: string;
  private readonly model: string;
  /** Logical geometry for CHS addressing (INITIALIZE DEVICE PARAMETERS may change it). */
  private heads = 16;
  private spt = 63;
  /** Sectors per DRQ block of READ/WRITE MULTIPLE; 0: multiple mode off. */
  private multiple = MAX_MULTIPLE;
  private mode: TransferMode | undefined;
  private writeCache = true;
  private readAhead = true;
  private op: RwOp = { lba: 0, count: 0 };

  constructor(private readonly opts: AtaDiskOptions) {
    super(opts.name);
    this.sectors = Math.floor(opts.image.size / SECTOR_SIZE);
    this.geometry = ataGeometry(this.sectors);
    this.serial = (opts.serial ?? `MV${nameHash(opts.name)}`).slice(0, 20);
    this.firmware = (opts.firmware ?? '1.0').slice(0, 8);
    this.model = (opts.model ?? 'MVISOR HARDDISK').slice(0, 40);
    this.resetDrive();
    this.reset();
  }

  get readOnly(): boolean {
    return this.opts.image.readOnly;
  }

  protected image(): BlockImage {
    return this.opts.image;
  }

  protected resetStatus(): number {
    return ST_DRDY | ST_DSC;
  }

  protected resetDrive(): void {
    this.heads = this.geometry.heads;
    this.spt = this.geometry.sectors;
    this.multiple = MAX_MULTIPLE;
    this.mode = undefined;
    this.writeCache = true;
    this.readAhead = true;
  }

  /** IDENTIFY DEVICE data (ATA8-ACS §7.16, table 22). */
  identify(): Uint8Array {
    const w = new Uint16Array(256);
    const g = this.geometry;
    w[0] = 0x0040; // fixed device, not removable
    w[1] = g.cylinders;
    w[3] = g.heads;
    w[6] = g.sectors;
    putAtaString(w, 10, 10, this.serial);
    putAtaString(w, 23, 4, this.firmware);
    putAtaString(w, 27, 20, this.model);
    w[47] = 0x8000 | MAX_MULTIPLE;
    w[49] = 0x0b00; // IORDY supported, LBA, DMA
    w[50] = 0x4000;
    w[51] = 0x0200; // PIO cycle timing mode 2 (obsolete, kept for old drivers)
    w[53] = 0x0007; // words 54-58, 64-70 and 88 are valid
    const cur = this.currentChs();
    w[54] = cur.cylinders;
    w[55] = this.heads;
    w[56] = this.spt;
    const chsCapacity = cur.cylinders * this.heads * this.spt;
    w[57] = chsCapacity & 0xffff;
    w[58] = chsCapacity >>> 16;
    w[59] = this.multiple ? 0x0100 | this.multiple : 0;
    const lba28 = Math.min(this.sectors, LBA28_LIMIT);
    w[60] = lba28 & 0xffff;
    w[61] = lba28 >>> 16;
    const dma = dmaModeWords(this.mode);
    w[62] = dma.w62;
    w[63] = dma.w63;
    w[64] = 0x0003; // PIO modes 3 and 4
    w[65] = w[66] = w[67] = w[68] = 120; // cycle times in ns
    w[80] = 0x00f0; // ATA/ATAPI-4 to -7
    // Supported: NOP, look-ahead, write cache, power management.
    w[82] = 0x4068;
    // Supported: FLUSH CACHE EXT, FLUSH CACHE, 48-bit addresses (bit 14 shall be one).
    w[83] = 0x7400;
    w[84] = 0x4000;
    w[85] = 0x4008 | (this.readAhead ? 0x40 : 0) | (this.writeCache ? 0x20 : 0);
    w[86] = 0x3400;
    w[87] = 0x4000;
    w[88] = dma.w88;
    // Hardware reset result (bit 14 set, bit 13: 80-conductor cable detected).
    w[93] = this.unit === 0 ? 0x600b : 0x6300;
    const s = this.sectors;
    w[100] = s & 0xffff;
    w[101] = Math.floor(s / 0x10000) & 0xffff;
    w[102] = Math.floor(s / 0x1_0000_0000) & 0xffff;
    w[103] = 0;
    w[106] = 0x4000; // one logical sector per physical sector, 512 bytes
    return identifyBytes(w);
  }

  private currentChs(): AtaGeometry {
    const cylinders = Math.max(1, Math.min(65535, Math.floor(this.sectors / (this.heads * this.spt))));
    return { cylinders, heads: this.heads, sectors: this.spt };
  }

  protected execute(cmd: number): void {
    switch (cmd) {
      case CMD.IDENTIFY_DEVICE:
        this.pioIn(this.identify(), SECTOR_SIZE, 'identify');
        return;
      case CMD.READ_SECTORS:
      case CMD.READ_SECTORS_NORETRY:
        return this.rw(false, false, 'pio');
      case CMD.READ_SECTORS_EXT:
        return this.rw(false, true, 'pio');
      case CMD.READ_MULTIPLE:
        return this.rw(false, false, 'multiple');
      case CMD.READ_MULTIPLE_EXT:
        return this.rw(false, true, 'multiple');
      case CMD.READ_DMA:
      case CMD.READ_DMA_NORETRY:
        return this.rw(false, false, 'dma');
      case CMD.READ_DMA_EXT:
        return this.rw(false, true, 'dma');
      case CMD.WRITE_SECTORS:
      case CMD.WRITE_SECTORS_NORETRY:
        return this.rw(true, false, 'pio');
      case CMD.WRITE_SECTORS_EXT:
        return this.rw(true, true, 'pio');
      case CMD.WRITE_MULTIPLE:
        return this.rw(true, false, 'multiple');
      case CMD.WRITE_MULTIPLE_EXT:
        return this.rw(true, true, 'multiple');
      case CMD.WRITE_DMA:
      case CMD.WRITE_DMA_NORETRY:
        return this.rw(true, false, 'dma');
      case CMD.WRITE_DMA_EXT:
        return this.rw(true, true, 'dma');
      case CMD.READ_VERIFY:
      case CMD.READ_VERIFY_NORETRY:
      case CMD.READ_VERIFY_EXT: {
        const a = this.addressAndCount(cmd === CMD.READ_VERIFY_EXT);
        if (!a) return this.fail(ERR_IDNF);
        return this.finish(true);
      }
      case CMD.SEEK:
      case CMD.RECALIBRATE:
        return this.finish(true);
      case CMD.INITIALIZE_DEVICE_PARAMETERS: {
        // ATA-5 §8.16 (obsolete since ATA-6): logical sectors per track and heads for CHS.
        const spt = this.tf.nsector;
        const heads = (this.tf.select & 0x0f) + 1;
        if (spt === 0 || spt > 63) return this.fail(ERR_ABRT);
        this.spt = spt;
        this.heads = heads;
        return this.finish(true);
      }
      case CMD.SET_MULTIPLE_MODE: {
        // ATA8-ACS §7.50: 0 disables multiple mode; otherwise a power of two up to word 47.
        const n = this.tf.nsector;
        if (n !== 0 && (n > MAX_MULTIPLE || (n & (n - 1)) !== 0)) return this.fail(ERR_ABRT);
        this.multiple = n;
        return this.finish(true);
      }
      case CMD.FLUSH_CACHE:
      case CMD.FLUSH_CACHE_EXT:
        if (this.readOnly) return this.finish(true);
        this.startIo({ kind: 'flush', offset: 0, length: 0 }, 'flush');
        return;
      case CMD.IDLE:
      case CMD.IDLE_IMMEDIATE:
      case CMD.STANDBY:
      case CMD.STANDBY_IMMEDIATE:
      case CMD.SLEEP:
      case CMD.IDLE_OLD:
      case CMD.IDLE_IMMEDIATE_OLD:
      case CMD.STANDBY_OLD:
      case CMD.STANDBY_IMMEDIATE_OLD:
      case CMD.SLEEP_OLD:
        // No spindle to stop: the drive stays active.
        return this.finish(true);
      case CMD.CHECK_POWER_MODE:
      case CMD.CHECK_POWER_MODE_OLD:
        this.tf.nsector = 0xff; // active or idle
        return this.finish(true);
      case CMD.SET_FEATURES:
        return this.setFeatures();
      default:
        // NOP, DEVICE RESET, PACKET, IDENTIFY PACKET DEVICE (an ATA device
        // aborts them, which is how software tells it from a packet device),
        // SMART, security, ... (ATA8-ACS §6.3.1: unsupported commands abort).
        if (cmd !== CMD.NOP && cmd !== CMD.IDENTIFY_PACKET_DEVICE && cmd !== CMD.PACKET) {
          this.host?.guestErrors.warn(
            `ide-ata-cmd-${cmd}`,
            () => `${this.name}: unsupported ATA command 0x${cmd.toString(16)}; aborted`,
          );
        }
        return this.fail(ERR_ABRT);
    }
  }

  private setFeatures(): void {
    switch (this.tf.feature) {
      case SETF_XFER_MODE: {
        const m = decodeTransferMode(this.tf.nsector);
        if (!m) return this.fail(ERR_ABRT);
        if (m.kind !== 'pio') this.mode = m;
        return this.finish(true);
      }
      case SETF_ENABLE_WCACHE:
      case SETF_DISABLE_WCACHE:
        // Writes go to the image either way; FLUSH CACHE makes them durable.
        this.writeCache = this.tf.feature === SETF_ENABLE_WCACHE;
        return this.finish(true);
      case SETF_ENABLE_RLA:
      case SETF_DISABLE_RLA:
        this.readAhead = this.tf.feature === SETF_ENABLE_RLA;
        return this.finish(true);
      case SETF_ENABLE_REVERT:
      case SETF_DISABLE_REVERT:
        return this.finish(true);
      default:
        this.host?.guestErrors.warn(
          `ide-setf-${this.tf.feature}`,
          () => `${this.name}: unsupported SET FEATURES 0x${this.tf.feature.toString(16)}; aborted`,
        );
        return this.fail(ERR_ABRT);
    }
  }

  /**
   * The first sector and count a command addresses, or undefined when it
   * lies outside the disk (IDNF). 48-bit commands take the previous
   * register contents as the high bytes (ATA8-ACS §4.2.2); 28-bit ones
   * LBA 27:24 from the Device register; without its LBA bit, the address
   * is cylinder/head/sector in the logical geometry.
   */
  private addressAndCount(lba48: boolean): RwOp | undefined {
    const t = this.tf;
    let lba: number;
    let count: number;
    if (lba48) {
      lba =
        t.hobHcyl * 2 ** 40 +
        t.hobLcyl * 2 ** 32 +
        t.hobSector * 2 ** 24 +
        ((t.hcyl << 16) | (t.lcyl << 8) | t.sector);
      count = (t.hobNsector << 8) | t.nsector || 65536;
    } else {
      count = t.nsector || 256;
      if (t.select & SEL_LBA) {
        lba = (((t.select & 0x0f) << 24) | (t.hcyl << 16) | (t.lcyl << 8) | t.sector) >>> 0;
      } else {
        const cyl = (t.hcyl << 8) | t.lcyl;
        const head = t.select & 0x0f;
        if (t.sector === 0 || t.sector > this.spt || head >= this.heads) return undefined;
        lba = (cyl * this.heads + head) * this.spt + t.sector - 1;
      }
    }
    if (lba + count > this.sectors) return undefined;
    return { lba, count };
  }

  private rw(write: boolean, lba48: boolean, how: 'pio' | 'multiple' | 'dma'): void {
    if (how === 'multiple' && this.multiple === 0) return this.fail(ERR_ABRT);
    const a = this.addressAndCount(lba48);
    if (!a) {
      this.host?.guestErrors.warn(
        `ide-range-${this.name}`,
        () => `${this.name}: sector range outside the disk (${this.sectors} sectors)`,
      );
      return this.fail(ERR_IDNF);
    }
    if (write && this.readOnly) return this.fail(ERR_ABRT);
    const bytes = a.count * SECTOR_SIZE;
    if (bytes > MAX_TRANSFER_BYTES) return this.fail(ERR_ABRT);
    this.op = a;
    const block = (how === 'multiple' ? this.multiple : 1) * SECTOR_SIZE;
    const offset = a.lba * SECTOR_SIZE;
    if (!write) {
      this.blockSize = block;
      this.startIo({ kind: 'read', offset, length: bytes }, how === 'dma' ? 'read-dma' : 'read-pio');
    } else if (how === 'dma') {
      this.dma(bytes, 'write-dma');
    } else {
      // PIO data-out: the first DRQ block comes without an interrupt (ATA/ATAPI-7 v2 §11.7).
      this.pioOut(bytes, block, 'write-pio');
    }
  }

  protected onIoDone(data: Uint8Array): void {
    switch (this.next) {
      case 'read-pio':
        this.pioIn(data, this.blockSize || SECTOR_SIZE, 'read-pio-data');
        return;
      case 'read-dma':
        this.dma(data, 'read-dma-done');
        return;
      case 'write':
      case 'flush':
      default:
        this.finish(true);
    }
  }

  protected onIoError(err: unknown): void {
    // A read that fails is an uncorrectable error; a write or flush the image refused is aborted.
    const read = this.next === 'read-pio' || this.next === 'read-dma';
    this.fail(read && !(err instanceof BlockError && err.code === 'EINVAL') ? ERR_UNC : ERR_ABRT);
  }

  protected onBlockDone(): void {
    switch (this.next) {
      case 'read-pio-data':
        // Each further DRQ block of a PIO data-in command interrupts; after the last, none (§11.6).
        if (this.pos >= this.total) this.finish(false);
        else this.nextBlock(true);
        return;
      case 'write-pio':
        if (this.pos >= this.total) this.writeBuffer();
        else this.nextBlock(true);
        return;
      case 'identify':
      default:
        this.finish(false);
    }
  }

  protected onDmaDone(): void {
    if (this.next === 'write-dma') this.writeBuffer();
    else this.finish(true);
  }

  private writeBuffer(): void {
    this.startIo({ kind: 'write', offset: this.op.lba * SECTOR_SIZE, length: this.total }, 'write');
  }

  protected saveDrive(): unknown {
    return {
      heads: this.heads,
      spt: this.spt,
      multiple: this.multiple,
      mode: this.mode ? `${this.mode.kind}${this.mode.mode}` : '',
      writeCache: this.writeCache,
      readAhead: this.readAhead,
      op: [this.op.lba, this.op.count],
    };
  }

  protected loadDrive(saved: unknown): void {
    const s = (typeof saved === 'object' && saved !== null ? saved : {}) as Record<string, unknown>;
    const int = (v: unknown, lo: number, hi: number, d: number) =>
      typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi ? v : d;
    this.heads = int(s.heads, 1, 16, this.geometry.heads);
    this.spt = int(s.spt, 1, 63, this.geometry.sectors);
    const m = int(s.multiple, 0, MAX_MULTIPLE, MAX_MULTIPLE);
    this.multiple = (m & (m - 1)) === 0 ? m : MAX_MULTIPLE;
    const mm = typeof s.mode === 'string' ? /^(swdma|mwdma|udma)([0-7])$/.exec(s.mode) : null;
    this.mode = mm ? { kind: mm[1] as TransferMode['kind'], mode: Number(mm[2]) } : undefined;
    this.writeCache = s.writeCache !== false;
    this.readAhead = s.readAhead !== false;
    const op = Array.isArray(s.op) ? s.op : [];
    this.op = { lba: int(op[0], 0, this.sectors, 0), count: int(op[1], 0, 65536, 0) };
  }
}

/** `class: ata-disk`: an ATA hard disk on the PIIX3 IDE controller. */
export const ataDiskDevice: DeviceDescriptor<AtaDiskDevice, ResolvedAtaDiskDevice> = {
  class: 'ata-disk',
  schema: {
    name: 'AtaDiskDevice',
    manifest: true,
    definition: {
      description: 'An ATA hard disk on the PIIX3 IDE controller.',
      type: 'object',
      additionalProperties: false,
      required: ['class', 'name', 'image'],
      properties: {
        class: {
          const: 'ata-disk',
        },
        name: {
          $ref: '#/definitions/DeviceName',
        },
        ...DISK_IMAGE_PROPERTIES,
        channel: {
          $ref: '#/definitions/IdeChannel',
        },
        unit: {
          $ref: '#/definitions/IdeUnit',
        },
      },
    },
  },
  resolve: (d, ctx) => ({
    class: 'ata-disk',
    name: d.name,
    image: ctx.image(d),
    ...idePositionOf(ctx.placement),
  }),
  create(d, board) {
    const image = board.image(d.name);
    if (!image) throw new BootError(`devices: ${d.name}: no image`);
    board.ide.attachDrive(d.channel, d.unit, new AtaDisk({ name: d.name, image }));
    board.bootPath(d.name, ideBootPath(d.channel, d.unit));
  },
};
