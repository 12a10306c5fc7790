/**
 * qcow2 host cluster management: the two-level refcount structure
 * (refcount table → refcount blocks, qcow2.txt "Host cluster management"),
 * free-space search, cluster allocation with new refcount blocks and
 * refcount table growth, and freeing.
 *
 * Crash safety: a refcount is always raised before anything points to the
 * cluster, and lowered only after nothing does, so a crash at any point
 * leaves refcounts at worst too high (leaked clusters), never too low (a
 * cluster used twice). New refcount blocks and a grown refcount table are
 * written and fdatasync'ed before the table entry or header field that
 * makes them live. Callers that point L2/L1 entries at freshly allocated
 * clusters must fdatasync after `allocate` first (Qcow2Image reserves
 * clusters in batches so that this costs one fdatasync per batch).
 *
 * Every refcount width (refcount_order 0..6) is handled; values past 2^53
 * are rejected as corrupt. Callers serialise all calls (one async mutex).
 */
import type { FileHandle } from 'node:fs/promises';
import { BlockError } from './image.js';
import { corrupt, HDR, MAX_REFTABLE_BYTES, writeU64 } from './qcow2-format.js';
import { TableCache } from './table-cache.js';

/** A half-open range of cluster indices [start, end). */
export type ClusterRange = readonly [number, number];

export interface RefcountContext {
  readonly fh: FileHandle;
  readonly path: string;
  readonly clusterBits: number;
  /** Cluster indices holding metadata (kept up to date here for refcount structures). */
  readonly metadata: Set<number>;
  /** Current file size (grows as clusters are written). */
  fileSize(): number;
  /** pwrite that keeps the tracked file size. */
  write(buf: Uint8Array, pos: number): Promise<void>;
  datasync(): Promise<void>;
  /** A cluster's refcount dropped to zero. */
  onFreed(cluster: number): void;
}

const TWO32 = 2 ** 32;

function inRanges(c: number, ranges: readonly ClusterRange[]): ClusterRange | undefined {
  return ranges.find(([s, e]) => c >= s && c < e);
}

export class Refcounts {
  readonly bits: number;
  /** Refcount entries per block. */
  readonly perBlock: number;
  readonly max: number;
  private readonly cs: number;
  private readonly cache: TableCache;
  /** Refcount block byte offsets, 0 for none. */
  private table: number[];
  /** No cluster below this index is free. */
  private freeHint = 0;

  constructor(
    private readonly ctx: RefcountContext,
    refcountOrder: number,
    public tableOffset: number,
    public tableClusters: number,
    tableBuf: Buffer,
    cacheTables: number,
  ) {
    this.cs = 2 ** ctx.clusterBits;
    this.bits = 2 ** refcountOrder;
    this.perBlock = (this.cs * 8) / this.bits;
    this.max = this.bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
    this.table = [];
    for (let i = 0; i < tableBuf.length / 8; i++) {
      const hi = tableBuf.readUInt32BE(i * 8);
      const lo = tableBuf.readUInt32BE(i * 8 + 4);
      // Malformed entries are caught by validate() before any write; a read-only image never looks.
      this.table.push(lo & 0x1ff || hi >= 0x00200000 ? -1 : hi * TWO32 + lo);
    }
    this.cache = new TableCache(cacheTables, (off) => this.loadBlock(off));
  }

  /**
   * Checks every refcount block pointer (cluster-aligned, inside the file,
   * not on other metadata, not shared) and records the blocks as metadata.
   */
  validate(): void {
    const { path, metadata } = this.ctx;
    const fileSize = this.ctx.fileSize();
    this.table.forEach((off, i) => {
      if (off === 0) return;
      if (off < 0 || off % this.cs !== 0)
        throw corrupt(path, `refcount table entry ${i} is malformed or unaligned`);
      if (off + this.cs > fileSize)
        throw corrupt(path, `refcount block ${i} lies beyond the end of the file`);
      const c = off / this.cs;
      if (metadata.has(c)) throw corrupt(path, `refcount block ${i} overlaps other metadata`);
      metadata.add(c);
    });
  }

  /** Byte offsets of the refcount blocks (0: none). */
  blockOffsets(): readonly number[] {
    return this.table;
  }

  private async loadBlock(off: number): Promise<Buffer> {
    if (off <= 0 || off % this.cs !== 0 || off + this.cs > this.ctx.fileSize()) {
      throw corrupt(
        this.ctx.path,
        `refcount block at 0x${off.toString(16)} is outside the file or unaligned`,
      );
    }
    const buf = Buffer.alloc(this.cs);
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await this.ctx.fh.read(buf, done, buf.length - done, off + done);
      if (bytesRead === 0)
        throw corrupt(this.ctx.path, `refcount block at 0x${off.toString(16)} is truncated`);
      done += bytesRead;
    }
    return buf;
  }

  private readEntry(b: Buffer, i: number): number {
    switch (this.bits) {
      case 8:
        return b[i]!;
      case 16:
        return b.readUInt16BE(i * 2);
      case 32:
        return b.readUInt32BE(i * 4);
      case 64: {
        const hi = b.readUInt32BE(i * 8);
        if (hi >= 0x00200000) throw corrupt(this.ctx.path, 'refcount beyond 2^53');
        return hi * TWO32 + b.readUInt32BE(i * 8 + 4);
      }
      default: {
        // 1, 2 or 4 bits: bit 0 of an entry is its least significant bit.
        const bit = i * this.bits;
        return (b[bit >> 3]! >> (bit & 7)) & this.max;
      }
    }
  }

  private writeEntry(b: Buffer, i: number, v: number): void {
    switch (this.bits) {
      case 8:
        b[i] = v;
        return;
      case 16:
        b.writeUInt16BE(v, i * 2);
        return;
      case 32:
        b.writeUInt32BE(v, i * 4);
        return;
      case 64:
        b.writeUInt32BE(Math.floor(v / TWO32), i * 8);
        b.writeUInt32BE(v % TWO32, i * 8 + 4);
        return;
      default: {
        const bit = i * this.bits;
        const shift = bit & 7;
        b[bit >> 3] = (b[bit >> 3]! & ~(this.max << shift)) | (v << shift);
      }
    }
  }

  /** Byte range [start, end) of entries [i0, i1) inside a block. */
  private byteRange(i0: number, i1: number): [number, number] {
    return [Math.floor((i0 * this.bits) / 8), Math.ceil((i1 * this.bits) / 8)];
  }

  private blockOffset(t: number): number {
    const off = t < this.table.length ? this.table[t]! : 0;
    if (off < 0) throw corrupt(this.ctx.path, `refcount table entry ${t} is malformed`);
    return off;
  }

  async get(cluster: number): Promise<number> {
    const off = this.blockOffset(Math.floor(cluster / this.perBlock));
    if (off === 0) return 0;
    return this.readEntry(await this.cache.get(off), cluster % this.perBlock);
  }

  /**
   * First run of `n` free clusters at or after the free hint, skipping the
   * `exclude` ranges (clusters being allocated right now). Clusters past
   * the refcount table or in a missing refcount block are free.
   */
  async findFree(n: number, exclude: readonly ClusterRange[] = []): Promise<number> {
    let c = this.freeHint;
    let start = c;
    let run = 0;
    let firstFree = -1;
    for (;;) {
      const ex = inRanges(c, exclude);
      if (ex) {
        if (firstFree < 0) firstFree = c;
        c = ex[1];
        start = c;
        run = 0;
        continue;
      }
      const t = Math.floor(c / this.perBlock);
      const blockEnd = (t + 1) * this.perBlock;
      const off = this.blockOffset(t);
      if (off === 0) {
        // All free up to the block's end or the next excluded range.
        let end = blockEnd;
        for (const [s] of exclude) if (s > c && s < end) end = s;
        if (firstFree < 0) firstFree = c;
        if (run + (end - c) >= n) break;
        run += end - c;
        c = end;
        continue;
      }
      const block = await this.cache.get(off);
      for (; c < blockEnd; c++) {
        if (inRanges(c, exclude)) break;
        if (this.readEntry(block, c % this.perBlock) === 0) {
          if (firstFree < 0) firstFree = c;
          if (++run >= n) {
            this.freeHint = Math.max(this.freeHint, firstFree);
            return start;
          }
        } else {
          run = 0;
          start = c + 1;
        }
      }
    }
    this.freeHint = Math.max(this.freeHint, firstFree);
    return start;
  }

  /** Allocates `n` contiguous clusters (refcount 0 → 1); returns the first cluster index. */
  async allocate(n: number, exclude: readonly ClusterRange[] = []): Promise<number> {
    const start = await this.findFree(n, exclude);
    await this.update(start, n, +1, [...exclude, [start, start + n]], true);
    return start;
  }

  /** Lowers the refcounts of [cluster, cluster+count) by one (frees clusters that reach zero). */
  async free(cluster: number, count: number): Promise<void> {
    await this.update(cluster, count, -1, []);
  }

  /**
   * Adds `delta` to the refcounts of [cluster, cluster+count), creating
   * refcount blocks (and growing the table) on the way; `exclude` names the
   * clusters that must not be used for a new block. With `expectFree`,
   * every old refcount must be 0 (an allocation).
   */
  async update(
    cluster: number,
    count: number,
    delta: number,
    exclude: readonly ClusterRange[],
    expectFree = false,
  ): Promise<void> {
    const end = cluster + count;
    let c = cluster;
    while (c < end) {
      const t = Math.floor(c / this.perBlock);
      const i0 = c % this.perBlock;
      const i1 = Math.min(end, (t + 1) * this.perBlock) - t * this.perBlock;
      if (this.blockOffset(t) === 0) {
        if (delta < 0) throw corrupt(this.ctx.path, `freeing cluster ${c}, which has no refcount block`);
        await this.ensureBlock(t, exclude);
      }
      const off = this.blockOffset(t);
      const block = await this.cache.acquire(off);
      try {
        for (let i = i0; i < i1; i++) {
          const v = this.readEntry(block, i) + delta;
          if (v < 0)
            throw corrupt(this.ctx.path, `refcount of cluster ${t * this.perBlock + i} would drop below 0`);
          if (v > this.max)
            throw new BlockError(
              `${this.ctx.path}: refcount overflow at cluster ${t * this.perBlock + i}`,
              'EIO',
            );
          if (expectFree && v !== delta) {
            throw corrupt(this.ctx.path, `cluster ${t * this.perBlock + i} is in use but was found free`);
          }
        }
        for (let i = i0; i < i1; i++) this.writeEntry(block, i, this.readEntry(block, i) + delta);
        const [b0, b1] = this.byteRange(i0, i1);
        await this.ctx.write(block.subarray(b0, b1), off + b0);
      } finally {
        this.cache.release(off);
      }
      if (delta < 0) {
        for (let i = i0; i < i1; i++) {
          if (this.readEntry(block, i) !== 0) continue;
          const freed = t * this.perBlock + i;
          this.freeHint = Math.min(this.freeHint, freed);
          this.ctx.metadata.delete(freed);
          this.ctx.onFreed(freed);
        }
      }
      c = t * this.perBlock + i1;
    }
  }

  /**
   * Creates refcount block `t`. The block is placed inside the range it
   * describes when it can be (so it counts itself), else anywhere free. It
   * is written and synced before the table entry that makes it live.
   */
  private async ensureBlock(t: number, exclude: readonly ClusterRange[]): Promise<void> {
    if (t >= this.table.length) await this.growTable(t + 1, exclude);
    if (this.blockOffset(t) !== 0) return; // the grown table brought it
    const lo = t * this.perBlock;
    const hi = lo + this.perBlock;
    let b = lo;
    for (let ex = inRanges(b, exclude); ex && b < hi; ex = inRanges(b, exclude)) b = ex[1];
    const buf = Buffer.alloc(this.cs);
    if (b < hi) {
      this.writeEntry(buf, b - lo, 1);
    } else {
      // Every cluster of this block's range is being allocated: put the block elsewhere.
      b = await this.allocate(1, exclude);
    }
    await this.ctx.write(buf, b * this.cs);
    await this.ctx.datasync();
    const entry = Buffer.alloc(8);
    writeU64(entry, 0, b * this.cs);
    await this.ctx.write(entry, this.tableOffset + t * 8);
    this.table[t] = b * this.cs;
    this.ctx.metadata.add(b);
    this.cache.put(b * this.cs, buf);
  }

  /**
   * Replaces the refcount table by a larger one (at least `minEntries`),
   * with the refcount blocks needed to describe the new table itself, all
   * in fresh clusters: blocks and table are written and synced, then the
   * header points to them (one 12-byte write), then the old table is freed.
   */
  private async growTable(minEntries: number, exclude: readonly ClusterRange[]): Promise<void> {
    const cs = this.cs;
    const entries = Math.max(minEntries, Math.ceil(this.table.length * 1.5));
    const newClusters = Math.ceil((entries * 8) / cs);
    if (newClusters * cs > MAX_REFTABLE_BYTES) {
      throw new BlockError(
        `${this.ctx.path}: the refcount table cannot grow past ${MAX_REFTABLE_BYTES} bytes`,
        'ENOSPC',
      );
    }
    const newEntries = (newClusters * cs) / 8;
    // Place the table (and after it, the new blocks it needs) in one free run.
    let spare = 0;
    let start = 0;
    let needed: number[] = [];
    for (let iter = 0; ; iter++) {
      start = await this.findFree(newClusters + spare, exclude);
      const first = Math.floor(start / this.perBlock);
      const last = Math.floor((start + newClusters + spare - 1) / this.perBlock);
      needed = [];
      for (let t = first; t <= last; t++) if (this.blockOffset(t) === 0) needed.push(t);
      if (needed.length <= spare) break;
      if (iter > 8) throw new BlockError(`${this.ctx.path}: cannot place a grown refcount table`, 'EIO');
      spare = needed.length;
    }
    if (needed.some((t) => t >= newEntries)) {
      throw new BlockError(`${this.ctx.path}: grown refcount table cannot describe itself`, 'EIO');
    }
    const newTable = [...this.table];
    while (newTable.length < newEntries) newTable.push(0);
    const blocks = new Map<number, { cluster: number; buf: Buffer }>();
    needed.forEach((t, i) => {
      const cluster = start + newClusters + i;
      blocks.set(t, { cluster, buf: Buffer.alloc(cs) });
      newTable[t] = cluster * cs;
    });
    // Refcount 1 for the new table and blocks: in the new blocks, or in existing ones.
    const used: ClusterRange = [start, start + newClusters + needed.length];
    const inExisting: number[] = [];
    for (let c = used[0]; c < used[1]; c++) {
      const nb = blocks.get(Math.floor(c / this.perBlock));
      if (nb) this.writeEntry(nb.buf, c % this.perBlock, 1);
      else inExisting.push(c);
    }
    for (const c of inExisting) await this.update(c, 1, +1, [...exclude, used], true);
    for (const { cluster, buf } of blocks.values()) await this.ctx.write(buf, cluster * cs);
    const tableBuf = Buffer.alloc(newClusters * cs);
    newTable.forEach((off, i) => writeU64(tableBuf, i * 8, Math.max(off, 0)));
    await this.ctx.write(tableBuf, start * cs);
    await this.ctx.datasync();
    const hdr = Buffer.alloc(12);
    writeU64(hdr, 0, start * cs);
    hdr.writeUInt32BE(newClusters, 8);
    await this.ctx.write(hdr, HDR.refcountTableOffset);
    await this.ctx.datasync();

    const oldStart = this.tableOffset / cs;
    const oldClusters = this.tableClusters;
    this.table = newTable;
    this.tableOffset = start * cs;
    this.tableClusters = newClusters;
    for (let c = start; c < start + newClusters; c++) this.ctx.metadata.add(c);
    for (const { cluster, buf } of blocks.values()) {
      this.ctx.metadata.add(cluster);
      this.cache.put(cluster * cs, buf);
    }
    await this.free(oldStart, oldClusters);
  }
}
