/**
 * The fixed-layout ACPI tables of the i440FX/PIIX4 PC (tables.ts links
 * them together): FACS, and the bodies of the FADT and the MADT.
 */
import {
  FACS_SIZE,
  FADT,
  FADT_F_PROC_C1,
  FADT_F_RESET_REG_SUP,
  FADT_F_RTC_S4,
  FADT_F_SLP_BUTTON,
  FADT_F_WBINVD,
  FADT_SIZE,
  gasIo,
  IAPC_8042,
  IAPC_LEGACY_DEVICES,
  MADT_INT_SRC_OVERRIDE,
  MADT_IO_APIC,
  MADT_LOCAL_APIC,
  MADT_LOCAL_APIC_NMI,
  MADT_PCAT_COMPAT,
  MPS_INTI_ACTIVE_HIGH,
  MPS_INTI_LEVEL,
  PM1_CNT_OFFSET,
  PM1_EVT_OFFSET,
  PM_TMR_OFFSET,
  putAscii,
  RESET_REG_PORT,
  RESET_VALUE,
  RTC_CENTURY_INDEX,
  SDT_HEADER_SIZE,
} from './table-defs.js';

export function buildFacs(): Uint8Array {
  // §5.2.10, table 5-37. No checksum; the hardware signature stays 0 (no
  // S4 resume to tell apart), no global lock, no waking vector yet.
  const t = new Uint8Array(FACS_SIZE);
  const dv = new DataView(t.buffer);
  putAscii(t, 0, 'FACS', 4);
  dv.setUint32(4, FACS_SIZE, true);
  t[32] = 2; // Version
  return t;
}

export interface FadtParams {
  sciIrq: number;
  pmBase: number;
  gpe0Base: number;
  smiCmd?: { port: number; enable: number; disable: number };
  facs: number;
  dsdt: number;
}

export function buildFadtBody(p: FadtParams): Uint8Array {
  // Offsets below are the table's; the body starts after the header.
  const t = new Uint8Array(FADT_SIZE);
  const dv = new DataView(t.buffer);
  dv.setUint32(FADT.FIRMWARE_CTRL, p.facs, true);
  dv.setUint32(FADT.DSDT, p.dsdt, true);
  t[FADT.INT_MODEL] = 1; // ACPI 1.0 field: multiple APIC, as QEMU writes it
  t[FADT.PREFERRED_PM_PROFILE] = 0; // unspecified
  dv.setUint16(FADT.SCI_INT, p.sciIrq, true);
  if (p.smiCmd) {
    dv.setUint32(FADT.SMI_CMD, p.smiCmd.port, true);
    t[FADT.ACPI_ENABLE] = p.smiCmd.enable;
    t[FADT.ACPI_DISABLE] = p.smiCmd.disable;
  }
  const pm1Evt = p.pmBase + PM1_EVT_OFFSET;
  const pm1Cnt = p.pmBase + PM1_CNT_OFFSET;
  const pmTmr = p.pmBase + PM_TMR_OFFSET;
  dv.setUint32(FADT.PM1A_EVT_BLK, pm1Evt, true);
  dv.setUint32(FADT.PM1A_CNT_BLK, pm1Cnt, true);
  dv.setUint32(FADT.PM_TMR_BLK, pmTmr, true);
  dv.setUint32(FADT.GPE0_BLK, p.gpe0Base, true);
  t[FADT.PM1_EVT_LEN] = 4;
  t[FADT.PM1_CNT_LEN] = 2;
  t[FADT.PM_TMR_LEN] = 4;
  t[FADT.GPE0_BLK_LEN] = 4;
  // Latencies above 100 and 1000 us say C2 and C3 are not supported.
  dv.setUint16(FADT.P_LVL2_LAT, 0x0fff, true);
  dv.setUint16(FADT.P_LVL3_LAT, 0x03e9, true);
  t[FADT.CENTURY] = RTC_CENTURY_INDEX;
  dv.setUint16(FADT.IAPC_BOOT_ARCH, IAPC_LEGACY_DEVICES | IAPC_8042, true);
  // PWR_BUTTON clear: the power button is the fixed-feature one, so a
  // power-down request is PM1 PWRBTN_STS plus an SCI, with no AML.
  dv.setUint32(
    FADT.FLAGS,
    FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_RTC_S4 | FADT_F_RESET_REG_SUP,
    true,
  );
  gasIo(dv, FADT.RESET_REG, RESET_REG_PORT, 8, 1);
  t[FADT.RESET_VALUE] = RESET_VALUE;
  t[FADT.MINOR_VERSION] = 0;
  dv.setBigUint64(FADT.X_FIRMWARE_CTRL, BigInt(p.facs), true);
  dv.setBigUint64(FADT.X_DSDT, BigInt(p.dsdt), true);
  gasIo(dv, FADT.X_PM1A_EVT_BLK, pm1Evt, 32);
  gasIo(dv, FADT.X_PM1A_CNT_BLK, pm1Cnt, 16);
  gasIo(dv, FADT.X_PM_TMR_BLK, pmTmr, 32);
  gasIo(dv, FADT.X_GPE0_BLK, p.gpe0Base, 32);
  putAscii(t, FADT.HYPERVISOR_VENDOR_ID, 'MVISOR', 8);
  return t.subarray(SDT_HEADER_SIZE);
}

export interface MadtParams {
  cpus: number;
  lapicAddr: number;
  ioapicAddr: number;
  ioapicId: number;
  sciIrq: number;
  pciGsis: readonly number[];
}

export function buildMadtBody(p: MadtParams): Uint8Array {
  const entries: number[][] = [];
  const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
  for (let cpu = 0; cpu < p.cpus; cpu++) {
    // Processor Local APIC (§5.2.12.2): ACPI processor UID, APIC id, flags = Enabled.
    entries.push([MADT_LOCAL_APIC, 8, cpu, cpu, ...le32(1)]);
  }
  // I/O APIC (§5.2.12.3), GSIs from 0.
  entries.push([MADT_IO_APIC, 12, p.ioapicId, 0, ...le32(p.ioapicAddr), ...le32(0)]);
  // Interrupt Source Overrides (§5.2.12.5), bus 0 = ISA. The PIT's IRQ 0 is
  // wired to IOAPIC pin 2 (pin 0 takes the 8259's INTR), as in the MP
  // table and QEMU.
  const override = (irq: number, gsi: number, flags: number) => [
    MADT_INT_SRC_OVERRIDE,
    10,
    0,
    irq,
    ...le32(gsi),
    flags,
    0,
  ];
  entries.push(override(0, 2, 0));
  // The SCI and any ISA IRQ used for PCI are level-triggered, active high
  // (QEMU's 0x0E20 set: IRQs 5, 9, 10, 11 with flags 0xD).
  const levelIrqs = new Set<number>([p.sciIrq, ...p.pciGsis.filter((g) => g < 16)]);
  for (const irq of [...levelIrqs].sort((a, b) => a - b)) {
    entries.push(override(irq, irq, MPS_INTI_LEVEL | MPS_INTI_ACTIVE_HIGH));
  }
  // Local APIC NMI (§5.2.12.7): LINT1 of every processor (UID 0xFF), flags
  // conforming, as the MP table's local interrupt entry. No NMI Source
  // entry: no IOAPIC pin carries NMI.
  entries.push([MADT_LOCAL_APIC_NMI, 6, 0xff, 0, 0, 1]);
  const body = new Uint8Array(8 + entries.reduce((n, e) => n + e.length, 0));
  const dv = new DataView(body.buffer);
  dv.setUint32(0, p.lapicAddr, true);
  dv.setUint32(4, MADT_PCAT_COMPAT, true);
  let off = 8;
  for (const e of entries) {
    body.set(e, off);
    off += e.length;
  }
  return body;
}
