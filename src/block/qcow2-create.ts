/**
 * Lays out a new, empty qcow2 (version 3, 16-bit refcounts) file:
 *   cluster 0            header, backing format extension, backing file name
 *   1 ..                 refcount table
 *   then                 refcount block(s) covering everything below
 *   then                 L1 table (all zero: nothing allocated)
 * the same shape `qemu-img create -f qcow2` produces. No validation of the
 * backing file here (create.ts does that); open.ts uses this directly for
 * snapshot overlays.
 */
import { open, unlink } from 'node:fs/promises';
import { BlockError } from './image.js';
import { pwriteFull, toBlockError } from './io.js';
import { buildHeader, MAX_CLUSTER_BITS, MIN_CLUSTER_BITS, writeU64 } from './qcow2-format.js';

export interface NewQcow2 {
  size: number;
  clusterSize?: number;
  backingFile?: string;
  backingFormat?: string;
}

export const DEFAULT_CLUSTER_SIZE = 65536;

export function clusterBitsOf(clusterSize: number): number {
  const bits = Math.log2(clusterSize);
  if (!Number.isInteger(bits) || bits < MIN_CLUSTER_BITS || bits > MAX_CLUSTER_BITS) {
    throw new BlockError(`cluster size ${clusterSize} is not a power of two from 512 to 2 MiB`, 'EINVAL');
  }
  return bits;
}

/** Creates the file (it must not exist) and writes the empty image. */
export async function createQcow2File(path: string, n: NewQcow2): Promise<void> {
  const cs = n.clusterSize ?? DEFAULT_CLUSTER_SIZE;
  const clusterBits = clusterBitsOf(cs);
  const l2Span = cs * (cs / 8);
  const l1Size = Math.max(1, Math.ceil(n.size / l2Span));
  if (l1Size * 8 > 32 * 1024 * 1024)
    throw new BlockError(`size ${n.size} needs too large an L1 table for ${cs}-byte clusters`, 'EINVAL');
  const l1Clusters = Math.ceil((l1Size * 8) / cs);
  const perBlock = cs / 2; // 16-bit refcounts
  // Grow the refcount structures until they describe every cluster, themselves included.
  let rtClusters = 1;
  let blocks = 1;
  for (;;) {
    const total = 1 + rtClusters + blocks + l1Clusters;
    const needBlocks = Math.ceil(total / perBlock);
    const needRt = Math.ceil((needBlocks * 8) / cs);
    if (needBlocks === blocks && needRt === rtClusters) break;
    blocks = Math.max(blocks, needBlocks);
    rtClusters = Math.max(rtClusters, needRt);
  }
  const total = 1 + rtClusters + blocks + l1Clusters;
  const rtOffset = cs;
  const blocksOffset = rtOffset + rtClusters * cs;
  const l1Offset = blocksOffset + blocks * cs;

  const header = buildHeader({
    version: 3,
    clusterBits,
    size: n.size,
    l1Size,
    l1TableOffset: l1Offset,
    refcountTableOffset: rtOffset,
    refcountTableClusters: rtClusters,
    refcountOrder: 4,
    backingFile: n.backingFile,
    backingFormat: n.backingFile ? n.backingFormat : undefined,
  });
  const rt = Buffer.alloc(rtClusters * cs);
  for (let b = 0; b < blocks; b++) writeU64(rt, b * 8, blocksOffset + b * cs);
  const rb = Buffer.alloc(blocks * cs);
  for (let c = 0; c < total; c++) rb.writeUInt16BE(1, c * 2);

  let fh;
  try {
    fh = await open(path, 'wx');
  } catch (err) {
    throw toBlockError(err, `cannot create ${path}`);
  }
  try {
    await pwriteFull(fh, header, 0);
    await pwriteFull(fh, rt, rtOffset);
    await pwriteFull(fh, rb, blocksOffset);
    await fh.truncate(l1Offset + l1Clusters * cs); // the L1 table: zeroes
    await fh.datasync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw toBlockError(err, `cannot create ${path}`);
  }
  await fh.close();
}
