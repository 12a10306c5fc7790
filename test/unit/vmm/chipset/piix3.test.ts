import { describe, expect, it } from 'vitest';
import { PIIX3_PIRQRC, Piix3 } from '../../../../src/vmm/chipset/piix3.js';
import { pciIntxGsi, piixPirq } from '../../../../src/vmm/firmware/acpi/tables.js';
import { PCI_HEADER_TYPE } from '../../../../src/vmm/pci/config-space.js';
import { PciHostBus } from '../../../../src/vmm/pci/host-bus.js';
import { FakeMapper, TestDevice, fakeCtx } from '../pci/helpers.js';

function setup() {
  let changes = 0;
  const piix3 = new Piix3({ onRoutingChange: () => void changes++ });
  return { piix3, changes: () => changes };
}

const routes = (p: Piix3) => [0, 1, 2, 3].map((pirq) => p.pirqIrq(pirq));

describe('PIIX3 PCI-to-ISA bridge', () => {
  it('is an Intel 82371SB ISA bridge, function 0 of a multi-function device', () => {
    const { piix3 } = setup();
    expect(piix3.readConfig(0, 4)).toBe(0x7000_8086);
    expect(piix3.readConfig(0x08, 4) >>> 8).toBe(0x060100);
    expect(piix3.readConfig(PCI_HEADER_TYPE, 1)).toBe(0x80);
  });

  it('powers on with every PIRQ disabled (0x80), so none is routed', () => {
    const { piix3 } = setup();
    expect(piix3.readConfig(PIIX3_PIRQRC, 4)).toBe(0x8080_8080);
    expect(routes(piix3)).toEqual([undefined, undefined, undefined, undefined]);
  });

  it('routes PIRQA-D to the ISA IRQs in PIRQRC[A:D] bits 3:0 while bit 7 is clear', () => {
    const { piix3 } = setup();
    piix3.writeConfig(PIIX3_PIRQRC, 4, 0x0b0a_0b0a); // as SeaBIOS: A,C -> 10; B,D -> 11
    expect(routes(piix3)).toEqual([10, 11, 10, 11]);
    piix3.writeConfig(PIIX3_PIRQRC + 2, 1, 0x75); // bits 6:4 are reserved (read 0)
    expect(piix3.readConfig(PIIX3_PIRQRC + 2, 1)).toBe(0x05);
    expect(piix3.pirqIrq(2)).toBe(5);
    piix3.writeConfig(PIIX3_PIRQRC + 1, 1, 0x8b); // disabled again
    expect(routes(piix3)).toEqual([10, undefined, 5, 11]);
    expect(piix3.pirqIrq(4)).toBe(piix3.pirqIrq(0)); // only the low two bits name a PIRQ
  });

  it('does not route to the reserved IRQs 0, 1, 2, 8 and 13', () => {
    const { piix3 } = setup();
    const routed: number[] = [];
    for (let irq = 0; irq < 16; irq++) {
      piix3.writeConfig(PIIX3_PIRQRC + 3, 1, irq);
      const r = piix3.pirqIrq(3);
      if (r !== undefined) {
        expect(r).toBe(irq);
        routed.push(r);
      }
    }
    expect(routed).toEqual([3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15]);
  });

  it('tells the bus to re-route on PIRQRC writes (and reset), not on other config writes', () => {
    const { piix3, changes } = setup();
    const start = changes();
    for (const [off, size] of [
      [0x04, 2],
      [0x3c, 1],
      [0x5c, 4], // ends at 0x5F
      [0x64, 4], // starts after PIRQRC[D]
      [0x4c, 1],
    ] as const)
      piix3.writeConfig(off, size, 0x0b);
    expect(changes()).toBe(start);
    piix3.writeConfig(PIIX3_PIRQRC, 4, 0x0b0b0b0b);
    piix3.writeConfig(PIIX3_PIRQRC + 3, 1, 0x0a);
    piix3.writeConfig(PIIX3_PIRQRC + 1, 2, 0x0505);
    expect(changes()).toBe(start + 3);
    piix3.reset();
    expect(changes()).toBe(start + 4);
    expect(routes(piix3)).toEqual([undefined, undefined, undefined, undefined]);
  });

  it('saves and loads the routes, re-routing on load', () => {
    const a = setup();
    a.piix3.writeConfig(PIIX3_PIRQRC, 4, 0x800e_0b0a);
    const b = setup();
    const before = b.changes();
    b.piix3.loadState(JSON.parse(JSON.stringify(a.piix3.saveState())) as ReturnType<Piix3['saveState']>);
    expect(routes(b.piix3)).toEqual([10, 11, 14, undefined]);
    expect(b.changes()).toBe(before + 1);
  });
});

describe('PIIX3 routing on the PCI host bus', () => {
  it('an asserted INTA# follows the guest reprogramming its PIRQ (the IOAPIC pin stays)', () => {
    // Wired as the machine wires it: the IOAPIC pin always, the ISA IRQ when routed.
    const f = fakeCtx();
    const late: { bus?: PciHostBus } = {};
    const piix3 = new Piix3({ onRoutingChange: () => late.bus?.refreshIntxRouting() });
    const bus = (late.bus = new PciHostBus(f.ctx, {
      mapper: new FakeMapper(),
      intxRoute: (slot, pin) => {
        const isa = piix3.pirqIrq(piixPirq(slot, pin));
        const apic = pciIntxGsi(slot, pin);
        return isa === undefined ? apic : [apic, isa];
      },
    }));
    bus.attach(piix3, 1, 0);
    const nic = new TestDevice('nic');
    bus.attach(nic, 3); // INTA# of slot 3: PIRQC, IOAPIC pin 18
    nic.raise(true);
    expect(f.irqs).toEqual([[18, true]]);
    bus.writeConfig(1, 0, PIIX3_PIRQRC + 2, 1, 11); // PIRQC -> IRQ 11
    expect(f.irqs.slice(1)).toEqual([[11, true]]);
    bus.writeConfig(1, 0, PIIX3_PIRQRC, 4, 0x0a0a0a0a); // PIRQC -> IRQ 10
    expect(f.irqs.slice(2)).toEqual([
      [11, false],
      [10, true],
    ]);
    bus.writeConfig(1, 0, PIIX3_PIRQRC + 2, 1, 0x80); // disabled
    expect(f.irqs.slice(4)).toEqual([[10, false]]);
    nic.raise(false);
    expect(f.irqs.slice(5)).toEqual([[18, false]]);
  });
});
