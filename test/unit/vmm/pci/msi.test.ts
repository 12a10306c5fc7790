import { describe, expect, it } from 'vitest';
import { ConfigSpace, PCI_CAP_ID_MSI } from '../../../../src/vmm/pci/config-space.js';
import { MsiCapability, type MsiOptions } from '../../../../src/vmm/pci/msi.js';
import { RecordingSink } from './helpers.js';

function make(opts: MsiOptions) {
  const config = new ConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000 });
  const sink = new RecordingSink();
  const msi = new MsiCapability(config, opts, sink);
  const o = msi.offset;
  return { config, sink, msi, o };
}

describe('MSI capability', () => {
  it('lays out a 64-bit capability and delivers the programmed message', () => {
    const { config, sink, msi, o } = make({});
    expect(config.findCapability(PCI_CAP_ID_MSI)).toBe(o);
    expect(config.read(o + 2, 2)).toBe(0x0080); // 64-bit, one vector, disabled
    expect(msi.notify()).toBe(false); // disabled: the function uses INTx
    config.write(o + 4, 4, 0xfee0_100f);
    config.write(o + 8, 4, 0x1);
    config.write(o + 0x0c, 4, 0xffff_4041);
    expect(config.read(o + 4, 4)).toBe(0xfee0_100c); // bits 1:0 reserved
    expect(config.read(o + 0x0c, 4)).toBe(0x4041); // 16-bit data
    config.write(o + 2, 2, 0xffff);
    expect(config.read(o + 2, 2)).toBe(0x00f1); // enable + MME written; MMC, 64-bit read-only
    expect(msi.enabled).toBe(true);
    expect(msi.allocatedVectors).toBe(1); // MME above MMC is capped
    expect(msi.notify()).toBe(true);
    expect(sink.messages).toEqual([[0xfee0_100c, 1, 0x4041]]);
  });

  it('lays out a 32-bit capability without an upper address', () => {
    const { config, sink, msi, o } = make({ addr64: false });
    config.write(o + 4, 4, 0xfee0_0000);
    config.write(o + 8, 2, 0x0031);
    config.write(o + 2, 2, 1);
    expect(config.read(o + 2, 2)).toBe(0x0001);
    msi.notify();
    expect(sink.messages).toEqual([[0xfee0_0000, 0, 0x31]]);
  });

  it('puts the vector number in the low data bits when several vectors are enabled', () => {
    const { config, sink, msi, o } = make({ vectors: 8 });
    expect(config.read(o + 2, 2)).toBe(0x0086); // MMC = 3 (8 vectors)
    config.write(o + 4, 4, 0xfee0_0000);
    config.write(o + 0x0c, 2, 0x0047);
    config.write(o + 2, 2, 0x0021); // enable, MME = 2 (4 vectors)
    msi.notify(2);
    msi.notify(7); // not allocated: folds onto vector 3
    expect(sink.messages.map((m) => m[2])).toEqual([0x46, 0x47]);
  });

  it('with per-vector masking, a masked vector becomes pending and goes out when unmasked', () => {
    const { config, sink, msi, o } = make({ vectors: 4, perVectorMask: true });
    expect(config.read(o + 2, 2)).toBe(0x0184);
    const mask = o + 0x10;
    const pending = o + 0x14;
    config.write(o + 4, 4, 0xfee0_0000);
    config.write(o + 0x0c, 2, 0x50);
    config.write(mask, 4, 0xffffffff);
    expect(config.read(mask, 4)).toBe(0xf); // one bit per capable vector
    config.write(o + 2, 2, 0x0021);
    expect(msi.notify(1)).toBe(true);
    expect(sink.messages).toEqual([]);
    expect(msi.isPending(1)).toBe(true);
    config.write(pending, 4, 0); // Pending Bits are read-only
    expect(config.read(pending, 4)).toBe(0x2);
    config.write(mask, 4, 0xd); // unmask vector 1
    expect(sink.messages).toEqual([[0xfee0_0000, 0, 0x51]]);
    expect(config.read(pending, 4)).toBe(0);
    msi.notify(0);
    msi.clearPending(0);
    config.write(mask, 4, 0);
    expect(sink.messages.length).toBe(1);
  });

  it('reset clears Pending Bits', () => {
    const { config, msi, o } = make({ vectors: 1, perVectorMask: true, addr64: false });
    config.write(o + 0x0c, 4, 1);
    config.write(o + 2, 2, 1);
    msi.notify();
    expect(msi.isPending(0)).toBe(true);
    config.resetRegisters();
    msi.reset();
    expect(msi.isPending(0)).toBe(false);
    expect(msi.enabled).toBe(false);
  });
});
