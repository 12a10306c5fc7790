/**
 * The apply progress display: turns the apply engine's events into output.
 * Three modes:
 *
 * - `tty`: an ink view, one line per step, a spinner while it runs, then
 *   ✓/✗/⊘ with how long it took, and a Terraform-like summary. ink (and
 *   React) take a good half second to load, so they are imported only in
 *   this mode, in the background: events that arrive meanwhile are kept and
 *   shown once the view is up.
 * - `plain`: one line per event, no escape codes (not a TTY, --no-color).
 * - `json`: one JSON object per line per event, then a summary object.
 *
 * The summary counts resources the Terraform way: a created resource is
 * added, a deleted one destroyed, an updated, started or stopped one changed
 * (once, however many of those steps it had), and a replaced one (a delete
 * and a create step) both added and destroyed.
 */
import type { ApplyEvent, ApplyResult } from '../apply/apply.js';
import type { PlanStep, StepOp } from '../plan/planner.js';
import { resourceKey } from '../types.js';

export type ProgressMode = 'tty' | 'plain' | 'json';

export interface ProgressOptions {
  mode: ProgressMode;
  /** Colours in `tty` mode; `plain` and `json` never write escape codes. */
  color: boolean;
  /** Where to write (default: process.stdout). */
  out?: NodeJS.WriteStream;
}

export interface Progress {
  event(e: ApplyEvent): void;
  /** Writes the summary, and in `tty` mode unmounts the view; resolves once the output is written. */
  finish(result: ApplyResult): Promise<void>;
}

/** What `finish` reports, also the `json` mode's final object (with `type: 'summary'`). */
export interface ApplySummary {
  ok: boolean;
  added: number;
  changed: number;
  destroyed: number;
  /** Steps in the plan: done + failed + skipped. */
  steps: number;
  done: number;
  failed: number;
  skipped: number;
  /** "Apply complete! Resources: 2 added, 0 changed, 1 destroyed." or "Apply failed: 1 of 3 steps failed." */
  message: string;
  errors: { resource: string; op: StepOp; error: string }[];
}

export const VERBS: Readonly<Record<StepOp, { doing: string; done: string }>> = {
  create: { doing: 'creating', done: 'created' },
  delete: { doing: 'destroying', done: 'destroyed' },
  update: { doing: 'updating', done: 'updated' },
  start: { doing: 'starting', done: 'started' },
  stop: { doing: 'stopping', done: 'stopped' },
};

/** "0.3s", "2.3s", "1m5s". */
export function formatDuration(ms: number): string {
  if (ms < 60_000) return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${s % 60}s`;
}

/** Whole seconds, for a running step: "12s", "1m5s". */
export function formatElapsed(ms: number): string {
  const s = Math.floor(Math.max(0, ms) / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${s % 60}s`;
}

export function firstLine(text: string): string {
  const nl = text.indexOf('\n');
  return nl < 0 ? text : text.slice(0, nl);
}

/** The engine's skip reasons read "skipped: Disk/data failed"; the display says "skipped" itself. */
export function skipReason(reason: string): string {
  return reason.replace(/^skipped:\s*/, '');
}

function resourceOf(step: PlanStep): string {
  return resourceKey(step.id);
}

/** The summary of an apply, counting resources from the steps that were done. */
export function summarize(result: ApplyResult, doneSteps: readonly PlanStep[]): ApplySummary {
  const added = new Set<string>();
  const changed = new Set<string>();
  const destroyed = new Set<string>();
  for (const step of doneSteps) {
    const key = resourceOf(step);
    if (step.op === 'create') added.add(key);
    else if (step.op === 'delete') destroyed.add(key);
    else changed.add(key);
  }
  // A resource created or destroyed in this apply is not also counted as changed.
  for (const key of [...added, ...destroyed]) changed.delete(key);
  const failed = result.failed.length;
  const steps = result.done + failed + result.skipped;
  let message: string;
  if (result.ok) {
    message = `Apply complete! Resources: ${added.size} added, ${changed.size} changed, ${destroyed.size} destroyed.`;
  } else {
    const skipped = result.skipped > 0 ? `, ${result.skipped} skipped` : '';
    message = `Apply failed: ${failed} of ${steps} ${steps === 1 ? 'step' : 'steps'} failed${skipped}.`;
  }
  return {
    ok: result.ok,
    added: added.size,
    changed: changed.size,
    destroyed: destroyed.size,
    steps,
    done: result.done,
    failed,
    skipped: result.skipped,
    message,
    errors: result.failed.map((f) => ({ resource: resourceOf(f.step), op: f.step.op, error: f.error })),
  };
}

/**
 * The mode for a command's flags and output: `json` if asked for, `plain` when the output is not a
 * terminal (or one of unknown width), colour is off (--no-color, NO_COLOR) or the terminal is dumb,
 * else `tty`.
 */
export function chooseProgressMode(opts: {
  json?: boolean;
  color?: boolean;
  out?: NodeJS.WriteStream;
  env?: NodeJS.ProcessEnv;
}): ProgressMode {
  if (opts.json) return 'json';
  const out = opts.out ?? process.stdout;
  const env = opts.env ?? process.env;
  if (!out.isTTY || !out.columns || opts.color === false || env.TERM === 'dumb') return 'plain';
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return 'plain';
  return 'tty';
}

export function createProgress(opts: ProgressOptions): Progress {
  const out = opts.out ?? process.stdout;
  switch (opts.mode) {
    case 'plain':
      return new PlainProgress(out);
    case 'json':
      return new JsonProgress(out);
    case 'tty':
      return new TtyProgress(out, opts.color);
  }
}

/** Resolves once `text` is handed to the OS (or the stream failed: progress output is best effort). */
function write(out: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve) => {
    try {
      out.write(text, () => resolve());
    } catch {
      resolve();
    }
  });
}

/** Tracks the steps done, for the summary. */
abstract class BaseProgress implements Progress {
  protected readonly doneSteps: PlanStep[] = [];

  event(e: ApplyEvent): void {
    if (e.type === 'step-done') this.doneSteps.push(e.step);
    this.show(e);
  }

  abstract finish(result: ApplyResult): Promise<void>;
  protected abstract show(e: ApplyEvent): void;
}

// ---- plain ----

/** The `plain` mode's line for one event. */
export function plainLine(e: ApplyEvent): string {
  const resource = resourceOf(e.step);
  const verbs = VERBS[e.step.op];
  switch (e.type) {
    case 'step-start':
      return `${resource}: ${verbs.doing}...`;
    case 'step-done':
      return `${resource}: ${verbs.done} (${formatDuration(e.ms)})${e.detail ? ` ${e.detail}` : ''}`;
    case 'step-failed':
      // A multi-line error keeps its other lines, indented, so logs lose nothing.
      return `${resource}: FAILED: ${e.error.replace(/\n/g, '\n  ')}`;
    case 'step-skipped':
      return `${resource}: skipped (${skipReason(e.reason)})`;
  }
}

class PlainProgress extends BaseProgress {
  constructor(private readonly out: NodeJS.WritableStream) {
    super();
  }

  protected show(e: ApplyEvent): void {
    void write(this.out, `${plainLine(e)}\n`);
  }

  finish(result: ApplyResult): Promise<void> {
    return write(this.out, `\n${summarize(result, this.doneSteps).message}\n`);
  }
}

// ---- json ----

/** The `json` mode's object for one event. */
export function jsonEvent(e: ApplyEvent): Record<string, unknown> {
  const base = { type: e.type, resource: resourceOf(e.step), op: e.step.op };
  switch (e.type) {
    case 'step-start':
      return base;
    case 'step-done':
      return e.detail === undefined ? { ...base, ms: e.ms } : { ...base, ms: e.ms, detail: e.detail };
    case 'step-failed':
      return { ...base, ms: e.ms, error: e.error };
    case 'step-skipped':
      return { ...base, reason: e.reason };
  }
}

class JsonProgress extends BaseProgress {
  constructor(private readonly out: NodeJS.WritableStream) {
    super();
  }

  protected show(e: ApplyEvent): void {
    void write(this.out, `${JSON.stringify(jsonEvent(e))}\n`);
  }

  finish(result: ApplyResult): Promise<void> {
    const summary = { type: 'summary', ...summarize(result, this.doneSteps) };
    return write(this.out, `${JSON.stringify(summary)}\n`);
  }
}

// ---- tty ----

/** A finished step, as the tty view shows it. */
export interface FinishedStep {
  step: PlanStep;
  outcome: 'done' | 'failed' | 'skipped';
  /** "VirtualMachine/web: created in 2.3s" */
  text: string;
  /** The detail or the error's first line, shown after the text (dimmed, or in red). */
  note?: string;
}

export interface RunningStep {
  step: PlanStep;
  /** "VirtualMachine/web: creating…" */
  text: string;
  startedAt: number;
}

/** Everything the tty view shows; the view renders a snapshot of it on every change. */
export interface ProgressViewState {
  finished: readonly FinishedStep[];
  running: readonly RunningStep[];
  summary?: ApplySummary;
}

/** The tty view's state after one more event. */
export function nextViewState(state: ProgressViewState, e: ApplyEvent, now: number): ProgressViewState {
  const resource = resourceOf(e.step);
  const verbs = VERBS[e.step.op];
  const running = state.running.filter((r) => r.step.key !== e.step.key);
  switch (e.type) {
    case 'step-start':
      return {
        ...state,
        running: [...running, { step: e.step, text: `${resource}: ${verbs.doing}…`, startedAt: now }],
      };
    case 'step-done': {
      const line: FinishedStep = {
        step: e.step,
        outcome: 'done',
        text: `${resource}: ${verbs.done} in ${formatDuration(e.ms)}`,
      };
      if (e.detail) line.note = `(${e.detail})`;
      return { ...state, running, finished: [...state.finished, line] };
    }
    case 'step-failed':
      return {
        ...state,
        running,
        finished: [
          ...state.finished,
          {
            step: e.step,
            outcome: 'failed',
            text: `${resource}: ${e.step.op} failed after ${formatDuration(e.ms)}:`,
            note: firstLine(e.error),
          },
        ],
      };
    case 'step-skipped':
      return {
        ...state,
        running,
        finished: [
          ...state.finished,
          {
            step: e.step,
            outcome: 'skipped',
            text: `${resource}: ${e.step.op} skipped`,
            note: `(${skipReason(e.reason)})`,
          },
        ],
      };
  }
}

/** What the ink view module (progress-view.tsx) offers. */
export interface ProgressView {
  update(state: ProgressViewState): void;
  /** Renders the final state and unmounts. */
  close(state: ProgressViewState): Promise<void>;
}

class TtyProgress extends BaseProgress {
  private state: ProgressViewState = { finished: [], running: [] };
  private readonly events: ApplyEvent[] = [];
  private view: ProgressView | undefined;
  /** Set if ink could not be loaded: the events go to a plain display instead. */
  private fallback: PlainProgress | undefined;
  private readonly ready: Promise<void>;

  constructor(out: NodeJS.WriteStream, color: boolean) {
    super();
    this.ready = import('./progress-view.js').then(
      (m) => {
        this.view = m.mountProgressView(out, { color });
        this.view.update(this.state);
        this.events.length = 0;
      },
      () => {
        this.fallback = new PlainProgress(out);
        for (const e of this.events) this.fallback.event(e);
      },
    );
  }

  protected show(e: ApplyEvent): void {
    if (this.fallback) {
      this.fallback.event(e);
      return;
    }
    if (!this.view) this.events.push(e);
    this.state = nextViewState(this.state, e, Date.now());
    this.view?.update(this.state);
  }

  async finish(result: ApplyResult): Promise<void> {
    await this.ready;
    if (this.fallback) return this.fallback.finish(result);
    this.state = { ...this.state, running: [], summary: summarize(result, this.doneSteps) };
    await this.view?.close(this.state);
  }
}
