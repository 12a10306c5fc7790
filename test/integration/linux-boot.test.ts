/**
 * Direct Linux boot of the guest-kit kernel under KVM. Guest kernel code is
 * slow where KVM emulates it (minutes per boot), so each boot checks many
 * things at once: what the kernel's built-in test module (guests/kernel/
 * mvisor_test.c) prints, and how mvisor ends.
 */
import { describe, expect, it } from 'vitest';
import {
  EMULATED_KVM_CMDLINE,
  guestKit,
  hasKvm,
  kvmIsEmulated,
  runMvisor,
  TEST_CPU,
  type RunResult,
} from '../helpers/mvisor.js';

const BOOT_TIMEOUT = 15 * 60_000;

function fact(r: RunResult, key: string): { value: string; at: number } {
  const re = new RegExp(`mvtest: .*\\b${key}=(\\S+)`);
  for (const l of r.lines) {
    const m = re.exec(l.text);
    if (m) return { value: m[1]!, at: l.at };
  }
  throw new Error(`no mvtest ${key}= line in the serial log:\n${r.stdout.slice(-3000)}\n${r.stderr}`);
}

function bootSummary(r: RunResult): string {
  const first = r.lines.find((l) => l.text.includes('Linux version'));
  const done = r.lines.find((l) => l.text.includes('mvtest: done'));
  return `exit ${r.code} after ${(r.ms / 1000).toFixed(1)} s; first kernel line after ${
    first ? ((first.at - (r.lines[0]?.at ?? first.at)) / 1000).toFixed(1) : '?'
  } s; test module done at guest time ${done?.text.match(/\[\s*([0-9.]+)\]/)?.[1] ?? '?'} s`;
}

describe.skipIf(!hasKvm())('Linux direct boot (guest kit)', () => {
  it(
    'vmlinux (PVH) with 2 vCPUs and 128 MiB: both CPUs up, memory, RTC time, initramfs, reset ends mvisor with 0',
    async () => {
      const kit = guestKit();
      const r = await runMvisor(
        {
          name: 'linux-pvh',
          memory: '128M',
          vcpus: 2,
          cpu: TEST_CPU,
          kernel: kit.kernel,
          initrd: kit.initramfs,
          cmdline: `console=ttyS0 acpi=off ${EMULATED_KVM_CMDLINE} mvisor_test.action=reboot`,
        },
        { timeoutMs: BOOT_TIMEOUT },
      );
      console.log(`PVH boot: ${bootSummary(r)}`);
      expect(r.stdout).toMatch(/smp: Brought up 1 node, 2 CPUs/);
      expect(fact(r, 'cpus_online').value).toBe('2');
      const memKb = Number(fact(r, 'mem_kb').value);
      expect(memKb).toBeGreaterThan(120 * 1024);
      expect(memKb).toBeLessThanOrEqual(128 * 1024);
      const rtc = fact(r, 'rtc_epoch');
      expect(Math.abs(Number(rtc.value) * 1000 - rtc.at)).toBeLessThan(60_000);
      expect(fact(r, 'initramfs').value).toMatch(/^mvisor-initramfs-[0-9a-f]{16}$/);
      expect(r.stdout).toContain('serial8250: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A');
      expect(r.stdout).toContain('reboot: Restarting system');
      expect(r.stderr).toMatch(/guest reset \(i8042 reset \(0xFE\)\)/);
      expect(r.code).toBe(0);
    },
    BOOT_TIMEOUT + 60_000,
  );

  it(
    'bzImage (64-bit boot protocol) with 1 vCPU: boot_params carry e820, command line and initrd; the kernel boots and resets',
    async () => {
      const kit = guestKit();
      const r = await runMvisor(
        {
          name: 'linux-bzimage',
          memory: '128M',
          vcpus: 1,
          cpu: TEST_CPU,
          kernel: kit.bzImage,
          initrd: kit.initramfs,
          cmdline: `console=ttyS0 acpi=off ${EMULATED_KVM_CMDLINE} mvisor_test.action=reboot`,
        },
        { timeoutMs: BOOT_TIMEOUT },
      );
      console.log(`bzImage boot: ${bootSummary(r)}`);
      // The payload is LZ4-compressed: any kernel line proves the decompressor ran.
      expect(r.stdout).toContain('Linux version 6.1');
      expect(r.stdout).toContain('mvisor_test.action=reboot'); // cmd_line_ptr
      expect(r.stdout).toContain('BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable');
      expect(r.stdout).toContain('BIOS-e820: [mem 0x00000000000f0000-0x00000000000fffff] reserved');
      expect(r.stdout).toContain('BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable');
      expect(fact(r, 'cpus_online').value).toBe('1');
      expect(fact(r, 'initramfs').value).toMatch(/^mvisor-initramfs-/);
      expect(r.code).toBe(0);
    },
    BOOT_TIMEOUT + 60_000,
  );

  // The same facts from user space (the initramfs /init, busybox). Where KVM
  // emulates guest kernel code in software, guest user space cannot make
  // system calls (DEVELOPERS.md), so this runs only on hardware-backed KVM;
  // the kernel test module above proves the same facts here.
  it.skipIf(kvmIsEmulated())(
    'user space: /init reports CPUs, memory and time, then reboots (hardware KVM only: skipped where KVM emulates guest kernels)',
    async () => {
      const kit = guestKit();
      const r = await runMvisor(
        {
          name: 'linux-init',
          memory: '128M',
          vcpus: 2,
          cpu: TEST_CPU,
          kernel: kit.kernel,
          initrd: kit.initramfs,
          cmdline: 'console=ttyS0 acpi=off mvisor_test.enable=0',
        },
        { timeoutMs: BOOT_TIMEOUT },
      );
      const line = (key: string) => r.stdout.match(new RegExp(`mvinit: ${key}=(\\S+)`))?.[1];
      expect(line('cpus_online')).toBe('2');
      expect(Number(line('mem_kb'))).toBeGreaterThan(100 * 1024);
      expect(Math.abs(Number(line('date')) * 1000 - Date.now())).toBeLessThan(120_000);
      expect(r.stdout).toContain('mvinit: done action=reboot');
      expect(r.code).toBe(0);
    },
    BOOT_TIMEOUT + 60_000,
  );
});
