/**
 * Completing an instruction KVM's emulator gave up on (an internal error,
 * suberror "emulation failure"), for the few instructions where that is
 * exact and safe. This only runs where KVM already failed, which on
 * hardware-backed KVM is never for these instructions; on hosts whose KVM
 * emulates guest kernel code in software (see DEVELOPERS.md) it lets a
 * stock kernel survive:
 *   fwait (9B)         no x87 exception can be pending for a kernel that
 *                      does not unmask them: a no-op, RIP += 1
 *   clac (0F 01 CA)    RFLAGS.AC = 0, RIP += 3
 *   stac (0F 01 CB)    RFLAGS.AC = 1, RIP += 3
 * Everything else stays a fatal error. Each use is logged by the caller.
 */
import type { NativeVcpu } from '../kvm/addon.js';
import { encodeRegs } from '../kvm/structs.js';
import type { CpuSnapshot } from './cpu-state.js';
import { decodeCpuid, hasFeature } from '../cpu/cpuid.js';

const AC = 1n << 18n;

function hasSmap(vcpu: NativeVcpu): boolean {
  return hasFeature(decodeCpuid(vcpu.getCpuid()), 'smap');
}

/**
 * Returns the mnemonic it completed, or undefined. Only at CPL 0 (where the
 * reasoning above holds), and clac/stac only when the vCPU has SMAP (else
 * the CPU raises #UD, which KVM then reports itself).
 */
export function tryEmulate(vcpu: NativeVcpu, snap: CpuSnapshot, insn: Uint8Array): string | undefined {
  if (snap.cpl !== 0) return undefined;
  const regs = { ...snap.regs };
  let name: string | undefined;
  if (insn[0] === 0x9b) {
    regs.rip += 1n;
    name = 'fwait';
  } else if (
    insn[0] === 0x0f &&
    insn[1] === 0x01 &&
    (insn[2] === 0xca || insn[2] === 0xcb) &&
    hasSmap(vcpu)
  ) {
    regs.rflags = insn[2] === 0xca ? regs.rflags & ~AC : regs.rflags | AC;
    regs.rip += 3n;
    name = insn[2] === 0xca ? 'clac' : 'stac';
  }
  if (!name) return undefined;
  if (snap.mode !== '64-bit long mode') regs.rip = BigInt.asUintN(32, regs.rip);
  vcpu.setState('regs', encodeRegs(regs));
  return name;
}
