import { Writable } from 'node:stream';
import { stripVTControlCharacters } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import type { ApplyEvent, ApplyResult } from '../../../../src/engine/apply/apply.js';
import type { PlanStep, StepOp } from '../../../../src/engine/plan/planner.js';
import type { Kind } from '../../../../src/engine/types.js';
import {
  chooseProgressMode,
  createProgress,
  formatDuration,
  formatElapsed,
  nextViewState,
  summarize,
  type ProgressViewState,
} from '../../../../src/engine/ui/progress.js';
import { mountProgressView } from '../../../../src/engine/ui/progress-view.js';

/** A stream that keeps what is written to it. */
function fakeStream(opts: { isTTY?: boolean } = {}): { out: NodeJS.WriteStream; writes: string[] } {
  const writes: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      writes.push(chunk.toString());
      cb();
    },
  });
  Object.assign(stream, { columns: 120, rows: 40, isTTY: opts.isTTY ?? false });
  return { out: stream as unknown as NodeJS.WriteStream, writes };
}

function step(op: StepOp, kind: Kind, name: string, after: string[] = []): PlanStep {
  return { key: `${op}:${kind}/${name}`, id: { kind, name }, op, after };
}

// A replace of Disk/data (delete + create), a new VM that fails, one that is skipped, one stopped.
const deleteDisk = step('delete', 'Disk', 'data');
const createDisk = step('create', 'Disk', 'data');
const createWeb = step('create', 'VirtualMachine', 'web', [createDisk.key]);
const createDb = step('create', 'VirtualMachine', 'db', [createDisk.key]);
const createApp = step('create', 'VirtualMachine', 'app', [createDb.key]);
const stopOld = step('stop', 'VirtualMachine', 'old');
const updateOld = step('update', 'VirtualMachine', 'old');

const okEvents: ApplyEvent[] = [
  { type: 'step-start', step: deleteDisk },
  { type: 'step-done', step: deleteDisk, ms: 120, detail: '/var/lib/mvisor/disks/data.img' },
  { type: 'step-start', step: createDisk },
  { type: 'step-done', step: createDisk, ms: 80 },
  { type: 'step-start', step: stopOld },
  { type: 'step-done', step: stopOld, ms: 1500, detail: 'shut down by the guest' },
  { type: 'step-start', step: updateOld },
  { type: 'step-done', step: updateOld, ms: 3, detail: 'updated in place' },
  { type: 'step-start', step: createWeb },
  { type: 'step-done', step: createWeb, ms: 2300, detail: 'running, pid 123' },
];
const okResult: ApplyResult = { ok: true, done: 5, failed: [], skipped: 0 };

const failEvents: ApplyEvent[] = [
  { type: 'step-start', step: createDisk },
  { type: 'step-done', step: createDisk, ms: 80 },
  { type: 'step-start', step: createDb },
  { type: 'step-failed', step: createDb, ms: 1200, error: 'launch timed out\nlast log line: oops' },
  { type: 'step-skipped', step: createApp, reason: `skipped: VirtualMachine/db failed` },
];
const failResult: ApplyResult = {
  ok: false,
  done: 1,
  failed: [{ step: createDb, error: 'launch timed out\nlast log line: oops' }],
  skipped: 1,
};

async function run(
  mode: 'plain' | 'json' | 'tty',
  events: ApplyEvent[],
  result: ApplyResult,
  opts: { color?: boolean } = {},
): Promise<string> {
  const { out, writes } = fakeStream({ isTTY: mode === 'tty' });
  const progress = createProgress({ mode, color: opts.color ?? false, out });
  for (const e of events) progress.event(e);
  await progress.finish(result);
  return writes.join('');
}

describe('summarize', () => {
  it('counts resources like Terraform: a replace is added and destroyed, update+stop is one change', () => {
    const s = summarize(
      okResult,
      okEvents.flatMap((e) => (e.type === 'step-done' ? [e.step] : [])),
    );
    expect(s).toMatchObject({ ok: true, added: 2, changed: 1, destroyed: 1, steps: 5, done: 5 });
    expect(s.message).toBe('Apply complete! Resources: 2 added, 1 changed, 1 destroyed.');
  });

  it('says how many steps failed and were skipped', () => {
    const s = summarize(failResult, [createDisk]);
    expect(s.message).toBe('Apply failed: 1 of 3 steps failed, 1 skipped.');
    expect(s.errors).toEqual([
      { resource: 'VirtualMachine/db', op: 'create', error: 'launch timed out\nlast log line: oops' },
    ]);
    expect(
      summarize({ ok: false, done: 0, failed: [{ step: createDb, error: 'x' }], skipped: 0 }, []).message,
    ).toBe('Apply failed: 1 of 1 step failed.');
  });

  it('an empty apply is complete with nothing changed', () => {
    expect(summarize({ ok: true, done: 0, failed: [], skipped: 0 }, []).message).toBe(
      'Apply complete! Resources: 0 added, 0 changed, 0 destroyed.',
    );
  });
});

describe('formatDuration', () => {
  it('tenths of seconds under a minute, minutes and seconds above', () => {
    expect(formatDuration(2300)).toBe('2.3s');
    expect(formatDuration(40)).toBe('0.0s');
    expect(formatDuration(65_000)).toBe('1m5s');
    expect(formatElapsed(5_600)).toBe('5s');
    expect(formatElapsed(65_400)).toBe('1m5s');
  });
});

describe('plain progress', () => {
  it('writes one line per event and the summary, without escape codes', async () => {
    const text = await run('plain', okEvents, okResult, { color: true });
    expect(text).toBe(
      [
        'Disk/data: destroying...',
        'Disk/data: destroyed (0.1s) /var/lib/mvisor/disks/data.img',
        'Disk/data: creating...',
        'Disk/data: created (0.1s)',
        'VirtualMachine/old: stopping...',
        'VirtualMachine/old: stopped (1.5s) shut down by the guest',
        'VirtualMachine/old: updating...',
        'VirtualMachine/old: updated (0.0s) updated in place',
        'VirtualMachine/web: creating...',
        'VirtualMachine/web: created (2.3s) running, pid 123',
        '',
        'Apply complete! Resources: 2 added, 1 changed, 1 destroyed.',
        '',
      ].join('\n'),
    );
    expect(stripVTControlCharacters(text)).toBe(text);
  });

  it('reports failures (all of a multi-line error) and skips', async () => {
    const text = await run('plain', failEvents, failResult);
    expect(text.split('\n')).toEqual([
      'Disk/data: creating...',
      'Disk/data: created (0.1s)',
      'VirtualMachine/db: creating...',
      'VirtualMachine/db: FAILED: launch timed out',
      '  last log line: oops',
      'VirtualMachine/app: skipped (VirtualMachine/db failed)',
      '',
      'Apply failed: 1 of 3 steps failed, 1 skipped.',
      '',
    ]);
  });
});

describe('json progress', () => {
  it('writes one object per line per event, then a summary', async () => {
    const text = await run('json', failEvents, failResult);
    const lines = text.trimEnd().split('\n');
    const objects = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objects).toEqual([
      { type: 'step-start', resource: 'Disk/data', op: 'create' },
      { type: 'step-done', resource: 'Disk/data', op: 'create', ms: 80 },
      { type: 'step-start', resource: 'VirtualMachine/db', op: 'create' },
      {
        type: 'step-failed',
        resource: 'VirtualMachine/db',
        op: 'create',
        ms: 1200,
        error: 'launch timed out\nlast log line: oops',
      },
      {
        type: 'step-skipped',
        resource: 'VirtualMachine/app',
        op: 'create',
        reason: 'skipped: VirtualMachine/db failed',
      },
      {
        type: 'summary',
        ok: false,
        added: 1,
        changed: 0,
        destroyed: 0,
        steps: 3,
        done: 1,
        failed: 1,
        skipped: 1,
        message: 'Apply failed: 1 of 3 steps failed, 1 skipped.',
        errors: [
          { resource: 'VirtualMachine/db', op: 'create', error: 'launch timed out\nlast log line: oops' },
        ],
      },
    ]);
  });

  it('matches the documented step-done shape', async () => {
    const text = await run('json', [okEvents[8]!, okEvents[9]!], {
      ok: true,
      done: 1,
      failed: [],
      skipped: 0,
    });
    expect(text.split('\n')[1]).toBe(
      '{"type":"step-done","resource":"VirtualMachine/web","op":"create","ms":2300,"detail":"running, pid 123"}',
    );
  });
});

describe('tty progress (ink)', () => {
  it('renders the ✓ lines and the summary into the stream', async () => {
    const text = stripVTControlCharacters(await run('tty', okEvents, okResult, { color: true }));
    expect(text).toContain('✓ Disk/data: destroyed in 0.1s (/var/lib/mvisor/disks/data.img)');
    expect(text).toContain('✓ Disk/data: created in 0.1s\n');
    expect(text).toContain('✓ VirtualMachine/old: stopped in 1.5s (shut down by the guest)');
    expect(text).toContain('✓ VirtualMachine/web: created in 2.3s (running, pid 123)');
    expect(text).toContain('Apply complete! Resources: 2 added, 1 changed, 1 destroyed.');
    // Each finished step is written once (ink's <Static>), in order.
    expect(text.split('✓ VirtualMachine/web: created').length).toBe(2);
    expect(text.indexOf('destroyed in')).toBeLessThan(text.indexOf('✓ VirtualMachine/web'));
  });

  it('renders ✗ with the first line of the error, ⊘ for skips, and the whole error at the end', async () => {
    const text = stripVTControlCharacters(await run('tty', failEvents, failResult));
    expect(text).toContain('✗ VirtualMachine/db: create failed after 1.2s: launch timed out\n');
    expect(text).toContain('⊘ VirtualMachine/app: create skipped (VirtualMachine/db failed)');
    expect(text).toContain('Error: VirtualMachine/db (create):\n  launch timed out\n  last log line: oops');
    expect(text).toContain('Apply failed: 1 of 3 steps failed, 1 skipped.');
  });

  it('shows a spinner while a step runs, then the whole final frame (debug mode)', async () => {
    const { out, writes } = fakeStream({ isTTY: true });
    const view = mountProgressView(out, { color: false, debug: true });
    let state: ProgressViewState = { finished: [], running: [] };
    state = nextViewState(state, failEvents[0]!, Date.now());
    view.update(state);
    expect(writes.at(-1)).toBe('⠋ Disk/data: creating…');
    for (const e of failEvents.slice(1)) state = nextViewState(state, e, Date.now());
    await view.close({ ...state, summary: summarize(failResult, [createDisk]) });
    // Debug mode writes every frame whole; the last write with text (not just a cursor escape) is the final frame.
    const frames = writes.map((w) => stripVTControlCharacters(w)).filter((w) => w !== '');
    expect(frames.at(-1)).toBe(
      [
        '✓ Disk/data: created in 0.1s',
        '✗ VirtualMachine/db: create failed after 1.2s: launch timed out',
        '⊘ VirtualMachine/app: create skipped (VirtualMachine/db failed)',
        '',
        'Error: VirtualMachine/db (create):',
        '  launch timed out',
        '  last log line: oops',
        '',
        'Apply failed: 1 of 3 steps failed, 1 skipped.',
      ].join('\n'),
    );
  });
});

describe('tty progress without ink', () => {
  it('falls back to plain lines if the view cannot be loaded', async () => {
    vi.resetModules();
    vi.doMock('../../../../src/engine/ui/progress-view.js', () => {
      throw new Error('Cannot find package ink');
    });
    try {
      const fresh = await import('../../../../src/engine/ui/progress.js');
      const { out, writes } = fakeStream({ isTTY: true });
      const progress = fresh.createProgress({ mode: 'tty', color: true, out });
      for (const e of okEvents.slice(0, 4)) progress.event(e);
      await new Promise((r) => setTimeout(r, 10));
      for (const e of okEvents.slice(4)) progress.event(e);
      await progress.finish(okResult);
      expect(writes.join('')).toBe(await run('plain', okEvents, okResult));
    } finally {
      vi.doUnmock('../../../../src/engine/ui/progress-view.js');
      vi.resetModules();
    }
  });
});

describe('chooseProgressMode', () => {
  const tty = { isTTY: true, columns: 80 } as NodeJS.WriteStream;
  const pipe = { isTTY: false } as NodeJS.WriteStream;
  it('json when asked, plain off a terminal or without colour, else tty', () => {
    expect(chooseProgressMode({ json: true, out: tty, env: {} })).toBe('json');
    expect(chooseProgressMode({ out: pipe, env: {} })).toBe('plain');
    // A pty of unknown width (some containers): ink would wrap every character.
    expect(chooseProgressMode({ out: { isTTY: true, columns: 0 } as NodeJS.WriteStream, env: {} })).toBe(
      'plain',
    );
    expect(chooseProgressMode({ out: tty, color: false, env: {} })).toBe('plain');
    expect(chooseProgressMode({ out: tty, env: { NO_COLOR: '1' } })).toBe('plain');
    expect(chooseProgressMode({ out: tty, env: { TERM: 'dumb' } })).toBe('plain');
    expect(chooseProgressMode({ out: tty, env: { TERM: 'xterm-256color' } })).toBe('tty');
  });
});
