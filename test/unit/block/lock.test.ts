import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { tempDir } from './helpers.js';

describe('lockImage', () => {
  let cleanup = () => {};
  afterEach(() => {
    vi.doUnmock('../../../src/vmm/kvm/addon.js');
    vi.resetModules();
    cleanup();
  });

  it("uses the native addon's flock when it has one (LOCK_EX|LOCK_NB, LOCK_SH|LOCK_NB) and maps EWOULDBLOCK", async () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const calls: Array<[number, number]> = [];
    vi.resetModules();
    vi.doMock('../../../src/vmm/kvm/addon.js', () => ({
      loadAddon: () => ({
        flock: (fd: number, op: number) => {
          calls.push([fd, op]);
          if (calls.length === 3)
            throw Object.assign(new Error('Resource temporarily unavailable'), { code: 'EWOULDBLOCK' });
        },
      }),
    }));
    const { lockImage } = await import('../../../src/block/lock.js');
    const fh = await open(join(t.dir, 'x'), 'w');
    await lockImage(fh, 'x', 'exclusive');
    await lockImage(fh, 'x', 'shared');
    await expect(lockImage(fh, 'x', 'exclusive')).rejects.toThrow(/in use by another process/);
    expect(calls).toEqual([
      [fh.fd, 2 | 4],
      [fh.fd, 1 | 4],
      [fh.fd, 2 | 4],
    ]);
    await fh.close();
  });

  it('falls back to flock(1) on the inherited descriptor when the addon is missing', async () => {
    const t = tempDir();
    cleanup = t.cleanup;
    vi.resetModules();
    vi.doMock('../../../src/vmm/kvm/addon.js', () => ({
      loadAddon: () => {
        throw new Error('the native addon is not built');
      },
    }));
    const { lockImage } = await import('../../../src/block/lock.js');
    const path = join(t.dir, 'x');
    const a = await open(path, 'w');
    const b = await open(path, 'r');
    await lockImage(a, path, 'exclusive');
    // The lock outlives the flock(1) child: it belongs to our open file.
    await expect(lockImage(b, path, 'shared')).rejects.toThrow(/cannot lock .* for reading/);
    await a.close();
    await lockImage(b, path, 'shared');
    await b.close();
  });
});
