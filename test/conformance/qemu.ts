/**
 * The QEMU side, exactly as kvm-unit-tests runs a test: the command line of
 * `x86/run` (with the options `run_tests.sh` appends from the test's
 * unittests.cfg entry), the environment file `scripts/arch-run.bash` hands
 * the test as its initrd (a multiboot module), and how
 * `qemu_fixup_return_code` and `scripts/runtime.bash` read the exit status.
 */
import { shellWords, type CommandSubstitution } from './shell-words.js';
import type { UnitTest } from './unittests.js';

/** The options `x86/run` always gives (QEMU with pc-testdev and pci-testdev, KVM). */
export function x86RunPrefix(): string[] {
  return [
    '--no-reboot',
    '-nodefaults',
    // "Discard lost ticks from the PIT ... the realmode test relies on the PIT, but not re-injection."
    '-global',
    'kvm-pit.lost_tick_policy=discard',
    '-device',
    'pc-testdev',
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=0x4',
    '-display',
    'none',
    '-serial',
    'stdio',
    '-device',
    'pci-testdev',
    '-machine',
    'accel=kvm',
  ];
}

/**
 * The words `run_tests.sh` puts after the kernel (`-smp N`, `-append ARGS`
 * when the test has arguments, then extra_params), through the same eval.
 */
export function testWords(t: UnitTest, substitute?: CommandSubstitution): string[] {
  const append = t.testArgs !== '' ? ` -append ${t.testArgs}` : '';
  return shellWords(`-smp ${t.smp}${append} ${t.extraParams}`, substitute);
}

/** The whole QEMU argv (without the binary) for `kernel` (relative to the suite, as the scripts pass it). */
export function qemuArgv(kernel: string, words: readonly string[], envFile?: string): string[] {
  return [
    ...x86RunPrefix(),
    '-kernel',
    kernel,
    ...words,
    ...(envFile !== undefined ? ['-initrd', envFile] : []),
  ];
}

/** The kernel name `run_tests.sh` uses to see whether QEMU starts at all with a test's options. */
export const NO_FILE = '_NO_FILE_4Uhere_';

/**
 * scripts/vmm.bash qemu_parse_premature_failure: QEMU started far enough to
 * look for the kernel, so it accepts the options. Otherwise the suite
 * skips the test, with QEMU's last line as the reason.
 */
export function qemuAcceptsOptions(log: string): boolean {
  return log
    .split('\n')
    .some(
      (l) => l.includes(NO_FILE) && /[Cc]ould not (load|open) kernel|error loading|failed to load/.test(l),
    );
}

export interface EnvFileInputs {
  /** `qemu -h | head -1` (omit for a VMM other than QEMU). */
  qemuVersionString?: string;
  /** `uname -r`. */
  kernelRelease: string;
  /** The suite's errata.txt. */
  errataTxt?: string;
}

/**
 * The environment file (scripts/arch-run.bash env_params + env_errata):
 * `KEY=value` lines the test reads through getenv(). x86 tests read
 * NR_CPUS, MEMSIZE, TEST_DEVICE, MEMLIMIT and BOOTLOADER (none of which
 * the scripts set) and ERRATA_*.
 */
export function envFileText(inputs: EnvFileInputs): string {
  // TARGET is empty unless configure set one (x86's config.mak does not).
  const lines: string[] = ['TARGET='];
  if (inputs.qemuVersionString !== undefined) {
    const [, , , major = '', minor = '', micro = ''] = inputs.qemuVersionString.split(/[ .]/);
    lines.push(
      'QEMU_ACCEL=kvm',
      `QEMU_VERSION_STRING=${inputs.qemuVersionString}`,
      `QEMU_MAJOR=${major}`,
      `QEMU_MINOR=${minor}`,
      `QEMU_MICRO=${micro}`,
    );
  }
  const k = kernelVersion(inputs.kernelRelease);
  lines.push(
    `KERNEL_VERSION_STRING=${inputs.kernelRelease}`,
    `KERNEL_VERSION=${k.version ?? ''}`,
    `KERNEL_PATCHLEVEL=${k.patchlevel ?? ''}`,
    `KERNEL_SUBLEVEL=${k.sublevel ?? ''}`,
    `KERNEL_EXTRAVERSION=${k.extraversion ?? ''}`,
  );
  if (inputs.errataTxt !== undefined) {
    for (const [name, have] of errata(inputs.errataTxt, k)) lines.push(`${name}=${have ? 'y' : 'n'}`);
  }
  return `${lines.join('\n')}\n`;
}

interface KernelVersion {
  version?: number;
  patchlevel?: number;
  sublevel?: number;
  extraversion?: number;
}

/** `6.1.0-26-amd64` → 6, 1, 0, 26 (as env_params splits it). */
export function kernelVersion(release: string): KernelVersion {
  const [v, p, rest = ''] = release.split('.');
  const [s = '', x = ''] = rest.split('-');
  const num = (t: string | undefined) => {
    const m = /^\d+/.exec(t ?? '');
    return m ? Number(m[0]) : undefined;
  };
  const out: KernelVersion = {};
  const version = num(v);
  const patchlevel = num(p);
  const sublevel = num(s);
  const extraversion = num(x);
  if (version !== undefined) out.version = version;
  if (patchlevel !== undefined) out.patchlevel = patchlevel;
  if (sublevel !== undefined) out.sublevel = sublevel;
  if (extraversion !== undefined) out.extraversion = extraversion;
  return out;
}

/** scripts/arch-run.bash env_generate_errata: ERRATA_<commit> is whether the host kernel has the fix. */
export function errata(errataTxt: string, k: KernelVersion): [string, boolean][] {
  const out: [string, boolean][] = [];
  for (const raw of errataTxt.split('\n')) {
    if (raw.startsWith('#')) continue;
    const fields = raw.replace(/[ \t]/g, '').split(':');
    const commit = fields[0] ?? '';
    const minver = fields[1] ?? '';
    if (commit === '') continue;
    const [vs, ps, rest = ''] = minver.split('.');
    const [ss = '', xs = ''] = rest.split('-');
    const v = Number(vs);
    const p = Number(ps);
    const s = /^\d+/.exec(ss)?.[0];
    const x = /^\d+/.exec(xs)?.[0];
    if (!Number.isInteger(v) || !Number.isInteger(p)) continue;
    const kv = k.version ?? 0;
    const kp = k.patchlevel ?? 0;
    let have: boolean;
    if (kv > v || (kv === v && kp > p)) have = true;
    else if (kv === v && kp === p) {
      if (k.sublevel !== undefined && s !== undefined) {
        if (k.sublevel > Number(s)) have = true;
        else if (k.sublevel === Number(s)) {
          if (k.extraversion !== undefined && x !== undefined) have = k.extraversion >= Number(x);
          else have = x === undefined || Number(x) === 0;
        } else have = false;
      } else have = s === undefined || Number(s) === 0;
    } else have = false;
    out.push([`ERRATA_${commit}`, have]);
  }
  return out;
}

export type Result = 'PASS' | 'FAIL' | 'SKIP' | 'TIMEOUT';

export interface ProcessOutcome {
  /** Exit status, or null when killed by a signal. */
  status: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

export interface Verdict {
  result: Result;
  /** Why, for anything but a plain PASS. */
  reason?: string;
  /** The test's own `SUMMARY: ...` line, if it printed one. */
  summary?: string;
}

/** The test's `SUMMARY:` line among its last 5 lines (extract_summary). */
export function summaryLine(stdout: string): string | undefined {
  const last = stdout.replace(/\r/g, '').trimEnd().split('\n').slice(-5);
  return last.find((l) => l.startsWith('SUMMARY: '))?.slice('SUMMARY: '.length);
}

/** A test's exit status through isa-debug-exit: a write of v is status (v << 1) | 1. */
export function verdictFromStatus(status: number, summary: string | undefined): Verdict {
  const s = summary !== undefined ? { summary } : {};
  if (status === 1) return { result: 'PASS', ...s };
  if (status === 77) return { result: 'SKIP', reason: 'the test skipped itself', ...s };
  if (status === 3) return { result: 'FAIL', reason: 'the test reported failures', ...s };
  // runtime.bash: "127 - most likely the unittest called abort()".
  if (status === 127) return { result: 'FAIL', reason: 'the test aborted', ...s };
  if ((status & 1) === 1) return { result: 'FAIL', reason: `the test exited with code ${status >> 1}`, ...s };
  return { result: 'FAIL', reason: `exit status ${status}`, ...s };
}

/** QEMU's exit, read as qemu_fixup_return_code and runtime.bash read it. */
export function qemuVerdict(o: ProcessOutcome): Verdict {
  const summary = summaryLine(o.stdout);
  const s = summary !== undefined ? { summary } : {};
  if (o.timedOut) return { result: 'TIMEOUT', ...s };
  if (o.status === null)
    return { result: 'FAIL', reason: `QEMU terminated on ${o.signal ?? 'a signal'}`, ...s };
  const errors = o.stderr.split('\n').filter((l) => l.trim() !== '');
  const sig = /terminating on signal (\d+)/.exec(o.stderr);
  if (o.status === 0) {
    return sig
      ? { result: 'FAIL', reason: `QEMU terminated on signal ${sig[1]}`, ...s }
      : { result: 'FAIL', reason: 'QEMU exited with 0: the test ended without isa-debug-exit', ...s };
  }
  if (o.status === 1) {
    const real = errors.filter((l) => !/warning/i.test(l));
    if (real.length > 0) return { result: 'FAIL', reason: `QEMU failed: ${real[0]}`, ...s };
  }
  return verdictFromStatus(o.status, summary);
}
