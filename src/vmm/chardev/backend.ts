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
 * Implementations: `StdioBackend` (terminal, with QEMU's Ctrl-A escapes;
 * in stdio.ts), `FileBackend` (output only), `UnixSocketBackend` (server,
 * one client at a time), `NullBackend` and `MemoryBackend` (tests). The
 * interface and the shared batching/input parts are in base.ts; everything
 * is re-exported here.
 */
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { lazyNet } from '../../common/builtins.js';
import type { Logger } from '../core/log.js';
import { DEFAULT_HOLD_BYTES, InputDispatcher, OutputBatcher, type CharBackend } from './base.js';
import { StdioBackend } from './stdio.js';

export { DEFAULT_HOLD_BYTES, OUTPUT_FLUSH_BYTES, OutputBatcher, type CharBackend } from './base.js';
export { StdioBackend, type StdioBackendOptions, type StdioInput, type StdioOutput } from './stdio.js';

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
    this.server = lazyNet().createServer((sock) => this.accept(sock));
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
