/**
 * Test results from both phases, merged: vitest's JSON report of the native
 * run, and the JSON lines the nested shards stream to their scratch folders
 * (jsonl-reporter.ts for vitest, `conformance --results-jsonl` for
 * kvm-unit-tests). The merged report keeps vitest's JSON shape, so that
 * .ci/run and the tools that read test-results.json see every test.
 */
import type { ResultLine } from './jsonl-reporter.js';

export type { ResultLine };

/** One kvm-unit-tests result line (conformance --results-jsonl). */
export interface ConformanceLine {
  test: string;
  /** PASS, FAIL, SKIP, TIMEOUT, ... as the runner's table says. */
  result: string;
  /** Known reason for a result that is not a pass (skips.ts), if any. */
  reason?: string;
  ok: boolean;
  durationMs: number;
  /** Failed runs before this one (conformance --retries). */
  retries?: number;
}

/** Parses JSON lines; a torn last line (the host died mid-write) is dropped. */
export function parseJsonl<T>(text: string): T[] {
  const out: T[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      // a partial line: the writer died; the test counts as unfinished
    }
  }
  return out;
}

/** Per file: its test lines, and whether the file finished. */
export interface FileResults {
  file: string;
  tests: ResultLine[];
  done: boolean;
  /** Errors of the file itself (an exception outside any test). */
  errors: string[];
  durationMs: number;
}

export function byFile(lines: ResultLine[]): Map<string, FileResults> {
  const m = new Map<string, FileResults>();
  for (const l of lines) {
    let f = m.get(l.file);
    if (!f) m.set(l.file, (f = { file: l.file, tests: [], done: false, errors: [], durationMs: 0 }));
    if (l.fileDone) {
      f.done = true;
      f.durationMs = l.durationMs;
      if (l.state === 'failed') f.errors.push(...(l.errors ?? []));
    } else f.tests.push(l);
  }
  return m;
}

/** vitest's JSON report, the fields we read and write. */
export interface VitestJson {
  numTotalTests: number;
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  success: boolean;
  testResults: {
    name: string;
    status: string;
    message?: string;
    assertionResults: {
      fullName: string;
      title?: string;
      status: string;
      duration?: number;
      failureMessages: string[];
    }[];
  }[];
  [k: string]: unknown;
}

const STATUS: Record<ResultLine['state'], string> = {
  passed: 'passed',
  failed: 'failed',
  skipped: 'skipped',
  pending: 'pending',
};

/** The nested vitest files in vitest's JSON shape (`root` makes names absolute, as vitest's are). */
export function vitestJsonFromLines(files: FileResults[], root: string): VitestJson['testResults'] {
  return files.map((f) => {
    const failed = f.errors.length > 0 || f.tests.some((t) => t.state === 'failed') || !f.done;
    return {
      name: `${root}/${f.file}`,
      status: failed ? 'failed' : 'passed',
      ...(f.errors.length || !f.done
        ? {
            message: [
              ...f.errors,
              ...(f.done ? [] : ['the file did not finish in the nested test host']),
            ].join('\n'),
          }
        : {}),
      assertionResults: f.tests.map((t) => ({
        fullName: t.name ?? '',
        title: (t.name ?? '').split(' > ').pop() ?? '',
        status: STATUS[t.state],
        duration: t.durationMs,
        failureMessages: t.errors ?? [],
      })),
    };
  });
}

export interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

export function countTests(results: VitestJson['testResults']): Counts {
  const c: Counts = { passed: 0, failed: 0, skipped: 0 };
  for (const f of results)
    for (const a of f.assertionResults) {
      if (a.status === 'passed') c.passed++;
      else if (a.status === 'failed') c.failed++;
      else c.skipped++;
    }
  return c;
}

/** The merged report: native files first, then the nested ones (a nested file replaces a native one of the same name). */
export function mergeReports(native: VitestJson | undefined, nested: VitestJson['testResults']): VitestJson {
  const names = new Set(nested.map((f) => f.name));
  const testResults = [...(native?.testResults ?? []).filter((f) => !names.has(f.name)), ...nested];
  const c = countTests(testResults);
  const fileFailed = testResults.some((f) => f.status === 'failed');
  return {
    ...(native ?? {}),
    numTotalTests: c.passed + c.failed + c.skipped,
    numPassedTests: c.passed,
    numFailedTests: c.failed,
    numPendingTests: c.skipped,
    numTodoTests: 0,
    success: c.failed === 0 && !fileFailed,
    testResults,
  };
}

/** The slowest files, for the message when the nested phase runs over its time. */
export function slowest(files: FileResults[], n = 5): string[] {
  return [...files]
    .sort((a, b) => b.durationMs - a.durationMs)
    .slice(0, n)
    .map((f) => `${f.file} (${(f.durationMs / 1000).toFixed(0)} s)`);
}
