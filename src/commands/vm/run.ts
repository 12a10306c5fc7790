import { Command, Flags } from '@oclif/core';
import { exitProcess, runVmFromFlags } from '../../cli/vm-run.js';

/**
 * `mvctl vm run -c vm.yaml` (also `mvisor -c vm.yaml`): runs one VM from a
 * low-level VMM config file in this process, and exits with the code the
 * VMM returns.
 */
export default class VmRun extends Command {
  static override summary = 'Run one VM from a low-level VMM config file.';

  static override description = `Loads the VMM config (YAML, described by schema/vmm-config.schema.json; relative \
paths are relative to the config file), boots the kernel and runs the VM in this process until it stops.

Exit codes (mvctl's, as for every mvctl command): 0 when the guest resets (onReset: exit) or the VM is stopped, \
1 for any error: KVM not usable here (the message says why and what to do), the VMM failed, a configuration or usage \
error (one "file:line:col: field: message" line per problem on stderr), the guest triple-faulted.

\`mvisor -c vm.yaml\` runs the same VM with the VMM's own, finer exit codes (2 bad input, 3 guest crash; see the README).`;

  static override examples = [
    {
      description: 'Run the VM described by vm.yaml, COM1 on this terminal:',
      command: '<%= config.bin %> <%= command.id %> -c vm.yaml',
    },
    {
      description: 'Same, with the standalone runner:',
      command: '$ mvisor -c vm.yaml',
    },
    {
      description: 'Send COM1 to a file and log everything the VMM does:',
      command: '<%= config.bin %> <%= command.id %> -c vm.yaml --serial file:console.log --log-level debug',
    },
    {
      description: 'Expose COM1 on a Unix socket:',
      command: '<%= config.bin %> <%= command.id %> -c vm.yaml --serial socket:/tmp/demo.sock',
    },
  ];

  static override flags = {
    config: Flags.string({
      char: 'c',
      summary: 'VMM config file (YAML).',
      helpValue: 'FILE',
      required: true,
    }),
    serial: Flags.string({
      summary: "Override the config's `serial` (COM1): stdio, none, file:PATH or socket:PATH.",
      helpValue: 'SINK',
    }),
    control: Flags.string({
      summary:
        'Serve the control protocol (JSON lines: status, stop, powerdown, pause, resume, vcpus, snapshot, restore) on this Unix socket.',
      helpValue: 'PATH',
    }),
    restore: Flags.string({
      summary:
        "Start from a snapshot file (the control socket's `snapshot`) taken with this config, instead of booting.",
      helpValue: 'FILE',
    }),
    incoming: Flags.string({
      summary:
        "Wait on this Unix socket (unix:PATH) for a VM another VMM sends (its control socket's `snapshot` with `socket`), and run it from there, as QEMU's -incoming.",
      helpValue: 'unix:PATH',
      exclusive: ['restore'],
    }),
    'log-level': Flags.option({
      summary: 'VMM log level (default: $MVISOR_LOG, else info).',
      options: ['debug', 'info', 'warn', 'error'] as const,
    })(),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(VmRun);
    const code = await runVmFromFlags({
      config: flags.config,
      serial: flags.serial,
      control: flags.control,
      restore: flags.restore,
      incoming: flags.incoming,
      logLevel: flags['log-level'],
    });
    // mvctl's contract: 2 means "changes present" (plan --detailed-exitcode) and nothing else.
    await exitProcess(code === 0 ? 0 : 1);
  }

  protected override async catch(
    err: Error & { exitCode?: number; oclif?: { exit?: number } },
  ): Promise<unknown> {
    // oclif's own errors (usage errors are CLIErrors with exit code 2): let oclif print them.
    if (err.oclif !== undefined) return super.catch(err);
    process.stderr.write(`mvisor: error: ${process.env.DEBUG ? (err.stack ?? err.message) : err.message}\n`);
    return exitProcess(1);
  }
}
