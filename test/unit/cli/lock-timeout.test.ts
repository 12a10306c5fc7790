/**
 * --lock-timeout: wait for the state lock's holder to finish instead of
 * failing at once; fail after the wait naming the holder.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lockTimeoutMs, takeLock } from '../../../src/cli/common.js';
import { StateLockedError, StateStore } from '../../../src/engine/state/store.js';
import { tempDir } from '../../helpers/mvisor.js';

describe('--lock-timeout', () => {
  it('reads durations; a bad one is a usage error', () => {
    expect(lockTimeoutMs(undefined)).toBe(0);
    expect(lockTimeoutMs('30')).toBe(30_000);
    expect(lockTimeoutMs('2m')).toBe(120_000);
    expect(() => lockTimeoutMs('soon')).toThrow(/^--lock-timeout: invalid duration "soon"/);
  });

  it('waits for a holder that finishes, and fails after the wait when it does not', async () => {
    const path = join(tempDir('mvctl-lock-'), 'state.db');
    const holder = StateStore.open(path);
    const waiter = StateStore.open(path);
    try {
      const held = holder.acquireLock('mvctl apply');
      setTimeout(() => held.release(), 300);
      const t0 = Date.now();
      const lock = await takeLock(waiter, 'mvctl destroy', 5000);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      expect(waiter.lockHolder()?.command).toBe('mvctl destroy');
      lock.release();

      holder.acquireLock('mvctl apply');
      const t1 = Date.now();
      await expect(takeLock(waiter, 'mvctl destroy', 600)).rejects.toThrow(
        /^state is locked by `mvctl apply` \(pid \d+ .*\(waited \d+ s: --lock-timeout\)$/,
      );
      expect(Date.now() - t1).toBeGreaterThanOrEqual(600);
      await expect(takeLock(waiter, 'mvctl destroy')).rejects.toThrow(StateLockedError);
    } finally {
      holder.close();
      waiter.close();
    }
  });
});
