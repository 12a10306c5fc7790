/**
 * Multiboot kernels booted by SeaBIOS (firmware: bios + kernel), through
 * mvisor's multiboot option ROM (src/vmm/firmware/roms/multiboot.asm), as
 * QEMU's -kernel does: the probe kernel (test/guests/multiboot/mb-probe.asm)
 * prints what it was handed, and the same kernel booted directly by the VMM
 * is the reference. The firmware-booted one must see the BIOS's memory map
 * (INT 15h E820, with SeaBIOS's own reservation at the top of RAM, which
 * the VMM's map lacks), and the BIOS must have left its state behind (the
 * 8259s programmed: kvm-unit-tests' realmode test relies on that, and runs
 * in the conformance suite).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import { runMvisor, tempDir, TEST_CPU } from '../helpers/mvisor.js';
import { buildMultibootProbe, parseProbe } from '../helpers/multiboot-probe.js';

const TIMEOUT = scaled(120_000);
// Built when the file loads: `make test` loads it natively first (vitest list), since
// the nested test host's root, where the cache lives, is read-only.
const PROBE = buildMultibootProbe();
const MB_BOOTLOADER_MAGIC = 0x2badb002;

describe('multiboot kernels under SeaBIOS', () => {
  it(
    'SeaBIOS boots a multiboot kernel through the option ROM: magic, command line, module, E820 map from the BIOS, flat protected mode',
    async () => {
      const dir = tempDir();
      const kernel = PROBE;
      const mod = join(dir, 'module.txt');
      writeFileSync(mod, 'module-bytes-0123456789\n');
      const base = {
        memory: '128M',
        vcpus: 1,
        cpu: TEST_CPU,
        kernel,
        cmdline: 'alpha beta=1',
        modules: [{ file: mod, cmdline: 'env' }],
        serial: 'stdio',
        devices: [{ class: 'isa-debug-exit', iobase: 0xf4, iosize: 4 }],
      };
      const fw = await runMvisor({ name: 'mb-bios', firmware: 'bios', ...base }, { timeoutMs: TIMEOUT, dir });
      const direct = await runMvisor(
        { name: 'mb-direct', firmware: 'direct', ...base },
        { timeoutMs: TIMEOUT, dir },
      );
      console.log(`multiboot under SeaBIOS: exit ${fw.code} after ${(fw.ms / 1000).toFixed(1)} s`);
      const a = parseProbe(fw.stdout);
      const b = parseProbe(direct.stdout);
      for (const [r, p] of [
        [fw, a],
        [direct, b],
      ] as const) {
        expect(p.done, r.stdout + r.stderr).toBe(true);
        expect(r.code).toBe(1); // isa-debug-exit: (0 << 1) | 1
        expect(p.magic).toBe(MB_BOOTLOADER_MAGIC);
        expect(p.cmdline).toBe(`${kernel} alpha beta=1`);
        expect(p.mods).toBe(1);
        expect(p.mod0).toBe('module-bytes-0123456789');
        expect(p.cr0 & 0x80000001).toBe(1); // protected mode, paging off
        expect(p.eflags & 0x200).toBe(0); // interrupts off
        expect(p.flags & 0x4d).toBe(0x4d); // memory, cmdline, mods, mmap valid
        expect(p.lower).toBeGreaterThanOrEqual(630);
      }
      // The VMM's map: RAM to 0x9FC00, reserved, RAM from 1 MiB to 128 MiB.
      const ramTop = (p: typeof a) =>
        Math.max(...p.mmap.filter((e) => e.type === 1 && e.base >= 0x100000).map((e) => e.base + e.length));
      expect(ramTop(b)).toBe(128 * 1024 * 1024);
      expect(b.upper).toBe(127 * 1024);
      // SeaBIOS reserves the top of RAM for itself; its E820 says so and the ROM passed that on.
      expect(ramTop(a)).toBeLessThan(128 * 1024 * 1024);
      expect(a.mmap.some((e) => e.type === 2 && e.base + e.length === 128 * 1024 * 1024)).toBe(true);
      expect(a.upper).toBe((ramTop(a) - 0x100000) / 1024);
    },
    TIMEOUT * 2,
  );

  it('refuses a kernel that is not multiboot with firmware bios, naming the field', async () => {
    const dir = tempDir();
    const notMb = join(dir, 'vmlinux');
    writeFileSync(notMb, Buffer.alloc(16384));
    const cfg = { name: 'mb-bad', memory: '64M', firmware: 'bios', kernel: notMb };
    const r = await runMvisor(cfg, { timeoutMs: scaled(30_000), dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/kernel: .*with firmware bios the kernel must be a multiboot kernel/);
  });

  it('refuses, naming the range, a kernel that would load over the BIOS (below 0x7C00)', async () => {
    const dir = tempDir();
    const low = join(dir, 'low.flat');
    const img = Buffer.alloc(0x200, 0x90);
    const flags = 0x00010000; // a.out kludge: load at 0x1000
    [0x1badb002, flags, -(0x1badb002 + flags) >>> 0, 0x1000, 0x1000, 0x1200, 0, 0x1020].forEach((v, i) =>
      img.writeUInt32LE(v, i * 4),
    );
    writeFileSync(low, img);
    const r = await runMvisor(
      { name: 'mb-low', memory: '64M', firmware: 'bios', kernel: low },
      { timeoutMs: scaled(30_000), dir },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('low.flat: loads 0x1000-0x1200, where the BIOS lives');
  });
});
