import { describe, expect, it } from 'vitest';
import type { DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { GuestMemory } from '../../../../src/vmm/core/memory.js';
import {
  DMA1_PORT_BASE,
  DMA1_PORT_COUNT,
  DMA2_PORT_BASE,
  DMA2_PORT_COUNT,
  DMA_PAGE_PORT_BASE,
  DMA_PAGE_PORT_COUNT,
  I8257Dma,
  type IsaDmaClient,
} from '../../../../src/vmm/chipset/i8257-dma.js';

const MiB = 1024 * 1024;

function setup() {
  const log = new MemoryLogger();
  const ctx: DeviceContext = {
    irq: { setIrq: () => {} },
    log,
    guestErrors: new RateLimitedLog(log),
    requestReset: () => {},
    requestPowerOff: () => {},
  };
  const memory = new GuestMemory();
  const ram = new Uint8Array(2 * MiB);
  memory.addRegion(0, ram);
  const dma = new I8257Dma(ctx, { memory });
  /** Port I/O as the bus delivers it (absolute port numbers). */
  const out = (port: number, v: number): void => {
    if (port >= DMA1_PORT_BASE && port < DMA1_PORT_BASE + DMA1_PORT_COUNT) {
      dma.dma1Ports.write(port - DMA1_PORT_BASE, 1, v);
    } else if (port >= DMA2_PORT_BASE && port < DMA2_PORT_BASE + DMA2_PORT_COUNT) {
      dma.dma2Ports.write(port - DMA2_PORT_BASE, 1, v);
    } else if (port >= DMA_PAGE_PORT_BASE && port < DMA_PAGE_PORT_BASE + DMA_PAGE_PORT_COUNT) {
      dma.pagePorts.write(port - DMA_PAGE_PORT_BASE, 1, v);
    } else {
      throw new Error(`port ${port.toString(16)} is not the DMA controller's`);
    }
  };
  const inb = (port: number): number => {
    if (port >= DMA1_PORT_BASE && port < DMA1_PORT_BASE + DMA1_PORT_COUNT) {
      return dma.dma1Ports.read(port - DMA1_PORT_BASE, 1);
    }
    if (port >= DMA2_PORT_BASE && port < DMA2_PORT_BASE + DMA2_PORT_COUNT) {
      return dma.dma2Ports.read(port - DMA2_PORT_BASE, 1);
    }
    return dma.pagePorts.read(port - DMA_PAGE_PORT_BASE, 1);
  };
  /** Programs an 8-bit channel the way SeaBIOS's dma_floppy and Linux's set_dma_* do. */
  const program8 = (ch: number, addr: number, count: number, mode: number): void => {
    out(0x0a, 0x04 | ch); // mask
    out(0x0c, 0); // clear flip-flop
    out(ch * 2, addr & 0xff);
    out(ch * 2, (addr >> 8) & 0xff);
    out(0x0c, 0);
    out(ch * 2 + 1, count & 0xff);
    out(ch * 2 + 1, (count >> 8) & 0xff);
    out(0x0b, mode | ch);
    out([0x87, 0x83, 0x81, 0x82][ch]!, (addr >> 16) & 0xff);
    out(0x0a, ch); // unmask
  };
  /** Reads a channel's current address or count through the flip-flop. */
  const read16 = (port: number): number => {
    out(0x0c, 0);
    const lo = inb(port);
    return lo | (inb(port) << 8);
  };
  return { dma, ram, memory, log, out, inb, program8, read16 };
}

/** A device that writes `data` to memory (or reads into `got`) as far as the DMA lets it. */
function device(dma: I8257Dma, ch: number, data: Uint8Array, direction: 'write' | 'read' = 'write') {
  const got = new Uint8Array(data.length);
  const calls: Array<[number, number]> = [];
  let done = 0;
  const client: IsaDmaClient = {
    transfer(pos, size) {
      calls.push([pos, size]);
      const n = Math.min(data.length - done, size - pos);
      if (direction === 'write') dma.dmaWrite(ch, data.subarray(done, done + n), pos, n);
      else dma.dmaRead(ch, got.subarray(done, done + n), pos, n);
      done += n;
      return pos + n;
    },
  };
  dma.registerChannel(ch, client);
  return { got, calls, done: () => done };
}

const pattern = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);

describe('I8257Dma registers', () => {
  it('loads address and count low byte first through the flip-flop and reads them back', () => {
    const { out, inb, read16 } = setup();
    out(0x0c, 0);
    out(0x04, 0x34);
    out(0x04, 0x12);
    out(0x05, 0xff);
    out(0x05, 0x01);
    expect(read16(0x04)).toBe(0x1234);
    expect(read16(0x05)).toBe(0x01ff);
    // Without clearing, the flip-flop alternates: a stray read leaves it on the high byte.
    out(0x0c, 0);
    inb(0x04);
    expect(inb(0x05)).toBe(0x01); // high byte of the count
  });

  it('keeps channel page registers and scratch bytes in 0x81-0x8F', () => {
    const { dma, out, inb } = setup();
    const pages: Record<number, number> = { 0: 0x87, 1: 0x83, 2: 0x81, 3: 0x82, 5: 0x8b, 6: 0x89, 7: 0x8a };
    for (const [ch, port] of Object.entries(pages)) out(port, 0x10 + Number(ch));
    out(0x84, 0xaa);
    out(0x8e, 0x55);
    for (const [ch, port] of Object.entries(pages)) expect(inb(port)).toBe(0x10 + Number(ch));
    expect(inb(0x84)).toBe(0xaa);
    expect(inb(0x8e)).toBe(0x55);
    out(0x0c, 0);
    out(0x04, 0x00);
    out(0x04, 0x7c);
    expect(dma.currentAddress(2)).toBe(0x127c00);
  });

  it('sets and clears masks singly, all at once, and by master clear', () => {
    const { out, inb } = setup();
    expect(inb(0x0f) & 0xf).toBe(0xf); // all masked at power-on
    out(0x0e, 0); // clear all
    expect(inb(0x0f) & 0xf).toBe(0);
    out(0x0a, 0x06); // mask channel 2
    expect(inb(0x0f) & 0xf).toBe(0x4);
    out(0x0a, 0x02); // unmask channel 2
    out(0x0f, 0x09);
    expect(inb(0x0f) & 0xf).toBe(0x9);
    out(0x0d, 0); // master clear
    expect(inb(0x0f) & 0xf).toBe(0xf);
    // DMA2 registers sit on even ports (0xD4 single mask, 0xDE all mask read-back).
    out(0xdc, 0);
    expect(inb(0xde) & 0xf).toBe(0);
    out(0xd4, 0x05);
    expect(inb(0xde) & 0xf).toBe(0x2);
  });

  it('refuses the cascade channel and a channel twice', () => {
    const { dma } = setup();
    expect(() => dma.registerChannel(4, { transfer: (p) => p })).toThrow(/cascade/);
    dma.registerChannel(2, { transfer: (p) => p });
    expect(() => dma.registerChannel(2, { transfer: (p) => p })).toThrow(/in use/);
    expect(() => dma.holdDreq(8)).toThrow(RangeError);
  });
});

describe('I8257Dma transfers', () => {
  it('moves a device write into guest memory, sets TC, masks the channel and leaves the count at 0xFFFF', () => {
    const { dma, ram, inb, program8, read16 } = setup();
    const data = pattern(512);
    const dev = device(dma, 2, data);
    program8(2, 0x07c00, 511, 0x44); // single mode, write (device to memory), increment
    dma.holdDreq(2);
    expect(dev.calls).toEqual([[0, 512]]);
    expect(ram.subarray(0x7c00, 0x7c00 + 512)).toEqual(data);
    expect(read16(0x05)).toBe(0xffff);
    expect(read16(0x04)).toBe(0x7e00);
    expect(inb(0x0f) & 0x4).toBe(0x4); // masked at terminal count
    const status = inb(0x08);
    expect(status & 0x0f).toBe(0x4); // TC on channel 2
    expect(status & 0xf0).toBe(0x40); // DREQ still held
    expect(inb(0x08) & 0x0f).toBe(0); // TC bits clear on read
    dma.releaseDreq(2);
    expect(inb(0x08)).toBe(0);
  });

  it('waits while masked and transfers when the guest unmasks the channel', () => {
    const { dma, ram, out, program8 } = setup();
    const data = pattern(16);
    const dev = device(dma, 1, data);
    program8(1, 0x1000, 15, 0x44);
    out(0x0a, 0x05); // mask channel 1 again
    dma.holdDreq(1);
    expect(dev.calls).toEqual([]);
    out(0x0a, 0x01);
    expect(ram.subarray(0x1000, 0x1010)).toEqual(data);
  });

  it('reads guest memory for a device in a read transfer', () => {
    const { dma, ram, program8 } = setup();
    ram.set(pattern(64, 9), 0x20000);
    const dev = device(dma, 3, new Uint8Array(64), 'read');
    program8(3, 0x20000, 63, 0x48); // read (memory to device)
    dma.holdDreq(3);
    expect(dev.got).toEqual(pattern(64, 9));
  });

  it('reloads the base registers at TC with auto-initialize and keeps the channel unmasked', () => {
    const { dma, ram, inb, program8, read16 } = setup();
    let chunks = 0;
    dma.registerChannel(0, {
      transfer(pos, size) {
        chunks++;
        dma.dmaWrite(0, Uint8Array.of(0xa0 + chunks, 0xb0 + chunks), pos, 2);
        return Math.min(size, pos + 2);
      },
    });
    program8(0, 0x3000, 3, 0x54); // auto-init, write
    dma.holdDreq(0);
    // The device keeps DREQ: the ring buffer wraps until the run's callback limit.
    expect(chunks).toBeGreaterThan(2);
    expect(read16(0x00)).toBe(0x3000 + ((chunks * 2) % 4));
    expect(inb(0x0f) & 1).toBe(0);
    expect(inb(0x08) & 1).toBe(1);
    expect(ram[0x3000]).toBeGreaterThan(0xa0);
    dma.releaseDreq(0);
  });

  it('counts down addresses in decrement mode', () => {
    const { dma, ram, program8, read16 } = setup();
    device(dma, 2, Uint8Array.of(1, 2, 3, 4));
    program8(2, 0x5003, 3, 0x64); // decrement, write
    dma.holdDreq(2);
    expect(Array.from(ram.subarray(0x5000, 0x5004))).toEqual([4, 3, 2, 1]);
    expect(read16(0x04)).toBe(0x4fff);
  });

  it('wraps inside the 64 KiB page: the page register never increments', () => {
    const { dma, ram, program8 } = setup();
    device(dma, 2, Uint8Array.of(1, 2, 3, 4));
    program8(2, 0x1fffe, 3, 0x44);
    dma.holdDreq(2);
    expect(Array.from(ram.subarray(0x1fffe, 0x20000))).toEqual([1, 2]);
    expect(Array.from(ram.subarray(0x10000, 0x10002))).toEqual([3, 4]);
    expect(ram[0x20000]).toBe(0);
  });

  it('counts words and shifts addresses on the 16-bit channels', () => {
    const { dma, ram, out, inb } = setup();
    const data = pattern(8, 3);
    const dev = device(dma, 5, data);
    // Channel 5: address 0xC4, count 0xC6, mode 0xD6, mask 0xD4, flip-flop 0xD8, page 0x8B.
    out(0xd8, 0);
    out(0xc4, 0x00);
    out(0xc4, 0x80); // word address 0x8000 = byte 0x10000 in the 128 KiB page
    out(0xc6, 3); // 4 words
    out(0xc6, 0);
    out(0xd6, 0x45);
    out(0x8b, 0x13); // page bit 0 is ignored on 16-bit channels
    out(0xd4, 0x01);
    dma.holdDreq(5);
    expect(dev.calls).toEqual([[0, 8]]);
    expect(ram.subarray(0x130000, 0x130008)).toEqual(data);
    out(0xd8, 0);
    expect(inb(0xc4) | (inb(0xc4) << 8)).toBe(0x8004);
    expect(inb(0xd0) & 0x2).toBe(0x2); // TC for channel 5 (bit 1 of DMA2's status)
  });

  it('writes nothing when the mode does not match the direction, and logs it', () => {
    const { dma, ram, log, program8 } = setup();
    device(dma, 2, pattern(8));
    program8(2, 0x6000, 7, 0x48); // read transfer, but the device writes
    dma.holdDreq(2);
    expect(ram.subarray(0x6000, 0x6008).every((b) => b === 0)).toBe(true);
    expect(log.lines.join('\n')).toMatch(/programmed for a read transfer/);
  });

  it('verify transfers count down without touching memory', () => {
    const { dma, ram, inb, program8 } = setup();
    device(dma, 2, pattern(8));
    program8(2, 0x6000, 7, 0x40);
    dma.holdDreq(2);
    expect(ram.subarray(0x6000, 0x6008).every((b) => b === 0)).toBe(true);
    expect(inb(0x08) & 0x4).toBe(0x4);
  });

  it('logs a transfer outside RAM as a guest error and does not throw', () => {
    const { dma, log, program8 } = setup();
    const dev = device(dma, 2, pattern(16), 'read');
    program8(2, 0xf00000, 15, 0x48); // page 0xF0: 15 MiB, beyond the 2 MiB of RAM
    expect(() => dma.holdDreq(2)).not.toThrow();
    expect(dev.got.every((b) => b === 0xff)).toBe(true);
    expect(log.lines.join('\n')).toMatch(/outside RAM/);
  });

  it('resumes a device that had nothing ready when it asserts DREQ again', () => {
    const { dma, ram, program8 } = setup();
    let ready = false;
    dma.registerChannel(2, {
      transfer(pos, size) {
        if (!ready) return pos;
        dma.dmaWrite(2, Uint8Array.of(7, 7, 7, 7), pos, size - pos);
        return size;
      },
    });
    program8(2, 0x100, 3, 0x44);
    dma.holdDreq(2);
    expect(ram[0x100]).toBe(0);
    ready = true;
    dma.holdDreq(2);
    expect(Array.from(ram.subarray(0x100, 0x104))).toEqual([7, 7, 7, 7]);
  });

  it('honours software requests and the controller-disable bit', () => {
    const { dma, ram, out, inb, program8 } = setup();
    device(dma, 2, Uint8Array.of(9, 9));
    program8(2, 0x200, 1, 0x84); // block mode
    out(0x08, 0x04); // disable DMA1
    out(0x09, 0x06); // software request on channel 2
    expect(inb(0x08) & 0x40).toBe(0x40);
    expect(ram[0x200]).toBe(0);
    out(0x08, 0x00); // enable
    expect(Array.from(ram.subarray(0x200, 0x202))).toEqual([9, 9]);
    expect(inb(0x08) & 0x40).toBe(0); // the request clears at TC
  });

  it('ignores garbage on every port without throwing', () => {
    const { dma, out, inb } = setup();
    dma.registerChannel(2, { transfer: (pos, size) => Math.min(size, pos + 3) });
    dma.holdDreq(2);
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    const ports = [
      ...Array.from({ length: 16 }, (_, i) => i),
      ...Array.from({ length: 32 }, (_, i) => 0xc0 + i),
      ...Array.from({ length: 15 }, (_, i) => 0x81 + i),
    ];
    expect(() => {
      for (let i = 0; i < 5000; i++) {
        const port = ports[rnd() % ports.length]!;
        if (rnd() & 1) out(port, rnd());
        else inb(port);
      }
      // Wider accesses are split into bytes.
      dma.dma1Ports.write(4, 2, 0xbeef);
      dma.dma2Ports.read(0x1e, 4);
      dma.pagePorts.write(13, 4, 0xffffffff);
    }).not.toThrow();
  });
});

describe('I8257Dma state', () => {
  it('saves and loads registers through JSON', () => {
    const a = setup();
    a.program8(2, 0x12345, 0x1ff, 0x56);
    a.out(0x0a, 0x06);
    a.out(0x0c, 0);
    a.out(0x04, 0x99); // leaves the flip-flop on the high byte
    a.out(0x8c, 0x42);
    const saved = JSON.parse(JSON.stringify(a.dma.saveState()));
    const b = setup();
    b.dma.loadState(saved);
    expect(b.dma.saveState()).toEqual(a.dma.saveState());
    expect(b.inb(0x04)).toBe(a.inb(0x04)); // same flip-flop position
    expect(b.dma.channelMode(2)).toBe(0x56);
    expect(b.dma.currentAddress(2)).toBe(a.dma.currentAddress(2));
  });

  it('refuses malformed state and other versions', () => {
    const { dma } = setup();
    const good = dma.saveState();
    expect(() => dma.loadState({ ...good, version: 2 })).toThrow(/version/);
    expect(() => dma.loadState({ ...good, pages: [1, 2, 3] })).toThrow(/malformed/);
    const bad = JSON.parse(JSON.stringify(good));
    bad.controllers[1].channels[3].curCount = 0x10000;
    expect(() => dma.loadState(bad)).toThrow(/malformed/);
  });
});
