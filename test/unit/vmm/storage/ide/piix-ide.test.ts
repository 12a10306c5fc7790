import { describe, expect, it } from 'vitest';
import { DeviceStateError } from '../../../../../src/vmm/core/device.js';
import { PCI_COMMAND } from '../../../../../src/vmm/pci/config-space.js';
import { ideCmosBytes } from '../../../../../src/vmm/storage/ide/cmos.js';
import { IDE_LEGACY, PIIX3_IDE_CLASS, ideBootPath } from '../../../../../src/vmm/storage/ide/piix-ide.js';
import { BM_BASE, P, S, readData, rig, writePrd, type Rig } from './helpers.js';

const BMIC = BM_BASE;
const BMIS = BM_BASE + 2;
const BMIDTP = BM_BASE + 4;

function lba28(r: Rig, cmd: number, lba: number, count: number): void {
  r.outb(P.base + 6, 0xe0 | ((lba >>> 24) & 0x0f));
  r.outb(P.base + 2, count & 0xff);
  r.outb(P.base + 3, lba & 0xff);
  r.outb(P.base + 4, (lba >>> 8) & 0xff);
  r.outb(P.base + 5, (lba >>> 16) & 0xff);
  r.outb(P.base + 7, cmd);
}

/** Linux's ata_bmdma_setup: PRD address, direction with Start clear. */
function bmSetup(r: Rig, prd: number, toMemory: boolean): void {
  r.outl(BMIDTP, prd);
  r.outb(BMIC, toMemory ? 0x08 : 0x00);
}

describe('PIIX3 IDE function', () => {
  it('is 8086:7010, class 01 01 80, no INTx pin, BAR4 16 bytes of I/O; IDETIM/SIDETIM writable', () => {
    const r = rig({ firmwareBoot: true });
    const ide = r.ide;
    expect(ide.readConfig(0, 4)).toBe(0x7010_8086);
    expect(ide.readConfig(8, 4) >>> 8).toBe(PIIX3_IDE_CLASS);
    expect(ide.readConfig(0x3d, 1)).toBe(0);
    expect(ide.readConfig(0x06, 2) & 0x0280).toBe(0x0280);
    expect(ide.bars.map((b) => [b.index, b.kind, b.size])).toEqual([[4, 'io', 16]]);
    ide.writeConfig(0x20, 4, 0xffffffff);
    expect(ide.readConfig(0x20, 4)).toBe(0xfffffff1);
    for (const o of [0x10, 0x14, 0x18, 0x1c]) {
      ide.writeConfig(o, 4, 0xffffffff);
      expect(ide.readConfig(o, 4)).toBe(0); // compatibility mode: no BARs 0-3
    }
    ide.writeConfig(0x40, 4, 0xa307e307);
    ide.writeConfig(0x44, 1, 0x33);
    expect([ide.readConfig(0x40, 4), ide.readConfig(0x44, 1)]).toEqual([0xa307e307, 0x33]);
    ide.reset();
    expect(ide.readConfig(0x40, 4)).toBe(0);
    expect(ide.legacyPorts.map((p) => [p.base, p.length])).toEqual([
      [0x1f0, 8],
      [0x3f6, 1],
      [0x170, 8],
      [0x376, 1],
    ]);
    expect(IDE_LEGACY.map((l) => l.irq)).toEqual([14, 15]);
  });

  it('names drives for the boot order and fills the CMOS disk bytes as QEMU does', () => {
    expect(ideBootPath(0, 0)).toBe('/pci@i0cf8/ide@1,1/drive@0/disk@0');
    expect(ideBootPath(1, 0)).toBe('/pci@i0cf8/ide@1,1/drive@1/disk@0');
    const b = new Map(ideCmosBytes([{ sectors: 2 * 1024 * 1024 }, undefined, undefined, { sectors: 1000 }]));
    expect(b.get(0x12)).toBe(0xf0);
    expect(b.get(0x19)).toBe(47);
    expect(b.get(0x1a)).toBe(0);
    expect([b.get(0x1b), b.get(0x1c), b.get(0x1d), b.get(0x23)]).toEqual([2080 & 0xff, 2080 >> 8, 16, 63]);
    expect(b.has(0x24)).toBe(false);
    expect(b.get(0x39)).toBe(0x01); // disk 0 LBA, disk 3 (small) none
  });
});

describe('bus-master DMA', () => {
  it('READ DMA scatters sectors through a two-entry PRD table, then interrupt, Active clear', async () => {
    const r = rig();
    writePrd(r, 0x1000, [
      [0x2000, 512],
      [0x3000, 1024],
    ]);
    bmSetup(r, 0x1000, true);
    lba28(r, 0xc8, 7, 3);
    r.outb(BMIC, 0x09);
    expect(r.inb(BMIS) & 0x01).toBe(0x01);
    await r.settle();
    expect(r.ram.subarray(0x2000, 0x2200)).toEqual(r.diskImage.bytes(7 * 512, 512));
    expect(r.ram.subarray(0x3000, 0x3400)).toEqual(r.diskImage.bytes(8 * 512, 1024));
    // ata_bmdma interrupt path: BMIS has Interrupt, Active is clear (the table matched exactly).
    expect(r.inb(BMIS)).toBe(0x04);
    expect(r.level(14)).toBe(true);
    r.outb(BMIC, 0x08); // stop
    expect(r.inb(P.base + 7)).toBe(0x50);
    r.outb(BMIS, 0x06); // write 1 to clear
    expect(r.inb(BMIS)).toBe(0x00);
  });

  it('WRITE DMA EXT gathers from memory (bus master started before the command) and writes the image', async () => {
    const r = rig();
    const data = Uint8Array.from({ length: 2048 }, (_, i) => (i * 13 + 5) & 0xff);
    r.ram.set(data.subarray(0, 1536), 0x8000);
    r.ram.set(data.subarray(1536), 0x9000);
    writePrd(r, 0x7000, [
      [0x8000, 1536],
      [0x9000, 512],
    ]);
    bmSetup(r, 0x7000, false);
    r.outb(BMIC, 0x01);
    r.outb(P.base + 6, 0x40);
    r.outb(P.base + 2, 0); // high-order bytes first

    r.outb(P.base + 3, 0);
    r.outb(P.base + 4, 0);
    r.outb(P.base + 5, 0);
    r.outb(P.base + 2, 4);
    r.outb(P.base + 3, 50);
    r.outb(P.base + 4, 0);
    r.outb(P.base + 5, 0);
    r.outb(P.base + 7, 0x35);
    await r.settle();
    expect(r.diskImage.bytes(50 * 512, 2048)).toEqual(data);
    expect(r.inb(BMIS)).toBe(0x04);
    expect(r.inb(P.base + 7)).toBe(0x50);
  });

  it('a PRD table larger than the transfer keeps Active set with the interrupt; a 0 byte count means 64 KiB', async () => {
    const r = rig();
    writePrd(r, 0x1000, [[0x10000, 0]]);
    bmSetup(r, 0x1000, true);
    r.outb(BMIC, 0x09);
    lba28(r, 0xc8, 0, 4);
    await r.settle();
    expect(r.ram.subarray(0x10000, 0x10800)).toEqual(r.diskImage.bytes(0, 2048));
    expect(r.inb(BMIS)).toBe(0x05);
    r.outb(BMIC, 0x00);
    expect(r.inb(BMIS) & 0x01).toBe(0);
  });

  it('a PRD table shorter than the transfer: Active cleared, no interrupt, the drive stops', async () => {
    const r = rig();
    writePrd(r, 0x1000, [[0x2000, 512]]);
    bmSetup(r, 0x1000, true);
    lba28(r, 0xc8, 0, 2);
    r.outb(BMIC, 0x09);
    await r.settle();
    expect(r.inb(BMIS)).toBe(0x00);
    expect(r.level(14)).toBe(false);
    expect(r.inb(P.base + 7)).toBe(0x50);
    expect(r.log.lines.some((l) => l.includes('PRD table shorter'))).toBe(true);
  });

  it('a PRD table or region outside RAM: Error and Interrupt bits, ERR on the drive, an interrupt, no throw', async () => {
    for (const [prd, region] of [
      [0xfff0_0000, 0x2000], // the table itself
      [0x1000, 0x0ff000], // a region that runs past the end of RAM
    ] as const) {
      const r = rig();
      writePrd(r, 0x1000, [[region, 0x2000]]);
      bmSetup(r, prd, true);
      lba28(r, 0xc8, 0, 16);
      r.outb(BMIC, 0x09);
      await r.settle();
      expect(r.inb(BMIS)).toBe(0x06);
      expect(r.level(14)).toBe(true);
      expect(r.inb(P.base + 7)).toBe(0x51);
      expect(r.inb(P.base + 1)).toBe(0x04);
      expect(r.log.lines.some((l) => l.includes('outside guest RAM'))).toBe(true);
    }
  });

  it('DMA with bus mastering disabled in the PCI Command register is an error', async () => {
    const r = rig();
    r.ide.writeConfig(PCI_COMMAND, 2, 0x0001);
    writePrd(r, 0x1000, [[0x2000, 512]]);
    bmSetup(r, 0x1000, true);
    lba28(r, 0xc8, 0, 1);
    r.outb(BMIC, 0x09);
    await r.settle();
    expect(r.inb(BMIS)).toBe(0x06);
    expect(r.ram.subarray(0x2000, 0x2200).every((b) => b === 0)).toBe(true);
  });

  it('Start/Stop without a command does nothing; a stop after completion leaves the drive alone', async () => {
    const r = rig();
    writePrd(r, 0x1000, [[0x2000, 512]]);
    bmSetup(r, 0x1000, true);
    r.outb(BMIC, 0x09);
    r.outb(BMIC, 0x08);
    expect(r.inb(BMIS)).toBe(0);
    expect(r.inb(P.base + 7)).toBe(0x50);
    lba28(r, 0xc8, 0, 1);
    r.outb(BMIC, 0x09);
    await r.settle();
    r.outb(BMIC, 0x08);
    expect(r.inb(BMIS)).toBe(0x04);
    expect(r.inb(P.base + 7)).toBe(0x50);
    expect(r.ram.subarray(0x2000, 0x2200)).toEqual(r.diskImage.bytes(0, 512));
  });

  it('BMIS: drive DMA-capable bits are read/write, Active is read-only, the simplex bit reads 0', () => {
    const r = rig();
    r.outb(BMIS, 0xff);
    expect(r.inb(BMIS)).toBe(0x60);
    r.outl(BMIDTP, 0x12345677);
    expect(r.inl(BMIDTP)).toBe(0x12345674);
    r.outw(BMIDTP + 2, 0xabcd);
    expect(r.inl(BMIDTP)).toBe(0xabcd5674);
    expect(r.inb(BM_BASE + 8 + 2)).toBe(0); // the secondary channel's BMIS is separate
    expect(r.inl(BM_BASE)).toBe(0x00600000);
  });
});

describe('robustness and state', () => {
  it('garbage written to every register of both channels, the control ports and the bus master never throws', async () => {
    const r = rig();
    let seed = 12345;
    const rand = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed;
    };
    writePrd(r, 0x1000, [[0x2000, 0x1000]]);
    const ports = [
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((o) => P.base + o),
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((o) => S.base + o),
      P.ctl,
      S.ctl,
      ...Array.from({ length: 16 }, (_, i) => BM_BASE + i),
    ];
    for (let i = 0; i < 20000; i++) {
      const port = ports[rand() % ports.length]!;
      const size = ([1, 2, 4] as const)[rand() % 3]!;
      if (rand() % 3 === 0) r.pio.read(port, size);
      else {
        let v = rand();
        // Keep the PRD table pointer mostly inside RAM so DMA sometimes runs.
        if (port >= BMIDTP && port < BM_BASE + 8 && rand() % 2) v = 0x1000;
        r.pio.write(port, size, v);
      }
      if (i % 1000 === 0) await r.settle();
    }
    for (let o = 0; o < 256; o++) r.ide.writeConfig(o, 1, rand());
    await r.settle();
    // Still a working disk after a reset.
    r.ide.reset();
    r.ide.writeConfig(PCI_COMMAND, 2, 0x0005);
    r.ide.writeConfig(0x40, 2, 0x8000);
    r.outb(P.ctl, 0);
    lba28(r, 0x20, 1, 1);
    await r.settle();
    expect(r.inb(P.base + 7)).toBe(0x58);
    expect(readData(r, P.base, 512)).toEqual(r.diskImage.bytes(512, 512));
  });

  it('saves and loads in the middle of a PIO read, and with a read in flight (issued again)', async () => {
    const r = rig();
    lba28(r, 0x20, 10, 2);
    await r.settle();
    const first = readData(r, P.base, 300);
    const saved = JSON.parse(JSON.stringify(r.ide.saveState()));
    const r2 = rig();
    r2.ide.loadState(saved);
    expect(r2.inb(P.base + 7)).toBe(0x58);
    const rest = readData(r2, P.base, 1024 - 300);
    const all = new Uint8Array(1024);
    all.set(first);
    all.set(rest, 300);
    expect(all).toEqual(r.diskImage.bytes(10 * 512, 1024));
    expect(r2.inb(P.base + 7)).toBe(0x50);

    const r3 = rig();
    r3.diskImage.hold();
    lba28(r3, 0x20, 20, 1);
    const busy = JSON.parse(JSON.stringify(r3.ide.saveState()));
    const r4 = rig();
    r4.ide.loadState(busy);
    expect(r4.inb(P.ctl) & 0x80).toBe(0x80);
    await r4.settle();
    expect(r4.diskImage.calls).toEqual([`read ${20 * 512}+512`]);
    expect(r4.level(14)).toBe(true);
    expect(r4.inb(P.base + 7)).toBe(0x58);
    expect(readData(r4, P.base, 512)).toEqual(r.diskImage.bytes(20 * 512, 512));
  });

  it('saves a pending PIO write with its data and the bus-master registers; refuses another version', async () => {
    const r = rig();
    r.outl(BMIDTP, 0x4000);
    r.outb(BMIS, 0x20);
    lba28(r, 0x30, 3, 1);
    r.diskImage.hold();
    const data = Uint8Array.from({ length: 512 }, (_, i) => 255 - (i & 0xff));
    for (let i = 0; i < 512; i += 2) r.outw(P.base, data[i]! | (data[i + 1]! << 8));
    const saved = JSON.parse(JSON.stringify(r.ide.saveState()));
    const r2 = rig();
    r2.ide.loadState(saved);
    await r2.settle();
    expect(r2.diskImage.bytes(3 * 512, 512)).toEqual(data);
    expect(r2.inb(P.base + 7)).toBe(0x50);
    expect(r2.inl(BMIDTP)).toBe(0x4000);
    expect(r2.inb(BMIS)).toBe(0x24); // DMA-capable bit kept; Interrupt from the completed write
    const bad = { ...saved, device: { ...saved.device, ide: 2 } };
    expect(() => rig().ide.loadState(bad)).toThrow(DeviceStateError);
  });

  it('a DMA phase saved while waiting for the engine continues after load', async () => {
    const r = rig();
    writePrd(r, 0x1000, [[0x2000, 1024]]);
    bmSetup(r, 0x1000, true);
    lba28(r, 0xc8, 30, 2);
    await r.settle();
    expect(r.inb(P.base + 7)).toBe(0x58); // DRQ: waiting for Start
    const saved = JSON.parse(JSON.stringify(r.ide.saveState()));
    const r2 = rig();
    r2.ram.set(r.ram);
    r2.ide.loadState(saved);
    r2.outb(BMIC, 0x09);
    await r2.settle();
    expect(r2.ram.subarray(0x2000, 0x2400)).toEqual(r.diskImage.bytes(30 * 512, 1024));
    expect(r2.inb(BMIS)).toBe(0x04);
  });
});
