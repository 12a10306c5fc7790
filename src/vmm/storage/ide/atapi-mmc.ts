/**
 * The SCSI/MMC command set of the ATAPI CD-ROM (atapi-cdrom.ts): operation
 * codes, sense keys and additional sense codes, and the data each command
 * returns (REQUEST SENSE, INQUIRY, READ CAPACITY, READ TOC, GET
 * CONFIGURATION, GET EVENT STATUS NOTIFICATION, READ DISC INFORMATION,
 * MODE SENSE, MECHANISM STATUS), built from the CDB and the drive's state.
 * Nothing here changes that state: the drive does (sense, unit attention,
 * media events, the tray) and runs the data phase.
 */
import { be16, putBe16, putBe32 } from './drive.js';

export const CD_SECTOR_SIZE = 2048;
/** An 80-minute CD holds 360000 sectors; larger images are reported as DVDs. */
const CD_MAX_SECTORS = 80 * 60 * 75;

/** SCSI sense keys (SPC-3 table 27). */
export const SENSE = {
  NO_SENSE: 0x0,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
} as const;

/** Additional sense codes (SPC-3 annex D, MMC-5). */
export const ASC = {
  NONE: 0x00,
  UNRECOVERED_READ_ERROR: 0x11,
  INVALID_OPCODE: 0x20,
  LBA_OUT_OF_RANGE: 0x21,
  INVALID_FIELD_IN_CDB: 0x24,
  MEDIUM_MAY_HAVE_CHANGED: 0x28,
  SAVING_PARAMETERS_NOT_SUPPORTED: 0x39,
  MEDIUM_NOT_PRESENT: 0x3a,
  MEDIUM_REMOVAL_PREVENTED: 0x53,
} as const;

/** MMC operation codes. */
export const SCSI = {
  TEST_UNIT_READY: 0x00,
  REQUEST_SENSE: 0x03,
  INQUIRY: 0x12,
  MODE_SENSE_6: 0x1a,
  START_STOP_UNIT: 0x1b,
  PREVENT_ALLOW_MEDIUM_REMOVAL: 0x1e,
  READ_CAPACITY: 0x25,
  READ_10: 0x28,
  SEEK_10: 0x2b,
  READ_TOC: 0x43,
  GET_CONFIGURATION: 0x46,
  GET_EVENT_STATUS_NOTIFICATION: 0x4a,
  READ_DISC_INFORMATION: 0x51,
  MODE_SENSE_10: 0x5a,
  READ_12: 0xa8,
  SET_CD_SPEED: 0xbb,
  MECHANISM_STATUS: 0xbd,
  READ_CD: 0xbe,
} as const;

/** Media event codes of GET EVENT STATUS NOTIFICATION (MMC-5 table 146). */
export const MEDIA_EVENT = { NONE: 0, EJECT_REQUEST: 1, NEW_MEDIA: 2, MEDIA_REMOVAL: 3 } as const;

export interface Sense {
  key: number;
  asc: number;
  ascq: number;
}

export const NO_SENSE: Sense = { key: 0, asc: 0, ascq: 0 };

/** Data for the host, of which at most `alloc` bytes (the CDB's allocation length) are sent. */
export interface MmcReply {
  data: Uint8Array;
  alloc: number;
}

/** What a command answers: data, or the sense of a CHECK CONDITION. */
export type MmcResult = MmcReply | Sense;

const INVALID_FIELD: Sense = { key: SENSE.ILLEGAL_REQUEST, asc: ASC.INVALID_FIELD_IN_CDB, ascq: 0 };

/** REQUEST SENSE: fixed-format sense data (SPC-3 §4.5.3) for sense `s`. */
export function senseData(s: Sense, c: Uint8Array): MmcReply {
  const d = new Uint8Array(18);
  d[0] = 0x70; // current error, fixed format
  d[2] = s.key;
  d[7] = 10; // additional sense length
  d[12] = s.asc;
  d[13] = s.ascq;
  return { data: d, alloc: c[4]! };
}

/** What INQUIRY reports of the drive (the options of atapi-cdrom.ts). */
export interface InquiryIdentity {
  serial: string;
  vendor: string | undefined;
  product: string | undefined;
  model: string;
  firmware: string;
}

/** INQUIRY (SPC-3 §6.4): standard data, or the two vital product data pages we have. */
export function inquiryData(c: Uint8Array, id: InquiryIdentity): MmcResult {
  const alloc = be16(c, 3);
  if (c[1]! & 0x01) {
    const page = c[2]!;
    if (page === 0x00) return { data: Uint8Array.of(0x05, 0x00, 0x00, 2, 0x00, 0x80), alloc };
    if (page === 0x80) {
      const sn = new TextEncoder().encode(id.serial);
      const d = new Uint8Array(4 + sn.length);
      d[0] = 0x05;
      d[1] = 0x80;
      d[3] = sn.length;
      d.set(sn, 4);
      return { data: d, alloc };
    }
    return INVALID_FIELD;
  }
  if (c[2] !== 0) return INVALID_FIELD;
  const d = new Uint8Array(36);
  d[0] = 0x05; // peripheral device type: CD/DVD
  d[1] = 0x80; // removable medium
  d[2] = 0x00; // no claimed SCSI version, as ATAPI drives report
  d[3] = 0x21; // ATAPI transport version 2, response data format 1
  d[4] = 36 - 5;
  const ascii = (o: number, n: number, s: string) => {
    const t = s.padEnd(n, ' ');
    for (let i = 0; i < n; i++) d[o + i] = t.charCodeAt(i) & 0x7f;
  };
  ascii(8, 8, (id.vendor ?? 'MVISOR').slice(0, 8));
  ascii(16, 16, (id.product ?? id.model).slice(0, 16));
  ascii(32, 4, id.firmware.slice(0, 4));
  return { data: d, alloc };
}

/** READ CAPACITY: the last logical block and the block size. */
export function readCapacityData(sectors: number): MmcReply {
  const d = new Uint8Array(8);
  putBe32(d, 0, sectors - 1); // last logical block
  putBe32(d, 4, CD_SECTOR_SIZE);
  return { data: d, alloc: d.length };
}

/** An address of a track start as READ TOC reports it: an LBA, or MSF (+150 frames of the pregap). */
function address(d: Uint8Array, o: number, lba: number, msf: boolean): void {
  if (!msf) return putBe32(d, o, lba);
  const f = lba + 150;
  d[o] = 0;
  d[o + 1] = Math.floor(f / (75 * 60));
  d[o + 2] = Math.floor(f / 75) % 60;
  d[o + 3] = f % 75;
}

/** READ TOC/PMA/ATIP (MMC-5 §6.26) of a one-track data disc: formats 0 (TOC), 1 (sessions), 2 (raw TOC). */
export function readTocData(c: Uint8Array, sectors: number): MmcResult {
  const msf = (c[1]! & 0x02) !== 0;
  // SFF-8020 drivers put the format in bits 7:6 of the control byte.
  const format = c[2]! & 0x0f || c[9]! >> 6;
  const start = c[6]!;
  const alloc = be16(c, 7);
  const leadOut = sectors;
  const ctrl = 0x14; // ADR 1 (Q sub-channel position), control 4 (data track)
  if (format === 0) {
    if (start > 1 && start !== 0xaa) return INVALID_FIELD;
    const d = new Uint8Array(4 + 8 * (start <= 1 ? 2 : 1));
    let o = 4;
    if (start <= 1) {
      d[o + 1] = ctrl;
      d[o + 2] = 1;
      address(d, o + 4, 0, msf);
      o += 8;
    }
    d[o + 1] = ctrl;
    d[o + 2] = 0xaa;
    address(d, o + 4, leadOut, msf);
    putBe16(d, 0, d.length - 2);
    d[2] = 1;
    d[3] = 1;
    return { data: d, alloc };
  }
  if (format === 1) {
    const d = new Uint8Array(12);
    putBe16(d, 0, 10);
    d[2] = 1; // first complete session
    d[3] = 1; // last complete session
    d[5] = ctrl;
    d[6] = 1; // first track of the last session
    address(d, 8, 0, msf);
    return { data: d, alloc };
  }
  if (format === 2) {
    // Q sub-channel entries of session 1: A0 (first track, disc type), A1 (last track), A2 (lead-out), track 1.
    const msfOf = (lba: number): [number, number, number] => {
      const f = lba + 150;
      return [Math.floor(f / 4500), Math.floor(f / 75) % 60, f % 75];
    };
    const entries: Array<[number, [number, number, number]]> = [
      [0xa0, [1, 0x00, 0]],
      [0xa1, [1, 0, 0]],
      [0xa2, msfOf(leadOut)],
      [0x01, msfOf(0)],
    ];
    const d = new Uint8Array(4 + 11 * entries.length);
    entries.forEach(([point, p], i) => {
      const o = 4 + 11 * i;
      d[o] = 1; // session
      d[o + 1] = ctrl;
      d[o + 3] = point;
      d[o + 8] = p[0];
      d[o + 9] = p[1];
      d[o + 10] = p[2];
    });
    putBe16(d, 0, d.length - 2);
    d[2] = 1;
    d[3] = 1;
    return { data: d, alloc };
  }
  return INVALID_FIELD;
}

/** The MMC profile of the disc: DVD-ROM, CD-ROM, or none. */
function profile(mediumPresent: boolean, sectors: number): number {
  if (!mediumPresent) return 0;
  return sectors > CD_MAX_SECTORS ? 0x0010 : 0x0008;
}

/** GET CONFIGURATION (MMC-5 §6.6): profile list, core (ATAPI) and removable medium features. */
export function configurationData(c: Uint8Array, mediumPresent: boolean, sectors: number): MmcResult {
  const rt = c[1]! & 0x03;
  const first = be16(c, 2);
  const alloc = be16(c, 7);
  if (rt === 3) return INVALID_FIELD;
  const cur = profile(mediumPresent, sectors);
  const feature = (code: number, body: number[]) => [code >> 8, code & 0xff, 0x03, body.length, ...body];
  const profiles = [0x0010, 0x0008].flatMap((p) => [p >> 8, p & 0xff, p === cur ? 1 : 0, 0]);
  const all: Array<[number, number[]]> = [
    [0x0000, feature(0x0000, profiles)],
    [0x0001, feature(0x0001, [0, 0, 0, 2])], // physical interface standard 2: ATAPI
    // Removable medium: tray loading mechanism (001b), load, eject, lock.
    [0x0003, feature(0x0003, [0x39, 0, 0, 0])],
  ];
  const chosen = all.filter(([code]) => (rt === 2 ? code === first : code >= first));
  const body = chosen.flatMap(([, b]) => b);
  const d = new Uint8Array(8 + body.length);
  putBe32(d, 0, d.length - 4);
  putBe16(d, 6, cur);
  d.set(body, 8);
  return { data: d, alloc };
}

/**
 * GET EVENT STATUS NOTIFICATION (MMC-5 §6.7), polled, media class only.
 * `reported`: the reply carries `mediaEvent`, which the drive then clears.
 */
export function eventStatusData(
  c: Uint8Array,
  mediaEvent: number,
  mediumPresent: boolean,
  trayOpen: boolean,
): MmcResult & { reported?: boolean } {
  if (!(c[1]! & 0x01)) return INVALID_FIELD; // asynchronous notification is not supported
  const alloc = be16(c, 7);
  const MEDIA_CLASS = 0x10;
  if (!(c[4]! & MEDIA_CLASS)) {
    // No requested class is supported: "no event available" with the supported classes.
    return { data: Uint8Array.of(0, 2, 0x80, MEDIA_CLASS), alloc };
  }
  const d = new Uint8Array(8);
  putBe16(d, 0, 6);
  d[2] = 0x04; // notification class: media
  d[3] = MEDIA_CLASS;
  d[4] = mediaEvent;
  d[5] = (mediumPresent ? 0x02 : 0) | (trayOpen ? 0x01 : 0);
  return { data: d, alloc, reported: true };
}

/** READ DISC INFORMATION (MMC-5 §6.22): a complete, finalised one-session disc. */
export function discInformationData(c: Uint8Array): MmcResult {
  if ((c[1]! & 0x07) !== 0) return INVALID_FIELD;
  const d = new Uint8Array(34);
  putBe16(d, 0, 32);
  d[2] = 0x0e; // last session complete, disc finalised
  d[3] = 1; // first track on disc
  d[4] = 1; // sessions
  d[5] = 1; // first track of the last session
  d[6] = 1; // last track of the last session
  d[8] = 0x00; // disc type: CD-DA or CD-ROM
  putBe32(d, 16, 0xffffffff); // last session lead-in start: none (finalised)
  putBe32(d, 20, 0xffffffff); // last possible lead-out start: none
  return { data: d, alloc: be16(c, 7) };
}

/** MODE SENSE(10) (SPC-3 §6.10): read error recovery (01h) and CD capabilities (2Ah). */
export function modeSenseData(c: Uint8Array, locked: boolean): MmcResult {
  const control = c[2]! >> 6;
  const page = c[2]! & 0x3f;
  const alloc = be16(c, 7);
  if (control === 3) return { key: SENSE.ILLEGAL_REQUEST, asc: ASC.SAVING_PARAMETERS_NOT_SUPPORTED, ascq: 0 };
  const changeable = control === 1;
  const pages: number[][] = [];
  if (page === 0x01 || page === 0x3f) {
    const p = [0x01, 0x0a, 0, 5, 0, 0, 0, 0, 5, 0, 0, 0]; // 5 read retries
    pages.push(changeable ? [0x01, 0x0a, ...new Array(10).fill(0)] : p);
  }
  if (page === 0x2a || page === 0x3f) {
    const p = new Array<number>(20).fill(0);
    p[0] = 0x2a;
    p[1] = 0x12;
    if (!changeable) {
      p[2] = 0x0f; // reads CD-R, CD-RW, method 2, DVD-ROM
      p[4] = 0x71; // audio play (Linux mounts on it), mode 2 form 1 and 2, multi-session
      p[6] = 0x29 | (locked ? 0x02 : 0); // tray, eject, lock (and its state)
      const put16 = (o: number, v: number) => ((p[o] = v >> 8), (p[o + 1] = v & 0xff));
      put16(8, 2816); // maximum read speed, KB/s (16x)
      put16(10, 256); // volume levels
      put16(12, 512); // buffer, KiB
      put16(14, 2816); // current read speed
    }
    pages.push(p);
  }
  if (pages.length === 0) return INVALID_FIELD;
  const body = pages.flat();
  const d = new Uint8Array(8 + body.length);
  putBe16(d, 0, d.length - 2);
  d.set(body, 8);
  return { data: d, alloc };
}

/** MECHANISM STATUS (MMC-5 §6.11): no changer, idle, the tray state. */
export function mechanismStatusData(c: Uint8Array, trayOpen: boolean): MmcReply {
  const d = new Uint8Array(8);
  d[1] = trayOpen ? 0x10 : 0;
  return { data: d, alloc: be16(c, 8) };
}
