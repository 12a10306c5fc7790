import { describe, expect, it } from 'vitest';
import { Mutex, RwLock } from '../../../src/block/async-lock.js';
import { TableCache } from '../../../src/block/table-cache.js';

const tick = () => new Promise((r) => setTimeout(r, 1));

describe('Mutex', () => {
  it('runs holders one at a time in arrival order, and a failure does not block the next', async () => {
    const m = new Mutex();
    const log: string[] = [];
    const job = (name: string, fail = false) =>
      m.run(async () => {
        log.push(`${name}+`);
        await tick();
        log.push(`${name}-`);
        if (fail) throw new Error(name);
        return name;
      });
    const results = await Promise.allSettled([job('a'), job('b', true), job('c')]);
    expect(log).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });
});

describe('RwLock', () => {
  it('shares between readers, excludes a writer, and lets a waiting writer go before later readers', async () => {
    const l = new RwLock();
    const log: string[] = [];
    const reader = (name: string) =>
      l.shared(async () => {
        log.push(`${name}+`);
        await tick();
        log.push(`${name}-`);
      });
    const writer = (name: string) =>
      l.exclusive(async () => {
        log.push(`${name}+`);
        await tick();
        log.push(`${name}-`);
      });
    await Promise.all([reader('r1'), reader('r2'), writer('w'), reader('r3')]);
    expect(log.slice(0, 2)).toEqual(['r1+', 'r2+']);
    const w = log.indexOf('w+');
    expect(log.indexOf('r1-')).toBeLessThan(w);
    expect(log.indexOf('r2-')).toBeLessThan(w);
    expect(log.indexOf('w-')).toBe(w + 1);
    expect(log.indexOf('r3+')).toBeGreaterThan(w);
  });
});

describe('TableCache', () => {
  it('loads once for concurrent gets, evicts least recently used, never a pinned table', async () => {
    let loads = 0;
    const cache = new TableCache(2, async (off) => {
      loads++;
      await tick();
      return Buffer.from([off]);
    });
    const [a, b] = await Promise.all([cache.get(1), cache.get(1)]);
    expect(a).toBe(b);
    expect(loads).toBe(1);
    const pinned = await cache.acquire(2);
    await cache.get(3); // over capacity: 1 is the least recently used unpinned table
    expect(cache.peek(1)).toBeUndefined();
    expect(cache.peek(2)).toBe(pinned);
    await cache.get(4);
    expect(cache.peek(2)).toBe(pinned);
    cache.release(2);
    await cache.get(5);
    expect(cache.peek(2)).toBeUndefined();
  });
});
