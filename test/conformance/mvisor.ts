/**
 * The mvisor side: the VMM config equivalent to the QEMU command line of a
 * test (the kernel as a multiboot kernel, `-smp`, `-append`, `-m`, `-cpu`,
 * the test devices of `x86/run`), or why there is none. Whatever QEMU
 * option mvisor has no equivalent for makes the test a SKIP that names the
 * option: a named CPU model, a CPU property, `-device`, `-machine q35`,
 * `-global`, and so on.
 */
import type { ProcessOutcome, Verdict } from './qemu.js';
import { summaryLine, verdictFromStatus } from './qemu.js';

/** QEMU's default -m (hw/i386/pc.c: 128 MiB). */
export const QEMU_DEFAULT_MEMORY = '128M';

/** The VMM config document (YAML) of one run. */
export interface MvisorConfig {
  name: string;
  memory: string;
  vcpus: number;
  cpu: string;
  /** QEMU boots the test through SeaBIOS (its multiboot ROM); so does mvisor. */
  firmware: 'bios';
  kernel: string;
  cmdline?: string;
  modules?: { file: string }[];
  serial: 'stdio';
  pitLostTicks?: 'discard';
  devices: Record<string, unknown>[];
}

export type MvisorPlan = { config: MvisorConfig; notes: string[] } | { skip: string };

export interface PlanInputs {
  /** Test name (the VM is named after it). */
  name: string;
  /** Absolute path of the .flat kernel. */
  kernel: string;
  /** The words after `-kernel` (testWords()). */
  words: readonly string[];
  /** Absolute path of the environment file, given as the one multiboot module (as QEMU's -initrd). */
  envFile?: string;
  /** CPU feature names mvisor knows (src/vmm/cpu/cpuid.ts). */
  cpuFeatures: ReadonlySet<string>;
  /** Whether this mvisor has `pitLostTicks` (x86/run discards lost PIT ticks). */
  hasPitLostTicks: boolean;
}

/** QEMU CPU models and the mvisor model that matches them. */
const CPU_MODELS: Record<string, { model: 'host' | 'baseline'; note?: string }> = {
  // QEMU's default; mvisor's baseline is "about QEMU's qemu64" (src/vmm/cpu/cpuid.ts).
  qemu64: { model: 'baseline' },
  kvm64: { model: 'baseline', note: 'kvm64 run as baseline (qemu64-like)' },
  host: { model: 'host' },
  // Under KVM, QEMU's max is every feature KVM supports: what mvisor's host is.
  max: { model: 'host', note: '-cpu max run as host (all KVM-supported features)' },
};

/** A QEMU `-cpu` spec as an mvisor `cpu` string, or why not. */
export function translateCpu(
  spec: string,
  known: ReadonlySet<string>,
): { cpu: string; note?: string } | { skip: string } {
  const [modelName = '', ...items] = spec.split(',');
  const model = CPU_MODELS[modelName];
  if (!model) return { skip: `named CPU model ${modelName} (mvisor has host and baseline)` };
  const out: string[] = [model.model];
  for (const item of items) {
    if (item === '') continue;
    if (/^hv[_-]/.test(item))
      return { skip: `Hyper-V enlightenment ${item} (mvisor has no Hyper-V emulation)` };
    let name: string;
    let on: boolean;
    const m = /^([+-])(.+)$/.exec(item);
    const kv = /^([^=]+)=(on|off|true|false|yes|no)$/.exec(item);
    if (m) {
      name = m[2] ?? '';
      on = m[1] === '+';
    } else if (kv) {
      name = kv[1] ?? '';
      on = ['on', 'true', 'yes'].includes(kv[2] ?? '');
    } else {
      return { skip: `CPU property ${item} (mvisor sets features only)` };
    }
    if (/^hv[_-]/.test(name))
      return { skip: `Hyper-V enlightenment ${name} (mvisor has no Hyper-V emulation)` };
    const feature = name.replace(/[-.]/g, '_');
    if (!known.has(feature)) return { skip: `CPU feature or property ${name} (not an mvisor CPU feature)` };
    out.push(`${on ? '+' : '-'}${feature}`);
  }
  return model.note !== undefined ? { cpu: out.join(','), note: model.note } : { cpu: out.join(',') };
}

/** A QEMU `-m` value (default unit MiB; `size=` form too) as an mvisor size. */
export function translateMemory(value: string): string | undefined {
  const v = value.startsWith('size=') ? value.slice(5) : value;
  if (v.includes(',')) return undefined;
  const m = /^(\d+)([kKmMgGtT]?)[bB]?$/.exec(v);
  if (!m) return undefined;
  const unit = (m[2] ?? '').toUpperCase() || 'M';
  return `${m[1]}${unit}`;
}

export function mvisorPlan(p: PlanInputs): MvisorPlan {
  const notes: string[] = [];
  let vcpus = 1;
  let cmdline: string | undefined;
  let memory = QEMU_DEFAULT_MEMORY;
  let cpu = 'baseline';
  const w = p.words;
  for (let i = 0; i < w.length; i++) {
    const opt = w[i] ?? '';
    const value = w[i + 1];
    const needsValue = [
      '-smp',
      '-append',
      '-m',
      '-cpu',
      '-machine',
      '-M',
      '-device',
      '-global',
      '-overcommit',
    ];
    if (needsValue.includes(opt) && value === undefined)
      return { skip: `QEMU option ${opt} without a value` };
    switch (opt) {
      case '-smp': {
        if (!/^\d+$/.test(value ?? '')) return { skip: `-smp ${value} (mvisor takes a vCPU count only)` };
        vcpus = Number(value);
        i++;
        break;
      }
      case '-append':
        cmdline = value;
        i++;
        break;
      case '-m': {
        const mem = translateMemory(value ?? '');
        if (mem === undefined) return { skip: `-m ${value} (mvisor takes a RAM size only)` };
        memory = mem;
        i++;
        break;
      }
      case '-cpu': {
        const c = translateCpu(value ?? '', p.cpuFeatures);
        if ('skip' in c) return { skip: `-cpu ${value}: ${c.skip}` };
        cpu = c.cpu;
        if (c.note !== undefined) notes.push(c.note);
        i++;
        break;
      }
      case '-machine':
      case '-M': {
        for (const item of (value ?? '').split(',')) {
          if (item === '' || item === 'pc' || item === 'type=pc' || item === 'accel=kvm') continue;
          if (item === 'pit=off') {
            // The suite drops the PIT there only so that SVM AVIC is not inhibited.
            notes.push('PIT kept (mvisor has no pit=off; it only matters to AVIC)');
            continue;
          }
          const machine = item.startsWith('type=') ? item.slice(5) : item;
          if (!item.includes('=')) return { skip: `-machine ${machine} (mvisor has only the pc machine)` };
          return { skip: `-machine ${item} (no such machine option in mvisor)` };
        }
        i++;
        break;
      }
      case '-enable-kvm':
        break;
      case '-device':
        return { skip: `-device ${value} (mvisor has no such device)` };
      case '-global':
        return { skip: `-global ${value} (mvisor has no device properties)` };
      default:
        return {
          skip: `QEMU option ${opt}${value !== undefined && !value.startsWith('-') ? ` ${value}` : ''} (no mvisor equivalent)`,
        };
    }
  }
  const config: MvisorConfig = {
    name: vmName(p.name),
    memory,
    vcpus,
    cpu,
    firmware: 'bios',
    kernel: p.kernel,
    ...(cmdline !== undefined ? { cmdline } : {}),
    ...(p.envFile !== undefined ? { modules: [{ file: p.envFile }] } : {}),
    serial: 'stdio',
    ...(p.hasPitLostTicks ? { pitLostTicks: 'discard' as const } : {}),
    // x86/run's devices, in its order.
    devices: [
      { class: 'pc-testdev' },
      { class: 'isa-debug-exit', iobase: 0xf4, iosize: 4 },
      { class: 'pci-testdev' },
    ],
  };
  if (!p.hasPitLostTicks) notes.push('lost PIT ticks replayed (this mvisor has no pitLostTicks)');
  return { config, notes };
}

/** A VM name from a test name (lowercase letters, digits, '-'). */
export function vmName(test: string): string {
  return `kut-${test.toLowerCase().replace(/[^a-z0-9-]+/g, '-')}`.slice(0, 63).replace(/-+$/, '');
}

/**
 * mvisor's exit, read like QEMU's: isa-debug-exit gives (v << 1) | 1. But
 * mvisor's own exit codes overlap those (src/vmm/main.ts: 0 the guest
 * reset or powered off, 1 a VMM or KVM error, 2 bad input, 3 a triple
 * fault or KVM internal error), so an error mvisor printed ("mvisor:
 * error: ...") decides first, and is the reason shown.
 */
export function mvisorVerdict(o: ProcessOutcome): Verdict {
  const summary = summaryLine(o.stdout);
  const s = summary !== undefined ? { summary } : {};
  if (o.timedOut) return { result: 'TIMEOUT', ...s };
  if (o.status === null)
    return { result: 'FAIL', reason: `mvisor terminated on ${o.signal ?? 'a signal'}`, ...s };
  const lines = o.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const error = lines.find((l) => l.startsWith('mvisor: error:'));
  if (error !== undefined) return { result: 'FAIL', reason: error.slice('mvisor: error: '.length), ...s };
  if (o.status === 0) {
    return {
      result: 'FAIL',
      reason: 'the guest reset or powered off (mvisor exited 0) before isa-debug-exit',
      ...s,
    };
  }
  if (o.status === 2 && lines.length > 0) {
    return { result: 'FAIL', reason: `mvisor refused the config: ${lines[0] ?? ''}`, ...s };
  }
  const v = verdictFromStatus(o.status, summary);
  if (v.result === 'FAIL' && (o.status & 1) === 0 && lines.length > 0) {
    return { ...v, reason: `mvisor exited ${o.status}: ${lines[lines.length - 1] ?? ''}` };
  }
  return v;
}
