/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/manifests/virtual-machine.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * A virtual machine: one VMM process on a host.
 */
export interface VirtualMachineManifest {
  /**
   * Version of the manifest format.
   */
  apiVersion: 'mvisor.dev/v1alpha1';
  kind: 'VirtualMachine';
  metadata: Metadata;
  spec?: VirtualMachineSpec;
}
/**
 * Name and labels of a resource.
 */
export interface Metadata {
  /**
   * A resource name (a DNS label): 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit. Unique per kind.
   */
  name: string;
  labels?: Labels;
}
/**
 * Free-form key/value labels (keys: an optional DNS-style prefix and '/', then 1-63 letters, digits, '-', '_' or '.').
 */
export interface Labels {
  [k: string]: string | undefined;
}
/**
 * Desired state of a virtual machine.
 */
export interface VirtualMachineSpec {
  /**
   * Guest RAM: a number of bytes, or a size string such as 128M, 2G or 512MiB (powers of 1024). 2 MiB .. 1 TiB, a multiple of 4 KiB. Default 128M.
   */
  memory?: number | string;
  /**
   * Number of virtual CPUs.
   */
  vcpus?: number;
  /**
   * CPU model and feature adjustments: "<model>[,+feature|-feature...]", e.g. host or baseline,-cx16,+xsaveerptr. Default host.
   */
  cpu?: string;
  /**
   * How the VM boots: bios (SeaBIOS, Debian's /usr/share/seabios/bios-256k.bin), {bios: {image: path}} (another BIOS image), or a direct kernel boot {kernel, initrd?, cmdline?}. Default bios.
   */
  firmware?: 'bios' | BiosFirmware | DirectKernelBoot;
  /**
   * Machine type: pc, or {type: pc, debug: true} to also write the firmware's debug output (port 0x402) to firmware.log in the VM's state directory. Default pc.
   */
  machine?: 'pc' | MachineObject;
  /**
   * Give the guest ACPI tables. Default true.
   */
  acpi?: boolean;
  /**
   * SMBIOS system UUID (8-4-4-4-12 hex digits). Default: derived from the VM name (a UUID v5), the same at every start.
   */
  uuid?: string;
  boot?: Boot;
  /**
   * Files the guest can read through fw_cfg (like QEMU's -fw_cfg): each {name, file} or {name, string}; names start with opt/ and are unique.
   */
  fwCfg?: (FwCfgFile | FwCfgString)[];
  /**
   * Disks attached to the VM, in order (each names a Disk resource; the attached device is named after the Disk, for boot.order). Auto-assigned positions (PCI slots, IDE channel/unit, floppy drive) follow this order, before spec.devices.
   */
  disks?: DiskAttachment[];
  /**
   * Network interfaces, in order (each names a Network resource).
   */
  networks?: NetworkAttachment[];
  /**
   * Where the first serial port (COM1) goes: console (a Unix socket that `mvctl console` attaches to), none, or {file: path}. Default console.
   */
  serial?: ('console' | 'none') | SerialFile;
  /**
   * Extra devices, each an object with a `class` (the same shapes as the VMM config's devices).
   */
  devices?: (
    | SerialPortDevice
    | DebugConsoleDevice
    | OptionRomDevice
    | VirtioBlockDevice
    | AtaDiskDevice
    | AtaCdromDevice
    | FloppyDevice
  )[];
  /**
   * The Host the VM runs on (`local`, the machine mvctl runs on, needs no Host manifest). Default local.
   */
  host?: string;
  /**
   * Desired power state: true starts the VM, false shuts it down (gracefully, within shutdownTimeout). Default true.
   */
  running?: boolean;
  /**
   * How long a graceful shutdown may take before the VM is killed: seconds, or a duration such as 30s or 2m. Default 30s.
   */
  shutdownTimeout?: number | string;
}
/**
 * Firmware boot with a BIOS image of your choice.
 */
export interface BiosFirmware {
  bios: {
    /**
     * The BIOS image: a multiple of 64 KiB, 64 KiB .. 16 MiB (checked when the VM starts).
     */
    image: string;
  };
}
/**
 * Direct kernel boot (no firmware).
 */
export interface DirectKernelBoot {
  /**
   * Guest kernel: an ELF vmlinux (booted through its PVH entry point) or a bzImage.
   */
  kernel: string;
  /**
   * Initial ramdisk (optional).
   */
  initrd?: string;
  /**
   * Kernel command line. Default empty.
   */
  cmdline?: string;
}
export interface MachineObject {
  /**
   * Machine type.
   */
  type: 'pc';
  /**
   * Capture the firmware's debug output (port 0x402): to stderr in a VMM config (unless debugConsole is set), to firmware.log in the VM's state directory for a VirtualMachine manifest. Default false.
   */
  debug?: boolean;
}
/**
 * Boot order and menu of the firmware. boot.order names devices: attached disks by their Disk name, and named spec.devices (option ROMs, storage devices), first tried first.
 */
export interface Boot {
  /**
   * Boot devices by device name (option ROMs and storage devices), first tried first. Default: the firmware's own order.
   */
  order?: string[];
  /**
   * Show the firmware's boot menu (press Esc). Default false.
   */
  menu?: boolean;
  /**
   * How long the boot menu waits for a key, in milliseconds (0..65535). Default 0.
   */
  menuTimeout?: number;
}
export interface FwCfgFile {
  /**
   * fw_cfg file name: starts with opt/ (e.g. opt/org.example/config), at most 55 bytes.
   */
  name: string;
  /**
   * Path of the file whose contents the guest reads.
   */
  file: string;
}
export interface FwCfgString {
  /**
   * fw_cfg file name: starts with opt/ (e.g. opt/org.example/config), at most 55 bytes.
   */
  name: string;
  /**
   * The contents, as text (UTF-8).
   */
  string: string;
}
/**
 * A Disk attached to the VM.
 */
export interface DiskAttachment {
  /**
   * Name of a Disk resource.
   */
  disk: string;
  /**
   * How the guest sees the disk: virtio (virtio-blk on PCI), ata (an IDE hard disk), cdrom (an ATAPI CD-ROM, always read-only) or floppy. Default virtio.
   */
  bus?: 'virtio' | 'ata' | 'cdrom' | 'floppy';
  /**
   * Attach read-only (the guest cannot write). Default false; a cdrom is always read-only.
   */
  readonly?: boolean;
  throttle?: IoLimits;
}
/**
 * I/O limits of the disk (libvirt's iotune, QEMU's throttling): reads, writes, discards and write-zeroes wait so that no more than iops requests and bytesPerSecond bytes a second reach the image; flushes are not limited. No bursts. Default: no limits.
 */
export interface IoLimits {
  /**
   * Requests a second, at most.
   */
  iops?: number;
  /**
   * Bytes a second read and written, at most (at least 512).
   */
  bytesPerSecond?: number;
}
/**
 * A network interface on a Network.
 */
export interface NetworkAttachment {
  /**
   * Name of a Network resource.
   */
  network: string;
}
export interface SerialFile {
  /**
   * File the serial output is written to (created or truncated when the VM starts).
   */
  file: string;
}
/**
 * An extra 16550 UART (COM2..COM4).
 */
export interface SerialPortDevice {
  class: 'serial-port';
  /**
   * I/O base port: 0x2f8 (COM2), 0x3e8 (COM3) or 0x2e8 (COM4).
   */
  port: 760 | 1000 | 744;
  /**
   * ISA IRQ. Default 3 for 0x2f8 and 0x2e8, 4 for 0x3e8.
   */
  irq?: 3 | 4;
  /**
   * Where a serial port goes: stdio, none, {file: path} or {socket: path}. Default stdio for COM1, none for extra ports.
   */
  serial?: ('stdio' | 'none') | FileSink | SocketSink;
}
export interface FileSink {
  /**
   * Path of a file (created or truncated).
   */
  file: string;
}
export interface SocketSink {
  /**
   * Path of a Unix stream socket.
   */
  socket: string;
}
/**
 * An extra write-only debug console on one I/O port.
 */
export interface DebugConsoleDevice {
  class: 'debug-console';
  /**
   * I/O port.
   */
  port: number;
  /**
   * stderr (default) or {file: path}.
   */
  output?: 'stderr' | FileSink;
}
/**
 * A legacy option ROM the firmware runs (fw_cfg genroms/); one with a boot entry vector is a boot device for boot.order.
 */
export interface OptionRomDevice {
  class: 'option-rom';
  /**
   * Device name: 1-63 lowercase letters, digits or '-', starting with a letter or digit; unique among devices.
   */
  name: string;
  /**
   * Path of the ROM image: 512 bytes .. 128 KiB, starting with 0x55 0xAA.
   */
  file: string;
}
/**
 * A virtio-blk disk (virtio-pci modern) on its own PCI slot.
 */
export interface VirtioBlockDevice {
  class: 'virtio-block';
  /**
   * Device name: 1-63 lowercase letters, digits or '-', starting with a letter or digit; unique among devices.
   */
  name: string;
  /**
   * Path of a disk image file (raw or qcow2); it must exist and be readable, and writable unless the device is readonly or snapshot.
   */
  image: string;
  /**
   * Image format: raw or qcow2. Default: detected from the file (qcow2 by its magic bytes, else raw); name it for writable disks, so that a guest cannot turn a raw disk into a qcow2 header.
   */
  format?: 'raw' | 'qcow2';
  /**
   * The guest cannot write the image (writes fail). Default false.
   */
  readonly?: boolean;
  /**
   * Writes go to a temporary overlay deleted when the VM exits; the image itself never changes (MVisor's snapshot: yes, QEMU's -snapshot). Default false.
   */
  snapshot?: boolean;
  throttle?: IoLimits;
  /**
   * Serial number the guest reads (VIRTIO_BLK_T_GET_ID; /dev/disk/by-id): 1-20 printable ASCII characters. Default: the device name (its first 20 characters).
   */
  serial?: string;
  /**
   * Request queues (1..16). Default 1.
   */
  queues?: number;
  /**
   * PCI slot on bus 0 (2..31; 0 is the host bridge, 1 the PIIX). Default: the first free slot from 2 up, in device order.
   */
  slot?: number;
}
/**
 * An ATA hard disk on the PIIX3 IDE controller.
 */
export interface AtaDiskDevice {
  class: 'ata-disk';
  /**
   * Device name: 1-63 lowercase letters, digits or '-', starting with a letter or digit; unique among devices.
   */
  name: string;
  /**
   * Path of a disk image file (raw or qcow2); it must exist and be readable, and writable unless the device is readonly or snapshot.
   */
  image: string;
  /**
   * Image format: raw or qcow2. Default: detected from the file (qcow2 by its magic bytes, else raw); name it for writable disks, so that a guest cannot turn a raw disk into a qcow2 header.
   */
  format?: 'raw' | 'qcow2';
  /**
   * The guest cannot write the image (writes fail). Default false.
   */
  readonly?: boolean;
  /**
   * Writes go to a temporary overlay deleted when the VM exits; the image itself never changes (MVisor's snapshot: yes, QEMU's -snapshot). Default false.
   */
  snapshot?: boolean;
  throttle?: IoLimits;
  /**
   * IDE channel of the PIIX3: 0 (primary, ports 0x1F0, IRQ 14) or 1 (secondary, 0x170, IRQ 15). Default: the first free position (channel 0 unit 0, 0/1, 1/0, 1/1) in device order.
   */
  channel?: 0 | 1;
  /**
   * IDE unit on its channel: 0 (master) or 1 (slave). Default: the first free one.
   */
  unit?: 0 | 1;
}
/**
 * An ATAPI CD-ROM drive on the PIIX3 IDE controller, always read-only; without an image the drive is empty.
 */
export interface AtaCdromDevice {
  class: 'ata-cdrom';
  /**
   * Device name: 1-63 lowercase letters, digits or '-', starting with a letter or digit; unique among devices.
   */
  name: string;
  /**
   * Path of the disc image (an ISO, raw or qcow2); it must exist and be readable. Default: none (an empty drive).
   */
  image?: string;
  /**
   * Image format: raw or qcow2. Default: detected from the file (qcow2 by its magic bytes, else raw); name it for writable disks, so that a guest cannot turn a raw disk into a qcow2 header.
   */
  format?: 'raw' | 'qcow2';
  /**
   * IDE channel of the PIIX3: 0 (primary, ports 0x1F0, IRQ 14) or 1 (secondary, 0x170, IRQ 15). Default: the first free position (channel 0 unit 0, 0/1, 1/0, 1/1) in device order.
   */
  channel?: 0 | 1;
  /**
   * IDE unit on its channel: 0 (master) or 1 (slave). Default: the first free one.
   */
  unit?: 0 | 1;
}
/**
 * A floppy drive on the i82078 floppy controller (drive 0 is A:); without an image the drive is empty.
 */
export interface FloppyDevice {
  class: 'floppy';
  /**
   * Device name: 1-63 lowercase letters, digits or '-', starting with a letter or digit; unique among devices.
   */
  name: string;
  /**
   * Path of the floppy image (raw or qcow2); it must exist and be readable, and writable unless readonly. Default: none (an empty drive).
   */
  image?: string;
  /**
   * Image format: raw or qcow2. Default: detected from the file (qcow2 by its magic bytes, else raw); name it for writable disks, so that a guest cannot turn a raw disk into a qcow2 header.
   */
  format?: 'raw' | 'qcow2';
  /**
   * The guest cannot write the image (writes fail). Default false.
   */
  readonly?: boolean;
  /**
   * Drive number: 0 (A:) or 1 (B:). Default: the first free one, in device order.
   */
  drive?: 0 | 1;
}
