/**
 * Results: one row per test with each VMM's verdict, duration and (for the
 * vmexit_* tests) the cycles per operation the test printed, the table for
 * people, the JSON for machines, and what `--ci` concludes.
 */
import type { Result } from './qemu.js';

export interface VmmRun {
  result: Result;
  /** Why, for anything but a plain PASS (a SKIP always has one). */
  reason?: string;
  /** The test's `SUMMARY:` line. */
  summary?: string;
  durationMs?: number;
  exitStatus?: number | null;
  /** Cycles per operation a vmexit_* test printed. */
  cycles?: number;
  /** How the run differs from QEMU's (mvisor only). */
  notes?: string[];
  /** Where its command line and output are. */
  log?: string;
}

export interface Row {
  name: string;
  file: string;
  smp: string;
  testArgs: string;
  extraParams: string;
  groups: string[];
  timeoutS: number;
  qemu?: VmmRun;
  mvisor?: VmmRun;
  /** mvisor cycles / QEMU cycles. */
  ratio?: number;
  /** The run this row reports followed this many failed ones (--retries). */
  retried?: number;
}

/**
 * The cycles per operation vmexit.c printed for test `name`
 * (`printf("%s %d\n", test->name, cycles)`), e.g. "cpuid 19700".
 */
export function vmexitCycles(stdout: string, name: string): number | undefined {
  const re = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} (-?\\d+)\\s*$`);
  for (const line of stdout.replace(/\r/g, '').split('\n')) {
    const m = re.exec(line);
    if (m) return Number(m[1]);
  }
  return undefined;
}

export function ratio(row: Row): number | undefined {
  const q = row.qemu?.cycles;
  const m = row.mvisor?.cycles;
  return q !== undefined && m !== undefined && q > 0 ? m / q : undefined;
}

const secs = (r?: VmmRun) => (r?.durationMs !== undefined ? (r.durationMs / 1000).toFixed(1) : '');
const num = (n?: number) => (n !== undefined ? n.toLocaleString('en-US') : '');

/** The notes column: reasons of non-passing runs and how the mvisor run differs. */
function notesOf(row: Row): string {
  const parts: string[] = [];
  const q = row.qemu;
  const m = row.mvisor;
  const why = (r: VmmRun) =>
    [r.reason, r.summary !== undefined ? `(${r.summary})` : undefined].filter(Boolean).join(' ');
  if (q && m && q.result === 'SKIP' && m.result === 'SKIP' && q.reason === m.reason) {
    parts.push(`both: ${q.reason ?? ''}`);
  } else {
    if (q && (q.result !== 'PASS' || q.reason !== undefined))
      parts.push(`qemu: ${why(q) || q.result.toLowerCase()}`);
    if (m && (m.result !== 'PASS' || m.reason !== undefined))
      parts.push(`mvisor: ${why(m) || m.result.toLowerCase()}`);
  }
  if (m?.notes?.length) parts.push(...m.notes.map((n) => `mvisor: ${n}`));
  return parts.join('; ');
}

/** The table: fixed columns, then the notes (never cut: a skip's reason belongs in the table). */
export function formatTable(rows: readonly Row[], opts: { qemu: boolean; mvisor: boolean }): string {
  const header = ['test'];
  if (opts.qemu) header.push('qemu', 's');
  if (opts.mvisor) header.push('mvisor', 's');
  if (opts.qemu) header.push('cycles qemu');
  if (opts.mvisor) header.push('cycles mvisor');
  if (opts.qemu && opts.mvisor) header.push('mvisor/qemu');
  header.push('notes');
  const body = rows.map((r) => {
    const cells = [r.name];
    if (opts.qemu) cells.push(r.qemu?.result ?? '', secs(r.qemu));
    if (opts.mvisor) cells.push(r.mvisor?.result ?? '', secs(r.mvisor));
    if (opts.qemu) cells.push(num(r.qemu?.cycles));
    if (opts.mvisor) cells.push(num(r.mvisor?.cycles));
    if (opts.qemu && opts.mvisor) cells.push(r.ratio !== undefined ? r.ratio.toFixed(2) : '');
    cells.push(notesOf(r));
    return cells;
  });
  const all = [header, ...body];
  const widths = header.map((_, i) => Math.max(...all.map((c) => (c[i] ?? '').length)));
  const numeric = new Set(['s', 'cycles qemu', 'cycles mvisor', 'mvisor/qemu']);
  const line = (cells: string[]) =>
    cells
      .map((c, i) => {
        if (i === cells.length - 1) return c;
        const w = widths[i] ?? 0;
        return numeric.has(header[i] ?? '') && cells !== header ? c.padStart(w) : c.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  return [line(header), ...body.map(line)].join('\n');
}

export function tally(rows: readonly Row[], vmm: 'qemu' | 'mvisor'): Record<Result, number> {
  const out: Record<Result, number> = { PASS: 0, FAIL: 0, SKIP: 0, TIMEOUT: 0 };
  for (const r of rows) {
    const v = r[vmm];
    if (v) out[v.result]++;
  }
  return out;
}

export function tallyLine(rows: readonly Row[], vmm: 'qemu' | 'mvisor'): string {
  const t = tally(rows, vmm);
  return `${vmm}: ${t.PASS} pass, ${t.FAIL} fail, ${t.TIMEOUT} timeout, ${t.SKIP} skip`;
}

export interface CiOutcome {
  ok: boolean;
  /** One line per test that breaks CI. */
  failures: string[];
  /** Known skips, and known skips that now pass (to be removed from skips.ts). */
  notes: string[];
}

/**
 * `--ci`: every test of the subset passes under mvisor, unless skips.ts
 * says why it cannot.
 */
export function ciOutcome(rows: readonly Row[], knownSkips: Readonly<Record<string, string>>): CiOutcome {
  const failures: string[] = [];
  const notes: string[] = [];
  for (const r of rows) {
    const m = r.mvisor;
    const known = knownSkips[r.name];
    if (m?.result === 'PASS') {
      if (known !== undefined) notes.push(`${r.name} passes now: remove it from test/conformance/skips.ts`);
      continue;
    }
    if (known !== undefined) {
      notes.push(`${r.name}: known skip (${m?.result ?? 'not run'}): ${known}`);
      continue;
    }
    const why = [m?.reason, m?.summary !== undefined ? `(${m.summary})` : undefined]
      .filter(Boolean)
      .join(' ');
    failures.push(
      `${r.name}: ${m?.result ?? 'not run'}${why ? `: ${why}` : ''}${m?.log ? ` [log: ${m.log}]` : ''}`,
    );
  }
  return { ok: failures.length === 0, failures, notes };
}
