/**
 * Which tests need KVM, and how the nested phase splits them into shards:
 * each shard is one boot of the test host running one vitest process (all
 * its files in one fork, no per-file isolation) and, in one shard, the
 * kvm-unit-tests CI set. Shards are packed from each item's expected nested
 * seconds (nested-times.json, measured; refreshed by `--record-times`) so
 * that none passes the budget (about 10 minutes).
 */

/** Test files that boot guests under KVM: everything under test/integration/. */
export function needsKvm(file: string): boolean {
  return /(^|\/)test\/integration\//.test(file);
}

/** The kvm-unit-tests CI run, as one item of a shard. */
export const CONFORMANCE = 'conformance';

export interface ShardItem {
  /** A test file (relative to the repository) or CONFORMANCE. */
  id: string;
  /** Expected nested seconds. */
  seconds: number;
  /** For CONFORMANCE: only these tests (a re-run of the unfinished ones). */
  only?: string[];
}

export interface Shard {
  items: ShardItem[];
  /** Expected seconds, the boot and process start-up included. */
  seconds: number;
}

export interface ShardBudget {
  /** Most expected seconds per shard, overhead included. */
  maxSeconds: number;
  /** Seconds every shard pays before its first test (host boot, vitest start). */
  overheadSeconds: number;
}

/**
 * At most about 7 minutes a shard (the issue allows 10): a test host that
 * hangs or panics loses the shard's work so far, which then runs again.
 */
export const DEFAULT_BUDGET: ShardBudget = { maxSeconds: 420, overheadSeconds: 40 };

/** Seconds for an item nested-times.json does not know yet (a new test file). */
export const UNKNOWN_SECONDS = 120;

export function estimate(id: string, times: Record<string, number>): number {
  return times[id] ?? UNKNOWN_SECONDS;
}

/**
 * First-fit decreasing: the longest items first, each into the first shard
 * with room. An item longer than the budget gets a shard of its own. The
 * result is deterministic for the same inputs (ties break by id).
 */
export function planShards(items: ShardItem[], budget: ShardBudget = DEFAULT_BUDGET): Shard[] {
  const sorted = [...items].sort((a, b) => b.seconds - a.seconds || a.id.localeCompare(b.id));
  const shards: Shard[] = [];
  for (const item of sorted) {
    const fit = shards.find((s) => s.seconds + item.seconds <= budget.maxSeconds);
    if (fit) {
      fit.items.push(item);
      fit.seconds += item.seconds;
    } else shards.push({ items: [item], seconds: budget.overheadSeconds + item.seconds });
  }
  for (const s of shards) s.items.sort((a, b) => a.id.localeCompare(b.id));
  return shards;
}
