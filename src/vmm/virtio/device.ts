/**
 * The line between a virtio device model and its transport, after Cloud
 * Hypervisor's `VirtioDevice` trait (virtio-devices/src/device.rs): a
 * device (virtio-blk; later net, console, ...) says what it is (type,
 * feature bits, queues, a configuration structure) and handles queue
 * notifications; a transport (the modern PCI one, pci-transport.ts; later
 * virtio-mmio) holds the device and does the rest: registers, status and
 * feature negotiation, queue setup, interrupts, resets, saved state. A
 * device imports nothing of PCI; the split rings (virtqueue.ts) are shared.
 *
 * Also here: the transport-independent constants of the specification
 * (Virtio 1.2): feature bits of §6 and device status bits of §2.1.
 */
import type { AccessSize } from '../core/device.js';
import type { Logger } from '../core/log.js';
import type { SplitQueue } from './virtqueue.js';

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

/**
 * A virtio device model as its transport sees it. The transport calls
 * `attach` once, from its constructor, and every other method on the
 * event loop (never inside a vCPU exit for queue work).
 */
export interface VirtioDevice {
  /** Instance name; the transport's device takes it (unique in a machine). */
  readonly name: string;
  /** Virtio device ID (§5): 1 net, 2 block, 3 console, ... */
  readonly deviceType: number;
  /** Device-specific feature bits offered (the transport adds its own). */
  readonly features: bigint;
  readonly numQueues: number;
  /** Largest size of each queue (a power of two). */
  readonly queueSize: number;

  /**
   * Called once by the transport that takes the device, before anything
   * but the properties above: the device's queues (owned and set up by the
   * transport) and the transport's services. Unlike Cloud Hypervisor's
   * `activate`, this is not tied to DRIVER_OK: the device may need the
   * transport before (a configuration change), and queue work is gated by
   * `transport.running` instead.
   */
  attach(queues: readonly SplitQueue[], transport: VirtioTransport): void;

  /** The device-specific configuration structure as it reads now (little-endian; §4.1.4.6, §4.2.2). */
  readConfig(): Uint8Array;
  /** A driver write to device configuration; without it, writes are ignored with a guest error. */
  writeConfig?(offset: number, size: AccessSize, value: number): void;
  /** Checks of the features the driver accepted: a reason to refuse FEATURES_OK, or undefined. */
  validateFeatures?(features: bigint): string | undefined;

  /** The driver notified `queue` (on the event loop, while `transport.running`). Pop and handle chains. */
  queueNotify(queue: SplitQueue): void;

  /** The device was reset (status 0, bus reset): forget requests; their completions carry an old epoch. */
  reset?(): void;

  /** The device's own part of saved state (plain JSON), or undefined when none. */
  saveState?(): unknown;
  /** Loads what `saveState` returned (undefined when it had nothing), before the queues restart. */
  loadState?(state: unknown): void;
  /** After a state load, queues restarted: re-run what was in flight (`queue.inflightChains()`). */
  stateLoaded?(): void;

  /** Resolves when no request is in flight (before a snapshot, or close). */
  drain?(): Promise<void>;
  /** The transport stopped delivering notifications: release the device's own resources. */
  close?(): void;
}

/** What a transport offers the device it holds (VirtioPciTransport implements it). */
export interface VirtioTransport {
  /** Features both sides agreed on (valid once FEATURES_OK is set). */
  readonly negotiatedFeatures: bigint;
  hasFeature(n: number): boolean;
  /** Changes at every reset; capture it when starting work and pass it to `complete`. */
  readonly epoch: number;
  /** Whether queues may be processed now (DRIVER_OK, not NEEDS_RESET or FAILED, DMA allowed, open). */
  readonly running: boolean;
  readonly log: Logger;

  /**
   * Returns a chain to the driver (used ring, in call order) unless the
   * device was reset since `epoch`; interrupts are batched per queue.
   */
  complete(queue: SplitQueue, head: number, written: number, epoch: number): void;
  /** Like `complete` for several chains, published with one used-index update (a merged receive frame). */
  completeMany(queue: SplitQueue, entries: readonly { head: number; written: number }[], epoch: number): void;
  /** Asks for `queueNotify(queue)` on the event loop (coalesced). */
  kick(index: number): void;
  /** Device configuration changed: new configuration generation, and an interrupt once the driver runs. */
  configChanged(): void;
  /** A fatal guest error (§2.1.2): DEVICE_NEEDS_RESET, queues stop, a configuration interrupt. */
  needsReset(reason: string): void;
  /** A rate-limited complaint about the guest, keyed and prefixed by the device name. */
  guestError(key: string, msg: string): void;
}
