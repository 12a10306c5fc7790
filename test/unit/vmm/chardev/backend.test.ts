import { describe, it, expect, afterEach } from 'vitest';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import {
  FileBackend,
  MemoryBackend,
  NullBackend,
  OutputBatcher,
  StdioBackend,
  UnixSocketBackend,
  createCharBackend,
  type CharBackend,
} from '../../../../src/vmm/chardev/backend.js';
import { Uart16550a } from '../../../../src/vmm/serial/uart-16550a.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mvisor-chardev-'));
  tmpDirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of tmpDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function uartOn(backend: CharBackend): Uart16550a {
  const log = new MemoryLogger();
  const ctx: DeviceContext = {
    irq: { setIrq: () => {} },
    log,
    guestErrors: new RateLimitedLog(log),
    requestReset: () => {},
    requestPowerOff: () => {},
  };
  const uart = new Uart16550a('com1', ctx, { irq: 4, backend });
  uart.write(3, 1, 0x03); // LCR 8N1
  return uart;
}

function send(uart: Uart16550a, text: string): void {
  for (const b of Buffer.from(text, 'latin1')) uart.write(0, 1, b);
}

function receive(uart: Uart16550a): string {
  const out: number[] = [];
  while (uart.read(5, 1) & 0x01) out.push(uart.read(0, 1));
  return Buffer.from(out).toString('latin1');
}

function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const poll = (): void => {
      if (cond()) resolve();
      else if (Date.now() - start > ms) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

describe('OutputBatcher', () => {
  it('turns many 1-byte writes into few sink calls', async () => {
    const chunks: Buffer[] = [];
    const b = new OutputBatcher((c) => chunks.push(c));
    const data = Buffer.alloc(10_000, 0);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    for (const byte of data) b.push(Uint8Array.of(byte));
    // Flushed synchronously each time 4 KiB accumulate; the rest waits for setImmediate.
    expect(chunks.map((c) => c.length)).toEqual([4096, 4096]);
    expect(b.pending).toBe(10_000 - 8192);
    await tick();
    expect(chunks.length).toBe(3);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
  });

  it('hands over chunks it never reuses, flushes on close and drops later writes', () => {
    const chunks: Buffer[] = [];
    const b = new OutputBatcher((c) => chunks.push(c), 4);
    b.push(Buffer.from('abcdef'));
    b.push(Buffer.from('gh'));
    expect(chunks.map((c) => c.toString())).toEqual(['abcd', 'efgh']);
    b.push(Buffer.from('i'));
    b.close();
    b.push(Buffer.from('j'));
    b.flush();
    expect(chunks.map((c) => c.toString())).toEqual(['abcd', 'efgh', 'i']);
  });
});

describe('MemoryBackend and NullBackend', () => {
  it('collects output and holds injected input until a consumer is set', () => {
    const m = new MemoryBackend();
    const buf = Uint8Array.of(0x61);
    m.write(buf);
    buf[0] = 0x62; // the backend copied it
    m.write(buf);
    expect(m.text()).toBe('ab');
    m.inject('early');
    const got: string[] = [];
    m.onInput((d) => got.push(Buffer.from(d).toString()));
    m.inject(Uint8Array.of(0x21));
    expect(got).toEqual(['early', '!']);
    expect(Buffer.from(m.take()).toString()).toBe('ab');
    expect(m.output().length).toBe(0);
  });

  it('NullBackend swallows everything', () => {
    const n = new NullBackend();
    const uart = uartOn(n);
    send(uart, 'nothing to see');
    expect(uart.read(5, 1)).toBe(0x60);
    uart.close();
  });
});

describe('FileBackend', () => {
  it('writes what the UART sent, batched', async () => {
    const file = path.join(tmpDir(), 'console.log');
    const fb = new FileBackend({ path: file });
    const uart = uartOn(fb);
    send(uart, 'Linux version 6.x\r\n');
    // Nothing reached the file yet: output waits for the next turn of the event loop.
    expect(fs.readFileSync(file, 'latin1')).toBe('');
    await tick();
    expect(fs.readFileSync(file, 'latin1')).toBe('Linux version 6.x\r\n');
    expect(fb.flushCount).toBe(1);
    const big = 'x'.repeat(10_000);
    send(uart, big);
    uart.close(); // flushes synchronously and closes the backend
    expect(fs.readFileSync(file, 'latin1')).toBe('Linux version 6.x\r\n' + big);
    expect(fb.flushCount).toBeLessThanOrEqual(4);
  });

  it('truncates by default and appends on request', () => {
    const file = path.join(tmpDir(), 'out.log');
    fs.writeFileSync(file, 'old\n');
    const t = new FileBackend({ path: file });
    t.write(Buffer.from('new\n'));
    t.close();
    t.close();
    expect(fs.readFileSync(file, 'utf8')).toBe('new\n');
    const a = new FileBackend({ path: file, append: true });
    a.write(Buffer.from('more\n'));
    a.close();
    expect(fs.readFileSync(file, 'utf8')).toBe('new\nmore\n');
  });

  it('throws at construction when the file cannot be opened', () => {
    expect(() => new FileBackend({ path: path.join(tmpDir(), 'no', 'such', 'dir') })).toThrow();
  });
});

class Client {
  readonly sock: net.Socket;
  data = Buffer.alloc(0);
  closed = false;
  constructor(p: string) {
    this.sock = net.createConnection(p);
    this.sock.on('data', (d: Buffer) => (this.data = Buffer.concat([this.data, d])));
    this.sock.on('close', () => (this.closed = true));
    this.sock.on('error', () => {});
  }
  connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
  }
  text(): string {
    return this.data.toString('latin1');
  }
}

describe('UnixSocketBackend', () => {
  it('carries UART output to a client and client input to the UART', async () => {
    const sockPath = path.join(tmpDir(), 'com1.sock');
    const sb = new UnixSocketBackend({ path: sockPath });
    await sb.ready;
    const uart = uartOn(sb);
    send(uart, 'before\n'); // nobody connected: kept
    await tick();
    const c = new Client(sockPath);
    await c.connected();
    await waitFor(() => sb.connected, 'accept');
    send(uart, 'login: ');
    await waitFor(() => c.text() === 'before\nlogin: ', 'output');
    c.sock.write('root\r');
    await waitFor(() => (uart.read(5, 1) & 0x01) !== 0, 'input');
    await new Promise((r) => setTimeout(r, 20));
    expect(receive(uart)).toBe('root\r');
    send(uart, 'bye');
    uart.close(); // flushes synchronously, ends the client, removes the socket
    await waitFor(() => c.closed, 'client close');
    expect(c.text()).toBe('before\nlogin: bye');
    expect(fs.existsSync(sockPath)).toBe(false);
  });

  it('serves one client at a time and takes the next after a disconnect', async () => {
    const sockPath = path.join(tmpDir(), 's.sock');
    const sb = new UnixSocketBackend({ path: sockPath });
    await sb.ready;
    const got: string[] = [];
    sb.onInput((d) => got.push(Buffer.from(d).toString()));
    const a = new Client(sockPath);
    await a.connected();
    await waitFor(() => sb.connected, 'first accept');
    const b = new Client(sockPath);
    await waitFor(() => b.closed, 'second client refused');
    sb.write(Buffer.from('to-a'));
    await waitFor(() => a.text() === 'to-a', 'output to a');
    expect(b.data.length).toBe(0);
    a.sock.end();
    await waitFor(() => !sb.connected, 'disconnect');
    sb.write(Buffer.from('offline'));
    await tick();
    const c = new Client(sockPath);
    await c.connected();
    await waitFor(() => c.text() === 'offline', 'buffered output to c');
    c.sock.write('from-c');
    await waitFor(() => got.join('') === 'from-c', 'input from c');
    sb.close();
    await waitFor(() => c.closed, 'c closed');
  });

  it('keeps the newest 64 KiB of output while no client is connected', async () => {
    const sockPath = path.join(tmpDir(), 'b.sock');
    const sb = new UnixSocketBackend({ path: sockPath });
    await sb.ready;
    const data = Buffer.alloc(100 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    for (let i = 0; i < data.length; i += 1000) sb.write(data.subarray(i, i + 1000));
    await tick();
    expect(sb.dropped).toBe(data.length - 64 * 1024);
    const c = new Client(sockPath);
    await c.connected();
    await waitFor(() => c.data.length >= 64 * 1024, 'buffered output');
    await new Promise((r) => setTimeout(r, 20));
    expect(c.data.equals(data.subarray(data.length - 64 * 1024))).toBe(true);
    sb.close();
    await waitFor(() => c.closed, 'closed');
  });

  it('replaces a stale socket but refuses to remove another kind of file', async () => {
    const dir = tmpDir();
    const sockPath = path.join(dir, 'stale.sock');
    // Leave a socket file behind without a listener.
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(sockPath, r));
    // libuv unlinks the socket path when the server closes: move it out of the way first.
    fs.renameSync(sockPath, sockPath + '.tmp');
    await new Promise<void>((r) => srv.close(() => r()));
    fs.renameSync(sockPath + '.tmp', sockPath);
    expect(fs.lstatSync(sockPath).isSocket()).toBe(true);
    const sb = new UnixSocketBackend({ path: sockPath });
    await sb.ready;
    const c = new Client(sockPath);
    await c.connected();
    sb.close();
    const regular = path.join(dir, 'regular');
    fs.writeFileSync(regular, 'keep me');
    expect(() => new UnixSocketBackend({ path: regular })).toThrow(/not a socket/);
    expect(fs.readFileSync(regular, 'utf8')).toBe('keep me');
  });
});

class FakeTtyIn extends EventEmitter {
  isTTY = true;
  isRaw = false;
  readonly modes: boolean[] = [];
  paused = true;
  setRawMode(mode: boolean): this {
    this.isRaw = mode;
    this.modes.push(mode);
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  pause(): this {
    this.paused = true;
    return this;
  }
  type(bytes: number[] | string): void {
    this.emit('data', typeof bytes === 'string' ? Buffer.from(bytes) : Buffer.from(bytes));
  }
}

class FakeOut extends EventEmitter {
  readonly chunks: Buffer[] = [];
  write(chunk: Uint8Array): boolean {
    this.chunks.push(Buffer.from(chunk));
    return true;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }
}

type Listener = (...args: never[]) => unknown;

function newListeners(event: 'exit' | NodeJS.Signals, before: readonly Listener[]): Listener[] {
  return (process.listeners(event as NodeJS.Signals) as Listener[]).filter((l) => !before.includes(l));
}

describe('StdioBackend', () => {
  it('puts a TTY in raw mode and restores it on close', () => {
    const input = new FakeTtyIn();
    const output = new FakeOut();
    const exitBefore = process.listenerCount('exit');
    const sb = new StdioBackend({ input, output });
    expect(input.modes).toEqual([true]);
    expect(input.paused).toBe(false);
    expect(process.listenerCount('exit')).toBe(exitBefore + 1);
    sb.close();
    expect(input.modes).toEqual([true, false]);
    expect(input.paused).toBe(true);
    expect(process.listenerCount('exit')).toBe(exitBefore);
    sb.close();
    expect(input.modes).toEqual([true, false]);
  });

  it('restores the terminal from its process exit and signal handlers', () => {
    const input = new FakeTtyIn();
    const exitBefore = process.listeners('exit') as Listener[];
    const hupBefore = process.listeners('SIGHUP') as Listener[];
    const sb = new StdioBackend({ input, output: new FakeOut() });
    const [onExit] = newListeners('exit', exitBefore);
    expect(onExit).toBeTypeOf('function');
    (onExit as unknown as () => void)();
    expect(input.modes).toEqual([true, false]);
    sb.close();

    const input2 = new FakeTtyIn();
    const other = (): void => {}; // someone else handles SIGHUP: no re-raise
    process.on('SIGHUP', other);
    const sb2 = new StdioBackend({ input: input2, output: new FakeOut() });
    const [onHup] = newListeners('SIGHUP', [...hupBefore, other]);
    (onHup as unknown as (s: NodeJS.Signals) => void)('SIGHUP');
    expect(input2.modes).toEqual([true, false]);
    sb2.close();
    process.removeListener('SIGHUP', other);
    expect(process.listeners('SIGHUP')).toEqual(hupBefore);
  });

  it('handles Ctrl-A escapes like QEMU', () => {
    const input = new FakeTtyIn();
    const output = new FakeOut();
    let quits = 0;
    const sb = new StdioBackend({ input, output, onQuit: () => quits++ });
    const got: number[] = [];
    sb.onInput((d) => got.push(...d));
    input.type([0x68, 0x69, 0x03]); // "hi", Ctrl-C goes to the guest
    input.type([0x01, 0x01]); // Ctrl-A Ctrl-A -> one Ctrl-A
    input.type([0x01]); // escape split across reads
    input.type([0x71]); // unknown command: dropped
    input.type([0x01, 0x68]); // help
    expect(output.text()).toContain('C-A x');
    expect(quits).toBe(0);
    input.type([0x6f, 0x6b, 0x01, 0x78, 0x7a]); // "ok", Ctrl-A x, rest ignored
    expect(quits).toBe(1);
    expect(got).toEqual([0x68, 0x69, 0x03, 0x01, 0x6f, 0x6b]);
    sb.close();
  });

  it('passes bytes through untouched when the input is not a TTY', () => {
    const input = new FakeTtyIn();
    input.isTTY = false;
    let quits = 0;
    const sb = new StdioBackend({ input, output: new FakeOut(), onQuit: () => quits++ });
    const got: number[] = [];
    sb.onInput((d) => got.push(...d));
    input.type([0x01, 0x78]);
    expect(got).toEqual([0x01, 0x78]);
    expect(quits).toBe(0);
    expect(input.modes).toEqual([]);
    sb.close();
  });

  it('batches UART output into few writes and flushes on close', async () => {
    const input = new FakeTtyIn();
    const output = new FakeOut();
    const sb = new StdioBackend({ input, output });
    const uart = uartOn(sb);
    send(uart, 'a'.repeat(1000));
    expect(output.chunks.length).toBe(0);
    await tick();
    expect(output.chunks.length).toBe(1);
    send(uart, 'tail');
    uart.close();
    expect(output.text()).toBe('a'.repeat(1000) + 'tail');
    expect(output.chunks.length).toBe(2);
  });
});

describe('createCharBackend', () => {
  it('builds backends from a spec', () => {
    expect(createCharBackend({ kind: 'null' })).toBeInstanceOf(NullBackend);
    const file = path.join(tmpDir(), 'f.log');
    const fb = createCharBackend({ kind: 'file', path: file });
    expect(fb).toBeInstanceOf(FileBackend);
    fb.close();
  });
});
