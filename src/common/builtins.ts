/**
 * Node built-in modules a VM process needs only on some paths (a compressed
 * qcow2 cluster, a control or console socket, a lock helper, a UUID derived
 * from a VM's name), loaded on first
 * use: each costs a few milliseconds of start-up to load (bench/startup.ts),
 * and ES module imports cannot be deferred. `process.getBuiltinModule` would
 * do this from Node 22.
 */
import { createRequire } from 'node:module';

const requireBuiltin = createRequire(import.meta.url);

let zlib: typeof import('node:zlib') | undefined;
let net: typeof import('node:net') | undefined;
let childProcess: typeof import('node:child_process') | undefined;
let crypto: typeof import('node:crypto') | undefined;

export const lazyZlib = (): typeof import('node:zlib') =>
  (zlib ??= requireBuiltin('node:zlib') as typeof import('node:zlib'));
export const lazyNet = (): typeof import('node:net') =>
  (net ??= requireBuiltin('node:net') as typeof import('node:net'));
export const lazyChildProcess = (): typeof import('node:child_process') =>
  (childProcess ??= requireBuiltin('node:child_process') as typeof import('node:child_process'));
export const lazyCrypto = (): typeof import('node:crypto') =>
  (crypto ??= requireBuiltin('node:crypto') as typeof import('node:crypto'));
