import { Command, Flags } from '@oclif/core';
import { exitProcess, handleError, openState, stateFlag } from '../../cli/common.js';
import type { StateListOutput } from '../../generated/output/state-list.js';

export default class StateList extends Command {
  static override summary = 'List the resources recorded in the state file (no refresh).';
  static override examples = ['<%= config.bin %> state list', '<%= config.bin %> state list --json'];
  static override flags = {
    state: stateFlag,
    json: Flags.boolean({
      summary: 'Print JSON (schema/output/state-list.schema.json, version 1).',
      default: false,
    }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(StateList);
    const store = openState(flags.state);
    try {
      const records = store.list();
      if (flags.json) {
        const out: StateListOutput = {
          version: 1,
          resources: records.map((r) => ({ kind: r.kind, name: r.name, status: r.status })),
        };
        process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      } else for (const r of records) process.stdout.write(`${r.kind}/${r.name}\n`);
    } finally {
      store.close();
    }
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
