/**
 * CPU models: which CPUID the guest sees. `host` passes through what KVM
 * supports (KVM_GET_SUPPORTED_CPUID); `baseline` keeps a conservative
 * x86-64 feature set (about QEMU's qemu64) so a guest sees the same CPU on
 * every host, which live migration needs. `+feat`/`-feat` overrides apply
 * after the model, in order. Per-vCPU topology (APIC IDs) is patched in by
 * `cpuidForVcpu`.
 *
 * Written here rather than taken from a library: no npm package models
 * KVM CPUID tables; the bit positions are from the Intel SDM vol. 2A
 * (CPUID) and the AMD APM vol. 3 (appendix E).
 */

export type Reg = 'eax' | 'ebx' | 'ecx' | 'edx';

export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

export interface FeatureBit {
  leaf: number;
  sub: number;
  reg: Reg;
  bit: number;
}

const f = (leaf: number, reg: Reg, bit: number, sub = 0): FeatureBit => ({ leaf, sub, reg, bit });

/** Feature names as Linux's /proc/cpuinfo and QEMU's -cpu spell them. */
export const cpuFeatures: Record<string, FeatureBit> = {
  // leaf 1 EDX
  fpu: f(1, 'edx', 0), vme: f(1, 'edx', 1), de: f(1, 'edx', 2), pse: f(1, 'edx', 3), tsc: f(1, 'edx', 4),
  msr: f(1, 'edx', 5), pae: f(1, 'edx', 6), mce: f(1, 'edx', 7), cx8: f(1, 'edx', 8), apic: f(1, 'edx', 9),
  sep: f(1, 'edx', 11), mtrr: f(1, 'edx', 12), pge: f(1, 'edx', 13), mca: f(1, 'edx', 14), cmov: f(1, 'edx', 15),
  pat: f(1, 'edx', 16), pse36: f(1, 'edx', 17), clflush: f(1, 'edx', 19), mmx: f(1, 'edx', 23),
  fxsr: f(1, 'edx', 24), sse: f(1, 'edx', 25), sse2: f(1, 'edx', 26), ht: f(1, 'edx', 28),
  // leaf 1 ECX
  sse3: f(1, 'ecx', 0), pclmulqdq: f(1, 'ecx', 1), monitor: f(1, 'ecx', 3), vmx: f(1, 'ecx', 5),
  ssse3: f(1, 'ecx', 9), fma: f(1, 'ecx', 12), cx16: f(1, 'ecx', 13), pdcm: f(1, 'ecx', 15), pcid: f(1, 'ecx', 17),
  sse4_1: f(1, 'ecx', 19), sse4_2: f(1, 'ecx', 20), x2apic: f(1, 'ecx', 21), movbe: f(1, 'ecx', 22),
  popcnt: f(1, 'ecx', 23), tsc_deadline: f(1, 'ecx', 24), aes: f(1, 'ecx', 25), xsave: f(1, 'ecx', 26),
  avx: f(1, 'ecx', 28), f16c: f(1, 'ecx', 29), rdrand: f(1, 'ecx', 30), hypervisor: f(1, 'ecx', 31),
  // leaf 7 subleaf 0
  fsgsbase: f(7, 'ebx', 0), bmi1: f(7, 'ebx', 3), hle: f(7, 'ebx', 4), avx2: f(7, 'ebx', 5), smep: f(7, 'ebx', 7),
  bmi2: f(7, 'ebx', 8), erms: f(7, 'ebx', 9), invpcid: f(7, 'ebx', 10), rtm: f(7, 'ebx', 11),
  avx512f: f(7, 'ebx', 16), rdseed: f(7, 'ebx', 18), adx: f(7, 'ebx', 19), smap: f(7, 'ebx', 20),
  clflushopt: f(7, 'ebx', 23), clwb: f(7, 'ebx', 24), sha_ni: f(7, 'ebx', 29),
  umip: f(7, 'ecx', 2), pku: f(7, 'ecx', 3), la57: f(7, 'ecx', 16), rdpid: f(7, 'ecx', 22),
  fsrm: f(7, 'edx', 4), md_clear: f(7, 'edx', 10), spec_ctrl: f(7, 'edx', 26),
  // leaf 0xD subleaf 1
  xsaveopt: f(0xd, 'eax', 0, 1), xsavec: f(0xd, 'eax', 1, 1), xsaves: f(0xd, 'eax', 3, 1),
  // leaf 0x80000001
  lahf_lm: f(0x80000001, 'ecx', 0), svm: f(0x80000001, 'ecx', 2), abm: f(0x80000001, 'ecx', 5),
  sse4a: f(0x80000001, 'ecx', 6), topoext: f(0x80000001, 'ecx', 22),
  syscall: f(0x80000001, 'edx', 11), nx: f(0x80000001, 'edx', 20), pdpe1gb: f(0x80000001, 'edx', 26),
  rdtscp: f(0x80000001, 'edx', 27), lm: f(0x80000001, 'edx', 29),
  // leaf 0x80000008 EBX
  xsaveerptr: f(0x80000008, 'ebx', 2),
  // leaf 0x40000001 EAX: KVM paravirtual features (Linux's KVM_FEATURE_*; QEMU's kvm-* names)
  kvmclock: f(0x40000001, 'eax', 0), kvm_nopiodelay: f(0x40000001, 'eax', 1), kvm_mmu: f(0x40000001, 'eax', 2),
  kvmclock2: f(0x40000001, 'eax', 3), kvm_asyncpf: f(0x40000001, 'eax', 4), kvm_steal_time: f(0x40000001, 'eax', 5),
  kvm_pv_eoi: f(0x40000001, 'eax', 6), kvm_pv_unhalt: f(0x40000001, 'eax', 7),
  kvm_pv_tlb_flush: f(0x40000001, 'eax', 9), kvm_asyncpf_vmexit: f(0x40000001, 'eax', 10),
  kvm_pv_ipi: f(0x40000001, 'eax', 11), kvm_poll_control: f(0x40000001, 'eax', 12),
  kvm_pv_sched_yield: f(0x40000001, 'eax', 13), kvm_asyncpf_int: f(0x40000001, 'eax', 14),
  kvm_msi_ext_dest_id: f(0x40000001, 'eax', 15), kvmclock_stable_bit: f(0x40000001, 'eax', 24),
}; // prettier-ignore

/** What `baseline` keeps (everything else in these leaves is cleared). */
const baselineFeatures = [
  'fpu', 'de', 'pse', 'tsc', 'msr', 'pae', 'mce', 'cx8', 'apic', 'sep', 'mtrr', 'pge', 'mca', 'cmov', 'pat',
  'pse36', 'clflush', 'mmx', 'fxsr', 'sse', 'sse2', 'sse3', 'cx16', 'x2apic', 'hypervisor',
  'lahf_lm', 'syscall', 'nx', 'lm',
  // The paravirtual features QEMU enables by default; the hypercall-based
  // ones (pv_ipi, pv_sched_yield, pv_unhalt) stay off, as in QEMU's models.
  'kvmclock', 'kvm_nopiodelay', 'kvmclock2', 'kvm_asyncpf', 'kvm_steal_time', 'kvm_pv_eoi', 'kvmclock_stable_bit',
]; // prettier-ignore
/** Leaves whose feature bits `baseline` filters. */
const filteredLeaves: { leaf: number; sub: number; regs: Reg[] }[] = [
  { leaf: 1, sub: 0, regs: ['ecx', 'edx'] },
  { leaf: 7, sub: 0, regs: ['ebx', 'ecx', 'edx'] },
  { leaf: 0x80000001, sub: 0, regs: ['ecx', 'edx'] },
  { leaf: 0x80000008, sub: 0, regs: ['ebx'] },
  { leaf: 0x40000001, sub: 0, regs: ['eax'] },
];

export type CpuModelName = 'host' | 'baseline';
export const cpuModels: readonly CpuModelName[] = ['host', 'baseline'];

export interface CpuModel {
  model: CpuModelName;
  /** name → true (+feat) or false (-feat), applied in insertion order. */
  features: Record<string, boolean>;
}

export class CpuModelError extends Error {}

export function decodeCpuid(words: Uint32Array): CpuidEntry[] {
  const out: CpuidEntry[] = [];
  for (let i = 0; i + 7 <= words.length; i += 7) {
    out.push({
      function: words[i]!,
      index: words[i + 1]!,
      flags: words[i + 2]!,
      eax: words[i + 3]!,
      ebx: words[i + 4]!,
      ecx: words[i + 5]!,
      edx: words[i + 6]!,
    });
  }
  return out;
}

export function encodeCpuid(entries: CpuidEntry[]): Uint32Array {
  const w = new Uint32Array(entries.length * 7);
  entries.forEach((e, i) => w.set([e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx], i * 7));
  return w;
}

function findEntry(entries: CpuidEntry[], leaf: number, sub: number): CpuidEntry | undefined {
  return entries.find((e) => e.function === leaf && (e.index === sub || (sub === 0 && e.flags === 0)));
}

/** KVM_CPUID_FLAG_SIGNIFCANT_INDEX: the entry depends on ECX. */
const SIGNIFICANT_INDEX = 1;

function entryFor(entries: CpuidEntry[], leaf: number, sub: number): CpuidEntry {
  let e = findEntry(entries, leaf, sub);
  if (!e) {
    e = { function: leaf, index: sub, flags: sub ? SIGNIFICANT_INDEX : 0, eax: 0, ebx: 0, ecx: 0, edx: 0 };
    entries.push(e);
  }
  return e;
}

/** Throws CpuModelError for an unknown model or feature name. */
export function validateCpuModel(m: CpuModel): void {
  if (!cpuModels.includes(m.model)) {
    throw new CpuModelError(`unknown CPU model '${m.model}' (known: ${cpuModels.join(', ')})`);
  }
  for (const name of Object.keys(m.features)) {
    if (!(name in cpuFeatures)) {
      throw new CpuModelError(
        `unknown CPU feature '${name}' (known: ${Object.keys(cpuFeatures).sort().join(', ')})`,
      );
    }
  }
}

/**
 * The CPUID table for a model, from what KVM supports. Pure: the caller
 * passes KVM_GET_SUPPORTED_CPUID's entries.
 */
/**
 * Bits KVM provides with an in-kernel irqchip whether or not its
 * KVM_GET_SUPPORTED_CPUID lists them (QEMU adds them back the same way):
 * the hypervisor bit, the LAPIC's TSC-deadline mode and x2APIC, TSC_ADJUST.
 */
const EMULATED_FEATURES: ReadonlySet<string> = new Set([
  'hypervisor',
  'tsc_deadline',
  'x2apic',
  'tsc_adjust',
]);

export function applyCpuModel(
  supported: CpuidEntry[],
  m: CpuModel,
  /** Told about each `+feature` this KVM cannot provide; the feature is left out (QEMU warns and filters too). */
  onUnsupported: (name: string) => void = () => {},
): CpuidEntry[] {
  validateCpuModel(m);
  const entries = supported.map((e) => ({ ...e }));
  const kvmHas = (fb: FeatureBit): boolean => {
    const e = findEntry(supported, fb.leaf, fb.sub);
    return e !== undefined && (e[fb.reg] & (1 << fb.bit)) !== 0;
  };
  if (m.model === 'baseline') {
    for (const { leaf, sub, regs } of filteredLeaves) {
      const e = findEntry(entries, leaf, sub);
      if (!e) continue;
      for (const reg of regs) {
        let keep = 0;
        for (const name of baselineFeatures) {
          const fb = cpuFeatures[name]!;
          if (fb.leaf === leaf && fb.sub === sub && fb.reg === reg) keep |= 1 << fb.bit;
        }
        e[reg] = (e[reg] & keep) >>> 0;
      }
    }
    // No XSAVE in baseline: drop the XSAVE state leaves too.
    for (const e of entries) if (e.function === 0xd) e.eax = e.ebx = e.ecx = e.edx = 0;
  }
  for (const [name, on] of Object.entries(m.features)) {
    const fb = cpuFeatures[name]!;
    // The hypervisor leaves (0x4000_00xx) describe what the VMM offers, and
    // some bits KVM emulates without listing them (older kernels); the rest
    // needs KVM's support.
    if (on && (fb.leaf & 0xf000_0000) >>> 0 !== 0x4000_0000 && !EMULATED_FEATURES.has(name) && !kvmHas(fb)) {
      onUnsupported(name);
      continue;
    }
    const e = entryFor(entries, fb.leaf, fb.sub);
    e[fb.reg] = on ? (e[fb.reg] | (1 << fb.bit)) >>> 0 : (e[fb.reg] & ~(1 << fb.bit)) >>> 0;
  }
  const l1 = findEntry(entries, 1, 0);
  if (l1 && !(l1.ecx & (1 << cpuFeatures.xsave!.bit))) {
    for (const e of entries) if (e.function === 0xd) e.eax = e.ebx = e.ecx = e.edx = 0;
  }
  return entries;
}

/**
 * Per-vCPU copy with its APIC ID in the topology leaves: every vCPU is a
 * single-threaded core in its own package (like QEMU's -smp N default).
 */
export function cpuidForVcpu(model: CpuidEntry[], apicId: number): CpuidEntry[] {
  const entries = model.map((e) => ({ ...e }));
  for (const e of entries) {
    if (e.function === 1) {
      // EBX: APIC ID [31:24], logical processors [23:16] = 1, CLFLUSH line size [15:8] = 8 qwords.
      e.ebx = ((apicId << 24) | (1 << 16) | (8 << 8) | (e.ebx & 0xff)) >>> 0;
      e.edx = (e.edx & ~(1 << 28)) >>> 0; // no HTT
    } else if (e.function === 0xb || e.function === 0x1f) {
      e.edx = apicId >>> 0;
      if (e.index === 0) {
        e.eax = 0;
        e.ebx = 1;
        e.ecx = 0x100;
      } else if (e.index === 1) {
        e.eax = 0;
        e.ebx = 1;
        e.ecx = 0x201;
      } else {
        e.eax = e.ebx = 0;
        e.ecx = e.index & 0xff;
      }
    } else if (e.function === 4) {
      e.eax = (e.eax & 0x3fff) >>> 0; // one core, one thread per cache
    } else if (e.function === 0x8000001e) {
      e.eax = apicId >>> 0;
      e.ebx = apicId & 0xff;
      e.ecx = 0;
    } else if (e.function === 0x80000008) {
      e.ecx = (e.ecx & ~0xff & ~0xf000) >>> 0; // one core per package
    }
  }
  return entries;
}

/** Parses "baseline,-cx16,+xsaveerptr" (QEMU's -cpu syntax). */
export function parseCpuSpec(spec: string): CpuModel {
  const [model, ...rest] = spec.split(',').map((s) => s.trim());
  const features: Record<string, boolean> = {};
  for (const r of rest) {
    if (!r) continue;
    const m = /^([+-])([a-z0-9_]+)$/.exec(r);
    if (!m) throw new CpuModelError(`bad CPU feature override '${r}' (use +name or -name)`);
    features[m[2]!] = m[1] === '+';
  }
  const out: CpuModel = { model: (model ?? '') as CpuModelName, features };
  validateCpuModel(out);
  return out;
}

export function hasFeature(entries: CpuidEntry[], name: string): boolean {
  const fb = cpuFeatures[name];
  if (!fb) return false;
  const e = findEntry(entries, fb.leaf, fb.sub);
  return !!e && (e[fb.reg] & (1 << fb.bit)) !== 0;
}
