/**
 * The snapshot as a stream over a Unix socket: the control request
 * `snapshot {socket}` sends the VM to a VMM started with `mvisor --incoming
 * unix:PATH` (QEMU's `-incoming`), which restores it and runs it; the
 * sender stops. The same state as a snapshot file (./snapshot-file.ts); the
 * RAM goes as records of non-zero pages, since a socket has no holes:
 *
 *   "MVISOR-STREAM\n"  then one JSON line {format, stateBytes, ramBytes}
 *   the state          stateBytes of UTF-8 JSON
 *   RAM records        offset (u64 LE, page-aligned, ascending), length
 *                      (u64 LE, whole pages), then the bytes; pages not sent
 *                      are zero
 *   the end            a record of length 0
 *
 * The receiver answers "received\n" once it holds everything; only then
 * does the sender report success. A stream cut short, out of order or
 * larger than the VM is refused naming the socket, before the guest runs.
 * Written here: the format is ours, and Node's streams give the rest.
 */
import type { Server, Socket } from 'node:net';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { lazyNet } from '../../common/builtins.js';
import { RAM_FILE_PAGE, checkedSize, dataRuns } from './ram-file.js';
import {
  MAX_STATE_BYTES,
  SNAPSHOT_FORMAT,
  SnapshotFileError,
  type SnapshotReader,
  type SnapshotWriter,
} from './snapshot-file.js';

export const STREAM_MAGIC = 'MVISOR-STREAM\n';
const ACK = 'received\n';
const RECORD_HEAD = 16;
/** RAM is sent and copied in pieces of at most this many bytes. */
const PIECE = 4 << 20;
/** The longest preamble line a receiver accepts. */
const MAX_LINE = 4096;

/** Waits until `s` can take more (or failed). */
function drained(s: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (e?: Error) => {
      s.off('drain', done);
      s.off('error', done);
      s.off('close', closed);
      if (e) reject(e);
      else resolve();
    };
    const closed = () => done(new Error('the receiver closed the connection'));
    s.once('drain', done);
    s.once('error', done);
    s.once('close', closed);
  });
}

async function send(s: Socket, b: Uint8Array): Promise<void> {
  if (s.destroyed) throw new Error('the receiver closed the connection');
  if (!s.write(b)) await drained(s);
}

/**
 * Connects to the receiving VMM's socket `path` (before the VM is paused:
 * nobody listening is refused at once) and returns a writer of the snapshot.
 */
export async function connectSnapshotSocket(path: string, timeoutMs = 10_000): Promise<SnapshotWriter> {
  const net = lazyNet();
  const s: Socket = await new Promise((resolve, reject) => {
    const c = net.createConnection(path);
    const timer = setTimeout(() => {
      c.destroy();
      reject(new SnapshotFileError(`${path}: no VMM accepted the connection in ${timeoutMs} ms`));
    }, timeoutMs);
    c.once('connect', () => {
      clearTimeout(timer);
      c.off('error', failed);
      resolve(c);
    });
    const failed = (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new SnapshotFileError(
          `${path}: ${e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'no VMM is waiting there (mvisor --incoming unix:PATH)' : e.message}`,
        ),
      );
    };
    c.once('error', failed);
  });
  let answer = '';
  const acked = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      answer += d.toString('latin1');
      if (answer.includes(ACK)) resolve();
      if (answer.length > 64) reject(new Error('the receiver answered something else'));
    });
    s.once('close', () =>
      reject(new Error(`the receiver closed the connection${answer ? `: ${answer.trim()}` : ''}`)),
    );
    s.once('error', reject);
  });
  acked.catch(() => undefined); // awaited in write()
  return {
    async write(state, ram) {
      try {
        const stateBytes = Buffer.from(JSON.stringify(state), 'utf8');
        const ramBytes = checkedSize(path, ram);
        const pre = { format: SNAPSHOT_FORMAT, stateBytes: stateBytes.length, ramBytes };
        let bytes = 0;
        const out = async (b: Uint8Array) => {
          bytes += b.length;
          await send(s, b);
        };
        await out(Buffer.from(`${STREAM_MAGIC}${JSON.stringify(pre)}\n`, 'utf8'));
        await out(stateBytes);
        let base = 0;
        let ramDataBytes = 0;
        for (const r of ram) {
          for (const [start, end] of dataRuns(r, PIECE)) {
            const head = Buffer.alloc(RECORD_HEAD);
            head.writeBigUInt64LE(BigInt(base + start), 0);
            head.writeBigUInt64LE(BigInt(end - start), 8);
            await out(head);
            await out(r.subarray(start, end));
            ramDataBytes += end - start;
          }
          base += r.length;
        }
        await out(Buffer.alloc(RECORD_HEAD));
        await acked;
        return { size: bytes, ramDataBytes };
      } catch (e) {
        throw new SnapshotFileError(`${path}: ${(e as Error).message}`);
      } finally {
        s.destroy();
      }
    },
    discard() {
      s.destroy();
    },
  };
}

/** Reads exactly `n` bytes from `s`; a stream that ends first is refused. */
async function readExactly(s: Socket, n: number, what: string): Promise<Buffer> {
  if (n === 0) return Buffer.alloc(0);
  for (;;) {
    const b = s.read(n) as Buffer | null;
    if (b !== null) {
      if (b.length < n) throw new SnapshotFileError(`${what}: the stream ended early`);
      return b;
    }
    if (s.readableEnded || s.destroyed) throw new SnapshotFileError(`${what}: the stream ended early`);
    await new Promise<void>((resolve) => {
      const done = () => {
        s.off('readable', done);
        s.off('end', done);
        s.off('close', done);
        resolve();
      };
      s.once('readable', done);
      s.once('end', done);
      s.once('close', done);
    });
  }
}

/** Reads the line that ends with "\n", at most MAX_LINE bytes. */
async function readLine(s: Socket, what: string): Promise<string> {
  let line = '';
  while (!line.endsWith('\n')) {
    if (line.length >= MAX_LINE) throw new SnapshotFileError(`${what}: not an mvisor snapshot stream`);
    line += (await readExactly(s, 1, what)).toString('latin1');
  }
  return line;
}

/**
 * Listens on the Unix socket `path` (a stale socket there is replaced;
 * anything else is refused) for one sender, and reads the snapshot's
 * preamble and state; its RAM is read by `readRam`, which answers the
 * sender once everything arrived. `onListening` is called once the socket
 * accepts connections.
 */
export async function receiveSnapshot(
  path: string,
  onListening: () => void = () => undefined,
): Promise<SnapshotReader> {
  if (existsSync(path)) {
    if (!lstatSync(path).isSocket()) throw new SnapshotFileError(`${path}: exists and is not a socket`);
    unlinkSync(path);
  }
  const net = lazyNet();
  const server: Server = net.createServer({ pauseOnConnect: false });
  const s: Socket = await new Promise((resolve, reject) => {
    server.once('error', (e) => reject(new SnapshotFileError(`${path}: ${e.message}`)));
    server.once('connection', resolve);
    server.listen(path, onListening);
  });
  server.close();
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
  s.on('error', () => undefined); // reads report it as an early end
  try {
    const what = `${path} (incoming)`;
    const magic = (await readExactly(s, STREAM_MAGIC.length, what)).toString('latin1');
    if (magic !== STREAM_MAGIC) throw new SnapshotFileError(`${what}: not an mvisor snapshot stream`);
    let pre: { format: number; stateBytes: number; ramBytes: number };
    try {
      pre = JSON.parse(await readLine(s, what)) as typeof pre;
    } catch (e) {
      if (e instanceof SnapshotFileError) throw e;
      throw new SnapshotFileError(`${what}: its preamble is damaged`);
    }
    const ints = [pre.format, pre.stateBytes, pre.ramBytes];
    if (!ints.every((v) => Number.isSafeInteger(v) && v >= 0) || pre.stateBytes > MAX_STATE_BYTES)
      throw new SnapshotFileError(`${what}: its preamble is damaged`);
    if (pre.format !== SNAPSHOT_FORMAT)
      throw new SnapshotFileError(
        `${what}: snapshot format ${pre.format}, this mvisor reads format ${SNAPSHOT_FORMAT}`,
      );
    let state: unknown;
    try {
      state = JSON.parse((await readExactly(s, pre.stateBytes, what)).toString('utf8'));
    } catch (e) {
      if (e instanceof SnapshotFileError) throw e;
      throw new SnapshotFileError(`${what}: its state is damaged`);
    }
    return {
      state,
      ramBytes: pre.ramBytes,
      async readRam(regions) {
        if (checkedSize(what, regions) !== pre.ramBytes)
          throw new SnapshotFileError(
            `${what}: holds ${pre.ramBytes} bytes of RAM, the VM has ${checkedSize(what, regions)}`,
          );
        const data = await readRamRecords(s, regions, what);
        s.end(ACK);
        return data;
      },
      close() {
        s.end();
      },
    };
  } catch (e) {
    s.destroy();
    throw e;
  }
}

/** Reads RAM records into `regions` (zeroing what no record holds); returns the bytes received. */
async function readRamRecords(s: Socket, regions: readonly Uint8Array[], what: string): Promise<number> {
  const starts: number[] = [];
  let total = 0;
  for (const r of regions) {
    starts.push(total);
    total += r.length;
  }
  /** Zeroes [from, to) of the RAM. */
  const zero = (from: number, to: number) => {
    regions.forEach((r, i) => {
      const a = Math.max(from, starts[i]!) - starts[i]!;
      const b = Math.min(to, starts[i]! + r.length) - starts[i]!;
      if (b > a) r.fill(0, a, b);
    });
  };
  let pos = 0;
  let data = 0;
  for (;;) {
    const head = await readExactly(s, RECORD_HEAD, what);
    const offset = Number(head.readBigUInt64LE(0));
    const length = Number(head.readBigUInt64LE(8));
    if (length === 0) break;
    const i = starts.findLastIndex((st) => st <= offset);
    const region = regions[i];
    if (
      offset < pos ||
      offset % RAM_FILE_PAGE !== 0 ||
      length % RAM_FILE_PAGE !== 0 ||
      !region ||
      offset + length > starts[i]! + region.length
    )
      throw new SnapshotFileError(`${what}: its RAM records are damaged (${length} bytes at ${offset})`);
    zero(pos, offset);
    for (let done = 0; done < length;) {
      const n = Math.min(PIECE, length - done);
      region.set(await readExactly(s, n, what), offset - starts[i]! + done);
      done += n;
    }
    pos = offset + length;
    data += length;
  }
  zero(pos, total);
  return data;
}
