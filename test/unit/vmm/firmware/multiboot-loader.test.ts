import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildE820 } from '../../../../src/vmm/boot/e820.js';
import { BootError } from '../../../../src/vmm/boot/errors.js';
import { pcMemoryLayout } from '../../../../src/vmm/boot/layout.js';
import { planMultibootKernel } from '../../../../src/vmm/boot/multiboot.js';
import type { MultibootPlan } from '../../../../src/vmm/boot/multiboot.js';
import {
  MULTIBOOT_MAX_CHUNKS,
  MULTIBOOT_PLAN_MAGIC,
  multibootData,
  multibootPlanFile,
  multibootRom,
} from '../../../../src/vmm/firmware/multiboot-loader.js';
import { repoRoot } from '../../../helpers/mvisor.js';
import { memoryFor } from '../boot/helpers.js';

const MiB = 1024 * 1024;

/** A multiboot a.out-kludge kernel: header at 0, loaded at 1 MiB, 0x200 bytes, bss to 0x101000. */
function kernel(): Uint8Array {
  const img = new Uint8Array(0x200).fill(0x5a);
  const dv = new DataView(img.buffer);
  const flags = 0x00010000;
  [0x1badb002, flags, -(0x1badb002 + flags) >>> 0, 0x100000, 0x100000, 0x100200, 0x101000, 0x100020].forEach(
    (v, i) => dv.setUint32(i * 4, v, true),
  );
  return img;
}

function plan(): MultibootPlan {
  const layout = pcMemoryLayout(64 * MiB);
  return planMultibootKernel(memoryFor(layout), kernel(), 'k.flat', {
    cmdline: 'a b',
    modules: [{ data: Uint8Array.of(1, 2, 3), cmdline: 'env' }],
    e820: buildE820(layout),
    lowRamEnd: layout.lowRam.size,
    mmapCapacity: 32,
    infoInConventionalMemory: true,
  });
}

describe('firmware boot of multiboot kernels: what the ROM gets', () => {
  it('the plan file: magic, entry, info block, map, data selector, chunks with their lengths', () => {
    const p = plan();
    const f = multibootPlanFile(p, 0x2a, 'k.flat');
    const dv = new DataView(f.buffer);
    expect(f.length).toBe(24 + 8 * 3);
    expect(dv.getUint32(0, true)).toBe(MULTIBOOT_PLAN_MAGIC);
    expect(String.fromCharCode(...f.subarray(0, 4))).toBe('MVMB');
    expect(dv.getUint32(4, true)).toBe(0x100020);
    expect(dv.getUint32(8, true)).toBe(p.infoAddr);
    expect(dv.getUint32(12, true)).toBe(p.mmap.addr);
    expect(dv.getUint32(16, true)).toBe(32);
    expect(dv.getUint16(20, true)).toBe(0x2a);
    expect(dv.getUint16(22, true)).toBe(3);
    expect([dv.getUint32(24, true), dv.getUint32(28, true)]).toEqual([0x100000, 0x1000]);
    expect(dv.getUint32(36, true)).toBe(3);
    const data = multibootData(p);
    expect(data.length).toBe(0x1000 + 3 + p.info.size);
    expect(data[0x100]).toBe(0x5a);
    expect(data.subarray(0x200, 0x1000).every((b) => b === 0)).toBe(true);
    expect([...data.subarray(0x1000, 0x1003)]).toEqual([1, 2, 3]);
  });

  it('refuses more chunks than the ROM takes, and an info block above 640 KiB', () => {
    const p = plan();
    const many = { ...p, writes: Array.from({ length: MULTIBOOT_MAX_CHUNKS + 1 }, () => p.writes[0]!) };
    expect(() => multibootPlanFile(many, 0x20, 'k.flat')).toThrow(BootError);
    expect(() => multibootPlanFile(many, 0x20, 'k.flat')).toThrow(/33 pieces to load/);
    const high = { ...p, infoAddr: 0x200000 };
    expect(() => multibootPlanFile(high, 0x20, 'k.flat')).toThrow(/below 640 KiB/);
  });

  it('the ROM: 55 AA, its size, checksums that sum to 0, a $PnP header with a BEV', () => {
    const rom = multibootRom();
    expect([rom[0], rom[1]]).toEqual([0x55, 0xaa]);
    expect(rom[2]! * 512).toBe(rom.length);
    expect(rom.reduce((s, b) => (s + b) & 0xff, 0)).toBe(0);
    const pnp = rom[0x1a]! | (rom[0x1b]! << 8);
    expect(String.fromCharCode(...rom.subarray(pnp, pnp + 4))).toBe('$PnP');
    expect(rom.subarray(pnp, pnp + 32).reduce((s, b) => (s + b) & 0xff, 0)).toBe(0);
    expect(rom[pnp + 0x1a]! | (rom[pnp + 0x1b]! << 8)).toBeGreaterThan(0);
  });

  it('the embedded ROM is what nasm makes of roms/multiboot.asm (scripts/build-roms.mjs --check)', () => {
    expect(() =>
      execFileSync(process.execPath, [join(repoRoot, 'scripts/build-roms.mjs'), '--check'], {
        stdio: 'pipe',
      }),
    ).not.toThrow();
  });
});
