/**
 * The board a device plugs into, and the descriptor each device file exports
 * (after MVisor's DECLARE_DEVICE and QEMU's TypeInfo): the board
 * (src/vmm/machine.ts) builds every device of a config's `devices` list from
 * its descriptor in src/vmm/board/registry.ts, and the config loader asks the
 * same descriptors which ports and memory a device claims, so that conflicts
 * are found in one place, at config time.
 *
 * A descriptor sees the board through this small interface only: no KVM
 * handles, no CLI, no manifests.
 */
import type { BlockImage } from '../../block/image.js';
import type { IoLimits } from '../../block/throttle.js';
import type { PortRange } from '../../platform/pc-map.js';
import type { CharBackend } from '../chardev/backend.js';
import type { CharSink, DebugSink } from '../../generated/vmm-config.js';
import type { Placement } from '../../platform/placement.js';
import type {
  ResolvedCharSink,
  ResolvedDebugSink,
  ResolvedFirmware,
  ResolvedImage,
} from '../config/types.js';
import type { Device, DeviceContext, IoHandler } from '../core/device.js';
import type { GuestMemory } from '../core/memory.js';
import type { PciDevice } from '../pci/device.js';
import type { VirtioDevice } from '../virtio/device.js';
import type { PiixIde } from '../storage/ide/piix-ide.js';

/** What the board offers a device being created. */
export interface Board {
  readonly ctx: DeviceContext;
  /** Guest RAM, for devices that do DMA. */
  readonly mem: GuestMemory;
  /** Keeps a device for reset, state and close (in creation order). */
  add<T extends Device>(d: T): T;
  /** Puts a handler on `length` I/O ports from `base`. */
  pio(base: number, length: number, handler: IoHandler, name: string): void;
  /** Puts a handler on `length` bytes of guest-physical MMIO from `base`. */
  mmio(base: number, length: number, handler: IoHandler, name: string): void;
  /** Attaches a PCI device as function 0 of `slot` on bus 0 (chosen at config time; else the first free); returns the slot. */
  pci(dev: PciDevice, slot: number | undefined): number;
  /** The opened image of a storage device, by device name. */
  image(device: string): BlockImage | undefined;
  /** A character backend (serial ports). */
  charBackend(sink: ResolvedCharSink): CharBackend;
  /** Where a debug console's bytes go (undefined: nowhere). */
  debugSink(out: ResolvedDebugSink, name: string): ((d: Uint8Array) => void) | undefined;
  /** Records a device's fw_cfg boot path (boot.order). */
  bootPath(device: string, path: string): void;
  /** Offers the firmware a fw_cfg file. */
  firmwareFile(name: string, data: Uint8Array): void;
  /** Reads a file the VM needs (an unreadable one is a BootError naming it and `what`). */
  readFile(path: string, what: string): Uint8Array;
  /** Ends the VM with an exit code (test devices). */
  requestStop(code: number, reason: string): void;
  /** Puts a virtio device on a PCI transport of its own (`slot` chosen at config time); returns the slot. */
  virtioPci(dev: VirtioDevice, slot: number | undefined): number;
  /** The PIIX3 IDE controller (always there). */
  readonly ide: PiixIde;
  /** Adds a floppy drive; the board creates the controller when there is one. */
  floppyDrive(drive: 0 | 1, d: { image?: BlockImage; readOnly?: boolean }): void;
  /** A device with requests in flight that stopping the VM waits for. */
  storage(d: StorageDrain): void;
}

/** A device with block requests in flight, as stopping or snapshotting the VM sees it. */
export interface StorageDrain {
  /** Requests in flight now. */
  inFlight(): number;
  /** Resolves when none is. */
  drain(): Promise<void>;
}

/** What a device occupies, known from its config alone. */
export interface DeviceClaims {
  /** I/O ports; `field` is the config field that placed them (for messages). */
  ports?: readonly (PortRange & { field: string })[];
  /** Guest-physical MMIO ranges. */
  mmio?: readonly (PortRange & { field: string })[];
}

/**
 * A device's config schema: one definition of schema/vmm-config.schema.json,
 * which scripts/gen-types.mjs writes from the descriptors (npm run gen:types)
 * together with the `Device`/`VmmDevice` unions that list them.
 */
export interface DeviceSchema {
  /** The definition's name, and so its generated type's (src/generated/vmm-config.ts). */
  readonly name: string;
  /** A VirtualMachine manifest may have it (`Device`); else only a VMM config may (`VmmDevice`). */
  readonly manifest: boolean;
  /** The JSON Schema (draft-07) of its config; `properties.class` is a const. */
  readonly definition: Readonly<Record<string, unknown>>;
}

/** What a device's `resolve` is given besides its own config. */
export interface ResolveContext {
  /** Reports a problem of one of its fields (undefined: of the device as a whole). */
  problem(field: string | undefined, message: string): void;
  /** A path of the config made absolute (relative to the config file's directory). */
  abs(path: string): string;
  /** Where it was placed, on the bus its schema's fields name (src/platform/placement.ts busOf). */
  readonly placement: Placement | undefined;
  /** Its image, checked (exists, format, writable unless read-only; `alwaysReadOnly`: a CD-ROM). */
  image(d: ImageFields, alwaysReadOnly?: boolean): ResolvedImage;
  /** A character sink; `field` names it when a second device asks for stdio. */
  charSink(s: CharSink, field: string): ResolvedCharSink;
  /** A debug output. */
  debugSink(s: DebugSink): ResolvedDebugSink;
  /** The VM's firmware (resolved before its devices). */
  readonly firmware: ResolvedFirmware;
}

/** The image fields of a storage device's config. */
export interface ImageFields {
  image: string;
  format?: 'raw' | 'qcow2';
  readonly?: boolean;
  snapshot?: boolean;
  throttle?: IoLimits;
}

/** The schema properties of a hard disk's image (ata-disk, virtio-block): the ImageFields. */
export const DISK_IMAGE_PROPERTIES = {
  image: { $ref: '#/definitions/ImagePath' },
  format: { $ref: '#/definitions/ImageFormat' },
  readonly: { $ref: '#/definitions/ReadOnly' },
  snapshot: { $ref: '#/definitions/Snapshot' },
  throttle: { $ref: '#/definitions/IoLimits' },
} as const;

/**
 * A device, as its own file describes it to the board: adding a device is
 * that file plus one line in src/vmm/board/registry.ts.
 */
export interface DeviceDescriptor<Raw extends { class: string }, Resolved extends { class: Raw['class'] }> {
  /** The config's `class:`. */
  readonly class: Raw['class'];
  /** Its config's schema. */
  readonly schema: DeviceSchema;
  /** The saved-state version its devices write (undefined: no state). */
  readonly stateVersion?: number;
  /** Its schema-valid config, checked and with defaults filled (problems go to `ctx`). */
  resolve(raw: Raw, ctx: ResolveContext): Resolved;
  /** Ports and memory it takes (PCI slots and drive positions: placement). */
  claims?(d: Resolved): DeviceClaims;
  /** Builds the device onto the board. */
  create(d: Resolved, board: Board): void;
}

/** Any descriptor (method parameters are bivariant, so every descriptor is one). */
export type AnyDeviceDescriptor = DeviceDescriptor<{ class: string }, { class: string }>;
