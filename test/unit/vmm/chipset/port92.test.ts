import { describe, expect, it } from 'vitest';
import { Port92 } from '../../../../src/vmm/chipset/port92.js';
import { fakeCtx } from '../pci/helpers.js';

function setup() {
  const f = fakeCtx();
  const resets: string[] = [];
  f.ctx.requestReset = (reason) => void resets.push(reason);
  return { port: new Port92(f.ctx), resets };
}

describe('port 0x92 (system control port A)', () => {
  it('reads A20 enabled after power-on and reset, and keeps what is written to bits 1:0', () => {
    const { port } = setup();
    expect(port.read(0, 1)).toBe(0x02);
    port.write(0, 1, 0x00); // A20 "off": stored, not enforced
    expect(port.read(0, 1)).toBe(0x00);
    port.write(0, 1, 0xfe);
    expect(port.read(0, 1)).toBe(0x02);
    port.write(0, 1, 0x00);
    port.reset();
    expect(port.read(0, 1)).toBe(0x02);
  });

  it('resets the machine when bit 0 goes from 0 to 1, once', () => {
    const { port, resets } = setup();
    port.write(0, 1, 0x03);
    expect(resets).toEqual(['port 0x92 fast reset']);
    expect(port.read(0, 1)).toBe(0x03);
    port.write(0, 1, 0x03); // still set: no new reset
    port.write(0, 1, 0x01);
    expect(resets).toHaveLength(1);
    port.write(0, 1, 0x02);
    port.write(0, 1, 0x01);
    expect(resets).toHaveLength(2);
    port.reset();
    port.write(0, 1, 0x03);
    expect(resets).toHaveLength(3);
  });

  it('saves and loads its value (a set reset bit does not reset again on load)', () => {
    const a = setup();
    a.port.write(0, 1, 0x01);
    const b = setup();
    b.port.loadState(JSON.parse(JSON.stringify(a.port.saveState())) as ReturnType<Port92['saveState']>);
    expect(b.port.read(0, 1)).toBe(0x01);
    expect(b.resets).toEqual([]);
    b.port.write(0, 1, 0x01);
    expect(b.resets).toEqual([]);
    b.port.loadState({ version: 1, value: 0xff });
    expect(b.port.read(0, 1)).toBe(0x03);
    b.port.loadState({ version: 1 });
    expect(b.port.read(0, 1)).toBe(0x02);
    expect(() => b.port.loadState({ version: 2, value: 0 })).toThrow(/version 2/);
  });
});
