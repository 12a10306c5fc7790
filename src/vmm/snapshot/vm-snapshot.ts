/**
 * A whole VM's state but its RAM: the in-kernel interrupt controllers, PIT
 * and VM clock, every vCPU (./vcpu-state.ts), and every device's own
 * versioned state in the board's creation order, under a header naming the
 * board, the config it ran with and each device with its state version.
 * Saved while every vCPU is parked outside KVM_RUN; restored into a VM built
 * from the same config whose vCPUs have not run yet.
 *
 * A device without state support makes the snapshot refuse, naming it; a
 * state from another config, board or format, or naming other devices, is
 * refused before anything is loaded.
 */
import type { ResolvedVmmConfig } from '../config/types.js';
import type { Device, DeviceState } from '../core/device.js';
import type { KvmVm } from '../core/kvm-vm.js';
import { lazyCrypto } from '../../common/builtins.js';
import { diskChanges, diskIdentity, type DiskIdentity } from './disk-identity.js';
import { loadVcpu, saveVcpu, type VcpuSnapshot } from './vcpu-state.js';

/** The version of the state below; another is refused. */
export const VM_STATE_VERSION = 1;

export class SnapshotError extends Error {
  override name = 'SnapshotError';
}

export interface VmSnapshotState {
  version: number;
  board: 'pc';
  name: string;
  /** A hash of the resolved config (its file's path aside): restore needs the same. */
  config: string;
  createdAt: string;
  /** KVM_GET_IRQCHIP of the master PIC, slave PIC and IOAPIC; KVM_GET_PIT2; KVM_GET_CLOCK (base64). */
  kvm: { irqchip: string[]; pit2: string; clock: string };
  vcpus: VcpuSnapshot[];
  /** Sizes of the RAM regions, in the order the file holds them. */
  ram: number[];
  /** Each device's state, in creation order. */
  devices: { name: string; version: number; state: DeviceState }[];
  /** Block requests that were in flight when the VM was paused (completed before the state was taken). */
  drainedRequests: number;
  /** The disk images it was taken over (./disk-identity.ts). */
  disks: DiskIdentity[];
}

/** What a snapshot reads and writes. */
export interface SnapshotSubject {
  readonly config: ResolvedVmmConfig;
  readonly vm: KvmVm;
  readonly devices: readonly Device[];
}

/**
 * The hash of a resolved config that a restore must match: all of it but
 * the config file's path and where COM1 and the debug console go (host
 * wiring the guest cannot see, which `--serial` may change).
 */
export function configFingerprint(config: ResolvedVmmConfig): string {
  const { configPath: _path, serial: _serial, debugConsole: _debug, ...rest } = config;
  return lazyCrypto().createHash('sha256').update(JSON.stringify(rest)).digest('hex');
}

/** The devices that cannot save their state (a snapshot refuses them). */
export function devicesWithoutState(devices: readonly Device[]): string[] {
  return devices.filter((d) => !d.saveState || !d.loadState).map((d) => d.name);
}

/** The identities of the VM's disk images, from the files (flushed or closed by now). */
export function diskIdentities(config: ResolvedVmmConfig): DiskIdentity[] {
  return config.devices.flatMap((d) =>
    'image' in d && d.image !== undefined ? [diskIdentity(d.name, d.image.path)] : [],
  );
}

/** Takes the state of a paused VM (its disks flushed or closed). */
export function captureVm(s: SnapshotSubject, drainedRequests: number): VmSnapshotState {
  const missing = devicesWithoutState(s.devices);
  if (missing.length > 0)
    throw new SnapshotError(`cannot snapshot: no saved-state support in ${missing.join(', ')}`);
  const native = s.vm.native;
  const msrs = s.vm.msrIndices;
  return {
    version: VM_STATE_VERSION,
    board: 'pc',
    name: s.config.name,
    config: configFingerprint(s.config),
    createdAt: new Date().toISOString(),
    kvm: {
      irqchip: [0, 1, 2].map((chip) => native.getState('irqchip', chip).toString('base64')),
      pit2: native.getState('pit2').toString('base64'),
      clock: native.getState('clock').toString('base64'),
    },
    vcpus: s.vm.vcpus.map((v) => saveVcpu(v, msrs)),
    ram: s.vm.ramBlocks.map((b) => b.size),
    devices: s.devices.map((d) => {
      const state = d.saveState!();
      return { name: d.name, version: state.version, state };
    }),
    drainedRequests,
    disks: diskIdentities(s.config),
  };
}

/**
 * Refuses a snapshot whose disks changed since it was taken: checked before
 * the restoring VMM opens them (so that nothing it does to them counts).
 */
export function checkSnapshotDisks(state: unknown, file: string): void {
  const disks = (state as Partial<VmSnapshotState> | null)?.disks;
  if (!Array.isArray(disks)) return; // checkSnapshot says what is wrong with it
  const changes = diskChanges(disks);
  if (changes.length > 0) throw new SnapshotError(`${file}: ${changes.join('; ')}`);
}

/** Checks that `state` is a snapshot of this VM (before its RAM or anything else is loaded). */
export function checkSnapshot(s: SnapshotSubject, state: unknown, file: string): VmSnapshotState {
  const st = state as Partial<VmSnapshotState> | null;
  if (typeof st !== 'object' || st === null || typeof st.version !== 'number')
    throw new SnapshotError(`${file}: not a VM state`);
  if (st.version !== VM_STATE_VERSION)
    throw new SnapshotError(`${file}: VM state version ${st.version}, this mvisor reads ${VM_STATE_VERSION}`);
  if (st.board !== 'pc') throw new SnapshotError(`${file}: a snapshot of board ${String(st.board)}, not pc`);
  if (st.config !== configFingerprint(s.config))
    throw new SnapshotError(
      `${file}: a snapshot of ${st.name === s.config.name ? 'another config of VM' : 'VM'} ${JSON.stringify(st.name)}; ` +
        `restore it with the config it was taken with`,
    );
  const names = s.devices.map((d) => d.name);
  const saved = (st.devices ?? []).map((d) => d.name);
  if (names.join('\n') !== saved.join('\n'))
    throw new SnapshotError(
      `${file}: its devices (${saved.join(', ')}) are not this VM's (${names.join(', ')})`,
    );
  if ((st.vcpus ?? []).length !== s.vm.vcpus.length)
    throw new SnapshotError(`${file}: ${st.vcpus?.length ?? 0} vCPUs saved, the VM has ${s.vm.vcpus.length}`);
  const ram = s.vm.ramBlocks.map((b) => b.size);
  if ((st.ram ?? []).join(',') !== ram.join(','))
    throw new SnapshotError(
      `${file}: its RAM regions (${st.ram?.join(', ')}) are not this VM's (${ram.join(', ')})`,
    );
  return st as VmSnapshotState;
}

/**
 * Loads a checked state into a VM whose vCPUs have not run: devices first
 * (a device may drive its interrupt lines as it loads), then the in-kernel
 * chips and clock, then the vCPUs, so that what the devices did on the way
 * is overwritten by the saved interrupt state. Returns warnings (MSRs KVM
 * refused).
 */
export function restoreVm(s: SnapshotSubject, st: VmSnapshotState): string[] {
  s.devices.forEach((d, i) => d.loadState!(st.devices[i]!.state));
  const native = s.vm.native;
  st.kvm.irqchip.forEach((b64) => native.setState('irqchip', Buffer.from(b64, 'base64')));
  native.setState('pit2', Buffer.from(st.kvm.pit2, 'base64'));
  // Only the clock value: the flags KVM reported (TSC_STABLE...) are not for setting.
  const clock = Buffer.from(st.kvm.clock, 'base64');
  clock.writeUInt32LE(0, 8);
  native.setState('clock', clock);
  const warnings: string[] = [];
  s.vm.vcpus.forEach((v, i) => {
    const refused = loadVcpu(v, st.vcpus[i]!);
    if (refused.length > 0)
      warnings.push(`vcpu${i}: KVM refused MSRs ${refused.map((m) => `0x${m}`).join(', ')}`);
  });
  return warnings;
}
