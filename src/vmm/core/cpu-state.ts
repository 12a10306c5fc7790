/**
 * Reading a vCPU's mode and the bytes at its instruction pointer, for
 * error reports (internal errors, triple faults) and for the emulation
 * fallback.
 */
import type { NativeVcpu } from '../kvm/addon.js';
import { parseRegs, parseSregs, type Regs, type Sregs } from '../kvm/structs.js';
import type { GuestMemory } from './memory.js';

export function cpuMode(s: Sregs): string {
  const pe = (s.cr0 & 1n) !== 0n;
  if (!pe) return 'real mode';
  const lma = (s.efer & 0x400n) !== 0n;
  if (lma) return s.cs.l ? '64-bit long mode' : 'compatibility mode';
  if ((s.rflagsVm ?? false) === true) return 'virtual-8086 mode';
  return s.cs.db ? '32-bit protected mode' : '16-bit protected mode';
}

export interface CpuSnapshot {
  regs: Regs;
  sregs: Sregs;
  mode: string;
  cpl: number;
}

export function snapshotCpu(vcpu: NativeVcpu): CpuSnapshot | undefined {
  try {
    const regs = parseRegs(vcpu.getState('regs'));
    const sregs = parseSregs(vcpu.getState('sregs'));
    if (regs.rflags & 0x20000n) sregs.rflagsVm = true;
    return { regs, sregs, mode: cpuMode(sregs), cpl: sregs.cs.dpl };
  } catch {
    return undefined;
  }
}

/** The state of an x86 CPU after RESET: real mode at F000:FFF0 (CS base 0xFFFF0000). */
export function isResetState(s: CpuSnapshot): boolean {
  return s.mode === 'real mode' && s.regs.rip === 0xfff0n && s.sregs.cs.base === 0xffff0000n;
}

/** Up to `n` instruction bytes at CS:RIP, through the guest's page tables. */
export function bytesAtRip(vcpu: NativeVcpu, mem: GuestMemory, snap: CpuSnapshot, n = 15): Uint8Array {
  const linear = snap.sregs.cs.base + snap.regs.rip;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let gpa: number;
    try {
      const la = BigInt.asUintN(snap.mode === '64-bit long mode' ? 64 : 32, linear + BigInt(i));
      gpa = (snap.sregs.cr0 & 0x80000000n) !== 0n ? vcpu.translate(la) : Number(la);
    } catch {
      break;
    }
    if (gpa < 0) break;
    const b = mem.tryView(gpa, 1);
    if (!b) break;
    out.push(b[0]!);
  }
  return Uint8Array.from(out);
}

export function hexBytes(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}
