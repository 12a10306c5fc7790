import { describe, expect, it } from 'vitest';
import type { AccessSize } from '../../../../src/vmm/core/device.js';
import { Bus } from '../../../../src/vmm/core/bus.js';
import {
  PCI_BAR0,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MEMORY,
  PCI_HEADER_TYPE,
  PCI_ROM_ADDRESS,
} from '../../../../src/vmm/pci/config-space.js';
import {
  BusBarMapper,
  PCI_CONFIG_ADDRESS_PORT,
  PCI_HOST_PORT_COUNT,
  PciHostBus,
  type BarMapper,
  type PciHostBusOptions,
} from '../../../../src/vmm/pci/host-bus.js';
import { MSIX_CTRL_ENABLE, msixBarLayout } from '../../../../src/vmm/pci/msix.js';
import { FakeMapper, RecordingSink, TestDevice, fakeCtx, regs } from './helpers.js';

const addr = (slot: number, fn: number, reg: number) => (0x8000_0000 | (slot << 11) | (fn << 8) | reg) >>> 0;

/** A host bus on a real port-I/O Bus at 0xCF8, as the machine will wire it. */
function setup(opts: Partial<PciHostBusOptions> = {}) {
  const f = fakeCtx();
  const mapper = new FakeMapper();
  const resetWrites: number[] = [];
  const host = new PciHostBus(f.ctx, {
    mapper,
    // As PIIX will: slot + pin rotates over four PIRQ lines at GSIs 10, 10, 11, 11.
    intxRoute: (slot, pin) => [10, 10, 11, 11][(slot + pin - 1) & 3],
    onResetControl: (v) => resetWrites.push(v),
    ...opts,
  });
  const pio = new Bus('pio');
  pio.register(PCI_CONFIG_ADDRESS_PORT, PCI_HOST_PORT_COUNT, host, 'pci-host');
  const cfgRead = (slot: number, fn: number, reg: number, size: AccessSize = 4) => {
    pio.write(0xcf8, 4, addr(slot, fn, reg & 0xfc));
    return pio.read(0xcfc + (reg & 3), size);
  };
  const cfgWrite = (slot: number, fn: number, reg: number, size: AccessSize, v: number) => {
    pio.write(0xcf8, 4, addr(slot, fn, reg & 0xfc));
    pio.write(0xcfc + (reg & 3), size, v);
  };
  return { ...f, mapper, host, pio, cfgRead, cfgWrite, resetWrites };
}

function nic(name = 'nic') {
  return new TestDevice(name, {
    bars: [
      { index: 0, kind: 'io', size: 0x20, handler: regs(0x100) },
      { index: 1, kind: 'mem32', size: 0x1000, handler: regs(0x200) },
      { index: 2, kind: 'mem64', size: 0x4000, prefetchable: true, handler: regs(0x300) },
    ],
    rom: { size: 0x10000, handler: regs(0x400) },
  });
}

describe('PCI configuration mechanism #1', () => {
  it('reads and writes config DWORDs, words and bytes through 0xCF8/0xCFC', () => {
    const { host, pio, cfgRead, cfgWrite } = setup();
    host.attach(nic(), 3);
    pio.write(0xcf8, 4, addr(3, 0, 0) | 0x7f00_0003);
    expect(pio.read(0xcf8, 4)).toBe(addr(3, 0, 0)); // reserved bits read 0
    expect(pio.read(0xcfc, 4)).toBe(0x56781234);
    expect(pio.read(0xcfe, 2)).toBe(0x5678);
    expect(pio.read(0xcff, 1)).toBe(0x56);
    expect(cfgRead(3, 0, 0x0a, 2)).toBe(0x0200);
    cfgWrite(3, 0, 0x3c, 1, 11);
    cfgWrite(3, 0, 0x3d, 1, 4); // pin is read-only
    expect(cfgRead(3, 0, 0x3c)).toBe(0x010b);
    cfgWrite(3, 0, PCI_COMMAND, 2, 0x0003);
    cfgWrite(3, 0, PCI_COMMAND + 1, 1, 0x04);
    expect(cfgRead(3, 0, PCI_COMMAND, 2)).toBe(0x0403);
  });

  it('reads all-ones from empty slots, other buses and with the enable bit clear', () => {
    const { host, pio, cfgRead } = setup();
    host.attach(nic(), 0);
    expect(cfgRead(1, 0, 0)).toBe(0xffffffff);
    expect(cfgRead(0, 1, 0, 2)).toBe(0xffff);
    expect(cfgRead(31, 7, 0xfc, 1)).toBe(0xff);
    pio.write(0xcf8, 4, 0x0000_0000);
    expect(pio.read(0xcfc, 4)).toBe(0xffffffff);
    pio.write(0xcfc, 4, 0); // ignored
    pio.write(0xcf8, 4, 0x8001_0000); // bus 1
    expect(pio.read(0xcfc, 4)).toBe(0xffffffff);
    expect(cfgRead(0, 0, 0)).toBe(0x56781234);
  });

  it('passes byte writes to 0xCF9 to the reset control and keeps CONFIG_ADDRESS', () => {
    const { pio, resetWrites, log } = setup({ readResetControl: () => 0x02 });
    pio.write(0xcf8, 4, 0x8000_0010);
    pio.write(0xcf9, 1, 0x06);
    expect(resetWrites).toEqual([0x06]);
    expect(pio.read(0xcf9, 1)).toBe(0x02);
    expect(pio.read(0xcf8, 4)).toBe(0x8000_0010);
    // Byte and word accesses to the rest of 0xCF8-0xCFB reach nothing.
    pio.write(0xcf8, 1, 0);
    pio.write(0xcfa, 2, 0);
    expect(pio.read(0xcfb, 1)).toBe(0xff);
    expect(pio.read(0xcf8, 2)).toBe(0xffff);
    expect(pio.read(0xcf8, 4)).toBe(0x8000_0010);
    expect(resetWrites).toEqual([0x06]);
    expect(log.lines.some((l) => l.includes('0xcfa'))).toBe(true);
  });

  it('clips data accesses that run past 0xCFF to CONFIG_DATA', () => {
    const { host, pio } = setup();
    host.attach(nic(), 2);
    pio.write(0xcf8, 4, addr(2, 0, 0));
    expect(pio.read(0xcfe, 4)).toBe(0xffff5678);
    expect(pio.read(0xcfd, 4)).toBe(0xff567812);
    pio.write(0xcf8, 4, addr(2, 0, 0x3c));
    pio.write(0xcff, 2, 0x1234); // byte 0x3f is read-only; 0xD00 is not ours
    pio.write(0xcfd, 4, 0xaabbcc0d); // bytes 0x3d-0x3f
    expect(pio.read(0xcfc, 4)).toBe(0x0000_0100);
  });

  it('sets the multi-function bit of function 0 when another function is plugged in', () => {
    const { host, cfgRead } = setup();
    host.attach(nic('f1'), 5, 1);
    host.attach(nic('f0'), 5, 0);
    expect(cfgRead(5, 0, PCI_HEADER_TYPE, 1)).toBe(0x80);
    expect(cfgRead(5, 1, PCI_HEADER_TYPE, 1)).toBe(0x00);
    expect(() => host.attach(nic('again'), 5, 1)).toThrow(/taken/);
    expect(() => host.attach(nic('bad'), 32, 0)).toThrow(RangeError);
  });
});

describe('PCI BAR mapping', () => {
  it('sizes every BAR kind through 0xCFC', () => {
    const { host, cfgRead, cfgWrite } = setup();
    host.attach(nic(), 1);
    const sizeOf = (reg: number) => {
      cfgWrite(1, 0, reg, 4, 0xffffffff);
      return cfgRead(1, 0, reg);
    };
    expect(sizeOf(PCI_BAR0)).toBe(0xffffffe1);
    expect(sizeOf(PCI_BAR0 + 4)).toBe(0xfffff000);
    expect(sizeOf(PCI_BAR0 + 8)).toBe(0xffffc00c);
    expect(sizeOf(PCI_BAR0 + 12)).toBe(0xffffffff);
    expect(sizeOf(PCI_BAR0 + 16)).toBe(0);
    expect(sizeOf(PCI_ROM_ADDRESS)).toBe(0xffff0001);
  });

  it('maps BARs when decoding is enabled, moves them, and unmaps on decode disable', () => {
    const { host, mapper, cfgWrite } = setup();
    host.attach(nic(), 1);
    cfgWrite(1, 0, PCI_BAR0, 4, 0xc000);
    cfgWrite(1, 0, PCI_BAR0 + 4, 4, 0xfebf_0000);
    cfgWrite(1, 0, PCI_BAR0 + 8, 4, 0x0000_0000);
    cfgWrite(1, 0, PCI_BAR0 + 12, 4, 0x8);
    cfgWrite(1, 0, PCI_ROM_ADDRESS, 4, 0xfeb0_0001);
    expect(mapper.take()).toEqual([]); // decoding is off
    cfgWrite(1, 0, PCI_COMMAND, 2, PCI_COMMAND_IO);
    expect(mapper.take()).toEqual(['map pio c000+20 nic BAR0']);
    cfgWrite(1, 0, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    expect(mapper.take()).toEqual([
      'map mmio febf0000+1000 nic BAR1',
      'map mmio 800000000+4000 nic BAR2',
      'map mmio feb00000+10000 nic ROM',
    ]);
    expect(host.mappings(1)[2]).toEqual({ kind: 'mmio', base: 0x8_0000_0000, size: 0x4000 });

    cfgWrite(1, 0, PCI_BAR0 + 4, 4, 0xfebe_0000); // move
    expect(mapper.take()).toEqual(['unmap mmio febf0000', 'map mmio febe0000+1000 nic BAR1']);
    cfgWrite(1, 0, PCI_BAR0 + 4, 4, 0xfebe_0000); // same place: nothing to do
    cfgWrite(1, 0, PCI_BAR0 + 12, 4, 0x0); // 64-bit BAR goes below 4 GiB
    expect(mapper.take()).toEqual(['unmap mmio 800000000']); // at 0: not assigned
    cfgWrite(1, 0, PCI_BAR0 + 8, 4, 0xe000_0000);
    expect(mapper.take()).toEqual(['map mmio e0000000+4000 nic BAR2']);
    cfgWrite(1, 0, PCI_ROM_ADDRESS, 1, 0x00); // ROM enable off
    expect(mapper.take()).toEqual(['unmap mmio feb00000']);

    cfgWrite(1, 0, PCI_COMMAND, 2, PCI_COMMAND_IO); // memory decode off
    expect(mapper.take()).toEqual(['unmap mmio febe0000', 'unmap mmio e0000000']);
    cfgWrite(1, 0, PCI_COMMAND, 2, 0);
    expect(mapper.take()).toEqual(['unmap pio c000']);
  });

  it('does not decode what sizing leaves in a BAR, nor I/O past 0xFFFF', () => {
    const { host, mapper, cfgWrite } = setup();
    host.attach(nic(), 1);
    cfgWrite(1, 0, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    for (const reg of [PCI_BAR0, PCI_BAR0 + 4, PCI_BAR0 + 8, PCI_BAR0 + 12, PCI_ROM_ADDRESS]) {
      cfgWrite(1, 0, reg, 4, 0xffffffff);
    }
    cfgWrite(1, 0, PCI_BAR0, 4, 0x1_0000);
    // Only the low half of the 64-bit BAR mapped for a moment (at 0xFFFFC000, before its
    // upper half was written), as in QEMU; firmware sizes with decoding off.
    expect(mapper.take()).toEqual(['map mmio ffffc000+4000 nic BAR2', 'unmap mmio ffffc000']);
    expect(host.mappings(1).every((m) => m === undefined)).toBe(true);
  });

  it('refuses an overlapping BAR, logs it once, and maps it when the other one moves away', () => {
    const { host, mapper, cfgWrite, log } = setup();
    host.attach(nic('a'), 1);
    host.attach(nic('b'), 2);
    for (const slot of [1, 2]) cfgWrite(slot, 0, PCI_BAR0 + 4, 4, 0xfebf_0000);
    for (const slot of [1, 2]) cfgWrite(slot, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    expect(mapper.take()).toEqual(['map mmio febf0000+1000 a BAR1', 'refuse mmio febf0000+1000 b BAR1']);
    expect(host.mappings(2)[1]).toBeUndefined();
    cfgWrite(2, 0, 0x3c, 1, 5); // unrelated write: no retry, no new log line
    const warnings = log.lines.filter((l) => l.includes('b BAR1'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/overlaps/);
    cfgWrite(1, 0, PCI_BAR0 + 4, 4, 0xfebe_0000);
    expect(mapper.take()).toEqual([
      'unmap mmio febf0000',
      'map mmio febe0000+1000 a BAR1',
      'map mmio febf0000+1000 b BAR1',
    ]);
    expect(host.mappings(2)[1]).toEqual({ kind: 'mmio', base: 0xfebf_0000, size: 0x1000 });
  });

  it('never throws at the guest when the mapper throws', () => {
    const f = fakeCtx();
    const mapper: BarMapper = {
      map: () => {
        throw new Error('boom');
      },
      unmap: () => {},
    };
    const host = new PciHostBus(f.ctx, { mapper, intxRoute: () => 10 });
    host.attach(nic(), 0);
    host.writeConfig(0, 0, PCI_BAR0, 4, 0xc000);
    host.writeConfig(0, 0, PCI_COMMAND, 2, PCI_COMMAND_IO);
    expect(host.mappings(0)[0]).toBeUndefined();
    expect(f.log.lines.some((l) => l.includes('boom'))).toBe(true);
  });

  it('unmaps a function that is unplugged', () => {
    const { host, mapper, cfgWrite } = setup();
    const d = nic();
    host.attach(d, 4);
    cfgWrite(4, 0, PCI_BAR0, 4, 0xc000);
    cfgWrite(4, 0, PCI_COMMAND, 2, PCI_COMMAND_IO);
    mapper.take();
    expect(host.detach(4)).toBe(d);
    expect(mapper.take()).toEqual(['unmap pio c000']);
    expect(host.device(4)).toBeUndefined();
    expect(host.detach(4)).toBeUndefined();
  });

  it('reaches BAR handlers through the real buses with BusBarMapper', () => {
    const f = fakeCtx();
    const pio = new Bus('pio');
    const mmio = new Bus('mmio');
    pio.register(0x3f8, 8, regs(0), 'com1');
    const host = new PciHostBus(f.ctx, { mapper: new BusBarMapper(pio, mmio), intxRoute: () => 10 });
    pio.register(PCI_CONFIG_ADDRESS_PORT, PCI_HOST_PORT_COUNT, host, 'pci-host');
    const io = regs(0x100);
    const d = new TestDevice('virtio', { bars: [{ index: 0, kind: 'io', size: 0x20, handler: io }] });
    const e = new TestDevice('plain', { bars: [{ index: 0, kind: 'io', size: 8, handler: regs(0) }] });
    host.attach(d, 3);
    host.attach(e, 4);
    host.writeConfig(3, 0, PCI_BAR0, 4, 0xc000);
    host.writeConfig(3, 0, PCI_COMMAND, 2, PCI_COMMAND_IO);
    expect(pio.read(0xc004, 2)).toBe(0x104);
    expect(io.log).toEqual(['r4/2']);
    // A BAR over the serial port is refused, not thrown.
    host.writeConfig(4, 0, PCI_BAR0, 4, 0x3f8);
    host.writeConfig(4, 0, PCI_COMMAND, 2, PCI_COMMAND_IO);
    expect(host.mappings(4)[0]).toBeUndefined();
    expect(pio.find(0x3f8)?.owner).toBe('com1');
    // Moving BAR0 unregisters the old range.
    host.writeConfig(3, 0, PCI_BAR0, 4, 0xd000);
    expect(pio.find(0xc000)).toBeUndefined();
    expect(pio.find(0xd01f)?.owner).toBe('virtio BAR0');
  });
});

describe('MSI-X through a BAR on the host bus', () => {
  it('programs the table over MMIO and delivers when unmasked', () => {
    const f = fakeCtx();
    const pio = new Bus('pio');
    const mmio = new Bus('mmio');
    const host = new PciHostBus(f.ctx, { mapper: new BusBarMapper(pio, mmio), intxRoute: () => 10 });
    const sink = new RecordingSink();
    const layout = msixBarLayout(4);
    class MsixDevice extends TestDevice {
      constructor() {
        super('msix-dev', {
          sink,
          msix: { vectors: 4, tableBar: 2, tableOffset: 0, pbaBar: 2, pbaOffset: layout.pbaOffset },
        });
        this.addBar({ index: 2, kind: 'mem64', size: layout.barSize, handler: this.msix!.barHandler });
      }
    }
    const d = new MsixDevice();
    host.attach(d, 6);
    host.writeConfig(6, 0, PCI_BAR0 + 8, 4, 0xfe00_0000);
    host.writeConfig(6, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    host.writeConfig(6, 0, d.msixCap!.offset + 2, 2, MSIX_CTRL_ENABLE);
    mmio.write(0xfe00_0010, 4, 0xfee0_0000);
    mmio.write(0xfe00_0018, 4, 0x4031);
    expect(d.msixCap!.notify(1)).toBe(true);
    expect(mmio.read(0xfe00_0000 + layout.pbaOffset, 4)).toBe(0x2);
    mmio.write(0xfe00_001c, 4, 0);
    expect(sink.messages).toEqual([[0xfee0_0000, 0, 0x4031]]);
    expect(mmio.read(0xfe00_0000 + layout.pbaOffset, 4)).toBe(0);
  });
});

describe('PCI INTx', () => {
  it('ORs functions sharing a line and calls setIrq only on change', () => {
    const { host, irqs } = setup();
    const a = nic('a');
    const b = nic('b');
    const c = new TestDevice('c', { header: { interruptPin: 2 } });
    host.attach(a, 1); // (1 + 1 - 1) & 3 = 1 -> GSI 10
    host.attach(b, 4); // (4 + 1 - 1) & 3 = 0 -> GSI 10
    host.attach(c, 1, 1); // INTB of slot 1: 2 -> GSI 11
    a.raise(true);
    b.raise(true);
    a.raise(true);
    expect(irqs).toEqual([[10, true]]);
    a.raise(false);
    expect(irqs).toEqual([[10, true]]);
    c.raise(true);
    b.raise(false);
    expect(irqs).toEqual([
      [10, true],
      [11, true],
      [10, false],
    ]);
  });

  it('drops the line when the guest sets INTx Disable and raises it again when cleared', () => {
    const { host, irqs, cfgWrite } = setup();
    const a = nic('a');
    host.attach(a, 1);
    a.raise(true);
    cfgWrite(1, 0, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    cfgWrite(1, 0, PCI_COMMAND, 2, 0);
    expect(irqs).toEqual([
      [10, true],
      [10, false],
      [10, true],
    ]);
  });

  it('moves asserted pins when the routing changes', () => {
    let base = 10;
    const { host, irqs } = setup({ intxRoute: () => base });
    const a = nic('a');
    const b = nic('b');
    host.attach(a, 1);
    host.attach(b, 2);
    a.raise(true);
    b.raise(true);
    base = 5;
    host.refreshIntxRouting();
    expect(irqs).toEqual([
      [10, true],
      [10, false],
      [5, true],
    ]);
    a.raise(false);
    b.raise(false);
    expect(irqs.slice(-1)).toEqual([[5, false]]);
  });

  it('drives every GSI of a route that names several (PIRQ to its ISA IRQ and its IOAPIC pin)', () => {
    const { host, irqs } = setup({ intxRoute: (slot) => (slot === 2 ? [11, 16, 11] : [10, 17]) });
    const a = nic('a');
    host.attach(a, 2);
    a.raise(true);
    expect(irqs).toEqual([
      [11, true],
      [16, true],
    ]); // a GSI listed twice is driven once
    a.raise(false);
    expect(irqs.slice(2)).toEqual([
      [11, false],
      [16, false],
    ]);
    host.attach(nic('b'), 3);
    (host.device(3) as TestDevice).raise(true);
    expect(irqs.slice(4)).toEqual([
      [10, true],
      [17, true],
    ]);
  });

  it('keeps a GSI two functions share high until both deassert', () => {
    const { host, irqs } = setup({ intxRoute: (slot) => (slot === 1 ? [10, 16] : [10, 17]) });
    const a = nic('a');
    const b = nic('b');
    host.attach(a, 1);
    host.attach(b, 2);
    a.raise(true);
    b.raise(true);
    expect(irqs).toEqual([
      [10, true],
      [16, true],
      [17, true],
    ]);
    a.raise(false);
    expect(irqs.slice(3)).toEqual([[16, false]]);
    b.raise(false);
    expect(irqs.slice(4)).toEqual([
      [10, false],
      [17, false],
    ]);
  });

  it('moves an asserted pin with several GSIs: lowers the ones it left, raises the new ones', () => {
    let route: number[] | undefined = [10, 16];
    const { host, irqs } = setup({ intxRoute: () => route });
    const a = nic('a');
    const idle = nic('idle');
    host.attach(a, 1);
    host.attach(idle, 2);
    a.raise(true);
    irqs.length = 0;
    route = [11, 16]; // the guest moved the PIRQ from IRQ 10 to 11; the IOAPIC pin stays
    host.refreshIntxRouting();
    expect(irqs).toEqual([
      [10, false],
      [11, true],
    ]);
    host.refreshIntxRouting(); // no change, no calls
    expect(irqs).toHaveLength(2);
    route = undefined; // disabled
    host.refreshIntxRouting();
    expect(irqs.slice(2)).toEqual([
      [11, false],
      [16, false],
    ]);
    route = [5];
    host.refreshIntxRouting();
    expect(irqs.slice(4)).toEqual([[5, true]]);
    a.raise(false);
    expect(irqs.slice(5)).toEqual([[5, false]]);
  });

  it('leaves an unrouted pin alone and releases a pin on detach', () => {
    const { host, irqs } = setup({ intxRoute: (slot) => (slot === 9 ? undefined : 10) });
    const a = nic('a');
    const b = nic('b');
    host.attach(a, 9);
    host.attach(b, 1);
    a.raise(true);
    b.raise(true);
    host.detach(1);
    expect(irqs).toEqual([
      [10, true],
      [10, false],
    ]);
  });
});

describe('PCI host bus state', () => {
  it('round-trips CONFIG_ADDRESS; functions remap themselves when they load', () => {
    const a = setup();
    a.pio.write(0xcf8, 4, addr(3, 0, 0x10));
    const saved = JSON.parse(JSON.stringify(a.host.saveState())) as ReturnType<PciHostBus['saveState']>;
    const b = setup();
    b.host.loadState(saved);
    expect(b.pio.read(0xcf8, 4)).toBe(addr(3, 0, 0x10));
    expect(() => b.host.loadState({ version: 1, address: -1 })).toThrow(/CONFIG_ADDRESS/);
    b.host.reset();
    expect(b.pio.read(0xcf8, 4)).toBe(0);

    const d1 = nic('d');
    a.host.attach(d1, 3);
    a.cfgWrite(3, 0, PCI_BAR0, 4, 0xc000);
    a.cfgWrite(3, 0, PCI_COMMAND, 2, PCI_COMMAND_IO);
    d1.raise(true);
    const d2 = nic('d');
    b.host.attach(d2, 3);
    d2.loadState(d1.saveState());
    expect(b.mapper.take()).toEqual(['map pio c000+20 d BAR0']);
    expect(b.irqs).toEqual([[11, true]]);
    d2.reset();
    expect(b.mapper.take()).toEqual(['unmap pio c000']);
    expect(b.irqs).toEqual([
      [11, true],
      [11, false],
    ]);
  });
});

describe('PCI host bus against a hostile guest', () => {
  it('survives every byte value at every config offset of every slot and function', () => {
    const { host, pio, irqs } = setup();
    const layout = msixBarLayout(8);
    const devices = [
      nic('a'),
      new TestDevice('msi', { msi: { vectors: 32, perVectorMask: true } }),
      new TestDevice('msix', {
        msix: { vectors: 8, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: layout.pbaOffset },
        bars: [{ index: 0, kind: 'mem32', size: layout.barSize, handler: regs(0) }],
        header: { extended: true },
      }),
    ];
    host.attach(devices[0]!, 0);
    host.attach(devices[1]!, 0, 3);
    host.attach(devices[2]!, 31, 7);
    for (const d of devices) d.raise(true);
    const populated = new Set([0, 3, 31 * 8 + 7]);
    for (let devfn = 0; devfn < 256; devfn++) {
      const slot = devfn >> 3;
      const fn = devfn & 7;
      const values = populated.has(devfn) ? 256 : 4;
      for (let reg = 0; reg < 256; reg++) {
        pio.write(0xcf8, 4, addr(slot, fn, reg & 0xfc));
        for (let v = 0; v < values; v++) {
          const value = values === 256 ? v : [0, 0xff, 0x55, 0xaa][v]!;
          pio.write(0xcfc + (reg & 3), 1, value);
          pio.read(0xcfc + (reg & 3), 1);
        }
        for (const dword of [0, 0xffffffff, 0x12345678, 0x80000001]) {
          pio.write(0xcfc, 4, dword);
          pio.write(0xcfc + (reg & 3), 2, dword);
          pio.read(0xcfc, 4);
        }
      }
    }
    // Every value of the address register, with every access shape on 0xCF8-0xCFF.
    for (const value of [0, 0xff, 0xffff, 0xffffffff, 0x7fffffff, 0x80000000, 0x8000fffc, 0x80ff0000]) {
      for (let port = 0xcf8; port < 0xd00; port++) {
        for (const size of [1, 2, 4] as const) {
          pio.write(port, size, value);
          pio.read(port, size);
        }
      }
    }
    for (let i = 0; i < 20000; i++) {
      const port = 0xcf8 + (i % 8);
      const size = ([1, 2, 4] as const)[i % 3]!;
      const value = (Math.imul(i, 0x9e3779b1) ^ (i << 7)) >>> 0;
      if (i % 5 === 0) pio.write(0xcf8, 4, (value | 0x80000000) >>> 0);
      else pio.write(port, size, value);
      pio.read(port, size);
    }
    // The functions are still themselves.
    expect(host.readConfig(0, 0, 0, 4)).toBe(0x56781234);
    expect(host.readConfig(31, 7, 0, 4)).toBe(0x56781234);
    expect(irqs.every(([gsi]) => gsi === 10 || gsi === 11)).toBe(true);
  });
});
