/**
 * The VMM's control socket: a Unix socket speaking the control protocol
 * (src/platform/control-protocol.ts: newline-delimited JSON, versioned), one
 * request object per line, one response per request, in order:
 *   {"cmd":"status"}    → {"ok":true,"state":"running",...}
 *   {"cmd":"stop"}      → stops the VM now (exit code 0)
 *   {"cmd":"powerdown"} → presses the ACPI power button (an error if the guest
 *                       has not enabled it: no ACPI OS is listening); wakes a
 *                       guest suspended to RAM (status "suspended")
 *   {"cmd":"pause"} / {"cmd":"resume"} / {"cmd":"vcpus"}
 *   {"cmd":"snapshot","file":"/abs/new-file","then":"resume"|"stop"}
 *   {"cmd":"snapshot","socket":"/abs/socket","then":"stop"} (to `mvisor --incoming unix:PATH`)
 *   {"cmd":"restore","file":"/abs/file"} → the running VM goes back to that snapshot
 *                     → writes the VM (state and RAM) to a new file: {"ok":true,"pausedMs":...}
 * An optional "id" is echoed back. The engine (mvctl apply, destroy) uses
 * it; it is also handy with `socat - UNIX-CONNECT:path`. Bad requests get
 * {"ok":false,"error":...}, never a crash.
 */
import type { Server, Socket } from 'node:net';
import { lazyNet } from '../common/builtins.js';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import type { Logger } from './core/log.js';
import type { SnapshotTarget } from './snapshot/machine-snapshot.js';
import {
  CONTROL_PROTOCOL_VERSION as v,
  parseControlRequest,
  type ControlCommand,
  type ControlResponse,
  type RestoreResult,
  type SnapshotResult,
  type VmStatus,
} from '../platform/control-protocol.js';

export interface ControlHandlers {
  status(): Omit<VmStatus, 'pid'> & { pid: number };
  stop(): void;
  powerdown(): Promise<string | undefined> | string | undefined;
  pause(): Promise<void>;
  resume(): void;
  vcpus(): Promise<string[]>;
  snapshot(to: SnapshotTarget, then: 'resume' | 'stop'): Promise<SnapshotResult>;
  restore(file: string): Promise<RestoreResult>;
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
    const server = lazyNet().createServer((s) => this.serve(s));
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
        sock.end(JSON.stringify({ v, ok: false, error: 'request line too long' }) + '\n');
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
    const req = parseControlRequest(line);
    if ('error' in req) return { ...req, v, ok: false };
    const id = req.id === undefined ? {} : { id: req.id };
    const cmd: ControlCommand = req.cmd;
    try {
      switch (cmd) {
        case 'status':
          return { ...this.handlers.status(), ...id, v, ok: true };
        case 'stop':
          setImmediate(() => this.handlers.stop());
          return { ...id, v, ok: true };
        case 'powerdown': {
          const err = await this.handlers.powerdown();
          return err ? { ...id, v, ok: false, error: err } : { ...id, v, ok: true };
        }
        case 'pause':
          await this.handlers.pause();
          return { ...id, v, ok: true };
        case 'resume':
          this.handlers.resume();
          return { ...id, v, ok: true };
        case 'vcpus':
          return { ...id, v, ok: true, vcpus: await this.handlers.vcpus() };
        case 'restore':
          return { ...id, v, ok: true, ...(await this.handlers.restore(req.file!)) };
        case 'snapshot':
          return {
            ...id,
            v,
            ok: true,
            ...(await this.handlers.snapshot(
              req.socket !== undefined ? { socket: req.socket } : { file: req.file! },
              req.then ?? 'resume',
            )),
          };
      }
    } catch (e) {
      this.log.warn(`control: ${cmd}: ${(e as Error).message}`);
      return { ...id, v, ok: false, error: (e as Error).message };
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
