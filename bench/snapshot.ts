/**
 * bench/snapshot: how long saving a running VM to a file pauses it, how long
 * it takes and how much disk the file uses, mvisor beside QEMU, same planted
 * guests, alternating runs:
 *   idle  the ticker (test/helpers/tiny-elf.ts): prints a line per tick,
 *         its RAM almost all zero
 *   busy  the same after it wrote a pattern over `--busy` MiB of its RAM
 * mvisor: the control socket's `snapshot` (then resume): the VM is paused
 * for the whole save (drain, state, RAM). QEMU 7.2: QMP `migrate` to
 * `exec:cat > FILE`, its way of saving a VM to a file: pre-copy while the
 * guest runs, then a pause (`downtime`) for what is left. Reported: the
 * pause, the time from request to file complete, the file's size and its
 * blocks on disk; the ratios are mvisor / QEMU. Inside the nested test host
 * every figure is "nested".
 *
 *   node dist/bench/snapshot.js [--runs 3] [--memory 256] [--busy 128]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { tickerGuest, tickOf, tinyPvhElf } from '../test/helpers/tiny-elf.js';
import { JsonLines } from './json-lines.js';
import { hostLabel } from './kvm-stats.js';

const QEMU = '/usr/bin/qemu-system-x86_64';
const MiB = 1024 * 1024;
const repo = join(dirname(fileURLToPath(import.meta.url)), '../..');

interface Options {
  runs: number;
  memoryMiB: number;
  busyMiB: number;
}

function parse(argv: string[]): Options {
  const o: Options = { runs: 3, memoryMiB: 256, busyMiB: 128 };
  for (let i = 0; i < argv.length; i++) {
    const v = Number(argv[i + 1]);
    if (argv[i] === '--runs') o.runs = v;
    else if (argv[i] === '--memory') o.memoryMiB = v;
    else if (argv[i] === '--busy') o.busyMiB = v;
    else throw new Error(`unknown option ${argv[i]} (--runs N, --memory MiB, --busy MiB)`);
    i++;
  }
  if (!(o.busyMiB + 16 < o.memoryMiB)) throw new Error('--busy must leave 16 MiB of --memory');
  return o;
}

interface Sample {
  pausedMs: number;
  totalMs: number;
  bytes: number;
  onDisk: number;
}

/** Starts `cmd`, resolves once its stdout printed `ticks` ticker lines. */
function startTicking(cmd: string, args: string[], ticks: number): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let seen = 0;
  let partial = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      const parts = (partial + d.toString()).split('\n');
      partial = parts.pop() ?? '';
      for (const p of parts)
        if (tickOf(p.replace(/\r$/, '')) !== undefined && ++seen === ticks) resolve(child);
    });
    child.on('close', (code) =>
      reject(new Error(`${cmd} exited (${code}) before ${ticks} ticks: ${err.slice(-500)}`)),
    );
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.on('close', r));
  child.kill('SIGTERM');
  await done;
}

const size = (path: string) => {
  const st = statSync(path);
  return { bytes: st.size, onDisk: st.blocks * 512 };
};

async function mvisorRun(dir: string, kernel: string, o: Options): Promise<Sample> {
  const config = join(dir, 'vm.yaml');
  writeFileSync(config, stringify({ name: 'bench-snap', memory: `${o.memoryMiB}M`, kernel }));
  const sock = join(dir, 'mvisor.sock');
  const file = join(dir, `mvisor-${Date.now()}.snap`);
  const child = await startTicking(
    process.execPath,
    [join(repo, 'bin/mvisor.js'), '-c', config, '--control', sock],
    5,
  );
  try {
    const c = await JsonLines.open(
      sock,
      Date.now() + 60_000,
      () => false,
      () => child.exitCode === null,
    );
    if (!c) throw new Error('no mvisor control socket');
    const t0 = performance.now();
    const r = await c.request({ cmd: 'snapshot', file, then: 'resume' });
    const totalMs = performance.now() - t0;
    c.close();
    if (!r?.ok) throw new Error(`mvisor snapshot: ${JSON.stringify(r)}`);
    return { pausedMs: r.pausedMs as number, totalMs, ...size(file) };
  } finally {
    await stop(child);
    rmSync(file, { force: true });
  }
}

async function qemuRun(dir: string, kernel: string, o: Options): Promise<Sample> {
  const sock = join(dir, 'qmp.sock');
  const file = join(dir, `qemu-${Date.now()}.vmstate`);
  const child = await startTicking(
    QEMU,
    [
      '-accel',
      'kvm',
      '-machine',
      'pc',
      '-m',
      `${o.memoryMiB}M`,
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-serial',
      'stdio',
      '-kernel',
      kernel,
      '-qmp',
      `unix:${sock},server=on,wait=off`,
    ],
    5,
  );
  try {
    const c = await JsonLines.open(
      sock,
      Date.now() + 60_000,
      (m) => 'event' in m,
      () => child.exitCode === null,
    );
    if (!c) throw new Error('no QMP socket');
    await c.next(); // the greeting
    await c.request({ execute: 'qmp_capabilities' });
    const t0 = performance.now();
    const m = await c.request({ execute: 'migrate', arguments: { uri: `exec:cat > ${file}` } });
    if (!m || 'error' in m) throw new Error(`QEMU migrate: ${JSON.stringify(m)}`);
    for (;;) {
      const q = (await c.request({ execute: 'query-migrate' }))?.return as
        { status?: string; downtime?: number; 'error-desc'?: string } | undefined;
      if (q?.status === 'completed') {
        const totalMs = performance.now() - t0;
        c.close();
        return { pausedMs: q.downtime ?? NaN, totalMs, ...size(file) };
      }
      if (q?.status === 'failed' || q === undefined)
        throw new Error(`QEMU migrate: ${q?.['error-desc'] ?? 'failed'}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await stop(child);
    rmSync(file, { force: true });
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  for (const need of [QEMU, '/dev/kvm', join(repo, 'build/Release/mvisor_kvm.node')])
    if (!existsSync(need)) throw new Error(`${need} not found (make build; apt-get install qemu-system-x86)`);
  const dir = mkdtempSync(join(tmpdir(), 'mvisor-bench-snap-'));
  try {
    const guests = {
      idle: tickerGuest(20_000),
      busy: tickerGuest(20_000, { from: 16 * MiB, bytes: o.busyMiB * MiB }),
    };
    console.log(`bench/snapshot on ${hostLabel()}: ${o.memoryMiB} MiB guests, ${o.runs} runs each (medians)`);
    console.log('guest  VMM      pause ms   total ms   file MiB   on disk MiB');
    for (const [name, code] of Object.entries(guests)) {
      const kernel = join(dir, `${name}.elf`);
      writeFileSync(kernel, tinyPvhElf(code));
      const m: Sample[] = [];
      const q: Sample[] = [];
      for (let i = 0; i < o.runs; i++) {
        m.push(await mvisorRun(dir, kernel, o));
        q.push(await qemuRun(dir, kernel, o));
      }
      const row = (vmm: string, s: Sample[]) => {
        const f = (k: keyof Sample, scale = 1) =>
          (median(s.map((x) => x[k])) / scale).toFixed(1).padStart(10);
        console.log(
          `${name.padEnd(6)} ${vmm.padEnd(7)} ${f('pausedMs')} ${f('totalMs')} ${f('bytes', MiB)} ${f('onDisk', MiB)}`,
        );
        return s;
      };
      row('mvisor', m);
      row('QEMU', q);
      const ratio = (k: keyof Sample) => (median(m.map((x) => x[k])) / median(q.map((x) => x[k]))).toFixed(2);
      console.log(
        `${name.padEnd(6)} ratio   ${ratio('pausedMs').padStart(10)} ${ratio('totalMs').padStart(10)} ${ratio('bytes').padStart(10)} ${ratio('onDisk').padStart(10)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(`bench/snapshot: ${e.message}`);
  process.exitCode = 1;
});
