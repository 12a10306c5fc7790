import { Command, Flags } from '@oclif/core';
import { refresh } from '../engine/state/refresh.js';
import { exitProcess, handleError, openState, stateFlag } from '../cli/common.js';

export default class Show extends Command {
  static override summary = 'Show the managed resources as they are now (state refreshed against the host).';
  static override examples = ['<%= config.bin %> show', '<%= config.bin %> show --json'];
  static override flags = {
    state: stateFlag,
    json: Flags.boolean({ summary: 'Print JSON.', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Show);
    const store = openState(flags.state);
    try {
      const r = refresh(store);
      const records = new Map(store.list().map((x) => [`${x.kind}/${x.name}`, x]));
      const rows = r.actual.map((a) => {
        const rec = records.get(`${a.kind}/${a.name}`);
        return {
          resource: `${a.kind}/${a.name}`,
          status: a.status,
          pid: a.pid,
          drift: a.drift.map((d) => d.detail),
          log: rec?.logPath ?? null,
          error: rec?.error ?? null,
        };
      });
      if (flags.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
      else if (!rows.length) process.stdout.write('No managed resources.\n');
      else {
        const w = Math.max(...rows.map((x) => x.resource.length));
        for (const x of rows) {
          const extra = [
            x.pid ? `pid ${x.pid}` : '',
            ...x.drift,
            x.error ? `error: ${x.error.split('\n')[0]}` : '',
          ]
            .filter(Boolean)
            .join('; ');
          process.stdout.write(`${x.resource.padEnd(w)}  ${x.status.padEnd(8)}  ${extra}\n`);
        }
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
