/**
 * Round-trip entries for the PCI side of the PC (../state-roundtrip.test.ts):
 * the host bus, the i440FX and PIIX functions, PIIX IDE with a disk and a
 * CD-ROM, virtio-blk behind the virtio-pci transport (queues, MSI-X), and
 * the test and pvpanic functions. Each function sits on a host bus whose
 * BAR mapper records what is decoded where, so a loaded function must map
 * its BARs and drive its INTx as the saved one did.
 */
import { I440fxHost } from '../../../../src/vmm/chipset/i440fx-host.js';
import { Piix3 } from '../../../../src/vmm/chipset/piix3.js';
import { Piix4Pm } from '../../../../src/vmm/chipset/piix4-pm.js';
import type { AccessSize } from '../../../../src/vmm/core/device.js';
import { pciIntxGsi, piixPirq } from '../../../../src/vmm/firmware/acpi/tables.js';
import { PvpanicPci } from '../../../../src/vmm/misc/pvpanic-pci.js';
import type { IntxPin } from '../../../../src/vmm/pci/config-space.js';
import { PciHostBus } from '../../../../src/vmm/pci/host-bus.js';
import { PciTestdev } from '../../../../src/vmm/testdev/pci-testdev.js';
import {
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VirtioBlk,
} from '../../../../src/vmm/virtio/blk.js';
import { CommonCfg } from '../../../../src/vmm/virtio/pci-common-config.js';
import { ISR_CFG_OFFSET, VirtioPciTransport } from '../../../../src/vmm/virtio/pci-transport.js';
import { pamSetup } from '../chipset/helpers.js';
import { FakeMapper, RecordingSink, TestDevice, regs } from '../pci/helpers.js';
import { P, S, readData, rig as ideRig, type Rig as IdeRig } from '../storage/ide/helpers.js';
import { Driver, FakeImage } from '../virtio/helpers.js';
import { entry, hexOf, hostClock, hostClockNs, settle, testBoard, testRam, type Entry } from './harness.js';

type Route = (slot: number, pin: IntxPin) => number | readonly number[] | undefined;

/** A host bus on a test board: config access through 0xCF8/0xCFC, BARs on a recording mapper. */
function pciBoard(route?: Route) {
  const b = testBoard();
  const mapper = new FakeMapper();
  const late: { bus?: PciHostBus } = {};
  const bus = (late.bus = new PciHostBus(b.ctx, {
    mapper,
    intxRoute: route ?? ((slot, pin) => 16 + ((slot + pin - 1) & 3)),
  }));
  const addr = (slot: number, fn: number, off: number) =>
    0x8000_0000 | (slot << 11) | (fn << 8) | (off & 0xfc);
  const cfg = (slot: number, fn: number, off: number, size: AccessSize) => {
    bus.write(0, 4, addr(slot, fn, off));
    return bus.read(4 + (off & 3), size);
  };
  const setCfg = (slot: number, fn: number, off: number, size: AccessSize, v: number) => {
    bus.write(0, 4, addr(slot, fn, off));
    bus.write(4 + (off & 3), size, v);
  };
  /** What is decoded where, and by whom. */
  const mappings = () =>
    [...mapper.ranges.values()].map((r) => `${r.owner} ${r.base.toString(16)}+${r.size}`).sort();
  const at = (kind: 'pio' | 'mmio', base: number) => mapper.ranges.get(`${kind}:${base}`)?.handler;
  return { ...b, mapper, bus, late, cfg, setCfg, mappings, at };
}

const hostBus = entry({
  name: 'PCI host bus: CONFIG_ADDRESS latched, a function with a BAR decoded and INTx asserted',
  covers: ['PciHostBus', 'ConfigSpace'],
  build() {
    const r = pciBoard();
    const dev = new TestDevice('test-fn', {
      bars: [{ index: 0, kind: 'io', size: 16, handler: regs(0x100) }],
    });
    r.bus.attach(dev, 2, 0);
    return {
      ...r,
      dev,
      devices: [r.bus, dev],
      probe() {
        const start = {
          lines: r.levels(),
          address: r.bus.read(0, 4),
          data: r.bus.read(4, 4),
          map: r.mappings(),
        };
        const bar = r.at('pio', 0xc000)?.read(2, 2);
        r.setCfg(2, 0, 0x04, 2, 0x0401); // INTx Disable
        return { start, bar, lines: r.levels(), status: r.cfg(2, 0, 0x06, 2), counter: dev.counter };
      },
    };
  },
  drive(r) {
    r.setCfg(2, 0, 0x10, 4, 0xc000);
    r.setCfg(2, 0, 0x04, 2, 0x0001);
    r.setCfg(2, 0, 0x3c, 1, 0x0b);
    r.dev.raise(true);
    r.dev.counter = 7;
    r.bus.write(0, 4, 0x8000_0000 | (2 << 11) | 0x3c);
  },
});

const i440fx = entry({
  name: 'i440FX host bridge: PAM shadowing programmed, SMRAM written',
  covers: ['I440fxHost', 'ConfigSpace'],
  build() {
    const r = pciBoard();
    const pam = pamSetup();
    const host = new I440fxHost({ pam: pam.pam, pamAtPowerOn: 'rom' });
    r.bus.attach(host, 0, 0);
    return {
      ...r,
      devices: [host],
      probe: () => ({
        regs: [0x58, 0x5c, 0x70].map((o) => r.cfg(0, 0, o, 4)),
        slots: [...pam.mapper.live.values()].sort(),
        // What the guest reads at 0xE0000 and 0xC8000 where no slot is mapped.
        reads: [0x20000, 0x8000].map((o) => pam.pam.read(o, 4)),
      }),
    };
  },
  drive(r) {
    r.setCfg(0, 0, 0x59, 1, 0x30); // 0xF0000: DRAM read/write
    r.setCfg(0, 0, 0x5a, 1, 0x31); // 0xC0000: write-only / read/write
    r.setCfg(0, 0, 0x5d, 1, 0x11); // 0xD0000-0xD7FFF
    r.setCfg(0, 0, 0x72, 1, 0x4a); // SMRAM: D_OPEN, G_SMRAME
  },
});

const piix3 = entry({
  name: 'PIIX3 ISA bridge: PIRQs routed, a function asserting INTx through them',
  covers: ['Piix3', 'PciHostBus', 'ConfigSpace'],
  build() {
    let bridge: Piix3 | undefined;
    const r = pciBoard((slot, pin) => {
      const isa = bridge?.pirqIrq(piixPirq(slot, pin));
      const apic = pciIntxGsi(slot, pin);
      return isa === undefined ? apic : [apic, isa];
    });
    const p = (bridge = new Piix3({ onRoutingChange: () => r.late.bus?.refreshIntxRouting() }));
    r.bus.attach(p, 1, 0);
    const dev = new TestDevice('test-fn');
    r.bus.attach(dev, 2, 0);
    return {
      ...r,
      dev,
      devices: [r.bus, p, dev],
      probe() {
        const start = { lines: r.levels(), pirq: r.cfg(1, 0, 0x60, 4) };
        r.setCfg(1, 0, 0x60 + piixPirq(2, 1), 1, 0x05);
        return { start, moved: r.levels(), pirq: r.cfg(1, 0, 0x60, 4) };
      },
    };
  },
  drive(r) {
    r.setCfg(1, 0, 0x60, 4, 0x0b0a0b0a); // as SeaBIOS: A, C -> 10; B, D -> 11
    r.dev.raise(true);
  },
});

const piix4Pm = entry({
  name: 'PIIX4 PM: block decoded, power button and RTC status with SCI raised, GPE enables, PM timer running',
  covers: ['Piix4Pm', 'ConfigSpace'],
  build() {
    const r = pciBoard();
    const pm = new Piix4Pm(r.ctx, { mapper: r.mapper, clockNs: hostClockNs });
    r.bus.attach(pm, 1, 3);
    return {
      ...r,
      pm,
      devices: [pm],
      probe() {
        r.takeEvents();
        const io = r.at('pio', 0x600);
        const start = { lines: r.levels(), map: r.mappings(), cfg: r.cfg(1, 3, 0x40, 4) };
        const pm1 = io && [0, 2, 4, 0x0c, 0x0e].map((o) => io.read(o, 2));
        const timer = io?.read(8, 4);
        io?.write(0, 2, 0x0100); // clear PWRBTN_STS
        const cleared = r.levels();
        io?.write(4, 2, 0x2001); // SLP_EN, S5
        return { start, pm1, timer, cleared, lines: r.levels(), events: r.takeEvents() };
      },
    };
  },
  drive(r) {
    r.setCfg(1, 3, 0x40, 4, 0x0601);
    r.setCfg(1, 3, 0x80, 1, 0x01);
    r.pm.write(2, 2, 0x0500); // PWRBTN_EN, RTC_EN
    r.pm.write(0x0e, 2, 0x0003); // GPE0_EN
    r.pm.pressPowerButton();
    r.pm.rtcAlarm();
    hostClock.ms += 2345; // the guest runs on
  },
});

const pciTestdev = entry({
  name: 'pci-testdev: BARs decoded, a port-I/O test selected with writes counted',
  covers: ['PciTestdev', 'ConfigSpace'],
  build() {
    const r = pciBoard();
    const dev = new PciTestdev(r.ctx);
    r.bus.attach(dev, 3, 0);
    return {
      ...r,
      dev,
      devices: [dev],
      probe() {
        const io = dev.bars.find((b) => b.index === 1)!.handler;
        const start = { map: r.mappings(), bars: [0x04, 0x10, 0x14].map((o) => r.cfg(3, 0, o, 4)) };
        const header = [
          io.read(0, 1),
          io.read(1, 1),
          io.read(4, 4),
          io.read(8, 1),
          io.read(12, 4),
          io.read(16, 4),
        ];
        io.write(io.read(4, 4), 1, io.read(8, 1));
        return { start, header, count: io.read(12, 4) };
      },
    };
  },
  drive(r) {
    r.setCfg(3, 0, 0x10, 4, 0xfebf0000);
    r.setCfg(3, 0, 0x14, 4, 0xc100);
    r.setCfg(3, 0, 0x04, 2, 0x0003);
    const io = r.dev.bars.find((b) => b.index === 1)!.handler;
    io.write(0, 1, 2); // portio-datamatch-eventfd
    const t = r.dev.selected!;
    for (let i = 0; i < 3; i++) io.write(t.offset, 1, t.data);
  },
});

const pvpanic = entry({
  name: 'pvpanic: BAR0 decoded, interrupt line written',
  covers: ['PvpanicPci', 'ConfigSpace'],
  build() {
    const r = pciBoard();
    const events: string[] = [];
    const dev = new PvpanicPci((e) => events.push(e));
    r.bus.attach(dev, 4, 0);
    return {
      ...r,
      devices: [dev],
      probe() {
        const start = { map: r.mappings(), regs: [0x04, 0x10, 0x3c].map((o) => r.cfg(4, 0, o, 4)) };
        const reg = r.at('mmio', 0xfebf1000);
        const supported = reg?.read(0, 1);
        reg?.write(0, 1, 1);
        return { start, supported, events: [...events] };
      },
    };
  },
  drive(r) {
    r.setCfg(4, 0, 0x10, 4, 0xfebf1000);
    r.setCfg(4, 0, 0x04, 2, 0x0002);
    r.setCfg(4, 0, 0x3c, 1, 0x0a);
  },
});

/** A virtio-blk request at fixed guest addresses: header at `at`, data at +0x100, status after the data. */
function blkRequest(
  drv: Driver,
  type: number,
  sector: number,
  at: number,
  data: Uint8Array | number,
): number {
  const hdr = drv.mem.dataView(at, 16);
  hdr.setUint32(0, type, true);
  hdr.setBigUint64(8, BigInt(sector), true);
  const len = typeof data === 'number' ? data : data.length;
  if (typeof data !== 'number') drv.mem.write(at + 0x100, data);
  drv.mem.fill(at + 0x100 + len, 1, 0xff);
  return drv.addChain(0, [
    { addr: at, len: 16 },
    ...(len ? [{ addr: at + 0x100, len, write: typeof data === 'number' }] : []),
    { addr: at + 0x100 + len, len: 1, write: true },
  ]);
}

const virtioBlk = entry({
  name: 'virtio-blk over virtio-pci: queue live, a completion on a masked MSI-X vector pending, a read in flight',
  covers: ['VirtioPciTransport', 'SplitQueue', 'MsixCapability', 'ConfigSpace'],
  build() {
    const r = pciBoard();
    const ram = testRam([[0, 0x100000]]);
    const image = new FakeImage(1 << 20);
    const sink = new RecordingSink();
    const dev = new VirtioPciTransport(new VirtioBlk({ image, serial: 'RT-1' }), {
      ctx: r.ctx,
      mem: ram.mem,
      msi: sink,
      defer: (fn) => fn(),
    });
    r.bus.attach(dev, 5, 0);
    const drv = new Driver(dev, ram.mem);
    const status = (at: number, len: number) => ram.bytes[0]![at + 0x100 + len];
    return {
      ...r,
      ram,
      image,
      sink,
      dev,
      drv,
      devices: [dev],
      adopt(from: { ram: typeof ram; image: FakeImage; drv: Driver }) {
        ram.copyFrom(from.ram);
        image.data.set(from.image.data);
        image.hold = from.image.hold; // the disk is as slow as it was: a re-issued read waits too
        for (const [i, q] of from.drv.queues) drv.queues.set(i, { ...q }); // the guest driver's own
      },
      async probe() {
        const msis = sink.messages.length;
        const table = Array.from({ length: 8 }, (_, i) => drv.bar1.read(4 * i, 4));
        const window = [drv.read(CommonCfg.deviceFeatureSelect, 4), drv.read(CommonCfg.deviceFeature, 4)];
        const pba = drv.bar1.read(0x20, 4);
        drv.bar1.write(16 + 12, 4, 0); // unmask vector 1: the pending completion is signalled
        // The read completes; used_event (0) is behind: no interrupt, unless the device forgot what it signalled.
        image.hold = false;
        while (image.pending.length) image.release();
        await settle();
        const first = {
          pba,
          used: drv.takeUsed(0),
          status: [status(0xa0000, 512), status(0xa1000, 512)],
          read: hexOf(ram.bytes[0]!.subarray(0xa1100, 0xa1140)),
          msis: sink.messages.length - msis,
        };
        blkRequest(drv, VIRTIO_BLK_T_FLUSH, 0, 0xa2000, 0);
        drv.notify(0);
        await settle();
        const regs = [CommonCfg.deviceStatus, CommonCfg.configMsixVector, CommonCfg.queueSelect].map((o) =>
          drv.read(o, o === CommonCfg.deviceStatus ? 1 : 2),
        );
        return {
          table,
          window,
          first,
          used: drv.takeUsed(0),
          flush: status(0xa2000, 0),
          msis: sink.messages.slice(msis),
          regs,
          queue: [CommonCfg.queueSize, CommonCfg.queueEnable, CommonCfg.queueMsixVector].map((o) =>
            drv.read(o, 2),
          ),
          features: drv.read(CommonCfg.driverFeature, 4),
          isr: drv.read(ISR_CFG_OFFSET, 1),
          map: r.mappings(),
          disk: hexOf(image.data.subarray(1024, 1088)),
          ops: image.ops.slice(-2),
        };
      },
      close: () => dev.close(),
    };
  },
  async drive(r) {
    const d = r.drv;
    d.enablePci();
    d.enableMsix(2);
    d.negotiate();
    d.setupQueue(0, 16, 1);
    d.write(CommonCfg.configMsixVector, 2, 0);
    d.driverOk();
    d.bar1.write(16 + 12, 4, 1); // mask vector 1
    const data = Uint8Array.from({ length: 512 }, (_, i) => (i * 7 + 1) & 0xff);
    blkRequest(d, VIRTIO_BLK_T_OUT, 2, 0xa0000, data);
    d.notify(0);
    await settle(); // done: used, and pending on the masked vector
    r.image.hold = true;
    blkRequest(d, VIRTIO_BLK_T_IN, 2, 0xa1000, 512);
    d.notify(0);
    await settle(); // in flight: a loaded device issues it again
  },
});

/** Writes `words` of an ATAPI CDB to the secondary channel's data port. */
const cdbWords = (r: IdeRig, cdb: number[], from: number, to: number) => {
  for (let i = from; i < to; i += 2) r.outw(S.base, cdb[i]! | (cdb[i + 1]! << 8));
};
/** READ (10) of one 2 KiB block at LBA 16: its length is in the half of the CDB written after the load. */
const READ10 = [0x28, 0, 0, 0, 0, 16, 0, 0, 1, 0, 0, 0];
const BMIS = 0xc002;
const BMIDTP = 0xc004;

const piixIde = entry({
  name: 'PIIX IDE: a PIO read half-transferred with IRQ 14 pending, an ATAPI packet half-written, bus master set up',
  covers: ['PiixIde', 'IdeChannel', 'BusMasterChannel', 'TaskFile', 'AtaDisk', 'AtapiCdrom', 'ConfigSpace'],
  build() {
    const r = ideRig();
    return {
      ...r,
      devices: [r.ide],
      adopt(from: IdeRig) {
        r.ram.set(from.ram);
        for (const [k, v] of from.diskImage.written) r.diskImage.written.set(k, v);
      },
      async probe() {
        const taskFiles = [P.base, S.base].map((base) => [1, 2, 3, 4, 5, 6].map((o) => r.inb(base + o)));
        const start = { alt: [r.inb(P.ctl), r.inb(S.ctl)], lines: [r.level(14), r.level(15)], taskFiles };
        const rest = hexOf(readData(r, P.base, 1024 - 300));
        const primary = { status: r.inb(P.base + 7), line: r.level(14) };
        cdbWords(r, READ10, 6, 12);
        const blocks: string[] = [];
        for (let i = 0; i < 16; i++) {
          await r.settle();
          const st = r.inb(S.base + 7);
          if (!(st & 0x08)) break;
          const n = r.inb(S.base + 4) | (r.inb(S.base + 5) << 8);
          blocks.push(`${st.toString(16)}:${n}:${hexOf(readData(r, S.base, n)).slice(0, 64)}`);
        }
        const atapi = { blocks, end: r.inb(S.base + 7), line: r.level(15) };
        const bm = [r.inl(BMIDTP), r.inb(BMIS)];
        // The latched registers of the absent slaves.
        const slaves = [P.base, S.base].map((base) => {
          r.outb(base + 6, 0xb0);
          return [1, 2, 3, 4, 5].map((o) => r.inb(base + o));
        });
        const cfg = [r.ide.readConfig(0x40, 4), r.ide.readConfig(0x44, 1)];
        return { start, rest, primary, atapi, bm, slaves, cfg };
      },
    };
  },
  async drive(r) {
    r.ide.writeConfig(0x40, 4, 0xa307e307);
    r.ide.writeConfig(0x44, 1, 0x33);
    r.outl(BMIDTP, 0x4000);
    r.outb(BMIS, 0x20); // drive 0 DMA capable
    // READ SECTORS, LBA 10, two sectors; the first 300 bytes read.
    for (const [o, v] of [
      [6, 0xe0],
      [2, 2],
      [3, 10],
      [4, 0],
      [5, 0],
      [7, 0x20],
    ])
      r.outb(P.base + o!, v!);
    await r.settle();
    readData(r, P.base, 300);
    // PACKET on the CD-ROM, PIO, byte count limit 512: half of the CDB written.
    for (const [o, v] of [
      [6, 0xa0],
      [1, 0],
      [4, 0x00],
      [5, 0x02],
      [7, 0xa0],
    ])
      r.outb(S.base + o!, v!);
    cdbWords(r, READ10, 0, 6);
  },
});

export const PCI_ENTRIES: readonly Entry[] = [
  hostBus,
  i440fx,
  piix3,
  piix4Pm,
  pciTestdev,
  pvpanic,
  virtioBlk,
  piixIde,
];
