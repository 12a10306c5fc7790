/**
 * Planted guests: a few bytes of code booted as a PVH kernel. A broken one
 * must end the VMM within seconds with one clear error line and the
 * documented exit code, never a hang or a spin; the others prove how a
 * guest (or the host) ends the VM.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import { pvpanicGuest, tinyPvhElf, x86 } from '../helpers/tiny-elf.js';
import { mvisorBin, runMvisor, tempDir } from '../helpers/mvisor.js';

function guest(code: number[]): { dir: string; kernel: string } {
  const dir = tempDir();
  const kernel = join(dir, 'guest.elf');
  writeFileSync(kernel, tinyPvhElf(code));
  return { dir, kernel };
}

function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.includes('error'));
}

describe('planted guests', () => {
  it('a triple fault ends the VM with one error line and exit code 3', async () => {
    const g = guest([...x86.print('before\n'), ...x86.ud2]);
    const r = await runMvisor(
      { name: 'triple', memory: '16M', kernel: g.kernel },
      { dir: g.dir, timeoutMs: scaled(30_000) },
    );
    expect(r.stdout).toContain('before');
    expect(r.code).toBe(3);
    const errs = errorLines(r.stderr);
    expect(errs).toHaveLength(1);
    // KVM on AMD SVM (kvm_amd) resets the vCPU at a shutdown: the registers at the fault are gone.
    expect(errs[0]).toMatch(
      existsSync('/sys/module/kvm_amd')
        ? /vcpu0: guest triple fault \(KVM_EXIT_SHUTDOWN\); its registers at the fault are lost \(on AMD SVM/
        : /vcpu0: guest triple fault .* at RIP 0x[0-9a-f]+ \(32-bit protected mode, CPL 0/,
    );
    expect(r.ms).toBeLessThan(scaled(20_000));
  });

  it('an instruction KVM cannot emulate ends the VM naming suberror, RIP, mode and bytes', async () => {
    // Fetching code from a guest-physical address with no RAM (MMIO) is
    // something KVM's emulator cannot do, on hardware and nested KVM alike.
    const g = guest([...x86.print('jumping\n'), ...x86.jumpTo(0xd0000000)]);
    const r = await runMvisor(
      { name: 'emufail', memory: '16M', kernel: g.kernel },
      { dir: g.dir, timeoutMs: scaled(30_000) },
    );
    expect(r.stdout).toContain('jumping');
    expect(r.code).toBe(3);
    const errs = errorLines(r.stderr);
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatch(
      /vcpu0: KVM internal error, suberror 1 \(emulation failure\).* at RIP 0x[0-9a-f]+ \(32-bit protected mode/,
    );
    expect(r.ms).toBeLessThan(scaled(20_000));
  });

  it('a write of RST_CPU to port 0xCF9 resets the guest, which ends mvisor with 0', async () => {
    const g = guest([...x86.print('resetting\n'), ...x86.resetViaCf9, ...x86.hang]);
    const r = await runMvisor(
      { name: 'cf9', memory: '16M', kernel: g.kernel },
      { dir: g.dir, timeoutMs: scaled(30_000) },
    );
    expect(r.stdout).toContain('resetting');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('guest reset (port 0xCF9 write 0x6)');
  });

  it('SIGTERM stops a running guest cleanly with exit code 0, however often it comes', async () => {
    const g = guest([...x86.print('up\n'), ...x86.hang]);
    writeFileSync(join(g.dir, 'vm.yaml'), `name: term\nmemory: 16M\nkernel: ${g.kernel}\n`);
    const child = spawn(process.execPath, [mvisorBin, '-c', join(g.dir, 'vm.yaml')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let repeat: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!out.includes('up') || repeat) return;
      // As a supervisor may: again and again while the VMM shuts down (it flushes and unlocks
      // its images, then its output) until it is gone. No signal may kill it.
      child.kill('SIGTERM');
      repeat = setInterval(
        () => child.exitCode === null && child.signalCode === null && child.kill('SIGTERM'),
        1,
      );
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) =>
      child.on('close', (c, s) => r([c, s])),
    );
    clearInterval(repeat);
    expect({ code, signal, err: code === 0 ? '' : err }).toEqual({ code: 0, signal: null, err: '' });
    expect(err).toContain('stopped by SIGTERM');
  });

  it('fwait runs (where KVM cannot emulate it, the VMM completes it), and the guest goes on', async () => {
    const g = guest([...x86.fwait, ...x86.print('after-fwait\n'), ...x86.resetViaI8042, ...x86.hang]);
    const r = await runMvisor(
      { name: 'fwait', memory: '16M', kernel: g.kernel },
      { dir: g.dir, timeoutMs: scaled(30_000) },
    );
    expect(r.stdout).toContain('after-fwait');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('guest reset (i8042 reset (0xFE))');
  });

  it('pvpanic: a guest that reports a panic ends the VM with exit code 3 (onPanic: stop), or goes on (log)', async () => {
    const bar = 0xfebf_0000;
    const run = async (onPanic: 'stop' | 'log') => {
      const g = guest(pvpanicGuest(5, bar, 0x10));
      return runMvisor(
        {
          name: `pvpanic-${onPanic}`,
          memory: '16M',
          kernel: g.kernel,
          devices: [
            { class: 'pvpanic', slot: 5, onPanic },
            { class: 'isa-debug-exit', iobase: 0xf4, iosize: 4 },
          ],
        },
        { dir: g.dir, timeoutMs: scaled(30_000) },
      );
    };
    const stop = await run('stop');
    expect(stop.stdout).toContain('ID-OK\nCAPS=3\n');
    expect(stop.code).toBe(3);
    expect(stop.stderr).toContain('guest panicked (pvpanic)');
    const log = await run('log');
    expect(log.stdout).toContain('ID-OK\nCAPS=3\nAFTER-PANIC\n');
    expect(log.stderr).toContain('pvpanic: the guest panicked (onPanic: log, the VM goes on)');
    expect(log.code).toBe(0x21); // isa-debug-exit: (0x10 << 1) | 1
  });
});
