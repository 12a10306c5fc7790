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
 *
 * This file is the device and its state; atapi-mmc.ts holds the MMC
 * command set (operation and sense codes, the data each command returns).
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
import { IdeDrive, be16, be32 } from './drive.js';
import {
  ASC,
  CD_SECTOR_SIZE,
  MEDIA_EVENT,
  NO_SENSE,
  SCSI,
  SENSE,
  configurationData,
  discInformationData,
  eventStatusData,
  inquiryData,
  mechanismStatusData,
  modeSenseData,
  readCapacityData,
  readTocData,
  senseData,
  type InquiryIdentity,
  type MmcResult,
  type Sense,
} from './atapi-mmc.js';

export { ASC, CD_SECTOR_SIZE, MEDIA_EVENT, SCSI, SENSE } from './atapi-mmc.js';

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

  /** Ends a command of atapi-mmc.ts: its reply, or CHECK CONDITION with its sense. */
  private respond(r: MmcResult): void {
    if ('key' in r) return this.checkCondition(r.key, r.asc, r.ascq);
    this.reply(r.data, r.alloc);
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
    m.set(SCSI.INQUIRY, { run: (c) => this.respond(inquiryData(c, this.inquiryIdentity())), allowUa: true });
    m.set(SCSI.START_STOP_UNIT, { run: (c) => this.startStop(c) });
    m.set(SCSI.PREVENT_ALLOW_MEDIUM_REMOVAL, {
      run: (c) => {
        this.locked = (c[4]! & 0x03) !== 0;
        this.packetDone();
      },
    });
    m.set(SCSI.READ_CAPACITY, { run: () => this.respond(readCapacityData(this.sectors)), needsMedium: true });
    m.set(SCSI.READ_10, { run: (c) => this.read(be32(c, 2), be16(c, 7)), needsMedium: true });
    m.set(SCSI.READ_12, { run: (c) => this.read(be32(c, 2), be32(c, 6)), needsMedium: true });
    m.set(SCSI.SEEK_10, {
      run: (c) => (be32(c, 2) < this.sectors ? this.packetDone() : this.lbaOutOfRange()),
      needsMedium: true,
    });
    m.set(SCSI.READ_TOC, { run: (c) => this.respond(readTocData(c, this.sectors)), needsMedium: true });
    m.set(SCSI.GET_CONFIGURATION, {
      run: (c) => this.respond(configurationData(c, this.mediumPresent, this.sectors)),
      allowUa: true,
    });
    m.set(SCSI.GET_EVENT_STATUS_NOTIFICATION, { run: (c) => this.eventStatus(c), allowUa: true });
    m.set(SCSI.READ_DISC_INFORMATION, {
      run: (c) => this.respond(discInformationData(c)),
      needsMedium: true,
    });
    m.set(SCSI.MODE_SENSE_10, { run: (c) => this.respond(modeSenseData(c, this.locked)) });
    m.set(SCSI.SET_CD_SPEED, { run: () => this.packetDone() });
    m.set(SCSI.MECHANISM_STATUS, { run: (c) => this.respond(mechanismStatusData(c, this.trayOpen)) });
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
    this.respond(senseData(s, c));
  }

  /** INQUIRY's identity strings. */
  private inquiryIdentity(): InquiryIdentity {
    const { serial, model, firmware } = this;
    return { serial, vendor: this.opts.vendor, product: this.opts.product, model, firmware };
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

  /** GET EVENT STATUS NOTIFICATION (MMC-5 §6.7): a media event is reported once. */
  private eventStatus(c: Uint8Array): void {
    const r = eventStatusData(c, this.mediaEvent, this.mediumPresent, this.trayOpen);
    if (r.reported) this.mediaEvent = MEDIA_EVENT.NONE;
    this.respond(r);
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
