import { describe, expect, it } from 'vitest';
import { ConfigSpace, PCI_CAP_ID_MSIX } from '../../../../src/vmm/pci/config-space.js';
import {
  MSIX_CTRL_ENABLE,
  MSIX_CTRL_FUNCTION_MASK,
  MsixCapability,
  msixBarLayout,
} from '../../../../src/vmm/pci/msix.js';
import { RecordingSink } from './helpers.js';

function make(vectors = 4) {
  const config = new ConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000 });
  const sink = new RecordingSink();
  const layout = msixBarLayout(vectors);
  const msix = new MsixCapability(
    config,
    { vectors, tableBar: 1, tableOffset: layout.tableOffset, pbaBar: 1, pbaOffset: layout.pbaOffset },
    sink,
  );
  const bar = msix.barHandler;
  const ctrl = msix.offset + 2;
  const program = (v: number, lo: number, hi: number, data: number) => {
    bar.write(v * 16, 4, lo);
    bar.write(v * 16 + 4, 4, hi);
    bar.write(v * 16 + 8, 4, data);
  };
  return { config, sink, msix, bar, ctrl, program, layout };
}

describe('MSI-X capability', () => {
  it('describes the table and PBA in config space (read-only)', () => {
    const { config, msix, layout } = make(5);
    const o = config.findCapability(PCI_CAP_ID_MSIX)!;
    expect(o).toBe(msix.offset);
    expect(config.read(o + 2, 2)).toBe(4); // table size N-1
    expect(config.read(o + 4, 4)).toBe(0x00000001); // offset 0, BIR 1
    expect(config.read(o + 8, 4)).toBe(0x50 | 1);
    config.write(o + 4, 4, 0xffffffff);
    config.write(o + 2, 2, 0xffff);
    expect(config.read(o + 4, 4)).toBe(1);
    expect(config.read(o + 2, 2)).toBe(MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK | 4);
    expect(layout).toEqual({ tableOffset: 0, pbaOffset: 0x50, barSize: 0x1000 });
    expect(msixBarLayout(2048).barSize).toBe(0x10000);
  });

  it('reads back table writes; vectors start masked; Vector Control keeps only the mask bit', () => {
    const { bar, program } = make();
    expect(bar.read(12, 4)).toBe(1);
    expect(bar.read(16 + 12, 4)).toBe(1);
    program(1, 0xfee0_0000, 0x0, 0x4021);
    expect([bar.read(16, 4), bar.read(20, 4), bar.read(24, 4)]).toEqual([0xfee0_0000, 0, 0x4021]);
    bar.write(28, 4, 0xffff_fffe);
    expect(bar.read(28, 4)).toBe(0);
    bar.write(28, 4, 0xffff_ffff);
    expect(bar.read(28, 4)).toBe(1);
    // Byte and word accesses work on the same bytes.
    bar.write(24, 1, 0x99);
    expect(bar.read(24, 2)).toBe(0x4099);
    // Past the table: the PBA (read-only), then nothing.
    bar.write(0x40, 4, 0xffffffff);
    expect(bar.read(0x40, 4)).toBe(0);
    expect(bar.read(0x800, 4)).toBe(0);
  });

  it('delivers an unmasked vector when enabled; returns false when disabled', () => {
    const { config, sink, msix, bar, ctrl, program } = make();
    program(2, 0xfee0_1000, 0x2, 0x4022);
    bar.write(2 * 16 + 12, 4, 0);
    expect(msix.notify(2)).toBe(false);
    config.write(ctrl, 2, MSIX_CTRL_ENABLE);
    expect(msix.notify(2)).toBe(true);
    expect(sink.messages).toEqual([[0xfee0_1000, 2, 0x4022]]);
    expect(() => msix.notify(4)).toThrow(RangeError);
  });

  it('sets the PBA bit of a masked vector and delivers it on unmask (§6.8.2.9)', () => {
    const { config, sink, msix, bar, ctrl, program, layout } = make(70);
    program(65, 0xfee0_0000, 0, 0x4065);
    config.write(ctrl, 2, MSIX_CTRL_ENABLE);
    expect(msix.notify(65)).toBe(true);
    expect(sink.messages).toEqual([]);
    expect(msix.isPending(65)).toBe(true);
    expect(bar.read(layout.pbaOffset, 4)).toBe(0);
    expect(bar.read(layout.pbaOffset + 8, 4)).toBe(0x2); // vector 65 = QWORD 1, bit 1
    bar.write(layout.pbaOffset + 8, 4, 0); // PBA writes are ignored
    expect(bar.read(layout.pbaOffset + 8, 1)).toBe(0x2);
    bar.write(65 * 16 + 12, 4, 0); // unmask
    expect(sink.messages).toEqual([[0xfee0_0000, 0, 0x4065]]);
    expect(bar.read(layout.pbaOffset + 8, 4)).toBe(0);
  });

  it('holds every vector pending under the Function Mask and delivers when it clears', () => {
    const { config, sink, msix, bar, ctrl, program } = make();
    program(0, 0xfee0_0000, 0, 0x40);
    program(3, 0xfee0_0000, 0, 0x43);
    bar.write(12, 4, 0);
    bar.write(3 * 16 + 12, 4, 0);
    config.write(ctrl, 2, MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK);
    msix.notify(3);
    msix.notify(0);
    msix.notify(1); // vector 1 is still masked itself
    expect(sink.messages).toEqual([]);
    config.write(ctrl + 1, 1, MSIX_CTRL_ENABLE >> 8);
    expect(sink.messages.map((m) => m[2])).toEqual([0x40, 0x43]);
    expect(msix.isPending(1)).toBe(true);
    msix.clearPending(1);
    bar.write(16 + 12, 4, 0);
    expect(sink.messages.length).toBe(2);
  });

  it('saves and loads the table and pending bits; reset masks every vector', () => {
    const a = make();
    a.program(1, 0xfee0_0000, 0, 0x41);
    a.config.write(a.ctrl, 2, MSIX_CTRL_ENABLE);
    a.msix.notify(1);
    const state = JSON.parse(JSON.stringify(a.msix.saveState())) as unknown;
    const b = make();
    b.msix.loadState(state, 'dev');
    b.config.write(b.ctrl, 2, MSIX_CTRL_ENABLE);
    expect(b.msix.isPending(1)).toBe(true);
    b.bar.write(16 + 12, 4, 0);
    expect(b.sink.messages).toEqual([[0xfee0_0000, 0, 0x41]]);
    expect(() => b.msix.loadState({ table: [], pending: [] }, 'dev')).toThrow(/MSI-X/);
    expect(() => b.msix.loadState({ table: new Array(16).fill(0), pending: [9] }, 'dev')).toThrow(/MSI-X/);
    b.msix.reset();
    expect(b.msix.entry(1)).toEqual({ addressLo: 0, addressHi: 0, data: 0, control: 1 });
  });

  it('refuses a layout where table and PBA overlap or are misaligned', () => {
    const config = new ConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0 });
    const sink = new RecordingSink();
    const base = { vectors: 4, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x40 };
    expect(() => new MsixCapability(config, { ...base, pbaOffset: 0x38 }, sink)).toThrow(/overlap/);
    expect(() => new MsixCapability(config, { ...base, pbaOffset: 0x44 }, sink)).toThrow(/offset/);
    expect(() => new MsixCapability(config, { ...base, vectors: 0 }, sink)).toThrow(/vector count/);
    expect(() => new MsixCapability(config, { ...base, pbaBar: 6 }, sink)).toThrow(/BAR/);
    expect(() => new MsixCapability(config, { ...base, pbaBar: 2 }, sink).barHandler).toThrow(
      /different BARs/,
    );
  });
});
