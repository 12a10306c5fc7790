/**
 * A small directed graph for ordering work: topological sort, cycle
 * detection that reports the cycle as a path, and the reverse walk that
 * destroy uses (Terraform's `internal/dag` plays this part there).
 *
 * Written here rather than added as a dependency: it is a few dozen lines,
 * and the planner needs two things packages tend to do differently: a
 * deterministic order (ties broken by insertion order, so plans are stable
 * and testable) and a cycle reported as the path that closes it.
 */

/** Thrown by `topoSort` when the graph is not acyclic; `cycle` starts and ends at the same node. */
export class CycleError extends Error {
  constructor(readonly cycle: readonly string[]) {
    super(`cycle: ${cycle.join(' -> ')}`);
    this.name = 'CycleError';
  }
}

export class Graph {
  /** Node -> insertion rank, which breaks ties in every order this class returns. */
  private readonly rank = new Map<string, number>();
  /** Node -> the nodes that must come after it. */
  private readonly out = new Map<string, Set<string>>();
  /** Node -> the nodes that must come before it (so that `predecessors` is not a scan of all nodes). */
  private readonly in = new Map<string, Set<string>>();

  addNode(node: string): this {
    if (!this.rank.has(node)) {
      this.rank.set(node, this.rank.size);
      this.out.set(node, new Set());
      this.in.set(node, new Set());
    }
    return this;
  }

  /** `before` must come before `after` (for dependencies: the dependency before its dependent). */
  addEdge(before: string, after: string): this {
    this.addNode(before).addNode(after);
    this.out.get(before)?.add(after);
    this.in.get(after)?.add(before);
    return this;
  }

  has(node: string): boolean {
    return this.rank.has(node);
  }

  nodes(): string[] {
    return [...this.rank.keys()];
  }

  /** Nodes that must come after `node`, in insertion order. */
  successors(node: string): string[] {
    return this.byRank([...(this.out.get(node) ?? [])]);
  }

  /** Nodes that must come before `node`, in insertion order. */
  predecessors(node: string): string[] {
    return this.byRank([...(this.in.get(node) ?? [])]);
  }

  /** A cycle as a path `[a, b, ..., a]` following the edges, or undefined if there is none. */
  findCycle(): string[] | undefined {
    const state = new Map<string, 'open' | 'done'>();
    const path: string[] = [];
    const visit = (node: string): string[] | undefined => {
      state.set(node, 'open');
      path.push(node);
      for (const next of this.successors(node)) {
        const s = state.get(next);
        if (s === 'open') return [...path.slice(path.indexOf(next)), next];
        if (s === undefined) {
          const found = visit(next);
          if (found) return found;
        }
      }
      path.pop();
      state.set(node, 'done');
      return undefined;
    };
    for (const node of this.nodes()) {
      if (state.has(node)) continue;
      const found = visit(node);
      if (found) return found;
    }
    return undefined;
  }

  /** Every node, each after all its predecessors (Kahn's algorithm); throws CycleError. */
  topoSort(): string[] {
    const indegree = new Map<string, number>(this.nodes().map((n) => [n, 0]));
    for (const targets of this.out.values()) {
      for (const t of targets) indegree.set(t, (indegree.get(t) ?? 0) + 1);
    }
    // Ready nodes, lowest rank first: a sorted array read from `head` (no shift, no re-sort).
    const ready = this.nodes().filter((n) => indegree.get(n) === 0);
    let head = 0;
    const order: string[] = [];
    while (head < ready.length) {
      const node = ready[head++] as string;
      order.push(node);
      for (const next of this.successors(node)) {
        const d = (indegree.get(next) ?? 0) - 1;
        indegree.set(next, d);
        if (d === 0) this.insertByRank(ready, head, next);
      }
    }
    if (order.length !== this.rank.size) {
      throw new CycleError(this.findCycle() ?? []);
    }
    return order;
  }

  /** The reverse of `topoSort`: each node before its predecessors (the destroy walk). */
  reverseTopoSort(): string[] {
    return this.topoSort().reverse();
  }

  private byRank(nodes: string[]): string[] {
    return nodes.sort((a, b) => (this.rank.get(a) ?? 0) - (this.rank.get(b) ?? 0));
  }

  /** Inserts `node` into `list[from..]`, which is sorted by rank (binary search). */
  private insertByRank(list: string[], from: number, node: string): void {
    const r = this.rank.get(node) ?? 0;
    let lo = from;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.rank.get(list[mid] as string) ?? 0) < r) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, node);
  }
}
