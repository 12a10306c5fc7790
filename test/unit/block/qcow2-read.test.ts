import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
  writeSync,
  closeSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockError } from '../../../src/block/image.js';
import { openImage } from '../../../src/block/open.js';
import { Qcow2Image } from '../../../src/block/qcow2.js';
import { firstDiff, hasQemuImg, qemuCheck, qemuImg, qemuRaw, rng, tempDir } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function qemuIo(path: string, fmt: string, ...cmds: string[]): void {
  execFileSync('qemu-io', ['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), path], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Writes a spread of patterns, zero writes and discards with qemu-io. */
function scribble(path: string, fmt = 'qcow2', salt = 0): void {
  qemuIo(
    path,
    fmt,
    `write -P ${0x11 + salt} 0 100k`,
    `write -P ${0x22 + salt} 300k 5k`,
    `write -P ${0x33 + salt} 1023k 2k`,
    `write -P ${0x44 + salt} 2m 512k`,
    `write -z 2100k 128k`,
    `write -P ${0x55 + salt} 3m 64k`,
    `discard 3m 64k`,
    `write -P ${0x66 + salt} 4095k 1k`,
  );
}

async function readAll(path: string): Promise<Buffer> {
  const img = await openImage(path, { readOnly: true });
  try {
    // Odd-sized reads, so requests cross clusters and L2 tables unaligned.
    const out = Buffer.alloc(img.size);
    for (let off = 0; off < img.size; off += 77 * KiB + 512) {
      const len = Math.min(77 * KiB + 512, img.size - off);
      await img.read(off, len, out.subarray(off, off + len));
    }
    return out;
  } finally {
    await img.close();
  }
}

describe.skipIf(!hasQemuImg)('qcow2 images made by QEMU read back as qemu-img convert sees them', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  const variants: Array<[string, string[]]> = [
    ['version 3 (compat=1.1)', ['-o', 'compat=1.1']],
    ['version 2 (compat=0.10)', ['-o', 'compat=0.10']],
    ['version 3, 4 KiB clusters', ['-o', 'cluster_size=4096']],
    ['version 3, 2 MiB clusters', ['-o', 'cluster_size=2M']],
    ['version 3, preallocation=metadata', ['-o', 'preallocation=metadata']],
  ];
  for (const [name, opts] of variants) {
    it(`${name}: patterns, zero writes and discards`, async () => {
      const t = tempDir();
      cleanup = t.cleanup;
      const path = join(t.dir, 'img.qcow2');
      qemuImg('create', '-q', '-f', 'qcow2', ...opts, path, String(5 * MiB));
      scribble(path);
      const got = await readAll(path);
      const want = qemuRaw(path, t.dir);
      expect(firstDiff(got, want)).toBe(-1);
      expect(want[0]).toBe(0x11);
    });
  }

  for (const cs of [4096, 65536]) {
    it(`compressed clusters (qemu-img convert -c, ${cs}-byte clusters) read back; writes over them stay consistent`, async () => {
      const t = tempDir();
      cleanup = t.cleanup;
      const r = rng(cs);
      const src = Buffer.alloc(3 * MiB + 4 * KiB);
      // Compressible patterns, some incompressible noise, some zero runs.
      for (let off = 0; off < src.length; off += 32 * KiB) {
        const kind = r.int(3);
        const len = Math.min(32 * KiB, src.length - off);
        if (kind === 0) src.fill(r.int(256), off, off + len);
        else if (kind === 1) for (let i = 0; i < len; i++) src[off + i] = r.int(256);
        else r.bytes(len).copy(src, off);
      }
      const raw = join(t.dir, 'src.raw');
      writeFileSync(raw, src);
      const path = join(t.dir, 'c.qcow2');
      qemuImg('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${cs}`, raw, path);
      const map = qemuImg('map', '--output=json', path);
      // Compressed clusters have data but no plain host offset in qemu-img map.
      expect(map).toMatch(/"data": true}/);
      expect(firstDiff(await readAll(path), src)).toBe(-1);

      // Partial overwrites of compressed clusters copy them up; the compressed refcounts drop.
      const img = await openImage(path);
      for (let i = 0; i < 60; i++) {
        const off = r.int(src.length - 10 * KiB);
        const data = r.bytes(1 + r.int(9 * KiB));
        await img.write(off, data);
        data.copy(src, off);
      }
      await img.discard(64 * KiB, 256 * KiB);
      src.fill(0, 64 * KiB, 320 * KiB);
      expect(firstDiff(await img.read(0, src.length), src)).toBe(-1);
      await img.close();
      const check = qemuCheck(path);
      expect(check.status, check.output).toBe(0);
      expect(firstDiff(qemuRaw(path, t.dir), src)).toBe(-1);
    });
  }

  it('a backing chain raw <- qcow2 <- qcow2 with data in each layer (relative names, other directories)', async () => {
    const t = tempDir();
    cleanup = t.cleanup;
    mkdirSync(join(t.dir, 'base'));
    mkdirSync(join(t.dir, 'vm'));
    const base = join(t.dir, 'base', 'base.raw');
    writeFileSync(base, rng(9).bytes(4 * MiB));
    const mid = join(t.dir, 'base', 'mid.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', mid, String(5 * MiB));
    scribble(mid, 'qcow2', 0);
    const top = join(t.dir, 'vm', 'top.qcow2');
    qemuImg(
      'create',
      '-q',
      '-f',
      'qcow2',
      '-b',
      '../base/mid.qcow2',
      '-F',
      'qcow2',
      '-o',
      'cluster_size=4096',
      top,
    );
    qemuIo(
      top,
      'qcow2',
      'write -P 0x77 50k 20k',
      'write -z 310k 1k',
      'write -P 0x78 4090k 100k',
      'write -z 2200k 64k',
    );
    const want = qemuRaw(top, t.dir);
    expect(firstDiff(await readAll(top), want)).toBe(-1);

    // Writes to the top copy up from the chain; the lower layers stay as they were.
    const baseBefore = readFileSync(base);
    const midBefore = readFileSync(mid);
    const img = await openImage(top);
    expect(img.size).toBe(5 * MiB);
    const r = rng(10);
    for (let i = 0; i < 40; i++) {
      const off = r.int(want.length - 8 * KiB);
      const data = r.bytes(1 + r.int(8 * KiB));
      await img.write(off, data);
      data.copy(want, off);
    }
    await img.writeZeroes(1 * MiB + 4 * KiB, 64 * KiB, true);
    want.fill(0, 1 * MiB + 4 * KiB, 1 * MiB + 68 * KiB);
    await img.close();
    expect(readFileSync(base).equals(baseBefore)).toBe(true);
    expect(readFileSync(mid).equals(midBefore)).toBe(true);
    const check = qemuCheck(top);
    expect(check.status, check.output).toBe(0);
    expect(firstDiff(qemuRaw(top, t.dir), want)).toBe(-1);
  });

  it('a backing file without a format extension is detected', async () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const base = join(t.dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', base, String(2 * MiB));
    qemuIo(base, 'qcow2', 'write -P 0x5a 0 1m');
    const top = join(t.dir, 'top.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top);
    // Turn the backing format extension into an unknown one (ignored by readers).
    const buf = readFileSync(top);
    const at = buf.indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]));
    expect(at).toBeGreaterThan(0);
    const fd = openSync(top, 'r+');
    writeSync(fd, Buffer.from([0x12, 0x34, 0x56, 0x78]), 0, 4, at);
    closeSync(fd);
    const img = await openImage(top, { readOnly: true });
    const got = await img.read(0, 4096);
    expect(got.every((b) => b === 0x5a)).toBe(true);
    await img.close();
  });

  it('images with internal snapshots: writes copy shared tables and clusters; the snapshot keeps its data', async () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'snap.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', path, String(4 * MiB));
    scribble(path);
    qemuImg('snapshot', '-c', 'before', path);
    const before = qemuRaw(path, t.dir);
    const want = Buffer.from(before);
    const img = await openImage(path);
    const r = rng(77);
    for (let i = 0; i < 50; i++) {
      const off = r.int(want.length - 8 * KiB);
      const data = r.bytes(1 + r.int(8 * KiB));
      await img.write(off, data);
      data.copy(want, off);
    }
    await img.discard(0, 64 * KiB);
    want.fill(0, 0, 64 * KiB);
    await img.writeZeroes(2 * MiB, 128 * KiB);
    want.fill(0, 2 * MiB, 2 * MiB + 128 * KiB);
    expect(firstDiff(await img.read(0, want.length), want)).toBe(-1);
    await img.close();
    const check = qemuCheck(path);
    expect(check.status, check.output).toBe(0);
    expect(firstDiff(qemuRaw(path, t.dir), want)).toBe(-1);
    const copy = join(t.dir, 'applied.qcow2');
    copyFileSync(path, copy);
    qemuImg('snapshot', '-a', 'before', copy);
    expect(firstDiff(qemuRaw(copy, t.dir), before)).toBe(-1);
  });

  it('a dirty image (lazy refcounts, not closed) opens read-only and refuses writing', async () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'dirty.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', path, String(MiB));
    try {
      qemuIo(path, 'qcow2', 'write -P 7 0 64k', 'abort');
    } catch {
      // qemu-io dies by SIGABRT on purpose, leaving the dirty bit set
    }
    await expect(Qcow2Image.open(path)).rejects.toThrow(/dirty/);
    await expect(openImage(path)).rejects.toBeInstanceOf(BlockError);
    const img = await openImage(path, { readOnly: true });
    expect((await img.read(0, 512)).every((b) => b === 7)).toBe(true);
    await img.close();
  });
});
