/**
 * Register bits and command codes of the ATA/ATAPI interface (ATA8-ACS and
 * ATA/ATAPI-7 volume 2 for the parallel transport), shared by the channel,
 * the drives and the bus-master engine.
 */

/** Command block registers, as offsets from the command block base (0x1F0 / 0x170). */
export const REG_DATA = 0;
/** Read: Error; write: Features. */
export const REG_ERROR = 1;
export const REG_NSECTOR = 2;
/** Sector number / LBA 7:0. */
export const REG_SECTOR = 3;
/** Cylinder low / LBA 15:8 (ATAPI: byte count 7:0). */
export const REG_LCYL = 4;
/** Cylinder high / LBA 23:16 (ATAPI: byte count 15:8). */
export const REG_HCYL = 5;
/** Device/Head: bit 6 LBA, bit 4 DEV, bits 3:0 head or LBA 27:24. */
export const REG_SELECT = 6;
/** Read: Status (clears a pending interrupt); write: Command. */
export const REG_STATUS = 7;

/** Status register (ATA8-ACS §6.1.9 and the PATA status bits). */
export const ST_BSY = 0x80;
export const ST_DRDY = 0x40;
export const ST_DF = 0x20;
/** Device Seek Complete (obsolete, kept set as drives did); SERV on packet devices. */
export const ST_DSC = 0x10;
export const ST_DRQ = 0x08;
export const ST_ERR = 0x01;

/** Error register. */
export const ERR_UNC = 0x40;
export const ERR_IDNF = 0x10;
export const ERR_ABRT = 0x04;

/** Device Control register (the control block, 0x3F6 / 0x376): write only. */
export const DC_HOB = 0x80;
export const DC_SRST = 0x04;
export const DC_NIEN = 0x02;

/** Device/Head register. */
export const SEL_LBA = 0x40;
export const SEL_DEV = 0x10;
/** Bits 7 and 5 are obsolete and read as 1 on the drives guests expect. */
export const SEL_OBSOLETE = 0xa0;

/** ATAPI interrupt reason (the Sector Count register of a packet device). */
export const IR_COD = 0x01;
export const IR_IO = 0x02;

/** Command codes (ATA8-ACS table B.2, with the ATA-1 power commands). */
export const CMD = {
  NOP: 0x00,
  DEVICE_RESET: 0x08,
  RECALIBRATE: 0x10,
  READ_SECTORS: 0x20,
  READ_SECTORS_NORETRY: 0x21,
  READ_SECTORS_EXT: 0x24,
  READ_DMA_EXT: 0x25,
  READ_MULTIPLE_EXT: 0x29,
  WRITE_SECTORS: 0x30,
  WRITE_SECTORS_NORETRY: 0x31,
  WRITE_SECTORS_EXT: 0x34,
  WRITE_DMA_EXT: 0x35,
  WRITE_MULTIPLE_EXT: 0x39,
  READ_VERIFY: 0x40,
  READ_VERIFY_NORETRY: 0x41,
  READ_VERIFY_EXT: 0x42,
  SEEK: 0x70,
  EXECUTE_DEVICE_DIAGNOSTIC: 0x90,
  INITIALIZE_DEVICE_PARAMETERS: 0x91,
  STANDBY_IMMEDIATE_OLD: 0x94,
  IDLE_IMMEDIATE_OLD: 0x95,
  STANDBY_OLD: 0x96,
  IDLE_OLD: 0x97,
  CHECK_POWER_MODE_OLD: 0x98,
  SLEEP_OLD: 0x99,
  PACKET: 0xa0,
  IDENTIFY_PACKET_DEVICE: 0xa1,
  READ_MULTIPLE: 0xc4,
  WRITE_MULTIPLE: 0xc5,
  SET_MULTIPLE_MODE: 0xc6,
  READ_DMA: 0xc8,
  READ_DMA_NORETRY: 0xc9,
  WRITE_DMA: 0xca,
  WRITE_DMA_NORETRY: 0xcb,
  STANDBY_IMMEDIATE: 0xe0,
  IDLE_IMMEDIATE: 0xe1,
  STANDBY: 0xe2,
  IDLE: 0xe3,
  CHECK_POWER_MODE: 0xe5,
  SLEEP: 0xe6,
  FLUSH_CACHE: 0xe7,
  FLUSH_CACHE_EXT: 0xea,
  IDENTIFY_DEVICE: 0xec,
  SET_FEATURES: 0xef,
} as const;

/** SET FEATURES subcommands (Features register). */
export const SETF_ENABLE_WCACHE = 0x02;
export const SETF_XFER_MODE = 0x03;
export const SETF_DISABLE_RLA = 0x55;
export const SETF_DISABLE_REVERT = 0x66;
export const SETF_DISABLE_WCACHE = 0x82;
export const SETF_ENABLE_RLA = 0xaa;
export const SETF_ENABLE_REVERT = 0xcc;

/** The largest transfer one command may ask for: 65536 sectors of 512 bytes (LBA48). */
export const MAX_TRANSFER_BYTES = 32 * 1024 * 1024;

/**
 * Writes `text` as an ATA string into IDENTIFY words: two characters per
 * word with the first in the high byte (ATA8-ACS §3.3.10), space padded.
 */
export function putAtaString(words: Uint16Array, first: number, count: number, text: string): void {
  const s = text.padEnd(count * 2, ' ');
  for (let i = 0; i < count; i++) {
    const hi = s.charCodeAt(2 * i) & 0x7f;
    const lo = s.charCodeAt(2 * i + 1) & 0x7f;
    words[first + i] = (hi << 8) | lo;
  }
}

/** Serialises IDENTIFY words little-endian and sets the integrity word 255 (ATA8-ACS §7.16.7.86). */
export function identifyBytes(words: Uint16Array): Uint8Array {
  words[255] = 0x00a5;
  const out = new Uint8Array(512);
  for (let i = 0; i < 256; i++) {
    out[2 * i] = words[i]! & 0xff;
    out[2 * i + 1] = words[i]! >> 8;
  }
  let sum = 0;
  for (let i = 0; i < 511; i++) sum += out[i]!;
  out[511] = -sum & 0xff;
  return out;
}

/** The transfer mode a SET FEATURES subcommand 03h selects, if the drive supports it. */
export type TransferMode = { kind: 'pio' | 'swdma' | 'mwdma' | 'udma'; mode: number };

/** Decodes the Sector Count value of SET FEATURES / set transfer mode (ATA8-ACS table 75). */
export function decodeTransferMode(value: number): TransferMode | undefined {
  const mode = value & 0x07;
  switch (value >> 3) {
    case 0:
      return mode <= 1 ? { kind: 'pio', mode: 0 } : undefined; // PIO default (with or without IORDY)
    case 1:
      return mode <= 4 ? { kind: 'pio', mode } : undefined;
    case 2:
      return mode <= 2 ? { kind: 'swdma', mode } : undefined;
    case 4:
      return mode <= 2 ? { kind: 'mwdma', mode } : undefined;
    case 8:
      return mode <= 5 ? { kind: 'udma', mode } : undefined;
    default:
      return undefined;
  }
}

/** IDENTIFY words 62, 63 and 88: supported DMA modes in the low byte, the selected one in the high byte. */
export function dmaModeWords(selected: TransferMode | undefined): { w62: number; w63: number; w88: number } {
  const bit = (k: TransferMode['kind']) => (selected?.kind === k ? 1 << (8 + selected.mode) : 0);
  return { w62: 0x0007 | bit('swdma'), w63: 0x0007 | bit('mwdma'), w88: 0x003f | bit('udma') };
}

export function toBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

export function fromBase64(s: unknown): Uint8Array | undefined {
  if (typeof s !== 'string') return undefined;
  return new Uint8Array(Buffer.from(s, 'base64'));
}

/** Eight hex digits from a name (FNV-1a): a stable default serial number. */
export function nameHash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).toUpperCase().padStart(8, '0');
}
