import { describe, expect, it } from 'vitest';
import {
  applyCpuModel,
  CpuModelError,
  cpuidForVcpu,
  decodeCpuid,
  encodeCpuid,
  hasFeature,
  parseCpuSpec,
  type CpuidEntry,
} from '../../../../src/vmm/cpu/cpuid.js';

// A KVM_GET_SUPPORTED_CPUID answer of an AMD host with most features.
const supported: CpuidEntry[] = [
  { function: 0, index: 0, flags: 0, eax: 0x10, ebx: 0x68747541, ecx: 0x444d4163, edx: 0x69746e65 },
  { function: 1, index: 0, flags: 0, eax: 0x00a00f11, ebx: 0, ecx: 0xfed83203, edx: 0x178bfbff },
  { function: 7, index: 0, flags: 1, eax: 0, ebx: 0x219c97a9, ecx: 0x0040069c, edx: 0x10 },
  { function: 0xd, index: 0, flags: 1, eax: 7, ebx: 0x340, ecx: 0x340, edx: 0 },
  { function: 0xb, index: 0, flags: 1, eax: 1, ebx: 2, ecx: 0x100, edx: 0 },
  { function: 0xb, index: 1, flags: 1, eax: 4, ebx: 16, ecx: 0x201, edx: 0 },
  { function: 0x80000001, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0x75c237ff, edx: 0x2fd3fbff },
  { function: 0x80000008, index: 0, flags: 0, eax: 0x3030, ebx: 0x0, ecx: 0x3f, edx: 0 },
];

describe('CPU models', () => {
  it('host passes KVM supported CPUID through', () => {
    const m = applyCpuModel(supported, { model: 'host', features: {} });
    expect(hasFeature(m, 'avx2')).toBe(true);
    expect(hasFeature(m, 'cx16')).toBe(true);
    expect(hasFeature(m, 'xsave')).toBe(true);
  });

  it('baseline keeps the conservative set and drops XSAVE leaves', () => {
    const m = applyCpuModel(supported, { model: 'baseline', features: {} });
    for (const f of ['sse2', 'sse3', 'cx16', 'lm', 'nx', 'syscall', 'hypervisor'])
      expect(hasFeature(m, f)).toBe(true);
    for (const f of ['avx', 'avx2', 'xsave', 'popcnt', 'smap', 'rdrand', 'aes', 'svm'])
      expect(hasFeature(m, f)).toBe(false);
    expect(m.find((e) => e.function === 0xd)!.eax).toBe(0);
  });

  it('applies +feat/-feat; a +feat KVM cannot provide is reported and left out (as QEMU filters it)', () => {
    const left: string[] = [];
    const m = applyCpuModel(supported, parseCpuSpec('baseline,-cx16,+xsaveerptr,+avx2'), (n) => left.push(n));
    expect(hasFeature(m, 'cx16')).toBe(false);
    expect(hasFeature(m, 'avx2')).toBe(true);
    expect(hasFeature(m, 'xsaveerptr')).toBe(false);
    expect(left).toEqual(['xsaveerptr']);
    const withIt = supported.map((e) => (e.function === 0x80000008 ? { ...e, ebx: 4 } : e));
    const m2 = applyCpuModel(withIt, parseCpuSpec('baseline,+xsaveerptr'), (n) => left.push(n));
    expect(m2.find((e) => e.function === 0x80000008)!.ebx & 4).toBe(4);
    expect(left).toEqual(['xsaveerptr']);
    // Bits KVM emulates without listing them on older kernels stay.
    const m3 = applyCpuModel(supported, parseCpuSpec('baseline,+tsc_deadline,+hypervisor'), (n) =>
      left.push(n),
    );
    expect(hasFeature(m3, 'tsc_deadline')).toBe(true);
    expect(left).toEqual(['xsaveerptr']);
  });

  it('rejects unknown models and features with the known names', () => {
    expect(() => parseCpuSpec('pentium')).toThrow(CpuModelError);
    expect(() => parseCpuSpec('host,+warpdrive')).toThrow(/unknown CPU feature 'warpdrive'/);
    expect(() => parseCpuSpec('host,cx16')).toThrow(/use \+name or -name/);
  });

  it('gives each vCPU its APIC ID in leaves 1 and 0xB', () => {
    const m = applyCpuModel(supported, { model: 'host', features: {} });
    const v3 = cpuidForVcpu(m, 3);
    expect(v3.find((e) => e.function === 1)!.ebx >>> 24).toBe(3);
    expect(v3.filter((e) => e.function === 0xb).map((e) => e.edx)).toEqual([3, 3]);
    expect(v3.find((e) => e.function === 1)!.edx & (1 << 28)).toBe(0);
  });

  it('round-trips the addon word format', () => {
    expect(decodeCpuid(encodeCpuid(supported))).toEqual(supported);
  });
});
