/**
 * bench/plan: mvctl at scale, with the real bin, a real SQLite state file
 * and generated manifests (no KVM: the VMs are `running: false`, so apply
 * records them without starting a VMM). For 1,000 and 10,000 VMs: the first
 * plan (empty state), an apply that records them, a no-op plan; plus the
 * start-up of `mvctl --help` and of a plan of one VM. Each figure is the
 * median wall time and the peak RSS of the mvctl process, beside the
 * targets of issue 14 and the figures it measured before.
 *
 *   node dist/bench/plan.js [--sizes 1000,10000] [--runs 3]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const mvctl = join(repo, 'bin/mvctl.js');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}

/** N stopped VMs in one manifest file (what a generated fleet looks like). */
export function fleet(n: number): string {
  const docs: string[] = [];
  for (let i = 0; i < n; i++)
    docs.push(
      `apiVersion: mvisor.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: vm-${i}, labels: {fleet: bench}}\n` +
        `spec:\n  memory: 64M\n  vcpus: 1\n  running: false\n  firmware: {kernel: vmlinux, cmdline: console=ttyS0}\n`,
    );
  return docs.join('---\n');
}

interface Run {
  ms: number;
  rssMiB: number;
  code: number | null;
}

function timed(dir: string, args: string[]): Run {
  const rssFile = join(dir, 'rss');
  const preload = join(dir, 'rss.cjs');
  writeFileSync(
    preload,
    `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(rssFile)}, String(process.resourceUsage().maxRSS)));`,
  );
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--require', preload, mvctl, ...args], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
    maxBuffer: 1 << 30,
  });
  const ms = performance.now() - t0;
  if (r.status !== 0 && r.status !== 2)
    throw new Error(`mvctl ${args.join(' ')}: exit ${r.status}: ${r.stderr.slice(0, 500)}`);
  return { ms, rssMiB: Number(readFileSync(rssFile, 'utf8')) / 1024, code: r.status };
}

function median(runs: Run[]): Run {
  const sorted = [...runs].sort((a, b) => a.ms - b.ms);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const fmt = (r: Run) => `${(r.ms / 1000).toFixed(2)} s, ${r.rssMiB.toFixed(0)} MiB`;

function main(): void {
  const sizes = arg('sizes', '1000,10000').split(',').map(Number);
  const runs = Number(arg('runs', '3'));
  const rows: [string, string, string, string][] = [];
  const dir = mkdtempSync(join(tmpdir(), 'mvisor-bench-plan-'));
  try {
    writeFileSync(join(dir, 'vmlinux'), '');
    writeFileSync(join(dir, 'one.yaml'), fleet(1));
    // What no mvctl start can go below: Node itself, and Node importing oclif (the CLI framework).
    const bare = (code: string): Run => {
      const t0 = performance.now();
      spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd: repo });
      return { ms: performance.now() - t0, rssMiB: 0, code: 0 };
    };
    const msOnly = (r: Run) => `${(r.ms / 1000).toFixed(2)} s`;
    rows.push([
      'node -e 0 (Node alone)',
      msOnly(median(Array.from({ length: runs }, () => bare('0')))),
      '',
      '',
    ]);
    rows.push([
      "node importing '@oclif/core'",
      msOnly(median(Array.from({ length: runs }, () => bare("await import('@oclif/core')")))),
      '',
      '',
    ]);
    rows.push([
      'mvctl --help',
      fmt(median(Array.from({ length: runs }, () => timed(dir, ['--help'])))),
      '< 0.15 s',
      '0.4 s',
    ]);
    timed(dir, ['apply', '-f', 'one.yaml', '--auto-approve', '--state', join(dir, 'one.db')]);
    rows.push([
      'mvctl plan, 1 VM',
      fmt(
        median(
          Array.from({ length: runs }, () =>
            timed(dir, ['plan', '-f', 'one.yaml', '--state', join(dir, 'one.db')]),
          ),
        ),
      ),
      '< 0.15 s',
      '',
    ]);
    for (const n of sizes) {
      const file = join(dir, `fleet-${n}.yaml`);
      writeFileSync(file, fleet(n));
      const state = join(dir, `state-${n}.db`);
      const first: Run[] = [];
      for (let i = 0; i < runs; i++) {
        rmSync(join(dir, `first-${n}.db`), { force: true });
        timed(dir, [
          'apply',
          '-f',
          join(dir, 'one.yaml'),
          '--auto-approve',
          '--state',
          join(dir, `first-${n}.db`),
        ]);
        first.push(timed(dir, ['plan', '-f', file, '--state', join(dir, `first-${n}.db`)]));
      }
      const apply = timed(dir, ['apply', '-f', file, '--auto-approve', '--state', state]);
      const noop = median(
        Array.from({ length: runs }, () => timed(dir, ['plan', '-f', file, '--state', state])),
      );
      const big = n >= 10_000;
      rows.push([
        `first plan, ${n} VMs`,
        fmt(median(first)),
        big ? '< 3 s' : '',
        big ? '10-14 s, 286 MB' : '',
      ]);
      rows.push([`apply of ${n} stopped VMs`, fmt(apply), big ? '< 10 s' : '', big ? '19.7 s' : '']);
      rows.push([`no-op plan, ${n} VMs`, fmt(noop), big ? '< 2 s, < 200 MB' : '', big ? '4.7-6.8 s' : '']);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const w = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length), 8));
  const line = (r: string[]) => r.map((x, i) => x.padEnd(w[i]!)).join('  ');
  process.stdout.write(`${line(['figure (native)', 'now (median)', 'target', 'issue 14 measured'])}\n`);
  for (const r of rows) process.stdout.write(`${line(r)}\n`);
}

main();
