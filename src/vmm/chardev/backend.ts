/**
 * Character backends: the host side of a serial port (or any byte-stream
 * device). A device writes guest output with `write()` and receives host
 * input through the callback given to `onInput()`.
 *
 * Guests transmit one byte per port write, so every backend that costs a
 * syscall per write batches its output (`OutputBatcher`): bytes are
 * gathered into a 4 KiB buffer that is flushed when full, on the next turn
 * of the event loop (setImmediate), or synchronously in `close()`.
 *
 * Implementations: `StdioBackend` (terminal, with QEMU's Ctrl-A escapes),
 * `FileBackend` (output only), `UnixSocketBackend` (server, one client at a
 * time), `NullBackend` and `MemoryBackend` (tests).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { EventEmitter } from 'node:events';
import type { Logger } from '../core/log.js';

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
class InputDispatcher {
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

/** Discards output; never produces input. */
export class NullBackend implements CharBackend {
  write(_data: Uint8Array): void {}
  onInput(_cb: (data: Uint8Array) => void): void {}
  close(): void {}
}

/** Keeps output in memory and lets a test inject input. No batching: writes are visible at once. */
export class MemoryBackend implements CharBackend {
  private chunks: Uint8Array[] = [];
  private readonly input = new InputDispatcher(Number.MAX_SAFE_INTEGER);
  /** Number of write() calls. */
  writeCalls = 0;
  closed = false;

  write(data: Uint8Array): void {
    if (this.closed) return;
    this.writeCalls++;
    this.chunks.push(data.slice());
  }

  onInput(cb: (data: Uint8Array) => void): void {
    this.input.set(cb);
  }

  /** Delivers host input to the consumer (strings are sent as UTF-8). */
  inject(data: Uint8Array | string): void {
    this.input.emit(typeof data === 'string' ? new Uint8Array(Buffer.from(data, 'utf8')) : data.slice());
  }

  /** Everything written so far. */
  output(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.chunks));
  }

  /** Everything written so far, decoded (UTF-8 by default; 'latin1' keeps bytes 1:1). */
  text(encoding: BufferEncoding = 'utf8'): string {
    return Buffer.concat(this.chunks).toString(encoding);
  }

  /** Returns what was written and forgets it. */
  take(): Uint8Array {
    const out = this.output();
    this.chunks = [];
    return out;
  }

  close(): void {
    this.closed = true;
    this.input.clear();
  }
}

/** Writes all of `chunk` to `fd`, retrying short writes. */
function writeAllSync(fd: number, chunk: Uint8Array): void {
  let off = 0;
  while (off < chunk.length) {
    off += fs.writeSync(fd, chunk, off, chunk.length - off);
  }
}

export interface FileBackendOptions {
  path: string;
  /** Append to an existing file instead of truncating it (default false). */
  append?: boolean;
  log?: Logger;
}

/** Output to a file (a console log). Produces no input. Opening fails in the constructor. */
export class FileBackend implements CharBackend {
  private fd: number | undefined;
  private readonly batcher: OutputBatcher;
  private failed = false;

  constructor(private readonly opts: FileBackendOptions) {
    this.fd = fs.openSync(opts.path, opts.append ? 'a' : 'w', 0o644);
    this.batcher = new OutputBatcher((chunk) => this.sink(chunk));
  }

  /** Chunks written to the file so far (each one write(2)). */
  get flushCount(): number {
    return this.batcher.flushes;
  }

  private sink(chunk: Buffer): void {
    if (this.fd === undefined || this.failed) return;
    try {
      writeAllSync(this.fd, chunk);
    } catch (e) {
      // A full disk must not take the VM down: report once, then drop output.
      this.failed = true;
      this.opts.log?.error(
        `${this.opts.path}: ${(e as Error).message}; console output is dropped from now on`,
      );
    }
  }

  write(data: Uint8Array): void {
    this.batcher.push(data);
  }

  onInput(_cb: (data: Uint8Array) => void): void {}

  close(): void {
    if (this.fd === undefined) return;
    this.batcher.close();
    const fd = this.fd;
    this.fd = undefined;
    fs.closeSync(fd);
  }
}

export interface UnixSocketBackendOptions {
  /** Socket path. A stale socket there is replaced; any other kind of file is an error. */
  path: string;
  /**
   * Output kept while no client is connected, delivered when one connects;
   * the newest bytes are kept. Default 64 KiB; 0 drops such output.
   */
  bufferLimit?: number;
  /** Output dropped instead of queued when a connected client has this much unread (default 1 MiB). */
  clientBacklogLimit?: number;
  log?: Logger;
}

/**
 * A Unix socket server: one client at a time (later clients are refused
 * while one is connected, as QEMU's `server=on` does); its input goes to
 * the device and device output goes to it.
 */
export class UnixSocketBackend implements CharBackend {
  /** Resolves once the socket is listening; rejects if it cannot listen. */
  readonly ready: Promise<void>;
  private readonly server: net.Server;
  private client: net.Socket | undefined;
  private readonly batcher: OutputBatcher;
  private readonly input = new InputDispatcher();
  private offline: Buffer[] = [];
  private offlineBytes = 0;
  private closed = false;
  private listening = false;
  private readonly bufferLimit: number;
  private readonly backlogLimit: number;
  /** Output bytes dropped (offline buffer full or client backlog too large). */
  dropped = 0;

  constructor(private readonly opts: UnixSocketBackendOptions) {
    this.bufferLimit = opts.bufferLimit ?? DEFAULT_HOLD_BYTES;
    this.backlogLimit = opts.clientBacklogLimit ?? 1024 * 1024;
    removeStaleSocket(opts.path);
    this.batcher = new OutputBatcher((chunk) => this.sink(chunk));
    this.server = net.createServer((sock) => this.accept(sock));
    this.ready = new Promise<void>((resolve, reject) => {
      this.server.once('listening', () => {
        this.listening = true;
        resolve();
      });
      this.server.once('error', reject);
    });
    // Errors after listening are logged; an unobserved failed `ready` must not crash the process.
    this.ready.catch((e: Error) => this.opts.log?.error(`${opts.path}: ${e.message}`));
    this.server.on('error', (e) => {
      if (this.listening) this.opts.log?.error(`${opts.path}: ${e.message}`);
    });
    this.server.listen(opts.path);
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  /** Chunks handed to the client or offline buffer so far. */
  get flushCount(): number {
    return this.batcher.flushes;
  }

  private accept(sock: net.Socket): void {
    if (this.closed || this.client) {
      this.opts.log?.info(`${this.opts.path}: refusing a second client`);
      sock.destroy();
      return;
    }
    this.client = sock;
    sock.on('data', (d: Buffer) => this.input.emit(new Uint8Array(d.buffer, d.byteOffset, d.length)));
    sock.on('error', (e) => this.opts.log?.debug(`${this.opts.path}: client: ${e.message}`));
    sock.on('close', () => {
      if (this.client === sock) this.client = undefined;
    });
    const held = this.offline;
    this.offline = [];
    this.offlineBytes = 0;
    for (const chunk of held) sock.write(chunk);
  }

  private sink(chunk: Buffer): void {
    const c = this.client;
    if (c && !c.destroyed) {
      if (c.writableLength > this.backlogLimit) {
        this.dropped += chunk.length;
        return;
      }
      c.write(chunk);
      return;
    }
    this.keepOffline(chunk);
  }

  private keepOffline(chunk: Buffer): void {
    if (this.bufferLimit <= 0) {
      this.dropped += chunk.length;
      return;
    }
    if (chunk.length >= this.bufferLimit) {
      this.dropped += this.offlineBytes + chunk.length - this.bufferLimit;
      this.offline = [chunk.subarray(chunk.length - this.bufferLimit)];
      this.offlineBytes = this.bufferLimit;
      return;
    }
    this.offline.push(chunk);
    this.offlineBytes += chunk.length;
    while (this.offlineBytes > this.bufferLimit) {
      const excess = this.offlineBytes - this.bufferLimit;
      const first = this.offline[0]!;
      if (first.length <= excess) {
        this.offline.shift();
        this.offlineBytes -= first.length;
        this.dropped += first.length;
      } else {
        this.offline[0] = first.subarray(excess);
        this.offlineBytes -= excess;
        this.dropped += excess;
      }
    }
  }

  write(data: Uint8Array): void {
    this.batcher.push(data);
  }

  onInput(cb: (data: Uint8Array) => void): void {
    this.input.set(cb);
  }

  close(): void {
    if (this.closed) return;
    this.batcher.close();
    this.closed = true;
    this.input.clear();
    const c = this.client;
    this.client = undefined;
    if (c) {
      // end() lets queued output drain; a client that never reads is cut off after a second.
      c.end();
      setTimeout(() => c.destroy(), 1000).unref();
    }
    this.server.close();
    if (this.listening) {
      try {
        fs.unlinkSync(this.opts.path);
      } catch {
        // already gone
      }
    }
  }
}

function removeStaleSocket(path: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path}: exists and is not a socket`);
  fs.unlinkSync(path);
}

/** The parts of process.stdin StdioBackend uses (a fake one in tests). */
export interface StdioInput extends EventEmitter {
  isTTY?: boolean;
  isRaw?: boolean;
  setRawMode?(mode: boolean): unknown;
  resume(): unknown;
  pause(): unknown;
}

/** The parts of process.stdout StdioBackend uses. */
export interface StdioOutput extends EventEmitter {
  write(chunk: Uint8Array): boolean;
}

export interface StdioBackendOptions {
  /** Default process.stdin. */
  input?: StdioInput;
  /** Default process.stdout. */
  output?: StdioOutput;
  /** Called on Ctrl-A x. */
  onQuit?: () => void;
  /** Put a TTY input in raw mode (default true). */
  raw?: boolean;
  /** Interpret Ctrl-A escapes (default: when the input is a TTY). */
  escapes?: boolean;
  /** The escape character (default 0x01, Ctrl-A). */
  escapeChar?: number;
  log?: Logger;
}

const terminationSignals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

/**
 * The VMM's own terminal. A TTY input is put in raw mode (so Ctrl-C reaches
 * the guest) and restored on close(), on process exit and on termination
 * signals. Escapes as in QEMU's `-serial mon:stdio`: Ctrl-A x quits (calls
 * onQuit), Ctrl-A Ctrl-A sends a Ctrl-A, Ctrl-A h prints help; any other
 * character after Ctrl-A is dropped.
 */
export class StdioBackend implements CharBackend {
  private readonly in: StdioInput;
  private readonly out: StdioOutput;
  private readonly batcher: OutputBatcher;
  private readonly dispatcher = new InputDispatcher();
  private readonly escapes: boolean;
  private readonly escapeChar: number;
  private sawEscape = false;
  private rawSet = false;
  private wasRaw = false;
  private reading = false;
  private closed = false;
  private outputBroken = false;

  private readonly onData = (d: Buffer | string): void =>
    this.handleInput(typeof d === 'string' ? Buffer.from(d) : d);
  private readonly onOutputError = (e: Error): void => {
    if (!this.outputBroken) this.opts.log?.warn(`stdio: output: ${e.message}`);
    this.outputBroken = true;
  };
  private readonly onExit = (): void => this.restoreTerminal();
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    this.restoreTerminal();
    // Our listener replaced the default action; if nobody else handles the
    // signal, get out of the way and re-raise it so the process still dies.
    if (process.listenerCount(sig) === 1) {
      this.removeProcessHandlers();
      process.kill(process.pid, sig);
    }
  };

  constructor(private readonly opts: StdioBackendOptions = {}) {
    this.in = opts.input ?? process.stdin;
    this.out = opts.output ?? process.stdout;
    const tty = this.in.isTTY === true;
    this.escapes = opts.escapes ?? tty;
    this.escapeChar = opts.escapeChar ?? 0x01;
    this.batcher = new OutputBatcher((chunk) => this.sink(chunk));
    this.out.on('error', this.onOutputError);
    if (tty && (opts.raw ?? true) && this.in.setRawMode) {
      this.wasRaw = this.in.isRaw === true;
      this.in.setRawMode(true);
      this.rawSet = true;
      process.on('exit', this.onExit);
      for (const s of terminationSignals) process.on(s, this.onSignal);
    }
    this.in.on('data', this.onData);
    this.in.resume();
    this.reading = true;
  }

  /** Chunks written to the output so far. */
  get flushCount(): number {
    return this.batcher.flushes;
  }

  private sink(chunk: Buffer): void {
    if (this.outputBroken) return;
    try {
      this.out.write(chunk);
    } catch (e) {
      this.onOutputError(e as Error);
    }
  }

  private handleInput(data: Uint8Array): void {
    if (this.closed) return;
    if (!this.escapes) {
      this.dispatcher.emit(new Uint8Array(data));
      return;
    }
    const fwd: number[] = [];
    for (const b of data) {
      if (this.sawEscape) {
        this.sawEscape = false;
        if (b === this.escapeChar) {
          fwd.push(b);
        } else if (b === 0x78 || b === 0x58) {
          // 'x' / 'X'
          if (fwd.length) this.dispatcher.emit(Uint8Array.from(fwd));
          this.opts.onQuit?.();
          return;
        } else if (b === 0x68 || b === 0x3f) {
          // 'h' / '?'
          this.printHelp();
        }
      } else if (b === this.escapeChar) {
        this.sawEscape = true;
      } else {
        fwd.push(b);
      }
    }
    if (fwd.length) this.dispatcher.emit(Uint8Array.from(fwd));
  }

  private printHelp(): void {
    const key = String.fromCharCode(0x40 + this.escapeChar);
    this.batcher.flush();
    this.sink(
      Buffer.from(
        `\r\nC-${key} h    print this help\r\nC-${key} x    exit\r\nC-${key} C-${key}  send C-${key}\r\n`,
        'latin1',
      ),
    );
  }

  write(data: Uint8Array): void {
    this.batcher.push(data);
  }

  onInput(cb: (data: Uint8Array) => void): void {
    this.dispatcher.set(cb);
  }

  private restoreTerminal(): void {
    if (!this.rawSet) return;
    this.rawSet = false;
    try {
      this.in.setRawMode?.(this.wasRaw);
    } catch {
      // the terminal is gone
    }
  }

  private removeProcessHandlers(): void {
    process.removeListener('exit', this.onExit);
    for (const s of terminationSignals) process.removeListener(s, this.onSignal);
  }

  close(): void {
    if (this.closed) return;
    this.batcher.close();
    this.closed = true;
    this.dispatcher.clear();
    if (this.reading) {
      this.in.removeListener('data', this.onData);
      this.in.pause();
      this.reading = false;
    }
    this.restoreTerminal();
    this.removeProcessHandlers();
    this.out.removeListener('error', this.onOutputError);
  }
}

/** A backend described by data (what the machine builds from its configuration). */
export type CharBackendSpec =
  | { kind: 'null' }
  | { kind: 'stdio'; onQuit?: () => void }
  | { kind: 'file'; path: string; append?: boolean }
  | { kind: 'unix'; path: string; bufferLimit?: number };

export function createCharBackend(spec: CharBackendSpec, log?: Logger): CharBackend {
  switch (spec.kind) {
    case 'null':
      return new NullBackend();
    case 'stdio':
      return new StdioBackend({ onQuit: spec.onQuit, log });
    case 'file':
      return new FileBackend({ path: spec.path, append: spec.append, log });
    case 'unix':
      return new UnixSocketBackend({ path: spec.path, bufferLimit: spec.bufferLimit, log });
  }
}
