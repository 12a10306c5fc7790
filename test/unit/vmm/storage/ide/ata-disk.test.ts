import { describe, expect, it } from 'vitest';
import { BlockError } from '../../../../../src/block/image.js';
import { P, S, ataString, readData, rig, word, writeData, type Rig } from './helpers.js';

const STATUS = 7;

/** SeaBIOS's await_not_bsy: poll Alternate Status (it never reads Status in a loop). */
function awaitNotBusy(r: Rig, ch = P): number {
  for (let i = 0; i < 100; i++) {
    const s = r.inb(ch.ctl);
    if (!(s & 0x80)) return s;
  }
  throw new Error('still busy');
}

/** Programs an LBA28 command on the primary master. */
function lba28(r: Rig, cmd: number, lba: number, count: number, ch = P): void {
  r.outb(ch.base + 6, 0xe0 | ((lba >>> 24) & 0x0f));
  r.outb(ch.base + 2, count & 0xff);
  r.outb(ch.base + 3, lba & 0xff);
  r.outb(ch.base + 4, (lba >>> 8) & 0xff);
  r.outb(ch.base + 5, (lba >>> 16) & 0xff);
  r.outb(ch.base + 7, cmd);
}

/** An LBA48 command: each register written twice, high-order byte first (ATA8-ACS §4.2.2). */
function lba48(r: Rig, cmd: number, lba: number, count: number): void {
  r.outb(P.base + 6, 0x40);
  const hi = Math.floor(lba / 2 ** 24);
  r.outb(P.base + 2, (count >> 8) & 0xff);
  r.outb(P.base + 3, hi & 0xff);
  r.outb(P.base + 4, (hi >>> 8) & 0xff);
  r.outb(P.base + 5, (hi >>> 16) & 0xff);
  r.outb(P.base + 2, count & 0xff);
  r.outb(P.base + 3, lba & 0xff);
  r.outb(P.base + 4, (lba >>> 8) & 0xff);
  r.outb(P.base + 5, (lba >>> 16) & 0xff);
  r.outb(P.base + 7, cmd);
}

function identify(r: Rig, cmd = 0xec, ch = P): Uint8Array {
  r.outb(ch.base + 7, cmd);
  const s = awaitNotBusy(r, ch);
  expect(s & 0x08, `DRQ after IDENTIFY, status ${s.toString(16)}`).toBe(0x08);
  const id = readData(r, ch.base, 512);
  expect(r.inb(ch.base + STATUS)).toBe(0x50);
  return id;
}

describe('ATA disk: probing', () => {
  it('SeaBIOS: register check on both positions, soft reset, IDENTIFY PACKET aborts, IDENTIFY DEVICE', () => {
    const r = rig();
    // ata_detect: select, then the 0x55/0xAA register check, for master and slave.
    for (const dh of [0xa0, 0xb0]) {
      awaitNotBusy(r);
      r.outb(P.base + 6, dh);
      expect(r.inb(P.base + 6)).toBe(dh);
      r.outb(P.base + 2, 0x55);
      r.outb(P.base + 3, 0xaa);
      expect([r.inb(P.base + 2), r.inb(P.base + 3)]).toEqual([0x55, 0xaa]);
    }
    // The absent slave answers with Status 00h: "can't be a valid drive".
    expect(r.inb(P.base + STATUS)).toBe(0);
    // ata_reset: SRST with nIEN, then release.
    r.outb(P.ctl, 0x0e);
    r.outb(P.base + 6, 0xa0);
    expect(r.inb(P.ctl) & 0x80).toBe(0x80);
    r.outb(P.ctl, 0x0a);
    expect(awaitNotBusy(r)).toBe(0x50);
    // Device 0 is selected after reset; ATA signature.
    expect(r.inb(P.base + 6)).toBe(0xa0);
    expect([1, 2, 3, 4, 5].map((o) => r.inb(P.base + o))).toEqual([0x01, 0x01, 0x01, 0x00, 0x00]);
    // init_drive_atapi first: an ATA device aborts IDENTIFY PACKET DEVICE.
    r.outb(P.base + 7, 0xa1);
    expect(awaitNotBusy(r)).toBe(0x51);
    expect(r.inb(P.base + 1)).toBe(0x04);
    const id = identify(r);
    expect(ataString(id, 27, 20)).toBe('MVISOR HARDDISK');
    expect(ataString(id, 10, 10)).toMatch(/^MV[0-9A-F]{8}$/);
    expect(word(id, 0)).toBe(0x0040);
    expect(word(id, 49) & 0x0300).toBe(0x0300); // LBA and DMA
    const sectors = (64 * 1024 * 1024) / 512;
    expect(word(id, 60) | (word(id, 61) << 16)).toBe(sectors);
    expect(word(id, 100) | (word(id, 101) << 16)).toBe(sectors);
    expect(word(id, 83) & 0x0400).toBe(0x0400); // 48-bit
    expect([word(id, 1), word(id, 3), word(id, 6)]).toEqual([130, 16, 63]);
    expect(word(id, 88) & 0xff).toBe(0x3f);
    // Integrity word: signature A5h, all 512 bytes sum to 0.
    expect(id[510]).toBe(0xa5);
    expect(id.reduce((a, b) => a + b, 0) & 0xff).toBe(0);
    // With nIEN set, no interrupt reached the pin.
    expect(r.irqs.filter(([g]) => g === 14)).toEqual([]);
  });

  it('Linux ata_piix: devchk, SRST without nIEN, classification by signature and status, IDENTIFY by interrupt', () => {
    const r = rig();
    // ata_devchk on device 0 and device 1: both latch the pattern.
    for (const dev of [0xa0, 0xb0]) {
      r.outb(P.base + 6, dev);
      r.outb(P.base + 2, 0x55);
      r.outb(P.base + 3, 0xaa);
      r.outb(P.base + 2, 0xaa);
      r.outb(P.base + 3, 0x55);
      r.outb(P.base + 2, 0x55);
      r.outb(P.base + 3, 0xaa);
      expect([r.inb(P.base + 2), r.inb(P.base + 3)]).toEqual([0x55, 0xaa]);
    }
    // ata_bus_softreset: ctl, ctl|SRST, ctl (nIEN clear).
    r.outb(P.ctl, 0x08);
    r.outb(P.ctl, 0x0c);
    r.outb(P.ctl, 0x08);
    // Device 1 shows 01h/01h after reset (ata_sff_wait_after_reset) ...
    r.outb(P.base + 6, 0xb0);
    expect([r.inb(P.base + 2), r.inb(P.base + 3)]).toEqual([1, 1]);
    // ... error 01h and ATA signature, but status 00h: ATA_DEV_NONE.
    expect([r.inb(P.base + 1), r.inb(P.base + 4), r.inb(P.base + 5), r.inb(P.base + 7)]).toEqual([
      1, 0, 0, 0,
    ]);
    r.outb(P.base + 6, 0xa0);
    expect([r.inb(P.base + 1), r.inb(P.base + 4), r.inb(P.base + 5), r.inb(P.base + 7)]).toEqual([
      1, 0, 0, 0x50,
    ]);
    // IDENTIFY with interrupts on: the pin rises with DRQ, reading Status lowers it.
    r.outb(P.base + 7, 0xec);
    expect(r.level(14)).toBe(true);
    expect(r.inb(P.ctl)).toBe(0x58); // Alternate Status leaves the interrupt alone
    expect(r.level(14)).toBe(true);
    expect(r.inb(P.base + 7)).toBe(0x58);
    expect(r.level(14)).toBe(false);
    // 32-bit PIO (ata_sff_data_xfer32).
    const id = new Uint8Array(512);
    const dv = new DataView(id.buffer);
    for (let i = 0; i < 512; i += 4) dv.setUint32(i, r.inl(P.base), true);
    expect(ataString(id, 27, 20)).toBe('MVISOR HARDDISK');
    expect(r.inb(P.base + 7)).toBe(0x50);
    // SET FEATURES: transfer mode MWDMA2 (what ata_piix picks on a PIIX3), then IDENTIFY shows it.
    r.outb(P.base + 1, 0x03);
    r.outb(P.base + 2, 0x22);
    r.outb(P.base + 7, 0xef);
    expect(r.inb(P.base + 7)).toBe(0x50);
    expect(word(identify(r), 63)).toBe(0x0407);
    // A transfer mode the drive does not have aborts.
    r.outb(P.base + 1, 0x03);
    r.outb(P.base + 2, 0x47); // UDMA7
    r.outb(P.base + 7, 0xef);
    expect(r.inb(P.base + 7)).toBe(0x51);
  });

  it('EXECUTE DEVICE DIAGNOSTIC leaves signatures and interrupts; a command to the absent slave is ignored', () => {
    const r = rig();
    r.outb(P.base + 2, 0x33);
    r.outb(P.base + 7, 0x90);
    expect(r.inb(P.base + 1)).toBe(0x01);
    expect(r.inb(P.base + 2)).toBe(0x01);
    expect(r.level(14)).toBe(true);
    expect(r.inb(P.base + 7)).toBe(0x50);
    r.outb(P.base + 6, 0xb0);
    r.outb(P.base + 7, 0xec);
    expect(r.inb(P.base + 7)).toBe(0);
    expect(r.level(14)).toBe(false);
  });

  it('an empty channel reads 00h; with IDE decode off (as firmware finds it) the ports read as an open bus', () => {
    const r = rig({ noCd: true });
    expect([0, 1, 2, 7].map((o) => r.inb(S.base + o))).toEqual([0, 0, 0, 0]);
    r.outb(S.base + 2, 0x55);
    expect(r.inb(S.base + 2)).toBe(0);
    const fw = rig({ firmwareBoot: true });
    expect(fw.inb(P.base + 7)).toBe(0xff);
    expect(fw.inw(P.base)).toBe(0xffff);
    // SeaBIOS piix_ide_setup: IDETIM = 0x8000 for each channel.
    fw.ide.writeConfig(0x40, 2, 0x8000);
    expect(fw.ide.readConfig(0x40, 2)).toBe(0x8000);
    expect(fw.inb(P.base + 7)).toBe(0x50);
    expect(fw.inb(S.base + 7)).toBe(0xff);
    fw.ide.writeConfig(0x42, 2, 0x8000);
    expect(fw.inb(S.base + 7)).toBe(0x00); // the CD-ROM: DRDY clear after reset
  });
});

describe('ATA disk: PIO', () => {
  it('READ SECTORS: BSY while the image reads, then DRQ and an interrupt per sector', async () => {
    const r = rig();
    r.diskImage.hold();
    lba28(r, 0x20, 5, 3);
    expect(r.inb(P.ctl) & 0x80).toBe(0x80);
    // A busy device ignores register writes.
    r.outb(P.base + 2, 0x99);
    r.diskImage.release();
    await r.settle();
    expect(r.inb(P.base + 2)).toBe(3);
    expect(r.diskImage.calls).toEqual([`read ${5 * 512}+${3 * 512}`]);
    for (let s = 0; s < 3; s++) {
      expect(r.level(14)).toBe(true);
      expect(r.inb(P.base + 7)).toBe(0x58);
      expect(r.level(14)).toBe(false);
      expect(readData(r, P.base, 512)).toEqual(r.diskImage.bytes((5 + s) * 512, 512));
    }
    expect(r.inb(P.base + 7)).toBe(0x50);
    expect(r.level(14)).toBe(false);
    // The data port reads 0 outside a data phase.
    expect(r.inw(P.base)).toBe(0);
  });

  it('WRITE SECTORS: first DRQ without an interrupt, then one per sector, BSY while the image writes', async () => {
    const r = rig();
    lba28(r, 0x30, 100, 2);
    expect(r.inb(P.ctl)).toBe(0x58);
    expect(r.level(14)).toBe(false);
    const data = Uint8Array.from({ length: 1024 }, (_, i) => (i * 7) & 0xff);
    writeData(r, P.base, data.subarray(0, 512));
    expect(r.level(14)).toBe(true);
    expect(r.inb(P.base + 7)).toBe(0x58);
    r.diskImage.hold();
    writeData(r, P.base, data.subarray(512));
    expect(r.inb(P.ctl) & 0x80).toBe(0x80);
    r.diskImage.release();
    await r.settle();
    expect(r.level(14)).toBe(true);
    expect(r.inb(P.base + 7)).toBe(0x50);
    expect(r.diskImage.bytes(100 * 512, 1024)).toEqual(data);
    expect(r.diskImage.calls).toEqual([`write ${100 * 512}+1024`]);
  });

  it('SET MULTIPLE MODE, READ/WRITE MULTIPLE: one DRQ block (and interrupt) per 4 sectors', async () => {
    const r = rig();
    r.outb(P.base + 2, 4);
    r.outb(P.base + 7, 0xc6);
    expect(r.inb(P.base + 7)).toBe(0x50);
    lba28(r, 0xc4, 0, 6);
    await r.settle();
    const rises = () => r.irqs.filter(([g, l]) => g === 14 && l).length;
    const before = rises();
    expect(r.inb(P.base + 7)).toBe(0x58);
    expect(readData(r, P.base, 2048)).toEqual(r.diskImage.bytes(0, 2048));
    expect(r.inb(P.base + 7)).toBe(0x58);
    expect(readData(r, P.base, 1024)).toEqual(r.diskImage.bytes(2048, 1024));
    expect(r.inb(P.base + 7)).toBe(0x50);
    expect(rises() - before).toBe(1);
    // Not a power of two: aborted; 0 turns multiple mode off and READ MULTIPLE aborts.
    r.outb(P.base + 2, 3);
    r.outb(P.base + 7, 0xc6);
    expect(r.inb(P.base + 7)).toBe(0x51);
    r.outb(P.base + 2, 0);
    r.outb(P.base + 7, 0xc6);
    expect(r.inb(P.base + 7)).toBe(0x50);
    lba28(r, 0xc5, 0, 1);
    expect(r.inb(P.base + 7)).toBe(0x51);
    expect(r.inb(P.base + 1)).toBe(0x04);
  });

  it('LBA48 on a 200 GiB disk: IDENTIFY sizes, HOB read-back, READ SECTORS EXT beyond 2^28', async () => {
    const size = 200 * 2 ** 30;
    const r = rig({ diskSize: size });
    const id = identify(r);
    expect(word(id, 60) | (word(id, 61) << 16)).toBe(0x0fffffff);
    const sectors = size / 512;
    expect(word(id, 100) + word(id, 101) * 0x10000 + word(id, 102) * 2 ** 32).toBe(sectors);
    const lba = 2 ** 28 + 12345;
    r.diskImage.hold();
    lba48(r, 0x24, lba, 2);
    r.diskImage.release();
    await r.settle();
    expect(r.inb(P.base + 7)).toBe(0x58);
    expect(readData(r, P.base, 1024)).toEqual(r.diskImage.bytes(lba * 512, 1024));
    expect(r.inb(P.base + 7)).toBe(0x50);
    // HOB: Device Control bit 7 reads the previous register contents; a register write clears it.
    r.outb(P.base + 3, 0x11);
    r.outb(P.base + 3, 0x22);
    r.outb(P.ctl, 0x80);
    expect(r.inb(P.base + 3)).toBe(0x11);
    r.outb(P.base + 4, 0);
    expect(r.inb(P.base + 3)).toBe(0x22);
    // Beyond the end of the disk: IDNF.
    lba48(r, 0x24, sectors - 1, 2);
    expect(r.inb(P.base + 7)).toBe(0x51);
    expect(r.inb(P.base + 1)).toBe(0x10);
    // LBA28 commands cannot reach there; count 0 means 256 sectors.
    lba28(r, 0x20, 0x0fffffff - 255, 0);
    await r.settle();
    expect(r.inb(P.base + 7)).toBe(0x58);
    expect(r.diskImage.calls.at(-1)).toBe(`read ${(0x0fffffff - 255) * 512}+${256 * 512}`);
  });

  it('CHS addressing in the default 16/63 geometry and after INITIALIZE DEVICE PARAMETERS', async () => {
    const r = rig();
    const chs = (cyl: number, head: number, sector: number) => {
      r.outb(P.base + 6, 0xa0 | head);
      r.outb(P.base + 2, 1);
      r.outb(P.base + 3, sector);
      r.outb(P.base + 4, cyl & 0xff);
      r.outb(P.base + 5, cyl >> 8);
      r.outb(P.base + 7, 0x20);
    };
    chs(2, 3, 4);
    await r.settle();
    expect(readData(r, P.base, 512)).toEqual(r.diskImage.bytes(((2 * 16 + 3) * 63 + 3) * 512, 512));
    r.outb(P.base + 6, 0xa0 | 7); // 8 heads
    r.outb(P.base + 2, 32); // 32 sectors per track
    r.outb(P.base + 7, 0x91);
    expect(r.inb(P.base + 7)).toBe(0x50);
    chs(1, 1, 1);
    await r.settle();
    expect(readData(r, P.base, 512)).toEqual(r.diskImage.bytes((1 * 8 + 1) * 32 * 512, 512));
    chs(0, 0, 0); // sector numbers start at 1
    expect(r.inb(P.base + 7)).toBe(0x51);
    expect(r.inb(P.base + 1)).toBe(0x10);
  });

  it('read-only image: writes abort at once, reads and FLUSH CACHE work', async () => {
    const r = rig({ diskReadOnly: true });
    for (const cmd of [0x30, 0x34, 0xc5, 0xca, 0x35]) {
      if (cmd === 0x34 || cmd === 0x35) lba48(r, cmd, 0, 1);
      else lba28(r, cmd, 0, 1);
      expect(r.inb(P.base + 7), `command ${cmd.toString(16)}`).toBe(0x51);
      expect(r.inb(P.base + 1)).toBe(0x04);
    }
    r.outb(P.base + 7, 0xe7);
    expect(r.inb(P.base + 7)).toBe(0x50);
    lba28(r, 0x20, 1, 1);
    await r.settle();
    expect(r.inb(P.base + 7)).toBe(0x58);
    expect(r.diskImage.calls).toEqual(['read 512+512']);
  });

  it('no-op and simple commands; unknown commands abort (and are logged)', async () => {
    const r = rig();
    for (const cmd of [0xe0, 0xe1, 0xe2, 0xe3, 0xe6, 0x10, 0x70, 0x94, 0x95]) {
      r.outb(P.base + 7, cmd);
      expect(r.inb(P.base + 7), cmd.toString(16)).toBe(0x50);
    }
    r.outb(P.base + 7, 0xe5);
    expect(r.inb(P.base + 2)).toBe(0xff);
    lba28(r, 0x40, 10, 10); // READ VERIFY
    expect(r.inb(P.base + 7)).toBe(0x50);
    r.outb(P.base + 7, 0xea); // FLUSH CACHE EXT
    expect(r.inb(P.ctl) & 0x80).toBe(0x80);
    await r.settle();
    expect(r.inb(P.base + 7)).toBe(0x50);
    expect(r.diskImage.calls).toEqual(['flush']);
    for (const cmd of [0x00, 0x08, 0xa0, 0xb0, 0xf8, 0x5c]) {
      r.outb(P.base + 7, cmd);
      expect(r.inb(P.base + 7), cmd.toString(16)).toBe(0x51);
      expect(r.inb(P.base + 1)).toBe(0x04);
    }
    expect(r.log.lines.some((l) => l.includes('unsupported ATA command 0xb0'))).toBe(true);
    // SET FEATURES: write cache off shows in IDENTIFY word 85; unknown subcommands abort.
    r.outb(P.base + 1, 0x82);
    r.outb(P.base + 7, 0xef);
    expect(r.inb(P.base + 7)).toBe(0x50);
    expect(word(identify(r), 85) & 0x20).toBe(0);
    r.outb(P.base + 1, 0x42);
    r.outb(P.base + 7, 0xef);
    expect(r.inb(P.base + 7)).toBe(0x51);
  });

  it('an image error ends a read with UNC and a write with ABRT, with an interrupt', async () => {
    const r = rig();
    r.diskImage.failNext = new BlockError('EIO from the host', 'EIO');
    lba28(r, 0x20, 0, 1);
    await r.settle();
    expect(r.level(14)).toBe(true);
    expect(r.inb(P.base + 7)).toBe(0x51);
    expect(r.inb(P.base + 1)).toBe(0x40);
    lba28(r, 0x30, 0, 1);
    r.diskImage.failNext = new BlockError('no space', 'ENOSPC');
    writeData(r, P.base, new Uint8Array(512));
    await r.settle();
    expect(r.inb(P.base + 7)).toBe(0x51);
    expect(r.inb(P.base + 1)).toBe(0x04);
    expect(r.log.lines.some((l) => l.includes('image I/O failed: no space'))).toBe(true);
  });

  it('a soft reset in the middle of a read drops the completion', async () => {
    const r = rig();
    r.diskImage.hold();
    lba28(r, 0x20, 0, 1);
    r.outb(P.ctl, 0x04);
    r.outb(P.ctl, 0x00);
    r.diskImage.release();
    await r.settle();
    expect(r.inb(P.base + 7)).toBe(0x50);
    expect(r.level(14)).toBe(false);
    expect(r.inb(P.base + 2)).toBe(1); // the signature, not the command's registers
  });

  it('nIEN keeps the interrupt off the pin; clearing it lets a pending one through', async () => {
    const r = rig();
    r.outb(P.ctl, 0x02);
    lba28(r, 0x20, 0, 1);
    await r.settle();
    expect(r.level(14)).toBe(false);
    expect(r.ide.busMasters[0].status & 0x04).toBe(0);
    r.outb(P.ctl, 0x00);
    expect(r.level(14)).toBe(true);
    readData(r, P.base, 512);
    expect(r.inb(P.base + 7)).toBe(0x50);
    expect(r.level(14)).toBe(false);
  });

  it('a slave disk answers as device 1 and reports it in word 93', () => {
    const r = rig({ slaveDisk: true });
    r.outb(P.base + 6, 0xb0);
    expect(r.inb(P.base + 7)).toBe(0x50);
    const id = identify(r);
    expect(word(id, 93) & 0x0100).toBe(0x0100);
    expect(word(id, 60)).toBe(2048);
  });
});
