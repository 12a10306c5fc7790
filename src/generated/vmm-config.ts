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
 * Where a serial port goes: stdio, none, {file: path} or {socket: path}. Default stdio for COM1, none for extra ports.
 */
export type CharSink = ('stdio' | 'none') | FileSink | SocketSink;
/**
 * Where the debug console at port 0x402 goes: none, stderr or {file: path}. Default none.
 */
export type DebugSink = ('none' | 'stderr') | FileSink;
/**
 * An extra device, chosen by its class.
 */
export type Device = SerialPortDevice | DebugConsoleDevice;

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
  /**
   * Guest kernel: an ELF vmlinux (booted through its PVH entry point) or a bzImage.
   */
  kernel: string;
  /**
   * Initial ramdisk (optional).
   */
  initrd?: string;
  /**
   * Kernel command line.
   */
  cmdline?: string;
  serial?: CharSink;
  debugConsole?: DebugSink;
  /**
   * What a guest reset does. exit: the VMM exits with code 0.
   */
  onReset?: 'exit';
  /**
   * What a triple fault does. stop: the VMM prints an error line and exits with code 3.
   */
  onTripleFault?: 'stop';
  /**
   * Extra devices, each an object with a `class`.
   */
  devices?: Device[];
}
export interface CpuObject {
  model: CpuModel;
  /**
   * Features to add (+name) or remove (-name).
   */
  features?: string[];
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
