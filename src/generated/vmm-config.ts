/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/vmm-config.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * Guest RAM: a number of bytes, or a size string such as 128M, 2G or 512MiB (powers of 1024). 2 MiB .. 1 TiB, a multiple of 4 KiB. Default 128M.
 */
export type MemorySize = number | string;
/**
 * CPU model and feature adjustments: "<model>[,+feature|-feature...]" or {model, features}. Default host.
 */
export type Cpu = CpuSpec | CpuObject;
/**
 * "<model>[,+feature|-feature...]", e.g. baseline,-cx16,+xsaveerptr.
 */
export type CpuSpec = string;
/**
 * host: the host CPU as KVM reports it; baseline: a fixed, portable x86-64 model.
 */
export type CpuModel = 'host' | 'baseline';
/**
 * Machine type: pc (i440FX + PIIX, like QEMU's pc), or {type: pc, debug: true} to also send the firmware's debug port 0x402 to stderr (unless debugConsole is set). Default pc.
 */
export type Machine = 'pc' | MachineObject;
/**
 * How the VM starts: direct (the VMM loads `kernel`), bios (SeaBIOS from /usr/share/seabios/bios-256k.bin) or {bios: path} (another BIOS image: a multiple of 64 KiB, 64 KiB .. 16 MiB). Default direct when kernel is given, else bios.
 */
export type Firmware = ('direct' | 'bios') | BiosImage;
/**
 * SMBIOS system UUID (8-4-4-4-12 hex digits). Default: derived from the VM name (a UUID v5), so it is the same at every start.
 */
export type Uuid = string;
/**
 * Device name: 1-63 lowercase letters, digits or '-', starting with a letter or digit; unique among devices.
 */
export type DeviceName = string;
/**
 * A fw_cfg file: {name, file} (the contents of a file) or {name, string} (a string).
 */
export type FwCfgItem = FwCfgFile | FwCfgString;
/**
 * fw_cfg file name: starts with opt/ (e.g. opt/org.example/config), at most 55 bytes.
 */
export type FwCfgName = string;
/**
 * Where a serial port goes: stdio, none, {file: path} or {socket: path}. Default stdio for COM1, none for extra ports.
 */
export type CharSink = ('stdio' | 'none') | FileSink | SocketSink;
/**
 * Where the debug console at port 0x402 goes: none, stderr or {file: path}. Default none.
 */
export type DebugSink = ('none' | 'stderr') | FileSink;
/**
 * A device of the VMM config, chosen by its class: a Device, or one that only a VMM config can have (isa-debug-exit, pc-testdev, pci-testdev, pvpanic).
 */
export type VmmDevice = Device | IsaDebugExitDevice | PcTestdevDevice | PciTestdevDevice | PvpanicDevice;
/**
 * An extra device, chosen by its class: serial-port, debug-console, option-rom, virtio-block, ata-disk, ata-cdrom, floppy.
 */
export type Device =
  | SerialPortDevice
  | DebugConsoleDevice
  | OptionRomDevice
  | VirtioBlockDevice
  | AtaDiskDevice
  | AtaCdromDevice
  | FloppyDevice;
/**
 * Path of a disk image file (raw or qcow2); it must exist and be readable, and writable unless the device is readonly or snapshot.
 */
export type ImagePath = string;
/**
 * Image format: raw or qcow2. Default: detected from the file (qcow2 by its magic bytes, else raw); name it for writable disks, so that a guest cannot turn a raw disk into a qcow2 header.
 */
export type ImageFormat = 'raw' | 'qcow2';
/**
 * The guest cannot write the image (writes fail). Default false.
 */
export type ReadOnly = boolean;
/**
 * Writes go to a temporary overlay deleted when the VM exits; the image itself never changes (MVisor's snapshot: yes, QEMU's -snapshot). Default false.
 */
export type Snapshot = boolean;
/**
 * IDE channel of the PIIX3: 0 (primary, ports 0x1F0, IRQ 14) or 1 (secondary, 0x170, IRQ 15). Default: the first free position (channel 0 unit 0, 0/1, 1/0, 1/1) in device order.
 */
export type IdeChannel = 0 | 1;
/**
 * IDE unit on its channel: 0 (master) or 1 (slave). Default: the first free one.
 */
export type IdeUnit = 0 | 1;

/**
 * Low-level configuration of one VM, as run by `mvisor -c vm.yaml` or `mvctl vm run -c vm.yaml`. Relative paths are relative to the directory of the config file.
 */
export interface VmmConfig {
  /**
   * Name of the VM: 1-63 lowercase letters, digits or '-', starting with a letter or digit.
   */
  name: string;
  memory?: MemorySize;
  /**
   * Number of virtual CPUs.
   */
  vcpus?: number;
  cpu?: Cpu;
  machine?: Machine;
  firmware?: Firmware;
  /**
   * Build ACPI tables for the guest. Default true.
   */
  acpi?: boolean;
  uuid?: Uuid;
  boot?: Boot;
  /**
   * Files the guest can read through fw_cfg (like QEMU's -fw_cfg): each {name, file} or {name, string}; names start with opt/ and are unique.
   */
  fwCfg?: FwCfgItem[];
  /**
   * Guest kernel for direct boot (firmware direct): an ELF vmlinux (booted through its PVH entry point), a bzImage, or a multiboot kernel (an ELF or flat image with a Multiboot 0.6.96 header, such as kvm-unit-tests' .flat files). Not used with firmware bios.
   */
  kernel?: string;
  /**
   * Initial ramdisk for direct boot (optional; not used with firmware bios).
   */
  initrd?: string;
  /**
   * Multiboot modules for a multiboot kernel (like QEMU's -initrd "file args,file args"), loaded in order; the kernel finds them in the multiboot information block. Direct boot of a multiboot kernel only.
   */
  modules?: MultibootModule[];
  /**
   * Kernel command line for direct boot (not used with firmware bios).
   */
  cmdline?: string;
  serial?: CharSink;
  debugConsole?: DebugSink;
  /**
   * What a guest reset does. exit: the VMM exits with code 0.
   */
  onReset?: 'exit';
  /**
   * Timer ticks of the PIT the guest could not take in time: delay (KVM's and QEMU's default: replayed later, which old Windows timekeeping wants) or discard (dropped, QEMU's lost_tick_policy=discard: a guest that runs slower than real time then still gets its other interrupts).
   */
  pitLostTicks?: 'delay' | 'discard';
  /**
   * What a triple fault does. stop: the VMM prints an error line and exits with code 3.
   */
  onTripleFault?: 'stop';
  /**
   * Extra devices, each an object with a `class`.
   */
  devices?: VmmDevice[];
}
export interface CpuObject {
  model: CpuModel;
  /**
   * Features to add (+name) or remove (-name).
   */
  features?: string[];
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
export interface BiosImage {
  /**
   * Path of the BIOS image: a multiple of 64 KiB, 64 KiB .. 16 MiB.
   */
  bios: string;
}
/**
 * Boot order and menu of the firmware.
 */
export interface Boot {
  /**
   * Boot devices by device name (option ROMs and storage devices), first tried first. Default: the firmware's own order.
   */
  order?: DeviceName[];
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
  name: FwCfgName;
  /**
   * Path of the file whose contents the guest reads.
   */
  file: string;
}
export interface FwCfgString {
  name: FwCfgName;
  /**
   * The contents, as text (UTF-8).
   */
  string: string;
}
/**
 * A multiboot module: a file the VMM loads into guest memory for a multiboot kernel, with its command line.
 */
export interface MultibootModule {
  /**
   * Path of the module file.
   */
  file: string;
  /**
   * The module's command line (its string in the multiboot information block). Default: empty.
   */
  cmdline?: string;
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
  serial?: CharSink;
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
  name: DeviceName;
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
  name: DeviceName;
  image: ImagePath;
  format?: ImageFormat;
  readonly?: ReadOnly;
  snapshot?: Snapshot;
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
 * An ATA hard disk on the PIIX3 IDE controller.
 */
export interface AtaDiskDevice {
  class: 'ata-disk';
  name: DeviceName;
  image: ImagePath;
  format?: ImageFormat;
  readonly?: ReadOnly;
  snapshot?: Snapshot;
  throttle?: IoLimits;
  channel?: IdeChannel;
  unit?: IdeUnit;
}
/**
 * An ATAPI CD-ROM drive on the PIIX3 IDE controller, always read-only; without an image the drive is empty.
 */
export interface AtaCdromDevice {
  class: 'ata-cdrom';
  name: DeviceName;
  /**
   * Path of the disc image (an ISO, raw or qcow2); it must exist and be readable. Default: none (an empty drive).
   */
  image?: string;
  format?: ImageFormat;
  channel?: IdeChannel;
  unit?: IdeUnit;
}
/**
 * A floppy drive on the i82078 floppy controller (drive 0 is A:); without an image the drive is empty.
 */
export interface FloppyDevice {
  class: 'floppy';
  name: DeviceName;
  /**
   * Path of the floppy image (raw or qcow2); it must exist and be readable, and writable unless readonly. Default: none (an empty drive).
   */
  image?: string;
  format?: ImageFormat;
  readonly?: ReadOnly;
  /**
   * Drive number: 0 (A:) or 1 (B:). Default: the first free one, in device order.
   */
  drive?: 0 | 1;
}
/**
 * QEMU's isa-debug-exit: a write of v to its ports ends the VMM with exit status (v << 1) | 1 (kvm-unit-tests uses iobase 0xf4, iosize 4).
 */
export interface IsaDebugExitDevice {
  class: 'isa-debug-exit';
  /**
   * First I/O port. Default 0x501 (as QEMU).
   */
  iobase?: number;
  /**
   * Number of I/O ports from iobase: 1, 2 or 4. Default 2 (as QEMU).
   */
  iosize?: 1 | 2 | 4;
}
/**
 * QEMU's pc-testdev, as kvm-unit-tests uses it: I/O ports 0xe0-0xeb (a scratch register, page flush, byte-wise scratch register), 0x2000-0x2017 (ISA IRQ lines) and 64 KiB of test memory at 0xff000000.
 */
export interface PcTestdevDevice {
  class: 'pc-testdev';
}
/**
 * QEMU's pci-testdev (PCI 1b36:0005), as kvm-unit-tests uses it.
 */
export interface PciTestdevDevice {
  class: 'pci-testdev';
  /**
   * PCI slot on bus 0 (2..31; 0 is the host bridge, 1 the PIIX). Default: the first free slot from 2 up, in device order (shared with virtio-block devices).
   */
  slot?: number;
}
/**
 * QEMU's pvpanic-pci (PCI 1b36:0011): the guest reports a kernel panic (Linux's pvpanic-pci driver, Windows' pvpanic), and onPanic says what happens.
 */
export interface PvpanicDevice {
  class: 'pvpanic';
  /**
   * What a panic report does: stop (default) ends the VM with exit code 3, as a triple fault does; log only logs it. A crash kernel taking over (CRASH_LOADED) is only logged.
   */
  onPanic?: 'stop' | 'log';
  /**
   * PCI slot on bus 0 (2..31). Default: the first free one, in device order.
   */
  slot?: number;
}
