import { Command, Flags } from '@oclif/core';
import {
  exitProcess,
  handleError,
  noColorFlag,
  openState,
  planAgainst,
  stateFlag,
  withLock,
  lockTimeoutFlag,
} from '../cli/common.js';
import { showAndApply } from './apply.js';

export default class Destroy extends Command {
  static override summary =
    'Stop every managed VM (ACPI shutdown first, then force) and delete every managed resource.';
  static override examples = [
    '<%= config.bin %> destroy',
    '<%= config.bin %> destroy --auto-approve --state ci.db',
  ];
  static override flags = {
    state: stateFlag,
    'lock-timeout': lockTimeoutFlag,
    'auto-approve': Flags.boolean({ summary: 'Do not ask for confirmation.', default: false }),
    json: Flags.boolean({ summary: 'Machine-readable output.', default: false }),
    'no-color': noColorFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Destroy);
    const store = openState(flags.state);
    let code: number;
    try {
      code = await withLock(store, 'mvctl destroy', flags['lock-timeout'], () =>
        showAndApply(store, planAgainst(store, [], { allowEmpty: true }), {
          command: 'mvctl destroy',
          json: flags.json,
          noColor: flags['no-color'],
          autoApprove: flags['auto-approve'],
          question: 'Destroy all managed resources?',
        }),
      );
    } finally {
      store.close();
    }
    await exitProcess(code);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
