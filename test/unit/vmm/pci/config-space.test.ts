import { describe, expect, it } from 'vitest';
import { DeviceStateError } from '../../../../src/vmm/core/device.js';
import {
  ConfigSpace,
  PCI_BAR0,
  PCI_CAP_ID_MSI,
  PCI_CAP_ID_MSIX,
  PCI_CAP_ID_VENDOR,
  PCI_CAPABILITY_LIST,
  PCI_COMMAND,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_ROM_ADDRESS,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STATUS_INTERRUPT,
  PCI_STATUS_REC_MASTER_ABORT,
  PCI_STATUS_SIG_TARGET_ABORT,
  type PciHeader,
} from '../../../../src/vmm/pci/config-space.js';

const header: PciHeader = {
  vendorId: 0x8086,
  deviceId: 0x7010,
  classCode: 0x010180,
  revision: 2,
  subsystemVendorId: 0x1af4,
  subsystemId: 0x1100,
  interruptPin: 1,
};

/** Sizing as firmware does it (§6.2.5.1): save, write all-ones, read, restore. */
function size(c: ConfigSpace, reg: number): number {
  const saved = c.read(reg, 4);
  c.write(reg, 4, 0xffffffff);
  const v = c.read(reg, 4);
  c.write(reg, 4, saved);
  return v;
}

describe('ConfigSpace header', () => {
  it('holds the identity in read-only registers', () => {
    const c = new ConfigSpace(header);
    expect(c.read(0, 4)).toBe(0x70108086);
    expect(c.read(8, 4)).toBe(0x01018002);
    expect(c.read(0x2c, 4)).toBe(0x11001af4);
    expect(c.read(PCI_INTERRUPT_PIN, 1)).toBe(1);
    for (let o = 0; o < 0x40; o += 4) if (o !== PCI_COMMAND) c.write(o, 4, 0xffffffff);
    c.write(0, 4, 0);
    c.write(8, 1, 0x55);
    expect(c.read(0, 4)).toBe(0x70108086);
    expect(c.read(8, 4)).toBe(0x01018002);
    expect(c.read(0x0c, 4)).toBe(0x000000ff); // cache line size only; latency, header type, BIST read-only
    expect(c.read(0x2c, 4)).toBe(0x11001af4);
    expect(c.read(PCI_CAPABILITY_LIST, 4)).toBe(0);
    expect(c.read(0x3c, 4)).toBe(0x000001ff); // interrupt line writable, pin not
    expect(c.read(PCI_BAR0, 4)).toBe(0); // no BAR declared: hardwired 0
    expect(c.size).toBe(256);
  });

  it('keeps the writable command bits only (I/O, memory, master, parity, SERR, INTx disable)', () => {
    const c = new ConfigSpace(header);
    c.write(PCI_COMMAND, 2, 0xffff);
    expect(c.command).toBe(0x0547);
    c.write(PCI_COMMAND, 1, 0x00);
    expect(c.command).toBe(0x0500);
    c.write(PCI_COMMAND + 1, 1, 0x00);
    expect(c.command).toBe(0);
  });

  it('clears status error bits written with 1 and leaves the others (RW1C)', () => {
    const c = new ConfigSpace(header);
    c.setStatusBits(PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_INTERRUPT, true);
    c.write(PCI_STATUS, 2, 0);
    expect(c.status).toBe(0x2808);
    c.write(PCI_STATUS, 2, PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_INTERRUPT | PCI_STATUS_CAP_LIST);
    expect(c.status).toBe(0x0808); // interrupt status is read-only, cap list not set by the guest
    c.write(PCI_STATUS + 1, 1, 0xff);
    expect(c.status).toBe(0x0008);
  });

  it('reads and writes bytes and words at any offset of a register', () => {
    const c = new ConfigSpace(header);
    expect(c.read(1, 1)).toBe(0x80);
    expect(c.read(1, 2)).toBe(0x1080);
    expect(c.read(2, 2)).toBe(0x7010);
    c.write(PCI_INTERRUPT_LINE, 1, 0x0b);
    expect(c.read(PCI_INTERRUPT_LINE, 2)).toBe(0x010b);
  });

  it('reads past the end as all-ones and ignores writes there', () => {
    const c = new ConfigSpace(header);
    expect(c.read(0x100, 4)).toBe(0xffffffff);
    expect(c.read(0xfe, 4)).toBe(0xffff0000);
    c.write(0x100, 4, 0);
    const e = new ConfigSpace({ ...header, extended: true });
    expect(e.size).toBe(4096);
    expect(e.read(0x100, 4)).toBe(0);
    expect(e.read(0x1000, 1)).toBe(0xff);
  });

  it('refuses a reserved vendor ID', () => {
    expect(() => new ConfigSpace({ ...header, vendorId: 0xffff })).toThrow(RangeError);
  });
});

describe('ConfigSpace BARs', () => {
  it('sizes an I/O BAR: bit 0 set, size mask above bit 1', () => {
    const c = new ConfigSpace(header);
    c.addBar(4, { kind: 'io', size: 16, prefetchable: false });
    expect(c.read(PCI_BAR0 + 16, 4)).toBe(0x1);
    expect(size(c, PCI_BAR0 + 16)).toBe(0xfffffff1);
    c.write(PCI_BAR0 + 16, 4, 0xc00f);
    expect(c.read(PCI_BAR0 + 16, 4)).toBe(0xc001);
    expect(c.barAddress(4)).toBe(0xc000);
  });

  it('sizes a 32-bit memory BAR, prefetchable or not', () => {
    const c = new ConfigSpace(header);
    c.addBar(0, { kind: 'mem32', size: 0x1000, prefetchable: false });
    c.addBar(1, { kind: 'mem32', size: 0x100_0000, prefetchable: true });
    expect(size(c, PCI_BAR0)).toBe(0xfffff000);
    expect(size(c, PCI_BAR0 + 4)).toBe(0xff000008);
    c.write(PCI_BAR0 + 4, 4, 0xfd12_3456);
    expect(c.read(PCI_BAR0 + 4, 4)).toBe(0xfd00_0008);
    expect(c.barAddress(1)).toBe(0xfd00_0000);
    expect(c.bar(1)).toEqual({ kind: 'mem32', size: 0x100_0000, prefetchable: true });
  });

  it('sizes a 64-bit memory BAR over two registers', () => {
    const c = new ConfigSpace(header);
    c.addBar(2, { kind: 'mem64', size: 0x4000, prefetchable: true });
    expect(c.read(PCI_BAR0 + 8, 4)).toBe(0x0c);
    expect(size(c, PCI_BAR0 + 8)).toBe(0xffffc00c);
    expect(size(c, PCI_BAR0 + 12)).toBe(0xffffffff);
    c.write(PCI_BAR0 + 8, 4, 0xfe00_0000);
    c.write(PCI_BAR0 + 12, 4, 0x8);
    expect(c.barAddress(2)).toBe(0x8_fe00_0000);
    expect(c.bar(3)).toBeUndefined();
    expect(() => c.addBar(3, { kind: 'mem32', size: 16, prefetchable: false })).toThrow(/already/);
  });

  it('sizes a 64-bit BAR larger than 4 GiB: the low register is all flags', () => {
    const c = new ConfigSpace(header);
    c.addBar(0, { kind: 'mem64', size: 8 * 2 ** 30, prefetchable: true });
    expect(size(c, PCI_BAR0)).toBe(0x0000000c);
    expect(size(c, PCI_BAR0 + 4)).toBe(0xfffffffe);
  });

  it('sizes the expansion ROM BAR; bit 0 enables it', () => {
    const c = new ConfigSpace(header);
    expect(size(c, PCI_ROM_ADDRESS)).toBe(0); // no ROM: hardwired 0
    c.setRom(0x10000);
    expect(size(c, PCI_ROM_ADDRESS)).toBe(0xffff0001);
    expect(c.romEnabled()).toBe(false);
    c.write(PCI_ROM_ADDRESS, 4, 0xfeb0_0001);
    expect(c.romAddress()).toBe(0xfeb0_0000);
    expect(c.romEnabled()).toBe(true);
    expect(c.romSize).toBe(0x10000);
  });

  it('refuses BAR declarations that are not BARs', () => {
    const c = new ConfigSpace(header);
    expect(() => c.addBar(0, { kind: 'io', size: 12, prefetchable: false })).toThrow(/power of two/);
    expect(() => c.addBar(0, { kind: 'io', size: 16, prefetchable: true })).toThrow(/prefetchable/);
    expect(() => c.addBar(5, { kind: 'mem64', size: 16, prefetchable: false })).toThrow(/BAR5/);
    expect(() => c.addBar(6, { kind: 'mem32', size: 16, prefetchable: false })).toThrow(/index/);
    expect(() => c.addBar(0, { kind: 'mem32', size: 8, prefetchable: false })).toThrow(/power of two/);
    expect(() => c.setRom(0x400)).toThrow(/ROM/);
  });
});

describe('ConfigSpace capabilities', () => {
  it('links capabilities from 0x34 through each next pointer, with status bit 4', () => {
    const c = new ConfigSpace(header);
    expect(c.status & PCI_STATUS_CAP_LIST).toBe(0);
    c.reserve(0x40, 0x10); // device registers
    const a = c.addCapability(PCI_CAP_ID_MSI, 0x18);
    const b = c.addCapability(PCI_CAP_ID_VENDOR, 5);
    const d = c.addCapability(PCI_CAP_ID_MSIX, 12, 0xc0);
    expect([a, b, d]).toEqual([0x50, 0x68, 0xc0]);
    expect(c.status & PCI_STATUS_CAP_LIST).toBe(PCI_STATUS_CAP_LIST);
    // Walk as a guest would, through guest reads only.
    const ids: number[] = [];
    for (let p = c.read(PCI_CAPABILITY_LIST, 1); p !== 0; p = c.read(p + 1, 1)) ids.push(c.read(p, 1));
    expect(ids).toEqual([PCI_CAP_ID_MSI, PCI_CAP_ID_VENDOR, PCI_CAP_ID_MSIX]);
    expect(c.capabilities()).toEqual([
      { id: PCI_CAP_ID_MSI, offset: 0x50 },
      { id: PCI_CAP_ID_VENDOR, offset: 0x68 },
      { id: PCI_CAP_ID_MSIX, offset: 0xc0 },
    ]);
    expect(c.findCapability(PCI_CAP_ID_MSIX)).toBe(0xc0);
    // The list is read-only to the guest.
    c.write(PCI_CAPABILITY_LIST, 1, 0x44);
    c.write(0x50, 2, 0xffff);
    expect(c.read(PCI_CAPABILITY_LIST, 1)).toBe(0x50);
    expect(c.read(0x50, 2)).toBe(0x6805);
  });

  it('refuses overlapping or misplaced capabilities', () => {
    const c = new ConfigSpace(header);
    c.addCapability(PCI_CAP_ID_MSI, 0x18, 0x40);
    expect(() => c.addCapability(PCI_CAP_ID_MSIX, 12, 0x50)).toThrow(/taken/);
    expect(() => c.addCapability(PCI_CAP_ID_MSIX, 12, 0x62)).toThrow(/aligned/);
    expect(() => c.addCapability(PCI_CAP_ID_MSIX, 12, 0xf8)).toThrow(/below 0x100/);
    expect(() => c.reserve(0x30, 4)).toThrow(/header/);
  });
});

describe('ConfigSpace reset and state', () => {
  it('reset clears what the guest wrote and keeps the read-only parts', () => {
    const c = new ConfigSpace(header);
    c.addBar(0, { kind: 'mem32', size: 0x1000, prefetchable: true });
    c.write(PCI_COMMAND, 2, 0x7);
    c.write(PCI_BAR0, 4, 0xfebf_0000);
    c.write(PCI_INTERRUPT_LINE, 1, 11);
    c.resetRegisters();
    expect(c.command).toBe(0);
    expect(c.read(PCI_BAR0, 4)).toBe(0x8);
    expect(c.read(PCI_INTERRUPT_LINE, 2)).toBe(0x0100);
    expect(c.read(0, 4)).toBe(0x70108086);
  });

  it('saves bytes and loads them into the same kind of function only', () => {
    const c = new ConfigSpace(header);
    c.addBar(0, { kind: 'io', size: 32, prefetchable: false });
    c.write(PCI_BAR0, 4, 0xc040);
    c.write(PCI_COMMAND, 2, 1);
    const saved = JSON.parse(JSON.stringify(c.save())) as unknown;
    const d = new ConfigSpace(header);
    d.addBar(0, { kind: 'io', size: 32, prefetchable: false });
    d.load(saved, 'ide');
    expect(d.read(PCI_BAR0, 4)).toBe(0xc041);
    expect(d.command).toBe(1);
    expect(() => new ConfigSpace({ ...header, deviceId: 0x7111 }).load(saved, 'ide')).toThrow(
      DeviceStateError,
    );
    expect(() => d.load([1, 2, 3], 'ide')).toThrow(DeviceStateError);
    expect(() => d.load(new Array(256).fill(256), 'ide')).toThrow(DeviceStateError);
  });
});
