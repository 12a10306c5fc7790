/**
 * kvm-unit-tests' x86 suite under mvisor, side by side with QEMU.
 *
 *   npm run conformance -- [--ci] [--only a,b] [--json] [--no-qemu|--qemu] [--no-mvisor]
 *                          [--timeout-scale X] [--jobs N] [--all] [--logs DIR] [--verbose]
 *
 * Finds or builds the suite (suite.ts), reads x86/unittests.cfg and runs
 * every test (x86_64 or any arch; the rest are listed as skipped, never
 * left out) under Debian's qemu-system-x86_64 with the command line the
 * suite's x86/run builds, and under mvisor with the equivalent VMM config
 * (mvisor.ts), one VM at a time. Prints one table; `--json` prints the rows.
 *
 * `--ci` runs mvisor only, on the tests QEMU passes here, and exits 1 when
 * one of them does not pass and skips.ts gives no reason; 0 otherwise. The
 * suite missing (no MVISOR_KUT_DIR, no tarball) is a skip: exit 0. Exit 2:
 * bad usage or a suite that cannot be built.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { cpuFeatures } from '../../src/vmm/cpu/cpuid.js';
import { runProcess, type TimedOutcome } from './exec.js';
import { mvisorPlan, mvisorVerdict } from './mvisor.js';
import {
  NO_FILE,
  envFileText,
  qemuAcceptsOptions,
  qemuArgv,
  qemuVerdict,
  testWords,
  type Verdict,
} from './qemu.js';
import { ciOutcome, formatTable, ratio, tallyLine, vmexitCycles, type Row, type VmmRun } from './report.js';
import { shellWords } from './shell-words.js';
import { KNOWN_SKIPS, QEMU_PASSES_HERE } from './skips.js';
import { locateSuite } from './suite.js';
import { parseUnittestsCfg, suiteSkipReason, timeoutSeconds, type UnitTest } from './unittests.js';

/** The repository: this file is test/conformance/run.ts, compiled to dist/test/conformance/run.js. */
const here = dirname(fileURLToPath(import.meta.url));
const repo = existsSync(join(here, '..', '..', 'package.json'))
  ? resolve(here, '..', '..')
  : resolve(here, '..', '..', '..');

interface Options {
  ci: boolean;
  json: boolean;
  only?: string[];
  qemu: boolean;
  mvisor: boolean;
  timeoutScale: number;
  jobs: number;
  all: boolean;
  logs?: string;
  jsonFile?: string;
  resultsJsonl?: string;
  retries: number;
  verbose: boolean;
}

const USAGE = `usage: npm run conformance -- [options]
  --ci                 mvisor only, on the tests QEMU passes here; exit 1 on a failure skips.ts does not explain
  --only a,b           only these tests (names from x86/unittests.cfg)
  --json               print the results as JSON instead of the table
  --json-file FILE     also write the results as JSON to FILE
  --results-jsonl FILE append one JSON line per finished test to FILE as it finishes (test/runner/)
  --retries N          run a test mvisor fails up to N more times (the nested test host; its row says so)
  --qemu / --no-qemu   run the QEMU half (default: on, off with --ci)
  --no-mvisor          skip the mvisor half
  --timeout-scale X    multiply every test's timeout (default 1)
  --jobs N             tests run at once (default 1: one VM at a time)
  --all                also run tests marked nodefault
  --logs DIR           where logs and generated configs go (default: a new directory in $TMPDIR)
  --verbose            echo each test's serial output
env: MVISOR_KUT_DIR (a built checkout), MVISOR_KUT_TARBALL, QEMU (binary)`;

function parseArgs(argv: string[]): Options {
  const o: Options = {
    ci: false,
    json: false,
    qemu: true,
    mvisor: true,
    timeoutScale: 1,
    jobs: 1,
    all: false,
    retries: 0,
    verbose: false,
  };
  let qemuSet = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    const [flag, inline] =
      a.startsWith('--') && a.includes('=')
        ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
        : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--ci':
        o.ci = true;
        break;
      case '--json':
        o.json = true;
        break;
      case '--only':
        o.only = value()
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '');
        break;
      case '--qemu':
        o.qemu = true;
        qemuSet = true;
        break;
      case '--no-qemu':
        o.qemu = false;
        qemuSet = true;
        break;
      case '--mvisor':
        o.mvisor = true;
        break;
      case '--no-mvisor':
        o.mvisor = false;
        break;
      case '--timeout-scale':
        o.timeoutScale = Number(value());
        if (!(o.timeoutScale > 0)) usage('--timeout-scale takes a positive number');
        break;
      case '--jobs':
        o.jobs = Number(value());
        if (!Number.isInteger(o.jobs) || o.jobs < 1) usage('--jobs takes a whole number >= 1');
        break;
      case '--all':
        o.all = true;
        break;
      case '--logs':
        o.logs = resolve(value());
        break;
      case '--json-file':
        o.jsonFile = resolve(value());
        break;
      case '--results-jsonl':
        o.resultsJsonl = resolve(value());
        break;
      case '--retries':
        o.retries = Number(value());
        if (!Number.isInteger(o.retries) || o.retries < 0) usage('--retries takes a whole number >= 0');
        break;
      case '--verbose':
        o.verbose = true;
        break;
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        usage(`unknown option ${a}`);
    }
  }
  if (o.ci && !qemuSet) o.qemu = false;
  if (o.ci && !o.mvisor) usage('--ci runs mvisor; drop --no-mvisor');
  return o;
}

function usage(message: string): never {
  process.stderr.write(`conformance: ${message}\n${USAGE}\n`);
  process.exit(2);
}

const say = (line: string) => process.stderr.write(`conformance: ${line}\n`);

interface Context {
  opts: Options;
  suiteDir: string;
  logs: string;
  qemuBin?: string;
  qemuMissing?: string;
  qemuEnvFile?: string;
  mvisorEnvFile: string;
  mvisorMissing?: string;
  hasPitLostTicks: boolean;
  knownFeatures: ReadonlySet<string>;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  const found = await locateSuite(repo, say);
  if ('skip' in found) {
    say(`SKIP: ${found.skip}`);
    if (opts.json) process.stdout.write(`${JSON.stringify({ skipped: found.skip }, null, 2)}\n`);
    return 0;
  }
  if ('error' in found) {
    say(found.error);
    return 2;
  }
  const suiteDir = found.suite.dir;
  say(`suite: ${found.suite.origin}`);
  const cfg = readFileSync(join(suiteDir, 'x86', 'unittests.cfg'), 'utf8');
  let tests = parseUnittestsCfg(cfg);
  const names = new Set(tests.map((t) => t.name));
  const wanted = opts.only ?? (opts.ci ? [...QEMU_PASSES_HERE] : undefined);
  if (wanted) {
    const unknown = wanted.filter((n) => !names.has(n));
    if (unknown.length > 0) usage(`no such test in x86/unittests.cfg: ${unknown.join(', ')}`);
    tests = tests.filter((t) => wanted.includes(t.name));
  }

  const logs = opts.logs ?? mkdtempSync(join(tmpdir(), 'mvisor-kut-'));
  mkdirSync(logs, { recursive: true });
  say(`logs: ${logs}`);

  const ctx: Context = {
    opts,
    suiteDir,
    logs,
    mvisorEnvFile: join(logs, 'env-mvisor'),
    hasPitLostTicks: schemaHas('pitLostTicks'),
    knownFeatures: new Set(Object.keys(cpuFeatures)),
  };
  const errataTxt = readOptional(join(suiteDir, 'errata.txt'));
  const kernelRelease = release();
  writeFileSync(
    ctx.mvisorEnvFile,
    envFileText({ kernelRelease, ...(errataTxt !== undefined ? { errataTxt } : {}) }),
  );
  if (opts.qemu) {
    const bin = process.env.QEMU || 'qemu-system-x86_64';
    const help = spawnSync(bin, ['-h'], { encoding: 'utf8' });
    if (help.error !== undefined || !/QEMU/.test(help.stdout ?? '')) {
      ctx.qemuMissing = `${bin} not found (install Debian's qemu-system-x86, or set QEMU)`;
    } else {
      ctx.qemuBin = bin;
      ctx.qemuEnvFile = join(logs, 'env-qemu');
      const qemuVersionString = (help.stdout ?? '').split('\n')[0] ?? '';
      writeFileSync(
        ctx.qemuEnvFile,
        envFileText({ kernelRelease, qemuVersionString, ...(errataTxt !== undefined ? { errataTxt } : {}) }),
      );
    }
  }
  if (opts.mvisor && !existsSync(join(repo, 'dist', 'src', 'commands', 'vm', 'run.js'))) {
    ctx.mvisorMissing = 'mvisor is not built (npm run build:ts)';
  }

  const rows: Row[] = new Array<Row>(tests.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      const t = tests[i];
      if (t === undefined) return;
      let row = await runTest(ctx, t);
      for (let n = 1; n <= opts.retries && !ciOutcome([row], KNOWN_SKIPS).ok; n++) {
        say(`${progressLine(row)}: running it again (${n} of ${opts.retries})`);
        const again = await runTest(ctx, t);
        row = { ...again, retried: n };
      }
      rows[i] = row;
      say(progressLine(row));
      if (opts.resultsJsonl !== undefined)
        appendFileSync(opts.resultsJsonl, `${JSON.stringify(resultLine(row))}\n`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.jobs, tests.length) }, worker));

  const show = { qemu: opts.qemu, mvisor: opts.mvisor };
  const json = `${JSON.stringify({ suite: found.suite.origin, logs, rows }, null, 2)}\n`;
  if (opts.jsonFile !== undefined) writeFileSync(opts.jsonFile, json);
  if (opts.json) {
    process.stdout.write(json);
  } else {
    process.stdout.write(`${formatTable(rows, show)}\n\n`);
    if (opts.qemu) process.stdout.write(`${tallyLine(rows, 'qemu')}\n`);
    if (opts.mvisor) process.stdout.write(`${tallyLine(rows, 'mvisor')}\n`);
    process.stdout.write(`logs: ${logs}\n`);
  }
  if (!opts.ci) return 0;
  const ci = ciOutcome(rows, KNOWN_SKIPS);
  for (const n of ci.notes) say(n);
  for (const f of ci.failures) say(`CI FAIL ${f}`);
  say(ci.ok ? 'CI: ok' : `CI: ${ci.failures.length} test(s) failed`);
  return ci.ok ? 0 : 1;
}

/** One streamed result (test/runner/results.ts ConformanceLine): mvisor's, judged as --ci judges it. */
function resultLine(r: Row): {
  test: string;
  result: string;
  reason?: string;
  ok: boolean;
  durationMs: number;
} {
  const m = r.mvisor;
  const ci = ciOutcome([r], KNOWN_SKIPS);
  const reason = ci.failures[0] ?? ci.notes[0] ?? m?.reason;
  return {
    test: r.name,
    result: m?.result ?? 'NOT RUN',
    ...(r.retried ? { retries: r.retried } : {}),
    ...(reason !== undefined ? { reason } : {}),
    ok: ci.ok,
    durationMs: m?.durationMs ?? 0,
  };
}

function progressLine(r: Row): string {
  const part = (vmm: string, v?: VmmRun) =>
    v ? `${vmm} ${v.result}${v.durationMs !== undefined ? ` ${(v.durationMs / 1000).toFixed(1)}s` : ''}` : '';
  return [r.name, part('qemu', r.qemu), part('mvisor', r.mvisor)].filter((s) => s !== '').join('  ');
}

async function runTest(ctx: Context, t: UnitTest): Promise<Row> {
  const { opts } = ctx;
  const row: Row = {
    name: t.name,
    file: t.file,
    smp: t.smp,
    testArgs: t.testArgs,
    extraParams: t.extraParams.trim(),
    groups: t.groups,
    timeoutS: 0,
  };
  const skipBoth = (reason: string): Row => {
    if (opts.qemu) row.qemu = { result: 'SKIP', reason };
    if (opts.mvisor) row.mvisor = { result: 'SKIP', reason };
    return row;
  };
  try {
    row.timeoutS = timeoutSeconds(t.timeout) * opts.timeoutScale;
  } catch (e) {
    return skipBoth(`unittests.cfg: ${(e as Error).message}`);
  }
  const suiteSkip = suiteSkipReason(t, {
    arch: 'x86_64',
    suiteDir: ctx.suiteDir,
    readFile: readOptional,
    runAll: opts.all,
  });
  if (suiteSkip !== undefined) return skipBoth(suiteSkip);
  let words: string[];
  try {
    // Backticks in the config run as the suite's eval runs them (kvmclock_test: `date +%s`).
    words = testWords(t, (cmd) => execFileSync('sh', ['-c', cmd], { cwd: ctx.suiteDir, encoding: 'utf8' }));
  } catch (e) {
    return skipBoth(`unittests.cfg: ${(e as Error).message}`);
  }
  const vmexitName = t.groups.includes('vmexit') ? shellWords(t.testArgs)[0] : undefined;
  if (opts.qemu) row.qemu = await runQemu(ctx, t, words, row.timeoutS, vmexitName);
  if (opts.mvisor) row.mvisor = await runMvisor(ctx, t, words, row.timeoutS, vmexitName);
  const r = ratio(row);
  if (r !== undefined) row.ratio = r;
  return row;
}

async function runQemu(
  ctx: Context,
  t: UnitTest,
  words: string[],
  timeoutS: number,
  vmexitName: string | undefined,
): Promise<VmmRun> {
  if (ctx.qemuBin === undefined) return { result: 'SKIP', reason: ctx.qemuMissing ?? 'QEMU not available' };
  const log = join(ctx.logs, `${t.name}.qemu.log`);
  // run_tests.sh first checks that QEMU starts with the test's options at all (premature_failure).
  const probeArgs = qemuArgv(NO_FILE, words, ctx.qemuEnvFile);
  const probe = await runProcess(ctx.qemuBin, probeArgs, { cwd: ctx.suiteDir, timeoutMs: 30_000 });
  const probeLog = `${probe.stdout}${probe.stderr}`;
  if (!qemuAcceptsOptions(probeLog)) {
    const last = probeLog.trimEnd().split('\n').pop() ?? '';
    writeLog(log, ctx.qemuBin, probeArgs, probe);
    return { result: 'SKIP', reason: last !== '' ? last : 'QEMU does not start with these options', log };
  }
  const args = qemuArgv(t.file, words, ctx.qemuEnvFile);
  const out = await runProcess(ctx.qemuBin, args, {
    cwd: ctx.suiteDir,
    timeoutMs: timeoutS * 1000,
    ...(ctx.opts.verbose ? { onStdout: (d: string) => process.stderr.write(d) } : {}),
  });
  writeLog(log, ctx.qemuBin, args, out);
  return vmmRun(qemuVerdict(out), out, log, vmexitName);
}

async function runMvisor(
  ctx: Context,
  t: UnitTest,
  words: string[],
  timeoutS: number,
  vmexitName: string | undefined,
): Promise<VmmRun> {
  const plan = mvisorPlan({
    name: t.name,
    kernel: join(ctx.suiteDir, t.file),
    words,
    envFile: ctx.mvisorEnvFile,
    cpuFeatures: ctx.knownFeatures,
    hasPitLostTicks: ctx.hasPitLostTicks,
  });
  if ('skip' in plan) return { result: 'SKIP', reason: plan.skip };
  const notes = plan.notes.length > 0 ? { notes: plan.notes } : {};
  if (ctx.mvisorMissing !== undefined) return { result: 'FAIL', reason: ctx.mvisorMissing, ...notes };
  const configPath = join(ctx.logs, `${t.name}.mvisor.yaml`);
  writeFileSync(
    configPath,
    `# kvm-unit-tests ${t.name}: the VMM config equivalent to x86/run's QEMU command line\n${stringify(plan.config)}`,
  );
  const log = join(ctx.logs, `${t.name}.mvisor.log`);
  const args = [join(repo, 'bin', 'mvisor.js'), '-c', configPath, '--log-level', 'warn'];
  const out = await runProcess(process.execPath, args, {
    cwd: ctx.suiteDir,
    timeoutMs: timeoutS * 1000,
    ...(ctx.opts.verbose ? { onStdout: (d: string) => process.stderr.write(d) } : {}),
  });
  writeLog(log, process.execPath, args, out);
  return { ...vmmRun(mvisorVerdict(out), out, log, vmexitName), ...notes };
}

function vmmRun(v: Verdict, out: TimedOutcome, log: string, vmexitName: string | undefined): VmmRun {
  const run: VmmRun = { ...v, durationMs: Math.round(out.durationMs), exitStatus: out.status, log };
  if (out.timedOut) run.reason = `timeout (${(out.durationMs / 1000).toFixed(0)} s)`;
  if (vmexitName !== undefined) {
    const c = vmexitCycles(out.stdout, vmexitName);
    if (c !== undefined) run.cycles = c;
  }
  return run;
}

function writeLog(path: string, cmd: string, args: readonly string[], out: TimedOutcome): void {
  const quoted = [cmd, ...args].map((a) =>
    /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`,
  );
  writeFileSync(
    path,
    `$ ${quoted.join(' ')}\n` +
      `# exit status ${out.status ?? `signal ${out.signal ?? '?'}`}${out.timedOut ? ' (timed out)' : ''}, ` +
      `${(out.durationMs / 1000).toFixed(1)} s\n` +
      `--- stdout\n${out.stdout}\n--- stderr\n${out.stderr}`,
  );
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Whether this checkout's VMM config has a top-level field (a newer field the runner can use). */
function schemaHas(field: string): boolean {
  try {
    const schema = JSON.parse(readFileSync(join(repo, 'schema', 'vmm-config.schema.json'), 'utf8')) as {
      properties?: Record<string, unknown>;
    };
    return schema.properties?.[field] !== undefined;
  } catch {
    return false;
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    say(
      `error: ${e instanceof Error ? (process.env.DEBUG ? (e.stack ?? e.message) : e.message) : String(e)}`,
    );
    process.exit(2);
  },
);
