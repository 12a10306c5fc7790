/**
 * The nested KVM test host: Debian's kernel with kvm-amd booted under QEMU's
 * TCG with `-cpu max` (emulated SVM), this machine's root shared read-only
 * over virtio-9p, one command run chrooted in it (see build.sh and init).
 * Test infrastructure for machines without /dev/kvm; the product never
 * depends on it.
 *
 * `runInKvmHost()` boots one host, streams the command's output, and says how
 * the boot ended: the command's exit code, or why there is none (kernel
 * panic, a module that did not load, no /dev/kvm, a time-out, QEMU failing).
 * It never hangs: every wait has a deadline and QEMU is killed at it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Silence of the heartbeat (touched every 5 s) after which the host counts
 * as hung: a hung host has never come back in these runs, and every second
 * of waiting delays the re-run.
 */
export const HEARTBEAT_TIMEOUT_MS = 60_000;

export interface PortForward {
  /** Port on this machine (127.0.0.1). */
  host: number;
  /** Port inside the test host. */
  guest: number;
}

export interface HostOptions {
  /** Shell text run by /bin/sh in the chroot (this machine's root, read-only). */
  command: string;
  /** Working directory for the command (default: this process's). */
  cwd?: string;
  /** Environment for the command (default: none but PATH, HOME, TERM). */
  env?: Record<string, string>;
  /** Read-write folder shared with the host at the same path (created if absent). */
  scratch: string;
  memoryMiB?: number;
  cpus?: number;
  /** QEMU CPU model of the test host (default HOST_CPU). */
  cpu?: string;
  /** QEMU -accel value (default HOST_ACCEL). */
  accel?: string;
  /** QEMU machine type of the test host, e.g. `q35,kernel-irqchip=split` (default pc). */
  machine?: string;
  /** Extra QEMU `-device` values, e.g. `intel-iommu,intremap=on,caching-mode=on`. */
  devices?: string[];
  /** Extra kernel parameters for the test host, e.g. `intel_iommu=on`. */
  kernelArgs?: string[];
  /** Modules to load besides 9p and KVM (names from build.sh's extra_modules). */
  modules?: string[];
  /** A user-mode NIC (10.0.2.15 inside) with these ports forwarded from 127.0.0.1. */
  forwards?: PortForward[];
  /** Deadline for the whole boot, command included. */
  timeoutMs: number;
  /** Deadline from QEMU's start to the host being ready to run the command. */
  bootTimeoutMs?: number;
  /** The host counts as hung when its heartbeat (<scratch>/.alive) stops for this long (HEARTBEAT_TIMEOUT_MS). */
  heartbeatTimeoutMs?: number;
  /** The command's output as it arrives (console text after the host is ready). */
  onOutput?: (text: string) => void;
  /** Where the host image is (default: build.sh's cache directory, built if needed). */
  image?: string;
}

export type HostOutcome =
  | { kind: 'exited'; code: number }
  | { kind: 'panic'; line: string }
  | { kind: 'module'; module: string }
  | { kind: 'no-kvm' }
  | { kind: 'mount'; what: string }
  | { kind: 'timeout'; phase: 'boot' | 'command' }
  | { kind: 'hung'; silentS: number }
  | { kind: 'qemu-failed'; code: number | null; stderr: string };

export interface HostResult {
  outcome: HostOutcome;
  /** Seconds from the host kernel's start to the command (its /proc/uptime). */
  readySeconds?: number;
  /** Wall time from QEMU's start to its end. */
  wallMs: number;
  /** The console's last lines (kernel messages included), for reports. */
  consoleTail: string[];
}

const here = dirname(fileURLToPath(import.meta.url));

/** `-cpu max`: TCG emulates AMD SVM with nested paging, so kvm-amd binds. */
export const HOST_CPU = 'max';
/** One host thread per vCPU of the test host. */
export const HOST_ACCEL = 'tcg,thread=multi';

/** The repository root: the nearest directory above this file with mvisor's package.json. */
export function repoRoot(): string {
  let dir = here;
  for (;;) {
    if (existsSync(join(dir, 'test/kvm-host/build.sh'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the repository above ${here}`);
    dir = up;
  }
}

/** Builds (or finds in ~/.cache/mvisor) the test host image; returns its directory. */
export function kvmHostImage(): string {
  return execFileSync(join(repoRoot(), 'test/kvm-host/build.sh'), {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

/** Console lines that mean the test host's kernel is dying. */
const PANIC = [
  /Kernel panic - not syncing/,
  /BUG: /,
  /corrupted stack end detected/,
  /general protection fault/,
  /Oops: /,
  /double fault/,
];

/** What one boot says on its console: parsed into the outcome (pure; unit-tested). */
export class ConsoleParser {
  readonly tail: string[] = [];
  ready?: number;
  outcome?: HostOutcome;
  panicLine?: string;

  constructor(
    private readonly nonce: string,
    private readonly tailLines = 60,
  ) {}

  /** Feeds one console line (no newline); returns the text to pass on as command output, if any. */
  line(raw: string): string | undefined {
    const text = raw.replace(/\r$/, '');
    this.tail.push(text);
    if (this.tail.length > this.tailLines) this.tail.shift();
    const marker = /MVHOST-(READY|FAIL|EXIT) (\S+) ?(.*)$/.exec(text);
    if (marker && marker[2] === this.nonce) {
      const arg = marker[3] ?? '';
      if (marker[1] === 'READY') this.ready = Number(arg.trim());
      else if (marker[1] === 'EXIT') this.outcome = { kind: 'exited', code: Number(arg.trim()) };
      else if (arg === 'no-kvm') this.outcome = { kind: 'no-kvm' };
      else if (arg.startsWith('module ')) this.outcome = { kind: 'module', module: arg.slice(7) };
      else this.outcome = { kind: 'mount', what: arg.replace(/^mount /, '') };
      return undefined;
    }
    // A panic counts only as the host's own kernel speaking: the command's
    // output (after READY) is the test's, which may print anything. Kernel
    // messages carry a "[ seconds]" timestamp; the command's lines do not.
    if (
      !this.panicLine &&
      PANIC.some((re) => re.test(text)) &&
      (this.ready === undefined || /^\[\s*\d+\.\d+\]/.test(text))
    )
      this.panicLine = text;
    return this.ready !== undefined ? text : undefined;
  }

  /** The outcome once QEMU has ended (undefined fields mean it ended on its own). */
  finish(qemuCode: number | null, qemuStderr: string): HostOutcome {
    if (this.outcome && this.outcome.kind !== 'exited') return this.outcome;
    if (this.panicLine) return { kind: 'panic', line: this.panicLine };
    if (this.outcome) return this.outcome;
    return { kind: 'qemu-failed', code: qemuCode, stderr: qemuStderr.trim().slice(-2000) };
  }
}

/** One line for people: what a non-exit outcome means. */
export function describeOutcome(o: HostOutcome): string {
  switch (o.kind) {
    case 'exited':
      return `the command exited with ${o.code}`;
    case 'panic':
      return `the test host's kernel panicked: ${o.line}`;
    case 'module':
      return `the test host could not load module ${o.module}`;
    case 'no-kvm':
      return 'the test host has no /dev/kvm (kvm-amd did not bind: does QEMU emulate SVM with -cpu max?)';
    case 'mount':
      return `the test host could not mount ${o.what}`;
    case 'hung':
      return `the test host stopped (no heartbeat for ${o.silentS} s, no panic on the console)`;
    case 'timeout':
      return o.phase === 'boot'
        ? 'the test host did not finish booting in time'
        : 'the command did not finish in time';
    case 'qemu-failed':
      return `QEMU ended (code ${o.code}) without the test host saying why${o.stderr ? `: ${o.stderr}` : ''}`;
  }
}

/** QEMU's argument list for one boot (pure; unit-tested). */
export function qemuArgs(image: string, o: HostOptions, nonce: string): string[] {
  const append = [
    'console=ttyS0',
    'quiet',
    'panic=-1',
    'oops=panic',
    'nowatchdog',
    'mitigations=off',
    `mvhost.nonce=${nonce}`,
    `mvhost.scratch=${o.scratch}`,
    ...(o.modules?.length ? [`mvhost.modules=${o.modules.join(',')}`] : []),
    ...(o.forwards ? ['mvhost.net=1'] : []),
    ...(o.kernelArgs ?? []),
  ];
  const args = [
    '-accel',
    o.accel ?? HOST_ACCEL,
    '-M',
    o.machine ?? 'pc',
    '-cpu',
    o.cpu ?? HOST_CPU,
    '-smp',
    String(o.cpus ?? 2),
    '-m',
    String(o.memoryMiB ?? 4096),
    '-nographic',
    '-nodefaults',
    '-no-reboot',
    '-serial',
    'stdio',
    '-kernel',
    join(image, 'vmlinuz'),
    '-initrd',
    join(image, 'initrd.gz'),
    '-virtfs',
    'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs',
    `local,path=${o.scratch},mount_tag=scratch,security_model=none,multidevs=remap`,
    '-append',
    append.join(' '),
  ];
  for (const d of o.devices ?? []) args.push('-device', d);
  if (o.forwards) {
    const fwd = o.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.host}-:${f.guest}`).join('');
    args.push('-netdev', `user,id=n0,net=10.0.2.0/24${fwd}`, '-device', 'virtio-net-pci,netdev=n0');
  }
  return args;
}

/** The script the host's init runs: cd, environment, then the command. */
export function runScript(o: HostOptions): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const env = Object.entries(o.env ?? {})
    .map(([k, v]) => `export ${k}=${q(v)}\n`)
    .join('');
  return `cd ${q(o.cwd ?? process.cwd())} || exit 127\n${env}${o.command}\n`;
}

/** Boots one test host and runs `o.command` in it. */
export function runInKvmHost(o: HostOptions): Promise<HostResult> {
  const image = o.image ?? kvmHostImage();
  const scratch = resolve(o.scratch);
  mkdirSync(scratch, { recursive: true });
  const opts = { ...o, scratch };
  writeFileSync(join(scratch, 'run.sh'), runScript(opts));
  const nonce = randomBytes(8).toString('hex');
  const parser = new ConsoleParser(nonce);
  const t0 = Date.now();
  const qemu = spawn(process.env.QEMU ?? 'qemu-system-x86_64', qemuArgs(image, opts, nonce), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let partial = '';
  let timedOut: 'boot' | 'command' | undefined;
  let panicTimer: NodeJS.Timeout | undefined;
  let hung: number | undefined;
  // The heartbeat: init touches <scratch>/.alive every 5 s once ready.
  const alive = join(scratch, '.alive');
  let beat = { mtime: -1, seen: Date.now() };
  const heartbeat = setInterval(() => {
    if (parser.ready === undefined) return;
    let mtime = -1;
    try {
      mtime = statSync(alive).mtimeMs;
    } catch {
      // not yet
    }
    if (mtime !== beat.mtime) beat = { mtime, seen: Date.now() };
    else if (Date.now() - beat.seen > (o.heartbeatTimeoutMs ?? HEARTBEAT_TIMEOUT_MS)) {
      hung = Math.round((Date.now() - beat.seen) / 1000);
      qemu.kill('SIGKILL');
    }
  }, 5_000);
  const kill = (phase: 'boot' | 'command') => {
    timedOut ??= phase;
    qemu.kill('SIGKILL');
  };
  const bootTimer = setTimeout(() => parser.ready === undefined && kill('boot'), o.bootTimeoutMs ?? 180_000);
  const timer = setTimeout(() => kill(parser.ready === undefined ? 'boot' : 'command'), o.timeoutMs);
  qemu.stdout.setEncoding('utf8');
  qemu.stdout.on('data', (d: string) => {
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      const out = parser.line(l);
      if (out !== undefined) o.onOutput?.(out + '\n');
    }
    // A panic may be followed by nothing at all (a hung CPU): end soon.
    if (parser.panicLine && !panicTimer) panicTimer = setTimeout(() => qemu.kill('SIGKILL'), 5_000);
  });
  qemu.stderr.setEncoding('utf8');
  qemu.stderr.on('data', (d: string) => {
    stderr = (stderr + d).slice(-20_000);
  });
  return new Promise((resolvePromise) => {
    qemu.on('close', (code) => {
      clearTimeout(bootTimer);
      clearTimeout(timer);
      clearTimeout(panicTimer);
      clearInterval(heartbeat);
      if (partial) {
        const out = parser.line(partial);
        if (out !== undefined) o.onOutput?.(out);
      }
      let outcome = parser.finish(code, stderr);
      if (timedOut && outcome.kind !== 'panic') outcome = { kind: 'timeout', phase: timedOut };
      else if (hung !== undefined && outcome.kind !== 'panic') outcome = { kind: 'hung', silentS: hung };
      resolvePromise({
        outcome,
        readySeconds: parser.ready,
        wallMs: Date.now() - t0,
        consoleTail: parser.tail,
      });
    });
    qemu.on('error', (e) => {
      clearTimeout(bootTimer);
      clearTimeout(timer);
      clearInterval(heartbeat);
      resolvePromise({
        outcome: { kind: 'qemu-failed', code: null, stderr: e.message },
        wallMs: Date.now() - t0,
        consoleTail: parser.tail,
      });
    });
  });
}
