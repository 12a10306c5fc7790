/**
 * The VMM control protocol, shared by both ends: the VMM's control socket
 * (src/vmm/control.ts) and the engine's client (src/engine/apply/control-client.ts).
 *
 * Newline-delimited JSON over a Unix socket, one request object per line, one
 * response per request, in order. A request may carry `v` (the protocol
 * version it speaks; absent means 1, for `socat` users) and an `id` that is
 * echoed back. Every response carries `ok` and the server's `v`.
 *
 * Compatibility rules (test/unit/platform/control-protocol.test.ts holds the
 * version-1 messages as they are on the wire): a server refuses a request of
 * a newer version than its own, naming both; within a version, fields are only
 * ever added, so a client ignores fields it does not know.
 *
 * Why guards written here rather than a JSON Schema with ajv: the messages are
 * a handful of flat objects, and the VMM's start-up path (which answers the
 * first `status`) must not compile a schema.
 */

/** The protocol version this build speaks. */
export const CONTROL_PROTOCOL_VERSION = 1;

/** The commands, in the order `help`-like messages list them. */
export const CONTROL_COMMANDS = [
  'status',
  'stop',
  'powerdown',
  'pause',
  'resume',
  'vcpus',
  'snapshot',
  'restore',
] as const;
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

export interface ControlRequest {
  cmd: ControlCommand;
  /** The version the client speaks (default 1). */
  v?: number;
  /** Echoed back in the response. */
  id?: string | number;
  /** snapshot: the new file to write; restore: the file to go back to (absolute paths). */
  file?: string;
  /** snapshot, instead of a file: the Unix socket (absolute path) where `mvisor --incoming unix:PATH` waits; then: stop. */
  socket?: string;
  /** snapshot: what the VM does after it, resume (default) or stop. */
  then?: 'resume' | 'stop';
}

/** What `snapshot` reports. */
export interface SnapshotResult {
  /** The file (or the socket) written to. */
  file: string;
  /** The file's size (apparent: zero pages of RAM are holes). */
  bytes: number;
  /** RAM stored as data, in bytes. */
  ramDataBytes: number;
  /** How long the vCPUs were paused, in ms. */
  pausedMs: number;
  /** Block requests in flight as the pause began (at least): all completed before the state was taken. */
  drainedRequests: number;
}

/** What `restore` reports. */
export interface RestoreResult {
  file: string;
  /** How long the vCPUs were paused, in ms. */
  pausedMs: number;
  /** RAM read as data, in bytes. */
  ramDataBytes: number;
}

/** What `status` reports; the VMM state as the engine reads it. */
export interface VmStatus {
  name: string;
  state: 'running' | 'paused' | 'suspended' | 'stopping';
  pid: number;
  vcpus: number;
  /** Guest RAM in bytes. */
  memory: number;
  uuid: string;
  /** The image of each storage device (what mvctl import checks against a manifest). */
  images: { device: string; path: string }[];
  uptimeMs: number;
  exits: { io: number; mmio: number; other: number };
}

/** The payload of a successful response, by command. */
export interface ControlResults {
  status: VmStatus;
  stop: object;
  powerdown: object;
  pause: object;
  resume: object;
  vcpus: { vcpus: string[] };
  snapshot: SnapshotResult;
  restore: RestoreResult;
}

interface ResponseBase {
  v: number;
  id?: string | number;
}

export type ControlSuccess<C extends ControlCommand> = ResponseBase & { ok: true } & ControlResults[C];
export type ControlFailure = ResponseBase & { ok: false; error: string };
export type ControlResponse<C extends ControlCommand = ControlCommand> = ControlSuccess<C> | ControlFailure;

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;
const STATES: readonly VmStatus['state'][] = ['running', 'paused', 'suspended', 'stopping'];

/** Why `x` is not a VmStatus, or undefined. */
export function vmStatusProblem(x: Record<string, unknown>): string | undefined {
  if (typeof x.name !== 'string') return 'status without a name';
  if (!STATES.includes(x.state as VmStatus['state'])) return `unknown VM state ${JSON.stringify(x.state)}`;
  if (!isCount(x.pid) || x.pid === 0) return 'status without a pid';
  if (!isCount(x.vcpus) || !isCount(x.memory)) return 'status without vcpus and memory';
  if (typeof x.uuid !== 'string') return 'status without a uuid';
  if (
    !Array.isArray(x.images) ||
    !x.images.every((i) => isRecord(i) && typeof i.device === 'string' && typeof i.path === 'string')
  )
    return 'status with malformed images';
  if (!isCount(x.uptimeMs)) return 'status without an uptime';
  const e = x.exits;
  if (!isRecord(e) || !isCount(e.io) || !isCount(e.mmio) || !isCount(e.other))
    return 'status without exit counts';
  return undefined;
}

/**
 * Reads a response line for `cmd`: the typed response, or a string saying what
 * is wrong with it (not JSON, not this protocol, a newer version...).
 */
export function parseControlResponse<C extends ControlCommand>(
  cmd: C,
  line: string,
): ControlResponse<C> | string {
  let x: unknown;
  try {
    x = JSON.parse(line);
  } catch {
    return 'the answer is not JSON';
  }
  if (!isRecord(x) || typeof x.ok !== 'boolean') return 'the answer is not a control protocol response';
  // Version 1 servers before the field existed answered without it.
  const v = x.v ?? 1;
  if (!isCount(v) || v === 0) return `the answer has a bad protocol version ${JSON.stringify(x.v)}`;
  if (v > CONTROL_PROTOCOL_VERSION)
    return `the VMM speaks control protocol ${v}, this mvctl ${CONTROL_PROTOCOL_VERSION}: upgrade mvctl`;
  const base: ResponseBase = {
    v,
    ...(typeof x.id === 'string' || typeof x.id === 'number' ? { id: x.id } : {}),
  };
  if (!x.ok) return { ...base, ok: false, error: typeof x.error === 'string' ? x.error : 'unknown error' };
  if (cmd === 'status') {
    const why = vmStatusProblem(x);
    if (why !== undefined) return `the answer to status is not one: ${why}`;
  }
  if (cmd === 'vcpus' && !(Array.isArray(x.vcpus) && x.vcpus.every((l) => typeof l === 'string')))
    return 'the answer to vcpus has no list of vCPUs';
  if (
    cmd === 'snapshot' &&
    !(typeof x.file === 'string' && [x.bytes, x.ramDataBytes, x.pausedMs, x.drainedRequests].every(isCount))
  )
    return 'the answer to snapshot is not a snapshot report';
  if (cmd === 'restore' && !(typeof x.file === 'string' && [x.ramDataBytes, x.pausedMs].every(isCount)))
    return 'the answer to restore is not a restore report';
  return { ...x, ...base, ok: true } as unknown as ControlSuccess<C>;
}

/**
 * Reads a request line: the typed request, or the error response to send
 * (without the server's `v`, which the server adds).
 */
export function parseControlRequest(line: string): ControlRequest | { id?: string | number; error: string } {
  let x: unknown;
  try {
    x = JSON.parse(line);
  } catch {
    return { error: 'request is not a JSON object' };
  }
  if (!isRecord(x)) return { error: 'request is not a JSON object' };
  const id = typeof x.id === 'string' || typeof x.id === 'number' ? x.id : undefined;
  const withId = id === undefined ? {} : { id };
  const v = x.v ?? 1;
  if (!isCount(v) || v === 0) return { ...withId, error: `bad protocol version ${JSON.stringify(x.v)}` };
  if (v > CONTROL_PROTOCOL_VERSION)
    return {
      ...withId,
      error: `this VMM speaks control protocol ${CONTROL_PROTOCOL_VERSION}, the request ${v}: upgrade the VMM or use an older client`,
    };
  if (!CONTROL_COMMANDS.includes(x.cmd as ControlCommand))
    return { ...withId, error: `unknown command ${JSON.stringify(x.cmd)} (${CONTROL_COMMANDS.join(', ')})` };
  if (x.cmd === 'restore') {
    if (typeof x.file !== 'string' || !x.file.startsWith('/') || x.file.length > 4096)
      return { ...withId, error: 'restore needs "file": the absolute path of a snapshot file of this VM' };
    return { cmd: 'restore', v, ...withId, file: x.file };
  }
  if (x.cmd === 'snapshot') {
    const abs = (p: unknown) => typeof p === 'string' && p.startsWith('/') && p.length <= 4096;
    if (x.socket !== undefined) {
      if (!abs(x.socket) || x.file !== undefined)
        return {
          ...withId,
          error: 'snapshot "socket" is the absolute path of a Unix socket, without "file"',
        };
      if (x.then !== 'stop')
        return {
          ...withId,
          error:
            'a snapshot sent to a socket needs "then": "stop" (the VMM that receives it takes over the disks)',
        };
      return { cmd: 'snapshot', v, ...withId, socket: x.socket as string, then: 'stop' };
    }
    if (!abs(x.file))
      return { ...withId, error: 'snapshot needs "file": the absolute path of a new file (or "socket")' };
    if (x.then !== undefined && x.then !== 'resume' && x.then !== 'stop')
      return { ...withId, error: `snapshot "then" is resume or stop, not ${JSON.stringify(x.then)}` };
    return { cmd: 'snapshot', v, ...withId, file: x.file as string, then: x.then ?? 'resume' };
  }
  return { cmd: x.cmd as ControlCommand, v, ...withId };
}
