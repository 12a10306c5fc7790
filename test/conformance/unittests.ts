/**
 * Reads kvm-unit-tests' `x86/unittests.cfg` as the suite's own
 * `scripts/common.bash` (for_each_unittest) does: a test per `[name]`
 * section, then `key = value` lines; `extra_params` (or its other name
 * `qemu_params`) may span lines between `"""` quotes. Values are kept as
 * written (quotes included): the scripts pass them through `eval`, and so
 * does the runner (shell-words.ts).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

export interface UnitTest {
  name: string;
  /** The kernel, relative to the suite: `x86/vmexit.flat`. */
  file: string;
  /** vCPUs (`smp`), as written (a number, or a shell expression such as `$MAX_SMP`). */
  smp: string;
  /** `test_args` as written ('' if none). */
  testArgs: string;
  /** `extra_params` / `qemu_params` as written ('' if none). */
  extraParams: string;
  groups: string[];
  /** '' (any), 'x86_64' or 'i386'. */
  arch: string;
  machine: string;
  /** `path=value` checks (the test is skipped unless every file holds its value). */
  check: string[];
  accel: string;
  /** As written ('' for the scripts' default, 90s). */
  timeout: string;
  disabledIf: string;
}

const KEYS =
  /^(file|smp|test_args|extra_params|qemu_params|groups|arch|machine|check|accel|timeout|disabled_if) *= *(.*)$/;

export function parseUnittestsCfg(text: string, testDir = 'x86'): UnitTest[] {
  const tests: UnitTest[] = [];
  const lines = text.split('\n');
  let t: UnitTest | undefined;
  for (let n = 0; n < lines.length; n++) {
    // bash's `read -r` drops leading and trailing blanks.
    const line = (lines[n] ?? '').replace(/^[ \t]+|[ \t\r]+$/g, '');
    const section = /^\[(.*)\]$/.exec(line);
    if (section) {
      if (t) tests.push(t);
      t = {
        name: section[1] ?? '',
        file: '',
        smp: '1',
        testArgs: '',
        extraParams: '',
        groups: [],
        arch: '',
        machine: '',
        check: [],
        accel: '',
        timeout: '',
        disabledIf: '',
      };
      continue;
    }
    const m = KEYS.exec(line);
    if (!m || !t) continue;
    const key = m[1] ?? '';
    let value = m[2] ?? '';
    if ((key === 'extra_params' || key === 'qemu_params') && value.startsWith('"""')) {
      // Multi-line until a line ending in """ (a backslash-newline joins lines).
      let acc = `${value.slice(3)}\n`;
      for (n++; n < lines.length; n++) {
        const raw = (lines[n] ?? '').replace(/^[ \t]+|[ \t\r]+$/g, '');
        if (/\\\n$/.test(acc) && !/\\\\\n$/.test(acc)) acc = acc.slice(0, -2);
        const close = /^(.*)"""[ \t]*$/.exec(raw);
        if (close) {
          acc += close[1] ?? '';
          break;
        }
        acc += `${raw}\n`;
      }
      value = acc;
    }
    switch (key) {
      case 'file':
        t.file = `${testDir}/${value}`;
        break;
      case 'smp':
        t.smp = value;
        break;
      case 'test_args':
        t.testArgs = value;
        break;
      case 'extra_params':
      case 'qemu_params':
        t.extraParams = value;
        break;
      case 'groups':
        t.groups = value.split(/\s+/).filter((g) => g !== '');
        break;
      case 'arch':
        t.arch = value;
        break;
      case 'machine':
        t.machine = value;
        break;
      case 'check':
        t.check = value.split(/\s+/).filter((c) => c !== '');
        break;
      case 'accel':
        t.accel = value;
        break;
      case 'timeout':
        t.timeout = value;
        break;
      case 'disabled_if':
        t.disabledIf = value;
        break;
    }
  }
  if (t) tests.push(t);
  return tests;
}

/** The scripts' default when a test names no timeout (scripts/runtime.bash). */
export const DEFAULT_TIMEOUT_S = 90;

/** A timeout(1) duration (`90`, `90s`, `2m`, `1h`, `1.5d`) in seconds. */
export function timeoutSeconds(value: string): number {
  if (value === '') return DEFAULT_TIMEOUT_S;
  const m = /^(\d+(?:\.\d+)?)([smhd]?)$/.exec(value.trim());
  if (!m) throw new Error(`invalid timeout ${JSON.stringify(value)}`);
  const scale = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * scale;
}

/**
 * Why the suite itself would not run `t` on this host (what run_tests.sh
 * prints as SKIP for every VMM alike), or undefined. `arch` is the
 * configured ARCH (x86_64); `readFile` reads a `check` file (undefined
 * when it does not exist).
 */
export function suiteSkipReason(
  t: UnitTest,
  opts: { arch: string; suiteDir: string; readFile: (path: string) => string | undefined; runAll?: boolean },
): string | undefined {
  if (!opts.runAll && t.groups.includes('nodefault'))
    return 'test marked as manual run only (group nodefault)';
  if (t.arch !== '' && t.arch !== opts.arch) return `${t.arch} only`;
  if (t.accel !== '' && t.accel !== 'kvm') return `${t.accel} only`;
  // As the scripts do: the condition is a bash expression.
  if (t.disabledIf !== '' && spawnSync('bash', ['-c', t.disabledIf], { stdio: 'ignore' }).status === 0) {
    return `disabled because: ${t.disabledIf}`;
  }
  for (const c of t.check) {
    const eq = c.indexOf('=');
    const path = eq < 0 ? c : c.slice(0, eq);
    const want = eq < 0 ? '' : c.slice(eq + 1);
    const got = opts.readFile(path)?.replace(/\n$/, '');
    if (got !== want) return `${path} not equal to ${want}`;
  }
  try {
    accessSync(`${opts.suiteDir}/${t.file}`, constants.R_OK);
  } catch {
    return `Test file '${t.file}' not found`;
  }
  return undefined;
}
