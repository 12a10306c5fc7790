import { Args, Command } from '@oclif/core';
import { dirname } from 'node:path';
import { importDisk } from '../engine/apply/import.js';
import {
  exitProcess,
  fileFlag,
  handleError,
  loadDesired,
  lockTimeoutFlag,
  openState,
  parseResourceRef,
  stateFlag,
  UserError,
  withLock,
} from '../cli/common.js';

export default class Import extends Command {
  static override summary = 'Adopt an existing image file as the Disk a manifest declares.';
  static override description = `Checks the file against the Disk's manifest (its path, format and virtual size) and records it in \
state as a Disk mvctl did not create: destroy and replace keep the file unless the manifest says deletePolicy: delete. A plan \
with the same manifests then shows no change for it.

Exit codes: 0 imported, 1 error (the file does not match the manifest, the Disk is already in state...).`;
  static override examples = ['<%= config.bin %> import Disk/data /srv/images/data.qcow2 -f vms/'];
  static override args = {
    resource: Args.string({ description: 'KIND/NAME, e.g. Disk/data.', required: true }),
    id: Args.string({ description: "The existing resource: a Disk's image file.", required: true }),
  };
  static override flags = { file: fileFlag, state: stateFlag, 'lock-timeout': lockTimeoutFlag };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Import);
    const id = parseResourceRef(args.resource);
    if (id.kind !== 'Disk')
      throw new UserError(`mvctl import takes Disks (an image file); ${id.kind} cannot be imported yet`);
    const desired = loadDesired(flags.file);
    const store = openState(flags.state, { create: true });
    try {
      const line = await withLock(store, 'mvctl import', flags['lock-timeout'], () =>
        importDisk(store, id, args.id, desired, dirname(store.path)),
      );
      process.stdout.write(`${line}\n`);
    } finally {
      store.close();
    }
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
