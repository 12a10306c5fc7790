/**
 * Runs one VMM process as the suite's scripts do (`timeout -k 1s
 * --foreground`, stdin from /dev/null), keeping its output: SIGTERM at the
 * timeout, SIGKILL a second later, to the process group it leads (QEMU or
 * node and nothing else).
 */
import { spawn } from 'node:child_process';
import type { ProcessOutcome } from './qemu.js';

export interface RunOptions {
  cwd?: string;
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  /** Called with each chunk of stdout (e.g. to echo it). */
  onStdout?: (chunk: string) => void;
}

export interface TimedOutcome extends ProcessOutcome {
  durationMs: number;
}

/** Output kept per stream: the last 4 MiB (tests print a few KiB; a runaway guest must not fill memory). */
const KEEP = 4 << 20;

export function runProcess(cmd: string, args: readonly string[], opts: RunOptions): Promise<TimedOutcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const signalGroup = (sig: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup('SIGTERM');
      killTimer = setTimeout(() => signalGroup('SIGKILL'), 1000);
    }, opts.timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      stdout = (stdout + d).slice(-KEEP);
      opts.onStdout?.(d);
    });
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-KEEP);
    });
    const finish = (status: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      if (killTimer !== undefined) clearTimeout(killTimer);
      resolve({ status, signal, timedOut, stdout, stderr, durationMs: performance.now() - t0 });
    };
    child.on('error', (e) => {
      stderr += `${cmd}: ${e.message}\n`;
      finish(127, null);
    });
    child.on('close', (code, signal) => finish(code, signal));
  });
}
