/**
 * qcow2 metadata, the base class of Qcow2Image (qcow2-image.ts): the
 * image's state, the map of metadata clusters built at open, the L1 table
 * and L2 tables (lookups, edits and their ordered commit), the pool of
 * reserved clusters, deferred frees, zeroing clusters in their L2 tables,
 * and growing the disk. qcow2.ts describes the design and write ordering.
 */
import { type FileHandle } from 'node:fs/promises';
import { Mutex, RwLock } from './async-lock.js';
import { BlockError, type BlockImage } from './image.js';
import { preadFull, pwriteFull, toBlockError } from './io.js';
import {
  corrupt,
  decodeL1,
  decodeL2,
  encodeL1,
  encodeL2,
  HDR,
  writeU64,
  type L1Entry,
  type L2Entry,
  type Qcow2Header,
} from './qcow2-format.js';
import { Refcounts, type ClusterRange, type RefcountContext } from './qcow2-refcount.js';
import { TableCache } from './table-cache.js';

/** One change to an L2 table, open while the mutex is held. */
export interface TableEdit {
  l1i: number;
  /** The table's bytes: the cached table (pinned) or a new/copied one. */
  buf: Buffer;
  offset: number;
  /** A new or copied table: written whole, synced, then the L1 entry switched. */
  fresh: boolean;
  /** A shared table this edit copies; its reference is dropped on commit. */
  replaces?: number;
  /** New entries by index, applied to `buf` at commit (never earlier: the cached table must match the file). */
  changes: Map<number, [number, number]>;
}

/** Bytes of clusters reserved per refcount fdatasync. */
const RESERVE_BYTES = 4 << 20;
/** Pending frees that trigger applying them without waiting for a flush. */
const MAX_PENDING_FREES = 4096;

export abstract class Qcow2Tables {
  readonly metadata = new Set<number>();
  readonly clusterBits: number;
  protected readonly cs: number;
  protected readonly l2Entries: number;
  /** Guest bytes one L2 table maps. */
  protected readonly l2Span: number;
  protected _size: number;
  private l1: Buffer;
  private l1Offset: number;
  private readonly l1Corrupt = new Map<number, string>();
  protected readonly l2Cache: TableCache;
  protected readonly refcounts: Refcounts | null;
  protected fileBytes: number;
  /** Clusters reserved (refcount 1, synced) and not yet used: [next, end). */
  protected pool: [number, number] = [0, 0];
  private readonly reserveBatch: number;
  protected pendingFrees: ClusterRange[] = [];
  protected readonly meta = new Mutex();
  protected readonly rw = new RwLock();
  protected broken: string | undefined;
  protected closed = false;
  protected readonly compressedCache = new Map<string, Uint8Array>();

  protected constructor(
    readonly path: string,
    protected readonly fh: FileHandle,
    protected readonly header: Qcow2Header,
    fileSize: number,
    l1: Buffer,
    refcountTable: Buffer | null,
    protected readonly backing: BlockImage | null,
    readonly readOnly: boolean,
    private readonly noSync: boolean,
    l2CacheBytes: number,
  ) {
    this.clusterBits = header.clusterBits;
    this.cs = 2 ** header.clusterBits;
    this.l2Entries = this.cs / 8;
    this.l2Span = this.cs * this.l2Entries;
    this._size = header.size;
    this.l1 = l1;
    this.l1Offset = header.l1TableOffset;
    this.fileBytes = fileSize;
    this.l2Cache = new TableCache(Math.max(8, Math.floor(l2CacheBytes / this.cs)), (off) => this.loadL2(off));
    const ctx: RefcountContext = {
      fh,
      path,
      clusterBits: header.clusterBits,
      metadata: this.metadata,
      fileSize: () => this.fileBytes,
      write: (buf, pos) => this.fileWrite(buf, pos),
      datasync: () => this.datasync(),
      onFreed: (c) => this.l2Cache.delete(c * this.cs),
    };
    this.refcounts = refcountTable
      ? new Refcounts(
          ctx,
          header.refcountOrder,
          header.refcountTableOffset,
          header.refcountTableClusters,
          refcountTable,
          Math.max(8, Math.floor((256 << 10) / this.cs)),
        )
      : null;
    this.reserveBatch = Math.min(1024, Math.max(4, Math.floor(RESERVE_BYTES / this.cs)));
  }

  get size(): number {
    return this._size;
  }

  /** The header as read at open (tables may have moved since). */
  get headerInfo(): Readonly<Qcow2Header> {
    return this.header;
  }

  /**
   * Records every metadata cluster (header, L1, refcount table and blocks,
   * active L2 tables, snapshot table and snapshot L1 tables), so that a
   * data cluster pointing at one is caught instead of read or overwritten.
   */
  protected async loadMetadataMap(): Promise<void> {
    const { header: h, cs, path } = this;
    const addRange = (what: string, start: number, bytes: number) => {
      if (bytes <= 0) return;
      for (let c = Math.floor(start / cs); c <= Math.floor((start + bytes - 1) / cs); c++) {
        if (this.metadata.has(c)) throw corrupt(path, `${what} overlaps other metadata`);
        this.metadata.add(c);
      }
    };
    this.metadata.add(0);
    addRange('L1 table', h.l1TableOffset, h.l1Size * 8);
    addRange('refcount table', h.refcountTableOffset, h.refcountTableClusters * cs);
    if (h.nbSnapshots > 0) {
      let off = h.snapshotsOffset;
      const ent = Buffer.alloc(40);
      for (let i = 0; i < h.nbSnapshots; i++) {
        if (off + 40 > this.fileBytes || (await preadFull(this.fh, ent, off)) < 40) {
          throw corrupt(path, 'snapshot table lies beyond the end of the file');
        }
        const l1Off = ent.readUInt32BE(0) * 2 ** 32 + ent.readUInt32BE(4);
        const l1Size = ent.readUInt32BE(8);
        const len = 40 + ent.readUInt32BE(36) + ent.readUInt16BE(12) + ent.readUInt16BE(14);
        if (l1Off % cs !== 0 || l1Off + l1Size * 8 > this.fileBytes) {
          throw corrupt(path, `snapshot ${i}'s L1 table is unaligned or beyond the end of the file`);
        }
        addRange(`snapshot ${i}'s L1 table`, l1Off, l1Size * 8);
        off += Math.ceil(len / 8) * 8;
      }
      if (off > this.fileBytes) throw corrupt(path, 'snapshot table lies beyond the end of the file');
      addRange('snapshot table', h.snapshotsOffset, off - h.snapshotsOffset);
    }
    if (this.refcounts) this.refcounts.validate();
    for (let i = 0; i < h.l1Size; i++) {
      const e = decodeL1(this.l1.readUInt32BE(i * 8), this.l1.readUInt32BE(i * 8 + 4), this.clusterBits);
      if (e.corrupt) this.l1Corrupt.set(i, e.corrupt);
      else if (e.l2 === 0) continue;
      else if (e.l2 + cs > this.fileBytes)
        this.l1Corrupt.set(i, `L2 table ${i} lies beyond the end of the file`);
      else if (this.metadata.has(e.l2 / cs)) this.l1Corrupt.set(i, `L2 table ${i} overlaps other metadata`);
      else this.metadata.add(e.l2 / cs);
    }
  }

  // ---- File access -------------------------------------------------------

  protected async datasync(): Promise<void> {
    if (!this.noSync) await this.fh.datasync();
  }

  protected async fileWrite(buf: Uint8Array, pos: number): Promise<void> {
    await pwriteFull(this.fh, buf, pos);
    if (pos + buf.length > this.fileBytes) this.fileBytes = pos + buf.length;
  }

  protected async write8(pos: number, hi: number, lo: number): Promise<void> {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(hi >>> 0, 0);
    b.writeUInt32BE(lo >>> 0, 4);
    await this.fileWrite(b, pos);
  }

  // ---- Lookups -----------------------------------------------------------

  protected corruptError(why: string): BlockError {
    return corrupt(this.path, why);
  }

  protected l1Entry(i: number): L1Entry {
    if (i >= this.l1.length / 8) return { l2: 0, copied: false };
    const why = this.l1Corrupt.get(i);
    if (why) return { l2: 0, copied: false, corrupt: why };
    return decodeL1(this.l1.readUInt32BE(i * 8), this.l1.readUInt32BE(i * 8 + 4), this.clusterBits);
  }

  private async loadL2(off: number): Promise<Buffer> {
    if (off + this.cs > this.fileBytes)
      throw this.corruptError(`L2 table at 0x${off.toString(16)} lies beyond the end of the file`);
    const buf = Buffer.alloc(this.cs);
    try {
      if ((await preadFull(this.fh, buf, off)) < this.cs)
        throw this.corruptError(`L2 table at 0x${off.toString(16)} is truncated`);
    } catch (err) {
      throw toBlockError(err, `${this.path}: reading L2 table`);
    }
    return buf;
  }

  protected entryAt(table: Buffer | null, idx: number): L2Entry {
    if (!table) return { kind: 'unallocated' };
    return decodeL2(
      table.readUInt32BE(idx * 8),
      table.readUInt32BE(idx * 8 + 4),
      this.clusterBits,
      this.header.version,
    );
  }

  /** Why a data cluster at `host` cannot be used, or undefined if it can. */
  protected badHost(host: number): string | undefined {
    if (host >= this.fileBytes) return `data cluster 0x${host.toString(16)} lies beyond the end of the file`;
    if (this.metadata.has(Math.floor(host / this.cs)))
      return `data cluster 0x${host.toString(16)} overlaps metadata`;
    return undefined;
  }

  // ---- L2 table edits and cluster allocation ---------------------------

  /** Clusters reserved with their refcounts on disk; `k` contiguous ones. */
  protected async allocClusters(k: number): Promise<number> {
    if (this.pool[1] - this.pool[0] < k) {
      const rc = this.refcounts!;
      if (this.pool[1] > this.pool[0]) await rc.free(this.pool[0], this.pool[1] - this.pool[0]);
      this.pool = [0, 0];
      const n = Math.max(k, this.reserveBatch);
      const start = await rc.allocate(n);
      await this.datasync(); // refcounts before anything points at these clusters
      this.pool = [start, start + n];
    }
    const c = this.pool[0];
    this.pool[0] += k;
    return c;
  }

  /**
   * Makes L1 entry `l1i`'s table editable: the cached table (pinned), or a
   * new one (no table yet), or a copy (the table is shared with a snapshot).
   */
  protected async openEdit(l1i: number, l1e: L1Entry): Promise<TableEdit> {
    if (l1e.l2 !== 0 && l1e.copied) {
      return {
        l1i,
        buf: await this.l2Cache.acquire(l1e.l2),
        offset: l1e.l2,
        fresh: false,
        changes: new Map(),
      };
    }
    const buf = Buffer.alloc(this.cs);
    if (l1e.l2 !== 0) (await this.l2Cache.get(l1e.l2)).copy(buf);
    const offset = (await this.allocClusters(1)) * this.cs;
    return { l1i, buf, offset, fresh: true, replaces: l1e.l2 || undefined, changes: new Map() };
  }

  protected setEntry(edit: TableEdit, idx: number, entry: [number, number]): void {
    edit.changes.set(idx, entry);
  }

  /** Writes the edit out in order (see qcow2.ts) and releases it. */
  private async commitEdit(edit: TableEdit): Promise<void> {
    let lo = this.l2Entries;
    let hi = 0;
    for (const [idx, [h, l]] of edit.changes) {
      edit.buf.writeUInt32BE(h, idx * 8);
      edit.buf.writeUInt32BE(l, idx * 8 + 4);
      lo = Math.min(lo, idx);
      hi = Math.max(hi, idx + 1);
    }
    if (!edit.fresh) {
      // Readers may see the new entries now: the data they point to is written.
      try {
        if (lo < hi) await this.fileWrite(edit.buf.subarray(lo * 8, hi * 8), edit.offset + lo * 8);
      } finally {
        this.l2Cache.release(edit.offset);
      }
      return;
    }
    await this.fileWrite(edit.buf, edit.offset);
    await this.datasync(); // the table before the L1 entry that points to it
    this.metadata.add(edit.offset / this.cs);
    this.l2Cache.put(edit.offset, edit.buf);
    const [l1hi, l1lo] = encodeL1(edit.offset, true);
    await this.write8(this.l1Offset + edit.l1i * 8, l1hi, l1lo);
    this.l1.writeUInt32BE(l1hi, edit.l1i * 8);
    this.l1.writeUInt32BE(l1lo, edit.l1i * 8 + 4);
    if (edit.replaces) this.pendingFrees.push([edit.replaces / this.cs, edit.replaces / this.cs + 1]);
  }

  /** Gives up an edit before anything points to it (its new table cluster is freed later). */
  protected abortEdit(edit: TableEdit): void {
    if (edit.fresh) this.pendingFrees.push([edit.offset / this.cs, edit.offset / this.cs + 1]);
    else this.l2Cache.release(edit.offset);
  }

  /** The L1 entry, with a table whose refcount is 1 marked as ours (COPIED) so it is edited in place. */
  protected async ownL1(l1i: number): Promise<L1Entry> {
    const l1e = this.l1Entry(l1i);
    if (l1e.corrupt) throw this.corruptError(l1e.corrupt);
    if (l1e.l2 === 0 || l1e.copied) return l1e;
    const rc = await this.refcounts!.get(l1e.l2 / this.cs);
    if (rc === 0) throw this.corruptError(`L2 table ${l1i} has refcount 0`);
    if (rc > 1) return l1e;
    const [hi, lo] = encodeL1(l1e.l2, true);
    await this.write8(this.l1Offset + l1i * 8, hi, lo);
    this.l1.writeUInt32BE(hi, l1i * 8);
    this.l1.writeUInt32BE(lo, l1i * 8 + 4);
    return { l2: l1e.l2, copied: true };
  }

  /** Which clusters an old entry holds a reference to (freed when the entry is replaced). */
  protected heldClusters(e: L2Entry): ClusterRange | null {
    if ((e.kind === 'normal' || e.kind === 'zero') && e.host !== 0)
      return [e.host / this.cs, e.host / this.cs + 1];
    if (e.kind === 'compressed') {
      const start = e.host - (e.host % 512);
      return [Math.floor(start / this.cs), Math.floor((e.host + e.length - 1) / this.cs) + 1];
    }
    return null;
  }

  /** Commits an edit; a failure here leaves the image read-only (memory may be ahead of the file). */
  protected async commitMetadata(edit: TableEdit, frees: ClusterRange[]): Promise<void> {
    try {
      await this.commitEdit(edit);
    } catch (err) {
      const e = toBlockError(err, `${this.path}: updating metadata`);
      this.broken = e.message;
      throw e;
    }
    this.pendingFrees.push(...frees);
  }

  // ---- Zeroing clusters (discard and write-zeroes) ---------------------

  /** Guest clusters [c0, c1) fully inside [offset, offset+length) (the disk's last cluster counts if the range reaches the end). */
  protected fullClusters(offset: number, length: number): [number, number] {
    const end = offset + length;
    const c0 = Math.ceil(offset / this.cs);
    const c1 = end === this._size ? Math.ceil(end / this.cs) : Math.floor(end / this.cs);
    return [c0, Math.max(c0, c1)];
  }

  protected async zeroClusters(c0: number, c1: number, op: 'discard' | 'zero' | 'unmap'): Promise<void> {
    for (let c = c0; c < c1;) {
      const next = Math.min(c1, (Math.floor(c / this.l2Entries) + 1) * this.l2Entries);
      const from = c;
      await this.meta.run(() => this.zeroSpanLocked(from, next, op));
      c = next;
    }
  }

  /**
   * Marks guest clusters [c0, c1) (inside one L2 table) as reading zeroes:
   * v3 zero flag when a backing file would show through, else unallocated;
   * 'zero' (no unmap) keeps a cluster's allocation under the zero flag.
   */
  private async zeroSpanLocked(c0: number, c1: number, op: 'discard' | 'zero' | 'unmap'): Promise<void> {
    this.checkWritable();
    const l1i = Math.floor(c0 / this.l2Entries);
    const l1e = await this.ownL1(l1i);
    const shared = l1e.l2 !== 0 && !l1e.copied;
    const table = l1e.l2 !== 0 ? await this.l2Cache.get(l1e.l2) : null;
    const v3 = this.header.version === 3;
    const changes: Array<{ idx: number; entry: [number, number]; held: ClusterRange | null }> = [];
    for (let gc = c0; gc < c1; gc++) {
      const idx = gc % this.l2Entries;
      const e = this.entryAt(table, idx);
      if (e.kind === 'corrupt') throw this.corruptError(e.why);
      if (
        op === 'zero' &&
        v3 &&
        (e.kind === 'normal' || e.kind === 'zero') &&
        e.host !== 0 &&
        e.copied &&
        !shared
      ) {
        // Keep the allocation (preallocated zero cluster).
        if (e.kind === 'zero') continue;
        changes.push({ idx, entry: encodeL2(e.host, true, true), held: null });
        continue;
      }
      const wantZeroFlag = v3 && this.backing !== null;
      if (wantZeroFlag ? e.kind === 'zero' && e.host === 0 : e.kind === 'unallocated') continue;
      changes.push({
        idx,
        entry: wantZeroFlag ? encodeL2(0, false, true) : [0, 0],
        held: this.heldClusters(e),
      });
    }
    if (changes.length === 0) return;
    const edit = await this.openEdit(l1i, l1e);
    for (const ch of changes) this.setEntry(edit, ch.idx, ch.entry);
    await this.commitMetadata(
      edit,
      changes.flatMap((ch) => (ch.held ? [ch.held] : [])),
    );
  }

  // ---- Frees, resize, checks ---------------------------------------------

  protected async maybeApplyFrees(): Promise<void> {
    if (this.pendingFrees.length >= MAX_PENDING_FREES) await this.rw.exclusive(() => this.applyFrees());
  }

  /** Lowers the refcounts of dropped clusters, once the entries that dropped them are on disk. */
  protected async applyFrees(): Promise<void> {
    if (this.pendingFrees.length === 0 || this.broken) return;
    await this.datasync();
    const frees = this.pendingFrees;
    this.pendingFrees = [];
    this.compressedCache.clear();
    try {
      for (const [s, e] of frees) await this.refcounts!.free(s, e - s);
    } catch (err) {
      const e = toBlockError(err, `${this.path}: freeing clusters`);
      this.broken = e.message;
      throw e;
    }
  }

  /** Grows the virtual disk to `newSize` bytes (a multiple of 512), growing the L1 table if needed. */
  async grow(newSize: number): Promise<void> {
    this.checkWritable();
    if (!Number.isSafeInteger(newSize) || newSize % 512 !== 0) {
      throw new BlockError(`${this.path}: new size ${newSize} is not a multiple of 512`, 'EINVAL');
    }
    if (newSize < this._size) throw new BlockError(`${this.path}: shrinking is not supported`, 'EINVAL');
    await this.rw.exclusive(() =>
      this.meta.run(async () => {
        const needL1 = Math.ceil(newSize / this.l2Span);
        const oldEntries = this.l1.length / 8;
        if (needL1 > oldEntries) await this.growL1(needL1);
        const b = Buffer.alloc(8);
        writeU64(b, 0, newSize);
        await this.fileWrite(b, HDR.size);
        await this.datasync();
        this._size = newSize;
      }),
    );
  }

  private async growL1(entries: number): Promise<void> {
    const cs = this.cs;
    if (entries * 8 > 32 * 1024 * 1024)
      throw new BlockError(`${this.path}: L1 table would exceed 32 MiB`, 'EINVAL');
    const oldEntries = this.l1.length / 8;
    const oldClusters = Math.ceil((oldEntries * 8) / cs);
    const newClusters = Math.ceil((entries * 8) / cs);
    const l1 = Buffer.alloc(entries * 8);
    this.l1.copy(l1);
    const hdr = Buffer.alloc(12);
    hdr.writeUInt32BE(entries, 0);
    if (oldEntries > 0 && newClusters <= oldClusters) {
      // The new entries fit in the table's clusters: zero them, then raise l1_size.
      await this.fileWrite(l1.subarray(oldEntries * 8), this.l1Offset + oldEntries * 8);
      await this.datasync();
      writeU64(hdr, 4, this.l1Offset);
      await this.fileWrite(hdr, HDR.l1Size);
      await this.datasync();
      this.l1 = l1;
      return;
    }
    const start = await this.refcounts!.allocate(newClusters);
    await this.datasync();
    await this.fileWrite(Buffer.concat([l1, Buffer.alloc(newClusters * cs - l1.length)]), start * cs);
    await this.datasync();
    writeU64(hdr, 4, start * cs);
    await this.fileWrite(hdr, HDR.l1Size); // l1_size and l1_table_offset are adjacent: one write
    await this.datasync();
    const oldOffset = this.l1Offset;
    this.l1 = l1;
    this.l1Offset = start * cs;
    for (let c = start; c < start + newClusters; c++) this.metadata.add(c);
    if (oldClusters > 0) await this.refcounts!.free(oldOffset / cs, oldClusters);
  }

  protected checkOpen(): void {
    if (this.closed) throw new BlockError(`${this.path}: image is closed`, 'EIO');
  }

  protected checkWritable(): void {
    this.checkOpen();
    if (this.readOnly) throw new BlockError(`${this.path}: image is read-only`, 'EROFS');
    if (this.broken)
      throw new BlockError(`${this.path}: writes disabled after a metadata error: ${this.broken}`, 'EIO');
  }
}
