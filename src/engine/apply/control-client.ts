/**
 * Client of a VMM's control socket (src/vmm/control.ts): one request, one
 * typed response (src/platform/control-protocol.ts), with a timeout. The
 * engine never links the VMM: it talks to its child processes through this
 * socket.
 */
import { createConnection } from 'node:net';
import {
  CONTROL_PROTOCOL_VERSION,
  parseControlResponse,
  type ControlCommand,
  type ControlRequest,
  type ControlResponse,
} from '../../platform/control-protocol.js';

export class ControlError extends Error {}

/**
 * Sends `cmd` and reads its response. A response that is not one of the
 * protocol (not JSON, malformed, a newer version) is a ControlError; an
 * `ok: false` response is returned for the caller to judge.
 */
export function controlRequest<C extends ControlCommand>(
  socketPath: string,
  cmd: C,
  timeoutMs = 5000,
  /** The command's arguments (snapshot: file, then). */
  args: Pick<ControlRequest, 'file' | 'socket' | 'then'> = {},
): Promise<ControlResponse<C>> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ControlError(`${socketPath}: no answer to ${cmd} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () =>
      sock.write(JSON.stringify({ v: CONTROL_PROTOCOL_VERSION, cmd, ...args }) + '\n'),
    );
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      const res = parseControlResponse(cmd, buf.slice(0, nl));
      if (typeof res === 'string') reject(new ControlError(`${socketPath}: ${res}`));
      else resolve(res);
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(new ControlError(`${socketPath}: ${e.message}`));
    });
  });
}
