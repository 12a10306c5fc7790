/**
 * A vCPU's whole state, for snapshots: every state kind the addon reads
 * (registers, system registers, FPU and XSAVE, XCRs, LAPIC, pending
 * events, MP state, debug registers) and every MSR KVM saves and restores
 * (KVM_GET_MSR_INDEX_LIST: TSC, kvmclock, SYSENTER/SYSCALL, PAT, MTRRs...),
 * as JSON-ready strings. Restore puts them back in the order QEMU does
 * (kvm_arch_put_registers): registers, FPU/XSAVE, XCRs, system registers,
 * MSRs, MP state, LAPIC, then the TSC deadline (which setting the LAPIC
 * clears), pending events and debug registers.
 */
import type { NativeVcpu, VcpuStateKind } from '../kvm/addon.js';

/** IA32_TSC_DEADLINE: written after the LAPIC. */
const MSR_TSC_DEADLINE = 0x6e0;

const KIND_ORDER: readonly VcpuStateKind[] = ['regs', 'fpu', 'xsave', 'xcrs', 'sregs'];
const LATE_KINDS: readonly VcpuStateKind[] = ['events', 'debugregs'];
const ALL_KINDS: readonly VcpuStateKind[] = [...KIND_ORDER, 'mpstate', 'lapic', ...LATE_KINDS];

export interface VcpuSnapshot {
  /** Kernel structs by kind, base64 (a kind this host's KVM lacks is absent). */
  kinds: Partial<Record<VcpuStateKind, string>>;
  /** MSR index -> value, hex. */
  msrs: Record<string, string>;
}

/** Reads every MSR of `indices` that KVM returns (KVM_GET_MSRS stops at the first it cannot read: skip it). */
function readMsrs(vcpu: NativeVcpu, indices: Uint32Array): Record<string, string> {
  const out: Record<string, string> = {};
  let rest = indices;
  while (rest.length > 0) {
    const values = vcpu.getMsrs(rest);
    values.forEach((v, i) => (out[rest[i]!.toString(16)] = v.toString(16)));
    rest = rest.subarray(values.length + 1); // the one at values.length failed
  }
  return out;
}

/** The vCPU's state (it must be outside KVM_RUN: paused, or not yet started). */
export function saveVcpu(vcpu: NativeVcpu, msrIndices: Uint32Array): VcpuSnapshot {
  const kinds: Partial<Record<VcpuStateKind, string>> = {};
  for (const kind of ALL_KINDS) {
    try {
      kinds[kind] = vcpu.getState(kind).toString('base64');
    } catch {
      // A kind this host's KVM lacks (XCRs without XSAVE).
    }
  }
  return { kinds, msrs: readMsrs(vcpu, msrIndices) };
}

/**
 * Puts `s` into the vCPU. Returns the MSRs KVM refused (by index, hex),
 * for the caller to report; anything else that fails throws.
 */
export function loadVcpu(vcpu: NativeVcpu, s: VcpuSnapshot): string[] {
  const put = (kind: VcpuStateKind) => {
    const b64 = s.kinds[kind];
    if (b64 !== undefined) vcpu.setState(kind, Buffer.from(b64, 'base64'));
  };
  KIND_ORDER.forEach(put);
  const entries = Object.entries(s.msrs).map(([i, v]) => [parseInt(i, 16), BigInt(`0x${v}`)] as const);
  const early = entries.filter(([i]) => i !== MSR_TSC_DEADLINE);
  const late = entries.filter(([i]) => i === MSR_TSC_DEADLINE);
  const refused = writeMsrs(vcpu, early);
  put('mpstate');
  put('lapic');
  refused.push(...writeMsrs(vcpu, late));
  LATE_KINDS.forEach(put);
  return refused;
}

function writeMsrs(vcpu: NativeVcpu, entries: ReadonlyArray<readonly [number, bigint]>): string[] {
  const refused: string[] = [];
  let rest = entries;
  while (rest.length > 0) {
    const n = vcpu.setMsrs(new Uint32Array(rest.map(([i]) => i)), new BigUint64Array(rest.map(([, v]) => v)));
    if (n < rest.length) refused.push(rest[n]![0].toString(16));
    rest = rest.slice(n + 1);
  }
  return refused;
}
