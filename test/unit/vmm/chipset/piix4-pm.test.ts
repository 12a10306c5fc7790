import { describe, expect, it } from 'vitest';
import { Piix4Pm, PM_TIMER_HZ } from '../../../../src/vmm/chipset/piix4-pm.js';
import type { DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';

function setup() {
  const irqs: [number, boolean][] = [];
  const events: string[] = [];
  const log = new MemoryLogger();
  let now = 0n;
  const ctx: DeviceContext = {
    irq: { setIrq: (g, l) => void irqs.push([g, l]) },
    log,
    guestErrors: new RateLimitedLog(log),
    requestReset: (r) => void events.push(`reset: ${r}`),
    requestPowerOff: (r) => void events.push(`off: ${r}`),
  };
  const pm = new Piix4Pm(ctx, { clockNs: () => now });
  return { pm, irqs, events, log, tick: (ns: bigint) => (now += ns) };
}

describe('PIIX4 ACPI PM registers', () => {
  it('power button: status set, SCI raised only when enabled, write-1-to-clear lowers it', () => {
    const { pm, irqs } = setup();
    expect(pm.powerButtonEnabled).toBe(false);
    pm.pressPowerButton();
    expect(pm.read(0, 2) & 0x100).toBe(0x100);
    expect(irqs).toEqual([]);
    pm.write(2, 2, 0x100); // PM1a_EN.PWRBTN_EN
    expect(pm.powerButtonEnabled).toBe(true);
    expect(irqs).toEqual([[9, true]]);
    pm.write(0, 2, 0x100); // clear PWRBTN_STS
    expect(pm.read(0, 2) & 0x100).toBe(0);
    expect(irqs).toEqual([
      [9, true],
      [9, false],
    ]);
  });

  it('SLP_EN with SLP_TYP 0 powers off; other sleep types are ignored; SCI_EN reads back, SLP bits do not', () => {
    const { pm, events } = setup();
    expect(pm.read(4, 2)).toBe(1); // SCI_EN: always in ACPI mode
    pm.write(4, 2, 0x2000 | (1 << 10) | 1); // S3
    expect(events).toEqual([]);
    expect(pm.read(4, 2)).toBe(1);
    pm.write(5, 1, 0x20); // SLP_EN by a byte write to the high half, SLP_TYP 0
    expect(events).toEqual(['off: ACPI S5 (soft off)']);
  });

  it('the PM timer counts at 3.579545 MHz in 24 bits', () => {
    const { pm, tick } = setup();
    const a = pm.read(8, 4);
    tick(1_000_000n); // 1 ms
    const b = pm.read(8, 4);
    expect(b - a).toBe(Math.floor(PM_TIMER_HZ / 1000));
    tick(10_000_000_000n);
    expect(pm.read(8, 4)).toBeLessThan(1 << 24);
  });

  it('saves and loads its state; survives any write to any register', () => {
    const { pm } = setup();
    pm.write(2, 2, 0x100);
    pm.pressPowerButton();
    const s = pm.saveState();
    const { pm: other, irqs } = setup();
    other.loadState(s);
    expect(other.read(0, 2) & 0x100).toBe(0x100);
    expect(irqs).toEqual([[9, true]]);
    for (let off = 0; off < 16; off++)
      for (const size of [1, 2, 4] as const)
        for (const v of [0, 0xff, 0xffff, 0xffffffff, 0x1234]) pm.write(off, size, v);
    expect(() => other.loadState({ version: 9 })).toThrow(/version 9/);
  });
});
