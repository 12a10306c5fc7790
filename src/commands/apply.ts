import { Args, Command, Flags } from '@oclif/core';
import { createInterface } from 'node:readline/promises';
import { applyPlan } from '../engine/apply/apply.js';
import { planStaleness } from '../engine/plan/planner.js';
import { renderPlan } from '../engine/plan/render.js';
import { refresh } from '../engine/state/refresh.js';
import type { StateStore } from '../engine/state/store.js';
import { createProgress, summarize } from '../engine/ui/progress.js';
import { checkKvm } from '../vmm/kvm/availability.js';
import {
  allowEmptyFlag,
  exitProcess,
  fileFlag,
  handleError,
  loadDesired,
  noColorFlag,
  openState,
  checkPreflight,
  planAgainst,
  readSavedPlan,
  stateFlag,
  targetFlag,
  UserError,
  type Planned,
  withLock,
  lockTimeoutFlag,
} from '../cli/common.js';

const NOTHING_DONE = { ok: true, done: 0, failed: [], skipped: 0 };

/** Asks "yes" on a terminal; refuses without one. */
export async function confirm(
  question: string,
  what: string,
  output: NodeJS.WritableStream = process.stdout,
): Promise<boolean> {
  if (!process.stdin.isTTY)
    throw new UserError(`${what} needs confirmation: run it on a terminal or pass --auto-approve`);
  const rl = createInterface({ input: process.stdin, output });
  const answer = await rl.question(`${question} Only "yes" will be accepted: `);
  rl.close();
  return answer.trim() === 'yes';
}

/** Shows the plan, confirms, applies with progress output; returns the exit code. */
export async function showAndApply(
  store: StateStore,
  planned: Planned,
  opts: { command: string; json: boolean; noColor: boolean; autoApprove: boolean; question: string },
): Promise<number> {
  const tty = !!process.stdout.isTTY && !opts.noColor && !opts.json;
  // --json: standard output is JSON lines only, the plan first (anything for a person goes to stderr).
  process.stdout.write(
    opts.json
      ? `${JSON.stringify({ type: 'plan', plan: planned.plan })}\n`
      : renderPlan(planned.plan, { color: tty }) + '\n',
  );
  if (!planned.plan.hasChanges) {
    if (opts.json)
      process.stdout.write(`${JSON.stringify({ type: 'summary', ...summarize(NOTHING_DONE, []) })}\n`);
    return 0;
  }
  // A plan that starts a VM needs KVM: say so before anything is created or stopped.
  const starts = planned.plan.actions.filter(
    (a) =>
      a.id.kind === 'VirtualMachine' &&
      (a.action === 'create' || a.action === 'replace' || a.action === 'start') &&
      a.after?.running !== false,
  );
  const kvm = starts.length ? checkKvm() : undefined;
  if (kvm)
    throw new UserError(
      `cannot start ${starts.map((a) => a.key).join(', ')}: ${kvm.message}; nothing was changed`,
    );
  const human = opts.json ? process.stderr : process.stdout;
  if (!opts.autoApprove && !(await confirm(opts.question, opts.command, human))) {
    human.write('Cancelled.\n');
    return 1;
  }
  const progress = createProgress({ mode: opts.json ? 'json' : tty ? 'tty' : 'plain', color: tty });
  const result = await applyPlan(store, planned.plan, planned.desired, {
    command: opts.command,
    onEvent: (e) => progress.event(e),
  });
  await progress.finish(result);
  return result.ok ? 0 : 1;
}

export default class Apply extends Command {
  static override summary =
    'Make the VMs, disks and networks match the manifests (or carry out a saved plan).';
  static override description = `Plans as \`mvctl plan\` does, shows the plan, asks for confirmation on a terminal, then \
launches, changes and stops VM processes and creates disks. Holds the state lock while it runs; a second apply fails at once \
naming the holder. Every step is recorded in the state file, so an interrupted apply is finished by the next one.

Without a terminal (CI, pipelines) it needs --auto-approve. A saved plan is applied without asking.`;
  static override examples = [
    '<%= config.bin %> apply -f examples/demo/',
    '<%= config.bin %> apply -f vms.yaml --auto-approve',
    '<%= config.bin %> plan -f vms.yaml --out plan.json && <%= config.bin %> apply plan.json',
  ];
  static override args = { planfile: Args.string({ description: 'A plan saved by `mvctl plan --out`.' }) };
  static override flags = {
    file: fileFlag,
    state: stateFlag,
    'lock-timeout': lockTimeoutFlag,
    'auto-approve': Flags.boolean({ summary: 'Do not ask for confirmation.', default: false }),
    json: Flags.boolean({
      summary: 'Machine-readable output: the plan, then one JSON line per step.',
      default: false,
    }),
    'allow-empty': allowEmptyFlag,
    target: targetFlag,
    'no-color': noColorFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Apply);
    const store = openState(flags.state, { create: true });
    let code: number;
    try {
      code = await withLock(store, 'mvctl apply', flags['lock-timeout'], () => {
        if (args.planfile && flags.target?.length)
          throw new UserError('--target applies to a new plan, not to a saved one: plan with --target');
        const planned = args.planfile
          ? fromSaved(store, args.planfile)
          : planAgainst(store, loadDesired(flags.file), {
              allowEmpty: flags['allow-empty'],
              targets: flags.target ?? [],
            });
        return showAndApply(store, planned, {
          command: 'mvctl apply',
          json: flags.json,
          noColor: flags['no-color'],
          autoApprove: flags['auto-approve'] || !!args.planfile,
          question: 'Do you want to perform these actions?',
        });
      });
    } finally {
      store.close();
    }
    await exitProcess(code);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}

function fromSaved(store: StateStore, path: string): Planned {
  const saved = readSavedPlan(path);
  const r = refresh(store);
  const stale = planStaleness(saved.plan, { state: r.state, actual: r.actual, desired: saved.desired });
  if (stale) throw new UserError(`${path}: the saved plan is stale (${stale}); run mvctl plan again`);
  checkPreflight(store, saved);
  return saved;
}
