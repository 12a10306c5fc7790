/**
 * The control protocol between the engine and the VMM: the real server
 * (src/vmm/control.ts) and the real client (src/engine/apply/control-client.ts)
 * over a Unix socket, and the version-1 messages as they are on the wire, which
 * later versions must keep reading (they only add fields).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlServer, type ControlHandlers } from '../../../src/vmm/control.js';
import { ControlError, controlRequest } from '../../../src/engine/apply/control-client.js';
import {
  CONTROL_COMMANDS,
  CONTROL_PROTOCOL_VERSION,
  parseControlRequest,
  parseControlResponse,
  type VmStatus,
} from '../../../src/platform/control-protocol.js';
import { createServer } from 'node:net';

const status: VmStatus = {
  name: 'web',
  state: 'running',
  pid: 4242,
  vcpus: 2,
  memory: 256 << 20,
  uuid: '0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70',
  images: [{ device: 'root', path: '/var/lib/vm/root.qcow2' }],
  uptimeMs: 1500,
  exits: { io: 10, mmio: 2, other: 1 },
};

const silent = { debug() {}, info() {}, warn() {}, error() {} };

describe('control protocol, server and client together', () => {
  let dir: string;
  let server: ControlServer;
  const calls: string[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mvisor-control-'));
    const handlers: ControlHandlers = {
      status: () => status,
      stop: () => void calls.push('stop'),
      powerdown: () => 'the guest has not enabled the ACPI power button',
      pause: () => Promise.resolve(void calls.push('pause')),
      resume: () => void calls.push('resume'),
      vcpus: () => Promise.resolve(['vcpu 0: rip=0xfff0']),
      restore: (file) => Promise.resolve({ file, pausedMs: 2, ramDataBytes: 4096 }),
      snapshot: (to, then) =>
        Promise.resolve({
          file: `${'file' in to ? to.file : `unix:${to.socket}`}:${then}`,
          bytes: 8192,
          ramDataBytes: 4096,
          pausedMs: 3,
          drainedRequests: 1,
        }),
    };
    server = new ControlServer(join(dir, 'c.sock'), handlers, silent);
    await server.listen();
  });
  afterAll(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers every command with a typed response carrying the protocol version', async () => {
    const sock = join(dir, 'c.sock');
    const s = await controlRequest(sock, 'status');
    expect(s).toEqual({ ...status, v: CONTROL_PROTOCOL_VERSION, ok: true });
    expect(await controlRequest(sock, 'vcpus')).toEqual({ v: 1, ok: true, vcpus: ['vcpu 0: rip=0xfff0'] });
    expect(await controlRequest(sock, 'powerdown')).toEqual({
      v: 1,
      ok: false,
      error: 'the guest has not enabled the ACPI power button',
    });
    expect(await controlRequest(sock, 'snapshot', 5000, { file: '/tmp/vm.snap', then: 'stop' })).toEqual({
      v: 1,
      ok: true,
      file: '/tmp/vm.snap:stop',
      bytes: 8192,
      ramDataBytes: 4096,
      pausedMs: 3,
      drainedRequests: 1,
    });
    for (const cmd of ['pause', 'resume', 'stop'] as const)
      expect(await controlRequest(sock, cmd)).toEqual({ v: 1, ok: true });
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual(['pause', 'resume', 'stop']);
  });

  it('a client refuses an answer that is not the protocol, naming what is wrong', async () => {
    const fake = join(dir, 'fake.sock');
    const answers = ['{"ok":true,"v":2,"name":"x"}', '{"ok":true,"pid":"7"}', 'hello'];
    const srv = createServer((c) => c.end(answers.shift() + '\n'));
    await new Promise<void>((r) => srv.listen(fake, r));
    try {
      await expect(controlRequest(fake, 'status')).rejects.toThrow(/speaks control protocol 2, this mvctl 1/);
      await expect(controlRequest(fake, 'status')).rejects.toThrow(/not one: status without a name/);
      await expect(controlRequest(fake, 'status')).rejects.toBeInstanceOf(ControlError);
    } finally {
      srv.close();
    }
  });
});

describe('control protocol version 1 on the wire', () => {
  it('reads the requests a version-1 client (or socat) sends', () => {
    expect(parseControlRequest('{"cmd":"status"}')).toEqual({ cmd: 'status', v: 1 });
    expect(parseControlRequest('{"id":7,"cmd":"stop","v":1}')).toEqual({ cmd: 'stop', v: 1, id: 7 });
    for (const cmd of CONTROL_COMMANDS)
      expect(parseControlRequest(JSON.stringify({ cmd, file: '/s' }))).toMatchObject({ cmd });
    expect(parseControlRequest('{"cmd":"explode","id":"a"}')).toEqual({
      id: 'a',
      error: 'unknown command "explode" (status, stop, powerdown, pause, resume, vcpus, snapshot, restore)',
    });
    // snapshot: a new file by absolute path; then resume (the default) or stop.
    expect(parseControlRequest('{"cmd":"snapshot","file":"/var/vm.snap"}')).toEqual({
      cmd: 'snapshot',
      v: 1,
      file: '/var/vm.snap',
      then: 'resume',
    });
    expect(parseControlRequest('{"cmd":"snapshot","file":"vm.snap","id":3}')).toEqual({
      id: 3,
      error: 'snapshot needs "file": the absolute path of a new file (or "socket")',
    });
    // restore: back to a snapshot file, by absolute path.
    expect(parseControlRequest('{"cmd":"restore","file":"/var/vm.snap"}')).toEqual({
      cmd: 'restore',
      v: 1,
      file: '/var/vm.snap',
    });
    expect(parseControlRequest('{"cmd":"restore"}')).toEqual({
      error: 'restore needs "file": the absolute path of a snapshot file of this VM',
    });
    // Or to the socket of a VMM waiting with --incoming: the VM stops after it.
    expect(parseControlRequest('{"cmd":"snapshot","socket":"/run/in.sock","then":"stop"}')).toEqual({
      cmd: 'snapshot',
      v: 1,
      socket: '/run/in.sock',
      then: 'stop',
    });
    expect(parseControlRequest('{"cmd":"snapshot","socket":"/run/in.sock"}')).toEqual({
      error:
        'a snapshot sent to a socket needs "then": "stop" (the VMM that receives it takes over the disks)',
    });
    expect(parseControlRequest('{"cmd":"snapshot","socket":"/s","file":"/f","then":"stop"}')).toEqual({
      error: 'snapshot "socket" is the absolute path of a Unix socket, without "file"',
    });
    expect(parseControlRequest('{"cmd":"snapshot","file":"/s","then":"pause"}')).toEqual({
      error: 'snapshot "then" is resume or stop, not "pause"',
    });
    expect(parseControlRequest('{"cmd":"status","v":2}')).toMatchObject({
      error: expect.stringMatching(/speaks control protocol 1, the request 2/),
    });
    expect(parseControlRequest('[1]')).toEqual({ error: 'request is not a JSON object' });
  });

  it('reads the responses of a version-1 VMM, with or without the version field, and ignores added fields', () => {
    // The status line as mvisor 1 (before `v`) wrote it.
    const old =
      '{"id":1,"ok":true,"name":"spin","state":"running","pid":99,"vcpus":2,"memory":16777216,' +
      '"uuid":"0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70","images":[],"uptimeMs":5,"exits":{"io":1,"mmio":0,"other":0}}';
    expect(parseControlResponse('status', old)).toMatchObject({ v: 1, ok: true, name: 'spin', pid: 99 });
    const added = JSON.parse(old) as Record<string, unknown>;
    added.balloon = { target: 1 };
    expect(parseControlResponse('status', JSON.stringify(added))).toMatchObject({ ok: true, pid: 99 });
    expect(parseControlResponse('stop', '{"ok":true}')).toEqual({ v: 1, ok: true });
    expect(parseControlResponse('powerdown', '{"ok":false,"error":"no"}')).toEqual({
      v: 1,
      ok: false,
      error: 'no',
    });
    expect(parseControlResponse('vcpus', '{"ok":true,"vcpus":"x"}')).toBe(
      'the answer to vcpus has no list of vCPUs',
    );
    expect(parseControlResponse('snapshot', '{"ok":true,"file":"/s","bytes":1}')).toBe(
      'the answer to snapshot is not a snapshot report',
    );
  });
});
