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
 */
import { DEFAULT_PCI_HOLE_START, IOAPIC_START, LAPIC_START } from '../../boot/layout.js';
import type { IntxPin } from '../../pci/config-space.js';
import { TableLoader } from '../table-loader.js';
import * as aml from './aml.js';

/** The two blobs the tables come in (fw_cfg "etc/acpi/tables" and "etc/acpi/rsdp"). */
export type AcpiBlob = 'tables' | 'rsdp';

/** A field that must hold a guest-physical address: what a table-loader ADD_POINTER command patches. */
export interface AcpiPointer {
  /** Blob holding the pointer field. */
  table: AcpiBlob;
  /** Offset of the field in that blob. */
  offset: number;
  /** Width of the field in bytes. */
  size: 4 | 8;
  /** Blob the pointer points into; the field holds the offset within it until linked. */
  target: AcpiBlob;
  /** What the field is, for logs and tests ("FACP.X_DSDT"). */
  field: string;
}

/** A checksum byte to recompute after pointers are patched: a table-loader ADD_CHECKSUM command. */
export interface AcpiChecksum {
  table: AcpiBlob;
  /** Offset of the checksum byte. */
  offset: number;
  /** Range the checksum covers (the checksum byte is inside it). */
  start: number;
  length: number;
}

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

export interface AcpiTables {
  /** FACS, DSDT, FACP, APIC, RSDT, XSDT back to back; load on a 64-byte boundary (the FACS needs it). */
  tables: Uint8Array;
  /** RSDP, revision 2 (36 bytes); on a 16-byte boundary in 0xE0000-0xFFFFF if the guest must find it by scanning. */
  rsdp: Uint8Array;
  /** Offset of each table in `tables`, by signature (FACS, DSDT, FACP, APIC, RSDT, XSDT). */
  offsets: Record<string, number>;
  pointers: AcpiPointer[];
  checksums: AcpiChecksum[];
}

export const DEFAULT_PM_BASE = 0x600;
export const DEFAULT_SCI_IRQ = 9;
export const DEFAULT_PCI_SLOTS = 32;
export const DEFAULT_PCI_GSIS = [16, 17, 18, 19] as const;
export const DEFAULT_OEM_ID = 'MVISOR';
export const DEFAULT_OEM_TABLE_ID = 'MVISORPC';
export const CREATOR_ID = 'MVSR';
export const CREATOR_REVISION = 1;

/**
 * PIIX4 PMCNTRL SUS_TYP values (PIIX4 datasheet §7.2.2; QEMU's
 * acpi_pm1_cnt_write() and SeaBIOS's ssdt-misc.dsl agree): 0 is soft off,
 * 1 suspend to RAM. The PM device model must decode the same values.
 */
export const PIIX4_SLP_TYP_S5 = 0;
export const PIIX4_SLP_TYP_S3 = 1;

/** Offsets into the PIIX4 PM I/O space (PIIX4 datasheet §7.2). */
export const PM1_EVT_OFFSET = 0x00;
export const PM1_CNT_OFFSET = 0x04;
export const PM_TMR_OFFSET = 0x08;
export const GPE0_OFFSET = 0x0c;

/** PIIX reset control register (0xCF9) and the value that asks for a hard reset (SYS_RST | RST_CPU). */
export const RESET_REG_PORT = 0xcf9;
export const RESET_VALUE = 0x06;

export const SDT_HEADER_SIZE = 36;
export const RSDP_SIZE = 36;
export const RSDP_V1_SIZE = 20;
export const FACS_SIZE = 64;
/** ACPI 6.0 FADT (revision 6), with the Hypervisor Vendor Identity field. */
export const FADT_SIZE = 276;
export const FADT_REVISION = 6;
export const MADT_REVISION = 3;

/** FADT field offsets (ACPI 6.0 §5.2.9, table 5-34). */
export const FADT = {
  FIRMWARE_CTRL: 36,
  DSDT: 40,
  INT_MODEL: 44,
  PREFERRED_PM_PROFILE: 45,
  SCI_INT: 46,
  SMI_CMD: 48,
  ACPI_ENABLE: 52,
  ACPI_DISABLE: 53,
  PM1A_EVT_BLK: 56,
  PM1A_CNT_BLK: 64,
  PM_TMR_BLK: 76,
  GPE0_BLK: 80,
  PM1_EVT_LEN: 88,
  PM1_CNT_LEN: 89,
  PM_TMR_LEN: 91,
  GPE0_BLK_LEN: 92,
  P_LVL2_LAT: 96,
  P_LVL3_LAT: 98,
  CENTURY: 108,
  IAPC_BOOT_ARCH: 109,
  FLAGS: 112,
  RESET_REG: 116,
  RESET_VALUE: 128,
  MINOR_VERSION: 131,
  X_FIRMWARE_CTRL: 132,
  X_DSDT: 140,
  X_PM1A_EVT_BLK: 148,
  X_PM1A_CNT_BLK: 172,
  X_PM_TMR_BLK: 208,
  X_GPE0_BLK: 220,
  HYPERVISOR_VENDOR_ID: 268,
} as const;

/** FADT Flags bits (table 5-35). */
export const FADT_F_WBINVD = 1 << 0;
export const FADT_F_PROC_C1 = 1 << 2;
/** 0: the power button is the fixed-feature one (PM1 PWRBTN_STS/EN). */
export const FADT_F_PWR_BUTTON = 1 << 4;
/** 1: no fixed sleep button. */
export const FADT_F_SLP_BUTTON = 1 << 5;
export const FADT_F_RTC_S4 = 1 << 7;
export const FADT_F_RESET_REG_SUP = 1 << 10;

/** IA-PC Boot Architecture Flags (table 5-36). */
export const IAPC_LEGACY_DEVICES = 1 << 0;
export const IAPC_8042 = 1 << 1;

/** Generic Address Structure address space ids (§5.2.3.2). */
export const GAS_SYSTEM_IO = 1;

/** MADT structure types (§5.2.12, table 5-45). */
export const MADT_LOCAL_APIC = 0;
export const MADT_IO_APIC = 1;
export const MADT_INT_SRC_OVERRIDE = 2;
export const MADT_NMI_SOURCE = 3;
export const MADT_LOCAL_APIC_NMI = 4;
/** MADT flags: the system also has dual 8259s (PCAT_COMPAT). */
export const MADT_PCAT_COMPAT = 1;
/** MPS INTI flags (table 5-50): polarity bits 1-0, trigger mode bits 3-2. */
export const MPS_INTI_ACTIVE_HIGH = 0x1;
export const MPS_INTI_ACTIVE_LOW = 0x3;
export const MPS_INTI_EDGE = 0x4;
export const MPS_INTI_LEVEL = 0xc;

/** CMOS index of the RTC century register, as our RTC and QEMU's have it. */
export const RTC_CENTURY_INDEX = 0x32;

// ---------------------------------------------------------------------------

function checksum(bytes: Uint8Array, start = 0, length = bytes.length - start): number {
  let sum = 0;
  for (let i = start; i < start + length; i++) sum += bytes[i]!;
  return sum & 0xff;
}

/** Sets bytes[offset] so that bytes[start, start+length) sum to zero. */
function fixChecksum(bytes: Uint8Array, offset: number, start: number, length: number): void {
  bytes[offset] = 0;
  bytes[offset] = -checksum(bytes, start, length) & 0xff;
}

function putAscii(buf: Uint8Array, off: number, s: string, width: number, pad = ' '): void {
  if (s.length > width || !/^[\x20-\x7e]*$/.test(s)) {
    throw new RangeError(`ACPI: "${s}" is not printable ASCII of at most ${width} characters`);
  }
  const padded = s.padEnd(width, pad);
  for (let i = 0; i < width; i++) buf[off + i] = padded.charCodeAt(i);
}

interface Ids {
  oemId: string;
  oemTableId: string;
}

/** A table with its 36-byte System Description Table header (§5.2.6) filled in, checksum included. */
function sdt(signature: string, revision: number, body: Uint8Array, ids: Ids): Uint8Array {
  const t = new Uint8Array(SDT_HEADER_SIZE + body.length);
  const dv = new DataView(t.buffer);
  putAscii(t, 0, signature, 4);
  dv.setUint32(4, t.length, true);
  t[8] = revision;
  putAscii(t, 10, ids.oemId, 6);
  putAscii(t, 16, ids.oemTableId, 8);
  dv.setUint32(24, 1, true); // OEM revision
  putAscii(t, 28, CREATOR_ID, 4);
  dv.setUint32(32, CREATOR_REVISION, true);
  t.set(body, SDT_HEADER_SIZE);
  fixChecksum(t, 9, 0, t.length);
  return t;
}

/** Generic Address Structure (§5.2.3.2) for a System I/O register block. */
function gasIo(dv: DataView, off: number, port: number, bitWidth: number, accessSize = 0): void {
  dv.setUint8(off, GAS_SYSTEM_IO);
  dv.setUint8(off + 1, bitWidth);
  dv.setUint8(off + 2, 0); // bit offset
  dv.setUint8(off + 3, accessSize); // 0 undefined (legacy), 1 byte, 2 word, 3 dword
  dv.setBigUint64(off + 4, BigInt(port), true);
}

function checkPort(name: string, port: number, len: number): void {
  if (!Number.isInteger(port) || port <= 0 || port + len > 0x10000) {
    throw new RangeError(`ACPI: ${name} 0x${port.toString(16)} is not an I/O port range`);
  }
}

// ---------------------------------------------------------------------------
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
// The tables

function buildFacs(): Uint8Array {
  // §5.2.10, table 5-37. No checksum; the hardware signature stays 0 (no
  // S4 resume to tell apart), no global lock, no waking vector yet.
  const t = new Uint8Array(FACS_SIZE);
  const dv = new DataView(t.buffer);
  putAscii(t, 0, 'FACS', 4);
  dv.setUint32(4, FACS_SIZE, true);
  t[32] = 2; // Version
  return t;
}

interface DsdtParams {
  pciSlots: number;
  pciGsis: readonly number[];
  sciIrq: number;
  pciHole: { start: number; end: number };
  s3: boolean;
}

function buildDsdtBody(p: DsdtParams): Uint8Array {
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

interface FadtParams {
  sciIrq: number;
  pmBase: number;
  gpe0Base: number;
  smiCmd?: { port: number; enable: number; disable: number };
  facs: number;
  dsdt: number;
}

function buildFadtBody(p: FadtParams): Uint8Array {
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

interface MadtParams {
  cpus: number;
  lapicAddr: number;
  ioapicAddr: number;
  ioapicId: number;
  sciIrq: number;
  pciGsis: readonly number[];
}

function buildMadtBody(p: MadtParams): Uint8Array {
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
