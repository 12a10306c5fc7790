/**
 * The PIIX3 PCI-to-ISA bridge (82371SB function 0), PCI 00:01.0 of
 * QEMU's `pc` machine: 8086:7000. What matters to software is PCI
 * interrupt routing: PIRQRC[A:D] (config 0x60-0x63) connect the four PCI
 * interrupt lines PIRQA-D to ISA IRQs (bit 7 disables the route, bits 3:0
 * the IRQ; 0-2, 8 and 13 are reserved). The matching edge/level control
 * (ELCR, ports 0x4D0/0x4D1) is part of KVM's in-kernel PIC.
 *
 * The PCI host bus asks `pirqIrq` where a PIRQ goes; the bridge tells it
 * to re-route (`onRoutingChange`) when the guest reprograms a PIRQRC.
 */
import { PciDevice } from '../pci/device.js';

export const PIIX3_VENDOR_ID = 0x8086;
export const PIIX3_DEVICE_ID = 0x7000;
export const PIIX3_PIRQRC = 0x60;
const PIRQ_DISABLE = 0x80;
/** ISA IRQs a PIRQ may be routed to (82371SB §2.2.8). */
const ROUTABLE = new Set([3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15]);

export interface Piix3Options {
  /** Called after a PIRQRC write: the host bus re-reads the routes. */
  onRoutingChange: () => void;
}

export class Piix3 extends PciDevice {
  constructor(private readonly opts: Piix3Options) {
    super('piix3', {
      vendorId: PIIX3_VENDOR_ID,
      deviceId: PIIX3_DEVICE_ID,
      classCode: 0x060100,
      multiFunction: true,
    });
    this.config.setWmask(PIIX3_PIRQRC, 4, 0x8f8f8f8f);
    this.resetDevice();
  }

  /** The ISA IRQ PIRQ `pirq` (0 = A) is routed to, or undefined when disabled or reserved. */
  pirqIrq(pirq: number): number | undefined {
    const v = this.config.get8(PIIX3_PIRQRC + (pirq & 3));
    if (v & PIRQ_DISABLE) return undefined;
    const irq = v & 0x0f;
    return ROUTABLE.has(irq) ? irq : undefined;
  }

  protected override onConfigWrite(offset: number, size: number): void {
    if (offset < PIIX3_PIRQRC + 4 && PIIX3_PIRQRC < offset + size) this.opts.onRoutingChange();
  }

  protected override resetDevice(): void {
    for (let i = 0; i < 4; i++) this.config.set8(PIIX3_PIRQRC + i, PIRQ_DISABLE);
    this.opts.onRoutingChange();
  }

  protected override loadDeviceState(): void {
    this.opts.onRoutingChange();
  }
}
