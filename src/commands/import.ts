import { Args, Command } from '@oclif/core';
import { dirname } from 'node:path';
import { importDisk, importVm } from '../engine/apply/import.js';
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
  static override summary =
    'Adopt what exists as the resource a manifest declares: an image file as a Disk, a running VMM as a VirtualMachine.';
  static override description = `Disk/NAME PATH: checks the file against the Disk's manifest (its path, format and virtual size) \
and records it in state as a Disk mvctl did not create: destroy and replace keep the file unless the manifest says \
deletePolicy: delete.

VirtualMachine/NAME SOCKET: asks the mvisor VMM on that control socket (mvisor -c vm.yaml --control SOCKET) for its \
status, checks its name, vCPUs, memory and SMBIOS UUID against the manifest, and records it as running: mvctl manages it \
from then on (a replace or destroy stops it through that socket).

A plan with the same manifests then shows no change for it.

Exit codes: 0 imported, 1 error (the file does not match the manifest, the Disk is already in state...).`;
  static override examples = [
    '<%= config.bin %> import Disk/data /srv/images/data.qcow2 -f vms/',
    '<%= config.bin %> import VirtualMachine/web /run/web.sock -f vms/',
  ];
  static override args = {
    resource: Args.string({ description: 'KIND/NAME, e.g. Disk/data.', required: true }),
    id: Args.string({
      description: "The existing resource: a Disk's image file, a VM's control socket.",
      required: true,
    }),
  };
  static override flags = { file: fileFlag, state: stateFlag, 'lock-timeout': lockTimeoutFlag };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Import);
    const id = parseResourceRef(args.resource);
    if (id.kind !== 'Disk' && id.kind !== 'VirtualMachine')
      throw new UserError(
        `mvctl import takes a Disk (an image file) or a VirtualMachine (a control socket); ${id.kind} cannot be imported yet`,
      );
    const desired = loadDesired(flags.file);
    const store = openState(flags.state);
    try {
      const line = await withLock(store, 'mvctl import', flags['lock-timeout'], () =>
        id.kind === 'Disk'
          ? importDisk(store, id, args.id, desired, dirname(store.path))
          : importVm(store, id, args.id, desired),
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
