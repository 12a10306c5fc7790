import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { CmosRtc, type CmosRtcOptions } from '../../../../src/vmm/chipset/cmos-rtc.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function fakeCtx() {
  const log = new MemoryLogger();
  const irqs: Array<[number, boolean]> = [];
  const resets: string[] = [];
  const ctx: DeviceContext = {
    irq: { setIrq: (gsi, level) => irqs.push([gsi, level]) },
    log,
    guestErrors: new RateLimitedLog(log),
    requestReset: (reason) => resets.push(reason),
    requestPowerOff: () => {},
  };
  return { ctx, irqs, resets, log };
}

const base: CmosRtcOptions = { memoryBytes: 128 * MiB, belowFourGiB: 128 * MiB, aboveFourGiB: 0, cpus: 1 };

function make(opts: Partial<CmosRtcOptions> = {}) {
  const f = fakeCtx();
  const rtc = new CmosRtc(f.ctx, { ...base, ...opts });
  const rd = (idx: number): number => {
    rtc.write(0, 1, idx);
    return rtc.read(1, 1);
  };
  const wr = (idx: number, v: number): void => {
    rtc.write(0, 1, idx);
    rtc.write(1, 1, v);
  };
  return { ...f, rtc, rd, wr };
}

const bcd = (v: number) => (v >> 4) * 10 + (v & 15);

/** Reads the clock as the guest would (24h mode assumed). */
function readTime(rd: (i: number) => number, binary: boolean): number {
  const dec = binary ? (v: number) => v : bcd;
  return Date.UTC(
    dec(rd(0x32)) * 100 + dec(rd(9)),
    dec(rd(8)) - 1,
    dec(rd(7)),
    dec(rd(4)),
    dec(rd(2)),
    dec(rd(0)),
  );
}

afterEach(() => {
  vi.useRealTimers();
});

describe('CmosRtc time', () => {
  it('returns the host time in BCD (default) and binary mode', () => {
    const { rtc, rd, wr } = make();
    expect(rd(0x0b) & 0x04).toBe(0);
    expect(Math.abs(readTime(rd, false) - Date.now())).toBeLessThan(2000);
    expect(rd(0x32)).toBe(0x20);
    wr(0x0b, 0x06); // binary, 24h
    expect(Math.abs(readTime(rd, true) - Date.now())).toBeLessThan(2000);
    expect(rd(0x32)).toBe(20);
    expect(rd(0x0d)).toBe(0x80);
    rtc.close();
  });

  it('encodes 12-hour mode with the PM flag and the day of week', () => {
    const t = Date.UTC(2024, 2, 5, 15, 4, 5); // Tuesday
    const { rd, wr } = make({ clock: () => t });
    expect(rd(4)).toBe(0x15);
    wr(0x0b, 0x00); // BCD, 12h
    expect(rd(4)).toBe(0x83);
    expect(rd(6)).toBe(3);
    expect([rd(9), rd(8), rd(7), rd(2), rd(0)]).toEqual([0x24, 0x03, 0x05, 0x04, 0x05]);
    wr(0x0b, 0x04); // binary, 12h
    expect(rd(4)).toBe(0x83);
  });

  it('freezes the clock while SET is 1 and applies the written time when it clears', () => {
    let now = Date.UTC(2024, 0, 1, 10, 0, 0, 250);
    const { rtc, rd, wr } = make({ clock: () => now });
    wr(0x0b, 0x82); // SET, 24h, BCD
    now += 5000;
    expect(rd(0)).toBe(0x00); // frozen
    wr(9, 0x30);
    wr(8, 0x06);
    wr(7, 0x15);
    wr(4, 0x23);
    wr(2, 0x59);
    wr(0, 0x50);
    now += 3000;
    expect(rd(0)).toBe(0x50); // still frozen, shows the written value
    wr(0x0b, 0x02); // clear SET
    expect(rtc.guestTime()).toBe(Date.UTC(2030, 5, 15, 23, 59, 50));
    now += 12_000;
    expect(readTime(rd, false)).toBe(Date.UTC(2030, 5, 16, 0, 0, 2));
  });

  it('SET clears UIE', () => {
    const { rd, wr } = make({ clock: () => 0 });
    wr(0x0b, 0x92);
    expect(rd(0x0b)).toBe(0x82);
  });

  it('applies a time register write at once while the clock runs', () => {
    let now = Date.UTC(2024, 0, 1, 10, 0, 0, 0);
    const { rd, wr } = make({ clock: () => now });
    wr(2, 0x30); // minutes := 30
    expect(readTime(rd, false)).toBe(Date.UTC(2024, 0, 1, 10, 30, 0));
    now += 61_000;
    expect(readTime(rd, false)).toBe(Date.UTC(2024, 0, 1, 10, 31, 1));
  });

  it('stops the clock while the divider is in reset', () => {
    let now = Date.UTC(2024, 0, 1, 0, 0, 0);
    const { rd, wr } = make({ clock: () => now });
    wr(0x0a, 0x76);
    now += 10_000;
    expect(rd(0)).toBe(0x00);
    wr(0x0a, 0x26);
    now += 1000;
    expect(rd(0)).toBe(0x01);
  });

  it('sets UIP only just before a second boundary', () => {
    let now = Date.UTC(2024, 0, 1, 0, 0, 0, 500);
    const { rd } = make({ clock: () => now });
    expect(rd(0x0a)).toBe(0x26);
    now += 499;
    expect(rd(0x0a)).toBe(0xa6);
  });

  it('rejects a boot order it cannot encode', () => {
    expect(() => make({ bootOrder: 'cdnc' })).toThrow(RangeError);
    expect(() => make({ bootOrder: 'x' })).toThrow(RangeError);
  });
});

describe('CmosRtc interrupts', () => {
  it('raises IRQ 8 for the update-ended interrupt and reg C read clears it', () => {
    vi.useFakeTimers({ now: Date.UTC(2024, 0, 1, 0, 0, 0, 100) });
    const { rtc, rd, wr, irqs } = make();
    rd(0x0c);
    wr(0x0b, 0x12); // UIE
    expect(irqs).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(irqs).toEqual([[8, true]]);
    expect(rd(0x0c) & 0xb0).toBe(0x90); // PF (bit 6) runs at the default 1024 Hz rate too
    expect(irqs).toEqual([
      [8, true],
      [8, false],
    ]);
    expect(rd(0x0c) & 0xb0).toBe(0x00);
    vi.advanceTimersByTime(1000);
    expect(irqs.at(-1)).toEqual([8, true]);
    rtc.close();
  });

  it('fires the periodic interrupt at the reg A rate', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { rtc, rd, wr, irqs } = make();
    wr(0x0a, 0x2f); // 500 ms
    rd(0x0c);
    wr(0x0b, 0x42); // PIE
    vi.advanceTimersByTime(600);
    expect(irqs).toEqual([[8, true]]);
    expect(rd(0x0c) & 0xc0).toBe(0xc0);
    rtc.close();
  });

  it('matches the alarm, with 0xC0-0xFF as "don\'t care"', () => {
    let now = Date.UTC(2024, 0, 1, 12, 0, 58, 0);
    const { rd, wr, irqs } = make({ clock: () => now });
    wr(1, 0x00); // seconds 00
    wr(3, 0xc0); // any minute
    wr(5, 0xff); // any hour
    rd(0x0c);
    now += 1000; // 12:00:59
    expect(rd(0x0c) & 0x20).toBe(0);
    now += 1000; // 12:01:00
    expect(rd(0x0c) & 0x30).toBe(0x30);
    wr(1, 0x30);
    wr(0x0b, 0x22); // AIE
    now += 29_000; // 12:01:29
    wr(0x0b, 0x22); // nudges the lazy evaluation: no match yet
    expect(irqs).toEqual([]);
    now += 1000;
    wr(0x0b, 0x22);
    expect(irqs).toEqual([[8, true]]);
    expect(rd(0x0c) & 0xb0).toBe(0xb0);
  });

  it('calls onAlarm (the chipset S3 wake event) when the alarm fires with AIE, not without', () => {
    let now = Date.UTC(2024, 0, 1, 12, 0, 58, 0);
    let alarms = 0;
    const { rd, wr } = make({ clock: () => now, onAlarm: () => void alarms++ });
    wr(1, 0xc0);
    wr(3, 0xc0);
    wr(5, 0xc0); // every second
    rd(0x0c);
    now += 1000;
    rd(0x0c);
    expect(alarms).toBe(0); // AF set, AIE clear
    wr(0x0b, 0x22);
    now += 1000;
    rd(0x0c);
    expect(alarms).toBe(1);
  });

  it('reports PF in reg C without PIE but raises no IRQ', () => {
    let now = 10_000;
    const { rd, irqs } = make({ clock: () => now });
    rd(0x0c);
    now += 5;
    expect(rd(0x0c) & 0xc0).toBe(0x40);
    expect(irqs).toEqual([]);
  });
});

describe('CmosRtc CMOS contents', () => {
  it('fills the memory bytes for 128 MiB', () => {
    const { rtc } = make();
    const b = (i: number) => rtc.peek(i);
    expect(b(0x15) | (b(0x16) << 8)).toBe(640);
    expect(b(0x17) | (b(0x18) << 8)).toBe(0xffff);
    expect(b(0x30) | (b(0x31) << 8)).toBe(0xffff);
    expect(b(0x34) | (b(0x35) << 8)).toBe((112 * MiB) / 65536);
    expect([b(0x5b), b(0x5c), b(0x5d)]).toEqual([0, 0, 0]);
    expect(b(0x5f)).toBe(0);
    expect(b(0x10)).toBe(0);
    expect(b(0x14)).toBe(0x06);
    expect(b(0x0f)).toBe(0);
  });

  it('fills the memory bytes for 6 GiB (3 below, 3 above 4 GiB) and the CPU count', () => {
    const { rd } = make({ memoryBytes: 6 * GiB, belowFourGiB: 3 * GiB, aboveFourGiB: 3 * GiB, cpus: 2 });
    expect(rd(0x15) | (rd(0x16) << 8)).toBe(640);
    expect(rd(0x17) | (rd(0x18) << 8)).toBe(0xffff);
    expect(rd(0x34) | (rd(0x35) << 8)).toBe(((3 * GiB - 16 * MiB) / 65536) & 0xffff);
    expect(rd(0x34) | (rd(0x35) << 8)).toBe(0xbf00);
    expect(rd(0x5b) | (rd(0x5c) << 8) | (rd(0x5d) << 16)).toBe((3 * GiB) / 65536);
    expect(rd(0x5f)).toBe(1);
  });

  it('encodes the boot order like QEMU', () => {
    const { rd } = make({ bootOrder: 'cdn' });
    expect(rd(0x3d)).toBe(0x32);
    expect(rd(0x38)).toBe(0x40);
    const other = make({ bootOrder: 'n' });
    expect(other.rd(0x3d)).toBe(0x04);
    expect(other.rd(0x38)).toBe(0x00);
  });

  it('keeps NVRAM bytes and exposes the NMI mask bit', () => {
    const { rtc, wr } = make();
    expect(rtc.nmiMasked).toBe(false);
    rtc.write(0, 1, 0x80 | 0x40);
    expect(rtc.nmiMasked).toBe(true);
    rtc.write(1, 1, 0x5a);
    expect(rtc.read(1, 1)).toBe(0x5a);
    rtc.write(0, 1, 0x40);
    expect(rtc.nmiMasked).toBe(false);
    expect(rtc.read(1, 1)).toBe(0x5a);
    wr(0x0f, 0x0a);
    rtc.reset();
    expect(rtc.peek(0x0f)).toBe(0x0a); // the shutdown byte survives a reset
    expect(rtc.read(0, 1)).toBe(0xff); // index port is write-only
  });
});

describe('CmosRtc robustness and state', () => {
  it('survives every value written to every register', () => {
    let now = Date.UTC(2024, 0, 1);
    const { rtc } = make({ clock: () => now });
    for (let idx = 0; idx < 256; idx++) {
      for (let v = 0; v < 256; v++) {
        rtc.write(0, 1, idx);
        rtc.write(1, 1, v);
        rtc.read(1, 1);
        rtc.read(0, 1);
        now += 7;
      }
    }
    for (const size of [2, 4] as const) {
      for (let v = 0; v < 4096; v++) {
        rtc.write(v & 1, size, v * 0x01010101);
        rtc.read(v & 1, size);
      }
    }
    rtc.close();
  });

  it('round-trips its state', () => {
    let now = Date.UTC(2024, 0, 1, 8, 0, 0);
    const a = make({ clock: () => now });
    a.wr(0x0b, 0x06);
    a.wr(4, 20); // 20:00
    a.wr(0x40, 0x99);
    a.rtc.write(0, 1, 0x8d);
    const state = a.rtc.saveState();
    const b = make({ clock: () => now });
    b.rtc.loadState(JSON.parse(JSON.stringify(state)));
    expect(b.rtc.saveState()).toEqual(state);
    expect(b.rtc.nmiMasked).toBe(true);
    now += 3000;
    expect(b.rd(0x40)).toBe(0x99);
    expect(readTime(b.rd, true)).toBe(Date.UTC(2024, 0, 1, 20, 0, 3));
    expect(() => b.rtc.loadState({ ...state, version: 2 })).toThrow();
    expect(() => b.rtc.loadState({ ...state, cmos: [1, 2] })).toThrow();
  });
});
