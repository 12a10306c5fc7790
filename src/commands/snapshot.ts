import { Args, Command, Flags } from '@oclif/core';
import { resolve } from 'node:path';
import { snapshotVm } from '../engine/apply/snapshot.js';
import type { SnapshotOutput } from '../generated/output/snapshot.js';
import { exitProcess, handleError, lockTimeoutFlag, openState, stateFlag, withLock } from '../cli/common.js';

/** `96 KiB`, `12.5 MiB`, `2.0 GiB`. */
function sizeText(bytes: number): string {
  const KiB = 1024;
  const MiB = KiB * 1024;
  const GiB = MiB * 1024;
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(1)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  return `${Math.ceil(bytes / KiB)} KiB`;
}

export default class Snapshot extends Command {
  static override summary =
    'Save a running VM to a new file: pause it, write it, resume it (or stop it with --stop, like virsh save).';
  static override description = `The VMM pauses the guest, lets the disk requests in flight finish, and writes the whole VM \
(vCPUs, devices, RAM with zero pages as holes) to FILE, which must not exist (a path relative to the current directory). \
It then resumes the guest and reports how long it was paused. With --stop the VM stops after the snapshot and the state \
records it as stopped with its state saved in FILE: \`mvctl restore VM FILE\` goes on from there (an \`mvctl apply\` that \
starts it, its manifest saying running: true, boots it afresh). The snapshot is recorded in the state (\`mvctl state show \
VirtualMachine/VM\` lists them). Holds the state lock, as apply does.

Exit codes: 0 success, 1 error (the VM is then as it was, and so is the state).`;
  static override examples = [
    '<%= config.bin %> snapshot web /srv/snapshots/web-1.snap',
    '<%= config.bin %> snapshot web web.snap --stop && <%= config.bin %> restore web web.snap',
    '<%= config.bin %> snapshot web web-2.snap --json',
  ];
  static override args = {
    vm: Args.string({ required: true, description: 'The VM (a running VirtualMachine in state).' }),
    file: Args.string({
      required: true,
      description: 'The snapshot file to write: a new file (relative to the current directory).',
    }),
  };
  static override flags = {
    stop: Flags.boolean({
      summary: 'Stop the VM after the snapshot instead of resuming it (virsh save); mvctl restore goes on.',
      default: false,
    }),
    json: Flags.boolean({
      summary: 'Print JSON (schema/output/snapshot.schema.json, version 1).',
      default: false,
    }),
    state: stateFlag,
    'lock-timeout': lockTimeoutFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Snapshot);
    const file = resolve(process.cwd(), args.file);
    const store = openState(flags.state);
    try {
      const s = await withLock(store, 'mvctl snapshot', flags['lock-timeout'], () =>
        snapshotVm(store, args.vm, file, { command: 'mvctl snapshot', stop: flags.stop }),
      );
      if (flags.json) {
        const out: SnapshotOutput = { version: 1, ...s };
        process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      } else {
        process.stdout.write(
          `${s.vm}: snapshot written to ${s.file} (${sizeText(s.diskBytes)} on disk, ` +
            `${sizeText(s.ramDataBytes)} of RAM data), paused ${s.pausedMs} ms\n`,
        );
        if (s.stopped)
          process.stdout.write(
            `${s.vm}: stopped; \`mvctl restore ${s.vm} ${s.file}\` goes on from the snapshot ` +
              '(starting it with mvctl apply would boot it afresh)\n',
          );
      }
    } finally {
      store.close();
    }
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
