/**
 * bench/startup: how fast a VM process gets going, mvisor beside Debian's
 * `qemu-system-x86_64 -enable-kvm`, both running the same 64 KiB firmware that
 * resets the machine at its first instruction (port 0xCF9), which ends both
 * (mvisor's onReset: exit, QEMU's -no-reboot). Per VMM, the medians of:
 *   - exec to the first open of /dev/kvm, and /dev/kvm to the first KVM_RUN
 *     (from `strace -f -ttt` timestamps, stopping on the same few syscalls
 *     for both);
 *   - the whole run, exec to exit, and its peak RSS (no strace).
 * Then the ratios mvisor/QEMU. Where /dev/kvm cannot run guests here, the
 * figures are taken inside the nested test host and say "nested".
 *
 *   node dist/bench/startup.js [--runs 5]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostLabel } from './kvm-stats.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

/** 64 KiB of hlt with, at the reset vector, `mov al, 6; mov dx, 0xcf9; out dx, al; hlt` (a hard reset). */
function resetFirmware(): Uint8Array {
  const image = new Uint8Array(0x10000).fill(0xf4);
  image.set([0xb0, 0x06, 0xba, 0xf9, 0x0c, 0xee, 0xf4], 0xfff0);
  return image;
}

interface Traced {
  /** exec to the first open of /dev/kvm, ms. */
  toKvm: number;
  /** the first open of /dev/kvm to the first KVM_RUN, ms. */
  toRun: number;
}

/**
 * Runs a command under strace, once stopping on execve and openat only (for
 * exec to /dev/kvm), once on openat and ioctl (for /dev/kvm to KVM_RUN): each
 * syscall strace stops on costs time, and a VMM makes many ioctls.
 */
function traced(cmd: string, args: string[], dir: string): Traced {
  const log = join(dir, 'strace.log');
  const trace = (calls: string) => {
    spawnSync('strace', ['-f', '--seccomp-bpf', '-ttt', '-e', `trace=${calls}`, '-o', log, cmd, ...args], {
      stdio: 'ignore',
      timeout: 60_000,
    });
    const lines = readFileSync(log, 'utf8').split('\n');
    return (re: RegExp) => {
      const line = lines.find((l) => re.test(l));
      if (!line) throw new Error(`${cmd}: no ${re.source} in strace output`);
      return Number(line.split(/\s+/)[1]) * 1000;
    };
  };
  const open = trace('execve,openat');
  const toKvm = open(/openat\(.*"\/dev\/kvm"/) - open(/execve\(/);
  const run = trace('openat,ioctl');
  return { toKvm, toRun: run(/ioctl\(\d+, KVM_RUN/) - run(/openat\(.*"\/dev\/kvm"/) };
}

/** Runs a command to its exit: wall ms and peak RSS (KiB) from GNU time. */
function whole(cmd: string, args: string[], dir: string): { ms: number; rssKb: number; code: number | null } {
  const out = join(dir, 'time.txt');
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', '-o', out, cmd, ...args], {
    stdio: 'ignore',
    timeout: 60_000,
  });
  const ms = performance.now() - t0;
  return { ms, rssKb: Number(readFileSync(out, 'utf8').trim().split('\n').pop()), code: r.status };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function main(): void {
  const runs = arg('runs', 5);
  const dir = mkdtempSync(join(tmpdir(), 'mvisor-bench-startup-'));
  try {
    const bios = join(dir, 'reset.bin');
    writeFileSync(bios, resetFirmware());
    const config = join(dir, 'vm.yaml');
    writeFileSync(config, `name: startup\nmemory: 16M\nfirmware: {bios: ${bios}}\nserial: none\n`);
    const vmms = {
      mvisor: { cmd: process.execPath, args: [join(repo, 'bin/mvisor.js'), '-c', config] },
      qemu: {
        cmd: 'qemu-system-x86_64',
        args: [
          '-enable-kvm',
          '-M',
          'pc',
          '-m',
          '16',
          '-bios',
          bios,
          '-display',
          'none',
          '-nodefaults',
          '-no-reboot',
        ],
      },
    };
    const node = { cmd: process.execPath, args: ['-e', '0'] };
    const samples = new Map<string, number[]>();
    const add = (k: string, v: number) => samples.set(k, [...(samples.get(k) ?? []), v]);
    for (let i = 0; i < runs; i++)
      for (const [name, v] of Object.entries(vmms)) {
        const t = traced(v.cmd, v.args, dir);
        add(`${name} exec to /dev/kvm (ms)`, t.toKvm);
        add(`${name} /dev/kvm to KVM_RUN (ms)`, t.toRun);
        const w = whole(v.cmd, v.args, dir);
        if (w.code !== 0) throw new Error(`${name} exited with ${w.code}`);
        add(`${name} exec to exit (ms)`, w.ms);
        add(`${name} peak RSS (MiB)`, w.rssKb / 1024);
        if (name === 'mvisor') {
          const n = whole(node.cmd, node.args, dir);
          add('node -e 0 exec to exit (ms)', n.ms);
          add('node -e 0 peak RSS (MiB)', n.rssKb / 1024);
        }
      }
    const qemuVersion = execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split(
      '\n',
    )[0];
    console.log(`\nstart-up, medians over ${runs} alternating runs (${hostLabel()}); ${qemuVersion}:`);
    for (const what of [
      'exec to /dev/kvm (ms)',
      '/dev/kvm to KVM_RUN (ms)',
      'exec to exit (ms)',
      'peak RSS (MiB)',
    ]) {
      const a = median(samples.get(`mvisor ${what}`)!);
      const b = median(samples.get(`qemu ${what}`)!);
      console.log(
        `${what.padEnd(26)} mvisor ${a.toFixed(1).padStart(8)}  qemu ${b.toFixed(1).padStart(8)}  ratio ${(a / b).toFixed(2)}`,
      );
    }
    const n = samples.get('node -e 0 exec to exit (ms)')!;
    const r = samples.get('node -e 0 peak RSS (MiB)')!;
    console.log(`(Node alone, node -e 0: ${median(n).toFixed(1)} ms, ${median(r).toFixed(1)} MiB)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
