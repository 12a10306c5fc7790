import { Command, Flags } from '@oclif/core';
import { refresh } from '../engine/state/refresh.js';
import { exitProcess, handleError, openState, stateFlag } from '../cli/common.js';
import type { ShowOutput } from '../generated/output/show.js';

export default class Show extends Command {
  static override summary = 'Show the managed resources as they are now (state refreshed against the host).';
  static override description =
    'Exit codes: 0, or 1 when a resource failed (its whole reason is shown) or on an error.';
  static override examples = ['<%= config.bin %> show', '<%= config.bin %> show --json'];
  static override flags = {
    state: stateFlag,
    json: Flags.boolean({
      summary: 'Print JSON (schema/output/show.schema.json, version 1).',
      default: false,
    }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Show);
    const store = openState(flags.state);
    let failed = 0;
    try {
      const r = refresh(store);
      const records = new Map(store.list().map((x) => [`${x.kind}/${x.name}`, x]));
      const rows: ShowOutput['resources'] = r.actual.map((a) => {
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
      if (flags.json) {
        const out: ShowOutput = { version: 1, resources: rows };
        process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      } else if (!rows.length) process.stdout.write('No managed resources.\n');
      else {
        const w = Math.max(...rows.map((x) => x.resource.length));
        for (const x of rows) {
          const saved = records.get(x.resource)?.savedSnapshot;
          const extra = [
            x.pid ? `pid ${x.pid}` : '',
            saved ? `saved in ${saved} (mvctl restore)` : '',
            ...x.drift,
          ]
            .filter(Boolean)
            .join('; ');
          process.stdout.write(`${x.resource.padEnd(w)}  ${x.status.padEnd(8)}  ${extra}`.trimEnd() + '\n');
          // The whole reason, every line of it, indented under the resource.
          if (x.error) process.stdout.write(x.error.replace(/^/gm, '    error: ') + '\n');
        }
      }
      failed = rows.filter((x) => x.status === 'failed').length;
    } finally {
      store.close();
    }
    // A failed resource is not success: pipelines see it in the exit code.
    if (failed > 0 && !flags.json) process.stderr.write(`mvctl show: ${failed} resource(s) failed\n`);
    await exitProcess(failed > 0 ? 1 : 0);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return handleError(this, err);
  }
}
