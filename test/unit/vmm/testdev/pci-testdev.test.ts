import { describe, expect, it } from 'vitest';
import type { AccessSize } from '../../../../src/vmm/core/device.js';
import { Bus } from '../../../../src/vmm/core/bus.js';
import { PCI_COMMAND_IO, PCI_COMMAND_MEMORY } from '../../../../src/vmm/pci/config-space.js';
import {
  BusBarMapper,
  PCI_CONFIG_ADDRESS_PORT,
  PCI_HOST_PORT_COUNT,
  PciHostBus,
} from '../../../../src/vmm/pci/host-bus.js';
import {
  PCI_TESTDEV_TESTS,
  PciTestdev,
  TESTDEV_HDR_COUNT,
  TESTDEV_HDR_DATA,
  TESTDEV_HDR_NAME,
  TESTDEV_HDR_OFFSET,
  TESTDEV_HDR_TEST,
  TESTDEV_HDR_WIDTH,
} from '../../../../src/vmm/testdev/pci-testdev.js';
import { fakeCtx } from '../pci/helpers.js';

const SLOT = 3;
const MEM_BAR_ADDR = 0xfebf_f000;
const IO_BAR_ADDR = 0xc000;

/**
 * pci-testdev on slot 3 of a host bus on real port-I/O and MMIO buses,
 * reached through 0xCF8/0xCFC as a guest does.
 */
function setup() {
  const f = fakeCtx();
  const pio = new Bus('pio');
  const mmio = new Bus('mmio');
  const host = new PciHostBus(f.ctx, { mapper: new BusBarMapper(pio, mmio), intxRoute: () => undefined });
  pio.register(PCI_CONFIG_ADDRESS_PORT, PCI_HOST_PORT_COUNT, host, host.name);
  const dev = new PciTestdev(f.ctx);
  host.attach(dev, SLOT, 0);
  const addr = (slot: number, reg: number) => (0x8000_0000 | (slot << 11) | reg) >>> 0;
  const cfgRead = (slot: number, reg: number, size: AccessSize = 4) => {
    pio.write(0xcf8, 4, addr(slot, reg & 0xfc));
    return pio.read(0xcfc + (reg & 3), size);
  };
  const cfgWrite = (slot: number, reg: number, size: AccessSize, v: number) => {
    pio.write(0xcf8, 4, addr(slot, reg & 0xfc));
    pio.write(0xcfc + (reg & 3), size, v);
  };
  return { ...f, pio, mmio, host, dev, cfgRead, cfgWrite };
}

/** What firmware does before kvm-unit-tests run: place both BARs and enable decoding. */
function assignBars(s: ReturnType<typeof setup>) {
  s.cfgWrite(SLOT, 0x10, 4, MEM_BAR_ADDR);
  s.cfgWrite(SLOT, 0x14, 4, IO_BAR_ADDR);
  s.cfgWrite(SLOT, 0x04, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
}

/** kvm-unit-tests lib/pci.c pci_bar_size(): write all-ones, read, restore; returns ~mask + 1. */
function barSize(s: ReturnType<typeof setup>, bar: number): number {
  const off = 0x10 + bar * 4;
  const old = s.cfgRead(SLOT, off);
  s.cfgWrite(SLOT, off, 4, 0xffff_ffff);
  const v = s.cfgRead(SLOT, off);
  s.cfgWrite(SLOT, off, 4, old);
  if (v === 0) return 0;
  const mask = v & 1 ? 0xffff_fffc : 0xffff_fff0;
  return (~(v & mask) + 1) >>> 0;
}

interface Ops {
  readb(a: number): number;
  readl(a: number): number;
  writeb(v: number, a: number): void;
  writew(v: number, a: number): void;
  writel(v: number, a: number): void;
}

function ops(bus: Bus): Ops {
  return {
    readb: (a) => bus.read(a, 1),
    readl: (a) => bus.read(a, 4),
    writeb: (v, a) => bus.write(a, 1, v & 0xff),
    writew: (v, a) => bus.write(a, 2, v & 0xffff),
    writel: (v, a) => bus.write(a, 4, v >>> 0),
  };
}

/** kvm-unit-tests lib/pci-testdev.c pci_testdev_one(), line for line. */
function pciTestdevOne(test: number, testNr: number, o: Ops): boolean {
  const nrWrites = 16;
  o.writeb(testNr, test + TESTDEV_HDR_TEST);
  let count = o.readl(test + TESTDEV_HDR_COUNT);
  if (count !== 0) return false;
  const width = o.readb(test + TESTDEV_HDR_WIDTH);
  if (width !== 1 && width !== 2 && width !== 4) return false;
  const sig = o.readl(test + TESTDEV_HDR_DATA);
  const off = o.readl(test + TESTDEV_HDR_OFFSET);
  for (let i = 0; i < nrWrites; i++) {
    if (width === 1) o.writeb(sig, test + off);
    else if (width === 2) o.writew(sig, test + off);
    else o.writel(sig, test + off);
  }
  count = o.readl(test + TESTDEV_HDR_COUNT);
  if (!count) return true;
  return count === nrWrites;
}

/** pci_testdev_print(): the name, read a byte at a time up to the NUL. */
function testName(test: number, o: Ops): string {
  let s = '';
  for (let i = 0; ; i++) {
    const c = o.readb(test + TESTDEV_HDR_NAME + i);
    if (!c) return s;
    s += String.fromCharCode(c);
  }
}

/** pci_testdev_all(): tests passed until the first that does not. */
function pciTestdevAll(test: number, o: Ops, names: string[]): number {
  let i = 0;
  for (; ; i++) {
    if (!pciTestdevOne(test, i, o)) break;
    names.push(testName(test, o));
  }
  return i;
}

describe('pci-testdev', () => {
  it('is 1b36:0005, class 00ff, subsystem 1af4:1100, no interrupt pin, one function', () => {
    const { cfgRead } = setup();
    expect(cfgRead(SLOT, 0x00)).toBe(0x0005_1b36);
    // Revision 0, programming interface 0, sub-class 0xff, base class 0x00.
    expect(cfgRead(SLOT, 0x08)).toBe(0x00ff_0000);
    expect(cfgRead(SLOT, 0x0e, 1)).toBe(0);
    expect(cfgRead(SLOT, 0x2c)).toBe(0x1100_1af4);
    expect(cfgRead(SLOT, 0x3d, 1)).toBe(0);
    expect(cfgRead(SLOT + 1, 0x00)).toBe(0xffff_ffff);
  });

  it('has BAR0 4 KiB of 32-bit MMIO, BAR1 256 ports, and nothing else', () => {
    const s = setup();
    expect(barSize(s, 0)).toBe(4096);
    expect(barSize(s, 1)).toBe(256);
    for (const b of [2, 3, 4, 5]) expect(barSize(s, b)).toBe(0);
    s.cfgWrite(SLOT, 0x10, 4, 0xffff_ffff);
    expect(s.cfgRead(SLOT, 0x10)).toBe(0xffff_f000); // memory, 32-bit, not prefetchable
    s.cfgWrite(SLOT, 0x14, 4, 0xffff_ffff);
    expect(s.cfgRead(SLOT, 0x14)).toBe(0xffff_ff01); // I/O
    expect(s.cfgRead(SLOT, 0x30)).toBe(0); // no ROM
  });

  it('passes kvm-unit-tests lib/pci-testdev.c: six tests, every count 16 (no ioeventfd)', () => {
    const s = setup();
    assignBars(s);
    // pci_dev_init(): the addresses the firmware left in the BARs.
    const mem = s.cfgRead(SLOT, 0x10) & 0xffff_fff0;
    const io = s.cfgRead(SLOT, 0x14) & 0xffff_fffc;
    expect([mem >>> 0, io]).toEqual([MEM_BAR_ADDR, IO_BAR_ADDR]);
    const names: string[] = [];
    let nrTests = pciTestdevAll(mem >>> 0, ops(s.mmio), names);
    nrTests += pciTestdevAll(io, ops(s.pio), names);
    expect(nrTests).toBe(6); // arm/pci-test.c: PCI_TESTDEV_NUM_BARS * PCI_TESTDEV_NUM_TESTS
    expect(names).toEqual([
      'mmio-no-eventfd',
      'mmio-wildcard-eventfd',
      'mmio-datamatch-eventfd',
      'portio-no-eventfd',
      'portio-wildcard-eventfd',
      'portio-datamatch-eventfd',
    ]);
    // Each test counted its 16 writes when it ran (the walk's last write, test 3, deselected).
    expect(PCI_TESTDEV_TESTS.map((t) => s.dev.count(t.index))).toEqual([16, 16, 16, 16, 16, 16]);
    expect(s.dev.selected).toBeUndefined();
  });

  it('lays out each test as QEMU does: offset half the BAR + index, data 0xFA or 0xCE', () => {
    const s = setup();
    assignBars(s);
    const layout = [
      ...[0, 1, 2].map((n) => {
        s.mmio.write(MEM_BAR_ADDR, 1, n);
        return [0, 1, 4, 8, 12].map((f) => s.mmio.read(MEM_BAR_ADDR + f, f < 4 ? 1 : 4));
      }),
      ...[0, 1, 2].map((n) => {
        s.pio.write(IO_BAR_ADDR, 1, n);
        return [0, 1, 4, 8, 12].map((f) => s.pio.read(IO_BAR_ADDR + f, f < 4 ? 1 : 4));
      }),
    ];
    expect(layout).toEqual([
      // test, width, offset, data, count
      [0, 1, 2048, 0xfa, 0],
      [1, 1, 2049, 0xce, 0],
      [2, 1, 2050, 0xfa, 0],
      [3, 1, 131, 0xfa, 0],
      [4, 1, 132, 0xce, 0],
      [5, 1, 133, 0xfa, 0],
    ]);
    expect(PCI_TESTDEV_TESTS.map((t) => [t.offset, t.data, t.matchData, t.ioeventfd])).toEqual([
      [2048, 0xfa, true, false],
      [2049, 0xce, false, true],
      [2050, 0xfa, true, true],
      [131, 0xfa, true, false],
      [132, 0xce, false, true],
      [133, 0xfa, true, true],
    ]);
  });

  it('walks as x86/vmexit.c pci_next() does: name bytes up to the offset, then writes of data', () => {
    const s = setup();
    assignBars(s);
    s.pio.write(IO_BAR_ADDR, 1, 2);
    const data = s.pio.read(IO_BAR_ADDR + TESTDEV_HDR_DATA, 4);
    const offset = s.pio.read(IO_BAR_ADDR + TESTDEV_HDR_OFFSET, 4);
    let name = '';
    for (let i = 0; i < offset; i++) {
      const c = s.pio.read(IO_BAR_ADDR + TESTDEV_HDR_NAME + i, 1);
      if (!c) break;
      name += String.fromCharCode(c);
    }
    expect(name).toBe('portio-datamatch-eventfd');
    for (let i = 0; i < 1000; i++) s.pio.write(IO_BAR_ADDR + offset, 1, data);
    expect(s.pio.read(IO_BAR_ADDR + TESTDEV_HDR_COUNT, 4)).toBe(1000);
    expect(s.pio.read(IO_BAR_ADDR + TESTDEV_HDR_COUNT, 2)).toBe(1000);
    expect(s.pio.read(IO_BAR_ADDR + TESTDEV_HDR_COUNT + 1, 1)).toBe(1000 >> 8);
  });

  it('counts only writes of data for the no-eventfd and datamatch tests, any write for wildcard', () => {
    const s = setup();
    assignBars(s);
    const count = () => s.mmio.read(MEM_BAR_ADDR + TESTDEV_HDR_COUNT, 4);
    s.mmio.write(MEM_BAR_ADDR, 1, 0);
    s.mmio.write(MEM_BAR_ADDR + 2048, 1, 0xce);
    s.mmio.write(MEM_BAR_ADDR + 2049, 1, 0xfa); // not this test's offset
    s.mmio.write(MEM_BAR_ADDR + 2048, 1, 0xfa);
    expect(count()).toBe(1);
    s.mmio.write(MEM_BAR_ADDR, 1, 1);
    s.mmio.write(MEM_BAR_ADDR + 2049, 1, 0x00);
    s.mmio.write(MEM_BAR_ADDR + 2049, 1, 0xce);
    expect(count()).toBe(2);
    s.mmio.write(MEM_BAR_ADDR, 1, 2);
    s.mmio.write(MEM_BAR_ADDR + 2050, 1, 0xce);
    expect(count()).toBe(0);
  });

  it('takes wider accesses a byte at a time, as QEMU (impl size 1)', () => {
    const s = setup();
    assignBars(s);
    // A 32-bit write to `test` selects by its low byte; the other bytes land at 1-3.
    s.mmio.write(MEM_BAR_ADDR, 4, 0xffff_ff01);
    expect(s.dev.selected?.name).toBe('mmio-wildcard-eventfd');
    // A 16-bit write at the offset is one byte at 2049 (counted) and one at 2050 (not).
    s.mmio.write(MEM_BAR_ADDR + 2049, 2, 0x1234);
    expect(s.dev.count(1)).toBe(1);
    s.mmio.write(MEM_BAR_ADDR + 2048, 2, 0xce00);
    expect(s.dev.count(1)).toBe(2);
    // A 32-bit read of a header field gathers bytes: name[0..3].
    expect(s.mmio.read(MEM_BAR_ADDR + TESTDEV_HDR_NAME, 4)).toBe(Buffer.from('mmio').readUInt32LE(0));
  });

  it('reads 0 with no test selected, past the header, and after a selection of 3 or more', () => {
    const s = setup();
    assignBars(s);
    expect(s.mmio.read(MEM_BAR_ADDR, 4)).toBe(0);
    expect(s.pio.read(IO_BAR_ADDR + TESTDEV_HDR_WIDTH, 1)).toBe(0);
    s.pio.write(IO_BAR_ADDR, 1, 0);
    expect(s.pio.read(IO_BAR_ADDR + TESTDEV_HDR_NAME + 'portio-no-eventfd'.length, 1)).toBe(0);
    expect(s.pio.read(IO_BAR_ADDR + 200, 4)).toBe(0);
    expect(s.mmio.read(MEM_BAR_ADDR + 4000, 4)).toBe(0);
    s.pio.write(IO_BAR_ADDR, 1, 3);
    expect(s.dev.selected).toBeUndefined();
    expect(s.pio.read(IO_BAR_ADDR + TESTDEV_HDR_WIDTH, 1)).toBe(0);
    s.pio.write(IO_BAR_ADDR + 131, 1, 0xfa); // nothing selected: ignored
    expect(s.dev.count(3)).toBe(0);
  });

  it('has one selected test for both BARs', () => {
    const s = setup();
    assignBars(s);
    s.pio.write(IO_BAR_ADDR, 1, 1);
    expect(s.mmio.read(MEM_BAR_ADDR + TESTDEV_HDR_TEST, 1)).toBe(4);
    expect(s.mmio.read(MEM_BAR_ADDR + TESTDEV_HDR_OFFSET, 4)).toBe(132);
    s.mmio.write(MEM_BAR_ADDR + 132, 1, 0xce); // the portio test's offset, but in BAR0: counted as QEMU does
    expect(s.dev.count(4)).toBe(1);
  });

  it('does not decode until the Command register enables it', () => {
    const s = setup();
    s.cfgWrite(SLOT, 0x10, 4, MEM_BAR_ADDR);
    s.cfgWrite(SLOT, 0x14, 4, IO_BAR_ADDR);
    expect(s.mmio.find(MEM_BAR_ADDR)).toBeUndefined();
    expect(s.pio.find(IO_BAR_ADDR)).toBeUndefined();
    s.cfgWrite(SLOT, 0x04, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    expect(s.mmio.find(MEM_BAR_ADDR)?.length).toBe(4096);
    expect(s.pio.find(IO_BAR_ADDR + 255)?.length).toBe(256);
  });

  it('deselects on reset, and saves and loads the selection and counts', () => {
    const a = setup();
    assignBars(a);
    a.pio.write(IO_BAR_ADDR, 1, 0);
    for (let i = 0; i < 5; i++) a.pio.write(IO_BAR_ADDR + 131, 1, 0xfa);
    const saved = JSON.parse(JSON.stringify(a.dev.saveState())) as ReturnType<PciTestdev['saveState']>;
    expect(saved.device).toEqual({ current: 3, counts: [0, 0, 0, 5, 0, 0] });

    const b = setup();
    b.dev.loadState(saved);
    expect(b.dev.selected?.name).toBe('portio-no-eventfd');
    expect(b.pio.read(IO_BAR_ADDR + TESTDEV_HDR_COUNT, 4)).toBe(5); // BARs and Command came back too
    expect(() => b.dev.loadState({ ...saved, device: { current: 6, counts: [0, 0, 0, 0, 0, 0] } })).toThrow(
      /current/,
    );
    expect(() => b.dev.loadState({ ...saved, device: { current: 0, counts: [0] } })).toThrow(/counts/);

    a.dev.reset();
    expect(a.dev.selected).toBeUndefined();
    expect(a.dev.count(3)).toBe(0);
    expect(a.cfgRead(SLOT, 0x10)).toBe(0); // BARs unassigned again
  });
});
