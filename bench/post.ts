/**
 * bench/post: SeaBIOS (Debian's bios-256k.bin) from power-on through POST to
 * a booted option ROM, under mvisor (`firmware: bios`) and under Debian's
 * `qemu-system-x86_64 -enable-kvm -M pc`, alternating runs. The boot device
 * is the boot-marker ROM of test/guests/option-rom/ (fw_cfg file
 * genroms/marker.bin, first in the boot order); its BEV prints the marker
 * through INT 10h (SeaBIOS's serial console), writes `SERIAL:<marker>` to
 * COM1 and resets the machine, which ends both VMMs.
 *
 * Prints, per VMM, the median wall time from spawn to the `SERIAL:` marker
 * line and to the process exit; peak RSS; and for mvisor the exits per boot
 * by kind (MVISOR_STATS). Then the ratios mvisor/QEMU.
 *
 *   node dist/bench/post.js [--runs 3]
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import {
  QEMU,
  QEMU_PC_ARGS,
  buildOptionRom,
  int10Line,
  qemuOptionRomArgs,
  serialLine,
} from '../test/helpers/option-rom.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MARKER = 'mvisor-post-bench';
/** Per run; a VMM that has not printed the marker by then is killed. */
const TIMEOUT_MS = 300_000;

type Exits = Record<string, number>;

interface Sample {
  /** The INT 10h marker line (SeaBIOS serial console). */
  int10?: number;
  /** The `SERIAL:` marker line (the ROM's own COM1 writes). */
  marker?: number;
  exit: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  peakRssKb: number;
  exits?: Exits;
  stderrTail: string;
  stdoutTail: string;
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

// SeaBIOS's serial console sends VT100 sequences (reset, clear, attributes)
const stripAnsi = (s: string) => s.replace(/\x1b(?:\[[0-9;?]*[A-Za-z]|c)/g, ''); // eslint-disable-line no-control-regex

function timeBoot(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Sample> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const s: Sample = {
    exit: 0,
    code: null,
    signal: null,
    timedOut: false,
    peakRssKb: 0,
    stderrTail: '',
    stdoutTail: '',
  };
  let partial = '';
  let stdout = '';
  child.stdout.setEncoding('latin1');
  child.stdout.on('data', (d: string) => {
    const t = performance.now() - t0;
    stdout = (stdout + d).slice(-4096);
    const parts = (partial + d).split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) {
      const line = stripAnsi(p).replace(/\r$/, '');
      if (s.int10 === undefined && line === int10Line(MARKER)) s.int10 = t;
      if (s.marker === undefined && line === serialLine(MARKER)) s.marker = t;
    }
    if (partial.length > 1 << 16) partial = partial.slice(-4096);
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (stderr = (stderr + d).slice(-4096)));
  const poll = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) s.peakRssKb = Math.max(s.peakRssKb, Number(m[1]));
    } catch {
      // exited
    }
  }, 100);
  const timer = setTimeout(() => {
    s.timedOut = true;
    child.kill('SIGKILL');
  }, TIMEOUT_MS);
  return new Promise((res) => {
    child.on('close', (code, signal) => {
      clearInterval(poll);
      clearTimeout(timer);
      s.exit = performance.now() - t0;
      s.code = code;
      s.signal = signal;
      s.stderrTail = stderr;
      s.stdoutTail = stripAnsi(stdout + partial);
      res(s);
    });
  });
}

const median = (xs: number[]) =>
  xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN;
const sec = (ms: number | undefined) =>
  ms !== undefined && Number.isFinite(ms) ? (ms / 1000).toFixed(1) + ' s' : 'n/a';

function summary(s: Sample): string {
  const end = s.timedOut
    ? `killed after ${TIMEOUT_MS / 1000} s`
    : `exit ${sec(s.exit)} (${s.signal ? `signal ${s.signal}` : `code ${s.code}`})`;
  return `int10 marker ${sec(s.int10)}, serial marker ${sec(s.marker)}, ${end}, peak RSS ${s.peakRssKb} KiB`;
}

/** Why a sample is no boot, or undefined when the marker appeared and the VMM ended after the reset. */
function failure(s: Sample): string | undefined {
  if (s.marker === undefined) {
    return s.timedOut
      ? `the marker "${serialLine(MARKER)}" did not appear within ${TIMEOUT_MS / 1000} s (killed)`
      : `the process ended (${s.signal ? `signal ${s.signal}` : `code ${s.code}`}) without printing "${serialLine(MARKER)}"`;
  }
  if (s.timedOut) return `the marker appeared but the process did not end after the reset`;
  return undefined;
}

function tails(s: Sample): string {
  const indent = (t: string) =>
    t.trim()
      ? t
          .trim()
          .split('\n')
          .slice(-15)
          .map((l) => `    ${l}`)
          .join('\n')
      : '';
  return `  last serial output:\n${indent(s.stdoutTail) || '    (none)'}\n  last stderr:\n${indent(s.stderrTail) || '    (none)'}`;
}

async function main(): Promise<void> {
  const runs = arg('runs', 3);
  const dir = mkdtempSync(join(tmpdir(), 'mvisor-bench-post-'));
  // Both VMMs see the ROM as fw_cfg genroms/marker.bin (QEMU: the base name)
  const rom = join(dir, 'marker.bin');
  copyFileSync(buildOptionRom({ marker: MARKER }), rom);
  const cfg = join(dir, 'vm.yaml');
  writeFileSync(
    cfg,
    stringify({
      name: 'post-bench',
      memory: '128M',
      vcpus: 1,
      cpu: 'baseline,-cx16,+xsaveerptr',
      firmware: 'bios',
      devices: [{ class: 'option-rom', name: 'marker', file: rom }],
      boot: { order: ['marker'] },
      serial: 'stdio',
    }),
  );
  // -nodefaults: no NIC (iPXE ROM), CD-ROM or floppy drive, which mvisor's
  // machine does not have yet either; the same devices POST on both sides.
  const qemuArgs = ['-nodefaults', ...QEMU_PC_ARGS, ...qemuOptionRomArgs({ roms: [rom], boot: rom, dir })];
  const haveQemu = existsSync(QEMU);
  if (!haveQemu) console.log(`${QEMU} not found (Debian package qemu-system-x86): mvisor runs only`);

  const mv: Sample[] = [];
  const qm: Sample[] = [];
  let mvisorFailed: string | undefined;
  for (let i = 0; i < runs; i++) {
    if (mvisorFailed) console.log(`run ${i + 1} mvisor: skipped (failed in an earlier run)`);
    else {
      const stats = join(dir, `stats-${i}.json`);
      const a = await timeBoot(process.execPath, [join(repo, 'bin/mvisor.js'), '-c', cfg], {
        ...process.env,
        MVISOR_STATS: stats,
      });
      if (existsSync(stats)) a.exits = (JSON.parse(readFileSync(stats, 'utf8')) as { exits: Exits }).exits;
      console.log(`run ${i + 1} mvisor: ${summary(a)}, exits ${JSON.stringify(a.exits ?? null)}`);
      const why = failure(a);
      if (why) {
        // One failed boot is enough: the next would fail the same way, 300 s each
        mvisorFailed = `mvisor did not boot the option ROM through SeaBIOS: ${why}\n  config: ${cfg}\n${tails(a)}`;
        console.log(mvisorFailed);
      } else mv.push(a);
    }
    if (haveQemu) {
      const b = await timeBoot(QEMU, qemuArgs);
      console.log(`run ${i + 1} qemu:   ${summary(b)}`);
      const why = failure(b);
      if (why)
        throw new Error(
          `QEMU did not boot the option ROM: ${why}\n  ${QEMU} ${qemuArgs.join(' ')}\n${tails(b)}`,
        );
      qm.push(b);
    }
  }

  const row = (name: string, f: (s: Sample) => number | undefined) => {
    const a = median(mv.map(f).filter((x): x is number => x !== undefined));
    const b = median(qm.map(f).filter((x): x is number => x !== undefined));
    const num = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
    const ratio = Number.isFinite(a) && Number.isFinite(b) ? (a / b).toFixed(2) : 'n/a';
    console.log(
      `${name.padEnd(28)} mvisor ${num(a).padStart(10)}  qemu ${num(b).padStart(10)}  ratio ${ratio}`,
    );
  };
  console.log(
    `\nmedians over ${runs} alternating runs (${mv.length} mvisor, ${qm.length} QEMU boots), 1 vCPU, 128 MiB, SeaBIOS → option ROM BEV:`,
  );
  row('to INT 10h marker (ms)', (s) => s.int10);
  row('to SERIAL: marker (ms)', (s) => s.marker);
  row('to process exit (ms)', (s) => s.exit);
  row('peak RSS (KiB)', (s) => s.peakRssKb);
  const ex = mv.map((s) => s.exits).filter((x): x is Exits => x !== undefined);
  if (ex.length) {
    const kinds = [...new Set(ex.flatMap((e) => Object.keys(e)))];
    console.log(
      `mvisor exits per boot (median): ${kinds.map((k) => `${k} ${median(ex.map((e) => e[k] ?? 0))}`).join(', ')} (QEMU's are not visible from user space here)`,
    );
  }
  if (mvisorFailed) {
    console.error(`\n${mvisorFailed.split('\n')[0]}`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
