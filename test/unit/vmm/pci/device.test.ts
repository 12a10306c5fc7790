import { describe, expect, it } from 'vitest';
import { DeviceStateError } from '../../../../src/vmm/core/device.js';
import {
  PCI_BAR0,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_MASTER,
  PCI_STATUS,
  PCI_STATUS_INTERRUPT,
} from '../../../../src/vmm/pci/config-space.js';
import type { PciBusPort } from '../../../../src/vmm/pci/device.js';
import { MSIX_CTRL_ENABLE, msixBarLayout } from '../../../../src/vmm/pci/msix.js';
import { RecordingSink, TestDevice, regs } from './helpers.js';

function port() {
  const events: string[] = [];
  const p: PciBusPort = {
    setIntx: (level) => events.push(`intx ${level}`),
    remap: () => events.push('remap'),
  };
  return { p, events };
}

describe('PciDevice', () => {
  it('declares BARs in config space and keeps their handlers', () => {
    const h = regs(0);
    const d = new TestDevice('d', {
      bars: [
        { index: 2, kind: 'mem64', size: 0x1000, handler: h },
        { index: 0, kind: 'io', size: 0x20, handler: h },
      ],
      rom: { size: 0x8000, handler: h },
    });
    expect(d.bars.map((b) => b.index)).toEqual([0, 2]);
    expect(d.readConfig(PCI_BAR0, 4)).toBe(1);
    expect(d.readConfig(PCI_BAR0 + 8, 4)).toBe(4);
    expect(d.rom?.size).toBe(0x8000);
  });

  it('asks the bus to remap on Command, BAR and ROM writes only, and calls the write hook', () => {
    const d = new TestDevice('d', { bars: [{ index: 0, kind: 'io', size: 16, handler: regs(0) }] });
    const { p, events } = port();
    d.attach(p);
    d.writeConfig(PCI_COMMAND, 2, 1);
    d.writeConfig(PCI_BAR0 + 1, 1, 0xc0);
    d.writeConfig(0x30, 4, 0);
    d.writeConfig(0x3c, 1, 5);
    d.writeConfig(0x40, 4, 5);
    expect(events).toEqual(['remap', 'remap', 'remap']);
    expect(d.writes).toEqual(['4/2=1', '17/1=c0', '48/4=0', '60/1=5', '64/4=5']);
    expect(d.busMasterEnabled).toBe(false);
    d.writeConfig(PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    expect(d.busMasterEnabled).toBe(true);
    expect(() => d.attach(p)).toThrow(/already attached/);
  });

  it('drives INTx unless INTx Disable or MSI is on; Status bit 3 shows the condition', () => {
    const d = new TestDevice('d', { msi: { vectors: 1 } });
    const { p, events } = port();
    d.attach(p);
    d.raise(true);
    expect(events).toEqual(['intx true']);
    expect(d.readConfig(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(PCI_STATUS_INTERRUPT);
    d.writeConfig(PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    expect(events.slice(-1)).toEqual(['intx false']);
    expect(d.readConfig(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(PCI_STATUS_INTERRUPT);
    d.writeConfig(PCI_COMMAND, 2, 0);
    expect(events.slice(-1)).toEqual(['intx true']);
    d.writeConfig(d.msiCap!.offset + 2, 2, 1); // MSI enable
    expect(events.slice(-1)).toEqual(['intx false']);
    d.writeConfig(d.msiCap!.offset + 2, 2, 0);
    d.raise(false);
    expect(events.slice(-2)).toEqual(['intx true', 'intx false']);
    expect(d.readConfig(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(0);
  });

  it('never drives INTx without an interrupt pin', () => {
    const d = new TestDevice('d', { header: { interruptPin: 0 } });
    const { p, events } = port();
    d.attach(p);
    d.raise(true);
    expect(events).toEqual([]);
    expect(d.intxAsserted).toBe(false);
  });

  it('checks that the MSI-X table and PBA fit in a memory BAR when attached', () => {
    const layout = msixBarLayout(4);
    const msix = { vectors: 4, tableBar: 1, tableOffset: 0, pbaBar: 1, pbaOffset: layout.pbaOffset };
    const ok = new TestDevice('ok', {
      msix,
      bars: [{ index: 1, kind: 'mem32', size: 0x1000, handler: regs(0) }],
    });
    ok.attach(port().p);
    const io = new TestDevice('io', { msix, bars: [{ index: 1, kind: 'io', size: 0x40, handler: regs(0) }] });
    expect(() => io.attach(port().p)).toThrow(/MSI-X table/);
    const none = new TestDevice('none', { msix });
    expect(() => none.attach(port().p)).toThrow(/MSI-X table/);
  });

  it('reset restores power-on registers, masks MSI-X, drops INTx and remaps', () => {
    const sink = new RecordingSink();
    const layout = msixBarLayout(2);
    const d = new TestDevice('d', {
      sink,
      msix: { vectors: 2, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: layout.pbaOffset },
      bars: [{ index: 0, kind: 'mem32', size: layout.barSize, handler: regs(0) }],
    });
    const { p, events } = port();
    d.attach(p);
    d.writeConfig(PCI_COMMAND, 2, 0x6);
    d.writeConfig(PCI_BAR0, 4, 0xfebf_0000);
    d.msixCap!.table.write(12, 4, 0);
    d.raise(true);
    d.counter = 7;
    events.length = 0;
    d.reset();
    expect(d.readConfig(PCI_COMMAND, 2)).toBe(0);
    expect(d.readConfig(PCI_BAR0, 4)).toBe(0);
    expect(d.msixCap!.isMasked(0)).toBe(true);
    expect(d.readConfig(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(0);
    expect(d.resets).toBe(1);
    expect(d.counter).toBe(0);
    expect(events).toEqual(['remap', 'intx false']);
  });

  it('round-trips its state: config bytes, MSI-X and the device part', () => {
    const layout = msixBarLayout(2);
    const spec = () => ({
      msix: { vectors: 2, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: layout.pbaOffset },
      bars: [{ index: 0, kind: 'mem32' as const, size: layout.barSize, handler: regs(0) }],
    });
    const a = new TestDevice('a', spec());
    a.attach(port().p);
    a.writeConfig(PCI_COMMAND, 2, 0x2);
    a.writeConfig(PCI_BAR0, 4, 0xfebf_0000);
    a.writeConfig(a.msixCap!.offset + 2, 2, MSIX_CTRL_ENABLE);
    a.msixCap!.table.write(16, 4, 0xfee0_0000);
    a.msixCap!.notify(1);
    a.counter = 42;
    const saved = JSON.parse(JSON.stringify(a.saveState())) as ReturnType<TestDevice['saveState']>;
    expect(saved.version).toBe(1);

    const b = new TestDevice('b', spec());
    const { p, events } = port();
    b.attach(p);
    b.loadState(saved);
    expect(b.saveState()).toEqual(saved);
    expect(b.counter).toBe(42);
    expect(b.msixCap!.isPending(1)).toBe(true);
    expect(events).toEqual(['remap']);
    expect(() => b.loadState({ ...saved, version: 2 })).toThrow(DeviceStateError);
    expect(() => b.loadState({ version: 1, config: saved.config })).toThrow(/MSI-X/);
  });

  it('restores a raised INTx from saved state', () => {
    const a = new TestDevice('a');
    a.attach(port().p);
    a.raise(true);
    const b = new TestDevice('b');
    const { p, events } = port();
    b.attach(p);
    b.loadState(a.saveState());
    expect(b.intxAsserted).toBe(true);
    expect(events).toEqual(['remap', 'intx true']);
  });

  it('refuses declarations after it is attached', () => {
    const d = new TestDevice('d');
    d.attach(port().p);
    expect(() => d.lateMsi()).toThrow(/before attaching/);
  });
});
