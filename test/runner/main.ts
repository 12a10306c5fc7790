/**
 * `make test`'s test run (after lint and typecheck): every vitest test and
 * kvm-unit-tests' CI set, on any machine.
 *
 *   node dist/test/runner/main.js [--only FILE,...] [--record-times] [--no-conformance]
 *
 * Native mode (mode.ts): vitest and `conformance --ci` here, as a developer
 * runs them. Nested mode: the tests that need no KVM here; every KVM test
 * (test/integration/ and kvm-unit-tests) inside the nested test host
 * (test/kvm-host/), in shards of about ten minutes, each its own boot. A
 * shard whose host panics runs its unfinished tests again once. The summary
 * merges both phases into test-results.json and says what ran where.
 *
 * Time-outs are the only thing the mode changes: MVISOR_TIMEOUT_SCALE (one
 * factor, test/helpers/timeouts.ts) multiplies every one of them nested.
 * Exit code: 0 when everything passed, 1 otherwise, 2 for bad usage.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { probeKvmFacts } from '../../src/vmm/kvm/availability.js';
import { locateSuite } from '../conformance/suite.js';
import { repoRoot } from '../kvm-host/host.js';
import { chooseMode } from './mode.js';
import { mergeReports, type VitestJson } from './results.js';
import { runNestedPhase, NESTED_TIMEOUT_SCALE, type NestedOptions } from './nested.js';
import { needsKvm } from './shards.js';

const repo = repoRoot();
const say = (line: string) => process.stdout.write(`make test: ${line}\n`);

/** Every test file, relative to the repository, sorted. */
export function testFiles(dir = 'test'): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(join(repo, d), { withFileTypes: true })) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.test.ts')) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** Runs a command with inherited stdio; resolves to its exit code. */
export function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: repo, stdio: 'inherit', env: { ...process.env, ...env } });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    child.on('error', () => resolve(127));
  });
}

const vitest = join(repo, 'node_modules/vitest/vitest.mjs');

function readVitestJson(): VitestJson | undefined {
  try {
    return JSON.parse(readFileSync(join(repo, 'test-results.json'), 'utf8')) as VitestJson;
  } catch {
    return undefined;
  }
}

interface Args {
  only?: string[];
  recordTimes: boolean;
  conformance: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { recordTimes: false, conformance: true };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    if (v === '--only') a.only = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (v === '--record-times') a.recordTimes = true;
    else if (v === '--no-conformance') a.conformance = false;
    else {
      process.stderr.write(
        `make test: unknown option ${v}\nusage: node dist/test/runner/main.js [--only FILE,...] [--record-times] [--no-conformance]\n`,
      );
      process.exit(2);
    }
  }
  return a;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const choice = chooseMode(probeKvmFacts(), process.env.MVISOR_TEST_MODE);
  say(`mode ${choice.mode}: ${choice.reason}`);
  const all = args.only ?? testFiles();
  const missing = all.filter((f) => !existsSync(join(repo, f)));
  if (missing.length) {
    process.stderr.write(`make test: no such test file: ${missing.join(', ')}\n`);
    return 2;
  }

  // The unit tests load kvm-unit-tests' kernels too (test/unit/vmm/boot/multiboot.test.ts):
  // build the suite first (cached in ~/.cache/mvisor) and tell them where it is.
  const kutEnv: Record<string, string> = {};
  if (!process.env.MVISOR_TEST_KUT_DIR) {
    const found = await locateSuite(repo, (l) => say(`kvm-unit-tests: ${l}`));
    if ('suite' in found) kutEnv.MVISOR_TEST_KUT_DIR = found.suite.dir;
    else say(`kvm-unit-tests: ${'error' in found ? found.error : found.skip}`);
  }

  if (choice.mode === 'native') {
    say('every test runs on this machine');
    const rc = await run(process.execPath, [vitest, 'run', ...(args.only ?? [])], kutEnv);
    const conf = args.conformance
      ? await run(process.execPath, [join(repo, 'dist/test/conformance/run.js'), '--ci'])
      : 0;
    say(
      `native run: vitest exit ${rc}, kvm-unit-tests exit ${conf}, ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    );
    return rc === 0 && conf === 0 ? 0 : 1;
  }

  const kvmFiles = all.filter(needsKvm);
  const nativeFiles = all.filter((f) => !needsKvm(f));
  say(
    `the tests that need no KVM (${nativeFiles.length} files) run here; the ${kvmFiles.length} KVM test files` +
      `${args.conformance ? ' and kvm-unit-tests' : ''} run inside the nested KVM test host (test/kvm-host/)`,
  );
  // Whatever the KVM tests build at load time (boot images, option ROMs)
  // is built here, natively: the test host's root is read-only.
  const tPrep = Date.now();
  const prep = kvmFiles.length ? await run(process.execPath, [vitest, 'list', ...kvmFiles]) : 0;
  if (prep !== 0) {
    say('preparing the KVM tests failed (vitest list, above)');
    return 1;
  }
  say(`prepared the KVM tests' artifacts natively in ${((Date.now() - tPrep) / 1000).toFixed(0)} s`);

  const tNative = Date.now();
  const nativeRc = nativeFiles.length
    ? await run(
        process.execPath,
        [vitest, 'run', ...(args.only ? nativeFiles : ['--exclude', 'test/integration/**'])],
        kutEnv,
      )
    : 0;
  const nativeReport = nativeFiles.length ? readVitestJson() : undefined;
  const nativeS = (Date.now() - tNative) / 1000;

  const work = mkdtempSync(join(tmpdir(), 'mvisor-nested-'));
  const opts: NestedOptions = {
    repo,
    work,
    files: kvmFiles,
    conformance: args.conformance,
    recordTimes: args.recordTimes,
    log: say,
  };
  const nested = await runNestedPhase(opts);
  const merged = mergeReports(nativeReport, nested.vitest);
  writeFileSync(join(repo, 'test-results.json'), JSON.stringify(merged, null, 2));

  const totalS = (Date.now() - t0) / 1000;
  say('--- summary ---');
  say(`mode: nested (${choice.reason}); time-outs x${NESTED_TIMEOUT_SCALE} inside the test host`);
  say(
    `native: ${nativeFiles.length} files, vitest exit ${nativeRc}, ${nativeS.toFixed(0)} s` +
      (nativeReport
        ? ` (${nativeReport.numPassedTests} passed, ${nativeReport.numFailedTests} failed, ${nativeReport.numPendingTests} skipped)`
        : ''),
  );
  for (const line of nested.summary) say(line);
  say(
    `all vitest tests: ${merged.numPassedTests} passed, ${merged.numFailedTests} failed, ${merged.numPendingTests} skipped; ` +
      `nested phase ${nested.seconds.toFixed(0)} s, whole run ${totalS.toFixed(0)} s`,
  );
  for (const p of nested.problems) say(`FAIL: ${p}`);
  const ok = nativeRc === 0 && merged.success && nested.ok;
  say(ok ? 'ok' : 'FAILED');
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`make test: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
