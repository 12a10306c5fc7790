/**
 * Round-trip entries for the ISA side of the PC (../state-roundtrip.test.ts):
 * chipset registers, CMOS/RTC, ISA DMA and the floppy controller behind it,
 * the 16550A, the i8042 with its keyboard and mouse, fw_cfg and the test
 * and debug ports.
 */
import { MemoryBackend } from '../../../../src/vmm/chardev/backend.js';
import { CmosRtc } from '../../../../src/vmm/chipset/cmos-rtc.js';
import { I8257Dma } from '../../../../src/vmm/chipset/i8257-dma.js';
import { Port92 } from '../../../../src/vmm/chipset/port92.js';
import { PostPort } from '../../../../src/vmm/chipset/post-port.js';
import { ResetControl } from '../../../../src/vmm/chipset/reset-control.js';
import type { AccessSize } from '../../../../src/vmm/core/device.js';
import { DebugConsole } from '../../../../src/vmm/firmware/debug-console.js';
import { FwCfg } from '../../../../src/vmm/firmware/fw-cfg.js';
import { I8042 } from '../../../../src/vmm/input/i8042.js';
import { Ps2Keyboard } from '../../../../src/vmm/input/ps2-keyboard.js';
import { Ps2Mouse } from '../../../../src/vmm/input/ps2-mouse.js';
import { Uart16550a } from '../../../../src/vmm/serial/uart-16550a.js';
import { FloppyController } from '../../../../src/vmm/storage/floppy.js';
import { IsaDebugExit } from '../../../../src/vmm/testdev/isa-debug-exit.js';
import { PcTestdev } from '../../../../src/vmm/testdev/pc-testdev.js';
import { MemImage } from '../storage/ide/helpers.js';
import { entry, hexOf, hostClock, settle, testBoard, testRam, type Entry } from './harness.js';

/** A device behind one IoHandler: accesses at offsets, plus the board's lines and requests. */
function onePort<
  D extends { read(o: number, s: AccessSize): number; write(o: number, s: AccessSize, v: number): void },
>(make: (b: ReturnType<typeof testBoard>) => D) {
  const board = testBoard();
  const dev = make(board);
  return {
    ...board,
    dev,
    inb: (o: number) => dev.read(o, 1),
    outb: (o: number, v: number) => dev.write(o, 1, v),
  };
}

const cmosRtc = entry({
  name: 'CMOS/RTC: guest-set time running with UIE and AIE, update flag and IRQ 8 pending, NMI masked, index on reg C',
  covers: ['CmosRtc'],
  build() {
    const r = onePort(
      (b) =>
        new CmosRtc(b.ctx, {
          memoryBytes: 64 << 20,
          belowFourGiB: 64 << 20,
          aboveFourGiB: 0,
          cpus: 1,
          clock: () => hostClock.ms,
          onAlarm: () => b.ctx.requestWake!('rtc alarm'),
        }),
    );
    const reg = (i: number) => (r.outb(0, i), r.inb(1));
    return {
      ...r,
      devices: [r.dev],
      probe() {
        const before = { nmi: r.dev.nmiMasked, lines: r.levels(), regC: r.inb(1), after: r.levels() };
        hostClock.ms += 800; // past midnight: an update and the alarm
        const regC = reg(0x0c);
        const time = [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map(reg);
        const regs = [0x0a, 0x0b, 0x0d, 0x01, 0x03, 0x05, 0x40].map(
          (i) => reg(i) & (i === 0x0a ? 0x7f : 0xff),
        );
        return { before, regC, time, regs, lines: r.levels(), events: r.takeEvents() };
      },
      close: () => r.dev.close(),
    };
  },
  drive(r) {
    const wr = (i: number, v: number) => (r.outb(0, i), r.outb(1, v));
    wr(0x0b, 0x82); // SET: the clock stops, time bytes are latched
    // 1999-12-31 23:59:58, the alarm at 00:00:00.
    for (const [i, v] of [
      [0x32, 0x19],
      [0x09, 0x99],
      [0x08, 0x12],
      [0x07, 0x31],
      [0x04, 0x23],
      [0x02, 0x59],
      [0x00, 0x58],
      [0x01, 0x00],
      [0x03, 0x00],
      [0x05, 0x00],
      [0x40, 0x5a], // NVRAM
    ])
      wr(i!, v!);
    wr(0x0b, 0x32); // running, AIE, UIE, 24-hour
    hostClock.ms += 1500; // the guest runs on: 23:59:59.5, one update ended
    r.outb(0, 0x8c); // NMI masked, reg C selected for the next data read
  },
});

interface DmaClient {
  budget: number;
  transfer(pos: number, size: number): number;
}

/** Both 8237s with a device on channel 1 that moves `budget` bytes (pattern by position) when asked. */
function dmaRig() {
  const b = testBoard();
  const ram = testRam([[0, 0x20000]]);
  const dma = new I8257Dma(b.ctx, { memory: ram.mem });
  const client: DmaClient = {
    budget: 0,
    transfer(pos, size) {
      const n = Math.min(this.budget, size - pos);
      const buf = Uint8Array.from({ length: n }, (_, i) => ((pos + i) * 3 + 1) & 0xff);
      dma.dmaWrite(1, buf, pos, n);
      this.budget -= n;
      return pos + n;
    },
  };
  dma.registerChannel(1, client);
  const out1 = (port: number, v: number) => dma.dma1Ports.write(port, 1, v);
  const in1 = (port: number) => dma.dma1Ports.read(port, 1);
  return { ...b, ram, dma, client, out1, in1 };
}

const i8257 = entry({
  name: 'ISA DMA: auto-init channel 1 half-way through a transfer, a software request, flip-flop high, DMA2 mask',
  covers: ['I8257Dma'],
  build() {
    const r = dmaRig();
    return {
      ...r,
      devices: [r.dma],
      adopt(from: typeof r) {
        r.ram.copyFrom(from.ram);
        r.client.budget = from.client.budget; // the device's own state
      },
      probe() {
        const ch3Addr = [r.in1(6), r.in1(6)]; // whichever byte the flip-flop names first
        r.client.budget += 100;
        r.dma.holdDreq(1); // the device has data again
        const status = r.in1(8);
        r.out1(0x0c, 0);
        const ch1 = [r.in1(2), r.in1(2), r.in1(3), r.in1(3)];
        return {
          ch3Addr,
          status,
          ch1,
          mask: r.in1(0x0f),
          mask2: r.dma.dma2Ports.read(0x1e, 1),
          page: r.dma.pagePorts.read(0x83 - 0x81, 1),
          ram: hexOf(r.ram.bytes[0]!.subarray(0x13000, 0x13048)),
          budget: r.client.budget,
        };
      },
    };
  },
  drive(r) {
    r.out1(0x0a, 0x05); // mask channel 1
    r.out1(0x0c, 0);
    r.out1(0x02, 0x00);
    r.out1(0x02, 0x30); // address 0x3000
    r.out1(0x03, 63);
    r.out1(0x03, 0); // 64 bytes
    r.out1(0x0b, 0x55); // single mode, auto-initialize, write to memory, channel 1
    r.dma.pagePorts.write(0x83 - 0x81, 1, 0x01); // page 1: 0x13000
    r.client.budget = 24;
    r.dma.holdDreq(1);
    r.out1(0x0a, 0x01); // unmask: 24 of the 64 bytes move
    r.out1(0x09, 0x04); // software request on channel 0 (no device)
    r.out1(0x06, 0x11); // low byte of channel 3's address: the flip-flop is high now
    r.dma.dma2Ports.write(0x1e, 1, 0x0e); // DMA2 all-mask: channels 5-7 masked, 4 (cascade) open
  },
});

const port92 = entry({
  name: 'port 0x92: A20 off, fast-reset bit latched',
  covers: ['Port92'],
  build() {
    const r = onePort((b) => new Port92(b.ctx));
    return {
      ...r,
      devices: [r.dev],
      probe: () => {
        r.takeEvents();
        const v = r.inb(0);
        r.outb(0, 0x03); // no reset: bit 0 is already 1
        return { v, after: r.inb(0), events: r.takeEvents() };
      },
    };
  },
  drive: (r) => r.outb(0, 0x01),
});

const postPort = entry({
  name: 'POST port: last code',
  covers: ['PostPort'],
  build() {
    const r = onePort((b) => new PostPort(b.ctx));
    return { ...r, devices: [r.dev], probe: () => [r.inb(0), (r.outb(0, 0x99), r.inb(0))] };
  },
  drive: (r) => r.outb(0, 0x42),
});

const resetControl = entry({
  name: 'reset control 0xCF9: SYS_RST latched',
  covers: ['ResetControl'],
  build() {
    const r = onePort((b) => new ResetControl(b.ctx));
    return {
      ...r,
      devices: [r.dev],
      probe: () => {
        r.takeEvents();
        const v = r.inb(0);
        r.outb(0, 0x04);
        return { v, after: r.inb(0), events: r.takeEvents().length };
      },
    };
  },
  drive: (r) => r.outb(0, 0x02),
});

const debugConsole = entry({
  name: 'debug console 0x402',
  covers: ['DebugConsole'],
  stateless: 'output leaves at once (what was buffered went out of the saved VM); reads are a constant',
  build() {
    const out: number[] = [];
    const r = onePort((b) => new DebugConsole(b.ctx, { sink: (d) => out.push(...d) }));
    return {
      ...r,
      devices: [r.dev],
      probe: () => {
        r.dev.flush(); // the saved VM's own output is not the restored one's
        out.length = 0;
        r.outb(0, 0x21);
        r.dev.flush();
        return { read: r.inb(0), out: [...out] };
      },
      close: () => r.dev.close(),
    };
  },
  drive: (r) => [0x68, 0x69].forEach((c) => r.outb(0, c)),
});

const isaDebugExit = entry({
  name: 'isa-debug-exit',
  covers: ['IsaDebugExit'],
  stateless: 'a write ends the VM at once; reads are 0',
  build() {
    const exits: number[] = [];
    const r = onePort(
      (b) => new IsaDebugExit(b.ctx, { iobase: 0xf4, iosize: 4, onExit: (c) => exits.push(c) }),
    );
    return { ...r, devices: [r.dev], probe: () => [r.inb(0), (r.outb(0, 3), exits.slice(-1))] };
  },
  drive: (r) => void r.inb(2),
});

const uart = entry({
  name: '16550A: FIFO part full with host input queued behind it, interrupts enabled and pending, divisor, MSR delta',
  covers: ['Uart16550a'],
  build() {
    const backend = new MemoryBackend();
    const r = onePort((b) => new Uart16550a('com1', b.ctx, { irq: 4, backend }));
    return {
      ...r,
      backend,
      devices: [r.dev],
      probe() {
        backend.take();
        const regs = [2, 5, 6, 1, 3, 4, 7].map((o) => r.inb(o)); // IIR, LSR, MSR (clears the delta), IER...
        const lines = r.levels();
        const rx: number[] = [];
        for (let i = 0; i < 64 && r.inb(5) & 0x01; i++) rx.push(r.inb(0));
        const iir = r.inb(2); // THRE, once the received data no longer hides it
        r.outb(0, 0x5a);
        r.outb(3, 0x80 | r.inb(3));
        const divisor = [r.inb(0), r.inb(1)];
        return { regs, lines, rx, iir, tx: [...backend.take()], divisor, end: r.levels() };
      },
      close: () => r.dev.close(),
    };
  },
  drive(r) {
    r.outb(3, 0x80);
    r.outb(0, 0x01);
    r.outb(1, 0x00); // 115200 baud
    r.outb(3, 0x1b); // 8E1
    r.outb(2, 0x81); // FIFO on, trigger level 8
    r.outb(1, 0x0f);
    r.outb(4, 0x0b); // DTR, RTS, OUT2
    r.outb(7, 0x5a);
    r.backend.inject(Uint8Array.from({ length: 40 }, (_, i) => 0x40 + i));
    r.inb(0);
    r.dev.setModemInputs({ ri: true });
  },
});

function ps2Rig() {
  const b = testBoard();
  const keyboard = new Ps2Keyboard(b.ctx);
  const mouse = new Ps2Mouse(b.ctx);
  const kbc = new I8042(b.ctx, { keyboard, mouse });
  const status = () => kbc.commandPort.read(0, 1);
  const cmd = (c: number, ...args: number[]) => {
    kbc.commandPort.write(0, 1, c);
    for (const a of args) kbc.dataPort.write(0, 1, a);
  };
  const data = (v: number) => kbc.dataPort.write(0, 1, v);
  /** The output buffer's bytes, each with AUXB and the IRQ 1 / IRQ 12 levels before it was read. */
  const drain = () => {
    const out: string[] = [];
    for (let i = 0; i < 100 && status() & 1; i++) {
      const s = status();
      const lv = `${+b.level(1)}${+b.level(12)}`;
      out.push(`${kbc.dataPort.read(0, 1).toString(16)}${s & 0x20 ? 'm' : 'k'}${lv}`);
    }
    return out;
  };
  return { ...b, keyboard, mouse, kbc, status, cmd, data, drain };
}

const ps2 = entry({
  name: 'i8042 with keyboard and mouse: output buffer full, bytes queued in all three, commands waiting for arguments',
  covers: ['I8042', 'Ps2Keyboard', 'Ps2Mouse'],
  build() {
    const r = ps2Rig();
    return {
      ...r,
      devices: [r.keyboard, r.mouse, r.kbc],
      probe() {
        r.takeEvents();
        const s0 = r.status();
        const lines = r.levels();
        r.data(0xdf); // the argument of 0xD1: A20 on, no reset
        const first = r.drain();
        r.data(0x02); // the keyboard's LED argument
        r.cmd(0xd4, 0x0a); // the mouse's sample rate argument
        r.cmd(0xd4, 0xe9); // status request: mode, buttons, resolution, rate
        r.cmd(0x20); // CTR
        const second = r.drain();
        return { s0, lines, first, second, leds: r.keyboard.leds, end: r.levels(), events: r.takeEvents() };
      },
    };
  },
  drive(r) {
    r.data(0xed); // set LEDs: the keyboard waits for its argument
    r.cmd(0xd4, 0xf4); // mouse reporting on
    r.cmd(0xd4, 0xe8); // set resolution: the mouse waits for its argument
    r.cmd(0xd4, 0x03);
    r.cmd(0xd4, 0xf3); // set sample rate: waiting for the argument
    r.keyboard.pressKey([0x1c, 0xf0, 0x1c]);
    r.mouse.move(5, -3, 1);
    r.cmd(0x20);
    r.cmd(0xd1); // write output port: waiting for its byte
    r.kbc.dataPort.read(0, 1);
  },
});

const fwCfg = entry({
  name: 'fw_cfg: a file selected and part read, the DMA address high half latched',
  covers: ['FwCfg'],
  build() {
    const b = testBoard();
    const HIGH = 0x1_0000_0000;
    const ram = testRam([
      [0, 0x10000],
      [HIGH, 0x10000],
    ]);
    const fw = new FwCfg(b.ctx, { memory: ram.mem, cpus: 2, ramSize: 0x20000 });
    fw.addFile(
      'etc/roundtrip',
      Uint8Array.from({ length: 64 }, (_, i) => i * 5 + 3),
    );
    const bswap = (v: number) => Buffer.from(Uint32Array.of(v).buffer).readUInt32BE(0);
    return {
      ...b,
      fw,
      ram,
      bswap,
      devices: [fw],
      adopt(from: { ram: typeof ram }) {
        ram.copyFrom(from.ram);
      },
      probe() {
        const data = [0, 1, 2, 3].map(() => fw.dataPort.read(0, 1));
        fw.dmaPort.write(4, 4, bswap(0x1000)); // the low half starts the transfer
        const pick = (i: number) =>
          hexOf(ram.bytes[i]!.subarray(0x1000, 0x1010)) + hexOf(ram.bytes[i]!.subarray(0x2000, 0x2008));
        return {
          data,
          low: pick(0),
          high: pick(1),
          next: fw.dataPort.read(0, 2),
          sig: fw.dmaPort.read(0, 4),
        };
      },
    };
  },
  drive(r) {
    r.fw.selectorPort.write(0, 2, 0x20);
    for (let i = 0; i < 5; i++) r.fw.dataPort.read(0, 1);
    // FWCfgDmaAccess {READ, 8 bytes, to +0x2000} at 0x1000 of both RAM regions.
    r.ram.bytes.forEach((bytes, i) => {
      const v = new DataView(bytes.buffer);
      v.setUint32(0x1000, 0x02);
      v.setUint32(0x1004, 8);
      v.setBigUint64(0x1008, BigInt(i ? 0x1_0000_2000 : 0x2000));
    });
    r.fw.dmaPort.write(0, 4, r.bswap(1)); // high half: the next transfer's descriptor is above 4 GiB
  },
});

const pcTestdev = entry({
  name: 'pc-testdev: scratch register, device memory, an IRQ line held high',
  covers: ['PcTestdev'],
  build() {
    const b = testBoard();
    const dev = new PcTestdev(b.ctx);
    return {
      ...b,
      dev,
      devices: [dev],
      probe() {
        const lines = b.levels();
        const got = [
          dev.ioport.read(0, 4),
          dev.ioportByte.read(2, 2),
          dev.iomem.read(0x100, 4),
          dev.iomem.read(0xfffc, 4),
        ];
        dev.irqPorts.write(0x0e, 1, 0);
        dev.irqPorts.write(0x05, 1, 1);
        return { lines, got, end: b.levels() };
      },
    };
  },
  drive(r) {
    r.dev.ioport.write(0, 4, 0x12345678);
    r.dev.ioportByte.write(1, 1, 0xab);
    r.dev.iomem.write(0x100, 4, 0xdeadbeef);
    r.dev.iomem.write(0xfffe, 2, 0x55aa);
    r.dev.irqPorts.write(0x0d, 1, 1);
    r.dev.irqPorts.write(0x0e, 1, 1);
    r.dev.irqPorts.write(0x0d, 1, 0);
  },
});

const FLOPPY_144 = 1474560;

const floppy = entry({
  name: 'floppy: a non-DMA READ DATA half-way through its sector, motor on, with the ISA DMA controller',
  covers: ['FloppyController', 'I8257Dma'],
  build() {
    const b = testBoard();
    const ram = testRam([[0, 0x20000]]);
    const dma = new I8257Dma(b.ctx, { memory: ram.mem });
    const fdc = new FloppyController(b.ctx, { dma, drives: [{ image: new MemImage(FLOPPY_144) }] });
    const out = (port: number, v: number) =>
      port === 0x3f7 ? fdc.dirPort.write(0, 1, v) : fdc.ports.write(port - 0x3f0, 1, v);
    const inb = (port: number) => (port === 0x3f7 ? fdc.dirPort.read(0, 1) : fdc.ports.read(port - 0x3f0, 1));
    const msr = () => inb(0x3f4);
    const read = (mask: number, want: number) => {
      const got: number[] = [];
      for (let i = 0; i < 1024 && (msr() & mask) === want; i++) got.push(inb(0x3f5));
      return got;
    };
    return {
      ...b,
      fdc,
      ram,
      out,
      inb,
      devices: [dma, fdc],
      adopt(from: { ram: typeof ram }) {
        ram.copyFrom(from.ram);
      },
      async probe() {
        const start = { msr: msr(), lines: b.levels(), dor: inb(0x3f2), dir: inb(0x3f7) };
        const rest = hexOf(Uint8Array.from(read(0xa0, 0xa0)));
        await fdc.whenIdle();
        const result = read(0xd0, 0xd0);
        const lines = b.levels();
        out(0x3f5, 0x08); // SENSE INTERRUPT STATUS
        const sense = read(0xd0, 0xd0);
        out(0x3f5, 0x0e); // DUMPREG: SPECIFY's bytes among others
        return { start, rest, result, lines, sense, dumpreg: read(0xd0, 0xd0), msr: msr() };
      },
    };
  },
  async drive(r) {
    r.out(0x3f2, 0x1c); // motor A on, DMA and IRQ enabled
    for (const v of [0x03, 0xcf, 0x03]) r.out(0x3f5, v); // SPECIFY, non-DMA
    for (const v of [0x46, 0x00, 0, 0, 1, 2, 1, 0x1b, 0xff]) r.out(0x3f5, v); // READ DATA C0 H0 R1
    await r.fdc.whenIdle();
    await settle();
    for (let i = 0; i < 100; i++) r.inb(0x3f5);
  },
});

export const ISA_ENTRIES: readonly Entry[] = [
  cmosRtc,
  i8257,
  port92,
  postPort,
  resetControl,
  debugConsole,
  isaDebugExit,
  uart,
  ps2,
  fwCfg,
  pcTestdev,
  floppy,
];
