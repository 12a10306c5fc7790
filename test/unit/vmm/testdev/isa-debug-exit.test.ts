import { describe, expect, it } from 'vitest';
import { Bus } from '../../../../src/vmm/core/bus.js';
import {
  DEBUG_EXIT_DEFAULT_IOBASE,
  DEBUG_EXIT_DEFAULT_IOSIZE,
  IsaDebugExit,
  debugExitCode,
  debugExitStatus,
  type IsaDebugExitOptions,
} from '../../../../src/vmm/testdev/isa-debug-exit.js';
import { fakeCtx } from '../pci/helpers.js';

/** The device on a real port bus, where the machine puts it; `exits` records onExit. */
function setup(opts: Partial<IsaDebugExitOptions> = {}) {
  const f = fakeCtx();
  const exits: Array<{ code: number; reason: string }> = [];
  const dev = new IsaDebugExit(f.ctx, {
    onExit: (code, reason) => void exits.push({ code, reason }),
    ...opts,
  });
  const pio = new Bus('pio');
  pio.register(dev.iobase, dev.iosize, dev, dev.name);
  return { ...f, dev, pio, exits };
}

describe('isa-debug-exit', () => {
  it('sits at QEMU default ports 0x501-0x502 unless told otherwise', () => {
    const { dev, pio, exits } = setup();
    expect([dev.iobase, dev.iosize]).toEqual([DEBUG_EXIT_DEFAULT_IOBASE, DEBUG_EXIT_DEFAULT_IOSIZE]);
    expect([dev.iobase, dev.iosize]).toEqual([0x501, 2]);
    pio.write(0x503, 1, 0);
    expect(exits).toEqual([]);
    pio.write(0x502, 1, 2);
    expect(exits.map((e) => e.code)).toEqual([5]);
  });

  it('exits with (v << 1) | 1 for 1-, 2- and 4-byte writes anywhere in iobase=0xf4,iosize=4', () => {
    const { pio, exits } = setup({ iobase: 0xf4, iosize: 4 });
    pio.write(0xf4, 4, 0); // kvm-unit-tests exit(0): outl(0, 0xf4)
    pio.write(0xf4, 4, 1); // a failed report_summary()
    pio.write(0xf5, 1, 0x10);
    pio.write(0xf6, 2, 0x3f);
    pio.write(0xf7, 1, 0x7f);
    expect(exits.map((e) => e.code)).toEqual([1, 3, 0x21, 0x7f, 0xff]);
    pio.write(0xf8, 1, 1); // not the device's
    pio.write(0xf3, 4, 1);
    expect(exits).toHaveLength(5);
  });

  it('keeps the low 8 bits of the status for the process, and the full value in the reason', () => {
    const { pio, exits, log } = setup({ iobase: 0xf4, iosize: 4 });
    pio.write(0xf4, 1, 0x80);
    pio.write(0xf4, 4, 0xffff_ffff);
    pio.write(0xf4, 2, 0x1234);
    expect(exits.map((e) => e.code)).toEqual([1, 0xff, 0x69]);
    expect(exits[0]!.reason).toBe(
      'guest wrote 0x80 to isa-debug-exit (1-byte write to port 0xf4): QEMU status 0x101, process exit code 1',
    );
    expect(exits[1]!.reason).toContain('QEMU status 0x1ffffffff, process exit code 255');
    expect(exits[2]!.reason).toContain('guest wrote 0x1234');
    expect(exits[2]!.reason).toContain('QEMU status 0x2469, process exit code 105');
    // Only at debug level: kvm-unit-tests' scripts read other stderr lines as a VMM failure.
    expect(log.lines.every((l) => l.startsWith('debug: '))).toBe(true);
    expect(log.lines).toHaveLength(3);
  });

  it('uses only the bytes of the access size', () => {
    const { dev, exits } = setup({ iobase: 0xf4, iosize: 4 });
    dev.write(0, 1, 0x1ff);
    dev.write(0, 2, 0xfff_0001);
    expect(exits.map((e) => e.code)).toEqual([0xff, 3]);
    expect(exits[0]!.reason).toContain('guest wrote 0xff ');
  });

  it('computes QEMU status and the exit code the shell sees', () => {
    for (const [v, status, code] of [
      [0, 1, 1],
      [1, 3, 3],
      [0x7f, 0xff, 0xff],
      [0x80, 0x101, 1],
      [0xff, 0x1ff, 0xff],
      [0xffff_ffff, 0x1_ffff_ffff, 0xff],
    ] as const) {
      expect(debugExitStatus(v)).toBe(status);
      expect(debugExitCode(v)).toBe(code);
      expect(debugExitCode(v)).toBe(debugExitStatus(v) % 256);
    }
  });

  it('reads 0 at every port and size, as QEMU', () => {
    const { pio, exits } = setup({ iobase: 0xf4, iosize: 4 });
    expect([pio.read(0xf4, 1), pio.read(0xf5, 2), pio.read(0xf4, 4), pio.read(0xf7, 1)]).toEqual([
      0, 0, 0, 0,
    ]);
    expect(exits).toEqual([]);
  });

  it('refuses a range outside the port space', () => {
    const { ctx } = fakeCtx();
    const onExit = () => {};
    expect(() => new IsaDebugExit(ctx, { onExit, iobase: 0x10000 })).toThrow(/iobase/);
    expect(() => new IsaDebugExit(ctx, { onExit, iobase: -1 })).toThrow(/iobase/);
    expect(() => new IsaDebugExit(ctx, { onExit, iobase: 0xfffe, iosize: 4 })).toThrow(/iosize 4/);
    expect(() => new IsaDebugExit(ctx, { onExit, iosize: 0 })).toThrow(/iosize 0/);
    expect(new IsaDebugExit(ctx, { onExit, iobase: 0xfffc, iosize: 4 }).iosize).toBe(4);
  });

  it('has a versioned (empty) state', () => {
    const { dev } = setup();
    expect(dev.saveState()).toEqual({ version: 1 });
    dev.loadState({ version: 1 });
    expect(() => dev.loadState({ version: 2 })).toThrow(/version 2/);
  });
});
