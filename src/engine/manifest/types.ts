/**
 * Normalised specs: what `DesiredResource.spec` holds for each kind after
 * loading. Same shape as the manifest (so a normalised spec is itself a valid
 * spec, and the schema's update annotations apply to its paths) but with
 * every default filled, sizes in bytes, durations in seconds, paths absolute.
 * Optional fields without a default are left out (never `undefined`), so the
 * same manifest always gives deep-equal (and JSON-equal) specs.
 *
 * The input shapes (what users write) are the generated types in
 * src/generated/manifests/*.ts.
 */
import type { DesiredResource, Kind } from '../types.js';
import type { DiskSpec } from '../../generated/manifests/disk.js';
import type { HostSpec } from '../../generated/manifests/host.js';
import type { NetworkSpec } from '../../generated/manifests/network.js';
import type { VirtualMachineSpec } from '../../generated/manifests/virtual-machine.js';
import type { DebugConsoleDevice, SerialPortDevice } from '../../generated/vmm-config.js';
import { VMM_CONFIG_DEFAULTS } from '../../platform/vmm-schema.js';

export type { DiskSpec, HostSpec, NetworkSpec, VirtualMachineSpec };
export type { VfioAssignmentSpec } from '../../generated/manifests/vfio-assignment.js';

/** The host every resource is on unless it names another; it exists without a Host manifest. */
export const LOCAL_HOST = 'local';

/**
 * Defaults of optional spec fields (the schemas' `default` annotations say
 * the same; a unit test checks they agree). `uuid` has no fixed default: it
 * is derived from the VM's name (`defaultVmUuid`).
 */
export const MANIFEST_DEFAULTS = {
  VirtualMachine: {
    memory: '128M',
    vcpus: 1,
    cpu: 'host',
    firmware: 'bios',
    machine: 'pc',
    acpi: true,
    boot: VMM_CONFIG_DEFAULTS.boot,
    fwCfg: [],
    disks: [],
    networks: [],
    serial: 'console',
    devices: [],
    host: LOCAL_HOST,
    running: true,
    shutdownTimeout: '30s',
  },
  DirectKernelBoot: { cmdline: '' },
  DiskAttachment: { bus: 'virtio', readonly: false },
  Disk: { format: 'raw' },
  Network: { mode: 'user' },
  VfioAssignment: { host: LOCAL_HOST },
} as const satisfies {
  VirtualMachine: Required<Omit<VirtualMachineSpec, 'uuid'>>;
  DirectKernelBoot: { cmdline: string };
  DiskAttachment: { bus: NormalizedDiskBus; readonly: boolean };
  Disk: Partial<DiskSpec>;
  Network: Partial<NetworkSpec>;
  VfioAssignment: { host: string };
};

/** `bios`: the default BIOS image; `{bios: {image}}`: another one (absolute); else a direct kernel boot. */
export type NormalizedFirmware =
  'bios' | { bios: { image: string } } | { kernel: string; initrd?: string; cmdline: string };

/** `pc`, or the pc with the firmware's debug output captured (`debug: false` normalises to `pc`). */
export type NormalizedMachine = 'pc' | { type: 'pc'; debug: true };

export type NormalizedBoot = { order: string[]; menu: boolean; menuTimeout: number };

/** A fw_cfg file: `file` absolute. */
export type NormalizedFwCfgItem = { name: string; file: string } | { name: string; string: string };

export type NormalizedSerial = 'console' | 'none' | { file: string };

/** A serial-port device of the VMM: irq filled, sink paths absolute (no `stdio` for a managed VM). */
export type NormalizedSerialPortDevice = {
  class: 'serial-port';
  port: SerialPortDevice['port'];
  irq: 3 | 4;
  serial: 'none' | { file: string } | { socket: string };
};

export type NormalizedDebugConsoleDevice = {
  class: 'debug-console';
  port: DebugConsoleDevice['port'];
  output: 'stderr' | { file: string };
};

/** An option ROM: `file` absolute (the VMM checks the image when the VM starts). */
export type NormalizedOptionRomDevice = { class: 'option-rom'; name: string; file: string };

/** Storage devices of spec.devices (images the engine does not manage): `image` absolute, defaults filled. */
export type NormalizedVirtioBlockDevice = {
  class: 'virtio-block';
  name: string;
  image: string;
  format?: 'raw' | 'qcow2';
  readonly: boolean;
  snapshot: boolean;
  throttle?: NormalizedIoLimits;
  /** Default: the name (its first 20 characters). */
  serial: string;
  queues: number;
  /** Absent: assigned by the VMM in device order. */
  slot?: number;
};

export type NormalizedAtaDiskDevice = {
  class: 'ata-disk';
  name: string;
  image: string;
  format?: 'raw' | 'qcow2';
  readonly: boolean;
  snapshot: boolean;
  throttle?: NormalizedIoLimits;
  channel?: 0 | 1;
  unit?: 0 | 1;
};

export type NormalizedAtaCdromDevice = {
  class: 'ata-cdrom';
  name: string;
  /** Absent: an empty drive. */
  image?: string;
  format?: 'raw' | 'qcow2';
  channel?: 0 | 1;
  unit?: 0 | 1;
};

export type NormalizedFloppyDevice = {
  class: 'floppy';
  name: string;
  image?: string;
  format?: 'raw' | 'qcow2';
  readonly: boolean;
  drive?: 0 | 1;
};

export type NormalizedDevice =
  | NormalizedSerialPortDevice
  | NormalizedDebugConsoleDevice
  | NormalizedOptionRomDevice
  | NormalizedVirtioBlockDevice
  | NormalizedAtaDiskDevice
  | NormalizedAtaCdromDevice
  | NormalizedFloppyDevice;

/** How a VM's guest sees an attached Disk: virtio-blk, an IDE disk, an IDE CD-ROM or a floppy. */
export type NormalizedDiskBus = 'virtio' | 'ata' | 'cdrom' | 'floppy';

/** An attached Disk; the VMM device is named after the Disk (`boot.order` uses that name). A cdrom is always read-only. */
export type NormalizedDiskAttachment = {
  disk: string;
  bus: NormalizedDiskBus;
  readonly: boolean;
  /** Absent: no I/O limits. */
  throttle?: NormalizedIoLimits;
};

/** I/O limits with their fields in a fixed order (equal limits serialise equally). */
export type NormalizedIoLimits = { iops?: number; bytesPerSecond?: number };

export type NormalizedVirtualMachineSpec = {
  /** Bytes. */
  memory: number;
  vcpus: number;
  /** Canonical `<model>[,+feature|-feature...]`: features sorted by name, each once. */
  cpu: string;
  firmware: NormalizedFirmware;
  machine: NormalizedMachine;
  acpi: boolean;
  /** Lowercase 8-4-4-4-12; derived from the VM name when the manifest gives none. */
  uuid: string;
  boot: NormalizedBoot;
  fwCfg: NormalizedFwCfgItem[];
  disks: NormalizedDiskAttachment[];
  networks: { network: string }[];
  serial: NormalizedSerial;
  devices: NormalizedDevice[];
  host: string;
  running: boolean;
  /** Seconds. */
  shutdownTimeout: number;
};

export type NormalizedDiskSpec = {
  format: 'raw' | 'qcow2';
  /** Bytes (a multiple of 512). */
  size: number;
  /** Absolute; absent when the engine chooses (under the host's state directory). */
  path?: string;
  /** Absolute (qcow2 only). */
  backingFile?: string;
  /** Absent means 'created' (delete the file only if mvctl created it). */
  deletePolicy?: 'created' | 'delete' | 'keep';
};

export type NormalizedNetworkSpec = {
  mode: 'user' | 'tap';
  /** Canonical `a.b.c.d/n` with no host bits set. */
  cidr?: string;
};

export type NormalizedVfioAssignmentSpec = {
  host: string;
  /** Canonical lower-case `dddd:bb:dd.f`. */
  address: string;
  vm: string;
};

export type NormalizedHostSpec = {
  /** `local` or `ssh://[user@]host[:port]`. */
  address: string;
  /** Absolute for the local host; for an ssh host, `~/...` is kept (the home directory over there). */
  stateDir?: string;
};

export interface NormalizedSpecs {
  VirtualMachine: NormalizedVirtualMachineSpec;
  Disk: NormalizedDiskSpec;
  Network: NormalizedNetworkSpec;
  VfioAssignment: NormalizedVfioAssignmentSpec;
  Host: NormalizedHostSpec;
}

/** The normalised spec of a loaded resource, typed by its kind. */
export function specOf<K extends Kind>(r: DesiredResource & { kind: K }): NormalizedSpecs[K] {
  return r.spec as NormalizedSpecs[K];
}
