/**
 * qcow2 images, versions 2 and 3 (QEMU docs/interop/qcow2.txt).
 *
 * Library search: npm has no maintained package that reads and writes
 * qcow2 with refcounts (the registry offers raw-file helpers such as
 * `file-disk` and a QEMU front-end or two, nothing that parses qcow2
 * metadata), so the format is implemented here, from the specification.
 *
 * What is supported: reading and writing v2/v3 images with any refcount
 * width; zero clusters (v3); compressed clusters (zlib, read; a write to
 * one allocates a normal cluster); backing files (unallocated clusters read
 * through, partial writes copy the rest of the cluster up); images with
 * internal snapshots (shared L2 tables and data clusters are copied on
 * write; snapshots themselves cannot be created or applied here).
 * Refused at open: encryption, external data files, extended L2 entries,
 * non-zlib compression, any unknown incompatible feature; opening for
 * writing an image marked dirty (lazy refcounts) or corrupt.
 *
 * Design:
 * - The L1 table stays in memory; L2 tables and refcount blocks sit in
 *   write-through LRU caches (table-cache.ts). Reads never take the
 *   metadata mutex.
 * - Concurrency: every request holds a shared RwLock; anything that changes
 *   metadata (allocation, COW, discard, zeroing) runs under one async
 *   mutex and re-reads the entries it acts on. Freed clusters are not
 *   reused at once: their refcounts are lowered later under the exclusive
 *   lock (at flush, close, or when many are pending), so no in-flight read
 *   or write can still be using a cluster when it is handed out again.
 * - Write ordering (each step is a completed pwrite before the next
 *   starts, so after kill -9 the kernel has them in this order):
 *     1. refcount increments for new clusters, then fdatasync: clusters are
 *        reserved in batches (`reserveBatch`), so this costs one fdatasync
 *        per batch, not per write;
 *     2. guest data (with the copied-up head/tail of partial clusters);
 *     3. the L2 entries (an existing table: just the changed entries); a
 *        new or copied L2 table is written whole, fdatasync, then
 *     4. the L1 entry.
 *   Freeing runs the other way: the L2/L1 entry is rewritten first, and
 *   the refcount is lowered only after a later fdatasync. A crash (or
 *   power loss) at any point therefore leaves at worst leaked clusters
 *   (`qemu-img check` reports leaks, never corruption; `-r leaks` fixes
 *   them). Data written since the guest's last flush may be lost on power
 *   loss, as with a disk's volatile cache.
 * - Corruption (tables outside the file or unaligned, metadata overlaps,
 *   bad entries) is a BlockError at open where the structure is global
 *   (header, L1, refcount table), and EIO for the request that meets it
 *   otherwise (one bad L2 entry fails the reads of its cluster only). A
 *   metadata write that fails half-way leaves the image read-only in
 *   memory rather than risk writing on inconsistent state.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { promisify } from 'node:util';
import { constants as zconst, inflateRaw } from 'node:zlib';
import { Mutex, RwLock } from './async-lock.js';
import { BlockError, type BlockImage, type ImageFormat } from './image.js';
import { checkRange, preadFull, pwriteFull, toBlockError, ZEROES } from './io.js';
import { lockImage } from './lock.js';
import {
  corrupt,
  decodeL1,
  decodeL2,
  encodeL1,
  encodeL2,
  HDR,
  HEADER_PROBE,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  parseHeader,
  probeClusterBits,
  writeU64,
  type L1Entry,
  type L2Entry,
  type Qcow2Header,
} from './qcow2-format.js';
import { Refcounts, type ClusterRange, type RefcountContext } from './qcow2-refcount.js';
import { TableCache } from './table-cache.js';

const inflateRawAsync = promisify(inflateRaw);

export interface Qcow2OpenOptions {
  readOnly?: boolean;
  /** Take the flock(2) image lock (default true). */
  lock?: boolean;
  /**
   * Opens the backing file named in the header (`path` already resolved
   * against the image's directory; `format` from the header extension, or
   * undefined to detect). open.ts supplies this with the chain checks. An
   * image with a backing file and no opener fails to open.
   */
  openBacking?: (path: string, format: ImageFormat | undefined) => Promise<BlockImage>;
  /** Bytes of L2 tables to cache (default 1 MiB). */
  l2CacheBytes?: number;
  /**
   * Skip every fdatasync (a throwaway overlay, as QEMU's -snapshot uses
   * cache=unsafe): crash safety no longer matters for this file.
   */
  noSync?: boolean;
}

/** One change to an L2 table, open while the mutex is held. */
interface TableEdit {
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

type WritePlan =
  | { kind: 'inplace'; host: number }
  | { kind: 'fixcopied'; host: number }
  | { kind: 'reuse'; host: number }
  | { kind: 'alloc'; old: L2Entry };

const DEFAULT_L2_CACHE = 1 << 20;
/** Bytes of clusters reserved per refcount fdatasync. */
const RESERVE_BYTES = 4 << 20;
/** Pending frees that trigger applying them without waiting for a flush. */
const MAX_PENDING_FREES = 4096;

export class Qcow2Image implements BlockImage {
  readonly format = 'qcow2' as const;
  readonly metadata = new Set<number>();
  readonly clusterBits: number;
  private readonly cs: number;
  private readonly l2Entries: number;
  /** Guest bytes one L2 table maps. */
  private readonly l2Span: number;
  private _size: number;
  private l1: Buffer;
  private l1Offset: number;
  private readonly l1Corrupt = new Map<number, string>();
  private readonly l2Cache: TableCache;
  private readonly refcounts: Refcounts | null;
  private fileBytes: number;
  /** Clusters reserved (refcount 1, synced) and not yet used: [next, end). */
  private pool: [number, number] = [0, 0];
  private readonly reserveBatch: number;
  private pendingFrees: ClusterRange[] = [];
  private readonly meta = new Mutex();
  private readonly rw = new RwLock();
  private broken: string | undefined;
  private closed = false;
  private readonly compressedCache = new Map<string, Uint8Array>();

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly header: Qcow2Header,
    fileSize: number,
    l1: Buffer,
    refcountTable: Buffer | null,
    private readonly backing: BlockImage | null,
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

  static async open(path: string, opts: Qcow2OpenOptions = {}): Promise<Qcow2Image> {
    const abs = resolve(path);
    const readOnly = opts.readOnly ?? false;
    let fh: FileHandle;
    try {
      fh = await open(abs, readOnly ? 'r' : 'r+');
    } catch (err) {
      throw toBlockError(err, `cannot open ${abs}`);
    }
    let backing: BlockImage | null = null;
    try {
      if (opts.lock ?? true) await lockImage(fh, abs, readOnly ? 'shared' : 'exclusive');
      const st = await fh.stat();
      if (!st.isFile()) throw new BlockError(`${abs}: not a regular file`, 'EINVAL');
      const fileSize = st.size;
      const probe = Buffer.alloc(Math.min(HEADER_PROBE, fileSize));
      await preadFull(fh, probe, 0);
      const cs = 2 ** probeClusterBits(probe, abs);
      const first = Buffer.alloc(Math.min(cs, fileSize));
      await preadFull(fh, first, 0);
      const header = parseHeader(first, fileSize, abs);
      if (!readOnly && header.incompatibleFeatures & INCOMPAT_DIRTY) {
        throw new BlockError(
          `${abs}: the image is marked dirty (lazy refcounts were in use); run 'qemu-img check -r all' before writing to it`,
          'EINVAL',
        );
      }
      if (!readOnly && header.incompatibleFeatures & INCOMPAT_CORRUPT) {
        throw new BlockError(
          `${abs}: the image is marked corrupt; it can only be opened read-only`,
          'EINVAL',
        );
      }
      const l1 = Buffer.alloc(header.l1Size * 8);
      await preadFull(fh, l1, header.l1TableOffset);
      let refcountTable: Buffer | null = null;
      if (!readOnly) {
        refcountTable = Buffer.alloc(header.refcountTableClusters * cs);
        await preadFull(fh, refcountTable, header.refcountTableOffset);
      }
      if (header.backingFile !== undefined) {
        if (!opts.openBacking)
          throw new BlockError(`${abs}: has a backing file and no way to open it`, 'EINVAL');
        const name = header.backingFile;
        if (/^[a-z][a-z0-9+.-]*:/i.test(name) && !isAbsolute(name)) {
          throw new BlockError(
            `${abs}: backing file '${name}' uses a protocol (only plain files are supported)`,
            'EINVAL',
          );
        }
        const fmt = header.backingFormat;
        if (fmt !== undefined && fmt !== 'raw' && fmt !== 'qcow2') {
          throw new BlockError(
            `${abs}: backing file format '${fmt}' is not supported (raw, qcow2)`,
            'EINVAL',
          );
        }
        backing = await opts.openBacking(resolve(dirname(abs), name), fmt);
      }
      const img = new Qcow2Image(
        abs,
        fh,
        header,
        fileSize,
        l1,
        refcountTable,
        backing,
        readOnly,
        opts.noSync ?? false,
        opts.l2CacheBytes ?? DEFAULT_L2_CACHE,
      );
      await img.loadMetadataMap();
      if (!readOnly && header.version === 3 && header.autoclearFeatures !== 0n) {
        // We do not maintain bitmaps (or any auto-clear feature): clear the bits before writing.
        await img.write8(HDR.autoclearFeatures, 0, 0);
        await img.datasync();
      }
      return img;
    } catch (err) {
      await backing?.close().catch(() => {});
      await fh.close().catch(() => {});
      throw toBlockError(err, `cannot open ${abs}`);
    }
  }

  /**
   * Records every metadata cluster (header, L1, refcount table and blocks,
   * active L2 tables, snapshot table and snapshot L1 tables), so that a
   * data cluster pointing at one is caught instead of read or overwritten.
   */
  private async loadMetadataMap(): Promise<void> {
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

  private async datasync(): Promise<void> {
    if (!this.noSync) await this.fh.datasync();
  }

  private async fileWrite(buf: Uint8Array, pos: number): Promise<void> {
    await pwriteFull(this.fh, buf, pos);
    if (pos + buf.length > this.fileBytes) this.fileBytes = pos + buf.length;
  }

  private async write8(pos: number, hi: number, lo: number): Promise<void> {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(hi >>> 0, 0);
    b.writeUInt32BE(lo >>> 0, 4);
    await this.fileWrite(b, pos);
  }

  // ---- Lookups -----------------------------------------------------------

  private corruptError(why: string): BlockError {
    return corrupt(this.path, why);
  }

  private l1Entry(i: number): L1Entry {
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

  private entryAt(table: Buffer | null, idx: number): L2Entry {
    if (!table) return { kind: 'unallocated' };
    return decodeL2(
      table.readUInt32BE(idx * 8),
      table.readUInt32BE(idx * 8 + 4),
      this.clusterBits,
      this.header.version,
    );
  }

  /** Why a data cluster at `host` cannot be used, or undefined if it can. */
  private badHost(host: number): string | undefined {
    if (host >= this.fileBytes) return `data cluster 0x${host.toString(16)} lies beyond the end of the file`;
    if (this.metadata.has(Math.floor(host / this.cs)))
      return `data cluster 0x${host.toString(16)} overlaps metadata`;
    return undefined;
  }

  // ---- Reads -------------------------------------------------------------

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.checkOpen();
    checkRange(offset, length, this._size);
    const buf = into ? into.subarray(0, length) : new Uint8Array(length);
    if (buf.length < length)
      throw new BlockError(`read buffer of ${buf.length} bytes for ${length}`, 'EINVAL');
    await this.rw.shared(() => this.readInto(offset, buf));
    return buf;
  }

  private async readInto(offset: number, buf: Uint8Array): Promise<void> {
    const cs = this.cs;
    const tasks: Array<Promise<void>> = [];
    let seg: { backing: boolean; src: number; pos: number; len: number } | null = null;
    const flushSeg = () => {
      if (!seg) return;
      const s = seg;
      const dst = buf.subarray(s.pos, s.pos + s.len);
      tasks.push(s.backing ? this.readBacking(s.src, dst) : this.readHost(s.src, dst));
      seg = null;
    };
    let pos = 0;
    let failure: unknown;
    try {
      while (pos < buf.length) {
        const guest = offset + pos;
        const inCluster = guest % cs;
        const n = Math.min(cs - inCluster, buf.length - pos);
        const l1e = this.l1Entry(Math.floor(guest / this.l2Span));
        if (l1e.corrupt) throw this.corruptError(l1e.corrupt);
        let table: Buffer | null = null;
        if (l1e.l2 !== 0) table = this.l2Cache.peek(l1e.l2) ?? (await this.l2Cache.get(l1e.l2));
        const e = this.entryAt(table, Math.floor(guest / cs) % this.l2Entries);
        if (e.kind === 'unallocated') {
          if (seg && seg.backing && seg.src + seg.len === guest) seg.len += n;
          else {
            flushSeg();
            seg = { backing: true, src: guest, pos, len: n };
          }
        } else if (e.kind === 'normal') {
          const bad = this.badHost(e.host);
          if (bad) throw this.corruptError(bad);
          const host = e.host + inCluster;
          if (seg && !seg.backing && seg.src + seg.len === host) seg.len += n;
          else {
            flushSeg();
            seg = { backing: false, src: host, pos, len: n };
          }
        } else if (e.kind === 'zero') {
          flushSeg();
          buf.fill(0, pos, pos + n);
        } else if (e.kind === 'compressed') {
          flushSeg();
          const dst = buf.subarray(pos, pos + n);
          tasks.push(this.decompress(e).then((data) => dst.set(data.subarray(inCluster, inCluster + n))));
        } else {
          throw this.corruptError(e.why);
        }
        pos += n;
      }
      flushSeg();
    } catch (err) {
      failure = err;
    }
    // Never return (or throw) while a read is still filling the caller's buffer.
    const results = await Promise.allSettled(tasks);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure !== undefined || failed) {
      throw toBlockError(failure ?? failed!.reason, `${this.path}: read at ${offset}`);
    }
  }

  private async readHost(host: number, dst: Uint8Array): Promise<void> {
    // A last cluster cut short by the end of the file reads as zeroes past it.
    const n = await preadFull(this.fh, dst, host);
    if (n < dst.length) dst.fill(0, n);
  }

  /** Guest range from the backing file; zeroes past its end (or without one). */
  private async readBacking(guest: number, dst: Uint8Array): Promise<void> {
    const avail = this.backing ? Math.max(0, Math.min(dst.length, this.backing.size - guest)) : 0;
    if (avail > 0) await this.backing!.read(guest, avail, dst.subarray(0, avail));
    if (avail < dst.length) dst.fill(0, avail);
  }

  private async decompress(e: { host: number; length: number }): Promise<Uint8Array> {
    const key = `${e.host}/${e.length}`;
    const hit = this.compressedCache.get(key);
    if (hit) return hit;
    if (e.host >= this.fileBytes)
      throw this.corruptError(
        `compressed cluster at 0x${e.host.toString(16)} lies beyond the end of the file`,
      );
    if (this.metadata.has(Math.floor(e.host / this.cs))) {
      throw this.corruptError(`compressed cluster at 0x${e.host.toString(16)} overlaps metadata`);
    }
    const src = Buffer.alloc(Math.min(e.length, this.fileBytes - e.host));
    await preadFull(this.fh, src, e.host);
    let out: Buffer;
    try {
      out = await inflateRawAsync(src, { finishFlush: zconst.Z_SYNC_FLUSH, maxOutputLength: this.cs });
    } catch (err) {
      throw this.corruptError(`compressed cluster at 0x${e.host.toString(16)}: ${(err as Error).message}`);
    }
    if (out.length < this.cs) {
      throw this.corruptError(
        `compressed cluster at 0x${e.host.toString(16)} inflates to ${out.length} bytes`,
      );
    }
    if (this.compressedCache.size >= 4)
      this.compressedCache.delete(this.compressedCache.keys().next().value!);
    this.compressedCache.set(key, out);
    return out;
  }

  /** The whole current content of guest cluster `gc` as entry `e` describes it. */
  private async oldCluster(e: L2Entry, gc: number, dst: Uint8Array): Promise<void> {
    switch (e.kind) {
      case 'unallocated': {
        const start = gc * this.cs;
        const inDisk = Math.max(0, Math.min(this.cs, this._size - start));
        await this.readBacking(start, dst.subarray(0, inDisk));
        dst.fill(0, inDisk);
        return;
      }
      case 'zero':
        dst.fill(0);
        return;
      case 'normal':
        return this.readHost(e.host, dst);
      case 'compressed':
        dst.set(await this.decompress(e));
        return;
      default:
        throw this.corruptError(e.why);
    }
  }

  // ---- Writes ------------------------------------------------------------

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    checkRange(offset, data.length, this._size);
    await this.rw.shared(async () => {
      let pos = 0;
      while (pos < data.length) {
        const guest = offset + pos;
        const end = Math.min(data.length, pos + (this.l2Span - (guest % this.l2Span)));
        const chunk = data.subarray(pos, end);
        if (!(await this.tryWriteInPlace(guest, chunk))) {
          await this.meta.run(() => this.writeSpanLocked(guest, chunk));
        }
        pos = end;
      }
    });
    await this.maybeApplyFrees();
  }

  /** The fast path: every cluster of the chunk is allocated and ours alone, so no metadata changes. */
  private async tryWriteInPlace(guest: number, chunk: Uint8Array): Promise<boolean> {
    const l1e = this.l1Entry(Math.floor(guest / this.l2Span));
    if (l1e.corrupt || l1e.l2 === 0 || !l1e.copied) return false;
    const table = this.l2Cache.peek(l1e.l2) ?? (await this.l2Cache.get(l1e.l2));
    const segs: Array<{ host: number; pos: number; len: number }> = [];
    for (let pos = 0; pos < chunk.length;) {
      const g = guest + pos;
      const inCluster = g % this.cs;
      const n = Math.min(this.cs - inCluster, chunk.length - pos);
      const e = this.entryAt(table, Math.floor(g / this.cs) % this.l2Entries);
      if (e.kind !== 'normal' || !e.copied || this.badHost(e.host)) return false;
      const last = segs[segs.length - 1];
      if (last && last.host + last.len === e.host + inCluster) last.len += n;
      else segs.push({ host: e.host + inCluster, pos, len: n });
      pos += n;
    }
    await this.settle(
      segs.map((s) => pwriteFull(this.fh, chunk.subarray(s.pos, s.pos + s.len), s.host)),
      guest,
    );
    return true;
  }

  /** Awaits every promise, then throws the first failure as a BlockError. */
  private async settle(tasks: Array<Promise<void>>, offset: number): Promise<void> {
    const results = await Promise.allSettled(tasks);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw toBlockError(failed.reason, `${this.path}: write at ${offset}`);
  }

  /** Clusters reserved with their refcounts on disk; `k` contiguous ones. */
  private async allocClusters(k: number): Promise<number> {
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
  private async openEdit(l1i: number, l1e: L1Entry): Promise<TableEdit> {
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

  private setEntry(edit: TableEdit, idx: number, entry: [number, number]): void {
    edit.changes.set(idx, entry);
  }

  /** Writes the edit out in order (see the file comment) and releases it. */
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
  private abortEdit(edit: TableEdit): void {
    if (edit.fresh) this.pendingFrees.push([edit.offset / this.cs, edit.offset / this.cs + 1]);
    else this.l2Cache.release(edit.offset);
  }

  /** The L1 entry, with a table whose refcount is 1 marked as ours (COPIED) so it is edited in place. */
  private async ownL1(l1i: number): Promise<L1Entry> {
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
  private heldClusters(e: L2Entry): ClusterRange | null {
    if ((e.kind === 'normal' || e.kind === 'zero') && e.host !== 0)
      return [e.host / this.cs, e.host / this.cs + 1];
    if (e.kind === 'compressed') {
      const start = e.host - (e.host % 512);
      return [Math.floor(start / this.cs), Math.floor((e.host + e.length - 1) / this.cs) + 1];
    }
    return null;
  }

  /** The slow path for one L2 table's worth of a write, under the metadata mutex. */
  private async writeSpanLocked(guest: number, chunk: Uint8Array): Promise<void> {
    this.checkWritable();
    const cs = this.cs;
    const l1i = Math.floor(guest / this.l2Span);
    const l1e = await this.ownL1(l1i);
    const shared = l1e.l2 !== 0 && !l1e.copied;
    const table = l1e.l2 !== 0 ? await this.l2Cache.get(l1e.l2) : null;
    const gc0 = Math.floor(guest / cs);
    const gc1 = Math.floor((guest + chunk.length - 1) / cs) + 1;

    // Classify each cluster against the current entries.
    const plans: WritePlan[] = [];
    for (let gc = gc0; gc < gc1; gc++) {
      const e = this.entryAt(table, gc % this.l2Entries);
      if (e.kind === 'corrupt') throw this.corruptError(e.why);
      if (e.kind === 'normal') {
        const bad = this.badHost(e.host);
        if (bad) throw this.corruptError(bad);
        if (e.copied && !shared) {
          plans.push({ kind: 'inplace', host: e.host });
          continue;
        }
        const rc = await this.refcounts!.get(e.host / cs);
        if (rc === 0) throw this.corruptError(`data cluster 0x${e.host.toString(16)} has refcount 0`);
        plans.push(rc === 1 ? { kind: 'fixcopied', host: e.host } : { kind: 'alloc', old: e });
      } else if (e.kind === 'zero' && e.host !== 0 && e.copied && !shared) {
        const bad = this.badHost(e.host);
        if (bad) throw this.corruptError(bad);
        plans.push({ kind: 'reuse', host: e.host });
      } else {
        plans.push({ kind: 'alloc', old: e });
      }
    }

    // Where the chunk's bytes for guest cluster gc go: [dataPos, dataPos+n) → cluster offset inOff.
    const part = (gc: number) => {
      const s = Math.max(guest, gc * cs);
      const e = Math.min(guest + chunk.length, (gc + 1) * cs);
      return { dataPos: s - guest, inOff: s - gc * cs, n: e - s };
    };
    const inPlace = async () => {
      const writes: Array<Promise<void>> = [];
      plans.forEach((p, i) => {
        if (p.kind !== 'inplace' && p.kind !== 'fixcopied') return;
        const { dataPos, inOff, n } = part(gc0 + i);
        writes.push(pwriteFull(this.fh, chunk.subarray(dataPos, dataPos + n), p.host + inOff));
      });
      await this.settle(writes, guest);
    };
    if (plans.every((p) => p.kind === 'inplace')) return inPlace();

    const edit = await this.openEdit(l1i, l1e);
    const allocated: ClusterRange[] = [];
    const frees: ClusterRange[] = [];
    try {
      for (let i = 0; i < plans.length;) {
        const p = plans[i]!;
        if (p.kind === 'inplace' || p.kind === 'fixcopied') {
          if (p.kind === 'fixcopied') this.setEntry(edit, (gc0 + i) % this.l2Entries, encodeL2(p.host, true));
          i++;
          continue;
        }
        // A run of clusters to (re)write whole: consecutive 'alloc's, or one 'reuse'.
        let k = 1;
        if (p.kind === 'alloc') while (i + k < plans.length && plans[i + k]!.kind === 'alloc') k++;
        const host = p.kind === 'reuse' ? p.host / cs : await this.allocClusters(k);
        if (p.kind === 'alloc') allocated.push([host, host + k]);
        const buf = Buffer.allocUnsafe(k * cs);
        for (let j = 0; j < k; j++) {
          const gc = gc0 + i + j;
          const { dataPos, inOff, n } = part(gc);
          const slot = buf.subarray(j * cs, (j + 1) * cs);
          if (n < cs) {
            const q = plans[i + j]!;
            if (q.kind === 'alloc') await this.oldCluster(q.old, gc, slot);
            else slot.fill(0); // a zero cluster: the rest reads as zeroes
          }
          slot.set(chunk.subarray(dataPos, dataPos + n), inOff);
        }
        await this.fileWrite(buf, host * cs);
        for (let j = 0; j < k; j++) {
          this.setEntry(edit, (gc0 + i + j) % this.l2Entries, encodeL2((host + j) * cs, true));
          const q = plans[i + j]!;
          const held = q.kind === 'alloc' ? this.heldClusters(q.old) : null;
          if (held) frees.push(held);
        }
        i += k;
      }
      await inPlace();
    } catch (err) {
      // Nothing points at the new clusters yet: give them back.
      this.pendingFrees.push(...allocated);
      this.abortEdit(edit);
      throw toBlockError(err, `${this.path}: write at ${guest}`);
    }
    await this.commitMetadata(edit, frees);
  }

  /** Commits an edit; a failure here leaves the image read-only (memory may be ahead of the file). */
  private async commitMetadata(edit: TableEdit, frees: ClusterRange[]): Promise<void> {
    try {
      await this.commitEdit(edit);
    } catch (err) {
      const e = toBlockError(err, `${this.path}: updating metadata`);
      this.broken = e.message;
      throw e;
    }
    this.pendingFrees.push(...frees);
  }

  // ---- Discard and write-zeroes -----------------------------------------

  /** Guest clusters [c0, c1) fully inside [offset, offset+length) (the disk's last cluster counts if the range reaches the end). */
  private fullClusters(offset: number, length: number): [number, number] {
    const end = offset + length;
    const c0 = Math.ceil(offset / this.cs);
    const c1 = end === this._size ? Math.ceil(end / this.cs) : Math.floor(end / this.cs);
    return [c0, Math.max(c0, c1)];
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    checkRange(offset, length, this._size);
    // v2 cannot mark a cluster zero: with a backing file its old data stays (allowed for discard).
    if (this.header.version === 2 && this.backing) return;
    const [c0, c1] = this.fullClusters(offset, length);
    if (c0 < c1) await this.rw.shared(() => this.zeroClusters(c0, c1, 'discard'));
    await this.maybeApplyFrees();
  }

  async writeZeroes(offset: number, length: number, unmap = false): Promise<void> {
    this.checkWritable();
    checkRange(offset, length, this._size);
    const end = offset + length;
    const [c0, c1] = this.fullClusters(offset, length);
    const v2Data = this.header.version === 2 && (this.backing !== null || !unmap);
    if (c0 >= c1 || v2Data) return this.writeZeroData(offset, end);
    await this.writeZeroData(offset, Math.min(end, c0 * this.cs));
    await this.rw.shared(() => this.zeroClusters(c0, c1, unmap ? 'unmap' : 'zero'));
    await this.writeZeroData(Math.max(offset, c1 * this.cs), end);
    await this.maybeApplyFrees();
  }

  private async writeZeroData(start: number, end: number): Promise<void> {
    for (let pos = start; pos < end; pos += ZEROES.length) {
      await this.write(pos, ZEROES.subarray(0, Math.min(ZEROES.length, end - pos)));
    }
  }

  private async zeroClusters(c0: number, c1: number, op: 'discard' | 'zero' | 'unmap'): Promise<void> {
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

  // ---- Flush, frees, resize, close --------------------------------------

  async flush(): Promise<void> {
    this.checkOpen();
    if (this.readOnly) return;
    try {
      if (this.pendingFrees.length > 0) await this.rw.exclusive(() => this.applyFrees());
      await this.datasync();
    } catch (err) {
      throw toBlockError(err, `${this.path}: flush`);
    }
  }

  private async maybeApplyFrees(): Promise<void> {
    if (this.pendingFrees.length >= MAX_PENDING_FREES) await this.rw.exclusive(() => this.applyFrees());
  }

  /** Lowers the refcounts of dropped clusters, once the entries that dropped them are on disk. */
  private async applyFrees(): Promise<void> {
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.readOnly) {
        await this.rw.exclusive(async () => {
          await this.applyFrees();
          if (!this.broken && this.pool[1] > this.pool[0]) {
            await this.refcounts!.free(this.pool[0], this.pool[1] - this.pool[0]);
            this.pool = [0, 0];
          }
          await this.datasync();
        });
      }
    } finally {
      await this.fh.close().catch(() => {});
      await this.backing?.close().catch(() => {});
    }
  }

  /**
   * Test hook: drops the image without the clean-up a close does (pending
   * frees, unused reserved clusters), as a crash would, and closes the files.
   */
  async abandon(): Promise<void> {
    this.closed = true;
    await this.rw.exclusive(async () => {});
    await this.fh.close().catch(() => {});
    await this.backing?.close().catch(() => {});
  }

  private checkOpen(): void {
    if (this.closed) throw new BlockError(`${this.path}: image is closed`, 'EIO');
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.readOnly) throw new BlockError(`${this.path}: image is read-only`, 'EROFS');
    if (this.broken)
      throw new BlockError(`${this.path}: writes disabled after a metadata error: ${this.broken}`, 'EIO');
  }
}
