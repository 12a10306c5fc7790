/**
 * The DSDT of the i440FX/PIIX4 PC (tables.ts) and the PCI interrupt
 * routing its static _PRT describes. Pure data, no methods and no loops
 * (see tables.ts for why).
 */
import type { IntxPin } from '../../pci/config-space.js';
import * as aml from './aml.js';
import { DEFAULT_PCI_GSIS, DEFAULT_SCI_IRQ, PIIX4_SLP_TYP_S3, PIIX4_SLP_TYP_S5 } from './table-defs.js';

// PCI interrupt routing

/**
 * The PIIX's PCI interrupt swizzle: which of PIRQA-D (0-3) interrupt pin
 * `pin` (the Interrupt Pin register value, 1 = INTA#) of the device in
 * `slot` drives, as QEMU's pci_slot_get_pirq() for piix3 and SeaBIOS's
 * piix_pci_slot_get_irq() compute it.
 */
export function piixPirq(slot: number, pin: IntxPin): number {
  return (slot - 1 + pin - 1) & 3;
}

/**
 * The GSI the _PRT gives interrupt pin `pin` (1 = INTA#) of PCI device
 * `slot`: its PIRQ's GSI, except INTA# of slot 1 (the PIIX4 function whose
 * PM part raises the SCI), which QEMU's _PRT sends to the SCI. Fits the
 * PCI host bus's `intxRoute` as is, so wiring and ACPI agree.
 */
export function pciIntxGsi(
  slot: number,
  pin: IntxPin,
  gsis: readonly number[] = DEFAULT_PCI_GSIS,
  sciIrq = DEFAULT_SCI_IRQ,
): number {
  if (slot === 1 && pin === 1) return sciIrq;
  return gsis[piixPirq(slot, pin)]!;
}

/**
 * A static _PRT (ACPI 6.0 §6.2.13): one Package {Address, Pin, Source,
 * SourceIndex} per slot and pin, Source 0 meaning SourceIndex is a GSI.
 * Without interrupt link devices (LNKA-D with _PRS/_CRS/_SRS methods, as
 * QEMU has) there is no AML to run at all: the OS reads the routing and
 * programs the IOAPIC pins as level-triggered, active-low PCI interrupts
 * (KVM's IOAPIC ignores the polarity bit, so the device model just raises
 * the line while the interrupt is pending).
 */
function prt(slots: number, gsis: readonly number[], sciIrq: number): Uint8Array {
  const entries: Uint8Array[] = [];
  for (let slot = 0; slot < slots; slot++) {
    for (const pin of [1, 2, 3, 4] as const) {
      // The _PRT numbers pins from 0 (INTA#).
      entries.push(aml.pkg([slot * 0x10000 + 0xffff, pin - 1, 0, pciIntxGsi(slot, pin, gsis, sciIrq)]));
    }
  }
  return aml.pkg(entries);
}

// ---------------------------------------------------------------------------
// The DSDT

export interface DsdtParams {
  pciSlots: number;
  pciGsis: readonly number[];
  sciIrq: number;
  pciHole: { start: number; end: number };
  s3: boolean;
}

export function buildDsdtBody(p: DsdtParams): Uint8Array {
  const isaDevice = (seg: string, hid: string, ...crs: Uint8Array[]) =>
    aml.device(seg, aml.name('_HID', aml.eisaId(hid)), aml.name('_CRS', aml.resourceTemplate(...crs)));
  const pci0Crs = aml.resourceTemplate(
    aml.wordBusNumber({ min: 0x00, max: 0xff }),
    // The configuration mechanism #1 ports are the bridge's own.
    aml.io({ min: 0xcf8, max: 0xcf8, length: 8 }),
    aml.wordIO({ min: 0x0000, max: 0x0cf7 }),
    aml.wordIO({ min: 0x0d00, max: 0xffff }),
    // Legacy VGA window.
    aml.dwordMemory({ min: 0xa_0000, max: 0xb_ffff, cacheable: true }),
    aml.dwordMemory({ min: p.pciHole.start, max: p.pciHole.end }),
  );
  const sleepState = (slpTyp: number) => aml.pkg([slpTyp, slpTyp, 0, 0]);
  return aml.concat([
    aml.scope(
      '\\_SB',
      aml.device(
        'PCI0',
        aml.name('_HID', aml.eisaId('PNP0A03')),
        aml.name('_UID', aml.int(0)),
        aml.name('_BBN', aml.int(0)),
        aml.name('_CRS', pci0Crs),
        aml.name('_PRT', prt(p.pciSlots, p.pciGsis, p.sciIrq)),
        // The PIIX ISA bridge, function 0 of slot 1, and the legacy devices behind it.
        aml.device(
          'ISA',
          aml.name('_ADR', aml.int(0x0001_0000)),
          isaDevice(
            'KBD',
            'PNP0303',
            aml.io({ min: 0x60, max: 0x60, length: 1 }),
            aml.io({ min: 0x64, max: 0x64, length: 1 }),
            aml.irqNoFlags(1),
          ),
          isaDevice('MOU', 'PNP0F13', aml.irqNoFlags(12)),
          aml.device(
            'COM1',
            aml.name('_HID', aml.eisaId('PNP0501')),
            aml.name('_UID', aml.int(1)),
            aml.name(
              '_CRS',
              aml.resourceTemplate(
                aml.io({ min: 0x3f8, max: 0x3f8, align: 8, length: 8 }),
                aml.irqNoFlags(4),
              ),
            ),
          ),
          isaDevice('RTC', 'PNP0B00', aml.io({ min: 0x70, max: 0x70, length: 2 }), aml.irqNoFlags(8)),
        ),
      ),
    ),
    // Sleep states (§7.4.2): {PM1a_CNT.SLP_TYP, PM1b_CNT.SLP_TYP, reserved, reserved}.
    ...(p.s3 ? [aml.name('\\_S3', sleepState(PIIX4_SLP_TYP_S3))] : []),
    aml.name('\\_S5', sleepState(PIIX4_SLP_TYP_S5)),
  ]);
}
