/**
 * Can this machine run VMs? One answer, with the cause and the remedy, for
 * `mvisor`, `mvctl apply` and the test runner, given before any other work
 * (no image opened, no VM half-started). Opening the device is the test:
 * the addon's constructor does the ioctl-level checks later.
 */
import { closeSync, existsSync, openSync } from 'node:fs';

export type KvmProblemCause = 'absent' | 'pvm-guest' | 'permission' | 'no-driver' | 'other';

export interface KvmProblem {
  cause: KvmProblemCause;
  /** One line: what is wrong and what to do about it. */
  message: string;
}

/** What the probe looked at (the facts, apart from the judgement, for unit tests). */
export interface KvmFacts {
  path: string;
  /** errno code of open(path, O_RDWR), or undefined when it opened. */
  openError?: string;
  /** The kernel has the kvm_pvm module: it is itself a guest of a PVM hypervisor. */
  pvm: boolean;
}

export function probeKvmFacts(path = '/dev/kvm'): KvmFacts {
  const pvm = existsSync('/sys/module/kvm_pvm');
  try {
    closeSync(openSync(path, 'r+'));
    return { path, pvm };
  } catch (e) {
    return { path, openError: (e as NodeJS.ErrnoException).code ?? 'EIO', pvm };
  }
}

const NESTED_HINT =
  'run mvisor on a host with hardware virtualization (Intel VT-x or AMD-V), or inside a VM with nested virtualization enabled';

/** The problem the facts show, or undefined when KVM opened. */
export function kvmProblem(f: KvmFacts): KvmProblem | undefined {
  switch (f.openError) {
    case undefined:
      return undefined;
    case 'ENOENT':
      return f.pvm
        ? {
            cause: 'pvm-guest',
            message: `${f.path} does not exist: this kernel is itself a guest of a paravirtual (PVM) hypervisor, and its KVM does not offer /dev/kvm to a guest; ${NESTED_HINT}`,
          }
        : {
            cause: 'absent',
            message: `${f.path} does not exist: KVM is not loaded or the CPU offers no virtualization; load kvm_intel or kvm_amd (modprobe), enable VT-x/AMD-V in the firmware, or ${NESTED_HINT}`,
          };
    case 'EACCES':
    case 'EPERM':
      return {
        cause: 'permission',
        message: `no permission to open ${f.path}: run as root, or add the user to the kvm group (usermod -aG kvm USER) and log in again`,
      };
    case 'ENXIO':
    case 'ENODEV':
      return {
        cause: 'no-driver',
        message: `${f.path} exists but no KVM driver answers it (${f.openError}): load kvm_intel or kvm_amd (modprobe), or enable VT-x/AMD-V in the firmware`,
      };
    default:
      return {
        cause: 'other',
        message: `cannot open ${f.path} (${f.openError}): KVM is not usable here; ${NESTED_HINT}`,
      };
  }
}

/** The problem with this machine's KVM, or undefined (`MVISOR_KVM_DEVICE` names another device, for tests). */
export function checkKvm(path = process.env.MVISOR_KVM_DEVICE ?? '/dev/kvm'): KvmProblem | undefined {
  return kvmProblem(probeKvmFacts(path));
}
