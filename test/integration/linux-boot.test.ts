/**
 * Direct Linux boot of the guest-kit kernel under KVM. A boot costs tens of
 * seconds inside the nested test host, so each boot checks many things at
 * once: what the kernel's built-in test module (guests/kernel/
 * mvisor_test.c) prints, what the busybox user space prints, and how
 * mvisor ends.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import {
  guestKit,
  initramfsWithTest,
  runMvisor,
  tempDir,
  TEST_CPU,
  type RunResult,
} from '../helpers/mvisor.js';

// These boots take 1-5 s natively and 40-60 s nested. A boot that stalls (seen nested, under the
// emulated SVM, in two of three CI simulations) fails at the time-out and is tried again (NESTED_RETRY): a
// time-out of 4x the nested time, not 12x, keeps a stall within the shard's time.
const BOOT_TIMEOUT = scaled(60_000);

/** The pid of the mvisor process running the config at `path`. */
function mvisorPid(path: string): number {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.endsWith('mvisor.js')) && argv.includes(path)) return Number(pid);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no mvisor process runs ${path}`);
}

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

describe('Linux direct boot (guest kit)', () => {
  it(
    'vmlinux (PVH) with 2 vCPUs and 128 MiB: the test module sees both CPUs, memory, RTC time and the initramfs; then the busybox user space runs an appended /test.sh and reboots, ending mvisor with 0',
    async () => {
      const kit = guestKit();
      const dir = tempDir();
      const initrd = initramfsWithTest(
        [
          'echo "t: cpus=$(grep -c ^processor /proc/cpuinfo)"',
          'echo "t: mem_kb=$(awk \'/MemTotal/ {print $2}\' /proc/meminfo)"',
          'echo "t: date=$(date +%s)"',
          'echo "t: sum=$(cat /payload.txt | sha256sum | cut -c1-16)"',
          'exit 3',
        ].join('\n'),
        { dir, files: { 'payload.txt': 'appended archive\n' } },
      );
      const r = await runMvisor(
        {
          name: 'linux-pvh',
          memory: '128M',
          vcpus: 2,
          cpu: TEST_CPU,
          kernel: kit.kernel,
          initrd,
          // action=none: the test module reports, then the kernel runs /init.
          cmdline: `console=ttyS0 acpi=off mvisor_test.action=none`,
        },
        { timeoutMs: BOOT_TIMEOUT, dir },
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
      // User space: busybox runs the appended script, whose file came in the same archive.
      const t = (key: string) => r.stdout.match(new RegExp(`^t: ${key}=(\\S+)`, 'm'))?.[1];
      expect(r.stdout).toContain('mvinit: test.sh begin');
      expect(t('cpus')).toBe('2');
      expect(Number(t('mem_kb'))).toBeGreaterThan(100 * 1024);
      expect(Math.abs(Number(t('date')) * 1000 - Date.now())).toBeLessThan(120_000);
      expect(t('sum')).toBe(createHash('sha256').update('appended archive\n').digest('hex').slice(0, 16));
      expect(r.stdout).toContain('mvinit: test.sh exit=3');
      expect(r.stdout).toContain('mvinit: done action=reboot');
      expect(r.stdout).toContain('reboot: Restarting system');
      expect(r.stderr).toMatch(/guest reset \(i8042 reset \(0xFE\)\)/);
      expect(r.code).toBe(0);
    },
    BOOT_TIMEOUT + scaled(30_000),
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
          cmdline: `console=ttyS0 acpi=off mvisor_test.action=reboot`,
        },
        { timeoutMs: BOOT_TIMEOUT },
      );
      console.log(`bzImage boot: ${bootSummary(r)}`);
      // The payload is LZ4-compressed: any kernel line proves the decompressor ran.
      expect(r.stdout).toContain('Linux version 6.1');
      expect(r.stdout).toContain('mvisor_test.action=reboot'); // cmd_line_ptr
      expect(r.stdout).toContain('BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable');
      // 0xE0000-0xEFFFF holds the ACPI tables (RSDP at 0xE0000), 0xF0000 up the MP table.
      expect(r.stdout).toContain('BIOS-e820: [mem 0x00000000000e0000-0x00000000000fffff] reserved');
      expect(r.stdout).toContain('BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable');
      expect(fact(r, 'cpus_online').value).toBe('1');
      expect(fact(r, 'initramfs').value).toMatch(/^mvisor-initramfs-/);
      expect(r.code).toBe(0);
    },
    BOOT_TIMEOUT + scaled(30_000),
  );

  it(
    'vmlinux with ACPI on (no acpi=off): the kernel reads the tables, enumerates the i440FX/PIIX PCI functions; SIGPWR presses the power button and Linux powers off through ACPI S5, exit 0',
    async () => {
      const kit = guestKit();
      const dir = tempDir();
      let pressed = false;
      const r = await runMvisor(
        {
          name: 'linux-acpi',
          memory: '128M',
          vcpus: 2,
          cpu: TEST_CPU,
          kernel: kit.kernel,
          initrd: kit.initramfs,
          // power-key: the test module waits for KEY_POWER, which the ACPI
          // button driver reports, and powers off (what acpid does).
          cmdline: `console=ttyS0 mvisor_test.action=power-key`,
        },
        {
          timeoutMs: BOOT_TIMEOUT,
          dir,
          onLine: (line) => {
            if (pressed || !line.includes('mvtest: done action=power-key')) return;
            pressed = true;
            process.kill(mvisorPid(join(dir, 'vm.yaml')), 'SIGPWR');
          },
        },
      );
      console.log(`ACPI boot: ${bootSummary(r)}`);
      // The tables, as the kernel lists them (RSDP in the 0xE0000 segment).
      expect(r.stdout).toMatch(/ACPI: RSDP 0x00000000000E0000 000024 \(v02 MVISOR\)/);
      for (const sig of ['XSDT', 'FACP', 'DSDT', 'FACS', 'APIC'])
        expect(r.stdout).toMatch(new RegExp(`ACPI: ${sig} 0x[0-9A-F]+ [0-9A-F]+`));
      expect(r.stdout).toContain('ACPI: PM-Timer IO Port: 0x608');
      expect(r.stdout).toContain('ACPI: Using ACPI (MADT) for SMP configuration information');
      expect(r.stdout).toContain('ACPI: Interpreter enabled');
      expect(r.stdout).toMatch(/ACPI: PM: \(supports S0 S5\)/);
      expect(r.stdout).toContain('ACPI: PCI Root Bridge [PCI0]');
      // What busybox lspci would list, from the kernel's PCI enumeration.
      expect(r.stdout).toMatch(/pci 0000:00:00\.0: \[8086:1237\] type 00 class 0x060000/);
      expect(r.stdout).toMatch(/pci 0000:00:01\.0: \[8086:7000\] type 00 class 0x060100/);
      expect(r.stdout).toMatch(/pci 0000:00:01\.1: \[8086:7010\] type 00 class 0x010180/);
      expect(r.stdout).toMatch(/pci 0000:00:01\.3: \[8086:7113\] type 00 class 0x068000/);
      expect(r.stdout).toContain('pnp: PnP ACPI: found');
      expect(r.stdout).toContain('ACPI: button: Power Button [PWRF]');
      expect(fact(r, 'cpus_online').value).toBe('2');
      expect(r.stdout).toContain('mvtest: power_key_source="Power Button"');
      expect(r.stderr).toContain('SIGPWR: pressing the ACPI power button');
      expect(fact(r, 'power_key').value).toBe('pressed');
      expect(r.stdout).toContain('reboot: Power down');
      expect(r.stderr).toMatch(/guest powered off \(ACPI S5 \(soft off\)\)/);
      expect(r.code).toBe(0);
    },
    BOOT_TIMEOUT + scaled(30_000),
  );

  it(
    'user space with ACPI: busybox lspci lists the host bridge, ISA bridge and PM function; poweroff ends mvisor with 0',
    async () => {
      const kit = guestKit();
      const r = await runMvisor(
        {
          name: 'linux-init-acpi',
          memory: '128M',
          vcpus: 2,
          cpu: TEST_CPU,
          kernel: kit.kernel,
          initrd: kit.initramfs,
          cmdline: 'console=ttyS0 mvisor_test.enable=0 mvinit.action=poweroff',
        },
        { timeoutMs: BOOT_TIMEOUT },
      );
      const lspci = r.stdout.split('mvinit: lspci begin')[1]?.split('mvinit: lspci end')[0] ?? '';
      const context = `exit ${r.code} after ${r.ms} ms\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`;
      expect(lspci, context).toMatch(/00:00\.0 Class 0600: 8086:1237/);
      expect(lspci).toMatch(/00:01\.0 Class 0601: 8086:7000/);
      expect(lspci).toMatch(/00:01\.1 Class 0101: 8086:7010/);
      expect(lspci).toMatch(/00:01\.3 Class 0680: 8086:7113/);
      expect(r.stdout).toContain('mvinit: done action=poweroff');
      expect(r.code).toBe(0);
    },
    BOOT_TIMEOUT + scaled(30_000),
  );
});
