import { describe, expect, it } from 'vitest';
import { Bus } from '../../../../src/vmm/core/bus.js';
import {
  PC_TESTDEV_IOMEM_BASE,
  PC_TESTDEV_IOMEM_SIZE,
  PcTestdev,
  type PcTestdevOptions,
} from '../../../../src/vmm/testdev/pc-testdev.js';
import { fakeCtx } from '../pci/helpers.js';

const IOMEM = PC_TESTDEV_IOMEM_BASE;

/** The device on real buses, registered as the machine will (pioRanges, mmioRanges). */
function setup(opts: PcTestdevOptions = {}) {
  const f = fakeCtx();
  const flushes: number[] = [];
  const dev = new PcTestdev(f.ctx, { onFlushPage: (gpa) => void flushes.push(gpa), ...opts });
  const pio = new Bus('pio');
  const mmio = new Bus('mmio');
  for (const r of dev.pioRanges) pio.register(r.base, r.length, r.handler, r.name);
  for (const r of dev.mmioRanges) mmio.register(r.base, r.length, r.handler, r.name);
  return { ...f, dev, pio, mmio, flushes };
}

describe('pc-testdev', () => {
  it('claims ports 0xE0-0xEB, 0x2000-0x2017 and MMIO 0xFF000000-0xFF00FFFF', () => {
    const { pio, mmio } = setup();
    expect(pio.list().map((r) => [r.base, r.length])).toEqual([
      [0xe0, 4],
      [0xe4, 4],
      [0xe8, 4],
      [0x2000, 24],
    ]);
    expect(mmio.list().map((r) => [r.base, r.length])).toEqual([[0xff00_0000, 0x1_0000]]);
    expect(pio.find(0xdf)).toBeUndefined();
    expect(pio.find(0xec)).toBeUndefined();
    expect(pio.find(0x2018)).toBeUndefined();
  });

  describe('port 0xE0 scratch register', () => {
    it('reads back what 8-, 16- and 32-bit accesses wrote (realmode.flat in/out al, ax, eax)', () => {
      const { pio } = setup();
      expect(pio.read(0xe0, 4)).toBe(0);
      pio.write(0xe0, 1, 0xff);
      expect(pio.read(0xe0, 1)).toBe(0xff);
      pio.write(0xe0, 2, 0xfeff);
      expect(pio.read(0xe0, 2)).toBe(0xfeff);
      pio.write(0xe0, 4, 0xdeadbeef);
      expect(pio.read(0xe0, 4)).toBe(0xdeadbeef);
      expect(pio.read(0xe0, 2)).toBe(0xbeef);
      expect(pio.read(0xe0, 1)).toBe(0xef);
    });

    it('updates only the bytes an access covers, little-endian, at any offset', () => {
      const { pio } = setup();
      pio.write(0xe0, 4, 0x11223344);
      pio.write(0xe2, 1, 0xaa);
      expect(pio.read(0xe0, 4)).toBe(0x11aa3344);
      pio.write(0xe1, 2, 0xbbcc);
      expect(pio.read(0xe0, 4)).toBe(0x11bbcc44);
      expect(pio.read(0xe1, 2)).toBe(0xbbcc);
      expect(pio.read(0xe3, 1)).toBe(0x11);
    });

    it('cuts an access that runs past 0xE3: the bytes beyond read as open bus and are not written', () => {
      const { pio } = setup();
      pio.write(0xe0, 4, 0x11223344);
      pio.write(0xe3, 2, 0x5566);
      expect(pio.read(0xe0, 4)).toBe(0x66223344);
      expect(pio.read(0xe3, 2)).toBe(0xff66);
      expect(pio.read(0xe2, 4)).toBe(0xffff6622);
    });

    it('keeps the last byte of rep outsb up and down (emulator.flat test_stringio)', () => {
      const { pio } = setup();
      const st1 = Buffer.from('abcdefghijklmnop');
      for (const b of st1) pio.write(0xe0, 1, b);
      expect(pio.read(0xe0, 1)).toBe('p'.charCodeAt(0));
      for (const b of [...st1].reverse()) pio.write(0xe0, 1, b);
      expect(pio.read(0xe0, 1)).toBe('a'.charCodeAt(0));
    });

    it('keeps the last word of rep outsw (amd_sev.flat)', () => {
      const { pio } = setup();
      const st1 = Buffer.from('abcdefghijklmnop');
      for (let i = 0; i < st1.length; i += 2) pio.write(0xe0, 2, st1.readUInt16LE(i));
      const got = pio.read(0xe0, 2);
      expect(got & 0xff).toBe('o'.charCodeAt(0));
      expect(got >> 8).toBe('p'.charCodeAt(0));
    });

    it('is the same register at 0xE8, QEMU reaching that one byte at a time', () => {
      const { pio } = setup();
      pio.write(0xe8, 4, 0xcafef00d);
      expect(pio.read(0xe0, 4)).toBe(0xcafef00d);
      pio.write(0xe0, 2, 0x1234);
      expect(pio.read(0xe8, 4)).toBe(0xcafe1234);
      expect(pio.read(0xea, 2)).toBe(0xcafe);
    });
  });

  describe('port 0xE4 flush page', () => {
    it('hands the page of a 32-bit write to onFlushPage (eventinj.flat flush_phys_addr)', () => {
      const { pio, flushes } = setup();
      pio.write(0xe4, 4, 0x0012_3abc);
      pio.write(0xe4, 4, 0xffff_ffff);
      pio.write(0xe4, 4, 0x1000);
      expect(flushes).toEqual([0x12_3000, 0xffff_f000, 0x1000]);
    });

    it('drops accesses that are not 32-bit at 0xE4 (QEMU: valid size 4), with a guest error', () => {
      const { pio, flushes, log } = setup();
      pio.write(0xe4, 1, 0x12);
      pio.write(0xe4, 2, 0x1234);
      pio.write(0xe5, 1, 0x12);
      expect(flushes).toEqual([]);
      expect(log.lines.filter((l) => l.includes('ignored'))).toHaveLength(3);
    });

    it('reads 0, and does nothing without a hook', () => {
      const f = fakeCtx();
      const dev = new PcTestdev(f.ctx);
      expect(dev.flushPort.read(0, 4)).toBe(0);
      dev.flushPort.write(0, 4, 0x5000);
      expect(f.log.lines).toEqual([]);
    });
  });

  describe('ports 0x2000-0x2017 IRQ lines', () => {
    it('raises and lowers ISA IRQ n on a byte write to 0x2000 + n (ioapic.flat toggle_irq_line)', () => {
      const { pio, irqs, dev } = setup();
      pio.write(0x200e, 1, 1);
      expect(dev.assertedLines).toBe(1 << 14);
      pio.write(0x200e, 1, 0);
      pio.write(0x200f, 1, 0x80); // any non-zero byte is "high"
      pio.write(0x200d, 1, 1);
      expect(irqs).toEqual([
        [14, true],
        [14, false],
        [15, true],
        [13, true],
      ]);
      expect(dev.assertedLines).toBe((1 << 15) | (1 << 13));
    });

    it('splits a wider write into one byte per line, as QEMU (valid size 1)', () => {
      const { pio, irqs } = setup();
      pio.write(0x200e, 2, 0x0100);
      pio.write(0x2000, 4, 0x01000001);
      expect(irqs).toEqual([
        [14, false],
        [15, true],
        [0, true],
        [1, false],
        [2, false],
        [3, true],
      ]);
    });

    it('ignores lines 16-23, which QEMU aborts on, with a guest error', () => {
      const { pio, irqs, log, dev } = setup();
      pio.write(0x2010, 1, 1);
      pio.write(0x2017, 1, 1);
      pio.write(0x200f, 2, 0x0101); // line 15, then 16
      expect(irqs).toEqual([[15, true]]);
      expect(dev.assertedLines).toBe(1 << 15);
      expect(log.lines.filter((l) => /IRQ line (16|23) is not an ISA IRQ/.test(l))).toHaveLength(3);
    });

    it('reads 0', () => {
      const { pio } = setup();
      pio.write(0x200e, 1, 1);
      expect([pio.read(0x200e, 1), pio.read(0x2000, 2), pio.read(0x2014, 4)]).toEqual([0, 0, 0]);
    });
  });

  describe('MMIO 0xFF000000 iomem', () => {
    it('stores bytes and reads them back at any size, little-endian (emulator.flat MMIO page)', () => {
      const { mmio } = setup();
      expect(mmio.read(IOMEM, 4)).toBe(0);
      mmio.write(IOMEM + 0x10, 4, 0x12345678);
      expect(mmio.read(IOMEM + 0x10, 1)).toBe(0x78);
      expect(mmio.read(IOMEM + 0x11, 2)).toBe(0x3456);
      expect(mmio.read(IOMEM + 0x10, 4)).toBe(0x12345678);
      mmio.write(IOMEM + 0x12, 1, 0xaa);
      expect(mmio.read(IOMEM + 0x10, 4)).toBe(0x12aa5678);
    });

    it('spans 64 KiB (QEMU IOMEM_LEN), not just the page the tests map', () => {
      const { mmio } = setup();
      mmio.write(IOMEM + 0x1000, 2, 0x7799);
      mmio.write(IOMEM + PC_TESTDEV_IOMEM_SIZE - 4, 4, 0xa1b2c3d4);
      expect(mmio.read(IOMEM + 0x1000, 2)).toBe(0x7799);
      expect(mmio.read(IOMEM, 2)).toBe(0);
      expect(mmio.read(IOMEM + 0xfffc, 4)).toBe(0xa1b2c3d4);
      expect(mmio.find(IOMEM + PC_TESTDEV_IOMEM_SIZE)).toBeUndefined();
    });

    it('cuts an access at the end of the 64 KiB', () => {
      const { mmio } = setup();
      mmio.write(IOMEM + 0xfffe, 4, 0x11223344);
      expect(mmio.read(IOMEM + 0xfffc, 4)).toBe(0x33440000);
      expect(mmio.read(IOMEM + 0xffff, 4)).toBe(0xffffff33);
    });

    it('serves rep insb from port 0xE0 into MMIO (emulator.flat test_string_io_mmio)', () => {
      const { pio, mmio } = setup();
      pio.write(0xe0, 2, 0x9999);
      const dst = IOMEM + 4032;
      for (let i = 0; i < 1024; i++) mmio.write(dst + i, 1, pio.read(0xe0, 1));
      expect(mmio.read(dst + 1023, 1)).toBe(0x99);
    });
  });

  it('powers on empty: reset clears the register and iomem and lowers its lines', () => {
    const { dev, pio, mmio, irqs } = setup();
    pio.write(0xe0, 4, 0x1234);
    mmio.write(IOMEM + 8, 4, 0xffff);
    pio.write(0x2003, 1, 1);
    pio.write(0x200e, 1, 1);
    pio.write(0x200e, 1, 0);
    irqs.length = 0;
    dev.reset();
    expect(pio.read(0xe0, 4)).toBe(0);
    expect(mmio.read(IOMEM + 8, 4)).toBe(0);
    expect(irqs).toEqual([[3, false]]);
    expect(dev.assertedLines).toBe(0);
  });

  it('saves and loads the register, iomem and the lines it drives', () => {
    const a = setup();
    a.pio.write(0xe0, 4, 0x89abcdef);
    a.mmio.write(IOMEM + 0xfff0, 4, 0x01020304);
    a.pio.write(0x200e, 1, 1);
    a.pio.write(0x2005, 1, 1);
    const saved = JSON.parse(JSON.stringify(a.dev.saveState())) as ReturnType<PcTestdev['saveState']>;
    expect(saved).toMatchObject({ version: 1, data: 0x89abcdef, lines: (1 << 14) | (1 << 5) });

    const b = setup();
    b.pio.write(0x2005, 1, 1);
    b.pio.write(0x2007, 1, 1);
    b.irqs.length = 0;
    b.dev.loadState(saved);
    expect(b.pio.read(0xe0, 4)).toBe(0x89abcdef);
    expect(b.mmio.read(IOMEM + 0xfff0, 4)).toBe(0x01020304);
    expect(b.dev.assertedLines).toBe((1 << 14) | (1 << 5));
    expect(b.irqs).toEqual([
      [7, false],
      [14, true],
    ]);
  });

  it('leaves an all-zero iomem out of its state, and refuses malformed state', () => {
    const { dev, mmio } = setup();
    expect(dev.saveState()).toEqual({ version: 1, data: 0, lines: 0 });
    mmio.write(IOMEM, 1, 1);
    dev.loadState({ version: 1, data: 0, lines: 0 });
    expect(mmio.read(IOMEM, 1)).toBe(0);
    expect(() => dev.loadState({ version: 2, data: 0, lines: 0 })).toThrow(/version 2/);
    expect(() => dev.loadState({ version: 1, data: -1, lines: 0 })).toThrow(/data/);
    expect(() => dev.loadState({ version: 1, data: 0, lines: 1 << 16 })).toThrow(/lines/);
    expect(() => dev.loadState({ version: 1, data: 0, lines: 0, iomem: 'AAAA' })).toThrow(/iomem/);
    expect(() => dev.loadState({ version: 1, data: 0, lines: 0, iomem: 7 })).toThrow(/iomem/);
  });
});
