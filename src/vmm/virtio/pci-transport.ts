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
 * A VirtioPciTransport holds a device model (a VirtioDevice, device.ts:
 * virtio-blk, later net, console, ...), which knows nothing of PCI: it
 * declares queues, feature bits and a config blob, and gets `queueNotify`
 * calls on the event loop. The transport owns the queues, the status
 * state machine (§2.1, §3.1; the common configuration registers are in
 * pci-common-config.ts), feature negotiation (§2.2: VERSION_1 is
 * required; ACCESS_PLATFORM and RING_PACKED are never offered), resets,
 * interrupts (MSI-X through an MsiSink, else INTx + ISR), saved state
 * (pci-transport-state.ts) and queue notifications: through a KVM
 * ioeventfd on the notify address while the BAR decodes (no vCPU exit;
 * IoEventHost), else the MMIO write path.
 *
 * A driver that breaks a ring gets DEVICE_NEEDS_RESET (§2.1.2) and a
 * configuration interrupt; nothing a guest writes makes this code throw.
 */
import type { AccessSize, DeviceContext, IoHandler } from '../core/device.js';
import { DeviceStateError } from '../core/device.js';
import type { Logger } from '../core/log.js';
import type { GuestMemory } from '../core/memory.js';
import { PCI_CAP_ID_VENDOR, PCI_COMMAND_MEMORY } from '../pci/config-space.js';
import { PciDevice } from '../pci/device.js';
import type { MsiSink } from '../pci/msi.js';
import { msixBarLayout } from '../pci/msix.js';
import {
  bit,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FAILED,
  VIRTIO_STATUS_NEEDS_RESET,
  type VirtioDevice,
  type VirtioTransport,
} from './device.js';
import { VirtioPciCommonConfig } from './pci-common-config.js';
import { checkTransportState, restoreCommonConfig, saveTransportState } from './pci-transport-state.js';
import { SplitQueue, VIRTIO_MSI_NO_VECTOR, VirtqueueError } from './virtqueue.js';

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

/** PCI class codes by virtio device type, as QEMU's (a driver looks at the IDs, not this). */
const VIRTIO_PCI_CLASS = new Map<number, number>([
  [2, 0x010000], // block: mass storage, SCSI
]);
/** The class of other device types: unclassified. */
const VIRTIO_PCI_CLASS_OTHER = 0xff0000;

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
  /** PCI class code; default by device type (as QEMU's), else 0xff0000. */
  classCode?: number;
}

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

/**
 * A virtio device on PCI: `new VirtioPciTransport(new VirtioBlk({...}), {...})`.
 * The transport is the machine's Device (name, reset, saved state, close);
 * the device model is `device`.
 */
export class VirtioPciTransport<D extends VirtioDevice = VirtioDevice>
  extends PciDevice
  implements VirtioTransport
{
  readonly queues: SplitQueue[];
  /** Every feature bit the device offers. */
  readonly offeredFeatures: bigint;
  private readonly ctx: DeviceContext;
  private readonly mem: GuestMemory;
  private readonly common: VirtioPciCommonConfig;
  private isr = 0;
  /** Bumped by every reset: work started before it must not touch the guest. */
  private epochNo = 0;
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

  constructor(
    readonly device: D,
    opts: VirtioPciOptions,
  ) {
    super(device.name, {
      vendorId: VIRTIO_PCI_VENDOR_ID,
      deviceId: VIRTIO_PCI_DEVICE_ID_BASE + device.deviceType,
      classCode: opts.classCode ?? VIRTIO_PCI_CLASS.get(device.deviceType) ?? VIRTIO_PCI_CLASS_OTHER,
      revision: 1,
      subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
      subsystemId: VIRTIO_PCI_SUBSYSTEM_ID,
      interruptPin: 1,
    });
    const numQueues = device.numQueues;
    if (!Number.isInteger(numQueues) || numQueues < 1 || numQueues > 1024) {
      throw new RangeError(`${device.name}: bad number of queues ${numQueues}`);
    }
    this.ctx = opts.ctx;
    this.mem = opts.mem;
    this.ioEvents = opts.ioEvents;
    this.defer = opts.defer ?? ((fn) => void setImmediate(fn));
    this.queues = [];
    for (let i = 0; i < numQueues; i++) {
      const q = new SplitQueue(i, device.queueSize);
      q.onGuestError = (msg) => this.guestError('chain', msg);
      this.queues.push(q);
    }
    this.offeredFeatures =
      device.features | bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX);
    if (this.offeredFeatures & (bit(VIRTIO_F_ACCESS_PLATFORM) | bit(VIRTIO_F_RING_PACKED))) {
      throw new RangeError(`${device.name}: ACCESS_PLATFORM and RING_PACKED are not implemented`);
    }

    // MSI-X first (as QEMU), then the virtio capabilities.
    const vectors = numQueues + 1;
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
    this.common = new VirtioPciCommonConfig({
      queues: this.queues,
      offeredFeatures: this.offeredFeatures,
      msixVectors: msix.vectors,
      guestError: (key, msg) => this.guestError(key, msg),
      validateFeatures: (f) => this.device.validateFeatures?.(f),
      resetRequested: () => this.virtioReset(),
      statusWritten: (old) => this.statusWritten(old),
      queueEnabled: (q) => this.queueEnabled(q),
    });
    device.attach(this.queues, this);
  }

  // ---- VirtioTransport: for the device model ------------------------------

  /** Features both sides agreed on (valid once FEATURES_OK is set). */
  get negotiatedFeatures(): bigint {
    return this.common.driverFeatures;
  }

  hasFeature(n: number): boolean {
    return (this.common.driverFeatures & bit(n)) !== 0n;
  }

  get status(): number {
    return this.common.status;
  }

  /** Changes at every reset; capture it when starting work and pass it to `complete`. */
  get epoch(): number {
    return this.epochNo;
  }

  get log(): Logger {
    return this.ctx.log;
  }

  /**
   * Returns a chain to the driver (used ring, in call order) unless the
   * device was reset since `epoch`; interrupts are batched per queue.
   */
  complete(queue: SplitQueue, head: number, written: number, epoch: number): void {
    this.completeMany(queue, [{ head, written }], epoch);
  }

  /** Like `complete` for several chains, published together (SplitQueue.pushMany). */
  completeMany(
    queue: SplitQueue,
    entries: readonly { head: number; written: number }[],
    epoch: number,
  ): void {
    if (epoch !== this.epochNo || !queue.active) return;
    queue.pushMany(entries);
    this.interruptsDue.add(queue.index);
    if (!this.interruptScheduled) {
      this.interruptScheduled = true;
      queueMicrotask(() => this.flushInterrupts());
    }
  }

  /** Device configuration changed (§4.1.4.3: config_generation; §4.1.5.2: interrupt). */
  configChanged(): void {
    const c = this.common;
    c.configGeneration = (c.configGeneration + 1) & 0xff;
    if (c.status & VIRTIO_STATUS_DRIVER_OK) this.raise(c.configVector, VIRTIO_ISR_CONFIG);
  }

  /**
   * A fatal guest error (§2.1.2): DEVICE_NEEDS_RESET is set, queues stop,
   * and a driver past DRIVER_OK gets a configuration interrupt.
   */
  needsReset(reason: string): void {
    this.guestError('needs-reset', `${reason}; device needs a reset`);
    const c = this.common;
    if (c.status & VIRTIO_STATUS_NEEDS_RESET) return;
    c.status |= VIRTIO_STATUS_NEEDS_RESET;
    this.syncIoEvents();
    if (c.status & VIRTIO_STATUS_DRIVER_OK) this.raise(c.configVector, VIRTIO_ISR_CONFIG);
  }

  /** A rate-limited complaint about the guest. */
  guestError(key: string, msg: string): void {
    this.ctx.guestErrors.warn(`${this.name}-${key}`, () => `${this.name}: ${msg}`);
  }

  /** Whether queues may be processed now (§3.1.1: not before DRIVER_OK; DMA needs bus mastering). */
  get running(): boolean {
    return (
      !this.closed &&
      (this.common.status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)) ===
        VIRTIO_STATUS_DRIVER_OK &&
      this.busMasterEnabled
    );
  }

  /** Asks for `queueNotify(queue)` on the event loop (coalesced). */
  kick(index: number): void {
    this.kicked.add(index);
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    this.defer(() => this.runKicks());
  }

  // ---- Device --------------------------------------------------------------

  /** Stops ioeventfds and queue work, then closes the device model (which releases its own resources). */
  close(): void {
    this.closed = true;
    this.syncIoEvents();
    this.device.close?.();
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
    return saveTransportState(this.common, this.isr, this.queues, this.device.saveState?.());
  }

  protected override loadDeviceState(state: unknown): void {
    const s = checkTransportState(state, this.name, this.queues.length, this.offeredFeatures);
    this.virtioReset();
    try {
      this.queues.forEach((q, i) => q.loadState(s.transport.queues[i]!));
    } catch (e) {
      this.virtioReset();
      throw new DeviceStateError(`${this.name}: ${(e as Error).message}`);
    }
    restoreCommonConfig(this.common, s);
    this.isr = s.transport.isr;
    // virtioReset above lowered INTx; a pending ISR keeps it asserted.
    if (this.isr) this.setIntx(true);
    this.device.loadState?.(s.device);
    this.wasMaster = this.busMasterEnabled;
    for (const q of this.queues) if (q.ready) this.activate(q);
    this.syncIoEvents();
    this.device.stateLoaded?.();
    if (this.running) for (const q of this.queues) if (q.active) this.kick(q.index);
  }

  // ---- BAR4 ----------------------------------------------------------------

  private barRead(o: number, size: AccessSize): number {
    if (o < ISR_CFG_OFFSET) return this.common.read(o - COMMON_CFG_OFFSET, size);
    if (o < DEVICE_CFG_OFFSET) {
      if (o !== ISR_CFG_OFFSET) return 0;
      // §4.1.4.5.1: reading clears the ISR and de-asserts INTx.
      const v = this.isr;
      this.isr = 0;
      this.setIntx(false);
      return v;
    }
    if (o < NOTIFY_CFG_OFFSET) {
      const cfg = this.device.readConfig();
      const off = o - DEVICE_CFG_OFFSET;
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + (off + i < cfg.length ? cfg[off + i]! : 0);
      return v;
    }
    return 0;
  }

  private barWrite(o: number, size: AccessSize, v: number): void {
    if (o < ISR_CFG_OFFSET) this.common.write(o - COMMON_CFG_OFFSET, size, v);
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

  /** A driver write to device configuration; ignored with a guest error if the device takes none. */
  private writeDeviceConfig(offset: number, size: AccessSize, value: number): void {
    if (this.device.writeConfig) this.device.writeConfig(offset, size, value);
    else {
      this.guestError(
        'config-write',
        `${size}-byte write to read-only device configuration at ${hex(offset)} ignored`,
      );
    }
  }

  private notified(qi: number): void {
    const q = this.queues[qi];
    if (q?.active && this.running) this.kick(qi);
  }

  // ---- what common configuration writes set in motion --------------------

  /** After a device_status write other than 0 (pci-common-config.ts checked and stored it). */
  private statusWritten(old: number): void {
    const v = this.common.status;
    if (v & VIRTIO_STATUS_DRIVER_OK && !(old & VIRTIO_STATUS_DRIVER_OK)) {
      this.syncIoEvents();
      // Buffers may have been made available before DRIVER_OK.
      for (const q of this.queues) if (q.active) this.kick(q.index);
    } else if ((v ^ old) & VIRTIO_STATUS_FAILED) {
      this.syncIoEvents();
    }
  }

  private queueEnabled(q: SplitQueue): void {
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
    this.common.reset();
    this.isr = 0;
    this.kicked.clear();
    this.interruptsDue.clear();
    this.setIntx(false);
    this.syncIoEvents();
    this.device.reset?.();
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
        this.device.queueNotify(q);
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
