/**
 * I/O limits on a real raw image: requests wait their turn (in arrival
 * order) so that the rate of requests and bytes stays under the limits;
 * flushes are not held back; without limits the image is not wrapped.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openImage } from '../../../src/block/open.js';
import { ThrottledImage, withIoLimits } from '../../../src/block/throttle.js';
import type { BlockImage } from '../../../src/block/image.js';
import { tempDir } from './helpers.js';

const KiB = 1024;
const cleanups: Array<() => void> = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

async function image(): Promise<BlockImage> {
  const t = tempDir();
  cleanups.push(t.cleanup);
  const path = join(t.dir, 'disk.raw');
  writeFileSync(path, Buffer.alloc(1024 * KiB, 7));
  return openImage(path, { format: 'raw' });
}

/** Milliseconds `f` takes. */
async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

describe('I/O limits', () => {
  it('spaces requests to at most iops a second, first one at once, in arrival order', async () => {
    const img = new ThrottledImage(await image(), { iops: 50 });
    const order: number[] = [];
    const first = await timed(() => img.read(0, 512));
    // 10 more requests at 50/s: the last may start 200 ms after the first of them.
    const ms = await timed(() =>
      Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 ? img.write(i * 512, new Uint8Array(512).fill(i)) : img.read(i * 512, 512)).then(() =>
            order.push(i),
          ),
        ),
      ),
    );
    expect(first).toBeLessThan(15);
    expect(ms).toBeGreaterThanOrEqual(190);
    expect(order).toEqual([...Array(10).keys()]);
    expect((await img.read(512, 512))[0]).toBe(1);
    await img.close();
  });

  it('keeps bytes a second under bytesPerSecond; flush is not held back', async () => {
    const img = withIoLimits(await image(), { bytesPerSecond: 256 * KiB });
    expect(img).toBeInstanceOf(ThrottledImage);
    const data = new Uint8Array(64 * KiB).fill(9);
    // Four 64 KiB writes at 256 KiB/s: the fourth starts 750 ms after the first.
    const writes = Promise.all([0, 1, 2, 3].map((i) => img.write(i * 64 * KiB, data)));
    const flush = await timed(() => img.flush());
    expect(flush).toBeLessThan(100);
    expect(await timed(() => writes)).toBeGreaterThanOrEqual(600);
    expect(Buffer.from(await img.read(0, 256 * KiB)).every((b) => b === 9)).toBe(true);
    expect(img.size).toBe(1024 * KiB);
    expect(img.format).toBe('raw');
    await img.close();
  });

  it('leaves an image without limits unwrapped', async () => {
    const img = await image();
    expect(withIoLimits(img, undefined)).toBe(img);
    expect(withIoLimits(img, {})).toBe(img);
    await img.close();
  });
});
