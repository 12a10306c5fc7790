/**
 * The device registry: every `class:` a VMM config's `devices` may name, and
 * the descriptor (in the device's own file) that gives its schema, resolves
 * its config, claims its resources and builds it. Adding a device is one file
 * plus one line here, then `npm run gen:types` (which writes its schema into
 * schema/vmm-config.schema.json and its config type); the checks below make a
 * descriptor under the wrong key, or a schema class without a descriptor, a
 * compile error.
 */
import type { VmmDevice } from '../../generated/vmm-config.js';
import type { AnyDeviceDescriptor, DeviceClaims, DeviceDescriptor } from './board.js';
import { serialPortDevice } from '../serial/serial-port-device.js';
import { debugConsoleDevice } from '../firmware/debug-console.js';
import { optionRomDevice } from '../firmware/option-rom-device.js';
import { virtioBlockDevice } from '../virtio/blk.js';
import { ataDiskDevice } from '../storage/ide/ata-disk.js';
import { ataCdromDevice } from '../storage/ide/ata-cdrom-device.js';
import { floppyDevice } from '../storage/floppy-drive.js';
import { isaDebugExitDevice } from '../testdev/isa-debug-exit.js';
import { pcTestdevDevice } from '../testdev/pc-testdev.js';
import { pciTestdevDevice } from '../testdev/pci-testdev.js';
import { pvpanicDevice } from '../misc/pvpanic-pci.js';

export const DEVICE_REGISTRY = {
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
  pvpanic: pvpanicDevice,
} as const satisfies { readonly [C in VmmDevice['class']]: { readonly class: C } }; // one per schema class, none else

type Registry = typeof DEVICE_REGISTRY;
export type DeviceClass = keyof Registry;
/** The resolved config of a device of class C (what its descriptor's `resolve` returns). */
export type ResolvedDeviceOf<C extends DeviceClass> =
  Registry[C] extends DeviceDescriptor<infer _Raw, infer R> ? R : never;
/** A resolved device of any class. */
export type ResolvedDevice = { [C in DeviceClass]: ResolvedDeviceOf<C> }[DeviceClass];

/** The descriptor of a device class. */
export function descriptorOf(c: string): AnyDeviceDescriptor | undefined {
  return Object.hasOwn(DEVICE_REGISTRY, c) ? DEVICE_REGISTRY[c as DeviceClass] : undefined;
}

/** What a configured device claims (ports, MMIO), from its descriptor. */
export function claimsOf(d: ResolvedDevice): DeviceClaims {
  return descriptorOf(d.class)?.claims?.(d) ?? {};
}
