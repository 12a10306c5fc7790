/**
 * What every character backend (backend.ts, stdio.ts) builds on: the
 * CharBackend interface, the output batcher that turns one-byte guest
 * writes into few syscalls, and the dispatcher that holds host input until
 * a consumer is set.
 */

export interface CharBackend {
  /**
   * Sends bytes to the host side. The backend copies what it keeps: the
   * caller may reuse `data` as soon as `write` returns.
   */
  write(data: Uint8Array): void;
  /**
   * Sets the consumer of host input (one consumer: a later call replaces the
   * earlier one). Input that arrived before a consumer was set is held (up
   * to 64 KiB) and delivered when it is set. The consumer copies what it
   * keeps: `data` is only valid during the call.
   */
  onInput(cb: (data: Uint8Array) => void): void;
  /** Flushes pending output synchronously and releases host resources. Idempotent. */
  close(): void;
}

/** Output is flushed once this many bytes are pending. */
export const OUTPUT_FLUSH_BYTES = 4096;
/** Host input held while no consumer is registered, and UnixSocketBackend's default offline buffer. */
export const DEFAULT_HOLD_BYTES = 64 * 1024;

/**
 * Gathers small writes into one buffer and hands it to `sink` when it
 * reaches `threshold` bytes, on setImmediate, or on `flush()`/`close()`.
 * The chunk given to `sink` belongs to the sink (it is never reused).
 */
export class OutputBatcher {
  private buf: Buffer;
  private len = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private closed = false;
  /** Number of chunks handed to the sink. */
  flushes = 0;
  /** Bytes handed to the sink. */
  bytes = 0;

  constructor(
    private readonly sink: (chunk: Buffer) => void,
    private readonly threshold = OUTPUT_FLUSH_BYTES,
  ) {
    this.buf = Buffer.allocUnsafe(threshold);
  }

  push(data: Uint8Array): void {
    if (this.closed) return;
    let off = 0;
    while (off < data.length) {
      const n = Math.min(data.length - off, this.threshold - this.len);
      this.buf.set(data.subarray(off, off + n), this.len);
      this.len += n;
      off += n;
      if (this.len >= this.threshold) this.flush();
    }
    if (this.len > 0 && this.scheduled === undefined) {
      this.scheduled = setImmediate(() => {
        this.scheduled = undefined;
        this.flush();
      });
    }
  }

  /** Pending bytes, not yet handed to the sink. */
  get pending(): number {
    return this.len;
  }

  flush(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    if (this.len === 0) return;
    const chunk = this.buf.subarray(0, this.len);
    this.buf = Buffer.allocUnsafe(this.threshold);
    this.len = 0;
    this.flushes++;
    this.bytes += chunk.length;
    this.sink(chunk);
  }

  /** Flushes synchronously; later pushes are dropped. */
  close(): void {
    this.flush();
    this.closed = true;
  }
}

/** Delivers host input to the consumer, or holds it (bounded) until there is one. */
export class InputDispatcher {
  private cb: ((data: Uint8Array) => void) | undefined;
  private held: Uint8Array[] = [];
  private heldBytes = 0;

  constructor(private readonly holdLimit = DEFAULT_HOLD_BYTES) {}

  set(cb: (data: Uint8Array) => void): void {
    this.cb = cb;
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const d of held) cb(d);
  }

  emit(data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.cb) {
      this.cb(data);
      return;
    }
    const room = this.holdLimit - this.heldBytes;
    if (room <= 0) return;
    const kept = data.slice(0, room);
    this.held.push(kept);
    this.heldBytes += kept.length;
  }

  clear(): void {
    this.cb = undefined;
    this.held = [];
    this.heldBytes = 0;
  }
}
