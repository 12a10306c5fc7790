/**
 * bench/boot: the guest-kit kernel booted directly under mvisor and under
 * Debian's `qemu-system-x86_64 -enable-kvm` with the same kernel, initramfs,
 * memory, vCPUs and CPU flags, alternating runs. Prints, per VMM, the
 * median wall time to the first serial line of the kernel ("Linux
 * version"), to the end of the guest-kit test module ("mvtest: done") and
 * to the process exit after the guest's reset; peak RSS; and for mvisor the
 * exits per boot by kind. Then the ratios mvisor/QEMU.
 *
 *   node dist/bench/boot.js [--runs 2] [--vcpus 1]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { stringify } from 'yaml';
import { hostLabel, watchKvmStats, type KvmStats } from './kvm-stats.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface Sample {
  firstLine?: number;
  done?: number;
  exit: number;
  code: number | null;
  peakRssKb: number;
  exits?: { io: number; mmio: number; other: number };
  kvm?: KvmStats;
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

function timeBoot(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Sample> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const s: Sample = { exit: 0, code: null, peakRssKb: 0 };
  const kvm = watchKvmStats(child.pid ?? -1);
  let buf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    buf += d;
    const t = performance.now() - t0;
    if (s.firstLine === undefined && buf.includes('Linux version')) s.firstLine = t;
    if (s.done === undefined && buf.includes('mvtest: done')) s.done = t;
    if (buf.length > 1 << 20) buf = buf.slice(-4096);
  });
  child.stderr.resume();
  const poll = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) s.peakRssKb = Math.max(s.peakRssKb, Number(m[1]));
    } catch {
      // exited
    }
  }, 100);
  const timer = setTimeout(() => child.kill('SIGKILL'), 20 * 60_000);
  return new Promise((res) => {
    child.on('close', (code) => {
      clearInterval(poll);
      const k = kvm.stop();
      if (k) s.kvm = k;
      clearTimeout(timer);
      s.exit = performance.now() - t0;
      s.code = code;
      res(s);
    });
  });
}

const median = (xs: number[]) =>
  xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN;
const sec = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(1) + ' s' : 'n/a');

async function main(): Promise<void> {
  const runs = arg('runs', 2);
  const vcpus = arg('vcpus', 1);
  const kit = Object.fromEntries(
    execFileSync(join(repo, 'guests/build.sh'), { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => l.split('=') as [string, string]),
  );
  const cmdline = 'console=ttyS0 acpi=off mvisor_test.action=reboot';
  const dir = mkdtempSync(join(tmpdir(), 'mvisor-bench-'));
  const cfg = join(dir, 'vm.yaml');
  writeFileSync(
    cfg,
    stringify({
      name: 'bench',
      memory: '128M',
      vcpus,
      cpu: 'baseline',
      kernel: kit.MVISOR_KERNEL,
      initrd: kit.MVISOR_INITRAMFS,
      cmdline,
      serial: 'stdio',
    }),
  );
  const qemu = '/usr/bin/qemu-system-x86_64';
  const qemuArgs = [
    '-enable-kvm', '-M', 'pc', '-nodefaults', '-no-reboot', '-display', 'none',
    '-cpu', 'qemu64', '-smp', String(vcpus), '-m', '128',
    '-kernel', kit.MVISOR_KERNEL!, '-initrd', kit.MVISOR_INITRAMFS!, '-append', cmdline, '-serial', 'stdio',
  ]; // prettier-ignore
  const mv: Sample[] = [];
  const qm: Sample[] = [];
  for (let i = 0; i < runs; i++) {
    const stats = join(dir, `stats-${i}.json`);
    const a = await timeBoot(process.execPath, [join(repo, 'bin/mvisor.js'), '-c', cfg], {
      ...process.env,
      MVISOR_STATS: stats,
    });
    if (existsSync(stats))
      a.exits = (JSON.parse(readFileSync(stats, 'utf8')) as { exits: Sample['exits'] }).exits;
    mv.push(a);
    console.log(
      `run ${i + 1} mvisor: first line ${sec(a.firstLine ?? NaN)}, test done ${sec(a.done ?? NaN)}, exit ${sec(a.exit)} (code ${a.code}), peak RSS ${a.peakRssKb} KiB, user-space exits ${JSON.stringify(a.exits)}, KVM ${JSON.stringify(a.kvm)}`,
    );
    if (existsSync(qemu)) {
      const b = await timeBoot(qemu, qemuArgs);
      qm.push(b);
      console.log(
        `run ${i + 1} qemu:   first line ${sec(b.firstLine ?? NaN)}, test done ${sec(b.done ?? NaN)}, exit ${sec(b.exit)} (code ${b.code}), peak RSS ${b.peakRssKb} KiB, KVM ${JSON.stringify(b.kvm)}`,
      );
    }
  }
  const row = (name: string, f: (s: Sample) => number | undefined) => {
    const a = median(mv.map(f).filter((x): x is number => x !== undefined));
    const b = median(qm.map(f).filter((x): x is number => x !== undefined));
    console.log(
      `${name.padEnd(26)} mvisor ${String(a.toFixed(1)).padStart(10)}  qemu ${String(b.toFixed(1)).padStart(10)}  ratio ${(a / b).toFixed(2)}`,
    );
  };
  console.log(
    `\nmedians over ${runs} alternating runs (${hostLabel()}), ${vcpus} vCPU(s), 128 MiB, same kernel/initramfs/cmdline:`,
  );
  row('to first kernel line (ms)', (s) => s.firstLine);
  row('to test module done (ms)', (s) => s.done);
  row('to process exit (ms)', (s) => s.exit);
  row('peak RSS (KiB)', (s) => s.peakRssKb);
  for (const k of ['exits', 'io_exits', 'mmio_exits', 'halt_exits'] as const)
    if (mv.some((x) => x.kvm?.[k] !== undefined)) row(`KVM ${k} per boot`, (x) => x.kvm?.[k]);
  const ex = mv.map((s) => s.exits).filter((x) => x);
  if (ex.length) {
    console.log(
      `mvisor exits that reached its user space per boot (median): io ${median(ex.map((e) => e!.io))}, mmio ${median(ex.map((e) => e!.mmio))}, other ${median(ex.map((e) => e!.other))}`,
    );
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
