/**
 * A newline-delimited JSON client for the benches: mvisor's control socket
 * and QEMU's QMP (which also sends events, skipped by `skip`). Not the
 * engine's client (src/engine/apply/control-client.ts): that one speaks only
 * mvisor's protocol, one request per connection.
 */
import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';

/** A newline-delimited JSON client that answers requests in order. */
export class JsonLines {
  private buf = '';
  private readonly waiting: ((v: Record<string, unknown> | undefined) => void)[] = [];
  private constructor(
    private readonly sock: Socket,
    private readonly skip: (m: Record<string, unknown>) => boolean,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        let m: Record<string, unknown>;
        try {
          m = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (!this.skip(m)) this.waiting.shift()?.(m);
      }
    });
    const fail = () => this.waiting.splice(0).forEach((w) => w(undefined));
    sock.on('close', fail);
    sock.on('error', fail);
  }

  /** Connects to `path` once it exists, retrying until `deadline` (ms since the epoch). */
  static async open(
    path: string,
    deadline: number,
    skip: (m: Record<string, unknown>) => boolean,
    alive: () => boolean,
  ): Promise<JsonLines | undefined> {
    while (Date.now() < deadline && alive()) {
      if (existsSync(path)) {
        const sock = await new Promise<Socket | undefined>((res) => {
          const s = connect(path);
          s.once('connect', () => res(s));
          s.once('error', () => res(undefined));
        });
        if (sock) {
          sock.unref();
          return new JsonLines(sock, skip);
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return undefined;
  }

  request(msg: unknown): Promise<Record<string, unknown> | undefined> {
    if (this.sock.destroyed) return Promise.resolve(undefined);
    return new Promise((res) => {
      this.waiting.push(res);
      this.sock.write(JSON.stringify(msg) + '\n');
    });
  }

  /** Waits for the next message (QMP's greeting). */
  next(): Promise<Record<string, unknown> | undefined> {
    return new Promise((res) => this.waiting.push(res));
  }

  close(): void {
    this.sock.destroy();
  }
}
