/**
 * Saved state of the virtio-pci transport: the part of a PciDevice's
 * saved state that is the function's own (`state.device`), as
 * `{ transport, device? }` where `transport` holds the common
 * configuration registers, the ISR and the queues, and `device` what the
 * device model saves (omitted when it saves nothing). Checked in full here
 * before the transport applies any of it. A module of its own to keep
 * pci-transport.ts readable.
 */
import { DeviceStateError } from '../core/device.js';
import type { VirtioPciCommonConfig } from './pci-common-config.js';
import type { SplitQueue, VirtqueueState } from './virtqueue.js';

/** What the transport saves besides config space and MSI-X. */
export interface TransportState {
  driverFeatures: string;
  deviceFeatureSelect: number;
  driverFeatureSelect: number;
  status: number;
  configGeneration: number;
  configVector: number;
  queueSelect: number;
  isr: number;
  queues: VirtqueueState[];
}

export interface VirtioPciSavedState {
  transport: TransportState;
  device?: unknown;
}

/** A saved state that passed `checkTransportState`. */
export interface CheckedTransportState {
  transport: TransportState;
  /** The driver features, parsed. */
  features: bigint;
  device: unknown;
}

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

export function saveTransportState(
  common: VirtioPciCommonConfig,
  isr: number,
  queues: readonly SplitQueue[],
  device: unknown,
): VirtioPciSavedState {
  const t: TransportState = {
    driverFeatures: common.driverFeatures.toString(16),
    deviceFeatureSelect: common.deviceFeatureSelect,
    driverFeatureSelect: common.driverFeatureSelect,
    status: common.status,
    configGeneration: common.configGeneration,
    configVector: common.configVector,
    queueSelect: common.queueSelect,
    isr,
    queues: queues.map((q) => q.saveState()),
  };
  return device === undefined ? { transport: t } : { transport: t, device };
}

/**
 * Checks the shape and ranges of a saved transport state for a function
 * of `numQueues` queues offering `offered`; throws DeviceStateError.
 * (The queues' own states are checked as they load.)
 */
export function checkTransportState(
  state: unknown,
  name: string,
  numQueues: number,
  offered: bigint,
): CheckedTransportState {
  const s = state as { transport?: Partial<TransportState>; device?: unknown } | undefined;
  const t = s?.transport;
  const u = (v: unknown, max: number) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= max;
  if (
    !t ||
    typeof t.driverFeatures !== 'string' ||
    !/^[0-9a-f]{1,16}$/.test(t.driverFeatures) ||
    !u(t.deviceFeatureSelect, 0xffffffff) ||
    !u(t.driverFeatureSelect, 0xffffffff) ||
    !u(t.status, 0xff) ||
    !u(t.configGeneration, 0xff) ||
    !u(t.configVector, 0xffff) ||
    !u(t.queueSelect, 0xffff) ||
    !u(t.isr, 3) ||
    !Array.isArray(t.queues) ||
    t.queues.length !== numQueues
  ) {
    throw new DeviceStateError(`${name}: bad virtio transport state`);
  }
  const features = BigInt(`0x${t.driverFeatures}`);
  if (features & ~offered) {
    throw new DeviceStateError(`${name}: saved features ${hex(features)} were not offered`);
  }
  return { transport: t as TransportState, features, device: s.device };
}

/** Sets the common configuration registers from a checked state. */
export function restoreCommonConfig(common: VirtioPciCommonConfig, s: CheckedTransportState): void {
  const t = s.transport;
  common.driverFeatures = s.features;
  common.deviceFeatureSelect = t.deviceFeatureSelect;
  common.driverFeatureSelect = t.driverFeatureSelect;
  common.status = t.status;
  common.configGeneration = t.configGeneration;
  common.configVector = t.configVector;
  common.queueSelect = t.queueSelect;
}
