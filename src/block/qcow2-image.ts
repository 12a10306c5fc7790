/**
 * qcow2 data I/O: Qcow2Image opens an image (header checks, L1 and
 * refcount tables, backing file), reads guest clusters (allocated,
 * zero, compressed, or through the backing file), writes them (in place,
 * or by allocating and copying up under the metadata mutex), and does
 * discard, write-zeroes, flush and close. The metadata it builds on is in
 * qcow2-tables.ts; qcow2.ts describes the design and write ordering.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { promisify } from 'node:util';
import { lazyZlib } from '../common/builtins.js';
import { BlockError, type BlockImage, type ImageFormat } from './image.js';
import { checkRange, preadFull, pwriteFull, toBlockError, ZEROES } from './io.js';
import { lockImage } from './lock.js';
import {
  encodeL2,
  HDR,
  HEADER_PROBE,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  parseHeader,
  probeClusterBits,
  type L2Entry,
} from './qcow2-format.js';
import { type ClusterRange } from './qcow2-refcount.js';
import { Qcow2Tables } from './qcow2-tables.js';

let inflateRawAsync:
  ((buf: Uint8Array, opts: import('node:zlib').ZlibOptions) => Promise<Buffer>) | undefined;

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

type WritePlan =
  | { kind: 'inplace'; host: number }
  | { kind: 'fixcopied'; host: number }
  | { kind: 'reuse'; host: number }
  | { kind: 'alloc'; old: L2Entry };

const DEFAULT_L2_CACHE = 1 << 20;

export class Qcow2Image extends Qcow2Tables implements BlockImage {
  readonly format = 'qcow2' as const;

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
      const zlib = lazyZlib();
      inflateRawAsync ??= promisify(zlib.inflateRaw);
      out = await inflateRawAsync(src, {
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
        maxOutputLength: this.cs,
      });
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

  // ---- Discard and write-zeroes -----------------------------------------

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

  // ---- Flush and close ----------------------------------------------------

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
}
