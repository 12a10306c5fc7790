/**
 * VMM child processes as the apply engine sees them: launched detached (they
 * outlive mvctl), with their config, log, pid file and control socket in a
 * per-VM directory under the state directory; watched and stopped through
 * the control socket, with signals as the last resort.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { controlRequest } from './control-client.js';
import type { VmStatus } from '../../platform/control-protocol.js';
import type { VmmConfig } from '../../generated/vmm-config.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

/** Where the mvisor entry point is: the source tree's bin/ (dist/ layout) or MVISOR_BIN. */
export function mvisorBin(): string {
  const candidates = [
    process.env.MVISOR_BIN,
    join(repoRoot, 'bin/mvisor.js'),
    resolve(repoRoot, '../bin/mvisor.js'),
  ];
  const found = candidates.find((p): p is string => !!p && existsSync(p));
  if (!found)
    throw new Error(`cannot find bin/mvisor.js (looked in ${candidates.filter(Boolean).join(', ')})`);
  return found;
}

export interface VmPaths {
  dir: string;
  config: string;
  log: string;
  pidFile: string;
  control: string;
  console: string;
  /** The firmware's debug output (port 0x402) of a VM with `machine: {type: pc, debug: true}`. */
  firmwareLog: string;
}

export function vmPaths(stateDir: string, name: string): VmPaths {
  const dir = join(stateDir, 'vms', name);
  return {
    dir,
    config: join(dir, 'vm.yaml'),
    log: join(dir, 'vmm.log'),
    pidFile: join(dir, 'vmm.pid'),
    control: join(dir, 'control.sock'),
    console: join(dir, 'console.sock'),
    firmwareLog: join(dir, 'firmware.log'),
  };
}

export class LaunchError extends Error {
  constructor(
    message: string,
    /** The VMM's exit code, when it exited before the VM ran (2: bad input, such as a refused snapshot). */
    readonly exitCode?: number,
    /** What the VMM wrote to its log during this launch. */
    readonly logText = '',
  ) {
    super(message);
  }
}

export interface Launched {
  pid: number;
  paths: VmPaths;
  /** The VMM's answer to `status` that said it runs (vcpus, memory...). */
  status: VmStatus;
}

/**
 * True if `pid` is alive and is a VMM the engine launched: its argv runs
 * bin/mvisor.js with --control (so a reused pid, or `tail -f` on a file under
 * ~/.local/state/mvisor, is never taken for one).
 */
export function isVmmProcess(pid: number | null | undefined): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => a.endsWith('mvisor.js')) && argv.includes('--control');
  } catch {
    return false;
  }
}

function tail(path: string, bytes = 2000): string {
  try {
    const s = readFileSync(path, 'utf8');
    return s.slice(-bytes).trim();
  } catch {
    return '';
  }
}

/**
 * Writes the VMM config and starts `mvisor -c` detached; resolves when the
 * VM answers "running" on its control socket, rejects with the end of the
 * VMM's log if it exits first or does not answer in time.
 */
export async function launchVm(
  stateDir: string,
  name: string,
  vmmConfig: VmmConfig,
  timeoutMs = 30_000,
  onSpawn?: (pid: number, paths: VmPaths) => void,
): Promise<Launched> {
  const paths = vmPaths(stateDir, name);
  mkdirSync(paths.dir, { recursive: true });
  writeFileSync(paths.config, stringify(vmmConfig));
  return startVmm(paths, name, { timeoutMs, ...(onSpawn ? { onSpawn } : {}) });
}

export interface StartOptions {
  /** How long to wait for the VM to report running (default 30 s). */
  timeoutMs?: number | undefined;
  /** Called once the process exists, before anything else can fail (to record its pid). */
  onSpawn?: (pid: number, paths: VmPaths) => void;
  /** A snapshot file to start from (`mvisor --restore`) instead of booting. */
  restore?: string;
}

/**
 * Starts `mvisor -c paths.config` detached, with the VM's control socket,
 * log and pid file in `paths`; resolves when the VM answers "running" on
 * its control socket, rejects (LaunchError) with the end of the VMM's log if
 * it exits first or does not answer in time.
 */
export async function startVmm(paths: VmPaths, name: string, opts: StartOptions = {}): Promise<Launched> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  mkdirSync(paths.dir, { recursive: true });
  const logFd = openSync(paths.log, 'a');
  // The log is appended to: this launch's part starts here.
  const logStart = fstatSync(logFd).size;
  const args = [mvisorBin(), '-c', paths.config, '--control', paths.control];
  if (opts.restore !== undefined) args.push('--restore', opts.restore);
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', logFd, logFd],
    cwd: paths.dir,
  });
  closeSync(logFd);
  let spawnError: Error | undefined;
  child.once('error', (e) => (spawnError = e));
  const pid = child.pid;
  if (!pid)
    throw new LaunchError(`${name}: could not start mvisor${spawnError ? `: ${spawnError.message}` : ''}`);
  writeFileSync(paths.pidFile, `${pid}\n`);
  // Recorded before anything can fail, so a VMM is never left running unknown to state.
  opts.onSpawn?.(pid, paths);
  let exited: string | undefined;
  let exitCode: number | undefined;
  child.on('exit', (code, signal) => {
    exited = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    exitCode = code ?? undefined;
  });
  child.unref();
  const t0 = Date.now();
  for (;;) {
    if (exited !== undefined) {
      throw new LaunchError(
        `${name}: mvisor ${exited} before the VM ran:\n${tail(paths.log)}`,
        exitCode,
        logSince(paths.log, logStart),
      );
    }
    if (existsSync(paths.control)) {
      try {
        const s = await controlRequest(paths.control, 'status', 2000);
        if (s.ok && s.state === 'running') return { pid, paths, status: s };
      } catch {
        // not listening yet
      }
    }
    if (Date.now() - t0 > timeoutMs) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
      throw new LaunchError(
        `${name}: the VM did not report running within ${timeoutMs} ms:\n${tail(paths.log)}`,
        undefined,
        logSince(paths.log, logStart),
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The text of `path` from byte `start` on ('' if unreadable). */
function logSince(path: string, start: number): string {
  try {
    return readFileSync(path).subarray(start).toString('utf8');
  } catch {
    return '';
  }
}

/** Waits up to `ms` for a VMM process to end; returns whether it did. */
export async function waitVmmGone(pid: number, ms: number): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (!isVmmProcess(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return !isVmmProcess(pid);
}

export interface StopResult {
  how: 'powerdown' | 'stop' | 'SIGTERM' | 'SIGKILL' | 'already-gone';
}

/**
 * Stops a VM: ACPI power button and up to `timeoutSec` for the guest to shut
 * down, then the VMM's stop command, then SIGTERM, then SIGKILL.
 */
export async function stopVm(pid: number, controlSocket: string, timeoutSec: number): Promise<StopResult> {
  if (!isVmmProcess(pid)) return { how: 'already-gone' };
  try {
    const r = await controlRequest(controlSocket, 'powerdown', 2000);
    if (r.ok && (await waitVmmGone(pid, timeoutSec * 1000))) return { how: 'powerdown' };
  } catch {
    // no control socket: fall through
  }
  try {
    await controlRequest(controlSocket, 'stop', 2000);
    if (await waitVmmGone(pid, 5000)) return { how: 'stop' };
  } catch {
    // fall through
  }
  try {
    process.kill(pid, 'SIGTERM');
    if (await waitVmmGone(pid, 5000)) return { how: 'SIGTERM' };
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
  await waitVmmGone(pid, 5000);
  return { how: 'SIGKILL' };
}
