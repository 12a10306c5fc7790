import { describe, expect, it } from 'vitest';
import {
  PIIX4_DEVACTB,
  PIIX4_PMBA,
  PIIX4_PMREGMISC,
  PM_IO_SIZE,
  Piix4Pm,
  PM_TIMER_HZ,
} from '../../../../src/vmm/chipset/piix4-pm.js';
import type { DeviceContext, DeviceState } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { PCI_INTERRUPT_PIN } from '../../../../src/vmm/pci/config-space.js';
import { FakeMapper, fakeCtx, regs } from '../pci/helpers.js';

function setup(canSleep = false) {
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
    ...(canSleep
      ? {
          requestSuspend: (r: string) => (events.push(`suspend: ${r}`), true),
          requestWake: (r: string) => void events.push(`wake: ${r}`),
        }
      : {}),
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

  it('S3: SLP_TYP 1 suspends once; the RTC alarm wakes only with RTC_EN, the power button always; WAK_STS set', () => {
    const { pm, events, irqs } = setup(true);
    pm.rtcAlarm(); // awake: RTC_STS latches (no SCI: RTC_EN clear)
    expect(pm.read(0, 2)).toBe(0x400);
    pm.write(0, 2, 0x400);
    pm.write(4, 2, 0x2000 | (1 << 10) | 1);
    expect(pm.suspended).toBe(true);
    pm.write(4, 2, 0x2000 | (1 << 10) | 1); // already asleep: not asked again
    expect(events).toEqual(['suspend: ACPI S3 (suspend to RAM)']);
    pm.rtcAlarm(); // RTC_EN clear
    expect(pm.suspended).toBe(true);
    pm.write(2, 2, 0x400); // RTC_EN
    pm.rtcAlarm();
    expect(pm.suspended).toBe(false);
    expect(events[1]).toBe('wake: ACPI S3 wake by the RTC alarm');
    expect(pm.read(0, 2)).toBe(0x8400); // WAK_STS | RTC_STS
    expect(irqs).toEqual([[9, true]]); // RTC_STS & RTC_EN with SCI_EN
    pm.write(0, 2, 0x8400);
    expect(pm.read(0, 2)).toBe(0);
    // The power button wakes without any enable bit, and sets PWRBTN_STS.
    pm.write(2, 2, 0);
    pm.write(4, 2, 0x2000 | (1 << 10) | 1);
    pm.pressPowerButton();
    expect(pm.suspended).toBe(false);
    expect(events.slice(2)).toEqual([
      'suspend: ACPI S3 (suspend to RAM)',
      'wake: ACPI S3 wake by the power button',
    ]);
    expect(pm.read(0, 2)).toBe(0x8100);
    // An enabled RTC event pending when SLP_EN is written wakes at once.
    pm.write(2, 2, 0x400);
    pm.rtcAlarm();
    pm.write(4, 2, 0x2000 | (1 << 10) | 1);
    expect(pm.suspended).toBe(false);
    expect(events.slice(-2)).toEqual([
      'suspend: ACPI S3 (suspend to RAM)',
      'wake: ACPI S3 wake by the RTC alarm (pending)',
    ]);
    pm.write(0, 2, 0xffff);
    pm.write(2, 2, 0);
    // Sleeping survives a save and load.
    pm.write(4, 2, 0x2000 | (1 << 10) | 1);
    const saved = pm.saveState();
    const { pm: other } = setup(true);
    other.loadState(saved);
    expect(other.suspended).toBe(true);
  });

  it('a machine that cannot sleep: S3 is ignored with a guest error', () => {
    const { pm, events, log } = setup(false);
    pm.write(4, 2, 0x2000 | (1 << 10) | 1);
    expect(pm.suspended).toBe(false);
    expect(events).toEqual([]);
    expect(log.lines.join('\n')).toMatch(/sleep type 1 is not supported/);
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

/** The PM function with a BarMapper that records where the block is decoded. */
function pciSetup(ioBase?: number) {
  const f = fakeCtx();
  const mapper = new FakeMapper();
  const pm = new Piix4Pm(f.ctx, { mapper, clockNs: () => 0n, ...(ioBase !== undefined ? { ioBase } : {}) });
  return { ...f, mapper, pm };
}

describe('PIIX4 PM as PCI function 00:01.3', () => {
  it('is an Intel 82371AB power management function, revision 3, pin INTA', () => {
    const { pm } = pciSetup();
    expect(pm.readConfig(0, 4)).toBe(0x7113_8086);
    expect(pm.readConfig(0x08, 4)).toBe(0x0680_0003); // class 06/80/00 (other bridge), revision 3
    expect(pm.readConfig(PCI_INTERRUPT_PIN, 1)).toBe(1);
  });

  it('PMBA: bit 0 reads 1 (I/O space), only bits 15:6 are writable', () => {
    const { pm } = pciSetup();
    expect(pm.readConfig(PIIX4_PMBA, 4)).toBe(0x0000_0001);
    pm.writeConfig(PIIX4_PMBA, 4, 0xffffffff);
    expect(pm.readConfig(PIIX4_PMBA, 4)).toBe(0x0000_ffc1);
    pm.writeConfig(PIIX4_PMBA, 4, 0x0000_063e);
    expect(pm.readConfig(PIIX4_PMBA, 4)).toBe(0x0000_0601);
    pm.writeConfig(PIIX4_PMBA, 4, 0);
    expect(pm.readConfig(PIIX4_PMBA, 4)).toBe(0x0000_0001);
    pm.writeConfig(PIIX4_PMREGMISC, 1, 0xff);
    expect(pm.readConfig(PIIX4_PMREGMISC, 1)).toBe(0x01);
  });

  it('decodes the 64-byte block only once PMBA is set and PMREGMISC bit 0 enables it', () => {
    const { pm, mapper } = pciSetup();
    expect(mapper.take()).toEqual([]);
    pm.writeConfig(PIIX4_PMBA, 4, 0x601);
    expect(mapper.take()).toEqual([]);
    expect(pm.ioBase).toBeUndefined();
    pm.writeConfig(PIIX4_PMREGMISC, 1, 1);
    expect(mapper.take()).toEqual([`map pio 600+${PM_IO_SIZE.toString(16)} piix4-pm`]);
    expect(PM_IO_SIZE).toBe(64);
    expect(pm.ioBase).toBe(0x600);
    expect(mapper.ranges.get('pio:1536')?.handler).toBe(pm);

    // The other order (enable, then base) works too; a base of 0 is not an assignment.
    const b = pciSetup();
    b.pm.writeConfig(PIIX4_PMREGMISC, 1, 1);
    expect(b.mapper.take()).toEqual([]);
    b.pm.writeConfig(PIIX4_PMBA, 2, 0xb001);
    expect(b.mapper.take()).toEqual(['map pio b000+40 piix4-pm']);
  });

  it('moves when PMBA changes and unmaps when disabled', () => {
    const { pm, mapper } = pciSetup();
    pm.writeConfig(PIIX4_PMBA, 4, 0x600);
    pm.writeConfig(PIIX4_PMREGMISC, 1, 1);
    mapper.take();
    pm.writeConfig(PIIX4_PMBA, 4, 0x603); // the same base: nothing to do
    pm.writeConfig(PIIX4_PMREGMISC, 1, 0xff);
    expect(mapper.take()).toEqual([]);
    pm.writeConfig(PIIX4_PMBA + 1, 1, 0xb0); // a byte write to bits 15:8
    expect(mapper.take()).toEqual(['unmap pio 600', 'map pio b000+40 piix4-pm']);
    expect(pm.ioBase).toBe(0xb000);
    pm.writeConfig(PIIX4_PMREGMISC, 1, 0);
    expect(mapper.take()).toEqual(['unmap pio b000']);
    expect(pm.ioBase).toBeUndefined();
    pm.writeConfig(PIIX4_PMREGMISC, 1, 1);
    pm.writeConfig(PIIX4_PMBA, 4, 0);
    expect(mapper.take()).toEqual(['map pio b000+40 piix4-pm', 'unmap pio b000']);
  });

  it('leaves the block disabled, with a guest error and no throw, when the mapper refuses the base', () => {
    const { pm, mapper, log } = pciSetup();
    mapper.map('pio', 0x600, 8, regs(0), 'other');
    mapper.take();
    pm.writeConfig(PIIX4_PMBA, 4, 0x600);
    expect(() => pm.writeConfig(PIIX4_PMREGMISC, 1, 1)).not.toThrow();
    expect(mapper.take()).toEqual(['refuse pio 600+40 piix4-pm']);
    expect(pm.ioBase).toBeUndefined();
    expect(log.lines.filter((l) => l.includes('piix4-pm: PM I/O base 0x600 overlaps'))).toHaveLength(1);
    // Moved somewhere free, it decodes; nothing of the refused place is unmapped.
    pm.writeConfig(PIIX4_PMBA, 4, 0x640);
    expect(mapper.take()).toEqual(['map pio 640+40 piix4-pm']);
    expect(pm.ioBase).toBe(0x640);
  });

  it('with ioBase (direct kernel boot) decodes from power-on, and again after reset', () => {
    const { pm, mapper } = pciSetup(0x600);
    expect(mapper.take()).toEqual(['map pio 600+40 piix4-pm']);
    expect(pm.readConfig(PIIX4_PMBA, 4)).toBe(0x601);
    expect(pm.readConfig(PIIX4_PMREGMISC, 1)).toBe(1);
    pm.writeConfig(PIIX4_PMBA, 4, 0x700);
    mapper.take();
    pm.reset();
    expect(mapper.take()).toEqual(['unmap pio 700', 'map pio 600+40 piix4-pm']);
    expect(pm.ioBase).toBe(0x600);

    // Without ioBase a reset disables what the firmware programmed.
    const fw = pciSetup();
    fw.pm.writeConfig(PIIX4_PMBA, 4, 0x600);
    fw.pm.writeConfig(PIIX4_PMREGMISC, 1, 1);
    fw.mapper.take();
    fw.pm.reset();
    expect(fw.mapper.take()).toEqual(['unmap pio 600']);
    expect(fw.pm.readConfig(PIIX4_PMBA, 4)).toBe(1);
  });

  it('DEVACTB reads APMC_EN (no SMM to set up) and is read-only', () => {
    const { pm } = pciSetup();
    expect(pm.readConfig(PIIX4_DEVACTB, 4)).toBe(0x0200_0000);
    pm.writeConfig(PIIX4_DEVACTB, 4, 0xffffffff);
    pm.writeConfig(PIIX4_DEVACTB + 3, 1, 0);
    expect(pm.readConfig(PIIX4_DEVACTB, 4)).toBe(0x0200_0000);
    pm.reset();
    expect(pm.readConfig(PIIX4_DEVACTB + 3, 1)).toBe(0x02);
  });

  it('decodes where the loaded state says', () => {
    const a = pciSetup();
    a.pm.writeConfig(PIIX4_PMBA, 4, 0xb000);
    a.pm.writeConfig(PIIX4_PMREGMISC, 1, 1);
    const saved = JSON.parse(JSON.stringify(a.pm.saveState())) as DeviceState;
    const b = pciSetup(0x600);
    b.mapper.take();
    b.pm.loadState(saved);
    expect(b.mapper.take()).toEqual(['unmap pio 600', 'map pio b000+40 piix4-pm']);
    expect(b.pm.ioBase).toBe(0xb000);
  });
});
