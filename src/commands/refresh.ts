import { Command } from '@oclif/core';
import { refreshState } from '../engine/state/refresh.js';
import { exitProcess, handleError, lockTimeoutFlag, openState, stateFlag, withLock } from '../cli/common.js';

export default class Refresh extends Command {
  static override summary = 'Record in state what is really there (drift), without changing any VM or disk.';
  static override description = `Compares state with the host, as plan does, and records what it finds: a VM whose process is gone \
as stopped, a raw disk resized outside mvctl at its real size, a Disk whose file is gone dropped from state. Each change is an \
event in the state's log. After it, plan shows those as ordinary changes instead of drift.

Exit codes: 0 success, 1 error.`;
  static override examples = ['<%= config.bin %> refresh', '<%= config.bin %> refresh --state ci/state.db'];
  static override flags = { state: stateFlag, 'lock-timeout': lockTimeoutFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(Refresh);
    const store = openState(flags.state);
    try {
      await withLock(store, 'mvctl refresh', flags['lock-timeout'], () => {
        const drift = refreshState(store, 'mvctl refresh');
        if (!drift.length) process.stdout.write('No drift: state matches the host.\n');
        for (const d of drift) process.stdout.write(`${d.id.kind}/${d.id.name}: ${d.detail}: recorded\n`);
      });
    } finally {
      store.close();
    }
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
