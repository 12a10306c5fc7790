import { Args, Command } from '@oclif/core';
import {
  exitProcess,
  handleError,
  openState,
  parseResourceRef,
  stateFlag,
  UserError,
  withLock,
  lockTimeoutFlag,
} from '../../cli/common.js';

export default class StateRm extends Command {
  static override summary =
    'Forget a resource: remove it from the state without touching the host (it is no longer managed).';
  static override examples = ['<%= config.bin %> state rm VirtualMachine/web'];
  static override args = { resource: Args.string({ required: true, description: 'KIND/NAME' }) };
  static override flags = { state: stateFlag, 'lock-timeout': lockTimeoutFlag };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(StateRm);
    const store = openState(flags.state);
    try {
      await withLock(store, 'mvctl state rm', flags['lock-timeout'], () => {
        const id = parseResourceRef(args.resource);
        if (!store.remove(id)) throw new UserError(`${args.resource}: not in the state`);
        store.recordEvent({ command: 'mvctl state rm', id, action: 'forget', outcome: 'succeeded' });
        process.stdout.write(`Removed ${args.resource} from the state (nothing on the host was changed).\n`);
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
