import { describe, expect, it } from 'vitest';
import { Bus } from '../../../../src/vmm/core/bus.js';
import type { DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { I8042 } from '../../../../src/vmm/input/i8042.js';
import { Ps2Keyboard } from '../../../../src/vmm/input/ps2-keyboard.js';
import { Ps2Mouse } from '../../../../src/vmm/input/ps2-mouse.js';

function setup(withMouse = true) {
  const log = new MemoryLogger();
  const irqs: Array<[number, boolean]> = [];
  const levels = new Map<number, boolean>();
  const resets: string[] = [];
  const ctx: DeviceContext = {
    irq: {
      setIrq: (gsi, level) => {
        irqs.push([gsi, level]);
        levels.set(gsi, level);
      },
    },
    log,
    guestErrors: new RateLimitedLog(log),
    requestReset: (reason) => resets.push(reason),
    requestPowerOff: () => {},
  };
  const keyboard = new Ps2Keyboard(ctx);
  const mouse = new Ps2Mouse(ctx);
  const kbc = new I8042(ctx, { keyboard, mouse: withMouse ? mouse : undefined });
  const pio = new Bus('pio');
  pio.register(0x60, 1, kbc.dataPort, 'i8042');
  pio.register(0x64, 1, kbc.commandPort, 'i8042');
  const status = () => pio.read(0x64, 1);
  const cmd = (c: number, ...args: number[]) => {
    pio.write(0x64, 1, c);
    for (const a of args) pio.write(0x60, 1, a);
  };
  const data = (v: number) => pio.write(0x60, 1, v);
  /** Reads everything in the output buffer, as Linux's i8042_flush does. */
  const drain = (): number[] => {
    const out: number[] = [];
    for (let i = 0; i < 1000 && status() & 1; i++) out.push(pio.read(0x60, 1));
    return out;
  };
  /** Reads the output buffer with the AUXB bit of each byte. */
  const drainTagged = (): Array<[number, boolean]> => {
    const out: Array<[number, boolean]> = [];
    for (let i = 0; i < 1000; i++) {
      const s = status();
      if (!(s & 1)) break;
      out.push([pio.read(0x60, 1), (s & 0x20) !== 0]);
    }
    return out;
  };
  return { ctx, log, irqs, levels, resets, keyboard, mouse, kbc, pio, status, cmd, data, drain, drainTagged };
}

describe('I8042 controller', () => {
  it('passes the self test and sets the system flag', () => {
    const t = setup();
    expect(t.status() & 0x04).toBe(0);
    t.cmd(0xaa);
    expect(t.status() & 0x01).toBe(1);
    expect(t.status() & 0x08).toBe(0x08); // last write was a command
    expect(t.drain()).toEqual([0x55]);
    expect(t.status() & 0x04).toBe(0x04);
    expect(t.status() & 0x10).toBe(0x10); // not inhibited
    expect(t.status() & 0x02).toBe(0); // IBF
    t.cmd(0xab);
    expect(t.drain()).toEqual([0x00]);
    t.cmd(0xa9);
    expect(t.drain()).toEqual([0x00]);
  });

  it('reads and writes the CTR', () => {
    const t = setup();
    t.cmd(0x20);
    expect(t.drain()).toEqual([0x43]);
    t.cmd(0x60, 0x74);
    expect(t.status() & 0x08).toBe(0); // last write was data
    t.cmd(0x20);
    expect(t.drain()).toEqual([0x74]);
    expect(t.kbc.ctr).toBe(0x74);
    t.cmd(0xa8);
    t.cmd(0xae);
    expect(t.kbc.ctr).toBe(0x44);
    t.cmd(0xa7);
    t.cmd(0xad);
    expect(t.kbc.ctr).toBe(0x74);
  });

  it('resets and identifies the keyboard through ports 0x60/0x64 (translated and raw)', () => {
    const t = setup();
    t.data(0xff);
    expect(t.drain()).toEqual([0xfa, 0xaa]);
    t.data(0xf2);
    expect(t.drain()).toEqual([0xfa, 0xab, 0x41]); // set 1 translation of 0x83
    t.cmd(0x60, 0x00); // translation off, interrupts off
    t.data(0xf2);
    expect(t.drain()).toEqual([0xfa, 0xab, 0x83]);
    t.data(0xed);
    t.data(0x07);
    expect(t.drain()).toEqual([0xfa, 0xfa]);
    expect(t.keyboard.leds).toBe(7);
    t.data(0xf0);
    t.data(0x00);
    expect(t.drain()).toEqual([0xfa, 0xfa, 0x02]);
    const replies = [0xf3, 0x20, 0xee, 0xf5, 0xf4, 0xf6, 0xfe, 0x42].map((v) => {
      t.data(v);
      return t.drain();
    });
    expect(replies).toEqual([[0xfa], [0xfa], [0xee], [0xfa], [0xfa], [0xfa], [0xfa], [0xfe]]);
  });

  it('translates key presses to set 1 and raises IRQ 1 when the CTR enables it', () => {
    const t = setup();
    t.cmd(0x60, 0x40); // translate, no interrupts
    t.keyboard.pressKey([0x1c]);
    expect(t.irqs).toEqual([]);
    expect(t.drain()).toEqual([0x1e]);
    t.cmd(0x60, 0x41); // keyboard interrupt on
    t.keyboard.pressKey([0xf0, 0x1c]);
    expect(t.levels.get(1)).toBe(true);
    expect(t.drain()).toEqual([0x9e]);
    expect(t.levels.get(1)).toBe(false);
    t.keyboard.pressKey([0xe0, 0x75]);
    expect(t.drain()).toEqual([0xe0, 0x48]);
    t.cmd(0x60, 0x01); // raw set 2
    t.keyboard.pressKey([0xf0, 0x1c]);
    expect(t.drain()).toEqual([0xf0, 0x1c]);
  });

  it('holds keyboard bytes while the keyboard port is disabled', () => {
    const t = setup();
    t.cmd(0xad);
    t.keyboard.pressKey([0x1c]);
    expect(t.status() & 1).toBe(0);
    t.cmd(0xae);
    expect(t.drain()).toEqual([0x1e]);
  });

  it('requests a reset on 0xFE and on an output port write with bit 0 clear', () => {
    const t = setup();
    t.cmd(0xff);
    expect(t.resets).toEqual([]);
    t.cmd(0xfe);
    expect(t.resets).toEqual(['i8042 reset (0xFE)']);
    t.cmd(0xd1, 0xdf);
    expect(t.resets).toHaveLength(1);
    t.cmd(0xd0);
    expect(t.drain()).toEqual([0xcf]);
    t.cmd(0xd1, 0xdc); // A20 off and reset
    expect(t.resets).toEqual(['i8042 reset (0xFE)', 'i8042 output port']);
    expect(t.kbc.a20Enabled).toBe(false);
    t.cmd(0xdf);
    expect(t.kbc.a20Enabled).toBe(true);
  });

  it('resets the mouse through 0xD4 and delivers its bytes as aux data on IRQ 12', () => {
    const t = setup();
    t.cmd(0x60, 0x47);
    t.cmd(0xd4, 0xff);
    expect(t.status() & 0x21).toBe(0x21);
    expect(t.levels.get(12)).toBe(true);
    expect(t.drainTagged()).toEqual([
      [0xfa, true],
      [0xaa, true],
      [0x00, true],
    ]);
    expect(t.levels.get(12)).toBe(false);
    expect(t.levels.get(1)).toBeFalsy();
    t.cmd(0xd4, 0xf2);
    expect(t.drain()).toEqual([0xfa, 0x00]);
  });

  it('runs the Linux i8042 probe sequence', () => {
    const t = setup();
    expect(t.drain()).toEqual([]); // i8042_flush
    t.cmd(0xaa);
    expect(t.drain()).toEqual([0x55]);
    t.cmd(0x20);
    const ctr = t.drain()[0]!;
    t.cmd(0x20);
    expect(t.drain()).toEqual([ctr]);
    const init = (ctr | 0x10) & ~0x03; // KBDDIS, no interrupts
    t.cmd(0x60, init);
    // i8042_check_mux: loopback f0, 56, a4 echo back: not a MUX
    for (const v of [0xf0, 0x56, 0xa4]) {
      t.cmd(0xd3, v);
      expect(t.status() & 0x20).toBe(0x20);
      expect(t.drain()).toEqual([v]);
    }
    // i8042_check_aux
    t.cmd(0xd3, 0x5a);
    expect(t.drainTagged()).toEqual([[0x5a, true]]);
    t.cmd(0xa7);
    t.cmd(0x20);
    expect(t.drain()[0]! & 0x20).toBe(0x20);
    t.cmd(0xa8);
    t.cmd(0x20);
    expect(t.drain()[0]! & 0x20).toBe(0);
    t.cmd(0x60, (init & ~0x20) | 0x02);
    t.cmd(0xd3, 0xa5);
    expect(t.levels.get(12)).toBe(true);
    expect(t.drainTagged()).toEqual([[0xa5, true]]);
    // enable the keyboard port with interrupts, then atkbd probes
    t.cmd(0x60, (init & ~0x10) | 0x03);
    t.data(0xff);
    expect(t.drain()).toEqual([0xfa, 0xaa]);
    t.data(0xf2);
    expect(t.drain()).toEqual([0xfa, 0xab, 0x41]);
    t.data(0xf5);
    t.data(0xf3);
    t.data(0x00);
    t.data(0xed);
    t.data(0x00);
    t.data(0xf4);
    expect(t.drain()).toEqual([0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa]);
    // psmouse: reset, ID, IntelliMouse knock
    t.cmd(0xd4, 0xff);
    expect(t.drain()).toEqual([0xfa, 0xaa, 0x00]);
    for (const rate of [200, 100, 80]) {
      t.cmd(0xd4, 0xf3);
      t.cmd(0xd4, rate);
    }
    expect(t.drain()).toEqual([0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa]);
    t.cmd(0xd4, 0xf2);
    expect(t.drain()).toEqual([0xfa, 0x03]);
    t.cmd(0xd4, 0xf4);
    expect(t.drain()).toEqual([0xfa]);
    t.mouse.move(5, -3, 1, 1);
    expect(t.drainTagged()).toEqual([
      [0x09, true],
      [5, true],
      [3, true],
      [0xff, true],
    ]);
  });

  it('ignores reads of an empty buffer and commands it does not know', () => {
    const t = setup();
    t.cmd(0x20);
    expect(t.drain()).toEqual([0x43]);
    expect(t.pio.read(0x60, 1)).toBe(0x43); // last byte again
    t.cmd(0x12);
    expect(t.log.lines.some((l) => l.includes('unsupported controller command 0x12'))).toBe(true);
  });

  it('answers 0xD4 without a mouse', () => {
    const t = setup(false);
    t.cmd(0xd4, 0xff);
    expect(t.drainTagged()).toEqual([[0xfe, true]]);
  });

  it('survives every command and data value', () => {
    const t = setup();
    for (let c = 0; c < 256; c++) {
      for (let v = 0; v < 256; v++) {
        t.pio.write(0x64, 1, c);
        t.pio.write(0x60, 1, v);
        t.pio.read(0x60, 1);
        t.pio.read(0x64, 1);
      }
      t.drain();
    }
    for (let c = 0; c < 256; c++) {
      for (let v = 0; v < 256; v++) {
        t.cmd(0xd4, c);
        t.cmd(0xd4, v);
        t.data(c);
        t.data(v);
        t.pio.read(0x60, 1);
      }
      t.drain();
    }
    for (const size of [2, 4] as const) {
      for (let v = 0; v < 1024; v++) {
        t.kbc.dataPort.write(0, size, v * 0x01010101);
        t.kbc.commandPort.write(0, size, 0xaa);
        t.kbc.dataPort.read(0, size);
        t.kbc.commandPort.read(0, size);
      }
    }
    expect(t.resets.length).toBeGreaterThan(0);
  });

  it('round-trips controller, keyboard and mouse state', () => {
    const t = setup();
    t.cmd(0x60, 0x47);
    t.keyboard.pressKey([0x1c, 0xf0, 0x1c]);
    t.cmd(0xd4, 0xf4);
    t.mouse.move(1, 1, 0);
    t.cmd(0x20);
    t.cmd(0xd1); // pending command
    const s = [t.kbc.saveState(), t.keyboard.saveState(), t.mouse.saveState()];
    const u = setup();
    u.keyboard.loadState(JSON.parse(JSON.stringify(s[1])));
    u.mouse.loadState(JSON.parse(JSON.stringify(s[2])));
    u.kbc.loadState(JSON.parse(JSON.stringify(s[0])));
    expect([u.kbc.saveState(), u.keyboard.saveState(), u.mouse.saveState()]).toEqual(s);
    expect(u.levels.get(1)).toBe(true);
    u.data(0xdf); // completes 0xD1 without a reset
    expect(u.resets).toEqual([]);
    t.data(0xdf);
    expect(u.drainTagged()).toEqual(t.drainTagged());
    expect(() => u.kbc.loadState({ version: 2 })).toThrow();
    expect(() => u.keyboard.loadState({ ...s[1]!, queue: [300] })).toThrow();
    expect(() => u.mouse.loadState({ ...s[2]!, version: 0 })).toThrow();
  });
});
