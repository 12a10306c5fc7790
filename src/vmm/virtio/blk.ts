/**
 * virtio-blk (Virtio 1.2 §5.2) on a BlockImage: a VirtioDevice (device.ts)
 * that knows nothing of PCI; the machine puts it behind the virtio-pci
 * transport (`new VirtioPciTransport(new VirtioBlk({...}), {...})`).
 *
 * A request is one descriptor chain (§5.2.6): a 16-byte header (type,
 * reserved, sector) in the device-readable part, then data, and the
 * status byte as the last device-writable byte. The framing of the buffers
 * is not relied on (§2.6.4): header, data and status may share or split
 * descriptors.
 *
 * Requests run concurrently: image I/O is asynchronous, each request
 * completes (status byte, used ring) when its I/O settles, in whatever
 * order that is, and interrupts are batched per event-loop turn. Reads go
 * through a host buffer and are copied into guest memory only if the
 * device was not reset meanwhile; writes are copied out of the guest when
 * the request is taken.
 *
 * Types: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES; others are
 * UNSUPP. Features: SEG_MAX, BLK_SIZE (512), FLUSH, RO (read-only image or
 * option), MQ, DISCARD, WRITE_ZEROES. SIZE_MAX, GEOMETRY, TOPOLOGY,
 * CONFIG_WCE, LIFETIME and SECURE_ERASE are not offered.
 */
import { BlockError, type BlockImage } from '../../block/image.js';
import { bit, type VirtioDevice, type VirtioTransport } from './device.js';
import { ChainError, type Chain, type SplitQueue } from './virtqueue.js';
import { DISK_IMAGE_PROPERTIES, type DeviceDescriptor } from '../board/board.js';
import type { VirtioBlockDevice } from '../../generated/vmm-config.js';
import { pciSlotOf } from '../../platform/placement.js';
import { defaultVirtioBlockSerial } from '../../platform/rules.js';
import type { ResolvedVirtioBlockDevice } from '../config/types.js';
import { BootError } from '../boot/errors.js';

export const VIRTIO_ID_BLOCK = 2;

/** Feature bits (§5.2.3). */
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_GEOMETRY = 4;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_TOPOLOGY = 10;
export const VIRTIO_BLK_F_CONFIG_WCE = 11;
export const VIRTIO_BLK_F_MQ = 12;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

/** Request types (§5.2.6). */
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_GET_LIFETIME = 10;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_T_SECURE_ERASE = 14;

/** Status byte values. */
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

/** discard/write-zeroes segment flag: the device may deallocate. */
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

export const VIRTIO_BLK_ID_BYTES = 20;
export const SECTOR_SIZE = 512;
const HEADER_SIZE = 16;
const DWZ_SEGMENT_SIZE = 16;

/** Config space layout (§5.2.4, struct virtio_blk_config). */
export const BlkCfg = {
  capacity: 0x00,
  sizeMax: 0x08,
  segMax: 0x0c,
  blkSize: 0x14,
  numQueues: 0x22,
  maxDiscardSectors: 0x24,
  maxDiscardSeg: 0x28,
  discardSectorAlignment: 0x2c,
  maxWriteZeroesSectors: 0x30,
  maxWriteZeroesSeg: 0x34,
  writeZeroesMayUnmap: 0x38,
  size: 0x48,
} as const;

/** Limits announced in config space for DISCARD and WRITE_ZEROES. */
const MAX_DWZ_SECTORS = 0x40_0000; // 2 GiB a segment
const MAX_DWZ_SEGMENTS = 32;
/** Discard granularity, in sectors (4 KiB). */
const DISCARD_ALIGNMENT = 8;

export interface VirtioBlkOptions {
  image: BlockImage;
  name?: string;
  /** What GET_ID returns: at most 20 bytes of printable ASCII. Default empty. */
  serial?: string;
  /** Request queues (MQ); default 1. */
  numQueues?: number;
  /** Largest queue size; default 256. */
  queueSize?: number;
  /** Present the disk read-only even if the image is writable. */
  readOnly?: boolean;
  /** Offer DISCARD / WRITE_ZEROES; default true. */
  discard?: boolean;
  writeZeroes?: boolean;
  /** Largest data transfer of one request in bytes; larger ones fail with IOERR. Default 64 MiB. */
  maxRequestBytes?: number;
}

interface Request {
  queue: SplitQueue;
  chain: Chain;
  epoch: number;
}

export class VirtioBlk implements VirtioDevice {
  readonly name: string;
  readonly deviceType = VIRTIO_ID_BLOCK;
  readonly features: bigint;
  readonly numQueues: number;
  readonly queueSize: number;
  readonly image: BlockImage;
  readonly readOnly: boolean;
  private readonly serial: Uint8Array;
  private readonly segMax: number;
  private readonly maxRequestBytes: number;
  private readonly inflight = new Set<Promise<void>>();
  private queues: readonly SplitQueue[] = [];
  private transport: VirtioTransport | undefined;

  constructor(opts: VirtioBlkOptions) {
    this.name = opts.name ?? 'virtio-blk';
    this.numQueues = opts.numQueues ?? 1;
    this.queueSize = opts.queueSize ?? 256;
    const readOnly = (opts.readOnly ?? false) || opts.image.readOnly;
    let features =
      bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH) | bit(VIRTIO_BLK_F_MQ);
    if (readOnly) features |= bit(VIRTIO_BLK_F_RO);
    // Discard and write-zeroes change the disk: not on a read-only one.
    if ((opts.discard ?? true) && !readOnly) features |= bit(VIRTIO_BLK_F_DISCARD);
    if ((opts.writeZeroes ?? true) && !readOnly) features |= bit(VIRTIO_BLK_F_WRITE_ZEROES);
    this.features = features;
    const serial = opts.serial ?? '';
    if (!/^[\x20-\x7e]*$/.test(serial) || serial.length > VIRTIO_BLK_ID_BYTES) {
      throw new RangeError(
        `${this.name}: serial must be at most ${VIRTIO_BLK_ID_BYTES} printable ASCII characters`,
      );
    }
    this.serial = new Uint8Array(VIRTIO_BLK_ID_BYTES);
    this.serial.set(Buffer.from(serial, 'latin1'));
    this.image = opts.image;
    this.readOnly = readOnly;
    // QEMU's seg_max: the queue size less the header and status descriptors.
    this.segMax = Math.max(1, this.queueSize - 2);
    this.maxRequestBytes = opts.maxRequestBytes ?? 64 << 20;
  }

  /** Requests in flight (a snapshot records how many it waited for). */
  inFlight(): number {
    return this.inflight.size;
  }

  /** Resolves when no request is in flight (before a snapshot, or close). */
  async drain(): Promise<void> {
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
  }

  /** The image changed size: new capacity, config interrupt (§5.2.4). */
  resized(): void {
    this.t.configChanged();
  }

  // ---- VirtioDevice ----------------------------------------------------------
  // No close(): the transport stops the queue notifications; whoever opened
  // the image drains this device and closes the image.

  attach(queues: readonly SplitQueue[], transport: VirtioTransport): void {
    if (this.transport) throw new Error(`${this.name}: already attached to a virtio transport`);
    this.queues = queues;
    this.transport = transport;
  }

  readConfig(): Uint8Array {
    const b = new Uint8Array(BlkCfg.size);
    const v = new DataView(b.buffer);
    v.setBigUint64(BlkCfg.capacity, BigInt(Math.floor(this.image.size / SECTOR_SIZE)), true);
    v.setUint32(BlkCfg.segMax, this.segMax, true);
    v.setUint32(BlkCfg.blkSize, SECTOR_SIZE, true);
    v.setUint16(BlkCfg.numQueues, this.numQueues, true);
    v.setUint32(BlkCfg.maxDiscardSectors, MAX_DWZ_SECTORS, true);
    v.setUint32(BlkCfg.maxDiscardSeg, MAX_DWZ_SEGMENTS, true);
    v.setUint32(BlkCfg.discardSectorAlignment, DISCARD_ALIGNMENT, true);
    v.setUint32(BlkCfg.maxWriteZeroesSectors, MAX_DWZ_SECTORS, true);
    v.setUint32(BlkCfg.maxWriteZeroesSeg, MAX_DWZ_SEGMENTS, true);
    v.setUint8(BlkCfg.writeZeroesMayUnmap, 1);
    return b;
  }

  queueNotify(queue: SplitQueue): void {
    // At most one ring's worth per turn, so a driver that keeps adding
    // cannot hold the event loop.
    for (let n = 0; n < queue.size; n++) {
      const chain = queue.pop();
      if (!chain) return;
      this.start({ queue, chain, epoch: this.t.epoch });
    }
    if (queue.hasAvailable()) this.t.kick(queue.index);
  }

  stateLoaded(): void {
    // Requests in flight when the state was saved run again (as QEMU's
    // virtio-blk re-submits its saved request list).
    if (!this.t.running) return;
    for (const queue of this.queues) {
      if (!queue.active) continue;
      for (const chain of queue.inflightChains()) this.start({ queue, chain, epoch: this.t.epoch });
    }
  }

  /** The transport this device was attached to. */
  private get t(): VirtioTransport {
    if (!this.transport) throw new Error(`${this.name}: not attached to a virtio transport`);
    return this.transport;
  }

  private guestError(key: string, msg: string): void {
    this.t.guestError(key, msg);
  }

  // ---- requests ------------------------------------------------------------

  private start(r: Request): void {
    const p = this.execute(r)
      .catch((e: unknown) => {
        // Only a bug gets here; the request still completes.
        this.t.log.error(`${this.name}: internal error in a request: ${(e as Error).stack ?? e}`);
        this.finish(r, VIRTIO_BLK_S_IOERR, 0);
      })
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  private async execute(r: Request): Promise<void> {
    const { chain } = r;
    if (chain.writeLength < 1) {
      this.guestError('no-status', `request at descriptor ${chain.head} has no status byte; dropped`);
      this.t.complete(r.queue, chain.head, 0, r.epoch);
      return;
    }
    if (chain.readLength < HEADER_SIZE) {
      this.guestError(
        'short-header',
        `request at descriptor ${chain.head} has a ${chain.readLength}-byte header`,
      );
      this.finish(r, VIRTIO_BLK_S_IOERR, 0);
      return;
    }
    let hdr: DataView;
    try {
      const h = chain.read(0, HEADER_SIZE);
      hdr = new DataView(h.buffer);
    } catch (e) {
      this.guestError('bad-buffer', `request at descriptor ${chain.head}: ${(e as Error).message}`);
      this.finish(r, VIRTIO_BLK_S_IOERR, 0);
      return;
    }
    const type = hdr.getUint32(0, true);
    const sector = hdr.getBigUint64(8, true);
    if (!chain.inRam && type !== VIRTIO_BLK_T_FLUSH) {
      this.guestError('bad-buffer', `request at descriptor ${chain.head} has a buffer outside guest RAM`);
      this.finish(r, VIRTIO_BLK_S_IOERR, 0);
      return;
    }
    const dataIn = chain.writeLength - 1;
    const dataOut = chain.readLength - HEADER_SIZE;
    let status: number;
    let written = 0;
    try {
      switch (type) {
        case VIRTIO_BLK_T_IN: {
          const range = this.range(sector, dataIn, 'read');
          if (range === undefined) {
            status = VIRTIO_BLK_S_IOERR;
            break;
          }
          const data = await this.image.read(range, dataIn);
          if (r.epoch !== this.t.epoch) return;
          chain.write(0, data.length === dataIn ? data : data.subarray(0, dataIn));
          written = dataIn;
          status = VIRTIO_BLK_S_OK;
          break;
        }
        case VIRTIO_BLK_T_OUT: {
          const range = this.range(sector, dataOut, 'write');
          if (range === undefined || this.readOnly) {
            if (this.readOnly) this.guestError('read-only', 'write to a read-only disk refused');
            status = VIRTIO_BLK_S_IOERR;
            break;
          }
          await this.image.write(range, chain.read(HEADER_SIZE, dataOut));
          status = VIRTIO_BLK_S_OK;
          break;
        }
        case VIRTIO_BLK_T_FLUSH:
          if (!this.readOnly) await this.image.flush();
          status = VIRTIO_BLK_S_OK;
          break;
        case VIRTIO_BLK_T_GET_ID: {
          // §5.2.6.1: the ID is 20 bytes, NUL-padded; a shorter buffer gets what fits.
          const n = Math.min(dataIn, VIRTIO_BLK_ID_BYTES);
          chain.write(0, this.serial.subarray(0, n));
          written = n;
          status = VIRTIO_BLK_S_OK;
          break;
        }
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
          status = await this.discardOrZero(r, type, dataOut);
          break;
        default:
          // GET_LIFETIME, SECURE_ERASE, zoned and unknown types (§5.2.6.2).
          status = VIRTIO_BLK_S_UNSUPP;
      }
    } catch (e) {
      if (e instanceof ChainError) {
        this.guestError('bad-buffer', `request at descriptor ${chain.head}: ${e.message}`);
      } else if (e instanceof BlockError) {
        this.guestError('io-error', `${this.image.path}: ${e.message}`);
      } else {
        this.guestError('io-error', `I/O error: ${(e as Error).message}`);
      }
      status = VIRTIO_BLK_S_IOERR;
      written = 0;
    }
    this.finish(r, status, written);
  }

  /**
   * The byte offset of `length` bytes at `sector`, or undefined (with a
   * guest error) when the transfer is not whole sectors, too large, or
   * past the end of the disk.
   */
  private range(sector: bigint, length: number, what: string): number | undefined {
    if (length % SECTOR_SIZE) {
      this.guestError('unaligned', `${what} of ${length} bytes is not whole sectors`);
      return undefined;
    }
    if (length > this.maxRequestBytes) {
      this.guestError('too-large', `${what} of ${length} bytes exceeds ${this.maxRequestBytes}`);
      return undefined;
    }
    const capacity = BigInt(Math.floor(this.image.size / SECTOR_SIZE));
    if (sector > capacity || sector * BigInt(SECTOR_SIZE) + BigInt(length) > BigInt(this.image.size)) {
      this.guestError(
        'range',
        `${what} of ${length} bytes at sector ${sector} past the ${capacity}-sector disk`,
      );
      return undefined;
    }
    return Number(sector) * SECTOR_SIZE;
  }

  /** §5.2.6: an array of {le64 sector, le32 num_sectors, le32 flags}. */
  private async discardOrZero(r: Request, type: number, dataOut: number): Promise<number> {
    const zero = type === VIRTIO_BLK_T_WRITE_ZEROES;
    const what = zero ? 'write-zeroes' : 'discard';
    if (!this.t.hasFeature(zero ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD))
      return VIRTIO_BLK_S_UNSUPP;
    if (this.readOnly) return VIRTIO_BLK_S_IOERR;
    const n = dataOut / DWZ_SEGMENT_SIZE;
    if (!Number.isInteger(n) || n < 1 || n > MAX_DWZ_SEGMENTS) {
      this.guestError('dwz', `${what} with ${dataOut} bytes of segments (at most ${MAX_DWZ_SEGMENTS} of 16)`);
      return VIRTIO_BLK_S_IOERR;
    }
    const segs = new DataView(r.chain.read(HEADER_SIZE, dataOut).buffer);
    const ops: Array<() => Promise<void>> = [];
    for (let i = 0; i < n; i++) {
      const sector = segs.getBigUint64(i * 16, true);
      const count = segs.getUint32(i * 16 + 8, true);
      const flags = segs.getUint32(i * 16 + 12, true);
      // §5.2.6.2: reserved flag bits, and unmap on a discard, are UNSUPP.
      if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP || (!zero && flags)) return VIRTIO_BLK_S_UNSUPP;
      if (count > MAX_DWZ_SECTORS) {
        this.guestError('dwz', `${what} of ${count} sectors (at most ${MAX_DWZ_SECTORS})`);
        return VIRTIO_BLK_S_IOERR;
      }
      const capacity = BigInt(Math.floor(this.image.size / SECTOR_SIZE));
      if (sector + BigInt(count) > capacity) {
        this.guestError('range', `${what} of ${count} sectors at ${sector} past the ${capacity}-sector disk`);
        return VIRTIO_BLK_S_IOERR;
      }
      const off = Number(sector) * SECTOR_SIZE;
      const len = count * SECTOR_SIZE;
      if (len === 0) continue;
      const unmap = (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0;
      ops.push(zero ? () => this.image.writeZeroes(off, len, unmap) : () => this.image.discard(off, len));
    }
    await Promise.all(ops.map((op) => op()));
    return VIRTIO_BLK_S_OK;
  }

  /** Writes the status byte and returns the chain, unless the device was reset meanwhile. */
  private finish(r: Request, status: number, written: number): void {
    if (r.epoch !== this.t.epoch) return;
    const { chain } = r;
    try {
      chain.write(chain.writeLength - 1, Uint8Array.of(status));
    } catch (e) {
      this.guestError(
        'bad-buffer',
        `request at descriptor ${chain.head}: status byte: ${(e as Error).message}`,
      );
      this.t.complete(r.queue, chain.head, 0, r.epoch);
      return;
    }
    this.t.complete(r.queue, chain.head, written + 1, r.epoch);
  }
}

/** `class: virtio-block`: a virtio-blk device, on a PCI transport of its own slot. */
export const virtioBlockDevice: DeviceDescriptor<VirtioBlockDevice, ResolvedVirtioBlockDevice> = {
  class: 'virtio-block',
  schema: {
    name: 'VirtioBlockDevice',
    manifest: true,
    definition: {
      description: 'A virtio-blk disk (virtio-pci modern) on its own PCI slot.',
      type: 'object',
      additionalProperties: false,
      required: ['class', 'name', 'image'],
      properties: {
        class: {
          const: 'virtio-block',
        },
        name: {
          $ref: '#/definitions/DeviceName',
        },
        ...DISK_IMAGE_PROPERTIES,
        serial: {
          description:
            'Serial number the guest reads (VIRTIO_BLK_T_GET_ID; /dev/disk/by-id): 1-20 printable ASCII characters. Default: the device name (its first 20 characters).',
          type: 'string',
          minLength: 1,
          maxLength: 20,
          pattern: '^[ -~]+$',
        },
        queues: {
          description: 'Request queues (1..16). Default 1.',
          type: 'integer',
          minimum: 1,
          maximum: 16,
          default: 1,
        },
        slot: {
          description:
            'PCI slot on bus 0 (2..31; 0 is the host bridge, 1 the PIIX). Default: the first free slot from 2 up, in device order.',
          type: 'integer',
          minimum: 2,
          maximum: 31,
        },
      },
    },
  },
  resolve: (d, ctx) => ({
    class: 'virtio-block',
    name: d.name,
    image: ctx.image(d),
    serial: d.serial ?? defaultVirtioBlockSerial(d.name),
    queues: d.queues ?? 1,
    slot: pciSlotOf(ctx.placement),
  }),
  stateVersion: 1,
  create(d, board) {
    const image = board.image(d.name);
    if (!image) throw new BootError(`devices: ${d.name}: no image`);
    const blk = new VirtioBlk({
      image,
      name: d.name,
      serial: d.serial,
      numQueues: d.queues,
      readOnly: d.image.readOnly,
    });
    const slot = board.virtioPci(blk, d.slot);
    board.storage(blk);
    // SeaBIOS matches "/pci@i0cf8/*@<slot>" as QEMU names virtio-blk.
    board.bootPath(d.name, `/pci@i0cf8/scsi@${slot.toString(16)}/disk@0,0`);
  },
};
