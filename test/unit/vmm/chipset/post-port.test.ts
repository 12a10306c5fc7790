import { describe, expect, it } from 'vitest';
import type { DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { PostPort } from '../../../../src/vmm/chipset/post-port.js';

function fakeCtx(): DeviceContext {
  const log = new MemoryLogger();
  return {
    irq: { setIrq: () => {} },
    log,
    guestErrors: new RateLimitedLog(log),
    requestReset: () => {},
    requestPowerOff: () => {},
  };
}

describe('PostPort', () => {
  it('keeps and reads back the last code', () => {
    const seen: number[] = [];
    const p = new PostPort(fakeCtx(), { onCode: (c) => seen.push(c) });
    expect(p.read(0, 1)).toBe(0);
    p.write(0, 1, 0x3c);
    expect(p.lastCode).toBe(0x3c);
    expect(p.read(0, 1)).toBe(0x3c);
    p.write(0, 2, 0x1234);
    expect(p.lastCode).toBe(0x34);
    expect(seen).toEqual([0x3c, 0x34]);
    p.reset();
    expect(p.lastCode).toBe(0);
  });

  it('accepts every value and round-trips its state', () => {
    const p = new PostPort(fakeCtx());
    for (const size of [1, 2, 4] as const) {
      for (let v = 0; v < 256; v++) {
        p.write(0, size, v);
        expect(p.read(0, size)).toBe(v);
      }
    }
    p.write(0, 1, 0xaa);
    const s = p.saveState();
    const q = new PostPort(fakeCtx());
    q.loadState(JSON.parse(JSON.stringify(s)));
    expect(q.lastCode).toBe(0xaa);
    expect(() => q.loadState({ version: 2, code: 1 })).toThrow();
    expect(() => q.loadState({ version: 1, code: 300 })).toThrow();
  });
});
