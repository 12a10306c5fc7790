import { describe, expect, it } from 'vitest';
import { Bus, BusOverlapError } from '../../../../src/vmm/core/bus.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import type { IoHandler } from '../../../../src/vmm/core/device.js';

function recorder(): IoHandler & { log: string[] } {
  const log: string[] = [];
  return {
    log,
    read: (off, size) => {
      log.push(`r${off}/${size}`);
      return 0x40 + off;
    },
    write: (off, size, v) => void log.push(`w${off}/${size}=${v}`),
  };
}

describe('Bus', () => {
  it('delivers offsets relative to the registered base', () => {
    const bus = new Bus('pio');
    const d = recorder();
    bus.register(0x3f8, 8, d, 'com1');
    expect(bus.read(0x3fd, 1)).toBe(0x45);
    bus.write(0x3f8, 1, 0x41);
    expect(d.log).toEqual(['r5/1', 'w0/1=65']);
  });

  it('refuses overlapping ranges and names both owners', () => {
    const bus = new Bus('pio');
    bus.register(0x70, 2, recorder(), 'rtc');
    expect(() => bus.register(0x71, 4, recorder(), 'other')).toThrow(BusOverlapError);
    expect(() => bus.register(0x71, 4, recorder(), 'other')).toThrow(/other.*overlaps rtc/);
    bus.register(0x72, 2, recorder(), 'adjacent');
    expect(bus.list().map((r) => r.owner)).toEqual(['rtc', 'adjacent']);
  });

  it('answers unhandled reads with all-ones and logs them once per burst', () => {
    const log = new MemoryLogger();
    const bus = new Bus('mmio', new RateLimitedLog(log, 2, 60_000));
    expect(bus.read(0x1000, 1)).toBe(0xff);
    expect(bus.read(0x1000, 2)).toBe(0xffff);
    expect(bus.read(0x1000, 4)).toBe(0xffffffff);
    bus.write(0x1000, 4, 1);
    for (let i = 0; i < 100; i++) bus.read(0x2000, 1);
    expect(bus.unhandled).toBe(104);
    expect(log.lines.filter((l) => l.includes('unhandled mmio read')).length).toBe(2);
    expect(log.lines.filter((l) => l.includes('unhandled mmio write')).length).toBe(1);
  });

  it('finds the right device among many (binary search and cache)', () => {
    const bus = new Bus('pio');
    const ds = Array.from({ length: 50 }, () => recorder());
    ds.forEach((d, i) => bus.register(i * 16, 8, d, `d${i}`));
    for (let i = 49; i >= 0; i--) bus.write(i * 16 + 3, 1, i);
    ds.forEach((d, i) => expect(d.log).toEqual([`w3/1=${i}`]));
    expect(bus.read(8, 1)).toBe(0xff); // gap between d0 and d1
    expect(bus.unregister(16)).toBe(true);
    expect(bus.read(16, 1)).toBe(0xff);
  });
});
