/**
 * An ATAPI CD/DVD-ROM on an IDE channel: the PACKET command protocol of
 * ATA/ATAPI-7 volume 2 §11.8-11.9 (a 12-byte CDB by PIO, then data by PIO
 * in DRQ blocks no larger than the host's byte count limit, or by DMA),
 * and the MMC commands SeaBIOS, Linux (sr, cdrom, udev) and Windows ask
 * of a read-only drive with 2048-byte sectors over an ISO image.
 *
 * Errors are SCSI sense data (SPC-3 §4.5): the command ends with ERR set
 * and the sense key in Error bits 7:4; the host reads the rest with
 * REQUEST SENSE. A medium change raises UNIT ATTENTION (28h: not ready to
 * ready change) for the next command and a media event for GET EVENT
 * STATUS NOTIFICATION, which is how guests notice a new disc.
 *
 * The tray: the guest opens it (START STOP UNIT with LoEj) unless a
 * PREVENT MEDIUM REMOVAL holds it; the host inserts and ejects images
 * (`insert`, `eject`), and an eject of a locked drive only asks the guest
 * (an "eject request" media event), unless forced.
 */
import type { BlockImage } from '../../../block/image.js';
import {
  CMD,
  ERR_ABRT,
  IR_COD,
  IR_IO,
  MAX_TRANSFER_BYTES,
  SETF_DISABLE_REVERT,
  SETF_ENABLE_REVERT,
  SETF_XFER_MODE,
  decodeTransferMode,
  dmaModeWords,
  identifyBytes,
  nameHash,
  putAtaString,
  type TransferMode,
} from './ata.js';
import { IdeDrive, be16, be32, putBe16, putBe32 } from './drive.js';

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

interface Sense {
  key: number;
  asc: number;
  ascq: number;
}

const NO_SENSE: Sense = { key: 0, asc: 0, ascq: 0 };

interface PacketCommand {
  run: (cdb: Uint8Array) => void;
  /** Runs even with a unit attention pending (SPC-3 §5.9.7 / MMC-5 §4.1.6.1). */
  allowUa?: boolean;
  /** Needs a medium: NOT READY / MEDIUM NOT PRESENT otherwise. */
  needsMedium?: boolean;
}

export interface AtapiCdromOptions {
  name: string;
  /** The disc at power-on (read-only ISO image); none: an empty drive. */
  image?: BlockImage;
  serial?: string;
  firmware?: string;
  model?: string;
  /** INQUIRY vendor (8 characters) and product (16 characters). */
  vendor?: string;
  product?: string;
  /** The guest opened or closed the tray (START STOP UNIT): the control socket may tell its user. */
  onTrayChange?: (open: boolean) => void;
}

export class AtapiCdrom extends IdeDrive {
  readonly kind = 'atapi' as const;
  private disc: BlockImage | undefined;
  private trayOpen = false;
  private locked = false;
  private sense: Sense = NO_SENSE;
  private unitAttention = false;
  private mediaEvent: number = MEDIA_EVENT.NONE;
  private cdb = new Uint8Array(12);
  /** Features bit 0 of the PACKET command: the data phase goes by DMA. */
  private dmaRequested = false;
  /** Byte count limit the host set for PIO DRQ blocks. */
  private byteLimit = 0;
  private mode: TransferMode | undefined;
  private readonly serial: string;
  private readonly firmware: string;
  private readonly model: string;
  private readonly commands: Map<number, PacketCommand>;

  constructor(private readonly opts: AtapiCdromOptions) {
    super(opts.name);
    this.disc = opts.image;
    this.serial = (opts.serial ?? `MV${nameHash(opts.name)}`).slice(0, 20);
    this.firmware = (opts.firmware ?? '1.0').slice(0, 8);
    this.model = (opts.model ?? 'MVISOR DVD-ROM').slice(0, 40);
    this.commands = this.commandTable();
    this.reset();
  }

  // ---- host (control socket) API ----------------------------------------

  /** The image in the drive (also while the tray is open). */
  get medium(): BlockImage | undefined {
    return this.disc;
  }

  get isTrayOpen(): boolean {
    return this.trayOpen;
  }

  get isLocked(): boolean {
    return this.locked;
  }

  /** Whether a disc can be read: one is in and the tray is closed. */
  get mediumPresent(): boolean {
    return this.disc !== undefined && !this.trayOpen;
  }

  /** Sectors of the disc, 0 without one. */
  get sectors(): number {
    return this.disc ? Math.floor(this.disc.size / CD_SECTOR_SIZE) : 0;
  }

  /**
   * Puts a disc in and closes the tray; returns the image it replaced (the
   * caller closes it). The guest sees UNIT ATTENTION and a new-media event.
   */
  insert(image: BlockImage): BlockImage | undefined {
    const old = this.disc;
    this.disc = image;
    this.trayOpen = false;
    this.mediumChanged(MEDIA_EVENT.NEW_MEDIA);
    return old;
  }

  /**
   * Takes the disc out and leaves the tray open. A drive the guest locked
   * is not ejected unless `force`: the guest gets an eject-request event
   * (a desktop then unmounts and ejects) and the result is 'locked'.
   * Otherwise returns the image taken out (the caller closes it), or
   * undefined when the drive was empty.
   */
  eject(force = false): BlockImage | undefined | 'locked' {
    if (this.locked && !force) {
      this.mediaEvent = MEDIA_EVENT.EJECT_REQUEST;
      return 'locked';
    }
    const old = this.disc;
    this.disc = undefined;
    this.trayOpen = true;
    this.locked = false;
    if (old) this.mediumChanged(MEDIA_EVENT.MEDIA_REMOVAL);
    return old;
  }

  private mediumChanged(event: number): void {
    this.mediaEvent = event;
    // A read of the old disc in flight ends now: its data must not pass for the new disc's.
    const interrupted = this.phase === 'io';
    if (interrupted) this.cancel();
    if (this.mediumPresent) {
      if (interrupted) this.checkCondition(SENSE.UNIT_ATTENTION, ASC.MEDIUM_MAY_HAVE_CHANGED, 0);
      else this.unitAttention = true;
    } else if (interrupted) {
      this.notReady();
    }
  }

  // ---- IdeDrive ---------------------------------------------------------

  protected image(): BlockImage | undefined {
    return this.mediumPresent ? this.disc : undefined;
  }

  /** ATA8-ACS §9.12: a packet device leaves DRDY clear after a reset. */
  protected resetStatus(): number {
    return 0;
  }

  protected resetDrive(): void {
    this.locked = false;
    this.trayOpen = false;
    this.sense = NO_SENSE;
    this.unitAttention = false;
    this.mode = undefined;
    this.dmaRequested = false;
    this.byteLimit = 0;
  }

  /** IDENTIFY PACKET DEVICE data (ATA8-ACS §7.17, table 27). */
  identify(): Uint8Array {
    const w = new Uint16Array(256);
    // ATAPI device, CD-ROM (type 5), removable, DRQ within 50 us of PACKET, 12-byte CDBs.
    w[0] = 0x8000 | (0x05 << 8) | 0x80 | (0x2 << 5);
    putAtaString(w, 10, 10, this.serial);
    putAtaString(w, 23, 4, this.firmware);
    putAtaString(w, 27, 20, this.model);
    w[49] = 0x0b00; // IORDY supported, LBA (shall be one), DMA
    w[50] = 0x4000;
    w[53] = 0x0006; // words 64-70 and 88 are valid
    const dma = dmaModeWords(this.mode);
    w[62] = dma.w62;
    w[63] = dma.w63;
    w[64] = 0x0003;
    w[65] = w[66] = w[67] = w[68] = 120;
    w[71] = 30; // typical PACKET to bus release (ns), as ATAPI drives report
    w[72] = 30;
    w[80] = 0x001e; // ATA/ATAPI-1 to -4
    w[82] = 0x4214; // NOP (bit 14), DEVICE RESET (bit 9), PACKET (bit 4), removable media (bit 2)
    w[83] = 0x4000;
    w[84] = 0x4000;
    w[85] = 0x4214;
    w[86] = 0x0000;
    w[87] = 0x4000;
    w[88] = dma.w88;
    w[93] = this.unit === 0 ? 0x600b : 0x6300;
    return identifyBytes(w);
  }

  protected execute(cmd: number): void {
    switch (cmd) {
      case CMD.PACKET:
        return this.packetCommand();
      case CMD.IDENTIFY_PACKET_DEVICE:
        this.pioIn(this.identify(), 512, 'identify');
        return;
      case CMD.IDENTIFY_DEVICE:
      case CMD.READ_SECTORS:
      case CMD.READ_SECTORS_NORETRY:
        // ATA8-ACS §7.16.2: a packet device aborts these with its
        // signature in the registers; that is how drivers find ATAPI.
        this.tf.setSignature(true);
        return this.fail(ERR_ABRT);
      case CMD.DEVICE_RESET:
        // ATA8-ACS §7.6: reset of the packet device alone, no interrupt.
        this.resetPacketState();
        this.diagnostic();
        return;
      case CMD.SET_FEATURES:
        if (this.tf.feature === SETF_XFER_MODE) {
          const m = decodeTransferMode(this.tf.nsector);
          if (!m) return this.fail(ERR_ABRT);
          if (m.kind !== 'pio') this.mode = m;
          return this.finish(true);
        }
        if (this.tf.feature === SETF_ENABLE_REVERT || this.tf.feature === SETF_DISABLE_REVERT)
          return this.finish(true);
        return this.fail(ERR_ABRT);
      case CMD.CHECK_POWER_MODE:
        this.tf.nsector = 0xff;
        return this.finish(true);
      case CMD.IDLE_IMMEDIATE:
      case CMD.STANDBY_IMMEDIATE:
      case CMD.SLEEP:
        return this.finish(true);
      default:
        if (cmd !== CMD.NOP) {
          this.host?.guestErrors.warn(
            `ide-atapi-cmd-${cmd}`,
            () => `${this.name}: unsupported ATA command 0x${cmd.toString(16)} to a packet device; aborted`,
          );
        }
        return this.fail(ERR_ABRT);
    }
  }

  private resetPacketState(): void {
    this.dmaRequested = false;
    this.byteLimit = 0;
  }

  /** PACKET: the device asks for the 12-byte CDB (Sector Count: C/D = 1, I/O = 0), without an interrupt. */
  private packetCommand(): void {
    this.dmaRequested = (this.tf.feature & 0x01) !== 0;
    this.byteLimit = (this.tf.hcyl << 8) | this.tf.lcyl;
    this.pioOut(12, 12, 'cdb');
    this.tf.nsector = (this.tf.nsector & ~0x07) | IR_COD;
  }

  protected onBlockDone(): void {
    switch (this.next) {
      case 'cdb':
        this.cdb = this.buf.slice(0, 12);
        this.phase = 'idle';
        this.runPacket();
        return;
      case 'atapi-in':
        if (this.pos >= this.total) this.packetDone();
        else {
          this.nextBlock(true);
          this.drqBlockRegisters();
        }
        return;
      case 'identify':
      default:
        this.finish(false);
    }
  }

  protected onIoDone(data: Uint8Array): void {
    // 'cd-read': the sectors a READ asked for.
    this.sendData(data);
  }

  protected onIoError(): void {
    if (!this.mediumPresent) this.checkCondition(SENSE.NOT_READY, ASC.MEDIUM_NOT_PRESENT, 0);
    else this.checkCondition(SENSE.MEDIUM_ERROR, ASC.UNRECOVERED_READ_ERROR, 0);
  }

  protected onDmaDone(): void {
    this.packetDone();
  }

  // ---- packet protocol ---------------------------------------------------

  private runPacket(): void {
    const cdb = this.cdb;
    const op = cdb[0]!;
    const c = this.commands.get(op);
    if (!c) {
      this.host?.guestErrors.warn(
        `ide-scsi-${op}`,
        () => `${this.name}: unsupported packet command 0x${op.toString(16)}`,
      );
      return this.checkCondition(SENSE.ILLEGAL_REQUEST, ASC.INVALID_OPCODE, 0);
    }
    if (this.unitAttention && !c.allowUa) {
      // SPC-3 §5.9.7: the unit attention is reported (and cleared) by the command it stops.
      this.unitAttention = false;
      return this.checkCondition(SENSE.UNIT_ATTENTION, ASC.MEDIUM_MAY_HAVE_CHANGED, 0);
    }
    if (c.needsMedium && !this.mediumPresent) return this.notReady();
    if (op !== SCSI.REQUEST_SENSE) this.sense = NO_SENSE;
    c.run(cdb);
  }

  private notReady(): void {
    // MMC-5 table F.1: 3A/01 tray closed, 3A/02 tray open.
    this.checkCondition(SENSE.NOT_READY, ASC.MEDIUM_NOT_PRESENT, this.trayOpen ? 0x02 : 0x01);
  }

  /** Ends the command with CHECK CONDITION: ERR, sense key in Error 7:4 (ATA8-ACS §7.18.6). */
  private checkCondition(key: number, asc: number, ascq: number): void {
    this.sense = { key, asc, ascq };
    this.phase = 'idle';
    this.next = '';
    this.tf.nsector = (this.tf.nsector & ~0x07) | IR_IO | IR_COD;
    this.fail(key << 4);
  }

  private invalidField(): void {
    this.checkCondition(SENSE.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, 0);
  }

  /** The command completed: status with I/O and C/D set, and an interrupt. */
  private packetDone(): void {
    this.tf.nsector = (this.tf.nsector & ~0x07) | IR_IO | IR_COD;
    this.finish(true);
  }

  /** Replies with at most `alloc` bytes of `data` (the CDB's allocation length). */
  private reply(data: Uint8Array, alloc: number): void {
    this.sendData(data.subarray(0, Math.min(data.length, alloc)));
  }

  private sendData(data: Uint8Array): void {
    if (data.length === 0) return this.packetDone();
    if (this.dmaRequested) {
      this.dma(data, 'atapi-dma');
      return;
    }
    // ATA/ATAPI-7 v2 §11.8: DRQ blocks are at most the byte count limit,
    // made even when it is odd; 0 is invalid and taken as the largest.
    let limit = this.byteLimit;
    if (limit === 0 || limit === 0xffff) limit = 0xfffe;
    limit &= ~1;
    this.pioIn(data, limit, 'atapi-in');
    this.drqBlockRegisters();
  }

  /** Byte count and interrupt reason (I/O = 1: to the host) of the DRQ block just opened. */
  private drqBlockRegisters(): void {
    const n = this.blockEnd - this.pos;
    this.tf.lcyl = n & 0xff;
    this.tf.hcyl = n >> 8;
    this.tf.nsector = (this.tf.nsector & ~0x07) | IR_IO;
  }

  private commandTable(): Map<number, PacketCommand> {
    const m = new Map<number, PacketCommand>();
    m.set(SCSI.TEST_UNIT_READY, { run: () => this.packetDone(), needsMedium: true });
    m.set(SCSI.REQUEST_SENSE, { run: (c) => this.requestSense(c), allowUa: true });
    m.set(SCSI.INQUIRY, { run: (c) => this.inquiry(c), allowUa: true });
    m.set(SCSI.START_STOP_UNIT, { run: (c) => this.startStop(c) });
    m.set(SCSI.PREVENT_ALLOW_MEDIUM_REMOVAL, {
      run: (c) => {
        this.locked = (c[4]! & 0x03) !== 0;
        this.packetDone();
      },
    });
    m.set(SCSI.READ_CAPACITY, { run: () => this.readCapacity(), needsMedium: true });
    m.set(SCSI.READ_10, { run: (c) => this.read(be32(c, 2), be16(c, 7)), needsMedium: true });
    m.set(SCSI.READ_12, { run: (c) => this.read(be32(c, 2), be32(c, 6)), needsMedium: true });
    m.set(SCSI.SEEK_10, {
      run: (c) => (be32(c, 2) < this.sectors ? this.packetDone() : this.lbaOutOfRange()),
      needsMedium: true,
    });
    m.set(SCSI.READ_TOC, { run: (c) => this.readToc(c), needsMedium: true });
    m.set(SCSI.GET_CONFIGURATION, { run: (c) => this.getConfiguration(c), allowUa: true });
    m.set(SCSI.GET_EVENT_STATUS_NOTIFICATION, { run: (c) => this.eventStatus(c), allowUa: true });
    m.set(SCSI.READ_DISC_INFORMATION, { run: (c) => this.discInformation(c), needsMedium: true });
    m.set(SCSI.MODE_SENSE_10, { run: (c) => this.modeSense(c) });
    m.set(SCSI.SET_CD_SPEED, { run: () => this.packetDone() });
    m.set(SCSI.MECHANISM_STATUS, { run: (c) => this.mechanismStatus(c) });
    m.set(SCSI.READ_CD, { run: (c) => this.readCd(c), needsMedium: true });
    return m;
  }

  private lbaOutOfRange(): void {
    this.checkCondition(SENSE.ILLEGAL_REQUEST, ASC.LBA_OUT_OF_RANGE, 0);
  }

  /** REQUEST SENSE: fixed-format sense data (SPC-3 §4.5.3); reading it clears it. */
  private requestSense(c: Uint8Array): void {
    const s = this.unitAttention
      ? { key: SENSE.UNIT_ATTENTION, asc: ASC.MEDIUM_MAY_HAVE_CHANGED, ascq: 0 }
      : this.sense;
    this.unitAttention = false;
    this.sense = NO_SENSE;
    const d = new Uint8Array(18);
    d[0] = 0x70; // current error, fixed format
    d[2] = s.key;
    d[7] = 10; // additional sense length
    d[12] = s.asc;
    d[13] = s.ascq;
    this.reply(d, c[4]!);
  }

  /** INQUIRY (SPC-3 §6.4): standard data, or the two vital product data pages we have. */
  private inquiry(c: Uint8Array): void {
    const alloc = be16(c, 3);
    if (c[1]! & 0x01) {
      const page = c[2]!;
      if (page === 0x00) return this.reply(Uint8Array.of(0x05, 0x00, 0x00, 2, 0x00, 0x80), alloc);
      if (page === 0x80) {
        const sn = new TextEncoder().encode(this.serial);
        const d = new Uint8Array(4 + sn.length);
        d[0] = 0x05;
        d[1] = 0x80;
        d[3] = sn.length;
        d.set(sn, 4);
        return this.reply(d, alloc);
      }
      return this.invalidField();
    }
    if (c[2] !== 0) return this.invalidField();
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
    ascii(8, 8, (this.opts.vendor ?? 'MVISOR').slice(0, 8));
    ascii(16, 16, (this.opts.product ?? this.model).slice(0, 16));
    ascii(32, 4, this.firmware.slice(0, 4));
    this.reply(d, alloc);
  }

  /** START STOP UNIT (MMC-5 §6.39): with LoEj, Start = 0 opens the tray, Start = 1 closes it. */
  private startStop(c: Uint8Array): void {
    const loej = (c[4]! & 0x02) !== 0;
    const start = (c[4]! & 0x01) !== 0;
    if (!loej) return this.packetDone();
    if (!start) {
      if (this.locked) return this.checkCondition(SENSE.ILLEGAL_REQUEST, ASC.MEDIUM_REMOVAL_PREVENTED, 0x02);
      if (!this.trayOpen) {
        this.trayOpen = true;
        if (this.disc) this.mediaEvent = MEDIA_EVENT.MEDIA_REMOVAL;
        this.opts.onTrayChange?.(true);
      }
    } else if (this.trayOpen) {
      this.trayOpen = false;
      if (this.disc) this.mediumChanged(MEDIA_EVENT.NEW_MEDIA);
      this.opts.onTrayChange?.(false);
    }
    this.packetDone();
  }

  private readCapacity(): void {
    const d = new Uint8Array(8);
    putBe32(d, 0, this.sectors - 1); // last logical block
    putBe32(d, 4, CD_SECTOR_SIZE);
    this.reply(d, d.length);
  }

  /** READ(10) / READ(12) of 2048-byte sectors. */
  private read(lba: number, count: number): void {
    if (count === 0) return this.packetDone();
    if (lba + count > this.sectors) return this.lbaOutOfRange();
    if (count * CD_SECTOR_SIZE > MAX_TRANSFER_BYTES) {
      this.host?.guestErrors.warn(
        'ide-cd-large',
        () => `${this.name}: read of ${count} sectors is larger than ${MAX_TRANSFER_BYTES} bytes; refused`,
      );
      return this.invalidField();
    }
    this.startIo({ kind: 'read', offset: lba * CD_SECTOR_SIZE, length: count * CD_SECTOR_SIZE }, 'cd-read');
  }

  /** READ CD (MMC-5 §6.19), for the 2048-byte user data of data sectors only. */
  private readCd(c: Uint8Array): void {
    const type = (c[1]! >> 2) & 0x07; // 0: any, 2: mode 1
    const count = (c[6]! << 16) | (c[7]! << 8) | c[8]!;
    const fields = c[9]!;
    if (type !== 0 && type !== 2) return this.invalidField();
    if (fields === 0x00 || count === 0) return this.packetDone();
    if (fields !== 0x10) return this.invalidField(); // headers, EDC/ECC, C2: not on an ISO image
    this.read(be32(c, 2), count);
  }

  /** An address of a track start as READ TOC reports it: an LBA, or MSF (+150 frames of the pregap). */
  private static address(d: Uint8Array, o: number, lba: number, msf: boolean): void {
    if (!msf) return putBe32(d, o, lba);
    const f = lba + 150;
    d[o] = 0;
    d[o + 1] = Math.floor(f / (75 * 60));
    d[o + 2] = Math.floor(f / 75) % 60;
    d[o + 3] = f % 75;
  }

  /** READ TOC/PMA/ATIP (MMC-5 §6.26) of a one-track data disc: formats 0 (TOC), 1 (sessions), 2 (raw TOC). */
  private readToc(c: Uint8Array): void {
    const msf = (c[1]! & 0x02) !== 0;
    // SFF-8020 drivers put the format in bits 7:6 of the control byte.
    const format = c[2]! & 0x0f || c[9]! >> 6;
    const start = c[6]!;
    const alloc = be16(c, 7);
    const leadOut = this.sectors;
    const ctrl = 0x14; // ADR 1 (Q sub-channel position), control 4 (data track)
    if (format === 0) {
      if (start > 1 && start !== 0xaa) return this.invalidField();
      const d = new Uint8Array(4 + 8 * (start <= 1 ? 2 : 1));
      let o = 4;
      if (start <= 1) {
        d[o + 1] = ctrl;
        d[o + 2] = 1;
        AtapiCdrom.address(d, o + 4, 0, msf);
        o += 8;
      }
      d[o + 1] = ctrl;
      d[o + 2] = 0xaa;
      AtapiCdrom.address(d, o + 4, leadOut, msf);
      putBe16(d, 0, d.length - 2);
      d[2] = 1;
      d[3] = 1;
      return this.reply(d, alloc);
    }
    if (format === 1) {
      const d = new Uint8Array(12);
      putBe16(d, 0, 10);
      d[2] = 1; // first complete session
      d[3] = 1; // last complete session
      d[5] = ctrl;
      d[6] = 1; // first track of the last session
      AtapiCdrom.address(d, 8, 0, msf);
      return this.reply(d, alloc);
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
      return this.reply(d, alloc);
    }
    this.invalidField();
  }

  /** The MMC profile of the disc: DVD-ROM, CD-ROM, or none. */
  private profile(): number {
    if (!this.mediumPresent) return 0;
    return this.sectors > CD_MAX_SECTORS ? 0x0010 : 0x0008;
  }

  /** GET CONFIGURATION (MMC-5 §6.6): profile list, core (ATAPI) and removable medium features. */
  private getConfiguration(c: Uint8Array): void {
    const rt = c[1]! & 0x03;
    const first = be16(c, 2);
    const alloc = be16(c, 7);
    if (rt === 3) return this.invalidField();
    const cur = this.profile();
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
    this.reply(d, alloc);
  }

  /** GET EVENT STATUS NOTIFICATION (MMC-5 §6.7), polled, media class only. */
  private eventStatus(c: Uint8Array): void {
    if (!(c[1]! & 0x01)) return this.invalidField(); // asynchronous notification is not supported
    const alloc = be16(c, 7);
    const MEDIA_CLASS = 0x10;
    if (!(c[4]! & MEDIA_CLASS)) {
      // No requested class is supported: "no event available" with the supported classes.
      return this.reply(Uint8Array.of(0, 2, 0x80, MEDIA_CLASS), alloc);
    }
    const d = new Uint8Array(8);
    putBe16(d, 0, 6);
    d[2] = 0x04; // notification class: media
    d[3] = MEDIA_CLASS;
    d[4] = this.mediaEvent;
    d[5] = (this.mediumPresent ? 0x02 : 0) | (this.trayOpen ? 0x01 : 0);
    this.mediaEvent = MEDIA_EVENT.NONE;
    this.reply(d, alloc);
  }

  /** READ DISC INFORMATION (MMC-5 §6.22): a complete, finalised one-session disc. */
  private discInformation(c: Uint8Array): void {
    if ((c[1]! & 0x07) !== 0) return this.invalidField();
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
    this.reply(d, be16(c, 7));
  }

  /** MODE SENSE(10) (SPC-3 §6.10): read error recovery (01h) and CD capabilities (2Ah). */
  private modeSense(c: Uint8Array): void {
    const control = c[2]! >> 6;
    const page = c[2]! & 0x3f;
    const alloc = be16(c, 7);
    if (control === 3)
      return this.checkCondition(SENSE.ILLEGAL_REQUEST, ASC.SAVING_PARAMETERS_NOT_SUPPORTED, 0);
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
        p[6] = 0x29 | (this.locked ? 0x02 : 0); // tray, eject, lock (and its state)
        const put16 = (o: number, v: number) => ((p[o] = v >> 8), (p[o + 1] = v & 0xff));
        put16(8, 2816); // maximum read speed, KB/s (16x)
        put16(10, 256); // volume levels
        put16(12, 512); // buffer, KiB
        put16(14, 2816); // current read speed
      }
      pages.push(p);
    }
    if (pages.length === 0) return this.invalidField();
    const body = pages.flat();
    const d = new Uint8Array(8 + body.length);
    putBe16(d, 0, d.length - 2);
    d.set(body, 8);
    this.reply(d, alloc);
  }

  /** MECHANISM STATUS (MMC-5 §6.11): no changer, idle, the tray state. */
  private mechanismStatus(c: Uint8Array): void {
    const d = new Uint8Array(8);
    d[1] = this.trayOpen ? 0x10 : 0;
    this.reply(d, be16(c, 8));
  }

  // ---- state -------------------------------------------------------------

  protected saveDrive(): unknown {
    return {
      trayOpen: this.trayOpen,
      locked: this.locked,
      sense: [this.sense.key, this.sense.asc, this.sense.ascq],
      unitAttention: this.unitAttention,
      mediaEvent: this.mediaEvent,
      cdb: Array.from(this.cdb),
      dma: this.dmaRequested,
      byteLimit: this.byteLimit,
      mode: this.mode ? `${this.mode.kind}${this.mode.mode}` : '',
      hadMedium: this.disc !== undefined,
    };
  }

  protected loadDrive(saved: unknown): void {
    const s = (typeof saved === 'object' && saved !== null ? saved : {}) as Record<string, unknown>;
    const byte = (v: unknown) => (typeof v === 'number' ? v & 0xff : 0);
    this.trayOpen = s.trayOpen === true;
    this.locked = s.locked === true;
    const sense = Array.isArray(s.sense) ? s.sense : [];
    this.sense = { key: byte(sense[0]) & 0x0f, asc: byte(sense[1]), ascq: byte(sense[2]) };
    this.unitAttention = s.unitAttention === true;
    const ev = byte(s.mediaEvent);
    this.mediaEvent = ev <= MEDIA_EVENT.MEDIA_REMOVAL ? ev : MEDIA_EVENT.NONE;
    const cdb = Array.isArray(s.cdb) ? s.cdb : [];
    this.cdb = Uint8Array.from({ length: 12 }, (_, i) => byte(cdb[i]));
    this.dmaRequested = s.dma === true;
    this.byteLimit = typeof s.byteLimit === 'number' ? s.byteLimit & 0xffff : 0;
    const mm = typeof s.mode === 'string' ? /^(swdma|mwdma|udma)([0-7])$/.exec(s.mode) : null;
    this.mode = mm ? { kind: mm[1] as TransferMode['kind'], mode: Number(mm[2]) } : undefined;
    // The disc itself comes from the configuration; a different one than at save is a media change.
    if ((s.hadMedium === true) !== (this.disc !== undefined)) this.mediumChanged(this.disc ? 2 : 3);
  }
}
