/**
 * LRU cache of one-cluster metadata tables (qcow2 L2 tables and refcount
 * blocks), keyed by their offset in the image file.
 *
 * The cache is write-through: whoever changes a table writes the changed
 * bytes to the file itself, so entries are never dirty and eviction is
 * free. A table being changed is pinned (`acquire`/`release`) so it cannot
 * be evicted and reloaded from disk while its new bytes are still on their
 * way there (the reloaded copy would be stale). Concurrent loads of one
 * table share one read.
 */

interface Entry {
  buf: Buffer;
  pins: number;
}

export class TableCache {
  private readonly map = new Map<number, Entry>(); // insertion order = LRU order
  private readonly loading = new Map<number, Promise<Entry>>();

  constructor(
    private readonly capacity: number,
    private readonly load: (offset: number) => Promise<Buffer>,
  ) {}

  /** The cached table, if any, without touching LRU order or loading. */
  peek(offset: number): Buffer | undefined {
    return this.map.get(offset)?.buf;
  }

  /** The table at `offset`, loaded if needed. Only to read: changes need `acquire`. */
  async get(offset: number): Promise<Buffer> {
    return (await this.entry(offset)).buf;
  }

  /** Pins the table (no eviction) and returns it; pair with `release`. */
  async acquire(offset: number): Promise<Buffer> {
    for (;;) {
      const e = await this.entry(offset);
      // Evicted between the load and now? Then take whatever is cached anew.
      if (this.map.get(offset) === e) {
        e.pins++;
        return e.buf;
      }
    }
  }

  release(offset: number): void {
    const e = this.map.get(offset);
    if (e && e.pins > 0) e.pins--;
    this.evict();
  }

  /** Inserts a table built in memory (a new L2 table or refcount block, already written). */
  put(offset: number, buf: Buffer): void {
    this.map.delete(offset);
    this.map.set(offset, { buf, pins: 0 });
    this.evict(offset);
  }

  /** Forgets a table (its cluster was freed). */
  delete(offset: number): void {
    this.map.delete(offset);
  }

  clear(): void {
    this.map.clear();
  }

  private async entry(offset: number): Promise<Entry> {
    const hit = this.map.get(offset);
    if (hit) {
      this.map.delete(offset);
      this.map.set(offset, hit);
      return hit;
    }
    let p = this.loading.get(offset);
    if (!p) {
      p = this.load(offset).then(
        (buf) => {
          this.loading.delete(offset);
          const e = this.map.get(offset) ?? { buf, pins: 0 };
          this.map.set(offset, e);
          this.evict(offset);
          return e;
        },
        (err: unknown) => {
          this.loading.delete(offset);
          throw err;
        },
      );
      this.loading.set(offset, p);
    }
    return p;
  }

  /** Drops least recently used unpinned tables over capacity, never `keep` (the one just used). */
  private evict(keep?: number): void {
    if (this.map.size <= this.capacity) return;
    for (const [off, e] of this.map) {
      if (this.map.size <= this.capacity) break;
      if (e.pins === 0 && off !== keep) this.map.delete(off);
    }
  }
}
