/**
 * bench/storage: guest-side block I/O under mvisor and under Debian's
 * `qemu-system-x86_64 -enable-kvm`, same kernel, initramfs, command line,
 * memory, vCPU and CPU flags, same images, alternating runs.
 *
 * Guest user space cannot run where KVM emulates guest kernel code, so the
 * I/O is done in kernel mode by the guest kit's test module
 * (guests/kernel/mvisor_test.c, `mvisor_test.bench`): on each disk, `--ops`
 * synchronous requests of each kind, one at a time (queue depth 1):
 * randread / randwrite (4 KiB at pseudo-random 4 KiB-aligned offsets),
 * seqread / seqwrite (64 KiB sequential). The guest times them itself
 * (ktime) and prints `mvtest: bench_<disk>_<mode>_ops=.. _us=.. _bytes=..`.
 *
 * One VM per VMM and run, four disks of `--size` MiB, fresh copies each run:
 *   vda virtio-blk raw, vdb virtio-blk qcow2, sda IDE raw, sdb IDE qcow2
 * (IDE: PIIX3, primary channel master/slave; virtio-blk: modern virtio-pci
 * with MSI-X under mvisor, QEMU's default transitional virtio-blk-pci).
 * By default the images are full of random data (the qcow2 one converted
 * from the raw one, so every cluster is allocated): reads read data and
 * writes overwrite. `--empty` uses a sparse raw file and an empty
 * `qemu-img create -f qcow2` image instead (reads of holes, allocating writes).
 *
 * Exits and CPU per request are measured per disk and mode, not per boot:
 * the bench list starts with a disk that does not exist (`begin`), whose
 * `bench_begin=absent` line marks the start of the first disk; every result
 * line ends one window. When a marker line reaches the host, the bench
 * reads the VMM's CPU time (/proc/<pid>/stat, and per thread to tell the
 * vCPU thread from the rest) and its exit counters: mvisor's own counts of
 * port-I/O and MMIO exits that reached it (`--control` socket, `status`),
 * QEMU's KVM statistics `io_exits` + `mmio_exits` (QMP `query-stats`). A
 * window also holds the console line that ends it (about two UART exits per
 * byte); those exits are subtracted, at the rate measured by mvisor's
 * per-port counts (MVISOR_STATS) over the whole run; the guest's 8250 driver
 * makes the same accesses under both VMMs. The CPU of printing that line
 * stays in the window (well under 1% of it).
 *
 *   node dist/bench/storage.js [--runs 1] [--ops 500] [--size 64] [--memory 256] [--empty]
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { TEST_CPU } from '../test/helpers/mvisor.js';
import { JsonLines } from './json-lines.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const QEMU = '/usr/bin/qemu-system-x86_64';
const VM_TIMEOUT_MS = 20 * 60_000;
/** After `bench=done` the guest resets; a VMM that has not exited by then is killed. */
const EXIT_GRACE_MS = 60_000;
const DISKS = ['vda', 'vdb', 'sda', 'sdb'] as const;
const DISK_KIND: Record<(typeof DISKS)[number], string> = {
  vda: 'virtio raw',
  vdb: 'virtio qcow2',
  sda: 'IDE raw',
  sdb: 'IDE qcow2',
};
const MODES = ['randread', 'randwrite', 'seqread', 'seqwrite'] as const;
const MARKER = 'begin';
const CLK_TCK = 100; // USER_HZ on x86-64 Linux
const MiB = 1024 * 1024;

type Vmm = 'mvisor' | 'qemu';

interface Exits {
  io: number;
  mmio: number;
}

/** One reading of the VMM taken when a marker line arrived. */
interface Snapshot {
  at: number;
  serialBytes: number;
  /** The host's 1-minute load average (other VMs running at the same time make the rates noisy). */
  load: number;
  /** CPU seconds of the whole process (user+sys, exited threads included). */
  cpu: number;
  /** CPU seconds of the vCPU threads (KVM_RUN callers); undefined when none was seen yet. */
  vcpuCpu: number | undefined;
  exits: Promise<Exits | undefined>;
}

interface ModeResult {
  ops: number;
  us: number;
  bytes: number;
  error?: string;
  /** Port-I/O + MMIO exits in the window, and the console bytes printed in it. */
  windowExits?: number;
  consoleBytes?: number;
  /** Process CPU per request, microseconds. */
  cpuUsPerReq?: number;
  /** CPU per request outside the vCPU threads, microseconds. */
  vmmCpuUsPerReq?: number;
}

interface RunResult {
  vmm: Vmm;
  modes: Map<string, ModeResult>;
  wallMs: number;
  beginMs: number;
  benchMs: number;
  peakRssKb: number;
  code: number | null;
  cpu: number;
  bootExits?: Exits;
  totalExits?: Exits;
  serialExitsPerByte?: number;
  /** Mean host load average at the window ends. */
  load: number;
  /** False when the VMM's exit counters do not count port I/O (QEMU's KVM io_exits under kvm_pvm). */
  ioCounted: boolean;
  /** The vCPU thread(s) and their share of the process CPU, for the log. */
  vcpuInfo: string;
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

class BenchError extends Error {}

// ---- /proc sampling ---------------------------------------------------------

/** user+sys CPU seconds from a /proc stat line (fields 14 and 15; comm may hold spaces). */
function statCpu(path: string): number | undefined {
  try {
    const s = readFileSync(path, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/**
 * The vCPU thread of `pid`: QEMU names it "CPU 0/KVM"; mvisor's is an unnamed
 * native thread, found as the thread other than the main one with the most
 * CPU time once the kernel has booted (where guest kernel code is emulated,
 * the vCPU thread has spent minutes of CPU by then; the others seconds).
 */
function findVcpuThreads(pid: number): Set<number> {
  const found = new Set<number>();
  let best: { tid: number; cpu: number } | undefined;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return found;
  }
  for (const t of tids) {
    const tid = Number(t);
    try {
      if (/^CPU \d+\/KVM/.test(readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8'))) found.add(tid);
    } catch {
      continue;
    }
    const cpu = statCpu(`/proc/${pid}/task/${t}/stat`) ?? 0;
    if (tid !== pid && (!best || cpu > best.cpu)) best = { tid, cpu };
  }
  if (!found.size && best) found.add(best.tid);
  return found;
}

function vcpuCpu(pid: number, tids: Set<number>): number | undefined {
  if (!tids.size) return undefined;
  let sum = 0;
  for (const t of tids) sum += statCpu(`/proc/${pid}/task/${t}/stat`) ?? 0;
  return sum;
}

// ---- exit counters: mvisor's control socket, QEMU's QMP ----------------------

interface ExitSource {
  read(): Promise<Exits | undefined>;
  close(): void;
}

async function mvisorExits(path: string, alive: () => boolean): Promise<ExitSource | undefined> {
  const c = await JsonLines.open(path, Date.now() + 120_000, () => false, alive);
  if (!c) return undefined;
  return {
    read: async () => {
      const r = await c.request({ cmd: 'status' });
      const e = r?.exits as { io?: number; mmio?: number } | undefined;
      return r?.ok && e && typeof e.io === 'number' && typeof e.mmio === 'number'
        ? { io: e.io, mmio: e.mmio }
        : undefined;
    },
    close: () => c.close(),
  };
}

/** QEMU's per-vCPU KVM statistics (QMP query-stats, QEMU >= 7.1), summed over vCPUs. */
async function qemuExits(path: string, alive: () => boolean): Promise<ExitSource | undefined> {
  const c = await JsonLines.open(path, Date.now() + 120_000, (m) => 'event' in m, alive);
  if (!c) return undefined;
  const greeting = await c.next();
  if (!greeting || !('QMP' in greeting)) return undefined;
  if (!(await c.request({ execute: 'qmp_capabilities' }))?.return) return undefined;
  const read = async (): Promise<Exits | undefined> => {
    const r = await c.request({ execute: 'query-stats', arguments: { target: 'vcpu' } });
    const list = r?.return as { provider: string; stats: { name: string; value: unknown }[] }[] | undefined;
    if (!Array.isArray(list)) return undefined;
    const sum = { io: 0, mmio: 0 };
    let seen = false;
    for (const v of list) {
      if (v.provider !== 'kvm') continue;
      for (const s of v.stats) {
        if (typeof s.value !== 'number') continue;
        if (s.name === 'io_exits') {
          sum.io += s.value;
          seen = true;
        } else if (s.name === 'mmio_exits') sum.mmio += s.value;
      }
    }
    return seen ? sum : undefined;
  };
  if (!(await read())) {
    c.close();
    return undefined;
  }
  return { read, close: () => c.close() };
}

// ---- one VM ------------------------------------------------------------------

const RESULT =
  /mvtest: bench_(\w+?)_(randread|randwrite|seqread|seqwrite)(?:_ops=(\d+) \S+_us=(\d+) \S+_bytes=(\d+)|=(\S+))/;

async function runVm(
  vmm: Vmm,
  cmd: string,
  args: string[],
  sockPath: string,
  env: NodeJS.ProcessEnv,
  statsPath?: string,
): Promise<RunResult> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const pid = child.pid;
  if (pid === undefined) throw new BenchError(`${vmm}: cannot start ${cmd}`);
  let alive = true;
  let serial = '';
  let serialBytes = 0;
  let stderr = '';
  let partial = '';
  let peakRssKb = 0;
  let lastCpu = 0;
  let done = false;
  let vcpus = new Set<number>();
  let vcpuInfo = '';
  const snaps: { key: string; snap: Snapshot }[] = [];
  const modes = new Map<string, ModeResult>();
  let exitsSrc: ExitSource | undefined;
  const exitsReady = (vmm === 'mvisor' ? mvisorExits : qemuExits)(sockPath, () => alive).then(
    (s) => (exitsSrc = s),
  );

  const snapshot = (): Snapshot => ({
    at: performance.now() - t0,
    serialBytes,
    load: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]),
    exits: exitsSrc ? exitsSrc.read() : Promise.resolve(undefined),
    cpu: statCpu(`/proc/${pid}/stat`) ?? lastCpu,
    vcpuCpu: vcpuCpu(pid, vcpus),
  });
  const onLine = (line: string) => {
    // Progress on stderr, so that a long run shows where it is.
    if (line.includes('mvtest: bench'))
      process.stderr.write(`  [${vmm} ${sec(performance.now() - t0)}] ${line.trim()}\n`);
    if (line.includes(`mvtest: bench_${MARKER}=absent`)) {
      vcpus = findVcpuThreads(pid);
      const all = statCpu(`/proc/${pid}/stat`) ?? 0;
      vcpuInfo = `vCPU thread ${[...vcpus].join(',') || 'not found'} (${fmt(all ? ((vcpuCpu(pid, vcpus) ?? 0) / all) * 100 : NaN)}% of the CPU so far)`;
      snaps.push({ key: MARKER, snap: snapshot() });
    }
    const m = RESULT.exec(line);
    if (m) {
      const key = `${m[1]}_${m[2]}`;
      snaps.push({ key, snap: snapshot() });
      modes.set(
        key,
        m[6] !== undefined
          ? { ops: 0, us: 0, bytes: 0, error: m[6] }
          : { ops: Number(m[3]), us: Number(m[4]), bytes: Number(m[5]) },
      );
    }
    if (line.includes('mvtest: bench=done') && !done) {
      done = true;
      snaps.push({ key: 'done', snap: snapshot() });
      setTimeout(() => alive && child.kill('SIGKILL'), EXIT_GRACE_MS).unref();
    }
  };
  child.stdout.on('data', (d: Buffer) => {
    serialBytes += d.length;
    const s = d.toString('latin1');
    serial += s;
    if (serial.length > 1 << 20) serial = serial.slice(-(256 << 10));
    partial += s;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) onLine(p.replace(/\r$/, ''));
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr += d;
    if (stderr.length > 1 << 20) stderr = stderr.slice(-(64 << 10));
  });
  const poll = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) peakRssKb = Math.max(peakRssKb, Number(m[1]));
    } catch {
      // exited
    }
    lastCpu = statCpu(`/proc/${pid}/stat`) ?? lastCpu;
  }, 250);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, VM_TIMEOUT_MS);
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  alive = false;
  clearInterval(poll);
  clearTimeout(timer);
  const wallMs = performance.now() - t0;
  await exitsReady;
  exitsSrc?.close();

  const tail = () =>
    `--- last serial lines ---\n${serial.split('\n').slice(-40).join('\n')}\n--- stderr ---\n${stderr.slice(-4000)}`;
  if (!done) {
    const why = timedOut
      ? `no "mvtest: bench=done" within ${VM_TIMEOUT_MS / 60_000} min (killed)`
      : `exited (code ${code}) before "mvtest: bench=done"`;
    throw new BenchError(`${vmm} failed: ${why}\n${tail()}`);
  }
  if (!snaps.length || snaps[0]!.key !== MARKER)
    throw new BenchError(`${vmm}: no "bench_${MARKER}=absent" line before the results\n${tail()}`);

  // Console exits per byte (mvisor: COM1's ports 0x3f8-0x3ff over the whole run).
  let serialExitsPerByte: number | undefined;
  let totalExits: Exits | undefined;
  if (statsPath && existsSync(statsPath)) {
    const st = JSON.parse(readFileSync(statsPath, 'utf8')) as {
      exits: Exits;
      byPort: Record<string, number>;
    };
    totalExits = st.exits;
    let com1 = 0;
    for (const [p, n] of Object.entries(st.byPort ?? {}))
      if (Number(p) >= 0x3f8 && Number(p) <= 0x3ff) com1 += n;
    if (serialBytes) serialExitsPerByte = com1 / serialBytes;
  }

  const exits = await Promise.all(snaps.map((s) => s.snap.exits));
  // Booting Linux on a PC takes thousands of port accesses (PIT, PIC, UART, PCI
  // config): a port-I/O counter still at 0 then does not count them.
  const ioCounted = !!exits[0] && exits[0].io > 0;
  for (let i = 1; i < snaps.length; i++) {
    const r = modes.get(snaps[i]!.key);
    if (!r || r.error || !r.ops) continue;
    const a = snaps[i - 1]!.snap;
    const b = snaps[i]!.snap;
    r.cpuUsPerReq = ((b.cpu - a.cpu) * 1e6) / r.ops;
    if (a.vcpuCpu !== undefined && b.vcpuCpu !== undefined)
      r.vmmCpuUsPerReq = ((b.cpu - a.cpu - (b.vcpuCpu - a.vcpuCpu)) * 1e6) / r.ops;
    const ea = exits[i - 1];
    const eb = exits[i];
    if (ea && eb && ioCounted) {
      r.windowExits = eb.io - ea.io + eb.mmio - ea.mmio;
      r.consoleBytes = b.serialBytes - a.serialBytes;
    }
  }
  const first = snaps[0]!.snap;
  const last = snaps[snaps.length - 1]!.snap;
  return {
    vmm,
    modes,
    wallMs,
    beginMs: first.at,
    benchMs: last.at - first.at,
    peakRssKb,
    code,
    cpu: lastCpu,
    bootExits: exits[0],
    totalExits,
    serialExitsPerByte,
    vcpuInfo,
    load: snaps.reduce((a, x) => a + x.snap.load, 0) / snaps.length,
    ioCounted,
  };
}

// ---- images ------------------------------------------------------------------

function makeTemplates(dir: string, sizeMiB: number, empty: boolean): { raw: string; qcow2: string } {
  const raw = join(dir, 'template.raw');
  const qcow2 = join(dir, 'template.qcow2');
  if (empty) {
    const fd = openSync(raw, 'w');
    closeSync(fd);
    execFileSync('truncate', ['-s', `${sizeMiB}M`, raw]);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, `${sizeMiB}M`]);
  } else {
    const fd = openSync(raw, 'w');
    for (let i = 0; i < sizeMiB; i++) writeSync(fd, randomBytes(MiB));
    closeSync(fd);
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  }
  return { raw, qcow2 };
}

/** Fresh copies of the templates for one VM: vda raw, vdb qcow2, sda raw, sdb qcow2. */
function freshImages(dir: string, t: { raw: string; qcow2: string }): Record<(typeof DISKS)[number], string> {
  const imgs = {
    vda: join(dir, 'vda.raw'),
    vdb: join(dir, 'vdb.qcow2'),
    sda: join(dir, 'sda.raw'),
    sdb: join(dir, 'sdb.qcow2'),
  };
  for (const p of [imgs.vda, imgs.sda]) copyFileSync(t.raw, p);
  for (const p of [imgs.vdb, imgs.sdb]) copyFileSync(t.qcow2, p);
  return imgs;
}

// ---- report ------------------------------------------------------------------

const median = (xs: (number | undefined)[]): number => {
  const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)]! : NaN;
};
const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const ratio = (a: number, b: number) =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : 'n/a';
const sec = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(1) + ' s' : 'n/a');

/** IOPS for random modes, MB/s for sequential ones. */
function rate(r: ModeResult | undefined, mode: string): number | undefined {
  if (!r || r.error || !r.us) return undefined;
  return mode.startsWith('seq') ? r.bytes / r.us : (r.ops * 1e6) / r.us;
}

function printRun(i: number, r: RunResult): void {
  const ex = (e?: Exits) => (e ? `io ${e.io} + mmio ${e.mmio}` : 'n/a');
  console.log(
    `run ${i + 1} ${r.vmm.padEnd(6)}: bench began ${sec(r.beginMs)} after start (exits by then: ${ex(r.bootExits)}), ` +
      `${r.vcpuInfo}, bench ${sec(r.benchMs)} (host load ${r.load.toFixed(1)}), exit ${sec(r.wallMs)} (code ${r.code}), CPU ${r.cpu.toFixed(1)} s, peak RSS ${r.peakRssKb} KiB` +
      (r.totalExits ? `, exits in all ${ex(r.totalExits)}` : '') +
      (r.serialExitsPerByte !== undefined ? `, console ${r.serialExitsPerByte.toFixed(2)} exits/byte` : ''),
  );
  for (const d of DISKS) {
    const parts = MODES.map((m) => {
      const x = r.modes.get(`${d}_${m}`);
      if (!x) return `${m} missing`;
      if (x.error) return `${m} ERROR ${x.error}`;
      return `${m} ${fmt(rate(x, m)!, m.startsWith('seq') ? 2 : 1)}${m.startsWith('seq') ? ' MB/s' : ' IOPS'}`;
    });
    console.log(`    ${d}: ${parts.join(', ')}`);
  }
}

function report(mv: RunResult[], qm: RunResult[], ops: number, runs: number): boolean {
  let ok = true;
  console.log(
    `\nmedians over ${runs} alternating run(s), ${ops} requests per disk and mode, queue depth 1; ` +
      `rand* = 4 KiB (IOPS), seq* = 64 KiB (MB/s); exits = port-I/O + MMIO exits per request; ` +
      `CPU = VMM process user+sys per request (all threads / outside the vCPU thread), µs`,
  );
  const head =
    'disk  image         mode       mvisor      qemu  ratio | exits/req mvisor  qemu | ' +
    'CPU/req all  mvisor    qemu ratio | CPU/req non-vCPU mvisor   qemu ratio';
  console.log(head);
  // The guest's 8250 console driver makes the same UART accesses per byte under both VMMs.
  const consoleRate = median(mv.map((r) => r.serialExitsPerByte));
  const perReq = (x: ModeResult | undefined) =>
    x?.windowExits === undefined || !x.ops || !Number.isFinite(consoleRate)
      ? undefined
      : Math.max(0, x.windowExits - (x.consoleBytes ?? 0) * consoleRate) / x.ops;
  console.log('-'.repeat(head.length));
  for (const d of DISKS) {
    for (const m of MODES) {
      const key = `${d}_${m}`;
      const a = mv.map((r) => r.modes.get(key));
      const b = qm.map((r) => r.modes.get(key));
      const errs = [...a, ...b].filter((x) => !x || x.error);
      if (errs.length) ok = false;
      const ra = median(a.map((x) => rate(x, m)));
      const rb = median(b.map((x) => rate(x, m)));
      const ea = median(a.map(perReq));
      const eb = median(b.map(perReq));
      const ca = median(a.map((x) => x?.cpuUsPerReq));
      const cb = median(b.map((x) => x?.cpuUsPerReq));
      const va = median(a.map((x) => x?.vmmCpuUsPerReq));
      const vb = median(b.map((x) => x?.vmmCpuUsPerReq));
      const digits = m.startsWith('seq') ? 2 : 1;
      console.log(
        `${d.padEnd(5)} ${DISK_KIND[d].padEnd(13)} ${m.padEnd(9)} ${fmt(ra, digits).padStart(7)} ${fmt(rb, digits).padStart(9)} ${ratio(ra, rb).padStart(6)} | ` +
          `${fmt(ea, 1).padStart(16)} ${fmt(eb, 1).padStart(5)} | ` +
          `${fmt(ca).padStart(19)} ${fmt(cb).padStart(7)} ${ratio(ca, cb).padStart(5)} | ` +
          `${fmt(va).padStart(23)} ${fmt(vb).padStart(6)} ${ratio(va, vb).padStart(5)}` +
          (errs.length
            ? `  (errors or missing results: ${errs.map((x) => x?.error ?? 'missing').join(', ')})`
            : ''),
      );
    }
  }
  console.log(
    `peak RSS (KiB)    mvisor ${fmt(median(mv.map((r) => r.peakRssKb)))}  qemu ${fmt(median(qm.map((r) => r.peakRssKb)))}  ` +
      `ratio ${ratio(median(mv.map((r) => r.peakRssKb)), median(qm.map((r) => r.peakRssKb)))}`,
  );
  console.log(
    `bench start (s)   mvisor ${fmt(median(mv.map((r) => r.beginMs)) / 1000, 1)}  qemu ${fmt(median(qm.map((r) => r.beginMs)) / 1000, 1)}   ` +
      `bench duration (s) mvisor ${fmt(median(mv.map((r) => r.benchMs)) / 1000, 1)}  qemu ${fmt(median(qm.map((r) => r.benchMs)) / 1000, 1)}`,
  );
  const notes = [
    'Windows: each disk/mode is measured from the console line that ends the previous one (the first from',
    `  "bench_${MARKER}=absent") to its own line, so boot is in none of them. Exits and CPU are read when a line`,
    '  reaches the host.',
    'Exits: mvisor: port-I/O + MMIO exits that reached mvisor (control socket `status`); QEMU: KVM statistics',
    '  io_exits + mmio_exits (QMP query-stats). The console line in each window is subtracted at',
    `  ${fmt(consoleRate, 2)} exits/byte (mvisor's COM1 port counts over the whole run; the guest's 8250 driver makes the`,
    '  same accesses under both VMMs).',
    'CPU: user+sys of the VMM process, from /proc (10 ms ticks), including the console line (< 1% of a window).',
    '  "all" includes the vCPU thread, which here is mostly KVM emulating guest kernel code; "non-vCPU" is the',
    "  VMM's own work outside KVM_RUN (mvisor: JavaScript device models, event loop, libuv threads; QEMU: main",
    '  loop and I/O threads). QEMU emulates port I/O and MMIO in the vCPU thread, so its IDE register work is in',
    '  "all" only; mvisor hands every exit to its JavaScript thread.',
  ];
  if (qm.some((r) => !r.ioCounted))
    notes.push(
      "QEMU exits n/a: this host's KVM (kvm_pvm) leaves io_exits at 0 through a whole boot, so QEMU's port-I/O",
      '  exits cannot be counted from outside here (on a hardware KVM host they can).',
    );
  console.log(notes.join('\n'));
  return ok;
}

// ---- main --------------------------------------------------------------------

async function main(): Promise<void> {
  const runs = arg('runs', 1);
  const ops = arg('ops', 500);
  const sizeMiB = arg('size', 64);
  const memory = arg('memory', 256);
  const empty = process.argv.includes('--empty');
  if (!existsSync(QEMU)) throw new BenchError(`${QEMU} not found (apt-get install qemu-system-x86)`);
  if (!existsSync('/dev/kvm')) throw new BenchError('/dev/kvm not found');
  if (
    !existsSync(join(repo, 'dist/src/vmm/main.js')) ||
    !existsSync(join(repo, 'build/Release/mvisor_kvm.node'))
  )
    throw new BenchError('mvisor is not built: run `npm run build` first');
  if (ops * 64 * 1024 > sizeMiB * MiB)
    console.log(`note: ${ops} sequential 64 KiB requests wrap around the ${sizeMiB} MiB disks`);

  const kit = Object.fromEntries(
    execFileSync(join(repo, 'guests/build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      .trim()
      .split('\n')
      .map((l) => l.split('=') as [string, string]),
  );
  const src = readFileSync(join(repo, 'guests/kernel/mvisor_test.c'), 'utf8');
  if (!src.includes('bench_ops'))
    throw new BenchError('guests/kernel/mvisor_test.c has no bench_ops: too old for this bench');

  const dir = mkdtempSync(join(tmpdir(), 'mvisor-bench-storage-'));
  const templates = makeTemplates(dir, sizeMiB, empty);
  const cmdline =
    `console=ttyS0 acpi=off mvisor_test.bench=${MARKER},${DISKS.join(',')} ` +
    `mvisor_test.bench_ops=${ops} mvisor_test.action=reboot`;
  console.log(
    `mvisor vs ${QEMU}: 1 vCPU, ${memory} MiB, four ${sizeMiB} MiB disks (${empty ? 'empty: sparse raw, qemu-img create qcow2' : 'full of random data, qcow2 fully allocated'}), ` +
      `${ops} requests per disk and mode, ${runs} run(s) each, alternating\nkernel ${kit.MVISOR_KERNEL}\ncmdline ${cmdline}\nimages in ${dir}\n`,
  );

  const mv: RunResult[] = [];
  const qm: RunResult[] = [];
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) {
    // mvisor
    {
      const rdir = mkdtempSync(join(dir, `mvisor-${i}-`));
      const imgs = freshImages(rdir, templates);
      const cfg = join(rdir, 'vm.yaml');
      writeFileSync(
        cfg,
        stringify({
          name: 'bench-storage',
          memory: `${memory}M`,
          vcpus: 1,
          cpu: TEST_CPU,
          kernel: kit.MVISOR_KERNEL,
          initrd: kit.MVISOR_INITRAMFS,
          cmdline,
          serial: 'stdio',
          devices: [
            { class: 'virtio-block', name: 'vda', image: imgs.vda },
            { class: 'virtio-block', name: 'vdb', image: imgs.vdb },
            { class: 'ata-disk', name: 'sda', image: imgs.sda },
            { class: 'ata-disk', name: 'sdb', image: imgs.sdb },
          ],
        }),
      );
      const sock = join(rdir, 'control.sock');
      const stats = join(rdir, 'stats.json');
      const r = await runVm(
        'mvisor',
        process.execPath,
        [join(repo, 'bin/mvisor.js'), '-c', cfg, '--control', sock],
        sock,
        { ...process.env, MVISOR_STATS: stats },
        stats,
      );
      mv.push(r);
      printRun(i, r);
      rmSync(rdir, { recursive: true, force: true });
    }
    // QEMU
    {
      const rdir = mkdtempSync(join(dir, `qemu-${i}-`));
      const imgs = freshImages(rdir, templates);
      const sock = join(rdir, 'qmp.sock');
      const qemuArgs = [
        '-enable-kvm', '-M', 'pc', '-nodefaults', '-no-reboot', '-display', 'none',
        '-cpu', 'qemu64,-cx16,+xsaveerptr', '-smp', '1', '-m', String(memory),
        '-kernel', kit.MVISOR_KERNEL!, '-initrd', kit.MVISOR_INITRAMFS!, '-append', cmdline, '-serial', 'stdio',
        '-qmp', `unix:${sock},server=on,wait=off`,
        '-drive', `file=${imgs.vda},if=virtio,format=raw`,
        '-drive', `file=${imgs.vdb},if=virtio,format=qcow2`,
        '-drive', `file=${imgs.sda},if=ide,index=0,format=raw`,
        '-drive', `file=${imgs.sdb},if=ide,index=1,format=qcow2`,
      ]; // prettier-ignore
      const r = await runVm('qemu', QEMU, qemuArgs, sock, process.env);
      qm.push(r);
      printRun(i, r);
      rmSync(rdir, { recursive: true, force: true });
    }
  }
  const ok = report(mv, qm, ops, runs);
  console.log(`\ntotal ${sec(performance.now() - t0)}`);
  rmSync(dir, { recursive: true, force: true });
  if (!ok) process.exit(1);
}

main().catch((e) => {
  console.error(e instanceof BenchError ? e.message : e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
