import { describe, expect, it } from 'vitest';
import type { DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { DebugConsole } from '../../../../src/vmm/firmware/debug-console.js';

function fakeCtx(): { ctx: DeviceContext; log: MemoryLogger } {
  const log = new MemoryLogger();
  const ctx: DeviceContext = {
    irq: { setIrq: () => {} },
    log,
    guestErrors: new RateLimitedLog(log),
    requestReset: () => {},
    requestPowerOff: () => {},
  };
  return { ctx, log };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

function collect() {
  const chunks: Uint8Array[] = [];
  const text = () => Buffer.concat(chunks).toString('latin1');
  return { chunks, text, sink: (d: Uint8Array) => chunks.push(d) };
}

describe('DebugConsole', () => {
  it('reads back 0xE9', () => {
    const c = new DebugConsole(fakeCtx().ctx, { sink: () => {} });
    expect(c.read(0, 1)).toBe(0xe9);
  });

  it('batches writes and flushes them on setImmediate', async () => {
    const out = collect();
    const c = new DebugConsole(fakeCtx().ctx, { sink: out.sink });
    for (const ch of Buffer.from('SeaBIOS (version 1.16)\n')) c.write(0, 1, ch);
    expect(out.chunks).toHaveLength(0);
    await tick();
    expect(out.chunks).toHaveLength(1);
    expect(out.text()).toBe('SeaBIOS (version 1.16)\n');
    c.close();
  });

  it('flushes on close and when the buffer fills, and drops writes after close', () => {
    const out = collect();
    const c = new DebugConsole(fakeCtx().ctx, { sink: out.sink });
    for (let i = 0; i < 5000; i++) c.write(0, 1, 0x41 + (i % 26));
    expect(out.chunks.length).toBe(1);
    expect(out.chunks[0]!.length).toBe(4096);
    c.write(0, 2, 0x4142); // low byte only
    c.close();
    expect(out.text().length).toBe(5001);
    expect(out.text().at(-1)).toBe('B');
    c.write(0, 1, 0x41);
    c.close();
    expect(out.text().length).toBe(5001);
  });

  it('survives a failing sink and every written value', async () => {
    const f = fakeCtx();
    const c = new DebugConsole(f.ctx, {
      sink: () => {
        throw new Error('disk full');
      },
    });
    for (const size of [1, 2, 4] as const) for (let v = 0; v < 256; v++) c.write(0, size, v * 0x01010101);
    await tick();
    c.write(0, 1, 1);
    c.close();
    expect(f.log.lines.filter((l) => l.includes('disk full'))).toHaveLength(1);
  });

  it('round-trips its state', () => {
    const c = new DebugConsole(fakeCtx().ctx, { sink: () => {} });
    const s = c.saveState();
    c.loadState(JSON.parse(JSON.stringify(s)));
    expect(() => c.loadState({ version: 9 })).toThrow();
    c.close();
  });
});
