import { Args, Command } from '@oclif/core';
import type { StateResourceOutput } from '../../generated/output/state-resource.js';
import {
  exitProcess,
  handleError,
  openState,
  parseResourceRef,
  stateFlag,
  UserError,
} from '../../cli/common.js';

export default class StateShow extends Command {
  static override summary =
    "Print one resource of the state file as JSON (schema/output/state-resource.schema.json, version 1): its applied spec, pid, paths, status, and a VM's snapshots.";
  static override examples = ['<%= config.bin %> state show VirtualMachine/web'];
  static override args = { resource: Args.string({ required: true, description: 'KIND/NAME' }) };
  static override flags = { state: stateFlag };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(StateShow);
    const store = openState(flags.state);
    try {
      const r = store.get(parseResourceRef(args.resource));
      if (!r) throw new UserError(`${args.resource}: not in the state`);
      const out: StateResourceOutput = { version: 1, ...r };
      if (r.kind === 'VirtualMachine')
        out.snapshots = store.snapshots.list(r.name).map(({ seq: _s, vm: _v, ...snap }) => snap);
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    } finally {
      store.close();
    }
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
