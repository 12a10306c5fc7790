import { Command, Flags } from '@oclif/core';
import { writeFileSync } from 'node:fs';
import { renderPlan, renderPlanJson, planExitCode } from '../engine/plan/render.js';
import {
  allowEmptyFlag,
  exitProcess,
  fileFlag,
  handleError,
  loadDesired,
  noColorFlag,
  openState,
  planAgainst,
  stateFlag,
  targetFlag,
  type SavedPlan,
} from '../cli/common.js';

export default class Plan extends Command {
  static override summary = 'Show what apply would change: manifests against the refreshed state.';
  static override description = `Loads the manifests, refreshes the state (are the VM processes alive, do disk files exist), and \
prints the changes: drift outside mvctl first, then + create, ~ update in place, -/+ replace, - destroy, with per-field diffs.

Exit codes: 0 success (with --detailed-exitcode: no changes), 1 error, 2 changes present (--detailed-exitcode).`;
  static override examples = [
    '<%= config.bin %> plan -f examples/vms/',
    '<%= config.bin %> plan -f vms.yaml --out plan.json && <%= config.bin %> apply plan.json',
    '<%= config.bin %> plan -f examples/vms/ --target VirtualMachine/web',
    'cat vms.yaml | <%= config.bin %> plan -f - --json --detailed-exitcode',
  ];
  static override flags = {
    file: fileFlag,
    state: stateFlag,
    out: Flags.string({ summary: 'Save the plan for `mvctl apply PLANFILE`.', helpValue: 'FILE' }),
    json: Flags.boolean({
      summary: 'Print the plan as JSON (with hasChanges, hasDestroy, hasDrift).',
      default: false,
    }),
    'detailed-exitcode': Flags.boolean({
      summary: 'Exit 0 for no changes, 2 for changes, 1 for errors.',
      default: false,
    }),
    'allow-empty': allowEmptyFlag,
    target: targetFlag,
    'no-color': noColorFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Plan);
    const desired = loadDesired(flags.file);
    const store = openState(flags.state);
    let code: number;
    try {
      const p = planAgainst(store, desired, {
        allowEmpty: flags['allow-empty'],
        targets: flags.target ?? [],
      });
      if (flags.out) {
        const saved: SavedPlan = { format: 'mvisor-plan', version: 1, plan: p.plan, desired: p.desired };
        writeFileSync(flags.out, JSON.stringify(saved, null, 2) + '\n');
      }
      if (flags.json) process.stdout.write(renderPlanJson(p.plan) + '\n');
      else
        process.stdout.write(
          renderPlan(p.plan, { color: !flags['no-color'] && !!process.stdout.isTTY }) + '\n',
        );
      if (flags.out && !flags.json)
        process.stdout.write(`Saved the plan to ${flags.out}; run: mvctl apply ${flags.out}\n`);
      code = planExitCode(p.plan, { detailedExitCode: flags['detailed-exitcode'] });
    } finally {
      store.close();
    }
    await exitProcess(code);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
