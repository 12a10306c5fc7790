/**
 * The snapshot stream over a real Unix socket, in one process: state and
 * RAM arrive as sent (zero pages not sent, and zeroed on arrival), the
 * sender learns that everything arrived, and a stream cut short, with
 * records out of order or from another format is refused naming the socket.
 */
import { mkdtempSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  connectSnapshotSocket,
  receiveSnapshot,
  STREAM_MAGIC,
} from '../../../../src/vmm/snapshot/snapshot-stream.js';

const PAGE = 4096;
const sock = () => join(mkdtempSync(join(tmpdir(), 'mvisor-stream-')), 'in.sock');

/** Sends raw bytes to `path` once it listens. */
function sendRaw(path: string, bytes: Buffer): void {
  const c = createConnection(path);
  c.on('error', () => undefined);
  c.end(bytes);
}

function record(offset: number, data: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64LE(BigInt(offset), 0);
  h.writeBigUInt64LE(BigInt(data.length), 8);
  return Buffer.concat([h, data]);
}

function stream(ramBytes: number, records: Buffer[], format = 1): Buffer {
  const state = Buffer.from('{"hello":1}');
  return Buffer.concat([
    Buffer.from(`${STREAM_MAGIC}${JSON.stringify({ format, stateBytes: state.length, ramBytes })}\n`),
    state,
    ...records,
  ]);
}

describe('snapshot stream', () => {
  it('carries state and RAM (zero pages as nothing) and tells the sender it all arrived', async () => {
    const path = sock();
    const ram = [Buffer.alloc(4 * PAGE), Buffer.alloc(2 * PAGE)];
    ram[0]!.fill(7, PAGE, 2 * PAGE);
    ram[1]!.fill(9, PAGE);
    let listening!: () => void;
    const ready = new Promise<void>((r) => (listening = r));
    const receiving = receiveSnapshot(path, listening);
    await ready;
    const writer = await connectSnapshotSocket(path);
    const sent = writer.write({ vm: 'x', n: [1, 2] }, ram);
    const r = await receiving;
    expect(r.state).toEqual({ vm: 'x', n: [1, 2] });
    expect(r.ramBytes).toBe(6 * PAGE);
    // The target's RAM had junk in it: what was not sent is zero after.
    const into = [Buffer.alloc(4 * PAGE, 1), Buffer.alloc(2 * PAGE, 1)];
    expect(await r.readRam(into)).toBe(2 * PAGE);
    expect(Buffer.concat(into).equals(Buffer.concat(ram))).toBe(true);
    r.close();
    expect(await sent).toMatchObject({ ramDataBytes: 2 * PAGE });
  });

  it('refuses a cut stream, records out of order and another format, naming the socket', async () => {
    const cases: Array<[Buffer, RegExp]> = [
      [stream(2 * PAGE, [record(0, Buffer.alloc(PAGE, 1))]), /in\.sock \(incoming\): the stream ended early/],
      [
        stream(2 * PAGE, [record(PAGE, Buffer.alloc(PAGE, 1)), record(0, Buffer.alloc(PAGE, 1))]),
        /its RAM records are damaged \(4096 bytes at 0\)/,
      ],
      [stream(2 * PAGE, [record(PAGE, Buffer.alloc(2 * PAGE, 1))]), /its RAM records are damaged/],
      [stream(2 * PAGE, [], 2), /snapshot format 2, this mvisor reads format 1/],
      [Buffer.from('GET / HTTP/1.1\r\n\r\n'), /not an mvisor snapshot stream/],
    ];
    for (const [bytes, error] of cases) {
      const path = sock();
      let listening!: () => void;
      const ready = new Promise<void>((r) => (listening = r));
      const receiving = receiveSnapshot(path, listening);
      await ready;
      sendRaw(path, bytes);
      const got = await receiving.then((r) => r.readRam([Buffer.alloc(2 * PAGE)])).catch((e: Error) => e);
      expect(got instanceof Error ? got.message : `no error (${String(got)})`).toMatch(error);
    }
  });

  it('refuses a socket nobody listens on', async () => {
    await expect(connectSnapshotSocket(sock())).rejects.toThrow(/no VMM is waiting there/);
  });
});
