/**
 * In-process async locks for image metadata. Devices issue several reads
 * and writes at once; these serialise the parts that change metadata.
 */

/** FIFO mutex: `run(fn)` runs fn once every earlier holder has finished. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    // The next holder waits for this one whether it succeeded or failed.
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

/**
 * Readers-writer lock with writer preference: once an exclusive holder is
 * waiting, new shared holders queue behind it (so a steady stream of I/O
 * cannot starve it).
 */
export class RwLock {
  private readers = 0;
  private writer = false;
  private readonly queue: Array<{ exclusive: boolean; wake: () => void }> = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    if (this.writer || this.queue.length > 0) {
      await new Promise<void>((wake) => this.queue.push({ exclusive: false, wake }));
    } else {
      this.readers++;
    }
    try {
      return await fn();
    } finally {
      this.readers--;
      this.dispatch();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.writer || this.readers > 0 || this.queue.length > 0) {
      await new Promise<void>((wake) => this.queue.push({ exclusive: true, wake }));
    } else {
      this.writer = true;
    }
    try {
      return await fn();
    } finally {
      this.writer = false;
      this.dispatch();
    }
  }

  /** Hands the lock to the next waiters: one exclusive, or every shared one up to the next exclusive. */
  private dispatch(): void {
    if (this.writer) return;
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (next.exclusive) {
        if (this.readers > 0) return;
        this.queue.shift();
        this.writer = true;
        next.wake();
        return;
      }
      this.queue.shift();
      this.readers++;
      next.wake();
    }
  }
}
