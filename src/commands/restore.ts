import { Args, Command, Flags } from '@oclif/core';
import { resolve } from 'node:path';
import { restoreVm } from '../engine/apply/snapshot.js';
import type { RestoreOutput } from '../generated/output/restore.js';
import { checkKvm } from '../vmm/kvm/availability.js';
import {
  exitProcess,
  handleError,
  lockTimeoutFlag,
  openState,
  stateFlag,
  UserError,
  withLock,
} from '../cli/common.js';

export default class Restore extends Command {
  static override summary =
    'Start a VM from a snapshot file made by mvctl snapshot (virsh restore), or take a running one back to it.';
  static override description = `A stopped VM: launches its VMM as apply does (the VMM config, control socket and log \
the state records for it), loading FILE instead of booting, waits until it runs, and records it running. A running VM \
goes back to FILE in its own process (virsh snapshot-revert), paused meanwhile. Either way the guest goes on where the \
snapshot left it. The VMM refuses a snapshot of another config, a truncated or damaged file, or one whose disks changed \
since: then the VM stays as it was (stopped, or running on), and so does the state.

Exit codes: 0 success, 1 error.`;
  static override examples = [
    '<%= config.bin %> restore web /srv/snapshots/web-1.snap',
    '<%= config.bin %> snapshot web web.snap --stop && <%= config.bin %> restore web web.snap',
  ];
  static override args = {
    vm: Args.string({ required: true, description: 'The VM (a VirtualMachine in state).' }),
    file: Args.string({
      required: true,
      description: 'The snapshot file (relative to the current directory).',
    }),
  };
  static override flags = {
    json: Flags.boolean({
      summary: 'Print JSON (schema/output/restore.schema.json, version 1).',
      default: false,
    }),
    state: stateFlag,
    'lock-timeout': lockTimeoutFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Restore);
    const file = resolve(process.cwd(), args.file);
    const store = openState(flags.state);
    try {
      const r = await withLock(store, 'mvctl restore', flags['lock-timeout'], () => {
        // As apply does before it starts a VM: one line naming the cause, before anything changes.
        const kvm = checkKvm();
        if (kvm)
          throw new UserError(
            `cannot restore VirtualMachine/${args.vm}: ${kvm.message}; nothing was changed`,
          );
        return restoreVm(store, args.vm, file, { command: 'mvctl restore' });
      });
      if (flags.json) {
        const out: RestoreOutput = { version: 1, ...r };
        process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      } else if (r.inPlace)
        process.stdout.write(
          `${r.vm}: back to ${r.file}, paused ${r.pausedMs ?? 0} ms, running (pid ${r.pid})\n`,
        );
      else process.stdout.write(`${r.vm}: restored from ${r.file}, running (pid ${r.pid})\n`);
    } finally {
      store.close();
    }
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
