import { Command } from '@oclif/core';
import { existsSync } from 'node:fs';
import { defaultStatePath } from '../../engine/state/store.js';
import { exitProcess, handleError, openState, stateFlag } from '../../cli/common.js';

export default class StateInit extends Command {
  static override summary =
    'Create an empty state file where --state (or MVISOR_STATE) names one; nothing if it exists.';
  static override description = `Other commands than apply refuse a named state file that does not exist (a typo must not start an \
empty state): a pipeline's first run creates it with this, on purpose. Safe to run every time.

Exit codes: 0 created or already there, 1 error.`;
  static override examples = ['<%= config.bin %> state init --state ci/state.db'];
  static override flags = { state: stateFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(StateInit);
    const path = flags.state ?? defaultStatePath();
    const existed = existsSync(path);
    const store = openState(path, { create: true });
    try {
      const { lineage } = store.version();
      process.stdout.write(`${path}: ${existed ? 'already a state file' : 'created'} (lineage ${lineage})\n`);
    } finally {
      store.close();
    }
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
