/** The real mvctl bin as a child process, for tests that need no KVM. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './mvisor.js';

export interface MvctlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `mvctl ARGS` in `dir` (no colours, no DEBUG), with `env` added. */
export function mvctl(
  dir: string,
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): MvctlResult {
  const e: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...env };
  delete e.DEBUG;
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin/mvctl.js'), ...args], {
    cwd: dir,
    env: e,
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
