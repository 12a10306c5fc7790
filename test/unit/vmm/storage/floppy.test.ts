import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import type { DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { GuestMemory } from '../../../../src/vmm/core/memory.js';
import { BlockError, type BlockImage } from '../../../../src/block/image.js';
import { I8257Dma } from '../../../../src/vmm/chipset/i8257-dma.js';
import {
  FDC_PORT_BASE,
  FDC_PORT_COUNT,
  FloppyController,
  cmosFloppyType,
  floppyFormat,
  type FloppyDriveOptions,
} from '../../../../src/vmm/storage/floppy.js';

const SECTOR = 512;
const SIZE_144 = 1474560;
const SIZE_720 = 737280;

/** An in-memory image whose I/O completes on a later turn of the event loop, like a file's. */
class FakeImage implements BlockImage {
  readonly format = 'raw' as const;
  readonly bytes: Uint8Array;
  writes = 0;
  failNext: BlockError | undefined;
  constructor(
    readonly size: number,
    readonly readOnly = false,
    readonly path = '/images/floppy.img',
  ) {
    this.bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) this.bytes[i] = (i * 7 + (i >> 9) * 3 + 1) & 0xff;
  }
  private later<T>(fn: () => T): Promise<T> {
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        const err = this.failNext;
        this.failNext = undefined;
        if (err) reject(err);
        else resolve(fn());
      }),
    );
  }
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.later(() => {
      const out = into ?? new Uint8Array(length);
      out.set(this.bytes.subarray(offset, offset + length));
      return out;
    });
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) return Promise.reject(new BlockError('read-only', 'EROFS'));
    const copy = Uint8Array.from(data);
    return this.later(() => {
      this.writes++;
      this.bytes.set(copy, offset);
    });
  }
  flush = () => Promise.resolve();
  discard = () => Promise.resolve();
  writeZeroes = () => Promise.resolve();
  close = () => Promise.resolve();
}

function setup(drives: FloppyDriveOptions[] = [{ image: new FakeImage(SIZE_144) }]) {
  const log = new MemoryLogger();
  const irqLog: boolean[] = [];
  let level = false;
  let edges = 0;
  const ctx: DeviceContext = {
    irq: {
      setIrq: (gsi, l) => {
        expect(gsi).toBe(6);
        if (l && !level) edges++;
        level = l;
        irqLog.push(l);
      },
    },
    log,
    guestErrors: new RateLimitedLog(log),
    requestReset: () => {},
    requestPowerOff: () => {},
  };
  const memory = new GuestMemory();
  const ram = new Uint8Array(1024 * 1024);
  memory.addRegion(0, ram);
  const dma = new I8257Dma(ctx, { memory });
  const fdc = new FloppyController(ctx, { dma, drives });

  const out = (port: number, v: number): void => {
    if (port >= FDC_PORT_BASE && port < FDC_PORT_BASE + FDC_PORT_COUNT)
      fdc.ports.write(port - FDC_PORT_BASE, 1, v);
    else if (port === 0x3f7) fdc.dirPort.write(0, 1, v);
    else if (port < 0x10) dma.dma1Ports.write(port, 1, v);
    else if (port >= 0x81 && port <= 0x8f) dma.pagePorts.write(port - 0x81, 1, v);
    else throw new Error(`no device at ${port.toString(16)}`);
  };
  const inb = (port: number): number => {
    if (port >= FDC_PORT_BASE && port < FDC_PORT_BASE + FDC_PORT_COUNT)
      return fdc.ports.read(port - FDC_PORT_BASE, 1);
    if (port === 0x3f7) return fdc.dirPort.read(0, 1);
    if (port < 0x10) return dma.dma1Ports.read(port, 1);
    if (port >= 0x81 && port <= 0x8f) return dma.pagePorts.read(port - 0x81, 1);
    throw new Error(`no device at ${port.toString(16)}`);
  };
  const msr = () => inb(0x3f4);

  /** Linux's output_byte: the FIFO must want a command byte (RQM, not DIO, not NDMA). */
  const command = (...bytes: number[]): void => {
    for (const b of bytes) {
      expect(msr() & 0xe0, `MSR before command byte 0x${b.toString(16)}`).toBe(0x80);
      out(0x3f5, b);
    }
  };
  /** Linux's result(): read while MSR is RQM|DIO|CB; stop when it is back to RQM. */
  const result = (): number[] => {
    const r: number[] = [];
    for (let i = 0; i < 16; i++) {
      const s = msr() & 0xf0;
      if ((s & ~0x10) === 0x80) return r;
      expect(s, `MSR in the result phase after ${r.length} bytes`).toBe(0xd0);
      r.push(inb(0x3f5));
    }
    throw new Error('result phase never ends');
  };
  /** SeaBIOS's dma_floppy: channel 2, single mode, increment, no auto-init. */
  const dmaSetup = (addr: number, bytes: number, write: boolean): void => {
    out(0x0a, 0x06);
    out(0x0c, 0);
    out(0x04, addr & 0xff);
    out(0x04, (addr >> 8) & 0xff);
    out(0x0c, 0);
    out(0x05, (bytes - 1) & 0xff);
    out(0x05, ((bytes - 1) >> 8) & 0xff);
    out(0x0b, write ? 0x4a : 0x46);
    out(0x81, addr >> 16);
    out(0x0a, 0x02);
  };
  return {
    fdc,
    dma,
    ram,
    log,
    out,
    inb,
    msr,
    command,
    result,
    dmaSetup,
    irqLog,
    edges: () => edges,
    level: () => level,
    image: drives[0]?.image as FakeImage | undefined,
  };
}

/** Byte equality without vitest's element-by-element diff of large arrays. */
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

const lba = (c: number, h: number, r: number, spt = 18) => (c * 2 + h) * spt + r - 1;

describe('FloppyController reset and interrupts', () => {
  it('starts out of reset with DMA/IRQ enabled and the controller ready for a command', () => {
    const t = setup();
    expect(t.inb(0x3f2)).toBe(0x0c);
    expect(t.msr()).toBe(0x80);
    expect(t.inb(0x3f7) & 0x80).toBe(0x80); // disk change latch set at power-on
    expect(t.fdc.cmosDriveTypes()).toBe(0x40);
  });

  it('follows SeaBIOS: DOR reset, wait for IRQ 6, one SENSE INTERRUPT STATUS', () => {
    const t = setup();
    t.out(0x3f2, t.inb(0x3f2) & ~0x04); // floppy_disable_controller
    expect(t.msr()).toBe(0); // held in reset
    expect(t.edges()).toBe(0);
    t.out(0x3f2, t.inb(0x3f2) | 0x04); // floppy_enable_controller
    expect(t.edges()).toBe(1);
    expect(t.level()).toBe(true);
    t.command(0x08);
    expect(t.result()).toEqual([0xc0, 0]);
    expect(t.level()).toBe(false);
    expect(t.msr()).toBe(0x80);
    // floppy_select_drive: motor A on, DMA and IRQ enabled.
    t.out(0x3f2, 0x1c);
    // RECALIBRATE, wait for the interrupt, SENSE INTERRUPT STATUS.
    t.command(0x07, 0x00);
    expect(t.edges()).toBe(2);
    t.command(0x08);
    expect(t.result()).toEqual([0x20, 0]);
  });

  it('follows Linux: DSR software reset, then up to four SENSEIs for the polling interrupt', () => {
    const t = setup();
    t.out(0x3f4, 0x80 | 0x00); // reset_fdc on an 82072A or later
    expect(t.edges()).toBe(1);
    expect(t.result()).toEqual([]); // floppy_interrupt: result() finds no result bytes
    const st0: number[] = [];
    for (let i = 0; i < 4; i++) {
      t.command(0x08);
      const r = t.result();
      expect(r).toHaveLength(2);
      st0.push(r[0]!);
    }
    expect(st0).toEqual([0xc0, 0xc1, 0xc2, 0xc3]);
    t.command(0x08);
    expect(t.result()).toEqual([0x80]); // nothing pending any more: "invalid"
  });

  it('answers the Linux get_fdc_version probe as an 82078', () => {
    const t = setup();
    t.command(0x0e); // DUMPREG
    expect(t.result()).toHaveLength(10);
    t.out(0x3f5, 0x13); // CONFIGURE: need_more_output must see RQM without DIO
    expect(t.msr() & 0xd0).toBe(0x90);
    t.command(0x00, 0x10 | 0x0a, 0x00);
    t.out(0x3f5, 0x12); // PERPENDICULAR MODE
    expect(t.msr() & 0xd0).toBe(0x90);
    t.command(0x00);
    t.command(0x14); // UNLOCK
    expect(t.result()).toEqual([0x00]);
    t.command(0x18); // PARTID
    expect(t.result()).toEqual([0x41]);
    t.command(0x10); // VERSION
    expect(t.result()).toEqual([0x90]);
    t.command(0x94); // LOCK
    expect(t.result()).toEqual([0x10]);
    t.command(0x0e);
    const dump = t.result();
    expect(dump[7]! & 0x80).toBe(0x80);
    expect(dump[8]).toBe(0x1a); // the CONFIGURE byte
  });

  it('answers an unknown command with ST0 = 0x80 and returns to the command phase', () => {
    const t = setup();
    for (const op of [0x00, 0x01, 0x1f, 0xff, 0x11, 0x0c]) {
      t.command(op);
      expect(t.result()).toEqual([0x80]);
      expect(t.msr()).toBe(0x80);
    }
  });

  it('holds the interrupt back while DOR DMAGATE is clear', () => {
    const t = setup();
    t.out(0x3f2, 0x04); // Linux's first DOR write: DMA gate off
    t.command(0x07, 0x00);
    expect(t.edges()).toBe(0);
    t.out(0x3f2, 0x0c);
    expect(t.edges()).toBe(1);
  });
});

describe('FloppyController seeks', () => {
  it('seeks and recalibrates, reporting PCN through SENSEI and T0 through SENSE DRIVE STATUS', () => {
    const t = setup();
    t.command(0x0f, 0x00, 10); // SEEK drive 0 to cylinder 10
    expect(t.msr() & 0x01).toBe(0x01); // drive 0 busy until SENSEI
    t.command(0x08);
    const r = t.result();
    expect(r).toEqual([0x20, 10]);
    expect(r[0]! & 0xf8).toBe(0x20); // what Linux's seek_interrupt checks
    t.command(0x04, 0x00);
    expect(t.result()).toEqual([0x28]); // RDY|TS, not track 0, writable
    t.command(0x07, 0x00);
    t.command(0x08);
    expect(t.result()).toEqual([0x20, 0]);
    t.command(0x04, 0x04);
    expect(t.result()).toEqual([0x3c]); // T0, head 1
    t.command(0xcf, 0x00, 5); // RELATIVE SEEK in by 5
    t.command(0x08);
    expect(t.result()).toEqual([0x20, 5]);
  });

  it('fails RECALIBRATE on a drive that is not there (equipment check)', () => {
    const t = setup();
    t.command(0x07, 0x01);
    t.command(0x08);
    expect(t.result()).toEqual([0x71, 0]);
  });

  it('clears the disk change line on a step with a disk in, and sets it on eject and insert', () => {
    const t = setup();
    t.out(0x3f2, 0x1c);
    expect(t.inb(0x3f7) & 0x80).toBe(0x80);
    t.command(0x07, 0x00); // already on track 0: no step, the latch stays
    t.command(0x08);
    t.result();
    expect(t.inb(0x3f7) & 0x80).toBe(0x80);
    t.command(0x0f, 0x00, 1);
    t.command(0x08);
    t.result();
    expect(t.inb(0x3f7) & 0x80).toBe(0);
    const image = t.fdc.eject(0);
    expect(image).toBe(t.image);
    expect(t.fdc.hasMedia(0)).toBe(false);
    expect(t.inb(0x3f7) & 0x80).toBe(0x80);
    t.command(0x0f, 0x00, 3); // no disk: stepping cannot clear it
    t.command(0x08);
    t.result();
    expect(t.inb(0x3f7) & 0x80).toBe(0x80);
    t.command(0x04, 0x00);
    expect(t.result()[0]! & 0x40).toBe(0x40); // no disk reads as write-protected
    t.fdc.insert(0, new FakeImage(SIZE_720));
    expect(t.inb(0x3f7) & 0x80).toBe(0x80);
    t.command(0x0f, 0x00, 4);
    t.command(0x08);
    t.result();
    expect(t.inb(0x3f7) & 0x80).toBe(0);
    expect(() => t.fdc.insert(0, new FakeImage(12345))).toThrow(/1474560/);
    expect(() => t.fdc.eject(1)).toThrow(/no floppy drive 1/);
  });
});

describe('FloppyController data transfers', () => {
  it('reads one sector by DMA as SeaBIOS does, with memory equal to the image bytes', async () => {
    const t = setup();
    const [c, h, r] = [1, 1, 5];
    t.out(0x3f2, 0x1c);
    t.out(0x3f7, 0x00); // 500 kb/s, as floppy_drive_readid sets it
    t.dmaSetup(0x7c00, SECTOR, false);
    t.command(0xe6, (h << 2) | 0, c, h, r, 2, r, 0x1b, 0xff);
    expect(t.msr() & 0x80).toBe(0); // busy while the image is read
    expect(t.msr() & 0x10).toBe(0x10);
    const edges = t.edges();
    await t.fdc.whenIdle();
    expect(t.edges()).toBe(edges + 1);
    const res = t.result();
    // MT, H=1, last sector = EOT: C+1, H complemented, R=1 (82077AA table 5-6). SE: the implied seek moved.
    expect(res).toEqual([0x24, 0, 0, c + 1, 0, 1, 2]);
    expect(t.level()).toBe(false);
    const at = lba(c, h, r) * SECTOR;
    expect(t.ram.subarray(0x7c00, 0x7c00 + SECTOR)).toEqual(t.image!.bytes.subarray(at, at + SECTOR));
    expect(t.inb(0x08) & 0x04).toBe(0x04); // DMA TC on channel 2
  });

  it('reads across the head boundary with MT until the DMA terminal count', async () => {
    const t = setup();
    t.command(0x0f, 0x00, 3);
    t.command(0x08);
    t.result();
    t.dmaSetup(0x10000, 4 * SECTOR, false);
    t.command(0xe6, 0x00, 3, 0, 17, 2, 18, 0x1b, 0xff);
    await t.fdc.whenIdle();
    expect(t.result()).toEqual([0x04, 0, 0, 3, 1, 3, 2]); // ended on head 1; next: cylinder 3, head 1, sector 3
    const at = lba(3, 0, 17) * SECTOR;
    expect(t.ram.subarray(0x10000, 0x10000 + 4 * SECTOR)).toEqual(
      t.image!.bytes.subarray(at, at + 4 * SECTOR),
    );
  });

  it('ends with ST1 EN and the last sector when it runs past EOT without terminal count', async () => {
    const t = setup();
    t.dmaSetup(0x2000, 8 * SECTOR, false);
    t.command(0x46, 0x00, 0, 0, 17, 2, 18, 0x1b, 0xff); // no MT: sectors 17 and 18
    await t.fdc.whenIdle();
    expect(t.result()).toEqual([0x40, 0x80, 0, 0, 0, 18, 2]);
    const at = lba(0, 0, 17) * SECTOR;
    expect(t.ram.subarray(0x2000, 0x2000 + 2 * SECTOR)).toEqual(t.image!.bytes.subarray(at, at + 2 * SECTOR));
  });

  it('reports a sector that does not exist (ND) and a wrong data rate (MA)', async () => {
    const t = setup();
    t.dmaSetup(0x2000, SECTOR, false);
    t.command(0xe6, 0x00, 0, 0, 19, 2, 19, 0x1b, 0xff);
    await t.fdc.whenIdle();
    expect(t.result()).toEqual([0x40, 0x04, 0, 0, 0, 19, 2]);
    t.out(0x3f7, 0x02); // 250 kb/s: a 720K rate on a 1.44M disk
    t.command(0x4a, 0x00); // READ ID
    expect(t.result()).toEqual([0x40, 0x01, 0, 0, 0, 1, 2]);
    t.out(0x3f7, 0x00);
    t.command(0x4a, 0x00);
    const id = t.result();
    expect(id.slice(0, 3)).toEqual([0, 0, 0]);
    expect(id[6]).toBe(2);
  });

  it('writes sectors by DMA into the image', async () => {
    const t = setup();
    const data = Uint8Array.from({ length: 2 * SECTOR }, (_, i) => (i * 31) & 0xff);
    t.ram.set(data, 0x30000);
    const before = Uint8Array.from(t.image!.bytes);
    t.dmaSetup(0x30000, 2 * SECTOR, true);
    t.command(0xc5, 0x04, 2, 1, 7, 2, 8, 0x1b, 0xff);
    await t.fdc.whenIdle();
    expect(t.result()).toEqual([0x24, 0, 0, 3, 0, 1, 2]);
    const at = lba(2, 1, 7) * SECTOR;
    expect(t.image!.bytes.subarray(at, at + 2 * SECTOR)).toEqual(data);
    expect(same(t.image!.bytes.subarray(0, at), before.subarray(0, at))).toBe(true);
    expect(same(t.image!.bytes.subarray(at + 2 * SECTOR), before.subarray(at + 2 * SECTOR))).toBe(true);
  });

  it('completes a sector cut short by terminal count with zeroes', async () => {
    const t = setup();
    t.ram.fill(0xee, 0x30000, 0x30000 + 100);
    t.dmaSetup(0x30000, 100, true);
    t.command(0xc5, 0x00, 0, 0, 1, 2, 18, 0x1b, 0xff);
    await t.fdc.whenIdle();
    expect(t.result()).toEqual([0, 0, 0, 0, 0, 2, 2]);
    expect(t.image!.bytes.subarray(0, 100).every((b) => b === 0xee)).toBe(true);
    expect(t.image!.bytes.subarray(100, SECTOR).every((b) => b === 0)).toBe(true);
  });

  it('refuses to write a write-protected disk (ST1 NW, as SeaBIOS checks)', async () => {
    const image = new FakeImage(SIZE_144, true);
    const t = setup([{ image }]);
    const before = Uint8Array.from(image.bytes);
    t.dmaSetup(0x30000, SECTOR, true);
    const edges = t.edges();
    t.command(0xc5, 0x00, 0, 0, 1, 2, 1, 0x1b, 0xff);
    expect(t.edges()).toBe(edges + 1);
    const r = t.result();
    expect(r[0]! & 0xc0).toBe(0x40);
    expect(r[1]! & 0x02).toBe(0x02);
    await t.fdc.whenIdle();
    expect(same(image.bytes, before)).toBe(true);
    expect(image.writes).toBe(0);
    const forced = setup([{ image: new FakeImage(SIZE_144), readOnly: true }]);
    forced.command(0x04, 0x00);
    expect(forced.result()[0]! & 0x40).toBe(0x40);
  });

  it('reports an image I/O error as a data error', async () => {
    const t = setup();
    t.dmaSetup(0x2000, SECTOR, false);
    t.image!.failNext = new BlockError('disk on fire', 'EIO');
    t.command(0xe6, 0x00, 0, 0, 1, 2, 1, 0x1b, 0xff);
    await t.fdc.whenIdle();
    expect(t.result().slice(0, 3)).toEqual([0x40, 0x20, 0x20]);
    expect(t.log.lines.join('\n')).toMatch(/disk on fire/);
  });

  it('fails a read on an empty drive with "missing address mark"', async () => {
    const t = setup([{}]);
    t.command(0xe6, 0x00, 0, 0, 1, 2, 1, 0x1b, 0xff);
    expect(t.result().slice(0, 2)).toEqual([0x40, 0x01]);
    await t.fdc.whenIdle();
  });

  it('transfers through the FIFO in non-DMA mode as Linux pseudo-DMA does', async () => {
    const t = setup();
    t.command(0x03, 0xcf, 0x03); // SPECIFY with ND
    const edges = t.edges();
    t.command(0x46, 0x00, 0, 0, 3, 2, 4, 0x1b, 0xff); // no MT: sectors 3 and 4
    expect(t.msr()).toBe(0x30); // busy, non-DMA, no data yet
    await t.fdc.whenIdle();
    expect(t.edges()).toBe(edges + 1);
    // floppy_hardint: read while MSR has RQM and NDMA.
    const got: number[] = [];
    while ((t.msr() & 0xa0) === 0xa0) {
      expect(t.msr() & 0x40).toBe(0x40);
      got.push(t.inb(0x3f5));
    }
    expect(got).toHaveLength(2 * SECTOR);
    const at = lba(0, 0, 3) * SECTOR;
    expect(Uint8Array.from(got)).toEqual(t.image!.bytes.subarray(at, at + 2 * SECTOR));
    // No TC in non-DMA mode: the end of the track is an "end of cylinder" that Linux accepts.
    expect(t.result()).toEqual([0x40, 0x80, 0, 0, 0, 4, 2]);

    const data = Uint8Array.from({ length: SECTOR }, (_, i) => 255 - (i & 0xff));
    t.command(0x45, 0x00, 0, 0, 9, 2, 9, 0x1b, 0xff);
    expect(t.msr()).toBe(0xb0); // RQM|NDMA|CB: the FIFO wants data
    expect(t.level()).toBe(true);
    for (const b of data) {
      expect(t.msr() & 0xe0).toBe(0xa0);
      t.out(0x3f5, b);
    }
    expect(t.msr()).toBe(0x30); // writing the image
    expect(t.level()).toBe(false); // so that the result is a new edge
    const e2 = t.edges();
    await t.fdc.whenIdle();
    expect(t.edges()).toBe(e2 + 1);
    expect(t.result()).toEqual([0x40, 0x80, 0, 0, 0, 9, 2]);
    const w = lba(0, 0, 9) * SECTOR;
    expect(t.image!.bytes.subarray(w, w + SECTOR)).toEqual(data);
  });

  it('formats a track by DMA with the fill byte', async () => {
    const t = setup();
    t.command(0x0f, 0x00, 5);
    t.command(0x08);
    t.result();
    const ids = new Uint8Array(18 * 4);
    for (let r = 1; r <= 18; r++) ids.set([5, 1, r, 2], (r - 1) * 4);
    t.ram.set(ids, 0x40000);
    t.dmaSetup(0x40000, ids.length, true);
    t.command(0x4d, 0x04, 2, 18, 0x6c, 0xf6);
    await t.fdc.whenIdle();
    expect(t.result()).toEqual([0x04, 0, 0, 5, 1, 18, 2]);
    const at = lba(5, 1, 1) * SECTOR;
    expect(t.image!.bytes.subarray(at, at + 18 * SECTOR).every((b) => b === 0xf6)).toBe(true);
    expect(t.image!.bytes[at - 1]).not.toBe(0xf6);
  });

  it('knows the image formats and their CMOS drive types', () => {
    expect(cmosFloppyType(SIZE_144)).toBe(4);
    expect(cmosFloppyType(SIZE_720)).toBe(3);
    expect(cmosFloppyType(1228800)).toBe(2);
    expect(cmosFloppyType(2949120)).toBe(5);
    expect(cmosFloppyType(368640)).toBe(1);
    expect(floppyFormat(1720320)?.sectors).toBe(21);
    expect(() => cmosFloppyType(1000000)).toThrow(/1474560/);
    const t = setup([{ image: new FakeImage(SIZE_144) }, { image: new FakeImage(SIZE_720) }]);
    expect(t.fdc.cmosDriveTypes()).toBe(0x43);
    expect(t.fdc.driveCount).toBe(2);
    expect(t.inb(0x3f0) & 0x40).toBe(0); // SRA: second drive installed
    expect(setup([{}]).fdc.cmosDriveTypes()).toBe(0x40);
    expect(() => setup([{ image: new FakeImage(4096) }])).toThrow(/4096 bytes/);
  });

  it('reads a 720K disk in drive B: at 250 kb/s', async () => {
    const b = new FakeImage(SIZE_720);
    const t = setup([{ image: new FakeImage(SIZE_144) }, { image: b }]);
    t.out(0x3f7, 0x02);
    t.dmaSetup(0x8000, SECTOR, false);
    t.command(0xe6, 0x05, 79, 1, 9, 2, 9, 0x1b, 0xff);
    await t.fdc.whenIdle();
    expect(t.result()).toEqual([0x25, 0, 0, 80, 0, 1, 2]);
    const at = lba(79, 1, 9, 9) * SECTOR;
    expect(t.ram.subarray(0x8000, 0x8000 + SECTOR)).toEqual(b.bytes.subarray(at, at + SECTOR));
  });
});

describe('FloppyController robustness and state', () => {
  it('survives garbage on every port', async () => {
    const t = setup([{ image: new FakeImage(SIZE_144) }, { image: new FakeImage(SIZE_720, true) }]);
    let seed = 42;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    const ports = [
      0x3f0, 0x3f1, 0x3f2, 0x3f3, 0x3f4, 0x3f5, 0x3f7, 0x00, 0x04, 0x05, 0x08, 0x0a, 0x0b, 0x0c, 0x81,
    ];
    for (let round = 0; round < 40; round++) {
      expect(() => {
        for (let i = 0; i < 300; i++) {
          const port = ports[rnd() % ports.length]!;
          // Bias towards the FIFO so that real commands happen.
          if (rnd() & 1) t.out(rnd() & 4 ? 0x3f5 : port, rnd());
          else t.inb(port);
        }
        t.fdc.ports.write(0, 4, 0xdeadbeef);
        t.fdc.ports.read(2, 4);
      }).not.toThrow();
      await t.fdc.whenIdle();
    }
    // Still a working controller afterwards.
    t.out(0x3f2, 0x08);
    t.out(0x3f2, 0x0c);
    t.command(0x08);
    expect(t.result()).toEqual([0xc0, 0]);
  });

  it('round-trips its state through JSON in the result phase', () => {
    const a = setup();
    a.command(0x0f, 0x00, 7);
    a.command(0x13, 0x00, 0x4a, 0x05);
    a.command(0x08);
    expect(a.inb(0x3f5)).toBe(0x20); // first result byte read, second pending
    const saved = JSON.parse(JSON.stringify(a.fdc.saveState()));
    const b = setup();
    b.fdc.loadState(saved);
    expect(b.fdc.saveState()).toEqual(a.fdc.saveState());
    expect(b.result()).toEqual([7]);
    b.command(0x0e);
    expect(b.result().slice(8)).toEqual([0x4a, 0x05]);
  });

  it('restarts image I/O that was in flight when the state was saved', async () => {
    const a = setup();
    a.dmaSetup(0x7c00, SECTOR, false);
    a.command(0xe6, 0x00, 0, 0, 1, 2, 1, 0x1b, 0xff);
    const fdcState = JSON.parse(JSON.stringify(a.fdc.saveState()));
    const dmaState = JSON.parse(JSON.stringify(a.dma.saveState()));
    await a.fdc.whenIdle();
    const b = setup();
    b.dma.loadState(dmaState);
    b.fdc.loadState(fdcState);
    expect(b.msr() & 0x80).toBe(0);
    await b.fdc.whenIdle();
    expect(b.result()).toEqual([0, 0, 0, 0, 1, 1, 2]); // MT, EOT on head 0: head 1, sector 1 next
    expect(b.ram.subarray(0x7c00, 0x7c00 + SECTOR)).toEqual(b.image!.bytes.subarray(0, SECTOR));
  });

  it('keeps a half-read non-DMA transfer across save and load', async () => {
    const a = setup();
    a.command(0x03, 0xcf, 0x03);
    a.command(0x46, 0x00, 0, 0, 1, 2, 1, 0x1b, 0xff);
    await a.fdc.whenIdle();
    for (let i = 0; i < 100; i++) a.inb(0x3f5);
    const saved = JSON.parse(JSON.stringify(a.fdc.saveState()));
    const b = setup();
    b.fdc.loadState(saved);
    const rest: number[] = [];
    while ((b.msr() & 0xa0) === 0xa0) rest.push(b.inb(0x3f5));
    expect(Uint8Array.from(rest)).toEqual(b.image!.bytes.subarray(100, SECTOR));
    expect(b.result()).toEqual([0x40, 0x80, 0, 0, 0, 1, 2]);
  });

  it('refuses malformed state', () => {
    const t = setup();
    const good = t.fdc.saveState();
    expect(() => t.fdc.loadState({ ...good, version: 9 })).toThrow(/version/);
    expect(() => t.fdc.loadState({ ...good, phase: 'dancing' })).toThrow(/malformed/);
    expect(() => t.fdc.loadState({ ...good, phase: 'execution' })).toThrow(/malformed/);
    expect(() => t.fdc.loadState({ ...good, drives: [] })).toThrow(/malformed/);
    expect(() => t.fdc.loadState({ ...good, result: [1, 2, 300] })).toThrow(/malformed/);
  });

  it('a hardware reset abandons a command and drops its late image data', async () => {
    const t = setup();
    t.dmaSetup(0x7c00, SECTOR, false);
    t.command(0xe6, 0x00, 0, 0, 1, 2, 1, 0x1b, 0xff);
    t.fdc.reset();
    await t.fdc.whenIdle();
    expect(t.msr()).toBe(0x80);
    expect(t.ram.subarray(0x7c00, 0x7c00 + SECTOR).every((b) => b === 0)).toBe(true);
    expect(t.level()).toBe(false);
  });
});
