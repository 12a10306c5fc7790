/**
 * ACPI tables of an i440FX/PIIX4 PC (ACPI 6.0 layouts): RSDP, RSDT, XSDT,
 * FADT, FACS, MADT and a static DSDT.
 *
 * The result serves both ways the tables reach a guest:
 * - firmware boot: `tables` and `rsdp` become the fw_cfg files
 *   "etc/acpi/tables" and "etc/acpi/rsdp"; `pointers` are the table
 *   loader's ADD_POINTER commands and `checksums` its ADD_CHECKSUM
 *   commands (to be issued after the pointers, in order).
 *   acpiTableLoader() makes both, with the checksum bytes zeroed as OVMF
 *   needs (it sets the byte to minus the range's sum, SeaBIOS subtracts);
 * - direct kernel boot: the VMM picks the addresses itself and calls
 *   linkAcpiTables(), which applies the same pointer and checksum list.
 * Pointer fields hold, as built, the offset of their target within its
 * blob; linking adds the blob's guest address, as ADD_POINTER does. Every
 * checksum is already valid before linking.
 *
 * The DSDT is pure data, no methods and no loops: guests here interpret AML
 * very slowly and QEMU's `While`-built _PRT hits ACPICA's loop timeout
 * (ENVIRONMENT.md, "ACPI AML runs out of time here").
 *
 * The pieces live in sibling modules, re-exported here: the DSDT and PCI
 * interrupt routing in dsdt.ts, FACS/FADT/MADT in fixed-tables.ts, the
 * shared types, constants and header helpers in table-defs.ts.
 */
import { DEFAULT_PCI_HOLE_START, IOAPIC_START, LAPIC_START } from '../../boot/layout.js';
import { TableLoader } from '../table-loader.js';
import * as aml from './aml.js';
import { buildDsdtBody } from './dsdt.js';
import { buildFacs, buildFadtBody, buildMadtBody } from './fixed-tables.js';
import {
  checkPort,
  DEFAULT_OEM_ID,
  DEFAULT_OEM_TABLE_ID,
  DEFAULT_PCI_GSIS,
  DEFAULT_PCI_SLOTS,
  DEFAULT_PM_BASE,
  DEFAULT_SCI_IRQ,
  FADT,
  FADT_REVISION,
  fixChecksum,
  GPE0_OFFSET,
  MADT_REVISION,
  putAscii,
  RSDP_SIZE,
  RSDP_V1_SIZE,
  sdt,
  SDT_HEADER_SIZE,
  type AcpiBlob,
  type AcpiChecksum,
  type AcpiPointer,
  type AcpiTables,
  type Ids,
} from './table-defs.js';

export { pciIntxGsi, piixPirq } from './dsdt.js';
export {
  CREATOR_ID,
  CREATOR_REVISION,
  DEFAULT_OEM_ID,
  DEFAULT_OEM_TABLE_ID,
  DEFAULT_PCI_GSIS,
  DEFAULT_PCI_SLOTS,
  DEFAULT_PM_BASE,
  DEFAULT_SCI_IRQ,
  FACS_SIZE,
  FADT,
  FADT_F_PROC_C1,
  FADT_F_PWR_BUTTON,
  FADT_F_RESET_REG_SUP,
  FADT_F_RTC_S4,
  FADT_F_SLP_BUTTON,
  FADT_F_WBINVD,
  FADT_REVISION,
  FADT_SIZE,
  GAS_SYSTEM_IO,
  GPE0_OFFSET,
  IAPC_8042,
  IAPC_LEGACY_DEVICES,
  MADT_INT_SRC_OVERRIDE,
  MADT_IO_APIC,
  MADT_LOCAL_APIC,
  MADT_LOCAL_APIC_NMI,
  MADT_NMI_SOURCE,
  MADT_PCAT_COMPAT,
  MADT_REVISION,
  MPS_INTI_ACTIVE_HIGH,
  MPS_INTI_ACTIVE_LOW,
  MPS_INTI_EDGE,
  MPS_INTI_LEVEL,
  PIIX4_SLP_TYP_S3,
  PIIX4_SLP_TYP_S5,
  PM1_CNT_OFFSET,
  PM1_EVT_OFFSET,
  PM_TMR_OFFSET,
  RESET_REG_PORT,
  RESET_VALUE,
  RSDP_SIZE,
  RSDP_V1_SIZE,
  RTC_CENTURY_INDEX,
  SDT_HEADER_SIZE,
  type AcpiBlob,
  type AcpiChecksum,
  type AcpiPointer,
  type AcpiTables,
} from './table-defs.js';

export interface AcpiTableOptions {
  /** vCPUs; LAPIC ids 0..cpus-1, cpu 0 the BSP. */
  cpus: number;
  ioapicAddr?: number;
  /** IOAPIC id (default `cpus`, the id after the last LAPIC, as the MP table has it). */
  ioapicId?: number;
  lapicAddr?: number;
  /** PIIX4 power-management I/O base (PMBA), default 0x600 as SeaBIOS/QEMU program it. */
  pmBase?: number;
  /** GPE0 block (4 bytes: GPSTS, GPEN), default pmBase + 0x0C where the PIIX4 has it. */
  gpe0Base?: number;
  /** ISA IRQ of the SCI, default 9. */
  sciIrq?: number;
  /** Number of PCI device slots on bus 0 the _PRT covers, default 32. */
  pciSlots?: number;
  /**
   * GSIs of PIRQA-D, the four PCI interrupt lines of the PIIX. Default
   * 16-19, the IOAPIC pins above the ISA ones, so PCI never shares with ISA.
   * QEMU's pc routes them to ISA IRQs 10, 10, 11, 11 by default; ISA IRQs
   * given here get level/active-high source overrides in the MADT like
   * QEMU's.
   */
  pciGsis?: readonly [number, number, number, number];
  /** The 32-bit PCI MMIO window; default 0xC0000000 up to just below the IOAPIC. */
  pciHole?: { start: number; end: number };
  /**
   * SMI command port and its ACPI enable/disable values. Default none: the
   * FADT then says the machine is always in ACPI mode (ACPI 6.0 §5.2.9,
   * SMI_CMD), and the PM device must keep SCI_EN set. QEMU uses 0xB2 with
   * 0xF1/0xF0.
   */
  smiCmd?: { port: number; enable: number; disable: number };
  /** Declare \_S3 (suspend to RAM). Default false. */
  s3?: boolean;
  /** Six-character OEM id (default "MVISOR"). */
  oemId?: string;
  /** Eight-character OEM table id (default "MVISORPC"). */
  oemTableId?: string;
}

/**
 * Builds the tables for a PC with `opts.cpus` vCPUs. See the module comment
 * for how `pointers` and `checksums` are used.
 */
export function buildAcpiTables(opts: AcpiTableOptions): AcpiTables {
  const cpus = opts.cpus;
  // LAPIC ids and the ACPI processor UIDs of the xAPIC entries are one byte; 0xFF is "all".
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 254) {
    throw new RangeError(`ACPI: ${cpus} CPUs is outside 1-254`);
  }
  const pmBase = opts.pmBase ?? DEFAULT_PM_BASE;
  checkPort('PM base', pmBase, 0x40);
  const gpe0Base = opts.gpe0Base ?? pmBase + GPE0_OFFSET;
  checkPort('GPE0 block', gpe0Base, 4);
  const sciIrq = opts.sciIrq ?? DEFAULT_SCI_IRQ;
  if (!Number.isInteger(sciIrq) || sciIrq < 1 || sciIrq > 15 || sciIrq === 2) {
    throw new RangeError(`ACPI: SCI IRQ ${sciIrq} is not an ISA IRQ`);
  }
  const pciSlots = opts.pciSlots ?? DEFAULT_PCI_SLOTS;
  if (!Number.isInteger(pciSlots) || pciSlots < 0 || pciSlots > 32) {
    throw new RangeError(`ACPI: ${pciSlots} PCI slots is outside 0-32`);
  }
  const pciGsis = opts.pciGsis ?? DEFAULT_PCI_GSIS;
  for (const g of pciGsis) {
    // KVM's in-kernel IOAPIC has 24 pins; 0 and 2 are the 8259 and the PIT.
    if (!Number.isInteger(g) || g < 3 || g > 23) throw new RangeError(`ACPI: PCI GSI ${g} is outside 3-23`);
  }
  const pciHole = opts.pciHole ?? { start: DEFAULT_PCI_HOLE_START, end: IOAPIC_START - 1 };
  if (!(pciHole.start < pciHole.end && pciHole.end <= 0xffff_ffff)) {
    throw new RangeError(
      `ACPI: PCI hole 0x${pciHole.start.toString(16)}-0x${pciHole.end.toString(16)} is not a 32-bit range`,
    );
  }
  if (opts.smiCmd) checkPort('SMI_CMD', opts.smiCmd.port, 1);
  const ids: Ids = {
    oemId: opts.oemId ?? DEFAULT_OEM_ID,
    oemTableId: opts.oemTableId ?? DEFAULT_OEM_TABLE_ID,
  };

  const pointers: AcpiPointer[] = [];
  const checksums: AcpiChecksum[] = [];
  const parts: Uint8Array[] = [];
  const offsets: Record<string, number> = {};
  let size = 0;
  const add = (sig: string, t: Uint8Array): number => {
    offsets[sig] = size;
    parts.push(t);
    size += t.length;
    // The FACS has no checksum (§5.2.10).
    if (sig !== 'FACS') {
      checksums.push({ table: 'tables', offset: offsets[sig] + 9, start: offsets[sig], length: t.length });
    }
    return offsets[sig];
  };
  const pointer = (sig: string, offset: number, fieldSize: 4 | 8, field: string) =>
    pointers.push({
      table: 'tables',
      offset: offsets[sig]! + offset,
      size: fieldSize,
      target: 'tables',
      field: `${sig}.${field}`,
    });

  const facs = add('FACS', buildFacs());
  const dsdt = add(
    'DSDT',
    sdt('DSDT', 2, buildDsdtBody({ pciSlots, pciGsis, sciIrq, pciHole, s3: opts.s3 ?? false }), ids),
  );
  const fadt = add(
    'FACP',
    sdt(
      'FACP',
      FADT_REVISION,
      buildFadtBody({ sciIrq, pmBase, gpe0Base, smiCmd: opts.smiCmd, facs, dsdt }),
      ids,
    ),
  );
  pointer('FACP', FADT.FIRMWARE_CTRL, 4, 'FIRMWARE_CTRL');
  pointer('FACP', FADT.DSDT, 4, 'DSDT');
  pointer('FACP', FADT.X_FIRMWARE_CTRL, 8, 'X_FIRMWARE_CTRL');
  pointer('FACP', FADT.X_DSDT, 8, 'X_DSDT');
  const madt = add(
    'APIC',
    sdt(
      'APIC',
      MADT_REVISION,
      buildMadtBody({
        cpus,
        lapicAddr: opts.lapicAddr ?? LAPIC_START,
        ioapicAddr: opts.ioapicAddr ?? IOAPIC_START,
        ioapicId: opts.ioapicId ?? cpus,
        sciIrq,
        pciGsis,
      }),
      ids,
    ),
  );
  const entries = [fadt, madt];
  const entrySigs = ['FACP', 'APIC'];
  const rsdtBody = new Uint8Array(4 * entries.length);
  const xsdtBody = new Uint8Array(8 * entries.length);
  entries.forEach((target, i) => {
    new DataView(rsdtBody.buffer).setUint32(4 * i, target, true);
    new DataView(xsdtBody.buffer).setBigUint64(8 * i, BigInt(target), true);
  });
  const rsdt = add('RSDT', sdt('RSDT', 1, rsdtBody, ids));
  entrySigs.forEach((sig, i) => pointer('RSDT', SDT_HEADER_SIZE + 4 * i, 4, `Entry[${i}]=${sig}`));
  const xsdt = add('XSDT', sdt('XSDT', 1, xsdtBody, ids));
  entrySigs.forEach((sig, i) => pointer('XSDT', SDT_HEADER_SIZE + 8 * i, 8, `Entry[${i}]=${sig}`));

  // RSDP (§5.2.5.3): the first checksum covers the ACPI 1.0 part (20
  // bytes), the extended one all 36 bytes, so it is computed last.
  const rsdp = new Uint8Array(RSDP_SIZE);
  const rdv = new DataView(rsdp.buffer);
  putAscii(rsdp, 0, 'RSD PTR ', 8);
  putAscii(rsdp, 9, ids.oemId, 6);
  rsdp[15] = 2; // Revision
  rdv.setUint32(16, rsdt, true);
  rdv.setUint32(20, RSDP_SIZE, true);
  rdv.setBigUint64(24, BigInt(xsdt), true);
  fixChecksum(rsdp, 8, 0, RSDP_V1_SIZE);
  fixChecksum(rsdp, 32, 0, RSDP_SIZE);
  pointers.unshift(
    { table: 'rsdp', offset: 16, size: 4, target: 'tables', field: 'RSDP.RsdtAddress' },
    { table: 'rsdp', offset: 24, size: 8, target: 'tables', field: 'RSDP.XsdtAddress' },
  );
  checksums.push(
    { table: 'rsdp', offset: 8, start: 0, length: RSDP_V1_SIZE },
    { table: 'rsdp', offset: 32, start: 0, length: RSDP_SIZE },
  );

  return { tables: aml.concat(parts), rsdp, offsets, pointers, checksums };
}

/**
 * For direct kernel boot: copies of `built.tables` and `built.rsdp` with
 * every pointer turned into a guest-physical address (the tables blob at
 * `tablesAddr`, the RSDP at `rsdpAddr`) and the checksums recomputed,
 * exactly what the firmware's table loader would do.
 */
export function linkAcpiTables(
  built: AcpiTables,
  addrs: { tablesAddr: number; rsdpAddr: number },
): { tables: Uint8Array; rsdp: Uint8Array } {
  const { tablesAddr, rsdpAddr } = addrs;
  if (
    !Number.isSafeInteger(tablesAddr) ||
    tablesAddr % 64 !== 0 ||
    tablesAddr + built.tables.length > 0x1_0000_0000
  ) {
    throw new RangeError(
      `ACPI tables at 0x${tablesAddr.toString(16)}: need a 64-byte aligned address below 4 GiB`,
    );
  }
  if (!Number.isSafeInteger(rsdpAddr) || rsdpAddr % 16 !== 0 || rsdpAddr < 0) {
    throw new RangeError(`ACPI RSDP at 0x${rsdpAddr.toString(16)}: need a 16-byte aligned address`);
  }
  const blobs: Record<AcpiBlob, Uint8Array> = { tables: built.tables.slice(), rsdp: built.rsdp.slice() };
  const base: Record<AcpiBlob, number> = { tables: tablesAddr, rsdp: rsdpAddr };
  for (const p of built.pointers) {
    const dv = new DataView(blobs[p.table].buffer);
    if (p.size === 4) dv.setUint32(p.offset, dv.getUint32(p.offset, true) + base[p.target], true);
    else dv.setBigUint64(p.offset, dv.getBigUint64(p.offset, true) + BigInt(base[p.target]), true);
  }
  for (const c of built.checksums) fixChecksum(blobs[c.table], c.offset, c.start, c.length);
  return blobs;
}

export const ACPI_TABLES_FILE = 'etc/acpi/tables';
export const ACPI_RSDP_FILE = 'etc/acpi/rsdp';

/**
 * For firmware boot: the fw_cfg files and the `etc/table-loader` commands
 * that place and link them, as QEMU's acpi_setup() does: the tables in
 * high memory aligned for the FACS, the RSDP in the F-segment where the OS
 * searches. The files' checksum bytes are zeroed, since OVMF's
 * ADD_CHECKSUM stores minus the sum of the range, the checksum byte
 * included. Commands are appended to `loader` (a new one by default) so
 * other files can share the script.
 */
export function acpiTableLoader(
  built: AcpiTables,
  loader: TableLoader = new TableLoader(),
): { files: Map<string, Uint8Array>; loader: TableLoader } {
  const fileOf: Record<AcpiBlob, string> = { tables: ACPI_TABLES_FILE, rsdp: ACPI_RSDP_FILE };
  const blobs: Record<AcpiBlob, Uint8Array> = { tables: built.tables.slice(), rsdp: built.rsdp.slice() };
  for (const c of built.checksums) blobs[c.table][c.offset] = 0;
  loader.allocate(ACPI_TABLES_FILE, blobs.tables.length, 64, 'high');
  loader.allocate(ACPI_RSDP_FILE, blobs.rsdp.length, 16, 'fseg');
  for (const p of built.pointers) loader.addPointer(fileOf[p.table], p.offset, p.size, fileOf[p.target]);
  for (const c of built.checksums) loader.addChecksum(fileOf[c.table], c.offset, c.start, c.length);
  return {
    files: new Map([
      [ACPI_TABLES_FILE, blobs.tables],
      [ACPI_RSDP_FILE, blobs.rsdp],
    ]),
    loader,
  };
}
