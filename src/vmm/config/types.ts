/**
 * The VMM configuration after loading: validated, normalised, independent of
 * YAML (no source positions, no size strings, no relative paths). This is
 * what `runVmm()` receives. The input shape (what a user writes) is the
 * generated `VmmConfig` type in `src/generated/vmm-config.ts`.
 *
 * Every field is plain data (JSON-serialisable), so the object can be sent
 * to another process as is.
 */

import type { ResolvedDevice } from '../board/registry.js';
import type { IoLimits } from '../../block/throttle.js';

/** `host`: the host CPU as KVM reports it; `baseline`: a fixed, portable x86-64 model. */
export type CpuModel = 'host' | 'baseline';

export interface ResolvedCpu {
  model: CpuModel;
  /** Feature adjustments on top of the model: `{cx16: false, xsaveerptr: true}`. */
  features: Record<string, boolean>;
}

/** Where a character device (serial port) goes. Paths are absolute. */
export type ResolvedCharSink =
  { kind: 'stdio' } | { kind: 'none' } | { kind: 'file'; path: string } | { kind: 'socket'; path: string };

/** Where a write-only debug console goes. Paths are absolute. */
export type ResolvedDebugSink = { kind: 'none' } | { kind: 'stderr' } | { kind: 'file'; path: string };

/** An extra 16550 UART (COM2..COM4). */
export interface ResolvedSerialPortDevice {
  class: 'serial-port';
  /** I/O base port: 0x2f8, 0x3e8 or 0x2e8 (the device uses 8 ports from there). */
  port: number;
  /** ISA IRQ: 3 or 4 (default: 3 for 0x2f8 and 0x2e8, 4 for 0x3e8). */
  irq: number;
  serial: ResolvedCharSink;
}

/** An extra write-only debug console (one I/O port, like the one at 0x402). */
export interface ResolvedDebugConsoleDevice {
  class: 'debug-console';
  port: number;
  output: ResolvedDebugSink;
}

/**
 * A legacy option ROM offered to the firmware as fw_cfg `genroms/<file name>`
 * (SeaBIOS runs it and, when its PnP header has a bootstrap entry vector,
 * lists it as a boot device `/rom@genroms/<file name>`).
 */
export interface ResolvedOptionRomDevice {
  class: 'option-rom';
  /** Device name, used in `boot.order`; unique among devices. */
  name: string;
  /** Absolute path of the ROM image (0x55 0xAA header, at most 128 KiB); exists and is readable. */
  file: string;
}

/** A disk image as a storage device uses it. */
export interface ResolvedImage {
  /** Absolute path; exists and is readable (and writable unless readOnly or snapshot). */
  path: string;
  /** raw | qcow2; detected from the file when not configured. */
  format?: 'raw' | 'qcow2';
  /** The guest cannot write (write commands fail; ATAPI media are always read-only). */
  readOnly: boolean;
  /** Writes go to a temporary overlay deleted at exit (MVisor's `snapshot: yes`). */
  snapshot: boolean;
  /** I/O limits (requests and bytes a second); absent: none. */
  throttle?: IoLimits;
}

/** virtio-blk on its own PCI slot (virtio-pci modern). */
export interface ResolvedVirtioBlockDevice {
  class: 'virtio-block';
  name: string;
  image: ResolvedImage;
  /** Serial number the guest reads with VIRTIO_BLK_T_GET_ID (at most 20 bytes). */
  serial: string;
  /** Request queues, 1..16. */
  queues: number;
  /** PCI slot on bus 0 (2..31); assigned in device order when not configured. */
  slot?: number;
}

/** An ATA hard disk on the PIIX3 IDE controller. */
export interface ResolvedAtaDiskDevice {
  class: 'ata-disk';
  name: string;
  image: ResolvedImage;
  /** IDE channel 0 (primary, 0x1F0, IRQ 14) or 1 (secondary, 0x170, IRQ 15) and unit 0 (master) or 1 (slave). */
  channel: 0 | 1;
  unit: 0 | 1;
}

/** An ATAPI CD-ROM drive on the PIIX3 IDE controller; no image is an empty drive. */
export interface ResolvedAtaCdromDevice {
  class: 'ata-cdrom';
  name: string;
  image?: ResolvedImage;
  channel: 0 | 1;
  unit: 0 | 1;
}

/** A floppy drive (A: is drive 0) on the i82078 controller; no image is an empty drive. */
export interface ResolvedFloppyDevice {
  class: 'floppy';
  name: string;
  image?: ResolvedImage;
  drive: 0 | 1;
}

export type ResolvedStorageDevice =
  ResolvedVirtioBlockDevice | ResolvedAtaDiskDevice | ResolvedAtaCdromDevice | ResolvedFloppyDevice;

/** QEMU's isa-debug-exit: a write of v ends the VMM with exit status (v << 1) | 1. */
export interface ResolvedIsaDebugExitDevice {
  class: 'isa-debug-exit';
  /** I/O base (QEMU default 0x501; kvm-unit-tests uses 0xf4). */
  iobase: number;
  /** Ports from iobase: 1, 2 or 4 (QEMU default 2). */
  iosize: number;
}

/** QEMU's pc-testdev (ports 0xe0-0xef, 0x2000, MMIO test page): what kvm-unit-tests uses. */
export interface ResolvedPcTestdevDevice {
  class: 'pc-testdev';
}

/** QEMU's pci-testdev, PCI 1b36:0005. */
export interface ResolvedPciTestdevDevice {
  class: 'pci-testdev';
  /** PCI slot on bus 0 (2..31); assigned like virtio-block's when not configured. */
  slot?: number;
}

export type ResolvedTestDevice =
  ResolvedIsaDebugExitDevice | ResolvedPcTestdevDevice | ResolvedPciTestdevDevice;

/**
 * A resolved device of any class: the union of what the registry's
 * descriptors resolve to (a new device's resolved type may live in its file).
 */
export type { ResolvedDevice };

/** How the VM starts: SeaBIOS (or another BIOS image) or a direct kernel boot. */
export type ResolvedFirmware =
  { kind: 'direct' } | { kind: 'bios'; /** Absolute path of the BIOS image. */ path: string };

export interface ResolvedBoot {
  /** Boot devices by device name, first tried first (written to fw_cfg `bootorder`). */
  order: string[];
  /** Show the firmware's boot menu (fw_cfg FW_CFG_BOOT_MENU). */
  menu: boolean;
  /** How long the boot menu waits for a key, in ms (fw_cfg `etc/boot-menu-wait`). */
  menuTimeoutMs: number;
}

/** A file the guest firmware/OS can read through fw_cfg (`opt/...`), like QEMU's -fw_cfg. */
export type ResolvedFwCfgFile = { name: string; path: string } | { name: string; text: string };

export interface ResolvedVmmConfig {
  name: string;
  /** Absolute path of the config file the VM came from ('' when parsed from a string without a file). */
  configPath: string;
  /** Guest RAM in bytes: a multiple of 4 KiB, 2 MiB .. 1 TiB. */
  memory: number;
  /** 1..255. */
  vcpus: number;
  cpu: ResolvedCpu;
  /** Machine type: i440FX + PIIX3/PIIX4 (QEMU's `pc`). */
  machine: 'pc';
  /** bios: firmware boot (a `kernel`, if any, is a multiboot kernel the firmware boots via mvisor's option ROM); direct: `kernel` is loaded by the VMM. */
  firmware: ResolvedFirmware;
  /** Build ACPI tables (fw_cfg for firmware boot, guest memory for direct boot). */
  acpi: boolean;
  /** SMBIOS system UUID (type 1), lowercase 8-4-4-4-12; derived from the name when not configured. */
  uuid: string;
  boot: ResolvedBoot;
  /** fw_cfg files (names start with `opt/`). */
  fwCfgFiles: ResolvedFwCfgFile[];
  /** Absolute path of an ELF vmlinux (PVH entry) or a bzImage (direct boot only); exists and is readable. */
  kernel?: string;
  /** Multiboot modules (QEMU's -initrd "file args,file args"), in order; multiboot kernels only. */
  modules?: Array<{ path: string; cmdline: string }>;
  /** Absolute path of the initrd, if any; exists and is readable. */
  initrd?: string;
  /** Kernel command line ('' if none). */
  cmdline: string;
  /** COM1 (0x3f8, IRQ 4). */
  serial: ResolvedCharSink;
  /** The debug console at port 0x402. */
  debugConsole: ResolvedDebugSink;
  /** A guest reset makes the VMM exit with code 0. */
  onReset: 'exit';
  /** Missed PIT ticks: replayed (delay, the default) or dropped (discard). */
  pitLostTicks?: 'delay' | 'discard';
  /** A triple fault stops the VM: the VMM prints an error line and exits with code 3. */
  onTripleFault: 'stop';
  devices: ResolvedDevice[];
}
