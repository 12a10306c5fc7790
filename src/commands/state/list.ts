import { Command } from '@oclif/core';
import { exitProcess, handleError, openState, stateFlag } from '../../cli/common.js';

export default class StateList extends Command {
  static override summary = 'List the resources recorded in the state file (no refresh).';
  static override examples = ['<%= config.bin %> state list'];
  static override flags = { state: stateFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(StateList);
    const store = openState(flags.state);
    try {
      for (const r of store.list()) process.stdout.write(`${r.kind}/${r.name}\n`);
    } finally {
      store.close();
    }
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
