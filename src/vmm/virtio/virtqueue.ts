/**
 * The split virtqueue (Virtio 1.2 §2.7), written once for every virtio
 * device: the descriptor table, the available ring the driver fills and
 * the used ring the device fills, indirect descriptor tables (§2.7.5.3,
 * VIRTIO_F_INDIRECT_DESC) and notification suppression by event index
 * (§2.7.7, §2.7.10, VIRTIO_F_EVENT_IDX). The packed virtqueue (§2.8) is not
 * implemented, so VIRTIO_F_RING_PACKED is never offered.
 *
 * The guest controls every byte here and its other vCPUs write them while
 * we read, so each field is read once and the values read are what is
 * checked and used. What a hostile or broken driver can do, and what
 * happens:
 *   - a malformed chain (a loop, more descriptors than allowed, a
 *     zero-length buffer, a device-readable buffer after a device-writable
 *     one, an indirect table inside an indirect table, INDIRECT with NEXT,
 *     a bad indirect table size, a chain of 2^32 bytes or more, a
 *     descriptor index past the table): the chain is returned to the
 *     driver unused (used length 0) and `onGuestError` reports it
 *     (rate-limited by the device); the queue goes on;
 *   - a buffer outside guest RAM: the chain is handed to the device with
 *     that segment marked (`views` undefined); the device fails the
 *     request with its own error status when it can (virtio-blk: IOERR);
 *   - a broken ring (the available index moved by more than the queue
 *     size, a head index past the table, a head that is already in
 *     flight, rings outside RAM or misaligned): nothing sensible can be
 *     returned, so `pop` throws a `VirtqueueError` and the transport marks
 *     the device DEVICE_NEEDS_RESET (§2.1.2), as QEMU's virtio_error does.
 *
 * Memory ordering: the ring indices are read and written with Atomics on
 * views of guest RAM (a sequentially consistent store is a full barrier on
 * x86), so the used element is visible before the used index, and the
 * used index before we read used_event (§2.7.13.3.1's memory barrier).
 */
import type { GuestMemory } from '../core/memory.js';

/** Descriptor flags (§2.7.5). */
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
/** Available ring flags: the driver wants no interrupts (without EVENT_IDX). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Used ring flags: the device wants no notifications (without EVENT_IDX). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;
/** §2.6: the largest queue size. */
export const VIRTQ_MAX_SIZE = 32768;
/** Entries an indirect table may hold (QEMU's VIRTQUEUE_MAX_SIZE). */
export const VIRTQ_MAX_INDIRECT = 1024;
/** Queue vector "no vector" (§4.1.4.3). */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

const DESC_SIZE = 16;
const TWO32 = 0x1_0000_0000;

/** The ring can no longer be trusted: the device needs a reset. */
export class VirtqueueError extends Error {}

/** A request-level problem (a buffer outside RAM) the device turns into an error status. */
export class ChainError extends Error {}

/** One buffer of a chain: where it is and host views of it (undefined when not all in guest RAM). */
export interface Segment {
  readonly addr: number;
  readonly len: number;
  readonly views: readonly Uint8Array[] | undefined;
}

/**
 * [addr, addr+len) of guest RAM as host views, one per RAM region it
 * touches (GuestMemory regions may be adjacent, e.g. the 1 GiB views of one
 * RAM block); undefined when some byte is not RAM.
 */
export function resolveGuest(mem: GuestMemory, addr: number, len: number): Uint8Array[] | undefined {
  if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || addr < 0 || len < 0) return undefined;
  const one = mem.tryView(addr, len);
  if (one) return [one];
  const views: Uint8Array[] = [];
  let at = addr;
  let left = len;
  while (left > 0) {
    const r = mem.list().find((x) => at >= x.gpa && at < x.gpa + x.size);
    if (!r) return undefined;
    const n = Math.min(left, r.gpa + r.size - at);
    views.push(r.bytes.subarray(at - r.gpa, at - r.gpa + n));
    at += n;
    left -= n;
  }
  return views;
}

/** A descriptor chain the driver made available: device-readable buffers, then device-writable ones. */
export class Chain {
  readonly readLength: number;
  readonly writeLength: number;

  constructor(
    /** The head descriptor index: what goes back in the used ring. */
    readonly head: number,
    readonly readable: readonly Segment[],
    readonly writable: readonly Segment[],
  ) {
    this.readLength = readable.reduce((s, x) => s + x.len, 0);
    this.writeLength = writable.reduce((s, x) => s + x.len, 0);
  }

  /** Whether every buffer lies in guest RAM. */
  get inRam(): boolean {
    return this.readable.every((s) => s.views) && this.writable.every((s) => s.views);
  }

  /**
   * Copies `length` bytes of the device-readable part, from byte `offset`
   * of it (the driver may split a header over buffers, §2.6.4: never rely
   * on the framing). Throws ChainError past the end or outside RAM.
   */
  read(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.copy(this.readable, offset, length, (view, at, n) => out.set(view.subarray(0, n), at), 'read');
    return out;
  }

  /** Copies `data` into the device-writable part from byte `offset`; throws ChainError like read. */
  write(offset: number, data: Uint8Array): void {
    this.copy(
      this.writable,
      offset,
      data.length,
      (view, at, n) => view.set(data.subarray(at, at + n)),
      'write',
    );
  }

  private copy(
    segs: readonly Segment[],
    offset: number,
    length: number,
    fn: (view: Uint8Array, at: number, n: number) => void,
    what: string,
  ): void {
    const total = segs === this.readable ? this.readLength : this.writeLength;
    if (offset < 0 || length < 0 || offset + length > total) {
      throw new ChainError(`${what} of ${length} bytes at ${offset} past the ${total}-byte buffer`);
    }
    let skip = offset;
    let done = 0;
    for (const s of segs) {
      if (done === length) break;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      if (!s.views)
        throw new ChainError(`buffer 0x${s.addr.toString(16)}+0x${s.len.toString(16)} is not in guest RAM`);
      for (const v of s.views) {
        if (done === length) break;
        if (skip >= v.length) {
          skip -= v.length;
          continue;
        }
        const n = Math.min(v.length - skip, length - done);
        fn(v.subarray(skip, skip + n), done, n);
        done += n;
        skip = 0;
      }
    }
  }
}

/** Saved state of one queue (§2.7 fields plus the device's ring positions). */
export interface VirtqueueState {
  size: number;
  ready: boolean;
  desc: number;
  driver: number;
  device: number;
  vector: number;
  lastAvail: number;
  usedIdx: number;
  signalledUsed: number;
  signalledValid: boolean;
  /** Heads popped and not yet returned, oldest first: re-run after a load. */
  inflight: number[];
}

interface RawDesc {
  addr: number;
  len: number;
  flags: number;
  next: number;
}

export class SplitQueue {
  // ---- what the driver programs through the transport (§4.1.4.3) ----------
  /** Queue Size: the driver may lower it (a power of two) before enabling. */
  size: number;
  ready = false;
  desc = 0;
  driver = 0;
  device = 0;
  vector = VIRTIO_MSI_NO_VECTOR;

  // ---- negotiated features ---------------------------------------------------
  eventIdx = false;
  indirect = false;

  /** Called for each malformed chain dropped (the device rate-limits the message). */
  onGuestError: (msg: string) => void = () => {};

  private lastAvail = 0;
  private usedIdx = 0;
  private signalledUsed = 0;
  private signalledValid = false;
  private readonly inflight = new Set<number>();
  private descTable: DataView | undefined;
  private availRing: Uint16Array | undefined;
  private usedHeader: Uint16Array | undefined;
  private usedRing: Uint32Array | undefined;
  private availEvent: Uint16Array | undefined;
  private mem: GuestMemory | undefined;

  constructor(
    readonly index: number,
    readonly maxSize: number,
  ) {
    if (
      !Number.isInteger(maxSize) ||
      maxSize < 1 ||
      maxSize > VIRTQ_MAX_SIZE ||
      (maxSize & (maxSize - 1)) !== 0
    ) {
      throw new RangeError(`bad virtqueue size ${maxSize}`);
    }
    this.size = maxSize;
  }

  /** Whether the rings are resolved (the queue is enabled and was activated). */
  get active(): boolean {
    return this.descTable !== undefined;
  }

  /** Chains popped and not yet pushed back. */
  get inflightCount(): number {
    return this.inflight.size;
  }

  /**
   * Resolves the three areas in guest RAM and checks their alignment
   * (§2.7: 16, 2 and 4 bytes). Throws VirtqueueError when they are not
   * usable; the transport then marks the device as needing a reset.
   */
  activate(mem: GuestMemory): void {
    const n = this.size;
    if (n < 1 || n > this.maxSize || (n & (n - 1)) !== 0) {
      throw new VirtqueueError(`queue ${this.index}: size ${n} is not a power of two up to ${this.maxSize}`);
    }
    if (this.desc % 16 || this.driver % 2 || this.device % 4) {
      throw new VirtqueueError(
        `queue ${this.index}: rings misaligned (desc 0x${this.desc.toString(16)}, driver 0x${this.driver.toString(16)}, device 0x${this.device.toString(16)})`,
      );
    }
    const area = (what: string, gpa: number, len: number, align: number): Uint8Array => {
      const v = mem.tryView(gpa, len);
      if (!v || v.byteOffset % align) {
        throw new VirtqueueError(
          `queue ${this.index}: ${what} area 0x${gpa.toString(16)}+0x${len.toString(16)} is not inside one guest RAM region`,
        );
      }
      return v;
    };
    const d = area('descriptor', this.desc, DESC_SIZE * n, 16);
    const a = area('driver', this.driver, 6 + 2 * n, 2);
    const u = area('device', this.device, 6 + 8 * n, 4);
    this.mem = mem;
    this.descTable = new DataView(d.buffer, d.byteOffset, d.byteLength);
    this.availRing = new Uint16Array(a.buffer, a.byteOffset, 3 + n);
    this.usedHeader = new Uint16Array(u.buffer, u.byteOffset, 2);
    this.usedRing = new Uint32Array(u.buffer, u.byteOffset + 4, 2 * n);
    this.availEvent = new Uint16Array(u.buffer, u.byteOffset + 4 + 8 * n, 1);
  }

  /** Back to the power-on state (§2.4: the device forgets queues on reset). */
  reset(): void {
    this.size = this.maxSize;
    this.ready = false;
    this.desc = this.driver = this.device = 0;
    this.vector = VIRTIO_MSI_NO_VECTOR;
    this.eventIdx = this.indirect = false;
    this.lastAvail = this.usedIdx = this.signalledUsed = 0;
    this.signalledValid = false;
    this.inflight.clear();
    this.descTable = this.availRing = this.usedHeader = this.usedRing = this.availEvent = undefined;
    this.mem = undefined;
  }

  /**
   * The next available chain, or undefined when the ring is empty.
   * Malformed chains are returned to the driver unused on the way (see the
   * file comment). Throws VirtqueueError when the ring itself is broken.
   */
  pop(): Chain | undefined {
    const avail = this.availRing;
    if (!avail) return undefined;
    for (;;) {
      let idx = Atomics.load(avail, 1);
      if (idx === this.lastAvail) {
        if (!this.eventIdx) return undefined;
        // §2.7.10: ask for a notification at the next entry, then look
        // again in case the driver added one before it saw avail_event.
        Atomics.store(this.availEvent!, 0, this.lastAvail);
        idx = Atomics.load(avail, 1);
        if (idx === this.lastAvail) return undefined;
      }
      const pending = (idx - this.lastAvail) & 0xffff;
      if (pending > this.size) {
        throw new VirtqueueError(
          `queue ${this.index}: available index moved from ${this.lastAvail} to ${idx}, more than the ${this.size} entries`,
        );
      }
      const head = avail[2 + (this.lastAvail % this.size)]!;
      if (head >= this.size) {
        throw new VirtqueueError(
          `queue ${this.index}: head descriptor ${head} past the ${this.size}-entry table`,
        );
      }
      if (this.inflight.has(head)) {
        throw new VirtqueueError(`queue ${this.index}: head descriptor ${head} made available while in use`);
      }
      this.lastAvail = (this.lastAvail + 1) & 0xffff;
      const chain = this.parse(head);
      this.inflight.add(head);
      if (typeof chain === 'string') {
        this.onGuestError(`queue ${this.index}: chain at descriptor ${head} dropped: ${chain}`);
        this.push(head, 0);
        continue;
      }
      return chain;
    }
  }

  /**
   * Returns a chain to the driver with `written` bytes of its
   * device-writable part filled (§2.7.8). Does not interrupt: call
   * `needsInterrupt` after a batch.
   */
  push(head: number, written: number): void {
    this.pushMany([{ head, written }]);
  }

  /**
   * Returns several chains at once, published with one used-index update:
   * a driver reading the ring on another vCPU sees all or none of them (a
   * merged receive frame's buffers, §5.1.6.4).
   */
  pushMany(entries: readonly { head: number; written: number }[]): void {
    const ring = this.usedRing;
    if (!ring) return;
    let idx = this.usedIdx;
    for (const { head, written } of entries) {
      if (!this.inflight.delete(head)) continue; // reset meanwhile, or not ours
      const slot = idx % this.size;
      ring[2 * slot] = head;
      ring[2 * slot + 1] = written >>> 0;
      idx = (idx + 1) & 0xffff;
    }
    if (idx === this.usedIdx) return;
    this.usedIdx = idx;
    Atomics.store(this.usedHeader!, 1, idx);
  }

  /**
   * Whether the driver wants an interrupt for what was pushed since the
   * last call: by used_event with EVENT_IDX (§2.7.10), otherwise unless
   * VIRTQ_AVAIL_F_NO_INTERRUPT is set (§2.7.7).
   */
  needsInterrupt(): boolean {
    const avail = this.availRing;
    if (!avail) return false;
    if (!this.eventIdx) return (Atomics.load(avail, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    const old = this.signalledUsed;
    const now = this.usedIdx;
    const valid = this.signalledValid;
    this.signalledUsed = now;
    this.signalledValid = true;
    if (!valid) return true;
    const usedEvent = Atomics.load(avail, 2 + this.size);
    // vring_need_event: whether used_event lies in (old, now].
    return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
  }

  /** Whether the driver has made buffers available that were not popped yet. */
  hasAvailable(): boolean {
    const avail = this.availRing;
    return avail !== undefined && Atomics.load(avail, 1) !== this.lastAvail;
  }

  /** The chains in flight again, parsed afresh (after a state load), oldest first. */
  inflightChains(): Chain[] {
    const out: Chain[] = [];
    for (const head of [...this.inflight]) {
      const c = this.parse(head);
      if (typeof c === 'string') {
        this.onGuestError(`queue ${this.index}: in-flight chain at descriptor ${head} dropped: ${c}`);
        this.push(head, 0);
      } else out.push(c);
    }
    return out;
  }

  saveState(): VirtqueueState {
    return {
      size: this.size,
      ready: this.ready,
      desc: this.desc,
      driver: this.driver,
      device: this.device,
      vector: this.vector,
      lastAvail: this.lastAvail,
      usedIdx: this.usedIdx,
      signalledUsed: this.signalledUsed,
      signalledValid: this.signalledValid,
      inflight: [...this.inflight],
    };
  }

  /** Restores the fields; the transport then activates the queue if it was ready. Throws on a bad state. */
  loadState(s: VirtqueueState): void {
    const u16 = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff;
    const addr = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
    if (
      typeof s !== 'object' ||
      s === null ||
      !u16(s.size) ||
      s.size < 1 ||
      s.size > this.maxSize ||
      typeof s.ready !== 'boolean' ||
      !addr(s.desc) ||
      !addr(s.driver) ||
      !addr(s.device) ||
      !u16(s.vector) ||
      !u16(s.lastAvail) ||
      !u16(s.usedIdx) ||
      !u16(s.signalledUsed) ||
      typeof s.signalledValid !== 'boolean' ||
      !Array.isArray(s.inflight) ||
      !s.inflight.every((h) => Number.isInteger(h) && h >= 0 && h < s.size)
    ) {
      throw new RangeError(`queue ${this.index}: bad saved state`);
    }
    this.reset();
    this.size = s.size;
    this.ready = s.ready;
    this.desc = s.desc;
    this.driver = s.driver;
    this.device = s.device;
    this.vector = s.vector;
    this.lastAvail = s.lastAvail;
    this.usedIdx = s.usedIdx;
    this.signalledUsed = s.signalledUsed;
    this.signalledValid = s.signalledValid;
    for (const h of s.inflight) this.inflight.add(h);
  }

  // ---- chain parsing (§2.7.5) ---------------------------------------------

  private readDesc(table: DataView, i: number): RawDesc {
    const o = i * DESC_SIZE;
    const lo = table.getUint32(o, true);
    const hi = table.getUint32(o + 4, true);
    return {
      // Above 2^53 no guest has RAM: make it an address nothing resolves.
      addr: hi < 0x20_0000 ? hi * TWO32 + lo : -1,
      len: table.getUint32(o + 8, true),
      flags: table.getUint16(o + 12, true),
      next: table.getUint16(o + 14, true),
    };
  }

  /** The chain at `head`, or why it is malformed. */
  private parse(head: number): Chain | string {
    const mem = this.mem!;
    let table = this.descTable!;
    let entries = this.size;
    let inIndirect = false;
    let seen = 0;
    let total = 0;
    let i = head;
    const readable: Segment[] = [];
    const writable: Segment[] = [];
    for (;;) {
      if (i >= entries)
        return `descriptor index ${i} past the ${entries}-entry ${inIndirect ? 'indirect ' : ''}table`;
      // §2.7.5.3.1 / §2.7.4: no chain is longer than its table; more
      // descriptors than that means a loop.
      if (++seen > entries) return `more than ${entries} descriptors (a loop?)`;
      const d = this.readDesc(table, i);
      if (d.flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.indirect) return 'indirect descriptor without VIRTIO_F_INDIRECT_DESC';
        if (inIndirect) return 'indirect descriptor inside an indirect table';
        if (d.flags & VIRTQ_DESC_F_NEXT) return 'indirect descriptor with NEXT set';
        if (d.len === 0 || d.len % DESC_SIZE) return `indirect table of ${d.len} bytes`;
        const n = d.len / DESC_SIZE;
        if (n > VIRTQ_MAX_INDIRECT) return `indirect table of ${n} entries (at most ${VIRTQ_MAX_INDIRECT})`;
        const views = resolveGuest(mem, d.addr, d.len);
        if (!views) return `indirect table at 0x${d.addr.toString(16)} is not in guest RAM`;
        // A private copy: the guest cannot change the table under us.
        const copy = new Uint8Array(d.len);
        let at = 0;
        for (const v of views) {
          copy.set(v, at);
          at += v.length;
        }
        table = new DataView(copy.buffer);
        entries = n;
        inIndirect = true;
        seen = 0;
        i = 0;
        continue;
      }
      if (d.len === 0) return `zero-length buffer in descriptor ${i}`;
      total += d.len;
      if (total >= TWO32) return 'chain of 4 GiB or more';
      const seg: Segment = { addr: d.addr, len: d.len, views: resolveGuest(mem, d.addr, d.len) };
      if (d.flags & VIRTQ_DESC_F_WRITE) writable.push(seg);
      else if (writable.length) return `device-readable descriptor ${i} after a device-writable one`;
      else readable.push(seg);
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) break;
      i = d.next;
    }
    return new Chain(head, readable, writable);
  }
}
