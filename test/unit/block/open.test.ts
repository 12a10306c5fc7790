import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockError } from '../../../src/block/image.js';
import { detectFormat, openImage, snapshotTempDir } from '../../../src/block/open.js';
import { createImage } from '../../../src/block/create.js';
import { hasQemuImg, qemuCheck, rng, tempDir } from './helpers.js';

const MiB = 1024 * 1024;
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const snapshotDirs = () => readdirSync(snapshotTempDir()).filter((n) => n.startsWith('mvisor-snapshot-'));

describe('openImage', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());
  const setup = () => {
    const t = tempDir();
    cleanup = t.cleanup;
    return t.dir;
  };

  it('detects the format from the magic', async () => {
    const dir = setup();
    await createImage(join(dir, 'a.qcow2'), { format: 'qcow2', size: MiB });
    await createImage(join(dir, 'b.img'), { format: 'raw', size: MiB });
    expect(await detectFormat(join(dir, 'a.qcow2'))).toBe('qcow2');
    expect(await detectFormat(join(dir, 'b.img'))).toBe('raw');
    const a = await openImage(join(dir, 'a.qcow2'));
    const b = await openImage(join(dir, 'b.img'));
    expect([a.format, a.size, b.format, b.size]).toEqual(['qcow2', MiB, 'raw', MiB]);
    await a.close();
    await b.close();
  });

  it('a missing file is a BlockError naming it', async () => {
    const dir = setup();
    await expect(openImage(join(dir, 'nope.qcow2'))).rejects.toThrow(/nope\.qcow2/);
    await expect(openImage(join(dir, 'nope.qcow2'))).rejects.toBeInstanceOf(BlockError);
  });

  for (const format of ['raw', 'qcow2'] as const) {
    describe(`locking (${format})`, () => {
      it('a second writer is refused while the first has the image open; readers share', async () => {
        const dir = setup();
        const path = join(dir, `disk.${format}`);
        await createImage(path, { format, size: MiB });
        const first = await openImage(path);
        await expect(openImage(path)).rejects.toThrow(/in use by another process/);
        await expect(openImage(path, { readOnly: true })).rejects.toThrow(/in use/);
        await first.close();
        const r1 = await openImage(path, { readOnly: true });
        const r2 = await openImage(path, { readOnly: true });
        await expect(openImage(path)).rejects.toThrow(/cannot lock .* for writing/);
        await r1.close();
        await r2.close();
        const again = await openImage(path);
        await again.close();
      });
    });
  }

  it('a qcow2 overlay holds a shared lock on its backing file', async () => {
    const dir = setup();
    await createImage(join(dir, 'base.qcow2'), { format: 'qcow2', size: MiB });
    await createImage(join(dir, 'top.qcow2'), { format: 'qcow2', backingFile: 'base.qcow2' });
    const top = await openImage(join(dir, 'top.qcow2'));
    await expect(openImage(join(dir, 'base.qcow2'))).rejects.toThrow(/in use/);
    const reader = await openImage(join(dir, 'base.qcow2'), { readOnly: true });
    await reader.close();
    await top.close();
  });

  for (const format of ['raw', 'qcow2'] as const) {
    it(`snapshot mode over ${format}: writes visible while open, the image unchanged, the overlay gone`, async () => {
      const dir = setup();
      const path = join(dir, `disk.${format}`);
      await createImage(path, { format, size: 4 * MiB });
      const seed = await openImage(path);
      const r = rng(5);
      const original = r.bytes(4 * MiB);
      await seed.write(0, original);
      await seed.close();
      const before = sha(path);
      const dirsBefore = snapshotDirs();

      const img = await openImage(path, { snapshot: true });
      expect(img.readOnly).toBe(false);
      expect(img.path).toBe(path);
      expect(img.format).toBe(format);
      expect(img.size).toBe(4 * MiB);
      // The overlay file is unlinked once open: nothing to leak if the process is killed.
      const newDirs = snapshotDirs().filter((d) => !dirsBefore.includes(d));
      expect(newDirs).toHaveLength(1);
      expect(readdirSync(join(snapshotTempDir(), newDirs[0]!))).toEqual([]);
      // The image itself is only read (shared lock): writers are refused, readers welcome.
      await expect(openImage(path)).rejects.toThrow(/in use/);

      const data = Buffer.alloc(10000, 0xab);
      await img.write(12345, data);
      await img.writeZeroes(MiB, 65536);
      await img.discard(2 * MiB, 2 * MiB);
      await img.flush();
      const got = await img.read(0, 4 * MiB);
      expect(Buffer.from(got.subarray(12345, 22345)).equals(data)).toBe(true);
      expect(got.subarray(MiB, MiB + 65536).every((b) => b === 0)).toBe(true);
      expect(Buffer.from(got.subarray(0, 12345)).equals(original.subarray(0, 12345))).toBe(true);
      await img.close();

      expect(sha(path)).toBe(before);
      expect(snapshotDirs().filter((d) => !dirsBefore.includes(d))).toEqual([]);
      const plain = await openImage(path);
      expect(Buffer.from(await plain.read(12345, 100)).equals(original.subarray(12345, 12445))).toBe(true);
      await plain.close();
      if (hasQemuImg && format === 'qcow2') expect(qemuCheck(path).status).toBe(0);
    });
  }

  it('snapshot with readOnly is just a read-only open', async () => {
    const dir = setup();
    const path = join(dir, 'disk.img');
    writeFileSync(path, Buffer.alloc(MiB, 3));
    const img = await openImage(path, { snapshot: true, readOnly: true });
    expect(img.readOnly).toBe(true);
    await expect(img.write(0, Buffer.alloc(512))).rejects.toMatchObject({ code: 'EROFS' });
    await img.close();
  });
});
