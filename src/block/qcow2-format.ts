/**
 * The qcow2 on-disk format (QEMU docs/interop/qcow2.txt): header parsing
 * with validation, header building for new images, and decoding of L1, L2
 * and refcount table entries. All numbers are big-endian. 64-bit fields
 * are kept as JavaScript numbers: an offset or size past 2^53 is rejected
 * as corrupt (no real file reaches it).
 */
import { BlockError } from './image.js';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21; // QEMU's 2 MiB implementation limit
/** QEMU's limits (qcow2.h QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE). */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
export const MAX_SNAPSHOTS = 65536;

/** Header field offsets that are rewritten in place (each update is one small pwrite). */
export const HDR = {
  size: 24,
  l1Size: 36,
  l1TableOffset: 40,
  refcountTableOffset: 48,
  refcountTableClusters: 56,
  incompatibleFeatures: 72,
  autoclearFeatures: 88,
} as const;

export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

/** Incompatible feature bits (header bytes 72-79). */
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
const INCOMPAT_NAMES = [
  'dirty bit',
  'corrupt bit',
  'external data file',
  'compression type',
  'extended L2 entries',
];

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  /** Virtual disk size in bytes. */
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  /** refcount_bits = 1 << refcountOrder (always 4 for version 2). */
  refcountOrder: number;
  headerLength: number;
  /** Backing file name as stored (relative names are relative to the image's directory). */
  backingFile?: string;
  /** From the backing format header extension. */
  backingFormat?: string;
}

export function corrupt(path: string, why: string): BlockError {
  return new BlockError(`${path}: corrupt qcow2 image: ${why}`, 'EIO');
}

function u64(buf: Buffer, off: number, path: string, field: string): number {
  const v = buf.readBigUInt64BE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(path, `${field} ${v} is out of range`);
  return Number(v);
}

/** Bytes of the header a parser needs to see first (to learn the cluster size). */
export const HEADER_PROBE = 512;

/** Reads just the cluster size out of a header prefix, validating magic, version and cluster_bits. */
export function probeClusterBits(buf: Buffer, path: string): number {
  if (buf.length < 72) throw corrupt(path, `truncated header (${buf.length} bytes, need at least 72)`);
  if (buf.readUInt32BE(0) !== QCOW2_MAGIC) throw corrupt(path, 'bad magic (not a qcow2 image)');
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) {
    throw new BlockError(`${path}: unsupported qcow2 version ${version} (2 and 3 are supported)`, 'EINVAL');
  }
  const clusterBits = buf.readUInt32BE(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw corrupt(path, `cluster_bits ${clusterBits} is outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`);
  }
  return clusterBits;
}

/**
 * Parses and validates the header from the image's first cluster (or as
 * much of it as the file has). `fileSize` bounds every table offset.
 * Throws a BlockError naming the problem; never returns a header whose
 * tables lie outside the file or overlap each other.
 */
export function parseHeader(buf: Buffer, fileSize: number, path: string): Qcow2Header {
  const clusterBits = probeClusterBits(buf, path);
  const cs = 2 ** clusterBits;
  const version = buf.readUInt32BE(4) as 2 | 3;
  let headerLength = 72;
  let incompatibleFeatures = 0n;
  let compatibleFeatures = 0n;
  let autoclearFeatures = 0n;
  let refcountOrder = 4;
  if (version === 3) {
    if (buf.length < 104) throw corrupt(path, `truncated version 3 header (${buf.length} bytes)`);
    incompatibleFeatures = buf.readBigUInt64BE(72);
    compatibleFeatures = buf.readBigUInt64BE(80);
    autoclearFeatures = buf.readBigUInt64BE(88);
    refcountOrder = buf.readUInt32BE(96);
    headerLength = buf.readUInt32BE(100);
    if (headerLength < 104 || headerLength % 8 !== 0 || headerLength > Math.min(cs, buf.length)) {
      throw corrupt(path, `header_length ${headerLength} is invalid`);
    }
    if (refcountOrder > 6) throw corrupt(path, `refcount_order ${refcountOrder} exceeds 6`);
  }
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(buf, 8, path, 'backing_file_offset'),
    backingFileSize: buf.readUInt32BE(16),
    clusterBits,
    size: u64(buf, 24, path, 'size'),
    cryptMethod: buf.readUInt32BE(32),
    l1Size: buf.readUInt32BE(36),
    l1TableOffset: u64(buf, 40, path, 'l1_table_offset'),
    refcountTableOffset: u64(buf, 48, path, 'refcount_table_offset'),
    refcountTableClusters: buf.readUInt32BE(56),
    nbSnapshots: buf.readUInt32BE(60),
    snapshotsOffset: u64(buf, 64, path, 'snapshots_offset'),
    incompatibleFeatures,
    compatibleFeatures,
    autoclearFeatures,
    refcountOrder,
    headerLength,
  };

  // Extensions first: the feature name table names unknown feature bits.
  const featureNames = new Map<string, string>();
  const extEnd = h.backingFileOffset > headerLength ? Math.min(h.backingFileOffset, buf.length) : buf.length;
  let off = headerLength;
  const seen = new Set<number>();
  while (off + 8 <= extEnd) {
    const type = buf.readUInt32BE(off);
    const len = buf.readUInt32BE(off + 4);
    if (type === EXT_END) break;
    const data = off + 8;
    if (data + len > extEnd)
      throw corrupt(path, `header extension 0x${type.toString(16)} overruns the header`);
    if (seen.has(type) && type !== 0)
      throw corrupt(path, `header extension 0x${type.toString(16)} appears twice`);
    seen.add(type);
    if (type === EXT_BACKING_FORMAT) h.backingFormat = buf.toString('latin1', data, data + len);
    else if (type === EXT_FEATURE_TABLE) {
      for (let e = data; e + 48 <= data + len; e += 48) {
        const name = buf.toString('latin1', e + 2, e + 48).replace(/\0.*$/s, '');
        featureNames.set(`${buf[e]}:${buf[e + 1]}`, name);
      }
    } else if (type === EXT_CRYPTO) {
      throw new BlockError(`${path}: encrypted qcow2 images are not supported`, 'EINVAL');
    }
    off = data + Math.ceil(len / 8) * 8;
  }

  const unsupported = incompatibleFeatures & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT);
  if (unsupported !== 0n) {
    const names: string[] = [];
    for (let bit = 0; bit < 64; bit++) {
      if (!(unsupported & (1n << BigInt(bit)))) continue;
      names.push(
        featureNames.get(`0:${bit}`) ?? INCOMPAT_NAMES[bit] ?? `unknown incompatible feature bit ${bit}`,
      );
    }
    throw new BlockError(`${path}: unsupported qcow2 feature: ${names.join(', ')}`, 'EINVAL');
  }
  if (h.cryptMethod !== 0) {
    throw new BlockError(
      `${path}: encrypted qcow2 images are not supported (crypt_method ${h.cryptMethod})`,
      'EINVAL',
    );
  }

  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize === 0 || h.backingFileSize > 1023) {
      throw corrupt(path, `backing file name length ${h.backingFileSize} is invalid`);
    }
    if (h.backingFileOffset + h.backingFileSize > Math.min(cs, buf.length)) {
      throw corrupt(path, 'backing file name lies outside the header cluster');
    }
    h.backingFile = buf.toString('utf8', h.backingFileOffset, h.backingFileOffset + h.backingFileSize);
  }

  // Tables: aligned, inside the file, not overlapping each other or the header.
  const aligned = (v: number) => v % cs === 0;
  const l2Entries = cs / 8;
  const neededL1 = Math.ceil(h.size / (cs * l2Entries));
  if (h.l1Size < neededL1) {
    throw corrupt(
      path,
      `L1 table has ${h.l1Size} entries, too few for a ${h.size}-byte disk (need ${neededL1})`,
    );
  }
  if (h.l1Size * 8 > MAX_L1_BYTES) throw corrupt(path, `L1 table of ${h.l1Size} entries is too large`);
  if (h.l1Size > 0) {
    if (!aligned(h.l1TableOffset))
      throw corrupt(path, `L1 table offset 0x${h.l1TableOffset.toString(16)} is not cluster-aligned`);
    if (h.l1TableOffset + h.l1Size * 8 > fileSize)
      throw corrupt(path, 'L1 table lies beyond the end of the file');
  }
  if (!aligned(h.refcountTableOffset)) {
    throw corrupt(
      path,
      `refcount table offset 0x${h.refcountTableOffset.toString(16)} is not cluster-aligned`,
    );
  }
  if (h.refcountTableClusters === 0) throw corrupt(path, 'refcount table is empty');
  if (h.refcountTableClusters * cs > MAX_REFTABLE_BYTES) throw corrupt(path, 'refcount table is too large');
  if (h.refcountTableOffset + h.refcountTableClusters * cs > fileSize) {
    throw corrupt(path, 'refcount table lies beyond the end of the file');
  }
  if (h.nbSnapshots > MAX_SNAPSHOTS) throw corrupt(path, `${h.nbSnapshots} snapshots is too many`);
  if (
    h.nbSnapshots > 0 &&
    (!aligned(h.snapshotsOffset) || h.snapshotsOffset === 0 || h.snapshotsOffset >= fileSize)
  ) {
    throw corrupt(path, 'snapshot table offset is invalid');
  }
  const ranges: Array<[string, number, number]> = [['header', 0, cs]];
  if (h.l1Size > 0) ranges.push(['L1 table', h.l1TableOffset, h.l1TableOffset + h.l1Size * 8]);
  ranges.push([
    'refcount table',
    h.refcountTableOffset,
    h.refcountTableOffset + h.refcountTableClusters * cs,
  ]);
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      const [a, as, ae] = ranges[i]!;
      const [b, bs, be] = ranges[j]!;
      if (as < be && bs < ae) throw corrupt(path, `${a} overlaps ${b}`);
    }
  }
  return h;
}

/** What an L2 table entry says about one guest cluster. */
export type L2Entry =
  | { kind: 'unallocated' }
  /** Reads as zeroes; `host` is a preallocated cluster (0 if none). */
  | { kind: 'zero'; host: number; copied: boolean }
  | { kind: 'normal'; host: number; copied: boolean }
  /** `host` is a byte offset (not aligned); `length` bytes hold the deflate stream and maybe trailing bytes. */
  | { kind: 'compressed'; host: number; length: number }
  | { kind: 'corrupt'; why: string };

const TWO32 = 2 ** 32;

/** Decodes the standard-format L2 entry `hi:lo` (version decides whether the zero flag is legal). */
export function decodeL2(hi: number, lo: number, clusterBits: number, version: number): L2Entry {
  if (hi === 0 && lo === 0) return { kind: 'unallocated' };
  const copied = hi >>> 31 === 1;
  if ((hi >>> 30) & 1) {
    // Compressed cluster descriptor: offset in bits 0..x-1, extra sectors in x..61 (x = 62 - (cluster_bits - 8)).
    const x = 70 - clusterBits;
    const v = (BigInt(hi & 0x3fffffff) << 32n) | BigInt(lo);
    const offset = v & ((1n << BigInt(x)) - 1n);
    const sectors = ((v >> BigInt(x)) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1n;
    if (offset > BigInt(Number.MAX_SAFE_INTEGER))
      return { kind: 'corrupt', why: 'compressed cluster offset out of range' };
    const host = Number(offset);
    return { kind: 'compressed', host, length: Number(sectors) * 512 - (host % 512) };
  }
  if (lo & 0x1fe || hi & 0x3f000000) return { kind: 'corrupt', why: 'reserved bits set in an L2 entry' };
  const host = (hi & 0x00ffffff) * TWO32 + ((lo & 0xfffffe00) >>> 0);
  if (host % 2 ** clusterBits !== 0)
    return { kind: 'corrupt', why: `L2 entry offset 0x${host.toString(16)} is not cluster-aligned` };
  if (lo & 1) {
    if (version < 3) return { kind: 'corrupt', why: 'zero cluster flag in a version 2 image' };
    return { kind: 'zero', host, copied };
  }
  if (host === 0) return { kind: 'corrupt', why: 'L2 entry points to the header cluster' };
  return { kind: 'normal', host, copied };
}

/** Encodes a standard (uncompressed) L2 entry into hi:lo words. */
export function encodeL2(host: number, copied: boolean, zero = false): [number, number] {
  const hi = (Math.floor(host / TWO32) & 0x00ffffff) | (copied ? 0x80000000 : 0);
  const lo = ((host % TWO32) | (zero ? 1 : 0)) >>> 0;
  return [hi >>> 0, lo];
}

/** An L1 entry: the L2 table's offset (0: none) and whether its refcount is exactly one. */
export interface L1Entry {
  l2: number;
  copied: boolean;
  corrupt?: string;
}

export function decodeL1(hi: number, lo: number, clusterBits: number): L1Entry {
  const copied = hi >>> 31 === 1;
  if (lo & 0x1ff || hi & 0x7f000000) return { l2: 0, copied, corrupt: 'reserved bits set in an L1 entry' };
  const l2 = (hi & 0x00ffffff) * TWO32 + (lo >>> 0);
  if (l2 % 2 ** clusterBits !== 0) {
    return { l2: 0, copied, corrupt: `L2 table offset 0x${l2.toString(16)} is not cluster-aligned` };
  }
  return { l2, copied };
}

export function encodeL1(l2: number, copied: boolean): [number, number] {
  return encodeL2(l2, copied);
}

/** Decodes a refcount table entry (a refcount block offset, 0 if none); null if malformed. */
export function decodeRefTable(hi: number, lo: number, clusterBits: number): number | null {
  if (lo & 0x1ff) return null;
  if (hi >= 0x00200000) return null; // beyond 2^53
  const off = hi * TWO32 + (lo >>> 0);
  return off % 2 ** clusterBits === 0 ? off : null;
}

export function writeU64(buf: Buffer, off: number, value: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO32), off);
  buf.writeUInt32BE(value % TWO32, off + 4);
}

export interface NewHeader {
  version: 2 | 3;
  clusterBits: number;
  size: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  refcountOrder: number;
  backingFile?: string;
  backingFormat?: string;
}

/** Builds the header cluster of a new image (header, extensions, backing file name). */
export function buildHeader(n: NewHeader): Buffer {
  const cs = 2 ** n.clusterBits;
  const buf = Buffer.alloc(cs);
  buf.writeUInt32BE(QCOW2_MAGIC, 0);
  buf.writeUInt32BE(n.version, 4);
  buf.writeUInt32BE(n.clusterBits, 20);
  writeU64(buf, 24, n.size);
  buf.writeUInt32BE(n.l1Size, 36);
  writeU64(buf, 40, n.l1TableOffset);
  writeU64(buf, 48, n.refcountTableOffset);
  buf.writeUInt32BE(n.refcountTableClusters, 56);
  let off = 72;
  if (n.version === 3) {
    buf.writeUInt32BE(n.refcountOrder, 96);
    buf.writeUInt32BE(104, 100);
    off = 104;
  }
  if (n.backingFormat) {
    const fmt = Buffer.from(n.backingFormat, 'latin1');
    buf.writeUInt32BE(EXT_BACKING_FORMAT, off);
    buf.writeUInt32BE(fmt.length, off + 4);
    fmt.copy(buf, off + 8);
    off += 8 + Math.ceil(fmt.length / 8) * 8;
  }
  buf.writeUInt32BE(EXT_END, off);
  buf.writeUInt32BE(0, off + 4);
  off += 8;
  if (n.backingFile) {
    const name = Buffer.from(n.backingFile, 'utf8');
    if (name.length > 1023) throw new BlockError(`backing file name is longer than 1023 bytes`, 'EINVAL');
    if (off + name.length > cs)
      throw new BlockError(`backing file name does not fit in the header cluster`, 'EINVAL');
    writeU64(buf, 8, off);
    buf.writeUInt32BE(name.length, 16);
    name.copy(buf, off);
  }
  return buf;
}
