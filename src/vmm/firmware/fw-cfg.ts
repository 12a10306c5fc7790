/**
 * QEMU's firmware configuration device ("fw_cfg") as SeaBIOS and OVMF use
 * it on x86 (QEMU docs/specs/fw_cfg.rst): a set of numbered items and
 * named files the firmware reads its configuration from (e820 map, boot
 * order, ACPI and SMBIOS tables, option ROMs). Three port ranges:
 *
 *   pio.register(0x510, 1, fwcfg.selectorPort, 'fw-cfg'); // 16-bit write: select an item
 *   pio.register(0x511, 1, fwcfg.dataPort, 'fw-cfg');     // 8-bit reads: the item's bytes
 *   pio.register(0x514, 8, fwcfg.dmaPort, 'fw-cfg');      // DMA address, big endian
 *
 * Selecting an item resets the data offset; each data read returns the
 * next byte, and 0 past the end. Writes to the data port are ignored, as
 * in QEMU since v2.4: items are written only through DMA, and only files
 * added as writable.
 *
 * DMA: the guest writes the guest-physical address of a 16-byte
 * FWCfgDmaAccess {be32 control, be32 length, be64 address} to the DMA
 * register, high half at 0x514 then low half at 0x518; the low write starts
 * the transfer, which completes before the OUT instruction returns. The
 * register is big endian, so the bytes at 0x514..0x51b are the address's
 * bytes most significant first (SeaBIOS does `outl(cpu_to_be32(addr),
 * 0x518)`); reading it returns "QEMU CFG" the same way, byte for byte. The
 * control word is written back as 0, or ERROR if anything failed. Every
 * guest address goes through GuestMemory: a bad one sets ERROR (or, for an
 * unreadable descriptor, drops the request), logs a guest error and never
 * throws.
 */
import { PC_PORTS, portCount } from '../../platform/pc-map.js';
import {
  DeviceStateError,
  expectVersion,
  type AccessSize,
  type Device,
  type DeviceContext,
  type DeviceState,
  type IoHandler,
} from '../core/device.js';
import type { GuestMemory } from '../core/memory.js';
import { hex } from '../core/bus.js';

export const FW_CFG_SELECTOR_PORT = PC_PORTS.fwCfg.start;
export const FW_CFG_DATA_PORT = PC_PORTS.fwCfg.start + 1;
export const FW_CFG_DMA_PORT = PC_PORTS.fwCfgDma.start;
/** Bytes of port space the DMA address register takes (0x514-0x51b). */
export const FW_CFG_DMA_PORT_LENGTH = portCount(PC_PORTS.fwCfgDma);

// Item keys (QEMU include/standard-headers/linux/qemu_fw_cfg.h)
export const FW_CFG_SIGNATURE = 0x0000;
export const FW_CFG_ID = 0x0001;
export const FW_CFG_UUID = 0x0002;
export const FW_CFG_RAM_SIZE = 0x0003;
export const FW_CFG_NOGRAPHIC = 0x0004;
export const FW_CFG_NB_CPUS = 0x0005;
export const FW_CFG_MACHINE_ID = 0x0006;
export const FW_CFG_NUMA = 0x000d;
export const FW_CFG_BOOT_MENU = 0x000e;
export const FW_CFG_MAX_CPUS = 0x000f;
export const FW_CFG_FILE_DIR = 0x0019;
export const FW_CFG_FILE_FIRST = 0x0020;
/** Bit 15: the item is architecture specific. */
export const FW_CFG_ARCH_LOCAL = 0x8000;
export const FW_CFG_ACPI_TABLES = FW_CFG_ARCH_LOCAL + 0;
export const FW_CFG_SMBIOS_ENTRIES = FW_CFG_ARCH_LOCAL + 1;
export const FW_CFG_IRQ0_OVERRIDE = FW_CFG_ARCH_LOCAL + 2;
export const FW_CFG_E820_TABLE = FW_CFG_ARCH_LOCAL + 3;

/** Bit 14 of a selector once meant "write channel"; QEMU ignores it when looking items up. */
const WRITE_CHANNEL = 0x4000;
const ENTRY_MASK = 0x3fff;

// FW_CFG_ID feature bits
export const FW_CFG_VERSION = 0x01;
export const FW_CFG_VERSION_DMA = 0x02;

// FWCfgDmaAccess control bits
export const FW_CFG_DMA_CTL_ERROR = 0x01;
export const FW_CFG_DMA_CTL_READ = 0x02;
export const FW_CFG_DMA_CTL_SKIP = 0x04;
export const FW_CFG_DMA_CTL_SELECT = 0x08;
export const FW_CFG_DMA_CTL_WRITE = 0x10;
/** Bytes of a FWCfgDmaAccess structure. */
export const FW_CFG_DMA_ACCESS_SIZE = 16;

/** What reads of the DMA register return, in address order ("QEMU CFG", 0x51454d5520434647 big endian). */
const DMA_SIGNATURE = new TextEncoder().encode('QEMU CFG');

/** Bytes of the name field of a directory entry, NUL included (FW_CFG_MAX_FILE_PATH). */
export const FW_CFG_MAX_FILE_PATH = 56;
/** Bytes per file directory entry: be32 size, be16 select, u16 reserved, name[56]. */
export const FW_CFG_FILE_ENTRY_SIZE = 64;

export class FwCfgError extends Error {}

export interface FwCfgOptions {
  /** Guest RAM, for DMA. */
  memory: GuestMemory;
  /** Boot CPUs (FW_CFG_NB_CPUS). */
  cpus: number;
  /** Hot-pluggable maximum (FW_CFG_MAX_CPUS); default `cpus`. */
  maxCpus?: number;
  /** Total guest RAM in bytes (FW_CFG_RAM_SIZE). */
  ramSize: number;
  /** Show the firmware boot menu (FW_CFG_BOOT_MENU, SeaBIOS's etc/show-boot-menu); default false. */
  bootMenu?: boolean;
  /**
   * The PIT's IRQ 0 reaches IOAPIC pin 2 (FW_CFG_IRQ0_OVERRIDE), as with
   * KVM's in-kernel irqchip; SeaBIOS then writes the override into the MP
   * table. Default true.
   */
  irq0Override?: boolean;
  /** Offer the DMA interface (FW_CFG_ID bit 1); default true. */
  dma?: boolean;
  /** Instance name (default "fw-cfg"). */
  name?: string;
}

export interface FwCfgFileOptions {
  /** The guest may overwrite the file's bytes through DMA (never resize it). Default false. */
  writable?: boolean;
  /** Called after a DMA write changed [offset, offset+length) of a writable file. */
  onWrite?: (offset: number, length: number) => void;
}

interface Item {
  data: Uint8Array;
  writable: boolean;
  onWrite: ((offset: number, length: number) => void) | undefined;
}

interface FileEntry {
  name: string;
  nameBytes: Uint8Array;
  select: number;
}

export class FwCfg implements Device {
  readonly name: string;
  /** Port 0x510: 16-bit writes select an item. */
  readonly selectorPort: IoHandler;
  /** Port 0x511: reads return the selected item's bytes in order. */
  readonly dataPort: IoHandler;
  /** Ports 0x514-0x51b: the big-endian DMA address register. */
  readonly dmaPort: IoHandler;

  private readonly memory: GuestMemory;
  private readonly dma: boolean;
  /** Items by key with bit 14 cleared (see lookup). */
  private readonly items = new Map<number, Item>();
  private readonly files: FileEntry[] = [];
  private nextFileSelect = FW_CFG_FILE_FIRST;
  /** The selector as the guest wrote it. */
  private selector = FW_CFG_SIGNATURE;
  private offset = 0;
  /** High half of the DMA address, latched until the low half is written. */
  private dmaHigh = 0;

  constructor(
    private readonly ctx: DeviceContext,
    options: FwCfgOptions,
  ) {
    this.name = options.name ?? 'fw-cfg';
    this.memory = options.memory;
    this.dma = options.dma ?? true;
    const cpus = options.cpus;
    const maxCpus = options.maxCpus ?? cpus;
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > 0xffff) throw new RangeError(`bad CPU count ${cpus}`);
    if (!Number.isInteger(maxCpus) || maxCpus < cpus || maxCpus > 0xffff) {
      throw new RangeError(`bad maximum CPU count ${maxCpus}`);
    }
    if (!Number.isSafeInteger(options.ramSize) || options.ramSize < 0) {
      throw new RangeError(`bad RAM size ${options.ramSize}`);
    }
    this.items.set(FW_CFG_SIGNATURE, readOnly(new TextEncoder().encode('QEMU')));
    this.items.set(FW_CFG_ID, readOnly(le32(FW_CFG_VERSION | (this.dma ? FW_CFG_VERSION_DMA : 0))));
    this.items.set(FW_CFG_RAM_SIZE, readOnly(le64(options.ramSize)));
    this.items.set(FW_CFG_NB_CPUS, readOnly(le16(cpus)));
    this.items.set(FW_CFG_MAX_CPUS, readOnly(le16(maxCpus)));
    this.items.set(FW_CFG_BOOT_MENU, readOnly(le16(options.bootMenu ? 1 : 0)));
    this.items.set(FW_CFG_IRQ0_OVERRIDE, readOnly(le32((options.irq0Override ?? true) ? 1 : 0)));
    this.rebuildDirectory();

    this.selectorPort = {
      read: () => 0,
      write: (_offset: number, size: AccessSize, value: number) => {
        if (size !== 2) {
          this.guestError('selector', () => `${size}-byte write ${hex(value)} to the selector port ignored`);
          return;
        }
        this.select(value & 0xffff);
      },
    };
    this.dataPort = {
      read: (_offset: number, size: AccessSize) => this.readData(size),
      write: (_offset: number, _size: AccessSize, value: number) => {
        this.guestError('data-write', () => `write ${hex(value)} to the data port ignored (use DMA)`);
      },
    };
    this.dmaPort = {
      read: (offset: number, size: AccessSize) => this.readDmaRegister(offset, size),
      write: (offset: number, size: AccessSize, value: number) => this.writeDmaRegister(offset, size, value),
    };
  }

  /**
   * Adds a named file (shown in the file directory, 0x0019) and returns its
   * selector. Selectors are handed out from 0x0020 in the order files are
   * added; the directory lists them sorted by name, as QEMU does. The data
   * is copied; read the live bytes of a writable file with `fileData`.
   */
  addFile(name: string, data: Uint8Array, options: FwCfgFileOptions = {}): number {
    const nameBytes = fwCfgFileName(name);
    if (this.files.some((f) => f.name === name)) throw new FwCfgError(`fw_cfg file "${name}" added twice`);
    if (this.nextFileSelect > ENTRY_MASK) throw new FwCfgError(`no fw_cfg selector left for "${name}"`);
    checkItemSize(name, data);
    const select = this.nextFileSelect++;
    this.items.set(select, {
      data: Uint8Array.from(data),
      writable: options.writable ?? false,
      onWrite: options.onWrite,
    });
    this.files.push({ name, nameBytes, select });
    this.rebuildDirectory();
    return select;
  }

  /** The current bytes of a file (a writable file's include the guest's writes). */
  fileData(name: string): Uint8Array | undefined {
    const f = this.files.find((e) => e.name === name);
    return f ? this.items.get(f.select)?.data : undefined;
  }

  /**
   * Sets a numbered (non-file) item: a legacy generic key below 0x0020
   * such as FW_CFG_UUID, or an architecture key (bit 15 set) such as
   * FW_CFG_E820_TABLE. The signature, ID and file directory are the
   * device's own. Read only; the data is copied.
   */
  setItem(key: number, data: Uint8Array): void {
    if (!Number.isInteger(key) || key < 0 || key > 0xffff || key & WRITE_CHANNEL) {
      throw new FwCfgError(`bad fw_cfg key ${key}`);
    }
    if (key === FW_CFG_SIGNATURE || key === FW_CFG_ID || key === FW_CFG_FILE_DIR) {
      throw new FwCfgError(`fw_cfg key ${hex(key)} belongs to the device`);
    }
    if (!(key & FW_CFG_ARCH_LOCAL) && key >= FW_CFG_FILE_FIRST) {
      throw new FwCfgError(`fw_cfg key ${hex(key)} is in the file range; use addFile`);
    }
    checkItemSize(hex(key), data);
    this.items.set(key, readOnly(Uint8Array.from(data)));
  }

  reset(): void {
    this.select(FW_CFG_SIGNATURE);
    this.dmaHigh = 0;
  }

  saveState(): DeviceState {
    return { version: 1, selector: this.selector, offset: this.offset, dmaHigh: this.dmaHigh };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const { selector, offset } = state;
    const dmaHigh = state.dmaHigh ?? 0;
    if (!isUint(selector, 0xffff) || !isUint(offset, 0xffffffff) || !isUint(dmaHigh, 0xffffffff)) {
      throw new DeviceStateError(`${this.name}: bad saved state ${JSON.stringify(state)}`);
    }
    this.selector = selector;
    this.offset = offset;
    this.dmaHigh = dmaHigh;
  }

  // --- selector and data port -------------------------------------------

  private select(selector: number): void {
    this.selector = selector;
    this.offset = 0;
  }

  /**
   * The selected item. QEMU looks items up by the arch bit and the low 14
   * bits, so bit 14 (the old "write channel") selects the same item.
   */
  private current(): Item | undefined {
    return this.items.get(this.selector & (FW_CFG_ARCH_LOCAL | ENTRY_MASK));
  }

  /**
   * Reads `size` bytes from the data port. An 8-bit read is the protocol;
   * a wider one returns the next bytes in address order (string
   * preserving), zero past the end.
   */
  private readData(size: AccessSize): number {
    const item = this.current();
    let value = 0;
    for (let i = 0; i < size; i++) {
      if (!item || this.offset >= item.data.length) break;
      value |= item.data[this.offset++]! << (8 * i);
    }
    return value >>> 0;
  }

  // --- DMA ----------------------------------------------------------------

  private readDmaRegister(offset: number, size: AccessSize): number {
    if (!this.dma) return 0;
    let value = 0;
    for (let i = 0; i < size; i++) value |= (DMA_SIGNATURE[offset + i] ?? 0) << (8 * i);
    return value >>> 0;
  }

  private writeDmaRegister(offset: number, size: AccessSize, value: number): void {
    if (!this.dma) return;
    // The register is big endian and the port bytes are its bytes in
    // address order, so a 32-bit OUT carries its half byte-swapped.
    if (size === 4 && offset === 0) {
      this.dmaHigh = bswap32(value);
    } else if (size === 4 && offset === 4) {
      const gpa = this.dmaHigh * 2 ** 32 + bswap32(value);
      this.dmaHigh = 0; // "0 at startup and after an operation"
      this.transfer(gpa);
    } else {
      this.guestError('dma-register', () => `${size}-byte write at DMA register offset ${offset} ignored`);
    }
  }

  /** Runs the FWCfgDmaAccess at `gpa` (fw_cfg.rst, "Guest-side DMA Interface"). */
  private transfer(gpa: number): void {
    const descriptor = new Uint8Array(FW_CFG_DMA_ACCESS_SIZE);
    if (!copyFromGuest(this.memory, gpa, descriptor)) {
      this.guestError('dma-descriptor', () => `DMA descriptor at ${hex(gpa)} is not in guest RAM`);
      // QEMU still tries to flag the error in the control word.
      writeControl(this.memory, gpa, FW_CFG_DMA_CTL_ERROR);
      return;
    }
    const dv = new DataView(descriptor.buffer);
    const control = dv.getUint32(0);
    let length = dv.getUint32(4);
    // Beyond 2^53 the address is not a safe integer, which GuestMemory rejects.
    let address = Number(dv.getBigUint64(8));

    if (control & FW_CFG_DMA_CTL_SELECT) this.select(control >>> 16);
    const item = this.current();
    // One operation: READ wins over WRITE, WRITE over SKIP; none means no transfer.
    const op =
      control & FW_CFG_DMA_CTL_READ
        ? 'read'
        : control & FW_CFG_DMA_CTL_WRITE
          ? 'write'
          : control & FW_CFG_DMA_CTL_SKIP
            ? 'skip'
            : 'none';
    if (op === 'none') length = 0;

    let error = false;
    const fail = (why: () => string) => {
      error = true;
      this.guestError(`dma-${op}`, why);
    };
    while (length > 0 && !error) {
      let len: number;
      if (!item || this.offset >= item.data.length) {
        // Past the end (or no item): reads return zeros, skips do nothing, writes fail.
        len = length;
        if (op === 'read' && !fillGuest(this.memory, address, len)) {
          fail(() => `DMA read into ${hex(address)}+${hex(len)} outside guest RAM`);
        } else if (op === 'write') {
          fail(() => `DMA write past the end of item ${hex(this.selector)}`);
        }
      } else {
        len = Math.min(length, item.data.length - this.offset);
        const bytes = item.data.subarray(this.offset, this.offset + len);
        if (op === 'read' && !copyToGuest(this.memory, address, bytes)) {
          fail(() => `DMA read into ${hex(address)}+${hex(len)} outside guest RAM`);
        } else if (op === 'write') {
          // QEMU refuses a write to a read-only item or one that would run past
          // the end ("the item cannot be resized"), dropping it entirely.
          if (!item.writable) {
            fail(() => `DMA write to read-only item ${hex(this.selector)}`);
          } else if (len !== length) {
            fail(() => `DMA write of ${hex(length)} bytes past the end of item ${hex(this.selector)}`);
          } else if (!copyFromGuest(this.memory, address, bytes)) {
            fail(() => `DMA write from ${hex(address)}+${hex(len)} outside guest RAM`);
          } else {
            this.notifyWrite(item, this.offset, len);
          }
        }
        this.offset += len;
      }
      address += len;
      length -= len;
    }
    writeControl(this.memory, gpa, error ? FW_CFG_DMA_CTL_ERROR : 0);
  }

  private notifyWrite(item: Item, offset: number, length: number): void {
    if (!item.onWrite) return;
    try {
      item.onWrite(offset, length);
    } catch (err) {
      this.ctx.log.error(
        `${this.name}: write callback for item ${hex(this.selector)} failed: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  // --- file directory -------------------------------------------------------

  /** FWCfgFiles: be32 count, then one 64-byte FWCfgFile per file, sorted by name. */
  private rebuildDirectory(): void {
    const sorted = [...this.files].sort((a, b) => compareBytes(a.nameBytes, b.nameBytes));
    const dir = new Uint8Array(4 + FW_CFG_FILE_ENTRY_SIZE * sorted.length);
    const dv = new DataView(dir.buffer);
    dv.setUint32(0, sorted.length);
    sorted.forEach((f, i) => {
      const at = 4 + FW_CFG_FILE_ENTRY_SIZE * i;
      dv.setUint32(at, this.items.get(f.select)!.data.length);
      dv.setUint16(at + 4, f.select);
      dir.set(f.nameBytes, at + 8);
    });
    this.items.set(FW_CFG_FILE_DIR, readOnly(dir));
  }

  private guestError(kind: string, msg: () => string): void {
    this.ctx.guestErrors.warn(`${this.name}-${kind}`, () => `${this.name}: ${msg()}`);
  }
}

// --- encoders for the files the machine adds ------------------------------

/** An e820 entry as etc/e820 carries it (QEMU's struct e820_entry). */
export interface FwCfgE820Entry {
  readonly addr: number;
  readonly size: number;
  readonly type: number;
}

/** Bytes per etc/e820 entry: u64 address, u64 length, u32 type, little endian, packed. */
export const FW_CFG_E820_ENTRY_SIZE = 20;

/** The contents of `etc/e820`: RAM and reserved ranges, which SeaBIOS adds to its map. */
export function encodeE820File(entries: readonly FwCfgE820Entry[]): Uint8Array {
  const out = new Uint8Array(FW_CFG_E820_ENTRY_SIZE * entries.length);
  const dv = new DataView(out.buffer);
  entries.forEach((e, i) => {
    if (!isUint(e.addr, Number.MAX_SAFE_INTEGER) || !isUint(e.size, Number.MAX_SAFE_INTEGER)) {
      throw new RangeError(`bad e820 range ${e.addr}+${e.size}`);
    }
    if (!isUint(e.type, 0xffffffff)) throw new RangeError(`bad e820 type ${e.type}`);
    const at = FW_CFG_E820_ENTRY_SIZE * i;
    dv.setBigUint64(at, BigInt(e.addr), true);
    dv.setBigUint64(at + 8, BigInt(e.size), true);
    dv.setUint32(at + 16, e.type, true);
  });
  return out;
}

/**
 * The contents of `bootorder`: OpenFirmware device paths, most preferred
 * first, one per line; like QEMU, the last one ends with a NUL instead of
 * a newline. No paths gives an empty file.
 */
export function encodeBootOrder(paths: readonly string[]): Uint8Array {
  for (const p of paths) {
    if (p.length === 0 || p.includes('\n') || p.includes('\0'))
      throw new RangeError(`bad boot device path ${JSON.stringify(p)}`);
  }
  if (paths.length === 0) return new Uint8Array(0);
  return new TextEncoder().encode(paths.join('\n') + '\0');
}

/** The contents of `etc/boot-menu-wait`: how long the boot menu waits, in ms (u16 LE). */
export function encodeBootMenuWait(ms: number): Uint8Array {
  if (!isUint(ms, 0xffff)) throw new RangeError(`boot menu wait ${ms} ms is not 0-65535`);
  return le16(ms);
}

/**
 * A file name as directory entries and linker/loader commands carry it:
 * 56 bytes, NUL padded, so at most 55 bytes of UTF-8 (plain ASCII is what
 * firmware expects).
 */
export function fwCfgFileName(name: string): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length === 0 || bytes.length >= FW_CFG_MAX_FILE_PATH || bytes.includes(0)) {
    throw new FwCfgError(`fw_cfg file name ${JSON.stringify(name)} must be 1-55 bytes without NUL`);
  }
  const out = new Uint8Array(FW_CFG_MAX_FILE_PATH);
  out.set(bytes);
  return out;
}

// --- helpers ----------------------------------------------------------------

function readOnly(data: Uint8Array): Item {
  return { data, writable: false, onWrite: undefined };
}

function checkItemSize(what: string, data: Uint8Array): void {
  if (data.length > 0xffffffff) throw new FwCfgError(`fw_cfg item ${what} is larger than 4 GiB`);
}

function le16(v: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, v, true);
  return b;
}

function le32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

function le64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
}

function bswap32(v: number): number {
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | ((v >>> 24) & 0xff)) >>> 0;
}

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/**
 * Views covering guest [gpa, gpa+length), which may span adjacent RAM
 * regions (a DMA buffer need not sit inside one), or undefined if any byte
 * is outside RAM. Nothing is touched until the whole range is known good.
 */
function guestSpans(memory: GuestMemory, gpa: number, length: number): Uint8Array[] | undefined {
  const whole = memory.tryView(gpa, length);
  if (whole) return [whole];
  if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(gpa + length) || gpa < 0) return undefined;
  const spans: Uint8Array[] = [];
  let at = gpa;
  let left = length;
  while (left > 0) {
    const r = memory.list().find((reg) => at >= reg.gpa && at < reg.gpa + reg.size);
    if (!r) return undefined;
    const n = Math.min(left, r.gpa + r.size - at);
    spans.push(r.bytes.subarray(at - r.gpa, at - r.gpa + n));
    at += n;
    left -= n;
  }
  return spans;
}

function copyToGuest(memory: GuestMemory, gpa: number, src: Uint8Array): boolean {
  const spans = guestSpans(memory, gpa, src.length);
  if (!spans) return false;
  let at = 0;
  for (const s of spans) {
    s.set(src.subarray(at, at + s.length));
    at += s.length;
  }
  return true;
}

function copyFromGuest(memory: GuestMemory, gpa: number, dst: Uint8Array): boolean {
  const spans = guestSpans(memory, gpa, dst.length);
  if (!spans) return false;
  let at = 0;
  for (const s of spans) {
    dst.set(s, at);
    at += s.length;
  }
  return true;
}

function fillGuest(memory: GuestMemory, gpa: number, length: number): boolean {
  const spans = guestSpans(memory, gpa, length);
  if (!spans) return false;
  for (const s of spans) s.fill(0);
  return true;
}

/** Writes a FWCfgDmaAccess control word (big endian) if it lies in RAM. */
function writeControl(memory: GuestMemory, gpa: number, control: number): boolean {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, control);
  return copyToGuest(memory, gpa, b);
}
