import { Command } from '@oclif/core';
import { checkNamedFiles } from '../engine/manifest/check-files.js';
import { ManifestError } from '../engine/manifest/errors.js';
import { exitProcess, fileFlag, handleError, loadDesired } from '../cli/common.js';

export default class Validate extends Command {
  static override summary =
    'Check manifests and every file they name (kernels, initrds, ROMs, images and their backing chains), without touching state.';
  static override description = `Loads the manifests as plan does (schema, references, sizes), then checks that each file they name \
is there: kernels, initrds, BIOS images, fw_cfg files and option ROMs readable; images of storage devices and Disks' backing \
files open as images, backing chain included. Reads no state and changes nothing.

Exit codes: 0 valid, 1 problems (one line each: file:line:col: Kind/name: field: message).`;
  static override examples = [
    '<%= config.bin %> validate -f vms/',
    'cat vm.yaml | <%= config.bin %> validate -f -',
  ];
  static override flags = { file: fileFlag };

  async run(): Promise<void> {
    const { flags } = await this.parse(Validate);
    const desired = loadDesired(flags.file);
    const problems = await checkNamedFiles(desired);
    if (problems.length) throw new ManifestError(problems);
    process.stdout.write(`${desired.length} resource(s) valid, and every file they name is there.\n`);
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
