import { describe, expect, it } from 'vitest';
import { MsiRouter } from '../../../../src/vmm/virtio/msi-router.js';

const IRQCHIP = 1;
const MSI = 2;

function make(gsiCount = 28) {
  const tables: number[][] = [];
  const base = Uint32Array.from([0, IRQCHIP, 0, 2, 2, 0, 0, 23, IRQCHIP, 0, 2, 23, 0, 0]);
  const r = new MsiRouter({ base, setRouting: (t) => tables.push(Array.from(t)), msiType: MSI, gsiCount });
  return { r, tables, base: Array.from(base) };
}

describe('MsiRouter', () => {
  it('allocates GSIs from 24 and writes base routes plus MSI routes on each change', () => {
    const { r, tables, base } = make();
    const a = r.allocate();
    const b = r.allocate();
    expect([a, b]).toEqual([24, 25]);
    expect(tables).toEqual([]);
    r.route(b, 0xfee01000, 0, 0x4041);
    r.route(a, 0xfee00000, 0, 0x4040);
    r.route(a, 0xfee00000, 0, 0x4040); // unchanged: no ioctl
    expect(tables).toHaveLength(2);
    expect(tables[1]).toEqual([
      ...base,
      24,
      MSI,
      0,
      0xfee00000,
      0,
      0x4040,
      0,
      25,
      MSI,
      0,
      0xfee01000,
      0,
      0x4041,
      0,
    ]);
    r.unroute(b);
    expect(tables[2]).toEqual([...base, 24, MSI, 0, 0xfee00000, 0, 0x4040, 0]);
    r.free(a);
    expect(tables[3]).toEqual(base);
    expect(r.allocate()).toBe(24);
  });

  it('refuses unknown GSIs, exhaustion and base routes in the MSI range', () => {
    const { r } = make(26);
    expect(() => r.route(30, 0, 0, 0)).toThrow(/not allocated/);
    r.allocate();
    r.allocate();
    expect(() => r.allocate()).toThrow(/no free GSI/);
    expect(
      () =>
        new MsiRouter({ base: Uint32Array.from([24, 1, 0, 2, 0, 0, 0]), setRouting: () => {}, msiType: MSI }),
    ).toThrow(/MSI range/);
    expect(() => new MsiRouter({ base: new Uint32Array(3), setRouting: () => {}, msiType: MSI })).toThrow(
      /7 words/,
    );
  });
});
