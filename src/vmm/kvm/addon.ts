/**
 * Typed face of the native addon (native/, node-addon-api). The addon is
 * thin: one method per ioctl-level job, arguments checked, errors thrown as
 * `Error` with `syscall`, `errno` and `code`. Everything above it is here
 * in TypeScript.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeKvm {
  apiVersion(): number;
  checkExtension(cap: number): number;
  /** 7 words per entry: function, index, flags, eax, ebx, ecx, edx. */
  supportedCpuid(): Uint32Array;
  msrIndexList(): Uint32Array;
  close(): void;
}

export type VcpuStateKind =
  'regs' | 'sregs' | 'fpu' | 'lapic' | 'xsave' | 'xcrs' | 'events' | 'mpstate' | 'debugregs';
export type VmStateKind = 'irqchip' | 'pit2' | 'clock';

export interface NativeVm {
  allocRam(size: number): number;
  ramView(id: number, offset: number, length: number): ArrayBuffer;
  setMemoryRegion(
    slot: number,
    flags: number,
    gpa: number,
    size: number,
    ramId: number,
    ramOffset: number,
  ): void;
  getDirtyLog(slot: number, bitmap: Uint8Array): void;
  setTssAddr(addr: number): void;
  setIdentityMapAddr(addr: number): void;
  createIrqchip(): void;
  createPit2(flags?: number): void;
  /** KVM_REINJECT_CONTROL: replay missed PIT ticks (true, KVM's default) or drop them. */
  pitReinject(on: boolean): void;
  irqLine(irq: number, level: number): void;
  setGsiRouting(routes: Uint32Array): void;
  signalMsi(addressLo: number, addressHi: number, data: number): number;
  ioeventfd(fd: number, addr: number, len: number, flags: number, datamatch?: number | bigint): void;
  irqfd(fd: number, gsi: number, flags?: number, resamplefd?: number): void;
  getState(kind: VmStateKind, arg?: number): Buffer;
  setState(kind: VmStateKind, state: Uint8Array): void;
  enableCap(cap: number, ...args: (number | bigint)[]): void;
  checkExtension(cap: number): number;
  /** Int32Array view: 16 words per vCPU: [0] state, [1] kind, [2] errno, [3] sleeping. */
  mailboxBuffer(): ArrayBuffer;
  setWakeHandler(fn: () => void): void;
  setSpin(vcpuSpinNs: number, jsSpinNs: number): void;
  startVcpu(index: number): void;
  pump(completeIndex: number): number;
  complete(index: number): void;
  kick(index: number, pause?: boolean): void;
  stop(): void;
  close(): void;
}

export interface NativeVcpu {
  index(): number;
  runArea(): ArrayBuffer;
  setCpuid(entries: Uint32Array): void;
  getCpuid(): Uint32Array;
  getState(kind: VcpuStateKind): Buffer;
  setState(kind: VcpuStateKind, state: Uint8Array): void;
  getMsrs(indices: Uint32Array): BigUint64Array;
  setMsrs(indices: Uint32Array, values: BigUint64Array): number;
  tscKhz(khz?: number): number;
  translate(gva: number | bigint): number;
}

/**
 * Watches non-blocking eventfds from a native epoll thread (native/fdutil.cc):
 * when one fires the thread reads it (so many writes before JavaScript runs
 * are one call) and `onFire(fd)` runs on the event loop. No call names an
 * fd after its `remove` returned, nor any after `close`. Remove an fd
 * before closing it. Keeps the event loop alive until closed or unref'd.
 */
export interface NativeFdWatcher {
  add(fd: number): void;
  /** False when `fd` was not watched. */
  remove(fd: number): boolean;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface Addon {
  Kvm: new (path?: string) => NativeKvm;
  Vm: new (kvm: NativeKvm, maxVcpus: number) => NativeVm;
  Vcpu: new (vm: NativeVm, id: number) => NativeVcpu;
  eventfdCreate(initval?: number, nonblock?: boolean): number;
  eventfdRead(fd: number): number;
  eventfdWrite(fd: number, value?: number | bigint): void;
  closeFd(fd: number): void;
  /** flock(2): the image locks of src/block/lock.ts; a conflict throws with code EAGAIN. */
  flock(fd: number, operation: number): void;
  /** lseek(2) SEEK_DATA: the next data at or after `offset`, or -1 when there is none (sparse snapshot files). */
  lseekData(fd: number, offset: number): number;
  /** lseek(2) SEEK_HOLE: the next hole at or after `offset` (the end of the file counts as one), or -1 past the end. */
  lseekHole(fd: number, offset: number): number;
  FdWatcher: new (onFire: (fd: number) => void) => NativeFdWatcher;
  constants: Record<string, number>;
  runOffsets: Record<string, number>;
  structSizes: Record<string, number>;
}

/** Mailbox words (see native/kvm.h). */
export const MAILBOX_WORDS = 16;
export const MailboxKind = { KvmExit: 0, Paused: 1, RunError: 2, Stopped: 3, Parked: 4 } as const;

let cached: Addon | undefined;

/** Finds build/Release/mvisor_kvm.node from the source tree or dist/. */
export function loadAddon(): Addon {
  if (cached) return cached;
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    process.env.MVISOR_ADDON,
    join(here, '../../../build/Release/mvisor_kvm.node'),
    join(here, '../../../../build/Release/mvisor_kvm.node'),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `the native addon is not built (looked for ${candidates.join(', ')}): run npm run build:native`,
    );
  }
  const require = createRequire(import.meta.url);
  cached = require(found) as Addon;
  return cached;
}
