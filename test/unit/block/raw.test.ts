import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockError } from '../../../src/block/image.js';
import { RawImage } from '../../../src/block/raw.js';
import { rng, tempDir } from './helpers.js';

const MiB = 1024 * 1024;

describe('raw images', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());
  const setup = (size = 2 * MiB) => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'disk.img');
    const content = rng(size).bytes(size);
    writeFileSync(path, content);
    return { path, content };
  };

  it('reads and writes at any offset, into a caller buffer or a new one', async () => {
    const { path, content } = setup();
    const img = await RawImage.open(path);
    expect(img.size).toBe(2 * MiB);
    expect(img.path).toBe(path);
    const into = new Uint8Array(1000);
    const got = await img.read(12345, 777, into);
    expect(got.buffer).toBe(into.buffer);
    expect(Buffer.from(got).equals(content.subarray(12345, 12345 + 777))).toBe(true);
    const data = Buffer.alloc(3333, 0x5a);
    await img.write(2 * MiB - 3333, data);
    await img.flush();
    data.copy(content, 2 * MiB - 3333);
    await img.close();
    expect(readFileSync(path).equals(content)).toBe(true);
  });

  it('writeZeroes writes zeroes (with or without unmap); discard keeps the data', async () => {
    const { path, content } = setup();
    const img = await RawImage.open(path);
    await img.writeZeroes(100, (3 * MiB) / 2, true);
    await img.writeZeroes(2 * MiB - 10, 10);
    await img.discard(0, 2 * MiB);
    await img.close();
    content.fill(0, 100, 100 + (3 * MiB) / 2);
    content.fill(0, 2 * MiB - 10);
    expect(readFileSync(path).equals(content)).toBe(true);
  });

  it('rejects ranges outside the disk and writes to a read-only image', async () => {
    const { path } = setup();
    const img = await RawImage.open(path, { readOnly: true });
    await expect(img.read(2 * MiB - 1, 2)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(img.read(-1, 1)).rejects.toBeInstanceOf(BlockError);
    await expect(img.read(0.5, 1)).rejects.toBeInstanceOf(BlockError);
    await expect(img.write(0, Buffer.alloc(1))).rejects.toMatchObject({ code: 'EROFS' });
    await expect(img.writeZeroes(0, 1)).rejects.toMatchObject({ code: 'EROFS' });
    await expect(img.discard(0, 1)).rejects.toMatchObject({ code: 'EROFS' });
    await img.flush();
    await img.close();
    await expect(img.read(0, 1)).rejects.toThrow(/closed/);
  });

  it('a file shortened behind its back reads zeroes past the end', async () => {
    const { path } = setup();
    const img = await RawImage.open(path, { lock: false });
    writeFileSync(path, Buffer.alloc(1000, 1));
    const got = await img.read(900, 200);
    expect(got.subarray(0, 100).every((b) => b === 1)).toBe(true);
    expect(got.subarray(100).every((b) => b === 0)).toBe(true);
    await img.close();
  });
});
