/**
 * What holds on every host: KVM's own exit counters for one VMM process,
 * read from debugfs (/sys/kernel/debug/kvm/<pid>-<vm fd>/, one file per
 * statistic, summed over the vCPUs). They count every exit, those KVM
 * handles in the kernel too, for any VMM alike, so mvisor and QEMU compare.
 * The directory goes away with the VM, so it is read while the VM lives and
 * the last reading is kept.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const DEBUGFS_KVM = '/sys/kernel/debug/kvm';

/** The counters benches report. */
export const KVM_STATS = [
  'exits',
  'io_exits',
  'mmio_exits',
  'halt_exits',
  'irq_exits',
  'insn_emulation',
] as const;
export type KvmStats = Partial<Record<(typeof KVM_STATS)[number], number>>;

/** One reading of the VM directories of `pid` (summed if it has several VMs), or undefined. */
export function readKvmStats(pid: number, root = DEBUGFS_KVM): KvmStats | undefined {
  let dirs: string[];
  try {
    dirs = readdirSync(root).filter((d) => d.startsWith(`${pid}-`));
  } catch {
    return undefined;
  }
  if (!dirs.length) return undefined;
  const out: KvmStats = {};
  for (const d of dirs)
    for (const k of KVM_STATS) {
      try {
        out[k] = (out[k] ?? 0) + Number(readFileSync(join(root, d, k), 'utf8').trim());
      } catch {
        // a statistic this kernel does not have, or the VM just went away
      }
    }
  return out;
}

/** Reads `pid`'s counters every `ms` until stop(); stop() gives the last reading. */
export function watchKvmStats(pid: number, ms = 100): { stop: () => KvmStats | undefined } {
  let last: KvmStats | undefined;
  const take = () => {
    const r = readKvmStats(pid);
    if (r && (r.exits ?? 0) >= (last?.exits ?? 0)) last = r;
  };
  const timer = setInterval(take, ms);
  return {
    stop: () => {
      clearInterval(timer);
      take();
      return last;
    },
  };
}

/** Inside the nested KVM test host (test/kvm-host/): its init's parameters are on the kernel command line. */
export function insideTestHost(): boolean {
  try {
    return /\bmvhost\.nonce=/.test(readFileSync('/proc/cmdline', 'utf8'));
  } catch {
    return false;
  }
}

/** The label every figure carries: "nested" inside the test host. */
export function hostLabel(): string {
  return insideTestHost() ? 'nested' : 'native KVM';
}
