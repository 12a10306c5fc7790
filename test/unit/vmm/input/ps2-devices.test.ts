import { describe, expect, it } from 'vitest';
import type { DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { Ps2Keyboard } from '../../../../src/vmm/input/ps2-keyboard.js';
import { Ps2Mouse } from '../../../../src/vmm/input/ps2-mouse.js';
import { translateSet2ToSet1 } from '../../../../src/vmm/input/ps2.js';

function fakeCtx(): DeviceContext {
  const log = new MemoryLogger();
  return {
    irq: { setIrq: () => {} },
    log,
    guestErrors: new RateLimitedLog(log),
    requestReset: () => {},
    requestPowerOff: () => {},
  };
}

function take(dev: { nextByte(): number | undefined }): number[] {
  const out: number[] = [];
  for (let b = dev.nextByte(); b !== undefined; b = dev.nextByte()) out.push(b);
  return out;
}

describe('Ps2Keyboard', () => {
  it('answers its commands', () => {
    const leds: number[] = [];
    const k = new Ps2Keyboard(fakeCtx(), { onLeds: (l) => leds.push(l) });
    k.receive(0xff);
    expect(take(k)).toEqual([0xfa, 0xaa]);
    k.receive(0xf2);
    expect(take(k)).toEqual([0xfa, 0xab, 0x83]);
    k.receive(0xed);
    k.receive(0x04);
    expect(take(k)).toEqual([0xfa, 0xfa]);
    expect(leds).toEqual([4]);
    k.receive(0xf0);
    k.receive(0x01);
    k.receive(0xf0);
    k.receive(0x00);
    expect(take(k)).toEqual([0xfa, 0xfa, 0xfa, 0xfa, 0x01]);
    k.receive(0x55);
    expect(take(k)).toEqual([0xfe]);
  });

  it('sends keys in the selected set and not while disabled', () => {
    const k = new Ps2Keyboard(fakeCtx());
    expect(k.pressKey([0x1c])).toBe(true);
    expect(take(k)).toEqual([0x1c]);
    k.receive(0xf0);
    k.receive(0x01);
    take(k);
    k.pressKey([0xf0, 0x1c]);
    expect(take(k)).toEqual([0x9e]);
    k.receive(0xf5);
    take(k);
    expect(k.pressKey([0x1c])).toBe(false);
    expect(take(k)).toEqual([]);
    k.receive(0xf4);
    take(k);
    expect(k.pressKey([0x1c])).toBe(true); // F5 restored set 2
    expect(take(k)).toEqual([0x1c]);
  });

  it('bounds its queue', () => {
    const k = new Ps2Keyboard(fakeCtx());
    for (let i = 0; i < 1000; i++) k.pressKey([0x1c]);
    expect(take(k).length).toBeLessThanOrEqual(256);
  });
});

describe('Ps2Mouse', () => {
  it('resets, identifies and reports status', () => {
    const m = new Ps2Mouse(fakeCtx());
    m.receive(0xff);
    expect(take(m)).toEqual([0xfa, 0xaa, 0x00]);
    m.receive(0xf2);
    expect(take(m)).toEqual([0xfa, 0x00]);
    m.receive(0xe8);
    m.receive(0x03);
    m.receive(0xe7);
    m.receive(0xf3);
    m.receive(40);
    m.receive(0xf4);
    expect(take(m)).toEqual([0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa]);
    m.move(0, 0, 0b101);
    take(m);
    m.receive(0xe9);
    expect(take(m)).toEqual([0xfa, 0x20 | 0x10 | 0x04 | 0x02, 0x03, 40]);
    m.receive(0xe6);
    expect(take(m)).toEqual([0xfa]);
    m.receive(0xf5);
    m.receive(0xe9);
    expect(take(m)).toEqual([0xfa, 0xfa, 0x06, 0x03, 40]);
  });

  it('switches to ID 3 after the 200/100/80 knock and sends wheel bytes', () => {
    const m = new Ps2Mouse(fakeCtx());
    for (const r of [200, 200, 80]) {
      m.receive(0xf3);
      m.receive(r);
    }
    m.receive(0xf2);
    expect(take(m).at(-1)).toBe(0);
    for (const r of [200, 100, 80]) {
      m.receive(0xf3);
      m.receive(r);
    }
    m.receive(0xf2);
    expect(take(m).at(-1)).toBe(3);
    m.receive(0xf4);
    take(m);
    m.move(-2, 4, 2, -1);
    expect(take(m)).toEqual([0x08 | 0x02 | 0x10 | 0x20, 0xfe, 0xfc, 0x01]);
  });

  it('splits large motions, holds motion in remote mode and echoes in wrap mode', () => {
    const m = new Ps2Mouse(fakeCtx());
    m.move(10, 10, 0); // reporting off: ignored
    expect(take(m)).toEqual([]);
    m.receive(0xf4);
    take(m);
    m.move(600, 0, 0);
    expect(take(m)).toEqual([0x08, 255, 0, 0x08, 255, 0, 0x08, 90, 0]);
    m.receive(0xf0); // remote
    take(m);
    m.move(3, 0, 0);
    expect(take(m)).toEqual([]);
    m.receive(0xeb);
    expect(take(m)).toEqual([0xfa, 0x08, 3, 0]);
    m.receive(0xee);
    m.receive(0x12);
    m.receive(0xec);
    expect(take(m)).toEqual([0xfa, 0x12, 0xfa]);
  });
});

describe('set 2 to set 1 translation', () => {
  it('maps make and break codes', () => {
    expect(translateSet2ToSet1([0x76, 0xf0, 0x76, 0xe0, 0xf0, 0x75, 0xfa, 0xaa, 0x83])).toEqual([
      0x01, 0x81, 0xe0, 0xc8, 0xfa, 0xaa, 0x41,
    ]);
  });
});
