/**
 * The public types and constants of KvmVm (kvm-vm.ts, which re-exports
 * them), and the vCPU-state helpers it uses: the power-on state a reset
 * restores and the one-line vCPU description.
 */
import type { NativeVcpu, VcpuStateKind } from '../kvm/addon.js';
import type { CpuModel } from '../cpu/cpuid.js';
import { hex } from './bus.js';
import type { Logger } from './log.js';
import { snapshotCpu } from './cpu-state.js';

/** Where KVM puts its real-mode TSS and identity-map page (as QEMU does). */
export const KVM_IDENTITY_MAP_ADDR = 0xfeffc000;
export const KVM_TSS_ADDR = 0xfeffd000;

/** Process exit codes of the VMM (also documented in README.md). */
export const ExitCode = {
  Ok: 0,
  VmmError: 1,
  BadInput: 2,
  GuestCrashed: 3,
} as const;

export interface VmStop {
  code: number;
  reason: string;
}

export interface RamPlacement {
  gpa: number;
  size: number;
  /**
   * Map the whole placement into one memory slot (default true). A machine
   * with a legacy memory map (the PC's 640 KiB-1 MiB area) passes false and
   * maps the pieces itself with `mapMemory`.
   */
  mapped?: boolean;
}

/** Host memory behind guest RAM or a ROM: an anonymous mapping of the addon. */
export interface HostMemoryBlock {
  readonly id: number;
  readonly size: number;
}

export interface MapMemoryOptions {
  /** Guest writes exit to the MMIO bus instead (KVM_MEM_READONLY); reads and fetches run from memory. */
  readonly?: boolean;
}

export interface KvmVmOptions {
  cpus: number;
  cpu: CpuModel;
  ram: RamPlacement[];
  log: Logger;
  /** Spin budgets of the exit hand-off (see native/kvm_vm.cc). */
  vcpuSpinNs?: number;
  jsSpinNs?: number;
}

export interface ExitStats {
  io: number;
  mmio: number;
  other: number;
  wakeups: number;
  byPort: Map<number, number>;
}

/** KVM_CREATE_PIT2 flag: the PC speaker port is a dummy. */
export const KVM_PIT_SPEAKER_DUMMY = 1;

/** Kinds of vCPU state a reset restores; sregs (APIC base) before the LAPIC, the MP state last. */
const RESET_STATE_KINDS: readonly VcpuStateKind[] = [
  'sregs',
  'regs',
  'fpu',
  'xsave',
  'xcrs',
  'lapic',
  'debugregs',
  'events',
  'mpstate',
];

export function captureVcpuState(v: NativeVcpu): Array<[VcpuStateKind, Buffer]> {
  const out: Array<[VcpuStateKind, Buffer]> = [];
  for (const kind of RESET_STATE_KINDS) {
    try {
      out.push([kind, v.getState(kind)]);
    } catch {
      // A kind this host's KVM lacks (XCRs without XSAVE): nothing to restore.
    }
  }
  return out;
}

/** One line about vCPU `i`: RIP, mode, CPL, RFLAGS and MP state (the vCPU must be paused). */
export function describeVcpu(v: NativeVcpu, i: number): string {
  const snap = snapshotCpu(v);
  let mp = -1;
  try {
    mp = v.getState('mpstate').readUInt32LE(0);
  } catch {
    // reported as unknown below
  }
  const mpName = ['runnable', 'uninitialized', 'init-received', 'halted', 'sipi-received'][mp] ?? `${mp}`;
  return snap
    ? `vcpu${i}: RIP ${hex(snap.regs.rip)} ${snap.mode} CPL ${snap.cpl} RFLAGS ${hex(snap.regs.rflags)} mp-state ${mpName}`
    : `vcpu${i}: state unavailable`;
}
