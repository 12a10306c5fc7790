import { describe, expect, it } from 'vitest';
import { checkKvm, kvmProblem, probeKvmFacts } from '../../../../src/vmm/kvm/availability.js';

describe('KVM availability', () => {
  it('a device that opens is no problem', () => {
    expect(kvmProblem({ path: '/dev/kvm', pvm: false })).toBeUndefined();
  });

  it('names the cause and the remedy for each way /dev/kvm can fail', () => {
    const absent = kvmProblem({ path: '/dev/kvm', openError: 'ENOENT', pvm: false })!;
    expect(absent.cause).toBe('absent');
    expect(absent.message).toMatch(/does not exist.*modprobe.*VT-x\/AMD-V/);
    const pvm = kvmProblem({ path: '/dev/kvm', openError: 'ENOENT', pvm: true })!;
    expect(pvm.cause).toBe('pvm-guest');
    expect(pvm.message).toMatch(/itself a guest of a paravirtual \(PVM\) hypervisor.*nested virtualization/);
    const perm = kvmProblem({ path: '/dev/kvm', openError: 'EACCES', pvm: false })!;
    expect(perm.cause).toBe('permission');
    expect(perm.message).toMatch(/no permission.*kvm group/);
    expect(kvmProblem({ path: '/dev/kvm', openError: 'ENXIO', pvm: false })!.cause).toBe('no-driver');
    expect(kvmProblem({ path: '/dev/kvm', openError: 'EIO', pvm: false })!.message).toMatch(
      /cannot open \/dev\/kvm \(EIO\)/,
    );
  });

  it('probes a real path: a missing file is ENOENT, /dev/null opens', () => {
    expect(probeKvmFacts('/nonexistent/kvm').openError).toBe('ENOENT');
    expect(probeKvmFacts('/dev/null').openError).toBeUndefined();
    expect(checkKvm('/nonexistent/kvm')?.cause).toMatch(/absent|pvm-guest/);
  });
});
