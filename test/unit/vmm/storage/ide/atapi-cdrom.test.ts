import { describe, expect, it } from 'vitest';
import { BlockError } from '../../../../../src/block/image.js';
import { AtapiCdrom } from '../../../../../src/vmm/storage/ide/atapi-cdrom.js';
import { BM_BASE, MemImage, S, ataString, readData, rig, word, writePrd, type Rig } from './helpers.js';

interface PacketResult {
  status: number;
  error: number;
  /** Interrupt reason at the end: 3 (I/O and C/D) after a command. */
  reason: number;
  data: Uint8Array;
  /** Byte counts of the DRQ blocks. */
  blocks: number[];
}

/** The ATAPI PIO (or DMA) protocol as Linux's libata drives it, with interrupts on. */
async function packet(
  r: Rig,
  cdb: number[],
  o: { limit?: number; dma?: boolean; noWait?: boolean } = {},
): Promise<PacketResult> {
  const limit = o.limit ?? 0xfffe;
  r.outb(S.base + 6, 0xa0);
  r.outb(S.base + 1, o.dma ? 1 : 0);
  r.outb(S.base + 4, limit & 0xff);
  r.outb(S.base + 5, limit >> 8);
  r.outb(S.base + 7, 0xa0);
  expect(r.inb(S.ctl) & 0x89).toBe(0x08);
  expect(r.inb(S.base + 2) & 3).toBe(1); // C/D = 1, I/O = 0: send the command
  expect(r.level(15)).toBe(false); // no interrupt before the CDB (DRQ type 10b)
  const c = new Uint8Array(12);
  c.set(cdb);
  for (let i = 0; i < 12; i += 2) r.outw(S.base, c[i]! | (c[i + 1]! << 8));
  const chunks: Uint8Array[] = [];
  const blocks: number[] = [];
  let status: number;
  for (;;) {
    await r.settle();
    status = r.inb(S.base + 7);
    if (!(status & 0x08) || o.noWait) break;
    expect(r.inb(S.base + 2) & 3).toBe(2); // data to the host
    const n = r.inb(S.base + 4) | (r.inb(S.base + 5) << 8);
    blocks.push(n);
    chunks.push(readData(r, S.base, n));
  }
  const data = new Uint8Array(chunks.reduce((a, b) => a + b.length, 0));
  let at = 0;
  for (const ch of chunks) {
    data.set(ch, at);
    at += ch.length;
  }
  return { status, error: r.inb(S.base + 1), reason: r.inb(S.base + 2) & 3, data, blocks };
}

async function sense(r: Rig): Promise<[number, number, number]> {
  const s = await packet(r, [0x03, 0, 0, 0, 18]);
  expect(s.status).toBe(0x50);
  return [s.data[2]! & 0x0f, s.data[12]!, s.data[13]!];
}

const be32 = (d: Uint8Array, o: number) =>
  ((d[o]! << 24) | (d[o + 1]! << 16) | (d[o + 2]! << 8) | d[o + 3]!) >>> 0;
const be16 = (d: Uint8Array, o: number) => (d[o]! << 8) | d[o + 1]!;

describe('ATAPI CD-ROM: probing', () => {
  it('packet signature after reset with DRDY clear; IDENTIFY DEVICE aborts; IDENTIFY PACKET DEVICE', () => {
    const r = rig();
    r.outb(S.ctl, 0x0e);
    r.outb(S.ctl, 0x0a);
    expect(r.inb(S.base + 7)).toBe(0x00);
    expect([1, 2, 3, 4, 5].map((o) => r.inb(S.base + o))).toEqual([0x01, 0x01, 0x01, 0x14, 0xeb]);
    r.outb(S.base + 4, 0);
    r.outb(S.base + 7, 0xec);
    expect(r.inb(S.base + 7) & 0x01).toBe(0x01);
    expect(r.inb(S.base + 1)).toBe(0x04);
    expect([r.inb(S.base + 4), r.inb(S.base + 5)]).toEqual([0x14, 0xeb]);
    r.outb(S.base + 7, 0xa1);
    expect(r.inb(S.base + 7) & 0x08).toBe(0x08);
    const id = readData(r, S.base, 512);
    expect(word(id, 0)).toBe(0x85c0);
    expect(ataString(id, 27, 20)).toBe('MVISOR DVD-ROM');
    expect(word(id, 49) & 0x0300).toBe(0x0300);
    expect(id.reduce((a, b) => a + b, 0) & 0xff).toBe(0);
    // DEVICE RESET is accepted even in the middle of a data phase, and does not interrupt.
    r.outb(S.base + 7, 0xa1);
    r.inb(S.base + 7);
    r.outb(S.base + 7, 0x08);
    expect(r.inb(S.base + 7)).toBe(0x00);
    expect(r.level(15)).toBe(false);
    expect(r.inb(S.base + 5)).toBe(0xeb);
  });
});

describe('ATAPI CD-ROM: commands', () => {
  it('INQUIRY, TEST UNIT READY, READ CAPACITY', async () => {
    const r = rig();
    const inq = await packet(r, [0x12, 0, 0, 0, 36]);
    expect(inq.status).toBe(0x50);
    expect(inq.reason).toBe(3);
    expect(inq.data.length).toBe(36);
    expect([inq.data[0], inq.data[1]]).toEqual([0x05, 0x80]);
    expect(new TextDecoder().decode(inq.data.subarray(8, 32))).toBe('MVISOR  MVISOR DVD-ROM  ');
    expect((await packet(r, [0x12, 0, 0, 0, 5])).data.length).toBe(5);
    const vpd = await packet(r, [0x12, 1, 0x80, 0, 64]);
    expect(new TextDecoder().decode(vpd.data.subarray(4))).toMatch(/^MV[0-9A-F]{8}$/);
    const tur = await packet(r, [0x00]);
    expect([tur.status, tur.reason, tur.data.length]).toEqual([0x50, 3, 0]);
    const cap = await packet(r, [0x25]);
    expect([be32(cap.data, 0), be32(cap.data, 4)]).toEqual([999, 2048]);
  });

  it('READ(10) in DRQ blocks of the byte count limit (odd limits made even); READ(12)', async () => {
    const r = rig();
    const rd = await packet(r, [0x28, 0, 0, 0, 0, 10, 0, 0, 2], { limit: 2048 });
    expect(rd.blocks).toEqual([2048, 2048]);
    expect(rd.data).toEqual(r.cdImage.bytes(10 * 2048, 4096));
    expect(rd.status).toBe(0x50);
    expect(rd.reason).toBe(3);
    const odd = await packet(r, [0x28, 0, 0, 0, 0, 1, 0, 0, 1], { limit: 1001 });
    expect(odd.blocks).toEqual([1000, 1000, 48]);
    expect(odd.data).toEqual(r.cdImage.bytes(2048, 2048));
    const r12 = await packet(r, [0xa8, 0, 0, 0, 3, 0xe7, 0, 0, 0, 1]);
    expect(r12.data).toEqual(r.cdImage.bytes(999 * 2048, 2048));
    const none = await packet(r, [0x28, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect([none.status, none.data.length]).toEqual([0x50, 0]);
    // READ CD of user data only reads the same bytes.
    const cd = await packet(r, [0xbe, 0, 0, 0, 0, 4, 0, 0, 1, 0x10]);
    expect(cd.data).toEqual(r.cdImage.bytes(4 * 2048, 2048));
  });

  it('LBA out of range: CHECK CONDITION, ILLEGAL REQUEST in the Error register, sense 21h; REQUEST SENSE clears it', async () => {
    const r = rig();
    const rd = await packet(r, [0x28, 0, 0, 0, 3, 0xe7, 0, 0, 2]);
    expect(rd.status).toBe(0x51);
    expect(rd.error).toBe(0x50);
    expect(rd.reason).toBe(3);
    expect(await sense(r)).toEqual([5, 0x21, 0]);
    expect(await sense(r)).toEqual([0, 0, 0]);
    const bad = await packet(r, [0xff]);
    expect(bad.status).toBe(0x51);
    expect(await sense(r)).toEqual([5, 0x20, 0]);
  });

  it('READ TOC: formats 0 (LBA and MSF), 1 and 2; a bad start track is an invalid field', async () => {
    const r = rig();
    const toc = await packet(r, [0x43, 0, 0, 0, 0, 0, 0, 0, 100]);
    expect(toc.data.length).toBe(20);
    expect([be16(toc.data, 0), toc.data[2], toc.data[3]]).toEqual([18, 1, 1]);
    expect([toc.data[5], toc.data[6], be32(toc.data, 8)]).toEqual([0x14, 1, 0]);
    expect([toc.data[14], be32(toc.data, 16)]).toEqual([0xaa, 1000]);
    const msf = await packet(r, [0x43, 2, 0, 0, 0, 0, 0, 0, 100]);
    expect(Array.from(msf.data.subarray(8, 12))).toEqual([0, 0, 2, 0]);
    expect(Array.from(msf.data.subarray(16, 20))).toEqual([0, 0, 15, 25]); // 1150 frames
    const leadOnly = await packet(r, [0x43, 0, 0, 0, 0, 0, 0xaa, 0, 100]);
    expect(leadOnly.data.length).toBe(12);
    const sess = await packet(r, [0x43, 0, 1, 0, 0, 0, 0, 0, 12]);
    expect([be16(sess.data, 0), sess.data[2], sess.data[3], sess.data[6], be32(sess.data, 8)]).toEqual([
      10, 1, 1, 1, 0,
    ]);
    const old = await packet(r, [0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0x40]); // SFF-8020 format field
    expect(be16(old.data, 0)).toBe(10);
    const raw = await packet(r, [0x43, 2, 2, 0, 0, 0, 0, 0, 200]);
    expect(raw.data.length).toBe(4 + 4 * 11);
    expect(raw.data[4 + 2 * 11 + 3]).toBe(0xa2);
    const bad = await packet(r, [0x43, 0, 0, 0, 0, 0, 5, 0, 100]);
    expect(bad.status).toBe(0x51);
    expect(await sense(r)).toEqual([5, 0x24, 0]);
    const short = await packet(r, [0x43, 0, 0, 0, 0, 0, 0, 0, 4]);
    expect(short.data.length).toBe(4);
  });

  it('MODE SENSE(10) pages 01h, 2Ah and 3Fh; saved values refused; GET CONFIGURATION; disc info; mechanism status', async () => {
    const r = rig();
    const cap = await packet(r, [0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 128]);
    expect(be16(cap.data, 0)).toBe(cap.data.length - 2);
    expect([cap.data[8], cap.data[9]]).toEqual([0x2a, 0x12]);
    expect(cap.data[8 + 2]! & 0x08).toBe(0x08); // DVD-ROM read
    expect(cap.data[8 + 6]! & 0x08).toBe(0x08); // eject supported
    expect(cap.data[8 + 4]! & 0x01).toBe(0x01); // audio play (Linux mounts on it)
    const rec = await packet(r, [0x5a, 0, 0x01, 0, 0, 0, 0, 0, 128]);
    expect([rec.data[8], rec.data[9], rec.data.length]).toEqual([0x01, 0x0a, 20]);
    const all = await packet(r, [0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 128]);
    expect(all.data.length).toBe(8 + 12 + 20);
    expect((await packet(r, [0x5a, 0, 0xc0 | 0x2a, 0, 0, 0, 0, 0, 128])).status).toBe(0x51);
    expect(await sense(r)).toEqual([5, 0x39, 0]);
    expect((await packet(r, [0x5a, 0, 0x05, 0, 0, 0, 0, 0, 128])).status).toBe(0x51);

    const conf = await packet(r, [0x46, 0, 0, 0, 0, 0, 0, 1, 0]);
    expect(be32(conf.data, 0)).toBe(conf.data.length - 4);
    expect(be16(conf.data, 6)).toBe(0x0008); // CD-ROM
    expect(be16(conf.data, 8)).toBe(0x0000); // profile list first
    const one = await packet(r, [0x46, 2, 0, 1, 0, 0, 0, 1, 0]);
    expect([one.data.length, be16(one.data, 8), be32(one.data, 12)]).toEqual([16, 0x0001, 2]); // core: ATAPI

    const di = await packet(r, [0x51, 0, 0, 0, 0, 0, 0, 0, 34]);
    expect([di.data.length, be16(di.data, 0), di.data[2]]).toEqual([34, 32, 0x0e]);
    const ms = await packet(r, [0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8]);
    expect(ms.data.length).toBe(8);
    expect((await packet(r, [0xbb, 0, 0xff, 0xff])).status).toBe(0x50);
  });

  it('a DVD-sized image reports the DVD-ROM profile', async () => {
    const r = rig({ cdSectors: 2_000_000 });
    const conf = await packet(r, [0x46, 1, 0, 0, 0, 0, 0, 0, 64]);
    expect(be16(conf.data, 6)).toBe(0x0010);
  });

  it('DMA: PACKET with Features bit 0 moves READ(10) data through the bus master', async () => {
    const r = rig();
    const bm = BM_BASE + 8;
    writePrd(r, 0x1000, [[0x4000, 2 * 2048]]);
    r.outl(bm + 4, 0x1000);
    r.outb(bm, 0x08);
    const p = packet(r, [0x28, 0, 0, 0, 0, 7, 0, 0, 2], { dma: true, noWait: true });
    await new Promise((res) => setImmediate(res));
    r.outb(bm, 0x09);
    const res = await p;
    await r.settle();
    expect(r.ram.subarray(0x4000, 0x5000)).toEqual(r.cdImage.bytes(7 * 2048, 4096));
    expect(r.inb(S.base + 7)).toBe(0x50);
    expect(r.inb(S.base + 2) & 3).toBe(3);
    expect(r.inb(bm + 2)).toBe(0x04);
    expect(res.blocks).toEqual([]);
  });

  it('an image read error is a MEDIUM ERROR', async () => {
    const r = rig();
    r.cdImage.failNext = new BlockError('bad sector', 'EIO');
    const rd = await packet(r, [0x28, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(rd.status).toBe(0x51);
    expect(rd.error).toBe(0x30);
    expect(await sense(r)).toEqual([3, 0x11, 0]);
  });
});

describe('ATAPI CD-ROM: media', () => {
  it('insert: UNIT ATTENTION for the next command, a new-media event; eject: NOT READY, a removal event', async () => {
    const r = rig();
    const cd = r.cd!;
    const other = new MemImage(500 * 2048, true);
    expect(cd.insert(other)).toBe(r.cdImage);
    // INQUIRY and GET EVENT STATUS NOTIFICATION run despite the unit attention.
    expect((await packet(r, [0x12, 0, 0, 0, 36])).status).toBe(0x50);
    const tur = await packet(r, [0x00]);
    expect([tur.status, tur.error]).toEqual([0x51, 0x60]);
    // The sense data of that CHECK CONDITION; the condition itself is gone.
    expect(await sense(r)).toEqual([6, 0x28, 0]);
    expect(await sense(r)).toEqual([0, 0, 0]);
    expect((await packet(r, [0x00])).status).toBe(0x50);
    const ev = await packet(r, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]);
    expect(Array.from(ev.data)).toEqual([0, 6, 0x04, 0x10, 2, 0x02, 0, 0]);
    const ev2 = await packet(r, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]);
    expect(ev2.data[4]).toBe(0);
    expect(be32((await packet(r, [0x25])).data, 0)).toBe(499);

    // UNIT ATTENTION through REQUEST SENSE (SeaBIOS's scsi_is_ready does this).
    cd.insert(r.cdImage);
    expect(await sense(r)).toEqual([6, 0x28, 0]);
    expect((await packet(r, [0x00])).status).toBe(0x50);

    expect(cd.eject()).toBe(r.cdImage);
    const nr = await packet(r, [0x00]);
    expect([nr.status, nr.error]).toEqual([0x51, 0x20]); // SeaBIOS skips "not ready" quietly on 20h
    expect(await sense(r)).toEqual([2, 0x3a, 0x02]); // tray open
    const ev3 = await packet(r, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]);
    expect([ev3.data[4], ev3.data[5]]).toEqual([3, 0x01]);
    expect((await packet(r, [0x28, 0, 0, 0, 0, 0, 0, 0, 1])).status).toBe(0x51);
    expect((await packet(r, [0x12, 0, 0, 0, 36])).status).toBe(0x50);
    // No class the drive knows: "no event available".
    const none = await packet(r, [0x4a, 1, 0, 0, 0x02, 0, 0, 0, 8]);
    expect(Array.from(none.data)).toEqual([0, 2, 0x80, 0x10]);
    expect((await packet(r, [0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8])).status).toBe(0x51); // asynchronous: refused
  });

  it('a locked tray: host eject only asks (eject-request event), the guest cannot open it; unlock, open, close', async () => {
    const trays: boolean[] = [];
    const r = rig({ noCd: true });
    const cd = new AtapiCdrom({ name: 'cd1', image: r.cdImage, onTrayChange: (open) => trays.push(open) });
    r.ide.attachDrive(1, 0, cd);
    expect((await packet(r, [0x1e, 0, 0, 0, 1])).status).toBe(0x50);
    expect(cd.isLocked).toBe(true);
    expect(cd.eject()).toBe('locked');
    const ev = await packet(r, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]);
    expect(ev.data[4]).toBe(1);
    const open = await packet(r, [0x1b, 0, 0, 0, 0x02]);
    expect(open.status).toBe(0x51);
    expect(await sense(r)).toEqual([5, 0x53, 0x02]);
    expect((await packet(r, [0x1e, 0, 0, 0, 0])).status).toBe(0x50);
    expect((await packet(r, [0x1b, 0, 0, 0, 0x02])).status).toBe(0x50);
    expect(cd.isTrayOpen).toBe(true);
    const ms = await packet(r, [0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8]);
    expect(ms.data[1]).toBe(0x10);
    expect((await packet(r, [0x1b, 0, 0, 0, 0x03])).status).toBe(0x50);
    expect(trays).toEqual([true, false]);
    expect((await packet(r, [0x00])).error).toBe(0x60); // the disc is back: unit attention
    expect((await packet(r, [0x00])).status).toBe(0x50);
    // A forced eject of a locked drive.
    await packet(r, [0x1e, 0, 0, 0, 1]);
    expect(cd.eject(true)).toBe(r.cdImage);
    expect(cd.isLocked).toBe(false);
  });

  it('an eject while a read is in flight ends the command NOT READY, without the old data', async () => {
    const r = rig();
    r.cdImage.hold();
    r.outb(S.base + 4, 0x00);
    r.outb(S.base + 5, 0x08);
    r.outb(S.base + 7, 0xa0);
    const c = [0x28, 0, 0, 0, 0, 3, 0, 0, 1, 0, 0, 0];
    for (let i = 0; i < 12; i += 2) r.outw(S.base, c[i]! | (c[i + 1]! << 8));
    expect(r.inb(S.ctl) & 0x80).toBe(0x80);
    r.cd!.eject();
    expect(r.level(15)).toBe(true);
    expect(r.inb(S.base + 7)).toBe(0x51);
    expect(r.inb(S.base + 1)).toBe(0x20);
    r.cdImage.release();
    await r.settle();
    expect(r.inb(S.base + 7)).toBe(0x51);
    expect(await sense(r)).toEqual([2, 0x3a, 0x02]);
  });

  it('an empty drive: NOT READY, MEDIUM NOT PRESENT (tray closed); INQUIRY works; GET CONFIGURATION has no profile', async () => {
    const r = rig({ noCd: true });
    r.ide.attachDrive(1, 0, new AtapiCdrom({ name: 'cd-empty' }));
    expect((await packet(r, [0x00])).error).toBe(0x20);
    expect(await sense(r)).toEqual([2, 0x3a, 0x01]);
    expect((await packet(r, [0x12, 0, 0, 0, 36])).status).toBe(0x50);
    expect(be16((await packet(r, [0x46, 0, 0, 0, 0, 0, 0, 0, 64])).data, 6)).toBe(0);
  });

  it('state: a PIO data phase, the sense and a pending unit attention survive save and load', async () => {
    const r = rig();
    r.cd!.insert(r.cdImage);
    await packet(r, [0x00]); // reports the unit attention of the first insert
    r.cd!.insert(r.cdImage); // a second one, pending when saved
    const saved0 = JSON.parse(JSON.stringify(r.ide.saveState()));
    const r0 = rig();
    r0.ide.loadState(saved0);
    expect((await packet(r0, [0x00])).error).toBe(0x60);

    // In the middle of a READ(10) data phase.
    r.outb(S.base + 6, 0xa0);
    r.outb(S.base + 1, 0);
    r.outb(S.base + 4, 0x00);
    r.outb(S.base + 5, 0x08);
    r.outb(S.base + 7, 0xa0);
    // The unit attention is reported first: read sense, then the real command.
    const c = [0x28, 0, 0, 0, 0, 3, 0, 0, 2, 0, 0, 0];
    for (let i = 0; i < 12; i += 2) r.outw(S.base, c[i]! | (c[i + 1]! << 8));
    expect(r.inb(S.base + 1)).toBe(0x60);
    r.outb(S.base + 7, 0xa0);
    for (let i = 0; i < 12; i += 2) r.outw(S.base, c[i]! | (c[i + 1]! << 8));
    await r.settle();
    const first = readData(r, S.base, 1000);
    const saved = JSON.parse(JSON.stringify(r.ide.saveState()));
    const r2 = rig();
    r2.ide.loadState(saved);
    const rest = readData(r2, S.base, 2048 - 1000);
    expect(r2.inb(S.base + 7)).toBe(0x58);
    expect([r2.inb(S.base + 4), r2.inb(S.base + 5)]).toEqual([0x00, 0x08]);
    const second = readData(r2, S.base, 2048);
    const all = new Uint8Array(4096);
    all.set(first);
    all.set(rest, 1000);
    all.set(second, 2048);
    expect(all).toEqual(r.cdImage.bytes(3 * 2048, 4096));
    expect(r2.inb(S.base + 7)).toBe(0x50);
  });
});
