/**
 * The stdio character backend: the VMM's own terminal (a TTY input in raw
 * mode until close), with QEMU's Ctrl-A escapes. Re-exported by backend.ts.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from '../core/log.js';
import { InputDispatcher, OutputBatcher, type CharBackend } from './base.js';

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
