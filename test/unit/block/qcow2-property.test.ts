import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { BlockImage } from '../../../src/block/image.js';
import { openImage } from '../../../src/block/open.js';
import { Qcow2Image } from '../../../src/block/qcow2.js';
import { firstDiff, hasQemuImg, qemuCheck, qemuImg, qemuRaw, rng, tempDir } from './helpers.js';

interface Config {
  name: string;
  size: number;
  clusterSize: number;
  /** Extra `qemu-img create -o` options. */
  options?: string;
  /** Give the image a raw backing file with patterned content. */
  backing?: boolean;
  ops: number;
}

const MiB = 1024 * 1024;
const configs: Config[] = [
  { name: 'v3, 64 KiB clusters', size: 8 * MiB, clusterSize: 65536, ops: 250 },
  { name: 'v3, 4 KiB clusters, odd size', size: 4 * MiB + 3 * 512, clusterSize: 4096, ops: 250 },
  {
    name: 'v2 (compat=0.10), 4 KiB clusters',
    size: 4 * MiB,
    clusterSize: 4096,
    options: 'compat=0.10',
    ops: 250,
  },
  { name: 'v3 over a raw backing file', size: 4 * MiB, clusterSize: 4096, backing: true, ops: 250 },
  {
    name: 'v2 over a raw backing file',
    size: 4 * MiB,
    clusterSize: 8192,
    options: 'compat=0.10',
    backing: true,
    ops: 200,
  },
  { name: 'v3, 1-bit refcounts', size: 2 * MiB, clusterSize: 4096, options: 'refcount_bits=1', ops: 150 },
  { name: 'v3, 64-bit refcounts', size: 2 * MiB, clusterSize: 4096, options: 'refcount_bits=64', ops: 150 },
  { name: 'v3, 512-byte clusters', size: 2 * MiB, clusterSize: 512, ops: 200 },
];
const seeds = [1, 2, 3];

/**
 * What a discard does to the reference: mvisor zeroes the clusters a
 * discard covers fully (the disk's last cluster counts when the range
 * reaches the end) and leaves partial clusters alone; a v2 image with a
 * backing file keeps everything (it cannot mark clusters zero).
 */
function discardRef(ref: Buffer, off: number, len: number, cs: number, keepAll: boolean): void {
  if (keepAll) return;
  const end = off + len;
  const c0 = Math.ceil(off / cs);
  const c1 = end === ref.length ? Math.ceil(end / cs) : Math.floor(end / cs);
  for (let c = c0; c < c1; c++) ref.fill(0, c * cs, Math.min(ref.length, (c + 1) * cs));
}

describe.skipIf(!hasQemuImg)('qcow2 random operations against an in-memory reference', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  for (const cfg of configs) {
    for (const seed of seeds) {
      it(`${cfg.name}, seed ${seed}: reads match, qemu-img check is clean, convert is byte-identical`, async () => {
        const t = tempDir();
        cleanup = t.cleanup;
        const r = rng(seed * 7919 + cfg.clusterSize);
        const path = join(t.dir, 'disk.qcow2');
        const ref = Buffer.alloc(cfg.size);
        const args = [
          'create',
          '-q',
          '-f',
          'qcow2',
          '-o',
          `cluster_size=${cfg.clusterSize}${cfg.options ? `,${cfg.options}` : ''}`,
        ];
        if (cfg.backing) {
          const base = join(t.dir, 'base.raw');
          const content = r.bytes(cfg.size - 5 * 4096); // a backing file shorter than the disk
          writeFileSync(base, content);
          content.copy(ref);
          args.push('-b', 'base.raw', '-F', 'raw');
        }
        qemuImg(...args, path, String(cfg.size));
        const v2 = cfg.options?.includes('compat=0.10') ?? false;

        let img: BlockImage = await openImage(path);
        const cs = cfg.clusterSize;
        const randRange = () => {
          // Mix sector-aligned, unaligned, cluster-crossing and cluster-sized ranges.
          const kind = r.int(4);
          let off: number;
          let len: number;
          if (kind === 0) {
            off = r.int(cfg.size / 512) * 512;
            len = (1 + r.int(64)) * 512;
          } else if (kind === 1) {
            off = r.int(cfg.size);
            len = 1 + r.int(3 * cs);
          } else if (kind === 2) {
            off = r.int(cfg.size / cs) * cs;
            len = (1 + r.int(4)) * cs;
          } else {
            off = r.int(cfg.size / cs) * cs + cs - 1 - r.int(16);
            len = 2 + r.int(40);
          }
          off = Math.min(off, cfg.size - 1);
          len = Math.min(len, cfg.size - off);
          return [off, len] as const;
        };
        for (let i = 0; i < cfg.ops; i++) {
          const op = r.int(20);
          const [off, len] = randRange();
          const what = `op ${i} (seed ${seed})`;
          if (op < 8) {
            const data = r.bytes(len);
            await img.write(off, data);
            data.copy(ref, off);
          } else if (op < 13) {
            const got = await img.read(off, len);
            const diff = firstDiff(got, ref.subarray(off, off + len));
            expect(diff, `${what}: read [${off}, +${len}) differs at +${diff}`).toBe(-1);
          } else if (op < 15) {
            await img.discard(off, len);
            discardRef(ref, off, len, cs, v2 && !!cfg.backing);
          } else if (op < 17) {
            await img.writeZeroes(off, len, r.int(2) === 0);
            ref.fill(0, off, off + len);
          } else if (op < 18) {
            // Concurrent writes to disjoint neighbouring ranges, as a device with a queue issues them.
            const jobs: Array<Promise<void>> = [];
            const step = Math.max(1, Math.floor(cs / 3));
            for (let j = 0; j < 4 && off + j * step < cfg.size; j++) {
              const o = off + j * step;
              const l = Math.min(step, cfg.size - o);
              const data = r.bytes(l);
              jobs.push(img.write(o, data));
              data.copy(ref, o);
            }
            await Promise.all(jobs);
          } else if (op < 19) {
            await img.flush();
          } else {
            await img.close();
            img = await openImage(path);
          }
        }
        const all = await img.read(0, cfg.size);
        expect(firstDiff(all, ref), 'whole-disk read differs').toBe(-1);
        await img.close();

        const check = qemuCheck(path);
        expect(check.status, check.output).toBe(0);
        const oracle = qemuRaw(path, t.dir);
        const diff = firstDiff(oracle, ref);
        expect(diff, `qemu-img convert differs at ${diff}`).toBe(-1);
      });
    }
  }

  it('512-byte clusters: filling the disk grows the refcount table; check and convert agree', async () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'grow.qcow2');
    const size = 12 * MiB;
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', path, String(size));
    const r = rng(42);
    const ref = Buffer.alloc(size);
    const img = await openImage(path);
    // Initially one refcount table cluster: 64 blocks of 256 clusters = 8 MiB of file.
    for (let off = 0; off < size; off += 256 * 1024) {
      const data = r.bytes(256 * 1024 - 512);
      await img.write(off + 512, data);
      data.copy(ref, off + 512);
    }
    const got = await img.read(0, size);
    expect(firstDiff(got, ref)).toBe(-1);
    expect((img as Qcow2Image).headerInfo.refcountTableClusters).toBe(1);
    await img.close();
    const info = JSON.parse(qemuImg('info', '--output=json', path)) as { 'actual-size': number };
    expect(info['actual-size']).toBeGreaterThan(8 * MiB);
    const check = qemuCheck(path);
    expect(check.status, check.output).toBe(0);
    const oracle = qemuRaw(path, t.dir);
    expect(firstDiff(oracle, ref)).toBe(-1);
    // The header now points to a larger refcount table.
    const reopened = await Qcow2Image.open(path, { readOnly: true });
    expect(reopened.headerInfo.refcountTableClusters).toBeGreaterThan(1);
    await reopened.close();
  });
});

describe.skipIf(!hasQemuImg)('qcow2 under concurrent requests', () => {
  it('concurrent writes to different sectors of the same unallocated clusters all land (copy-up from backing)', async () => {
    const t = tempDir();
    try {
      const base = join(t.dir, 'base.raw');
      const r = rng(99);
      const ref = r.bytes(2 * MiB);
      writeFileSync(base, ref);
      const path = join(t.dir, 'top.qcow2');
      qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', 'base.raw', '-F', 'raw', path);
      const img = await openImage(path);
      const jobs: Array<Promise<unknown>> = [];
      // 8 sectors in each of 6 clusters (two L2-table-free clusters share a table), in a shuffled order, with reads mixed in.
      const sectors: number[] = [];
      for (let c = 0; c < 6; c++)
        for (let s = 0; s < 8; s++) sectors.push(c * 65536 + s * 8192 + 512 * (s % 3));
      for (let i = sectors.length - 1; i > 0; i--) {
        const j = r.int(i + 1);
        [sectors[i], sectors[j]] = [sectors[j]!, sectors[i]!];
      }
      for (const off of sectors) {
        const data = r.bytes(1000);
        data.copy(ref, off);
        jobs.push(img.write(off, data));
        jobs.push(img.read(off + 4096, 512));
      }
      // Discards and zero writes of other clusters at the same time.
      jobs.push(img.writeZeroes(10 * 65536, 65536, true));
      ref.fill(0, 10 * 65536, 11 * 65536);
      await Promise.all(jobs);
      expect(firstDiff(await img.read(0, 2 * MiB), ref)).toBe(-1);
      await img.close();
      const check = qemuCheck(path);
      expect(check.status, check.output).toBe(0);
      expect(firstDiff(qemuRaw(path, t.dir), ref)).toBe(-1);
    } finally {
      t.cleanup();
    }
  });
});
