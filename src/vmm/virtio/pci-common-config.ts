/**
 * The common configuration structure of the virtio-pci transport (Virtio
 * 1.2 §4.1.4.3) as a register file: its layout, the register values, and
 * what the driver's writes do to them (feature words, the status state
 * machine of §2.1 and §3.1, queue selection and set-up). What a register
 * write sets in motion beyond the registers (a reset, ioeventfds, queue
 * activation, kicks) is the transport's, through CommonConfigHost. A
 * module of its own to keep pci-transport.ts, the PCI function, readable.
 */
import type { AccessSize } from '../core/device.js';
import {
  bit,
  VIRTIO_F_VERSION_1,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FEATURES_OK,
  VIRTIO_STATUS_NEEDS_RESET,
} from './device.js';
import { VIRTIO_MSI_NO_VECTOR, type SplitQueue } from './virtqueue.js';

/** Common configuration registers (§4.1.4.3). */
export const CommonCfg = {
  deviceFeatureSelect: 0x00,
  deviceFeature: 0x04,
  driverFeatureSelect: 0x08,
  driverFeature: 0x0c,
  configMsixVector: 0x10,
  numQueues: 0x12,
  deviceStatus: 0x14,
  configGeneration: 0x15,
  queueSelect: 0x16,
  queueSize: 0x18,
  queueMsixVector: 0x1a,
  queueEnable: 0x1c,
  queueNotifyOff: 0x1e,
  queueDesc: 0x20,
  queueDriver: 0x28,
  queueDevice: 0x30,
  queueNotifyData: 0x38,
  queueReset: 0x3a,
} as const;
const COMMON_CFG_SIZE = 0x3c;

/** What the common configuration needs of its transport. */
export interface CommonConfigHost {
  readonly queues: readonly SplitQueue[];
  /** Every feature bit the device offers. */
  readonly offeredFeatures: bigint;
  /** MSI-X vectors of the function (0 without MSI-X). */
  readonly msixVectors: number;
  guestError(key: string, msg: string): void;
  /** The device's own checks of accepted features; a reason to refuse, or undefined. */
  validateFeatures(features: bigint): string | undefined;
  /** The driver wrote 0 to device_status: reset the device (§2.4). */
  resetRequested(): void;
  /** device_status was written (not 0): `old` is the value before, `status` holds the new one. */
  statusWritten(old: number): void;
  /** The driver enabled `queue` (`ready` is set): activate it. */
  queueEnabled(queue: SplitQueue): void;
}

interface Field {
  off: number;
  size: 1 | 2 | 4;
  get(): number;
  set?(v: number): void;
}

const TWO32 = 0x1_0000_0000;
const hex = (n: number | bigint) => `0x${n.toString(16)}`;

export class VirtioPciCommonConfig {
  /** Features the driver accepted (the agreed set once FEATURES_OK is set). */
  driverFeatures = 0n;
  deviceFeatureSelect = 0;
  driverFeatureSelect = 0;
  status = 0;
  configGeneration = 0;
  configVector = VIRTIO_MSI_NO_VECTOR;
  queueSelect = 0;
  private readonly fields: Field[];

  constructor(private readonly host: CommonConfigHost) {
    this.fields = this.buildFields();
  }

  /** §2.4: the registers after a reset (the configuration generation is kept). */
  reset(): void {
    this.driverFeatures = 0n;
    this.deviceFeatureSelect = this.driverFeatureSelect = 0;
    this.status = 0;
    this.configVector = VIRTIO_MSI_NO_VECTOR;
    this.queueSelect = 0;
  }

  /** Any width at any offset: the bytes are taken from the fields they fall in. */
  read(o: number, size: AccessSize): number {
    const f = this.fieldAt(o);
    if (f && f.off === o && f.size === size) return f.get() >>> 0;
    let v = 0;
    for (let i = size - 1; i >= 0; i--) {
      const g = this.fieldAt(o + i);
      v = v * 256 + (g ? (g.get() >>> (8 * (o + i - g.off))) & 0xff : 0);
    }
    return v;
  }

  /** A write of the field's width sets it; narrower or straddling writes merge into each field once. */
  write(o: number, size: AccessSize, value: number): void {
    const f = this.fieldAt(o);
    if (f && f.off === o && f.size === size) {
      if (f.set) f.set(value >>> 0);
      else this.host.guestError('common-ro', `write to read-only common configuration at ${hex(o)} ignored`);
      return;
    }
    const touched = new Map<Field, number>();
    for (let i = 0; i < size; i++) {
      const g = this.fieldAt(o + i);
      if (!g?.set) continue;
      const shift = 8 * (o + i - g.off);
      const cur = touched.get(g) ?? g.get() >>> 0;
      const b = (value >>> (8 * i)) & 0xff;
      touched.set(g, ((cur & ~(0xff << shift)) | (b << shift)) >>> 0);
    }
    for (const [g, v] of touched) g.set!(v);
  }

  private get selected(): SplitQueue | undefined {
    return this.host.queues[this.queueSelect];
  }

  private buildFields(): Field[] {
    const C = CommonCfg;
    const q = () => this.selected;
    /** A queue field writable only while the queue is disabled (§4.1.4.3.2). */
    const qset = (what: string, fn: (x: SplitQueue, v: number) => void) => (v: number) => {
      const x = q();
      if (!x) return;
      if (x.ready) {
        this.host.guestError('queue-write', `queue ${x.index}: ${what} written while enabled; ignored`);
        return;
      }
      fn(x, v);
    };
    const addr = (
      off: number,
      get: (x: SplitQueue) => number,
      set: (x: SplitQueue, v: number) => void,
    ): Field[] => [
      {
        off,
        size: 4,
        get: () => (q() ? get(q()!) % TWO32 : 0),
        set: qset('address', (x, v) => set(x, Math.floor(get(x) / TWO32) * TWO32 + v)),
      },
      {
        off: off + 4,
        size: 4,
        get: () => (q() ? Math.floor(get(q()!) / TWO32) : 0),
        // Addresses at or above 2^53 are not guest RAM anyway: clamp, activation refuses them.
        set: qset('address', (x, v) => set(x, Math.min(v, 0x1f_ffff) * TWO32 + (get(x) % TWO32))),
      },
    ];
    return [
      {
        off: C.deviceFeatureSelect,
        size: 4,
        get: () => this.deviceFeatureSelect,
        set: (v) => (this.deviceFeatureSelect = v >>> 0),
      },
      {
        off: C.deviceFeature,
        size: 4,
        get: () => this.featureWord(this.host.offeredFeatures, this.deviceFeatureSelect),
      },
      {
        off: C.driverFeatureSelect,
        size: 4,
        get: () => this.driverFeatureSelect,
        set: (v) => (this.driverFeatureSelect = v >>> 0),
      },
      {
        off: C.driverFeature,
        size: 4,
        get: () => this.featureWord(this.driverFeatures, this.driverFeatureSelect),
        set: (v) => this.writeDriverFeatures(v),
      },
      {
        off: C.configMsixVector,
        size: 2,
        get: () => this.configVector,
        set: (v) => (this.configVector = this.checkVector(v)),
      },
      { off: C.numQueues, size: 2, get: () => this.host.queues.length },
      { off: C.deviceStatus, size: 1, get: () => this.status, set: (v) => this.writeStatus(v) },
      { off: C.configGeneration, size: 1, get: () => this.configGeneration },
      { off: C.queueSelect, size: 2, get: () => this.queueSelect, set: (v) => (this.queueSelect = v) },
      {
        off: C.queueSize,
        size: 2,
        // §4.1.4.3.2: 0 for a queue that does not exist.
        get: () => q()?.size ?? 0,
        set: qset('queue_size', (x, v) => {
          if (v < 1 || v > x.maxSize || (v & (v - 1)) !== 0) {
            this.host.guestError(
              'queue-size',
              `queue ${x.index}: size ${v} is not a power of two up to ${x.maxSize}; ignored`,
            );
          } else x.size = v;
        }),
      },
      {
        off: C.queueMsixVector,
        size: 2,
        get: () => q()?.vector ?? VIRTIO_MSI_NO_VECTOR,
        set: (v) => {
          const x = q();
          if (x) x.vector = this.checkVector(v);
        },
      },
      {
        off: C.queueEnable,
        size: 2,
        get: () => (q()?.ready ? 1 : 0),
        set: (v) => this.writeQueueEnable(v),
      },
      { off: C.queueNotifyOff, size: 2, get: () => (q() ? q()!.index : 0) },
      ...addr(
        C.queueDesc,
        (x) => x.desc,
        (x, v) => (x.desc = v),
      ),
      ...addr(
        C.queueDriver,
        (x) => x.driver,
        (x, v) => (x.driver = v),
      ),
      ...addr(
        C.queueDevice,
        (x) => x.device,
        (x, v) => (x.device = v),
      ),
      // VIRTIO_F_NOTIF_CONFIG_DATA and VIRTIO_F_RING_RESET are not offered.
      { off: C.queueNotifyData, size: 2, get: () => 0 },
      { off: C.queueReset, size: 2, get: () => 0 },
    ];
  }

  private fieldAt(o: number): Field | undefined {
    if (o < 0 || o >= COMMON_CFG_SIZE) return undefined;
    return this.fields.find((f) => o >= f.off && o < f.off + f.size);
  }

  private featureWord(features: bigint, select: number): number {
    if (select > 1) return 0;
    return Number((features >> BigInt(32 * select)) & 0xffffffffn);
  }

  private writeDriverFeatures(v: number): void {
    if (this.status & VIRTIO_STATUS_FEATURES_OK) {
      this.host.guestError('features-late', 'driver features written after FEATURES_OK; ignored');
      return;
    }
    const sel = this.driverFeatureSelect;
    if (sel > 1) {
      if (v) this.host.guestError('features-select', `driver feature word ${sel} set to ${hex(v)}; ignored`);
      return;
    }
    const shift = BigInt(32 * sel);
    this.driverFeatures = (this.driverFeatures & ~(0xffffffffn << shift)) | (BigInt(v >>> 0) << shift);
  }

  /** §4.1.5.1.2: a vector the device cannot use reads back as NO_VECTOR. */
  private checkVector(v: number): number {
    return v < this.host.msixVectors ? v : VIRTIO_MSI_NO_VECTOR;
  }

  private writeStatus(v: number): void {
    v &= 0xff;
    if (v === 0) {
      this.host.resetRequested();
      return;
    }
    const old = this.status;
    if (v & VIRTIO_STATUS_FEATURES_OK && !(old & VIRTIO_STATUS_FEATURES_OK)) {
      // §2.2.2 / §3.1.1 step 5: the device refuses feature sets it cannot
      // support by leaving FEATURES_OK clear.
      const why = this.checkFeatures(this.driverFeatures);
      if (why) {
        this.host.guestError('features', `driver features ${hex(this.driverFeatures)} refused: ${why}`);
        v &= ~VIRTIO_STATUS_FEATURES_OK;
      }
    }
    if (v & VIRTIO_STATUS_DRIVER_OK && !(v & VIRTIO_STATUS_FEATURES_OK)) {
      this.host.guestError('status', 'DRIVER_OK without FEATURES_OK; ignored');
      v &= ~VIRTIO_STATUS_DRIVER_OK;
    }
    // The driver cannot clear DEVICE_NEEDS_RESET except by a reset.
    this.status = v | (old & VIRTIO_STATUS_NEEDS_RESET);
    this.host.statusWritten(old);
  }

  private checkFeatures(f: bigint): string | undefined {
    const extra = f & ~this.host.offeredFeatures;
    if (extra) return `bits ${hex(extra)} were not offered`;
    if (!(f & bit(VIRTIO_F_VERSION_1))) return 'VIRTIO_F_VERSION_1 is required (no legacy interface)';
    return this.host.validateFeatures(f);
  }

  private writeQueueEnable(v: number): void {
    const q = this.selected;
    if (!q) return;
    if (v !== 1) {
      // §4.1.4.3.2: the driver MUST NOT write 0 (queue reset is not offered).
      if (!q.ready) return;
      this.host.guestError(
        'queue-disable',
        `queue ${q.index}: queue_enable ${v} ignored (only a device reset stops a queue)`,
      );
      return;
    }
    if (q.ready) return;
    if (!(this.status & VIRTIO_STATUS_FEATURES_OK)) {
      this.host.guestError('queue-early', `queue ${q.index} enabled before FEATURES_OK`);
    }
    q.ready = true;
    this.host.queueEnabled(q);
  }
}
