/**
 * A vitest reporter that appends one JSON line per finished test and per
 * finished file to $MVISOR_RESULTS_JSONL as it happens, so that a run cut
 * short (the nested test host panicking) still says which tests finished.
 * vitest's own JSON reporter writes only at the end of a run.
 */
import { appendFileSync } from 'node:fs';
import { relative } from 'node:path';
import type { Reporter, TestCase, TestModule } from 'vitest/node';

export interface ResultLine {
  /** Test file, relative to the repository root. */
  file: string;
  /** The test's full name (describe blocks and title), or absent for a file line. */
  name?: string;
  state: 'passed' | 'failed' | 'skipped' | 'pending';
  durationMs: number;
  /** Runs it took to pass (a retry inside the nested test host; see nested.ts). */
  retries?: number;
  errors?: string[];
  /** A file line: the file finished (all its tests reported above). */
  fileDone?: true;
}

export default class JsonlReporter implements Reporter {
  private readonly out = process.env.MVISOR_RESULTS_JSONL;
  private readonly root = process.env.MVISOR_REPO_ROOT ?? process.cwd();

  private write(line: ResultLine): void {
    if (this.out) appendFileSync(this.out, JSON.stringify(line) + '\n');
  }

  onTestCaseResult(test: TestCase): void {
    const r = test.result();
    const d = test.diagnostic();
    this.write({
      file: relative(this.root, test.module.moduleId),
      name: test.fullName,
      state: r.state,
      durationMs: Math.round(d?.duration ?? 0),
      ...(d?.retryCount ? { retries: d.retryCount } : {}),
      ...(r.errors?.length
        ? { errors: r.errors.map((e) => (e.stack ?? e.message ?? String(e)).slice(0, 4000)) }
        : {}),
    });
  }

  onTestModuleEnd(mod: TestModule): void {
    const errors = mod.errors();
    this.write({
      file: relative(this.root, mod.moduleId),
      state: mod.state() === 'failed' || errors.length ? 'failed' : 'passed',
      durationMs: Math.round(mod.diagnostic().duration),
      fileDone: true,
      ...(errors.length
        ? { errors: errors.map((e) => (e.stack ?? e.message ?? String(e)).slice(0, 4000)) }
        : {}),
    });
  }
}
