/**
 * A virtio driver in miniature for unit tests: it programs a device through
 * its PCI config space and BAR4 registers and builds split rings in a
 * GuestMemory over plain Uint8Arrays, as a guest would. Plus an in-memory
 * BlockImage whose I/O can be held and released in any order.
 */
import { BlockError, type BlockImage } from '../../../../src/block/image.js';
import type { AccessSize, IoHandler } from '../../../../src/vmm/core/device.js';
import { GuestMemory } from '../../../../src/vmm/core/memory.js';
import {
  PCI_BAR0,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
} from '../../../../src/vmm/pci/config-space.js';
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_STATUS_ACKNOWLEDGE,
  VIRTIO_STATUS_DRIVER,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FEATURES_OK,
  bit,
} from '../../../../src/vmm/virtio/device.js';
import { CommonCfg } from '../../../../src/vmm/virtio/pci-common-config.js';
import {
  NOTIFY_CFG_OFFSET,
  VIRTIO_BAR,
  VIRTIO_MSIX_BAR,
  type VirtioPciTransport,
} from '../../../../src/vmm/virtio/pci-transport.js';
import {
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../../../../src/vmm/virtio/virtqueue.js';

export const RAM_SIZE = 0x100000;
/** Where BAR4 and BAR1 are placed when a test maps them. */
export const BAR4_BASE = 0xfe000000;
export const BAR1_BASE = 0xfd000000;

/** 1 MiB of guest RAM at 0, optionally as two adjacent regions (to cross a region boundary). */
export function guestRam(split = false): GuestMemory {
  const mem = new GuestMemory();
  if (split) {
    mem.addRegion(0, new Uint8Array(RAM_SIZE / 2));
    mem.addRegion(RAM_SIZE / 2, new Uint8Array(RAM_SIZE / 2));
  } else mem.addRegion(0, new Uint8Array(RAM_SIZE));
  return mem;
}

/** Lets async I/O and microtasks run. */
export async function settle(turns = 6): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

export interface Buf {
  addr: number;
  len: number;
  write?: boolean;
}

export interface QueueLayout {
  size: number;
  desc: number;
  avail: number;
  used: number;
  nextDesc: number;
  availIdx: number;
  usedSeen: number;
}

/** Split rings in guest memory as a driver builds them. Ring base of queue i: 0x10000 * (i + 1); data from 0x80000. */
export class Rings {
  readonly queues = new Map<number, QueueLayout>();
  private heap = 0x80000;

  constructor(readonly mem: GuestMemory) {}

  /** Zeroed rings for queue qi of `size` entries. */
  layout(qi: number, size: number): QueueLayout {
    const base = 0x10000 * (qi + 1);
    const q: QueueLayout = {
      size,
      desc: base,
      avail: base + 0x1000,
      used: base + 0x2000,
      nextDesc: 0,
      availIdx: 0,
      usedSeen: 0,
    };
    this.mem.fill(base, 0x3000);
    this.queues.set(qi, q);
    return q;
  }

  // ---- memory --------------------------------------------------------------

  alloc(len: number, align = 16): number {
    this.heap = Math.ceil(this.heap / align) * align;
    const a = this.heap;
    this.heap += len;
    if (this.heap > RAM_SIZE) throw new Error('test heap exhausted');
    return a;
  }

  put(data: Uint8Array | number[]): number {
    const b = Uint8Array.from(data);
    const a = this.alloc(Math.max(1, b.length));
    this.mem.write(a, b);
    return a;
  }

  // ---- rings ---------------------------------------------------------------

  writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number): void {
    const v = this.mem.dataView(table + 16 * i, 16);
    v.setUint32(0, addr % 0x1_0000_0000, true);
    v.setUint32(4, Math.floor(addr / 0x1_0000_0000), true);
    v.setUint32(8, len, true);
    v.setUint16(12, flags, true);
    v.setUint16(14, next, true);
  }

  /** Takes `n` consecutive free descriptor slots of queue qi. */
  takeDescs(qi: number, n: number): number {
    const q = this.queues.get(qi)!;
    const first = q.nextDesc;
    q.nextDesc = (q.nextDesc + n) % q.size;
    return first;
  }

  /** Makes head `head` available and returns it. */
  publish(qi: number, head: number): number {
    const q = this.queues.get(qi)!;
    const v = this.mem.dataView(q.avail, 4 + 2 * q.size);
    v.setUint16(4 + 2 * (q.availIdx % q.size), head, true);
    q.availIdx = (q.availIdx + 1) & 0xffff;
    v.setUint16(2, q.availIdx, true);
    return head;
  }

  /** Sets avail.idx directly (hostile tests). */
  setAvailIdx(qi: number, idx: number): void {
    const q = this.queues.get(qi)!;
    this.mem.dataView(q.avail, 4).setUint16(2, idx, true);
  }

  /** A chain of direct descriptors; returns its head. */
  addChain(qi: number, bufs: Buf[], publish = true): number {
    const q = this.queues.get(qi)!;
    const head = this.takeDescs(qi, bufs.length);
    bufs.forEach((b, k) => {
      const i = (head + k) % q.size;
      const last = k === bufs.length - 1;
      this.writeDesc(
        q.desc,
        i,
        b.addr,
        b.len,
        (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT),
        (i + 1) % q.size,
      );
    });
    return publish ? this.publish(qi, head) : head;
  }

  /** One INDIRECT descriptor pointing at a table of `bufs`; returns its head. */
  addIndirect(qi: number, bufs: Buf[], publish = true): number {
    const q = this.queues.get(qi)!;
    const table = this.alloc(16 * bufs.length);
    bufs.forEach((b, k) => {
      const last = k === bufs.length - 1;
      this.writeDesc(
        table,
        k,
        b.addr,
        b.len,
        (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT),
        k + 1,
      );
    });
    const head = this.takeDescs(qi, 1);
    this.writeDesc(q.desc, head, table, 16 * bufs.length, VIRTQ_DESC_F_INDIRECT, 0);
    return publish ? this.publish(qi, head) : head;
  }

  usedIdx(qi: number): number {
    const q = this.queues.get(qi)!;
    return this.mem.dataView(q.used, 4).getUint16(2, true);
  }

  /** Used elements added since the last call, in ring order. */
  takeUsed(qi: number): Array<{ id: number; len: number }> {
    const q = this.queues.get(qi)!;
    const idx = this.usedIdx(qi);
    const out: Array<{ id: number; len: number }> = [];
    const v = this.mem.dataView(q.used, 4 + 8 * q.size);
    while (q.usedSeen !== idx) {
      const slot = q.usedSeen % q.size;
      out.push({ id: v.getUint32(4 + 8 * slot, true), len: v.getUint32(8 + 8 * slot, true) });
      q.usedSeen = (q.usedSeen + 1) & 0xffff;
    }
    return out;
  }

  /** The avail_event the device wrote (EVENT_IDX). */
  availEvent(qi: number): number {
    const q = this.queues.get(qi)!;
    return this.mem.dataView(q.used + 4 + 8 * q.size, 2).getUint16(0, true);
  }

  setUsedEvent(qi: number, v: number): void {
    const q = this.queues.get(qi)!;
    this.mem.dataView(q.avail + 4 + 2 * q.size, 2).setUint16(0, v, true);
  }

  setAvailFlags(qi: number, v: number): void {
    const q = this.queues.get(qi)!;
    this.mem.dataView(q.avail, 2).setUint16(0, v, true);
  }
}

/** A driver: registers through BAR4 and config space, rings through Rings. */
export class Driver extends Rings {
  readonly bar4: IoHandler;
  readonly bar1: IoHandler;

  constructor(
    readonly dev: VirtioPciTransport,
    mem: GuestMemory,
  ) {
    super(mem);
    this.bar4 = dev.bars.find((b) => b.index === VIRTIO_BAR)!.handler;
    this.bar1 = dev.bars.find((b) => b.index === VIRTIO_MSIX_BAR)!.handler;
  }

  // ---- registers -----------------------------------------------------------

  read(off: number, size: AccessSize): number {
    return this.bar4.read(off, size);
  }
  write(off: number, size: AccessSize, v: number): void {
    this.bar4.write(off, size, v);
  }
  get status(): number {
    return this.read(CommonCfg.deviceStatus, 1);
  }
  set status(v: number) {
    this.write(CommonCfg.deviceStatus, 1, v);
  }

  /** Memory decode and bus mastering on, BAR4 (and BAR1) placed. */
  enablePci(): void {
    this.dev.writeConfig(PCI_BAR0 + 4 * VIRTIO_BAR, 4, BAR4_BASE);
    this.dev.writeConfig(PCI_BAR0 + 4 * VIRTIO_BAR + 4, 4, 0);
    this.dev.writeConfig(PCI_BAR0 + 4 * VIRTIO_MSIX_BAR, 4, BAR1_BASE);
    this.dev.writeConfig(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  }

  deviceFeatures(): bigint {
    this.write(CommonCfg.deviceFeatureSelect, 4, 0);
    const lo = this.read(CommonCfg.deviceFeature, 4);
    this.write(CommonCfg.deviceFeatureSelect, 4, 1);
    const hi = this.read(CommonCfg.deviceFeature, 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  writeFeatures(f: bigint): void {
    this.write(CommonCfg.driverFeatureSelect, 4, 0);
    this.write(CommonCfg.driverFeature, 4, Number(f & 0xffffffffn));
    this.write(CommonCfg.driverFeatureSelect, 4, 1);
    this.write(CommonCfg.driverFeature, 4, Number(f >> 32n));
  }

  /**
   * §3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, features (default: all
   * offered), FEATURES_OK. Returns the status read back.
   */
  negotiate(features?: bigint): number {
    this.status = 0;
    this.status = VIRTIO_STATUS_ACKNOWLEDGE;
    this.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
    this.writeFeatures(features ?? this.deviceFeatures());
    this.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
    return this.status;
  }

  setupQueue(qi: number, size = 16, vector?: number): void {
    const q = this.layout(qi, size);
    this.write(CommonCfg.queueSelect, 2, qi);
    this.write(CommonCfg.queueSize, 2, size);
    if (vector !== undefined) this.write(CommonCfg.queueMsixVector, 2, vector);
    for (const [off, v] of [
      [CommonCfg.queueDesc, q.desc],
      [CommonCfg.queueDriver, q.avail],
      [CommonCfg.queueDevice, q.used],
    ] as const) {
      this.write(off, 4, v);
      this.write(off + 4, 4, 0);
    }
    this.write(CommonCfg.queueEnable, 2, 1);
  }

  driverOk(): void {
    this.status = this.status | VIRTIO_STATUS_DRIVER_OK;
  }

  /** Everything up to DRIVER_OK with `queues` queues of `size`. */
  bringUp(opts: { queues?: number; size?: number; features?: bigint; pci?: boolean } = {}): void {
    if (opts.pci ?? true) this.enablePci();
    this.negotiate(opts.features);
    for (let i = 0; i < (opts.queues ?? 1); i++) this.setupQueue(i, opts.size ?? 16);
    this.driverOk();
  }

  notify(qi: number): void {
    this.write(NOTIFY_CFG_OFFSET + 4 * qi, 2, qi);
  }

  // ---- MSI-X -----------------------------------------------------------------

  /** Enables MSI-X and programs vector v with address 0xFEE00000 + v*16, data 0x40 + v, unmasked. */
  enableMsix(vectors: number): void {
    const cap = this.dev.config.findCapability(0x11)!;
    for (let v = 0; v < vectors; v++) {
      this.bar1.write(v * 16, 4, 0xfee00000 + v * 16);
      this.bar1.write(v * 16 + 4, 4, 0);
      this.bar1.write(v * 16 + 8, 4, 0x40 + v);
      this.bar1.write(v * 16 + 12, 4, 0);
    }
    this.dev.writeConfig(cap + 2, 2, 0x8000);
  }
}

/** The default feature set a modern driver accepts: everything offered. */
export const VERSION_1 = bit(VIRTIO_F_VERSION_1);

interface Held {
  op: string;
  release: () => void;
}

/** An in-memory BlockImage; with `hold` set, each I/O waits until the test releases it. */
export class FakeImage implements BlockImage {
  readonly path = '/fake/disk.img';
  readonly format = 'raw' as const;
  readonly data: Uint8Array;
  readonly ops: string[] = [];
  hold = false;
  failNext: Error | undefined;
  flushes = 0;
  closed = false;
  private readonly held: Held[] = [];

  constructor(
    public size: number,
    readonly readOnly = false,
  ) {
    this.data = new Uint8Array(size);
  }

  /** Ops waiting to complete, oldest first. */
  get pending(): string[] {
    return this.held.map((h) => h.op);
  }

  /** Completes the held op whose label starts with `prefix` (or the i-th one). */
  release(which: string | number = 0): void {
    const i = typeof which === 'number' ? which : this.held.findIndex((h) => h.op.startsWith(which));
    if (i < 0 || i >= this.held.length)
      throw new Error(`no held op ${which} (have ${this.pending.join(', ')})`);
    this.held.splice(i, 1)[0]!.release();
  }

  private async gate(op: string): Promise<void> {
    this.ops.push(op);
    if (this.hold) await new Promise<void>((r) => this.held.push({ op, release: r }));
    else await Promise.resolve();
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
  }

  private check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.size)
      throw new BlockError('out of range', 'EINVAL');
  }

  private checkWrite(): void {
    if (this.readOnly) throw new BlockError('read-only', 'EROFS');
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    await this.gate(`read ${offset}+${length}`);
    this.check(offset, length);
    const out = into ?? new Uint8Array(length);
    out.set(this.data.subarray(offset, offset + length));
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.gate(`write ${offset}+${data.length}`);
    this.checkWrite();
    this.check(offset, data.length);
    this.data.set(data, offset);
  }

  async flush(): Promise<void> {
    await this.gate('flush');
    this.flushes++;
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.gate(`discard ${offset}+${length}`);
    this.checkWrite();
    this.check(offset, length);
    this.data.fill(0, offset, offset + length);
  }

  async writeZeroes(offset: number, length: number, unmap = false): Promise<void> {
    await this.gate(`zeroes ${offset}+${length}${unmap ? ' unmap' : ''}`);
    this.checkWrite();
    this.check(offset, length);
    this.data.fill(0, offset, offset + length);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
