/**
 * The VMM's control socket: a Unix socket speaking newline-delimited JSON,
 * one request object per line, one response per request, in order:
 *   {"cmd":"status"}    → {"ok":true,"state":"running",...}
 *   {"cmd":"stop"}      → stops the VM now (exit code 0)
 *   {"cmd":"powerdown"} → presses the ACPI power button (an error if the guest
 *                       has not enabled it: no ACPI OS is listening); wakes a
 *                       guest suspended to RAM (status "suspended")
 *   {"cmd":"pause"} / {"cmd":"resume"} / {"cmd":"vcpus"}
 * An optional "id" is echoed back. The engine (mvctl apply, destroy) uses
 * it; it is also handy with `socat - UNIX-CONNECT:path`. Bad requests get
 * {"ok":false,"error":...}, never a crash.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import type { Logger } from './core/log.js';

export type ControlRequest = { id?: unknown; cmd?: unknown };
export type ControlResponse = { id?: unknown; ok: boolean; error?: string; [k: string]: unknown };

export interface ControlHandlers {
  status(): Record<string, unknown>;
  stop(): void;
  powerdown(): Promise<string | undefined> | string | undefined;
  pause(): Promise<void>;
  resume(): void;
  vcpus(): Promise<string[]>;
}

const MAX_LINE = 64 * 1024;

export class ControlServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(
    readonly path: string,
    private readonly handlers: ControlHandlers,
    private readonly log: Logger,
  ) {}

  listen(): Promise<void> {
    if (existsSync(this.path)) {
      if (!lstatSync(this.path).isSocket()) throw new Error(`${this.path}: exists and is not a socket`);
      unlinkSync(this.path);
    }
    const server = createServer((s) => this.serve(s));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => {
        server.off('error', reject);
        server.unref();
        resolve();
      });
    });
  }

  private serve(sock: Socket): void {
    this.sockets.add(sock);
    sock.unref();
    sock.setEncoding('utf8');
    let buf = '';
    let chain = Promise.resolve();
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_LINE && !buf.includes('\n')) {
        sock.end(JSON.stringify({ ok: false, error: 'request line too long' }) + '\n');
        buf = '';
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        chain = chain.then(async () => {
          const res = await this.handle(line);
          if (!sock.destroyed) sock.write(JSON.stringify(res) + '\n');
        });
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => this.sockets.delete(sock));
  }

  private async handle(line: string): Promise<ControlResponse> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
      if (typeof req !== 'object' || req === null) throw new Error('not an object');
    } catch {
      return { ok: false, error: 'request is not a JSON object' };
    }
    const id = req.id;
    try {
      switch (req.cmd) {
        case 'status':
          return { id, ok: true, ...this.handlers.status() };
        case 'stop':
          setImmediate(() => this.handlers.stop());
          return { id, ok: true };
        case 'powerdown': {
          const err = await this.handlers.powerdown();
          return err ? { id, ok: false, error: err } : { id, ok: true };
        }
        case 'pause':
          await this.handlers.pause();
          return { id, ok: true };
        case 'resume':
          this.handlers.resume();
          return { id, ok: true };
        case 'vcpus':
          return { id, ok: true, vcpus: await this.handlers.vcpus() };
        default:
          return {
            id,
            ok: false,
            error: `unknown command ${JSON.stringify(req.cmd)} (status, stop, powerdown, pause, resume, vcpus)`,
          };
      }
    } catch (e) {
      this.log.warn(`control: ${String(req.cmd)}: ${(e as Error).message}`);
      return { id, ok: false, error: (e as Error).message };
    }
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server?.close();
    try {
      if (existsSync(this.path)) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}
