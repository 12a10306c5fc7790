/**
 * Client of a VMM's control socket (src/vmm/control.ts): one request, one
 * JSON response, with a timeout. The engine never links the VMM: it talks
 * to its child processes through this socket.
 */
import { createConnection } from 'node:net';

export class ControlError extends Error {}

export function controlRequest(
  socketPath: string,
  request: Record<string, unknown>,
  timeoutMs = 5000,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ControlError(`${socketPath}: no answer to ${String(request.cmd)} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(request) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      } catch {
        reject(new ControlError(`${socketPath}: answer is not JSON`));
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(new ControlError(`${socketPath}: ${e.message}`));
    });
  });
}
