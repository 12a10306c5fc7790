import { Args, Command, Flags } from '@oclif/core';
import { createConnection } from 'node:net';
import { existsSync } from 'node:fs';
import { exitProcess, handleError, openState, stateFlag, UserError } from '../cli/common.js';
import { vmPaths } from '../engine/apply/vm-process.js';
import { dirname } from 'node:path';

export default class Console extends Command {
  static override summary = "Attach this terminal to a VM's serial console (Ctrl-] detaches).";
  static override examples = ['<%= config.bin %> console web'];
  static override args = { name: Args.string({ required: true, description: 'VM name' }) };
  static override flags = {
    state: stateFlag,
    'exit-on-eof': Flags.boolean({
      summary:
        'Without a terminal: detach when standard input ends (default: keep printing until the VM stops).',
      default: false,
    }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Console);
    const store = openState(flags.state);
    const rec = store.get({ kind: 'VirtualMachine', name: args.name });
    const path = vmPaths(dirname(store.path), args.name).console;
    store.close();
    if (!rec) throw new UserError(`VirtualMachine/${args.name}: not managed (see mvctl show)`);
    if (!existsSync(path)) {
      throw new UserError(
        `VirtualMachine/${args.name}: no console socket (is it running, with serial: console?)`,
      );
    }
    const sock = createConnection(path);
    const stdin = process.stdin;
    const raw = stdin.isTTY;
    await new Promise<void>((resolve, reject) => {
      sock.on('connect', () => {
        if (process.stderr.isTTY) process.stderr.write(`Connected to ${args.name}; Ctrl-] detaches.\r\n`);
        if (raw) stdin.setRawMode(true);
        stdin.on('data', (d: Buffer) => {
          if (raw && d.includes(0x1d)) {
            sock.end();
            return;
          }
          sock.write(d);
        });
        stdin.resume();
      });
      sock.on('data', (d) => process.stdout.write(d));
      sock.on('close', () => resolve());
      sock.on('error', (e) => reject(new UserError(`${path}: ${e.message}`)));
      if (!raw && flags['exit-on-eof']) stdin.on('end', () => sock.end());
    }).finally(() => {
      if (raw) stdin.setRawMode(false);
      stdin.pause();
    });
    await exitProcess(0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
