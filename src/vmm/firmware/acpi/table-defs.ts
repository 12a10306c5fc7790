/**
 * What the ACPI table builders (tables.ts, dsdt.ts, fixed-tables.ts)
 * share: the blob/pointer/checksum types of the result, the constants of
 * the i440FX/PIIX4 PC and of the ACPI 6.0 table layouts, and the helpers
 * that fill in table headers, checksums and Generic Address Structures.
 */

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
// Byte-level helpers

function checksum(bytes: Uint8Array, start = 0, length = bytes.length - start): number {
  let sum = 0;
  for (let i = start; i < start + length; i++) sum += bytes[i]!;
  return sum & 0xff;
}

/** Sets bytes[offset] so that bytes[start, start+length) sum to zero. */
export function fixChecksum(bytes: Uint8Array, offset: number, start: number, length: number): void {
  bytes[offset] = 0;
  bytes[offset] = -checksum(bytes, start, length) & 0xff;
}

export function putAscii(buf: Uint8Array, off: number, s: string, width: number, pad = ' '): void {
  if (s.length > width || !/^[\x20-\x7e]*$/.test(s)) {
    throw new RangeError(`ACPI: "${s}" is not printable ASCII of at most ${width} characters`);
  }
  const padded = s.padEnd(width, pad);
  for (let i = 0; i < width; i++) buf[off + i] = padded.charCodeAt(i);
}

export interface Ids {
  oemId: string;
  oemTableId: string;
}

/** A table with its 36-byte System Description Table header (§5.2.6) filled in, checksum included. */
export function sdt(signature: string, revision: number, body: Uint8Array, ids: Ids): Uint8Array {
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
export function gasIo(dv: DataView, off: number, port: number, bitWidth: number, accessSize = 0): void {
  dv.setUint8(off, GAS_SYSTEM_IO);
  dv.setUint8(off + 1, bitWidth);
  dv.setUint8(off + 2, 0); // bit offset
  dv.setUint8(off + 3, accessSize); // 0 undefined (legacy), 1 byte, 2 word, 3 dword
  dv.setBigUint64(off + 4, BigInt(port), true);
}

export function checkPort(name: string, port: number, len: number): void {
  if (!Number.isInteger(port) || port <= 0 || port + len > 0x10000) {
    throw new RangeError(`ACPI: ${name} 0x${port.toString(16)} is not an I/O port range`);
  }
}
