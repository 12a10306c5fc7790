/**
 * Planted bad guests: a few bytes of code booted as a PVH kernel. Each must
 * end the VMM within seconds with one clear error line and the documented
 * exit code, never a hang or a spin.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tinyPvhElf, x86 } from '../helpers/tiny-elf.js';
import { hasKvm, kvmIsEmulated, runMvisor, tempDir } from '../helpers/mvisor.js';

function guest(code: number[]): { dir: string; kernel: string } {
  const dir = tempDir();
  const kernel = join(dir, 'guest.elf');
  writeFileSync(kernel, tinyPvhElf(code));
  return { dir, kernel };
}

function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.includes('error'));
}

describe.skipIf(!hasKvm())('planted bad guests', () => {
  it('a triple fault ends the VM with one error line and exit code 3', async () => {
    const g = guest([...x86.print('before\n'), ...x86.ud2]);
    const r = await runMvisor(
      { name: 'triple', memory: '16M', kernel: g.kernel },
      { dir: g.dir, timeoutMs: 30_000 },
    );
    expect(r.stdout).toContain('before');
    expect(r.code).toBe(3);
    const errs = errorLines(r.stderr);
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatch(/vcpu0: guest triple fault .* at RIP 0x[0-9a-f]+ \(32-bit protected mode, CPL 0/);
    expect(r.ms).toBeLessThan(20_000);
  });

  it('an instruction KVM cannot emulate ends the VM naming suberror, RIP, mode and bytes', async () => {
    // Fetching code from a guest-physical address with no RAM (MMIO) is
    // something KVM's emulator cannot do, on hardware and nested KVM alike.
    const g = guest([...x86.print('jumping\n'), ...x86.jumpTo(0xd0000000)]);
    const r = await runMvisor(
      { name: 'emufail', memory: '16M', kernel: g.kernel },
      { dir: g.dir, timeoutMs: 30_000 },
    );
    expect(r.stdout).toContain('jumping');
    expect(r.code).toBe(3);
    const errs = errorLines(r.stderr);
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatch(
      /vcpu0: KVM internal error, suberror 1 \(emulation failure\).* at RIP 0x[0-9a-f]+ \(32-bit protected mode/,
    );
    expect(r.ms).toBeLessThan(20_000);
  });

  it('fwait that KVM cannot emulate is completed by the VMM, and the guest goes on', async () => {
    const g = guest([...x86.fwait, ...x86.print('after-fwait\n'), ...x86.resetViaI8042, ...x86.hang]);
    const r = await runMvisor(
      { name: 'fwait', memory: '16M', kernel: g.kernel },
      { dir: g.dir, timeoutMs: 30_000 },
    );
    expect(r.stdout).toContain('after-fwait');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('guest reset (i8042 reset (0xFE))');
    if (kvmIsEmulated()) expect(r.stderr).toMatch(/could not emulate 'fwait'.*completed it in the VMM/);
  });
});
