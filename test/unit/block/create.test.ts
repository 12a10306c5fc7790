import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createImage, resizeImage } from '../../../src/block/create.js';
import { BlockError } from '../../../src/block/image.js';
import { openImage } from '../../../src/block/open.js';
import { firstDiff, hasQemuImg, qemuCheck, qemuImg, qemuRaw, qemuRawSlice, rng, tempDir } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

interface Info {
  'virtual-size': number;
  format: string;
  'cluster-size'?: number;
  'backing-filename'?: string;
  'backing-filename-format'?: string;
  'format-specific'?: { data: { compat: string; 'refcount-bits': number } };
}
const info = (path: string) => JSON.parse(qemuImg('info', '--output=json', path)) as Info;

describe('createImage and resizeImage', () => {
  let cleanup = () => {};
  let dir = '';
  afterEach(() => cleanup());
  const setup = () => {
    const t = tempDir();
    cleanup = t.cleanup;
    dir = t.dir;
  };

  it('a raw image is a sparse file of the size', async () => {
    setup();
    const path = join(dir, 'd.img');
    await createImage(path, { format: 'raw', size: 10 * GiB });
    const st = statSync(path);
    expect(st.size).toBe(10 * GiB);
    expect(st.blocks * 512).toBeLessThan(MiB);
  });

  it('refuses an existing file, bad sizes, cluster sizes, and raw backing files', async () => {
    setup();
    const path = join(dir, 'd.qcow2');
    writeFileSync(path, 'x');
    await expect(createImage(path, { format: 'qcow2', size: MiB })).rejects.toThrow(/EEXIST|exists/);
    await expect(createImage(join(dir, 'e.qcow2'), { format: 'qcow2', size: 1000 })).rejects.toThrow(
      /multiple of 512/,
    );
    await expect(
      createImage(join(dir, 'e.qcow2'), { format: 'qcow2', size: MiB, clusterSize: 3000 }),
    ).rejects.toThrow(/cluster size/);
    await expect(
      createImage(join(dir, 'e.qcow2'), { format: 'qcow2', size: MiB, clusterSize: 4 * MiB }),
    ).rejects.toThrow(/cluster size/);
    await expect(
      createImage(join(dir, 'e.img'), { format: 'raw', size: MiB, backingFile: 'd.qcow2' }),
    ).rejects.toBeInstanceOf(BlockError);
    await expect(
      createImage(join(dir, 'f.qcow2'), { format: 'qcow2', size: MiB, backingFile: 'missing.img' }),
    ).rejects.toThrow(/missing\.img/);
    expect(existsSync(join(dir, 'e.qcow2'))).toBe(false);
    expect(existsSync(join(dir, 'f.qcow2'))).toBe(false);
  });

  describe.skipIf(!hasQemuImg)('qcow2 files that qemu-img accepts', () => {
    const cases: Array<[string, number, number | undefined]> = [
      ['1 GiB, default clusters', GiB, undefined],
      ['1 TiB, default clusters', 1024 * GiB, undefined],
      ['odd size, 512-byte clusters', 3 * MiB + 512, 512],
      ['64 GiB, 512-byte clusters (multi-cluster L1, several refcount blocks)', 64 * GiB, 512],
      ['100 GiB, 2 MiB clusters', 100 * GiB, 2 * MiB],
      ['zero size', 0, undefined],
    ];
    for (const [name, size, clusterSize] of cases) {
      it(name, async () => {
        setup();
        const path = join(dir, 'd.qcow2');
        await createImage(path, { format: 'qcow2', size, clusterSize });
        const check = qemuCheck(path);
        expect(check.status, check.output).toBe(0);
        const i = info(path);
        expect(i.format).toBe('qcow2');
        expect(i['virtual-size']).toBe(size);
        expect(i['cluster-size']).toBe(clusterSize ?? 65536);
        expect(i['format-specific']?.data.compat).toBe('1.1');
        expect(i['format-specific']?.data['refcount-bits']).toBe(16);
        // And mvisor writes to it cleanly.
        if (size > 0) {
          const img = await openImage(path);
          await img.write(size - 4096, Buffer.alloc(4096, 1));
          await img.write(0, Buffer.alloc(100000, 2));
          await img.close();
          const after = qemuCheck(path);
          expect(after.status, after.output).toBe(0);
        }
      });
    }

    it('with a backing file: relative name kept, format recorded, size taken from the backing file', async () => {
      setup();
      const base = join(dir, 'base.img');
      const content = rng(1).bytes(3 * MiB);
      writeFileSync(base, content);
      const top = join(dir, 'top.qcow2');
      await createImage(top, { format: 'qcow2', backingFile: 'base.img' });
      const i = info(top);
      expect(i['virtual-size']).toBe(3 * MiB);
      expect(i['backing-filename']).toBe('base.img');
      expect(i['backing-filename-format']).toBe('raw');
      expect(qemuCheck(top).status).toBe(0);
      const img = await openImage(top);
      expect(Buffer.from(await img.read(0, 3 * MiB)).equals(content)).toBe(true);
      await img.close();

      const top2 = join(dir, 'top2.qcow2');
      await createImage(top2, { format: 'qcow2', backingFile: top, backingFormat: 'qcow2', size: 4 * MiB });
      expect(info(top2)['backing-filename-format']).toBe('qcow2');
      expect(firstDiff(qemuRaw(top2, dir).subarray(0, 3 * MiB), content)).toBe(-1);
    });

    it('resizeImage grows qcow2 in place and across a new L1 table; shrinking is refused', async () => {
      setup();
      const path = join(dir, 'd.qcow2');
      await createImage(path, { format: 'qcow2', size: 10 * MiB, clusterSize: 4096 });
      const img = await openImage(path);
      const data = rng(3).bytes(10 * MiB);
      await img.write(0, data);
      await img.close();
      // 4 KiB clusters: one L2 table maps 2 MiB, one L1 cluster holds 512 entries (1 GiB).
      await resizeImage(path, 100 * MiB);
      expect(info(path)['virtual-size']).toBe(100 * MiB);
      expect(qemuCheck(path).status).toBe(0);
      await resizeImage(path, 3 * GiB);
      expect(info(path)['virtual-size']).toBe(3 * GiB);
      const check = qemuCheck(path);
      expect(check.status, check.output).toBe(0);
      const again = await openImage(path);
      expect(again.size).toBe(3 * GiB);
      expect(Buffer.from(await again.read(0, 10 * MiB)).equals(data)).toBe(true);
      expect((await again.read(3 * GiB - 4096, 4096)).every((b) => b === 0)).toBe(true);
      await again.write(3 * GiB - 4096, Buffer.alloc(4096, 7));
      await expect(resizeImage(path, 4 * GiB)).rejects.toThrow(/in use/);
      await again.close();
      await expect(resizeImage(path, GiB)).rejects.toThrow(/shrinking/);
      expect(qemuCheck(path).status).toBe(0);
      expect(qemuRawSlice(path, dir, 3 * GiB - 4096, 4096).every((b) => b === 7)).toBe(true);
      expect(qemuRawSlice(path, dir, 0, 10 * MiB).equals(data)).toBe(true);
    });

    it('resizeImage grows raw files', async () => {
      setup();
      const path = join(dir, 'd.img');
      await createImage(path, { format: 'raw', size: MiB });
      await resizeImage(path, 2 * MiB);
      expect(statSync(path).size).toBe(2 * MiB);
      await expect(resizeImage(path, MiB)).rejects.toThrow(/shrinking/);
      await expect(resizeImage(path, MiB * 3 + 1)).rejects.toThrow(/multiple of 512/);
    });
  });
});
