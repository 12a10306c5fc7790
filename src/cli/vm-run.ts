/**
 * Running one VM from a VMM config file: the body of `mvctl vm run` and of
 * `mvisor`. `mvisor` parses its few flags here with node:util's parseArgs
 * and never loads oclif (about 0.3 s of start-up natively, and ten times
 * the VM's own start-up inside the nested test host); `--help`, `--version`
 * and anything unknown still go through oclif (bin/mvisor.js).
 */
import { resolve as resolvePath } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadVmmConfig, parseCharSinkSpec, parseVmmConfig } from '../vmm/config/load.js';
import { checkKvm } from '../vmm/kvm/availability.js';
import { runVmm } from '../vmm/main.js';

export { exitProcess } from './exit.js';

/** Exit code for configuration and usage errors. */
export const EXIT_USAGE = 2;

export interface VmRunFlags {
  config: string;
  serial?: string | undefined;
  control?: string | undefined;
  restore?: string | undefined;
  /** unix:PATH: wait there for a snapshot another VMM sends (control `snapshot {socket}`). */
  incoming?: string | undefined;
  logLevel?: 'debug' | 'info' | 'warn' | 'error' | undefined;
}

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** `mvisor`'s own flags, or undefined for anything oclif should answer (help, version, mistakes). */
export function parseMvisorArgs(argv: string[]): VmRunFlags | undefined {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        serial: { type: 'string' },
        control: { type: 'string' },
        restore: { type: 'string' },
        incoming: { type: 'string' },
        'log-level': { type: 'string' },
      },
    });
    const level = values['log-level'];
    if (positionals.length || values.config === undefined) return undefined;
    if (level !== undefined && !(LEVELS as readonly string[]).includes(level)) return undefined;
    return {
      config: values.config,
      serial: values.serial,
      control: values.control,
      restore: values.restore,
      incoming: values.incoming,
      logLevel: level as VmRunFlags['logLevel'],
    };
  } catch {
    return undefined;
  }
}

/** Loads the config, checks KVM, runs the VM; the process's exit code. Errors are printed here. */
export async function runVmFromFlags(flags: VmRunFlags): Promise<number> {
  try {
    if (flags.logLevel !== undefined) process.env.MVISOR_LOG = flags.logLevel;
    const incoming = flags.incoming;
    if (
      incoming !== undefined &&
      (!incoming.startsWith('unix:') || incoming.length === 5 || flags.restore !== undefined)
    ) {
      process.stderr.write(
        `mvisor: --incoming takes unix:PATH (a Unix socket to wait on), and not with --restore; got ${JSON.stringify(incoming)}\n`,
      );
      return EXIT_USAGE;
    }
    let config = loadVmmConfig(flags.config);
    if (flags.serial !== undefined) config = { ...config, serial: parseCharSinkSpec(flags.serial) };
    // Before any image is opened or locked: one line naming the cause and the remedy.
    const kvm = checkKvm();
    if (kvm) {
      process.stderr.write(`mvisor: cannot run VM ${config.name}: ${kvm.message}\n`);
      return 1;
    }
    return await runVmm(config, undefined, {
      controlSocket: flags.control,
      exitsAfter: true,
      ...(flags.restore !== undefined ? { restore: resolvePath(flags.restore) } : {}),
      ...(incoming !== undefined ? { incoming: resolvePath(incoming.slice('unix:'.length)) } : {}),
    });
  } catch (e) {
    const err = e as Error;
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      if (process.env.DEBUG) process.stderr.write(`${err.stack ?? ''}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`mvisor: error: ${process.env.DEBUG ? (err.stack ?? err.message) : err.message}\n`);
    return 1;
  }
}

/**
 * Runs the config path once on a made-up config, for the build's code cache
 * (src/cli/code-cache.ts): V8 caches the functions that have run, so that a
 * VM process does not compile the YAML parser, the validators and the
 * normaliser again. The config's files do not exist; its problems are the point.
 */
export function warmUpForCodeCache(): void {
  const text = [
    'name: warm-up',
    'memory: 64M',
    'vcpus: 2',
    'firmware: direct',
    'kernel: /nonexistent/vmlinux',
    'serial: none',
    'devices:',
    '  - {class: virtio-block, name: vda, image: /nonexistent/a.qcow2, format: qcow2}',
    '  - {class: ata-cdrom, name: cd}',
    '  - {class: serial-port, port: 0x2f8}',
  ].join('\n');
  try {
    parseVmmConfig(text, '/nonexistent/vm.yaml');
  } catch {
    // expected: the files are missing
  }
}
