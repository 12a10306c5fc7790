/**
 * The device registry: every `class:` a VMM config's `devices` may name, and
 * the descriptor (in the device's own file) that claims its resources and
 * builds it. Adding a device is one file plus one line here; the type below
 * makes a class without a descriptor, or a descriptor under the wrong class,
 * a compile error.
 */
import type { DeviceClass, DeviceClaims, DeviceDescriptor, ResolvedDeviceOf } from './board.js';
import type { ResolvedDevice } from '../config/types.js';
import { serialPortDevice } from '../serial/uart-16550a.js';
import { debugConsoleDevice } from '../firmware/debug-console.js';
import { optionRomDevice } from '../firmware/option-rom-device.js';
import { virtioBlockDevice } from '../virtio/blk.js';
import { ataDiskDevice } from '../storage/ide/ata-disk.js';
import { ataCdromDevice } from '../storage/ide/atapi-cdrom.js';
import { floppyDevice } from '../storage/floppy-drive.js';
import { isaDebugExitDevice } from '../testdev/isa-debug-exit.js';
import { pcTestdevDevice } from '../testdev/pc-testdev.js';
import { pciTestdevDevice } from '../testdev/pci-testdev.js';

export const DEVICE_REGISTRY: { readonly [C in DeviceClass]: DeviceDescriptor<C> } = {
  'serial-port': serialPortDevice,
  'debug-console': debugConsoleDevice,
  'option-rom': optionRomDevice,
  'virtio-block': virtioBlockDevice,
  'ata-disk': ataDiskDevice,
  'ata-cdrom': ataCdromDevice,
  floppy: floppyDevice,
  'isa-debug-exit': isaDebugExitDevice,
  'pc-testdev': pcTestdevDevice,
  'pci-testdev': pciTestdevDevice,
};

/** The descriptor of a configured device. */
export function descriptorOf<C extends DeviceClass>(d: ResolvedDeviceOf<C>): DeviceDescriptor<C> {
  return DEVICE_REGISTRY[d.class as C];
}

/** What a configured device claims (ports, MMIO), from its descriptor. */
export function claimsOf(d: ResolvedDevice): DeviceClaims {
  const desc = descriptorOf(d) as DeviceDescriptor;
  return desc.claims?.(d) ?? {};
}
