import { Command } from '@oclif/core';
import { exitProcess, handleError, openState, stateFlag } from '../cli/common.js';

export default class ForceUnlock extends Command {
  static override summary = 'Remove the state lock left by an mvctl that died (check first that it is gone).';
  static override examples = ['<%= config.bin %> force-unlock'];
  static override flags = { state: stateFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(ForceUnlock);
    const store = openState(flags.state);
    try {
      const held = store.forceUnlock();
      process.stdout.write(
        held
          ? `Removed the lock held by \`${held.command}\` (pid ${held.pid} on ${held.hostname}, since ${held.since}).\n`
          : 'The state was not locked.\n',
      );
    } finally {
      store.close();
    }
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
