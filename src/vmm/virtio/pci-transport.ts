/**
 * The modern virtio-pci transport (Virtio 1.2 §4.1), without the legacy
 * interface: a PCI function with vendor 1AF4h, device 1040h + the virtio
 * device type, revision 1 (§4.1.2.1), whose registers are found through
 * vendor-specific capabilities (§4.1.4):
 *
 *   BAR4 (64-bit prefetchable memory, 16 KiB, QEMU's layout):
 *     0x0000 common configuration (§4.1.4.3): features, status, queues
 *     0x1000 ISR status (§4.1.4.5): read-to-clear, drives INTx
 *     0x2000 device-specific configuration (§4.1.4.6)
 *     0x3000 notifications (§4.1.4.4): queue i at 0x3000 + 4*i
 *   BAR1 (32-bit memory): the MSI-X table and PBA, one vector per queue
 *     plus one for configuration changes
 *   a VIRTIO_PCI_CAP_PCI_CFG capability (§4.1.4.9): a window into BAR4
 *     through config space, for firmware that cannot reach the BAR
 *
 * Device models (virtio-blk, later net, console, ...) extend
 * VirtioPciDevice: they declare queues, feature bits and a config blob,
 * and get `onQueueNotify` calls on the event loop. The transport owns the
 * status state machine (§2.1, §3.1), feature negotiation (§2.2: VERSION_1
 * is required; ACCESS_PLATFORM and RING_PACKED are never offered), resets,
 * interrupts (MSI-X through an MsiSink, else INTx + ISR) and queue
 * notifications: through a KVM ioeventfd on the notify address while the
 * BAR decodes (no vCPU exit; IoEventHost), else the MMIO write path.
 *
 * A driver that breaks a ring gets DEVICE_NEEDS_RESET (§2.1.2) and a
 * configuration interrupt; nothing a guest writes makes this code throw.
 */
import type { AccessSize, DeviceContext, IoHandler } from '../core/device.js';
import { DeviceStateError } from '../core/device.js';
import type { GuestMemory } from '../core/memory.js';
import { PCI_CAP_ID_VENDOR, PCI_COMMAND_MEMORY } from '../pci/config-space.js';
import { PciDevice } from '../pci/device.js';
import type { MsiSink } from '../pci/msi.js';
import { msixBarLayout } from '../pci/msix.js';
import { SplitQueue, VIRTIO_MSI_NO_VECTOR, VirtqueueError, type VirtqueueState } from './virtqueue.js';

// ---- feature bits (§6) -------------------------------------------------------
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;
export const VIRTIO_F_ACCESS_PLATFORM = 33;
export const VIRTIO_F_RING_PACKED = 34;

/** A feature bit as a mask. */
export const bit = (n: number): bigint => 1n << BigInt(n);

// ---- device status (§2.1) ----------------------------------------------------
export const VIRTIO_STATUS_ACKNOWLEDGE = 1;
export const VIRTIO_STATUS_DRIVER = 2;
export const VIRTIO_STATUS_DRIVER_OK = 4;
export const VIRTIO_STATUS_FEATURES_OK = 8;
export const VIRTIO_STATUS_NEEDS_RESET = 0x40;
export const VIRTIO_STATUS_FAILED = 0x80;

// ---- PCI capabilities (§4.1.4) -------------------------------------------------
export const VIRTIO_PCI_CAP_COMMON_CFG = 1;
export const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
export const VIRTIO_PCI_CAP_ISR_CFG = 3;
export const VIRTIO_PCI_CAP_DEVICE_CFG = 4;
export const VIRTIO_PCI_CAP_PCI_CFG = 5;

/** ISR status bits (§4.1.4.5). */
export const VIRTIO_ISR_QUEUE = 1;
export const VIRTIO_ISR_CONFIG = 2;

export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
/** §4.1.2.1: modern-only devices are 1040h + type and revision 1. */
export const VIRTIO_PCI_DEVICE_ID_BASE = 0x1040;
/** Subsystem ID of modern-only devices (0x40 or above, §4.1.2.1; QEMU's value). */
export const VIRTIO_PCI_SUBSYSTEM_ID = 0x1100;

export const VIRTIO_BAR = 4;
export const VIRTIO_MSIX_BAR = 1;
export const COMMON_CFG_OFFSET = 0x0000;
export const ISR_CFG_OFFSET = 0x1000;
export const DEVICE_CFG_OFFSET = 0x2000;
export const NOTIFY_CFG_OFFSET = 0x3000;
export const VIRTIO_REGION_SIZE = 0x1000;
export const VIRTIO_BAR_SIZE = 0x4000;
/** Bytes between two queues' notify addresses (notify_off_multiplier). */
export const NOTIFY_OFF_MULTIPLIER = 4;

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

/** Catches guest writes to a notify address without a vCPU exit (KVM ioeventfd + FdWatcher; ioevent.ts). */
export interface IoEventHost {
  /**
   * Calls `onNotify` on the event loop after the guest wrote `len` bytes at
   * MMIO address `addr` (several writes may be one call). Returns a
   * function that stops it, or undefined when that is not possible (the
   * write then exits to the MMIO bus as usual).
   */
  watchMmioWrite(addr: number, len: number, onNotify: () => void): (() => void) | undefined;
}

export interface VirtioPciOptions {
  ctx: DeviceContext;
  mem: GuestMemory;
  /** Where MSI-X messages go (KVM_SIGNAL_MSI in the machine). */
  msi: MsiSink;
  /** Queue notifications without exits; without it every notification is an MMIO exit. */
  ioEvents?: IoEventHost;
  /** Runs queue work later on the event loop (default setImmediate): never inside a vCPU exit. */
  defer?: (fn: () => void) => void;
}

export interface VirtioDeviceSpec {
  name: string;
  /** Virtio device ID (§5): 1 net, 2 block, 3 console, ... */
  deviceType: number;
  classCode: number;
  numQueues: number;
  /** Largest queue size (a power of two). */
  queueSize: number;
  /** Device-specific feature bits offered (the transport adds its own). */
  features: bigint;
}

/** What the transport saves besides config space and MSI-X. */
interface TransportState {
  driverFeatures: string;
  deviceFeatureSelect: number;
  driverFeatureSelect: number;
  status: number;
  configGeneration: number;
  configVector: number;
  queueSelect: number;
  isr: number;
  queues: VirtqueueState[];
}

interface Field {
  off: number;
  size: 1 | 2 | 4;
  get(): number;
  set?(v: number): void;
}

const TWO32 = 0x1_0000_0000;
const hex = (n: number | bigint) => `0x${n.toString(16)}`;

export abstract class VirtioPciDevice extends PciDevice {
  readonly queues: SplitQueue[];
  /** Every feature bit the device offers. */
  readonly offeredFeatures: bigint;
  protected readonly ctx: DeviceContext;
  protected readonly mem: GuestMemory;
  private driverFeatures = 0n;
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private statusReg = 0;
  private configGen = 0;
  private configVector = VIRTIO_MSI_NO_VECTOR;
  private queueSelect = 0;
  private isr = 0;
  /** Bumped by every reset: work started before it must not touch the guest. */
  private epochNo = 0;
  private readonly commonFields: Field[];
  private readonly ioEvents: IoEventHost | undefined;
  private readonly defer: (fn: () => void) => void;
  /** Queue index -> active ioeventfd (address, stop). */
  private readonly watches = new Map<number, { addr: number; stop: () => void }>();
  private readonly kicked = new Set<number>();
  private kickScheduled = false;
  private readonly interruptsDue = new Set<number>();
  private interruptScheduled = false;
  private readonly pciCfgCap: number;
  private closed = false;
  private wasMaster = false;

  constructor(spec: VirtioDeviceSpec, opts: VirtioPciOptions) {
    super(spec.name, {
      vendorId: VIRTIO_PCI_VENDOR_ID,
      deviceId: VIRTIO_PCI_DEVICE_ID_BASE + spec.deviceType,
      classCode: spec.classCode,
      revision: 1,
      subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
      subsystemId: VIRTIO_PCI_SUBSYSTEM_ID,
      interruptPin: 1,
    });
    if (!Number.isInteger(spec.numQueues) || spec.numQueues < 1 || spec.numQueues > 1024) {
      throw new RangeError(`${spec.name}: bad number of queues ${spec.numQueues}`);
    }
    this.ctx = opts.ctx;
    this.mem = opts.mem;
    this.ioEvents = opts.ioEvents;
    this.defer = opts.defer ?? ((fn) => void setImmediate(fn));
    this.queues = [];
    for (let i = 0; i < spec.numQueues; i++) {
      const q = new SplitQueue(i, spec.queueSize);
      q.onGuestError = (msg) => this.guestError('chain', msg);
      this.queues.push(q);
    }
    this.offeredFeatures =
      spec.features | bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX);
    if (this.offeredFeatures & (bit(VIRTIO_F_ACCESS_PLATFORM) | bit(VIRTIO_F_RING_PACKED))) {
      throw new RangeError(`${spec.name}: ACCESS_PLATFORM and RING_PACKED are not implemented`);
    }

    // MSI-X first (as QEMU), then the virtio capabilities.
    const vectors = spec.numQueues + 1;
    const layout = msixBarLayout(vectors);
    const msix = this.addMsix(
      {
        vectors,
        tableBar: VIRTIO_MSIX_BAR,
        tableOffset: layout.tableOffset,
        pbaBar: VIRTIO_MSIX_BAR,
        pbaOffset: layout.pbaOffset,
      },
      opts.msi,
    );
    this.addBar({ index: VIRTIO_MSIX_BAR, kind: 'mem32', size: layout.barSize, handler: msix.barHandler });
    const bar: IoHandler = {
      read: (o, size) => this.barRead(o, size),
      write: (o, size, v) => this.barWrite(o, size, v),
    };
    this.addBar({
      index: VIRTIO_BAR,
      kind: 'mem64',
      size: VIRTIO_BAR_SIZE,
      prefetchable: true,
      handler: bar,
    });
    this.addVirtioCap(VIRTIO_PCI_CAP_COMMON_CFG, COMMON_CFG_OFFSET, VIRTIO_REGION_SIZE);
    this.addVirtioCap(VIRTIO_PCI_CAP_ISR_CFG, ISR_CFG_OFFSET, VIRTIO_REGION_SIZE);
    this.addVirtioCap(VIRTIO_PCI_CAP_DEVICE_CFG, DEVICE_CFG_OFFSET, VIRTIO_REGION_SIZE);
    const notify = this.addVirtioCap(VIRTIO_PCI_CAP_NOTIFY_CFG, NOTIFY_CFG_OFFSET, VIRTIO_REGION_SIZE, 4);
    this.config.set32(notify + 16, NOTIFY_OFF_MULTIPLIER);
    // §4.1.4.9: bar, offset and length are the driver's to write; the
    // data window is served by onConfigRead/onConfigWrite.
    const cfg = this.addVirtioCap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 4);
    this.config.setWmask(cfg + 4, 1, 0xff);
    this.config.setWmask(cfg + 8, 4, 0xffffffff);
    this.config.setWmask(cfg + 12, 4, 0xffffffff);
    this.pciCfgCap = cfg;
    this.commonFields = this.buildCommonFields();
  }

  // ---- for device models ---------------------------------------------------

  /** The driver notified `queue` (on the event loop, DRIVER_OK, bus master on). Pop and handle chains. */
  protected abstract onQueueNotify(queue: SplitQueue): void;

  /** The device-specific configuration structure as it reads now (little-endian). */
  protected abstract deviceConfig(): Uint8Array;

  /** A driver write to device configuration; default: ignored with a guest error (read-only fields). */
  protected writeDeviceConfig(offset: number, size: AccessSize, _value: number): void {
    this.guestError(
      'config-write',
      `${size}-byte write to read-only device configuration at ${hex(offset)} ignored`,
    );
  }

  /** Device-specific checks of the features the driver accepted; a reason to refuse FEATURES_OK, or undefined. */
  protected validateFeatures(_features: bigint): string | undefined {
    return undefined;
  }

  /** The device was reset (status 0 or PCI reset): forget requests; their completions carry an old epoch. */
  protected onVirtioReset(): void {}

  /** After a state load: re-run what was in flight (`queue.inflightChains()`). */
  protected onStateLoaded(): void {}

  protected saveVirtioDeviceState(): unknown {
    return undefined;
  }

  protected loadVirtioDeviceState(_state: unknown): void {}

  /** Features both sides agreed on (valid once FEATURES_OK is set). */
  get negotiatedFeatures(): bigint {
    return this.driverFeatures;
  }

  hasFeature(n: number): boolean {
    return (this.driverFeatures & bit(n)) !== 0n;
  }

  get status(): number {
    return this.statusReg;
  }

  /** Changes at every reset; capture it when starting work and pass it to `complete`. */
  get epoch(): number {
    return this.epochNo;
  }

  /**
   * Returns a chain to the driver (used ring, in call order) unless the
   * device was reset since `epoch`; interrupts are batched per queue.
   */
  protected complete(queue: SplitQueue, head: number, written: number, epoch: number): void {
    if (epoch !== this.epochNo || !queue.active) return;
    queue.push(head, written);
    this.interruptsDue.add(queue.index);
    if (!this.interruptScheduled) {
      this.interruptScheduled = true;
      queueMicrotask(() => this.flushInterrupts());
    }
  }

  /** Device configuration changed (§4.1.4.3: config_generation; §4.1.5.2: interrupt). */
  protected configChanged(): void {
    this.configGen = (this.configGen + 1) & 0xff;
    if (this.statusReg & VIRTIO_STATUS_DRIVER_OK) this.raise(this.configVector, VIRTIO_ISR_CONFIG);
  }

  /**
   * A fatal guest error (§2.1.2): DEVICE_NEEDS_RESET is set, queues stop,
   * and a driver past DRIVER_OK gets a configuration interrupt.
   */
  protected needsReset(reason: string): void {
    this.guestError('needs-reset', `${reason}; device needs a reset`);
    if (this.statusReg & VIRTIO_STATUS_NEEDS_RESET) return;
    this.statusReg |= VIRTIO_STATUS_NEEDS_RESET;
    this.syncIoEvents();
    if (this.statusReg & VIRTIO_STATUS_DRIVER_OK) this.raise(this.configVector, VIRTIO_ISR_CONFIG);
  }

  /** A rate-limited complaint about the guest. */
  protected guestError(key: string, msg: string): void {
    this.ctx.guestErrors.warn(`${this.name}-${key}`, () => `${this.name}: ${msg}`);
  }

  /** Whether queues may be processed now (§3.1.1: not before DRIVER_OK; DMA needs bus mastering). */
  protected get running(): boolean {
    return (
      !this.closed &&
      (this.statusReg & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)) ===
        VIRTIO_STATUS_DRIVER_OK &&
      this.busMasterEnabled
    );
  }

  /** Asks for `onQueueNotify(queue)` on the event loop (coalesced). */
  protected kick(index: number): void {
    this.kicked.add(index);
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    this.defer(() => this.runKicks());
  }

  // ---- Device --------------------------------------------------------------

  /** Stops ioeventfds and queue work; the device model releases its own resources. */
  close(): void {
    this.closed = true;
    this.syncIoEvents();
  }

  override detach(): void {
    super.detach();
    this.syncIoEvents();
  }

  // ---- PciDevice hooks -----------------------------------------------------

  protected override resetDevice(): void {
    this.wasMaster = false;
    this.virtioReset();
  }

  protected override onConfigWrite(offset: number, size: AccessSize, value: number): void {
    const data = this.pciCfgCap + 16;
    if (offset === data) this.pciCfgAccess(size, value);
    // Command (memory decode, bus master) or BAR4 may have changed.
    this.syncIoEvents();
    const master = this.busMasterEnabled;
    if (master && !this.wasMaster && this.running) {
      // Notifications that came while DMA was off were not acted on.
      for (const q of this.queues) if (q.active) this.kick(q.index);
    }
    this.wasMaster = master;
  }

  protected override onConfigRead(offset: number, size: AccessSize, value: number): number {
    const data = this.pciCfgCap + 16;
    if (offset < data || offset >= data + 4) return value;
    const v = this.pciCfgAccess(undefined, 0);
    if (v === undefined) return value;
    const shifted = v >>> (8 * (offset - data));
    return size === 4 ? shifted >>> 0 : shifted & ((1 << (8 * size)) - 1);
  }

  protected override saveDeviceState(): unknown {
    const t: TransportState = {
      driverFeatures: this.driverFeatures.toString(16),
      deviceFeatureSelect: this.deviceFeatureSelect,
      driverFeatureSelect: this.driverFeatureSelect,
      status: this.statusReg,
      configGeneration: this.configGen,
      configVector: this.configVector,
      queueSelect: this.queueSelect,
      isr: this.isr,
      queues: this.queues.map((q) => q.saveState()),
    };
    const device = this.saveVirtioDeviceState();
    return device === undefined ? { transport: t } : { transport: t, device };
  }

  protected override loadDeviceState(state: unknown): void {
    const s = state as { transport?: Partial<TransportState>; device?: unknown } | undefined;
    const t = s?.transport;
    const u = (v: unknown, max: number) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= max;
    if (
      !t ||
      typeof t.driverFeatures !== 'string' ||
      !/^[0-9a-f]{1,16}$/.test(t.driverFeatures) ||
      !u(t.deviceFeatureSelect, 0xffffffff) ||
      !u(t.driverFeatureSelect, 0xffffffff) ||
      !u(t.status, 0xff) ||
      !u(t.configGeneration, 0xff) ||
      !u(t.configVector, 0xffff) ||
      !u(t.queueSelect, 0xffff) ||
      !u(t.isr, 3) ||
      !Array.isArray(t.queues) ||
      t.queues.length !== this.queues.length
    ) {
      throw new DeviceStateError(`${this.name}: bad virtio transport state`);
    }
    const features = BigInt(`0x${t.driverFeatures}`);
    if (features & ~this.offeredFeatures) {
      throw new DeviceStateError(`${this.name}: saved features ${hex(features)} were not offered`);
    }
    this.virtioReset();
    try {
      this.queues.forEach((q, i) => q.loadState(t.queues![i]!));
    } catch (e) {
      this.virtioReset();
      throw new DeviceStateError(`${this.name}: ${(e as Error).message}`);
    }
    this.driverFeatures = features;
    this.deviceFeatureSelect = t.deviceFeatureSelect!;
    this.driverFeatureSelect = t.driverFeatureSelect!;
    this.statusReg = t.status!;
    this.configGen = t.configGeneration!;
    this.configVector = t.configVector!;
    this.queueSelect = t.queueSelect!;
    this.isr = t.isr!;
    // virtioReset above lowered INTx; a pending ISR keeps it asserted.
    if (this.isr) this.setIntx(true);
    this.loadVirtioDeviceState(s.device);
    this.wasMaster = this.busMasterEnabled;
    for (const q of this.queues) if (q.ready) this.activate(q);
    this.syncIoEvents();
    this.onStateLoaded();
    if (this.running) for (const q of this.queues) if (q.active) this.kick(q.index);
  }

  // ---- BAR4 ----------------------------------------------------------------

  private barRead(o: number, size: AccessSize): number {
    if (o < ISR_CFG_OFFSET) return this.commonRead(o - COMMON_CFG_OFFSET, size);
    if (o < DEVICE_CFG_OFFSET) {
      if (o !== ISR_CFG_OFFSET) return 0;
      // §4.1.4.5.1: reading clears the ISR and de-asserts INTx.
      const v = this.isr;
      this.isr = 0;
      this.setIntx(false);
      return v;
    }
    if (o < NOTIFY_CFG_OFFSET) {
      const cfg = this.deviceConfig();
      const off = o - DEVICE_CFG_OFFSET;
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + (off + i < cfg.length ? cfg[off + i]! : 0);
      return v;
    }
    return 0;
  }

  private barWrite(o: number, size: AccessSize, v: number): void {
    if (o < ISR_CFG_OFFSET) this.commonWrite(o - COMMON_CFG_OFFSET, size, v);
    else if (o < DEVICE_CFG_OFFSET) this.guestError('isr-write', 'write to the read-only ISR ignored');
    else if (o < NOTIFY_CFG_OFFSET) this.writeDeviceConfig(o - DEVICE_CFG_OFFSET, size, v);
    else {
      // The MMIO path of a notification (no ioeventfd, or a write of
      // another width): the address names the queue (§4.1.4.4).
      const off = o - NOTIFY_CFG_OFFSET;
      const qi = off / NOTIFY_OFF_MULTIPLIER;
      if (Number.isInteger(qi) && qi < this.queues.length) this.notified(qi);
      else this.guestError('notify', `notification at ${hex(off)} names no queue`);
    }
  }

  private notified(qi: number): void {
    const q = this.queues[qi];
    if (q?.active && this.running) this.kick(qi);
  }

  // ---- common configuration (§4.1.4.3) -----------------------------------

  private get selected(): SplitQueue | undefined {
    return this.queues[this.queueSelect];
  }

  private buildCommonFields(): Field[] {
    const C = CommonCfg;
    const q = () => this.selected;
    /** A queue field writable only while the queue is disabled (§4.1.4.3.2). */
    const qset = (what: string, fn: (x: SplitQueue, v: number) => void) => (v: number) => {
      const x = q();
      if (!x) return;
      if (x.ready) {
        this.guestError('queue-write', `queue ${x.index}: ${what} written while enabled; ignored`);
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
        get: () => this.featureWord(this.offeredFeatures, this.deviceFeatureSelect),
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
      { off: C.numQueues, size: 2, get: () => this.queues.length },
      { off: C.deviceStatus, size: 1, get: () => this.statusReg, set: (v) => this.writeStatus(v) },
      { off: C.configGeneration, size: 1, get: () => this.configGen },
      { off: C.queueSelect, size: 2, get: () => this.queueSelect, set: (v) => (this.queueSelect = v) },
      {
        off: C.queueSize,
        size: 2,
        // §4.1.4.3.2: 0 for a queue that does not exist.
        get: () => q()?.size ?? 0,
        set: qset('queue_size', (x, v) => {
          if (v < 1 || v > x.maxSize || (v & (v - 1)) !== 0) {
            this.guestError(
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
    return this.commonFields.find((f) => o >= f.off && o < f.off + f.size);
  }

  /** Any width at any offset: the bytes are taken from the fields they fall in. */
  private commonRead(o: number, size: AccessSize): number {
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
  private commonWrite(o: number, size: AccessSize, value: number): void {
    const f = this.fieldAt(o);
    if (f && f.off === o && f.size === size) {
      if (f.set) f.set(value >>> 0);
      else this.guestError('common-ro', `write to read-only common configuration at ${hex(o)} ignored`);
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

  private featureWord(features: bigint, select: number): number {
    if (select > 1) return 0;
    return Number((features >> BigInt(32 * select)) & 0xffffffffn);
  }

  private writeDriverFeatures(v: number): void {
    if (this.statusReg & VIRTIO_STATUS_FEATURES_OK) {
      this.guestError('features-late', 'driver features written after FEATURES_OK; ignored');
      return;
    }
    const sel = this.driverFeatureSelect;
    if (sel > 1) {
      if (v) this.guestError('features-select', `driver feature word ${sel} set to ${hex(v)}; ignored`);
      return;
    }
    const shift = BigInt(32 * sel);
    this.driverFeatures = (this.driverFeatures & ~(0xffffffffn << shift)) | (BigInt(v >>> 0) << shift);
  }

  /** §4.1.5.1.2: a vector the device cannot use reads back as NO_VECTOR. */
  private checkVector(v: number): number {
    const n = this.msix?.vectors ?? 0;
    return v < n ? v : VIRTIO_MSI_NO_VECTOR;
  }

  private writeStatus(v: number): void {
    v &= 0xff;
    if (v === 0) {
      this.virtioReset();
      return;
    }
    const old = this.statusReg;
    if (v & VIRTIO_STATUS_FEATURES_OK && !(old & VIRTIO_STATUS_FEATURES_OK)) {
      // §2.2.2 / §3.1.1 step 5: the device refuses feature sets it cannot
      // support by leaving FEATURES_OK clear.
      const why = this.checkFeatures(this.driverFeatures);
      if (why) {
        this.guestError('features', `driver features ${hex(this.driverFeatures)} refused: ${why}`);
        v &= ~VIRTIO_STATUS_FEATURES_OK;
      }
    }
    if (v & VIRTIO_STATUS_DRIVER_OK && !(v & VIRTIO_STATUS_FEATURES_OK)) {
      this.guestError('status', 'DRIVER_OK without FEATURES_OK; ignored');
      v &= ~VIRTIO_STATUS_DRIVER_OK;
    }
    // The driver cannot clear DEVICE_NEEDS_RESET except by a reset.
    this.statusReg = v | (old & VIRTIO_STATUS_NEEDS_RESET);
    if (v & VIRTIO_STATUS_DRIVER_OK && !(old & VIRTIO_STATUS_DRIVER_OK)) {
      this.syncIoEvents();
      // Buffers may have been made available before DRIVER_OK.
      for (const q of this.queues) if (q.active) this.kick(q.index);
    } else if ((v ^ old) & VIRTIO_STATUS_FAILED) {
      this.syncIoEvents();
    }
  }

  private checkFeatures(f: bigint): string | undefined {
    const extra = f & ~this.offeredFeatures;
    if (extra) return `bits ${hex(extra)} were not offered`;
    if (!(f & bit(VIRTIO_F_VERSION_1))) return 'VIRTIO_F_VERSION_1 is required (no legacy interface)';
    return this.validateFeatures(f);
  }

  private writeQueueEnable(v: number): void {
    const q = this.selected;
    if (!q) return;
    if (v !== 1) {
      // §4.1.4.3.2: the driver MUST NOT write 0 (queue reset is not offered).
      if (!q.ready) return;
      this.guestError(
        'queue-disable',
        `queue ${q.index}: queue_enable ${v} ignored (only a device reset stops a queue)`,
      );
      return;
    }
    if (q.ready) return;
    if (!(this.statusReg & VIRTIO_STATUS_FEATURES_OK)) {
      this.guestError('queue-early', `queue ${q.index} enabled before FEATURES_OK`);
    }
    q.ready = true;
    this.activate(q);
    this.syncIoEvents();
    if (this.running && q.active) this.kick(q.index);
  }

  private activate(q: SplitQueue): void {
    q.eventIdx = this.hasFeature(VIRTIO_F_EVENT_IDX);
    q.indirect = this.hasFeature(VIRTIO_F_INDIRECT_DESC);
    try {
      q.activate(this.mem);
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.needsReset(e.message);
    }
  }

  /** §2.4: back to the state after power-on; work in flight is abandoned (the epoch changes). */
  private virtioReset(): void {
    this.epochNo++;
    for (const q of this.queues) q.reset();
    this.driverFeatures = 0n;
    this.deviceFeatureSelect = this.driverFeatureSelect = 0;
    this.statusReg = 0;
    this.configVector = VIRTIO_MSI_NO_VECTOR;
    this.queueSelect = 0;
    this.isr = 0;
    this.kicked.clear();
    this.interruptsDue.clear();
    this.setIntx(false);
    this.syncIoEvents();
    this.onVirtioReset();
  }

  // ---- queue work and interrupts ------------------------------------------

  private runKicks(): void {
    this.kickScheduled = false;
    const list = [...this.kicked];
    this.kicked.clear();
    for (const i of list) {
      const q = this.queues[i]!;
      if (!q.active || !this.running) continue;
      try {
        this.onQueueNotify(q);
      } catch (e) {
        if (e instanceof VirtqueueError) this.needsReset(e.message);
        else {
          this.ctx.log.error(`${this.name}: internal error on queue ${i}: ${(e as Error).stack ?? e}`);
          this.needsReset(`internal error on queue ${i}`);
        }
      }
    }
  }

  private flushInterrupts(): void {
    this.interruptScheduled = false;
    const due = [...this.interruptsDue];
    this.interruptsDue.clear();
    for (const i of due) {
      const q = this.queues[i]!;
      if (q.active && q.needsInterrupt()) this.raise(q.vector, VIRTIO_ISR_QUEUE);
    }
  }

  /** §4.1.5.4: MSI-X when enabled (nothing for NO_VECTOR), else the ISR bit and INTx. */
  private raise(vector: number, isrBit: number): void {
    const m = this.msix;
    if (m?.enabled) {
      if (vector !== VIRTIO_MSI_NO_VECTOR && vector < m.vectors) m.notify(vector);
      return;
    }
    this.isr |= isrBit;
    this.setIntx(true);
  }

  // ---- ioeventfds ----------------------------------------------------------

  /** BAR4's address while it decodes (as the host bus maps it), else undefined. */
  private barBase(): number | undefined {
    if (!(this.config.command & PCI_COMMAND_MEMORY)) return undefined;
    const base = this.config.barAddress(VIRTIO_BAR);
    if (base === 0 || base + VIRTIO_BAR_SIZE > 2 ** 52) return undefined;
    return base;
  }

  /**
   * Keeps one ioeventfd per enabled queue on its notify address while the
   * driver runs the device and BAR4 decodes; moves them when the BAR
   * moves. A queue whose watch ended is looked at once more, in case a
   * notification went to the old eventfd.
   */
  private syncIoEvents(): void {
    const host = this.ioEvents;
    if (!host) return;
    const base = this.barBase();
    const on = base !== undefined && this.running;
    for (const q of this.queues) {
      const want = on && q.active ? base + NOTIFY_CFG_OFFSET + q.index * NOTIFY_OFF_MULTIPLIER : undefined;
      const cur = this.watches.get(q.index);
      if (cur?.addr === want) continue;
      if (cur) {
        this.watches.delete(q.index);
        cur.stop();
        if (this.running && q.active) this.kick(q.index);
      }
      if (want === undefined) continue;
      // Linux writes the 16-bit queue index (iowrite16); other widths take the MMIO path.
      const stop = host.watchMmioWrite(want, 2, () => this.notified(q.index));
      if (stop) this.watches.set(q.index, { addr: want, stop });
    }
  }

  // ---- VIRTIO_PCI_CAP_PCI_CFG (§4.1.4.9) -----------------------------------

  /**
   * An access to pci_cfg_data: `write` is the access size of a write, or
   * undefined for a read (which returns the value). The window is
   * cap.length (1, 2 or 4) bytes of BAR cap.bar at cap.offset.
   */
  private pciCfgAccess(write: AccessSize | undefined, value: number): number | undefined {
    const cap = this.pciCfgCap;
    const bar = this.config.get8(cap + 4);
    const off = this.config.get32(cap + 8);
    const len = this.config.get32(cap + 12);
    if (len === 0) return undefined; // not set up yet
    if (
      bar !== VIRTIO_BAR ||
      (len !== 1 && len !== 2 && len !== 4) ||
      off % len ||
      off + len > VIRTIO_BAR_SIZE
    ) {
      this.guestError('pci-cfg', `PCI config window to BAR${bar} ${hex(off)}+${len} not served`);
      return undefined;
    }
    if (write === undefined) return this.barRead(off, len);
    this.barWrite(off, len, len === 4 ? value >>> 0 : value & ((1 << (8 * len)) - 1));
    return undefined;
  }

  private addVirtioCap(type: number, offset: number, length: number, extra = 0): number {
    const len = 16 + extra;
    const cap = this.config.addCapability(PCI_CAP_ID_VENDOR, len);
    this.config.set8(cap + 2, len);
    this.config.set8(cap + 3, type);
    this.config.set8(cap + 4, type === VIRTIO_PCI_CAP_PCI_CFG ? 0 : VIRTIO_BAR);
    this.config.set32(cap + 8, offset);
    this.config.set32(cap + 12, length);
    return cap;
  }
}
