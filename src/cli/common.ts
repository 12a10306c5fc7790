/**
 * What the mvctl commands share: flags, opening the state, loading manifests,
 * refreshing and planning, and turning engine errors into one-line messages
 * with exit codes (Terraform's: 0 success, 1 error, 2 changes with
 * --detailed-exitcode).
 */
import { Command, Flags } from '@oclif/core';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadManifests } from '../engine/manifest/load.js';
import { parseDuration } from '../engine/manifest/normalise.js';
import { ManifestError } from '../engine/manifest/errors.js';
import { isGrowOnly, updatePolicy } from '../engine/manifest/schemas.js';
import { plan as makePlan, PlanError, parsePlan, type Plan } from '../engine/plan/planner.js';
import { refresh } from '../engine/state/refresh.js';
import {
  defaultStatePath,
  describeHolder,
  StateError,
  StateLockedError,
  StateStore,
  type Lock,
} from '../engine/state/store.js';
import { KINDS, type DesiredResource, type Kind, type ResourceId } from '../engine/types.js';
import { ApplyError } from '../engine/apply/apply.js';
import { preflight } from '../engine/apply/preflight.js';
import { exitProcess } from './exit.js';

export { exitProcess };

export const stateFlag = Flags.string({
  summary: 'State file (default: $MVISOR_STATE, else ~/.local/state/mvisor/state.db).',
  helpValue: 'FILE',
});

export const fileFlag = Flags.string({
  char: 'f',
  summary: 'Manifest file or directory (repeatable); - reads standard input.',
  helpValue: 'PATH',
  multiple: true,
  default: ['.'],
});

export const allowEmptyFlag = Flags.boolean({
  summary: 'Plan even when the manifests declare nothing (which destroys everything in state).',
  default: false,
});

export const targetFlag = Flags.string({
  summary: 'Plan only this resource and what it depends on (repeatable; KIND/NAME, e.g. VirtualMachine/web).',
  helpValue: 'KIND/NAME',
  multiple: true,
});

/** `VirtualMachine/web` as a ResourceId; a UserError for anything else. */
export function parseResourceRef(ref: string): ResourceId {
  const m = /^([A-Za-z]+)\/([a-z0-9][a-z0-9-]*)$/.exec(ref);
  if (!m || !KINDS.includes(m[1] as Kind)) {
    throw new UserError(`${ref}: expected KIND/NAME with KIND one of ${KINDS.join(', ')}`);
  }
  return { kind: m[1] as Kind, name: m[2]! };
}

export const noColorFlag = Flags.boolean({
  summary: 'Plain output without colours or spinners.',
  default: false,
});

/**
 * Opens the state. Only apply (`create`) makes a new state file where one
 * is named (--state, MVISOR_STATE) but missing: for any other command a
 * mistyped path is an error, not a new empty state.
 */
export function openState(path: string | undefined, opts: { create?: boolean } = {}): StateStore {
  const named = path ?? process.env.MVISOR_STATE;
  const file = path ?? defaultStatePath();
  if (!opts.create && named && file !== ':memory:' && !existsSync(file)) {
    throw new UserError(
      `${file}: no such state file (${path !== undefined ? '--state' : 'MVISOR_STATE'}); ` +
        'only mvctl apply and mvctl state init create one: check the path',
    );
  }
  return StateStore.open(file);
}

export function readStdin(): string {
  return readFileSync(0, 'utf8');
}

export function loadDesired(files: string[]): DesiredResource[] {
  return loadManifests(files, files.includes('-') ? { stdin: readStdin() } : {});
}

export interface Planned {
  plan: Plan;
  desired: DesiredResource[];
}

/**
 * The plan of `desired` against the state. Manifests that declare nothing
 * would destroy everything in state: refused unless `allowEmpty` (mvctl
 * destroy passes it), since an empty folder or a wrong -f is the likelier cause.
 */
export function planAgainst(
  store: StateStore,
  desired: DesiredResource[],
  opts: { allowEmpty?: boolean; targets?: readonly string[] } = {},
): Planned {
  const targets = (opts.targets ?? []).map(parseResourceRef);
  // One consistent view of the state, whatever a concurrent apply commits meanwhile.
  const r = store.snapshot(() => refresh(store));
  const planned = {
    plan: makePlan(desired, r.actual, updatePolicy, { state: r.state, growOnly: isGrowOnly, targets }),
    desired,
  };
  const deletes = planned.plan.summary.delete;
  if (desired.length === 0 && deletes > 0 && !opts.allowEmpty)
    throw new UserError(
      `the manifests declare no resources, so the plan would destroy all ${deletes} in state; ` +
        'check -f, pass --allow-empty to plan that, or run mvctl destroy',
    );
  checkPreflight(store, planned);
  return planned;
}

/** Stops a plan that apply would have to refuse (preflight.ts), before anything changes. */
export function checkPreflight(store: StateStore, planned: Planned): void {
  const problems = preflight(planned.plan, planned.desired, dirname(store.path));
  if (problems.length) throw new UserError(`${problems.join('\n')}\nnothing was changed`);
}

/** A saved plan file: the plan and the desired resources it was made from. */
export interface SavedPlan {
  format: 'mvisor-plan';
  version: 1;
  plan: Plan;
  desired: DesiredResource[];
}

export function readSavedPlan(path: string): Planned {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UserError(`${path}: not a plan file (${(e as Error).message})`);
  }
  const s = raw as Partial<SavedPlan>;
  if (s.format !== 'mvisor-plan' || s.version !== 1 || !Array.isArray(s.desired)) {
    throw new UserError(`${path}: not an mvisor plan file (made by mvctl plan --out)`);
  }
  return { plan: parsePlan(s.plan), desired: s.desired };
}

export class UserError extends Error {}

export const lockTimeoutFlag = Flags.string({
  summary: 'Wait up to this long for the state lock (e.g. 30s, 2m) instead of failing at once.',
  helpValue: 'DURATION',
});

/** Milliseconds of a --lock-timeout value (0 when absent); a bad value is a usage error. */
export function lockTimeoutMs(value: string | undefined): number {
  if (value === undefined) return 0;
  try {
    return parseDuration(/^\d+$/.test(value) ? Number(value) : value) * 1000;
  } catch (e) {
    throw new UserError(`--lock-timeout: ${(e as Error).message}`);
  }
}

/**
 * Takes the state lock for `command`, waiting up to `timeoutMs` for a
 * holder to finish (0: fail at once naming the holder); when it replaces the
 * lock of a holder that provably died (store.ts), says so on stderr.
 */
/** Runs `fn` holding the state lock for `command` (takeLock; `lockTimeout`: the --lock-timeout value). */
export async function withLock<T>(
  store: StateStore,
  command: string,
  lockTimeout: string | undefined,
  fn: () => T | Promise<T>,
): Promise<T> {
  const lock = await takeLock(store, command, lockTimeoutMs(lockTimeout));
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

export async function takeLock(store: StateStore, command: string, timeoutMs = 0): Promise<Lock> {
  const t0 = Date.now();
  for (;;) {
    try {
      const lock = store.acquireLock(command);
      if (lock.tookOver)
        process.stderr.write(
          `mvctl: took over the state lock of ${describeHolder(lock.tookOver)}: that process is no longer running\n`,
        );
      return lock;
    } catch (e) {
      if (!(e instanceof StateLockedError) || Date.now() - t0 >= timeoutMs) {
        if (e instanceof StateLockedError && timeoutMs > 0)
          throw new UserError(
            `${e.message} (waited ${Math.round((Date.now() - t0) / 1000)} s: --lock-timeout)`,
          );
        throw e;
      }
    }
    await new Promise((r) => setTimeout(r, Math.min(500, Math.max(50, timeoutMs / 20))));
  }
}

/** Prints an engine error without a stack trace (unless DEBUG) and exits 1. */
export async function handleError(cmd: Command, err: Error & { oclif?: { exit?: number } }): Promise<never> {
  // Usage errors too exit 1: with --detailed-exitcode, 2 means "changes".
  if (err.oclif !== undefined) {
    if (err.oclif.exit === 0) return exitProcess(0);
    process.stderr.write(`${err.message}\nSee more help with --help\n`);
    return exitProcess(1);
  }
  const known =
    err instanceof ManifestError ||
    err instanceof PlanError ||
    err instanceof StateLockedError ||
    err instanceof StateError ||
    err instanceof ApplyError ||
    err instanceof UserError;
  const msg = process.env.DEBUG ? (err.stack ?? err.message) : err.message;
  process.stderr.write(known ? `${msg}\n` : `mvctl: error: ${msg}\n`);
  return exitProcess(1);
}
