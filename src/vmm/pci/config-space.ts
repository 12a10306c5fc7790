/**
 * Configuration space of a type-0 (endpoint) PCI function: the 64-byte
 * predefined header plus the device-specific area up to 256 bytes (PCI
 * Local Bus Spec 3.0 §6.1), or the 4 KiB space of PCI Express (PCIe Base
 * Spec 4.0 §7.2.2), whose bytes past 0xFF only ECAM can reach.
 *
 * What the guest may change is data, not code (as QEMU's `wmask` and
 * `w1cmask`): per byte, a write mask of the bits a guest write sets, and a
 * write-1-to-clear mask (the status error bits, §6.2.3). All other bits are
 * read-only to the guest; the device model changes them with the raw
 * setters (`set8/16/32`). Base Address Registers need no code either: the
 * address bits below the BAR's size are read-only zeros, so the sizing
 * protocol of §6.2.5.1 (write all-ones, read back) falls out of the mask.
 */
import type { AccessSize } from '../core/device.js';
import { DeviceStateError } from '../core/device.js';
import { hex } from '../core/bus.js';

/** Header registers (PCI 3.0 §6.1, figure 6-1). */
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BIST = 0x0f;
export const PCI_BAR0 = 0x10;
export const PCI_CARDBUS_CIS = 0x28;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
export const PCI_MIN_GNT = 0x3e;
export const PCI_MAX_LAT = 0x3f;
/** First byte after the predefined header: capabilities and device registers. */
export const PCI_DEVICE_SPECIFIC = 0x40;

export const PCI_CONFIG_SPACE_SIZE = 256;
export const PCIE_CONFIG_SPACE_SIZE = 4096;
export const PCI_NUM_BARS = 6;

/** Command register bits (§6.2.2). */
export const PCI_COMMAND_IO = 0x0001;
export const PCI_COMMAND_MEMORY = 0x0002;
export const PCI_COMMAND_MASTER = 0x0004;
export const PCI_COMMAND_PARITY = 0x0040;
export const PCI_COMMAND_SERR = 0x0100;
export const PCI_COMMAND_INTX_DISABLE = 0x0400;

/** Status register bits (§6.2.3). */
export const PCI_STATUS_INTERRUPT = 0x0008;
export const PCI_STATUS_CAP_LIST = 0x0010;
export const PCI_STATUS_MASTER_PARITY = 0x0100;
export const PCI_STATUS_SIG_TARGET_ABORT = 0x0800;
export const PCI_STATUS_REC_TARGET_ABORT = 0x1000;
export const PCI_STATUS_REC_MASTER_ABORT = 0x2000;
export const PCI_STATUS_SIG_SYSTEM_ERROR = 0x4000;
export const PCI_STATUS_DETECTED_PARITY = 0x8000;
/** The error bits software clears by writing 1 to them. */
export const PCI_STATUS_W1C =
  PCI_STATUS_MASTER_PARITY |
  PCI_STATUS_SIG_TARGET_ABORT |
  PCI_STATUS_REC_TARGET_ABORT |
  PCI_STATUS_REC_MASTER_ABORT |
  PCI_STATUS_SIG_SYSTEM_ERROR |
  PCI_STATUS_DETECTED_PARITY;

/** Header type bit 7: the device has more than one function (§6.2.1). */
export const PCI_HEADER_MULTI_FUNCTION = 0x80;

/** BAR low bits (§6.2.5.1). */
export const PCI_BAR_SPACE_IO = 0x1;
export const PCI_BAR_MEM_TYPE_64 = 0x4;
export const PCI_BAR_MEM_PREFETCH = 0x8;
export const PCI_ROM_ENABLE = 0x1;

/** Capability IDs (PCI Code and ID Assignment Spec §2). */
export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_VENDOR = 0x09;
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;

export type BarKind = 'io' | 'mem32' | 'mem64';

export interface BarLayout {
  readonly kind: BarKind;
  /** Bytes; a power of two. */
  readonly size: number;
  readonly prefetchable: boolean;
}

/** An interrupt pin as the Interrupt Pin register names it: 1 = INTA# ... 4 = INTD#. */
export type IntxPin = 1 | 2 | 3 | 4;

export interface PciHeader {
  vendorId: number;
  deviceId: number;
  /** Base class << 16 | sub-class << 8 | programming interface. */
  classCode: number;
  revision?: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** 0 when the function uses no INTx pin. */
  interruptPin?: 0 | IntxPin;
  multiFunction?: boolean;
  /** 4 KiB PCI Express configuration space instead of 256 bytes. */
  extended?: boolean;
}

export interface Capability {
  readonly id: number;
  readonly offset: number;
}

type Watcher = { start: number; end: number; fn: (offset: number, size: AccessSize) => void };

const TWO32 = 0x1_0000_0000;

const sizeLimits: Record<BarKind, [number, number]> = {
  // §6.2.5.1: I/O BARs ask for at least 4 bytes (and should stay within
  // 256); memory BARs for at least 16 bytes. x86 has 64 KiB of ports.
  io: [4, 0x10000],
  mem32: [16, 0x8000_0000],
  mem64: [16, 2 ** 52],
};

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Math.log2(n) % 1 === 0;
}

export class ConfigSpace {
  readonly size: number;
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  private readonly wmask: Uint8Array;
  private readonly w1cmask: Uint8Array;
  /** Bytes of the device-specific area that a capability or register claimed. */
  private readonly used: Uint8Array;
  private readonly barLayouts: Array<BarLayout | 'upper' | undefined> = new Array(PCI_NUM_BARS).fill(
    undefined,
  );
  private romBytes = 0;
  private lastCap = 0;
  private readonly watchers: Watcher[] = [];

  constructor(header: PciHeader) {
    this.size = header.extended ? PCIE_CONFIG_SPACE_SIZE : PCI_CONFIG_SPACE_SIZE;
    this.bytes = new Uint8Array(this.size);
    this.view = new DataView(this.bytes.buffer);
    this.wmask = new Uint8Array(this.size);
    this.w1cmask = new Uint8Array(this.size);
    this.used = new Uint8Array(this.size);
    this.used.fill(1, 0, PCI_DEVICE_SPECIFIC);
    const { vendorId, deviceId, classCode } = header;
    if (!Number.isInteger(vendorId) || vendorId <= 0 || vendorId >= 0xffff) {
      // 0xFFFF is what an empty slot reads; §6.2.1 reserves it.
      throw new RangeError(`bad PCI vendor ID ${vendorId}`);
    }
    this.set16(PCI_VENDOR_ID, vendorId);
    this.set16(PCI_DEVICE_ID, deviceId);
    this.set8(PCI_REVISION_ID, header.revision ?? 0);
    this.set8(PCI_CLASS_PROG, classCode & 0xff);
    this.set16(PCI_CLASS_DEVICE, (classCode >>> 8) & 0xffff);
    this.set8(PCI_HEADER_TYPE, header.multiFunction ? PCI_HEADER_MULTI_FUNCTION : 0);
    this.set16(PCI_SUBSYSTEM_VENDOR_ID, header.subsystemVendorId ?? 0);
    this.set16(PCI_SUBSYSTEM_ID, header.subsystemId ?? 0);
    this.set8(PCI_INTERRUPT_PIN, header.interruptPin ?? 0);
    // Writable header bits, as QEMU's pci_init_wmask: the decode enables,
    // parity/SERR reporting and INTx disable (§6.2.2; special cycles, MWI,
    // VGA snoop and fast back-to-back are optional and hardwired to 0),
    // the cache line size (§6.2.4) and the interrupt line (§6.2.4, a
    // scratch byte for software). Latency timer and BIST read as 0.
    this.setWmask(
      PCI_COMMAND,
      2,
      PCI_COMMAND_IO |
        PCI_COMMAND_MEMORY |
        PCI_COMMAND_MASTER |
        PCI_COMMAND_PARITY |
        PCI_COMMAND_SERR |
        PCI_COMMAND_INTX_DISABLE,
    );
    this.setW1cMask(PCI_STATUS, 2, PCI_STATUS_W1C);
    this.setWmask(PCI_CACHE_LINE_SIZE, 1, 0xff);
    this.setWmask(PCI_INTERRUPT_LINE, 1, 0xff);
  }

  // ---- guest accesses ------------------------------------------------------

  /** A guest read: little-endian; bytes past the end of the space read as 0xFF. */
  read(offset: number, size: AccessSize): number {
    if (offset >= 0 && offset + size <= this.size) {
      if (size === 1) return this.bytes[offset]!;
      if (size === 2) return this.view.getUint16(offset, true);
      return this.view.getUint32(offset, true);
    }
    let v = 0;
    for (let i = size - 1; i >= 0; i--) {
      const o = offset + i;
      v = v * 256 + (o >= 0 && o < this.size ? this.bytes[o]! : 0xff);
    }
    return v;
  }

  /** A guest write: only bits of the write mask change; set W1C bits clear. */
  write(offset: number, size: AccessSize, value: number): void {
    if (offset < 0 || offset >= this.size) return;
    const n = Math.min(size, this.size - offset);
    for (let i = 0; i < n; i++) {
      const o = offset + i;
      const b = (value >>> (8 * i)) & 0xff;
      const w = this.wmask[o]!;
      this.bytes[o] = ((this.bytes[o]! & ~w) | (b & w)) & ~(b & this.w1cmask[o]!);
    }
    const end = offset + n;
    for (const w of this.watchers) if (offset < w.end && w.start < end) w.fn(offset, size);
  }

  /**
   * Calls `fn` after every guest write that touches [offset, offset+length):
   * how capabilities (MSI, MSI-X) see their registers change.
   */
  watch(offset: number, length: number, fn: (offset: number, size: AccessSize) => void): void {
    this.checkRange(offset, length);
    this.watchers.push({ start: offset, end: offset + length, fn });
  }

  // ---- device-side raw access (no masks) ---------------------------------

  get8(offset: number): number {
    this.checkRange(offset, 1);
    return this.bytes[offset]!;
  }
  get16(offset: number): number {
    this.checkRange(offset, 2);
    return this.view.getUint16(offset, true);
  }
  get32(offset: number): number {
    this.checkRange(offset, 4);
    return this.view.getUint32(offset, true);
  }
  set8(offset: number, value: number): void {
    this.checkRange(offset, 1);
    this.bytes[offset] = value;
  }
  set16(offset: number, value: number): void {
    this.checkRange(offset, 2);
    this.view.setUint16(offset, value & 0xffff, true);
  }
  set32(offset: number, value: number): void {
    this.checkRange(offset, 4);
    this.view.setUint32(offset, value >>> 0, true);
  }

  /** Sets the bits a guest write may change in a 1-, 2- or 4-byte register. */
  setWmask(offset: number, size: AccessSize, mask: number): void {
    this.setMask(this.wmask, offset, size, mask);
  }

  /** Sets the bits a guest clears by writing 1 (RW1C). */
  setW1cMask(offset: number, size: AccessSize, mask: number): void {
    this.setMask(this.w1cmask, offset, size, mask);
  }

  /** Write mask of one byte (tests and the device's own checks). */
  wmaskAt(offset: number): number {
    this.checkRange(offset, 1);
    return this.wmask[offset]!;
  }

  // ---- header fields -------------------------------------------------------

  get vendorId(): number {
    return this.get16(PCI_VENDOR_ID);
  }
  get deviceId(): number {
    return this.get16(PCI_DEVICE_ID);
  }
  get command(): number {
    return this.get16(PCI_COMMAND);
  }
  get status(): number {
    return this.get16(PCI_STATUS);
  }
  get interruptPin(): number {
    return this.get8(PCI_INTERRUPT_PIN);
  }

  /** Sets or clears read-only status bits (interrupt status, errors) from the device side. */
  setStatusBits(mask: number, on: boolean): void {
    const s = this.status;
    this.set16(PCI_STATUS, on ? s | mask : s & ~mask);
  }

  setMultiFunction(on: boolean): void {
    const h = this.get8(PCI_HEADER_TYPE);
    this.set8(PCI_HEADER_TYPE, on ? h | PCI_HEADER_MULTI_FUNCTION : h & ~PCI_HEADER_MULTI_FUNCTION);
  }

  // ---- BARs (§6.2.5.1) -----------------------------------------------------

  /**
   * Declares BAR `index`. The low bits say what it is (bit 0: I/O; bits
   * 2:1 = 10b: 64-bit memory; bit 3: prefetchable) and are read-only, as
   * are the address bits below the size; a 64-bit BAR also takes register
   * `index + 1` for the upper 32 address bits.
   */
  addBar(index: number, layout: BarLayout): void {
    const { kind, size, prefetchable } = layout;
    if (!Number.isInteger(index) || index < 0 || index >= PCI_NUM_BARS)
      throw new RangeError(`bad BAR index ${index}`);
    if (kind === 'mem64' && index === PCI_NUM_BARS - 1) throw new RangeError('a 64-bit BAR cannot be BAR5');
    const [min, max] = sizeLimits[kind];
    if (!isPowerOfTwo(size) || size < min || size > max) {
      throw new RangeError(`BAR${index}: ${kind} size ${size} must be a power of two in ${min}..${max}`);
    }
    if (kind === 'io' && prefetchable) throw new RangeError(`BAR${index}: an I/O BAR is not prefetchable`);
    if (
      this.barLayouts[index] !== undefined ||
      (kind === 'mem64' && this.barLayouts[index + 1] !== undefined)
    ) {
      throw new RangeError(`BAR${index} is already declared`);
    }
    const reg = PCI_BAR0 + 4 * index;
    this.barLayouts[index] = { kind, size, prefetchable };
    if (kind === 'io') {
      // All 32 address bits are writable (§6.2.5.1); the host bus refuses
      // to decode an I/O BAR past 0xFFFF, as QEMU does.
      this.set32(reg, PCI_BAR_SPACE_IO);
      this.setWmask(reg, 4, ~(size - 1) >>> 0);
      return;
    }
    const flags = (kind === 'mem64' ? PCI_BAR_MEM_TYPE_64 : 0) | (prefetchable ? PCI_BAR_MEM_PREFETCH : 0);
    this.set32(reg, flags);
    const mask = ~(BigInt(size) - 1n) & 0xffff_ffff_ffff_fff0n;
    this.setWmask(reg, 4, Number(mask & 0xffff_ffffn));
    if (kind === 'mem64') {
      this.barLayouts[index + 1] = 'upper';
      this.set32(reg + 4, 0);
      this.setWmask(reg + 4, 4, Number(mask >> 32n));
    }
  }

  /** The layout of BAR `index`, or undefined if unused or the upper half of a 64-bit BAR. */
  bar(index: number): BarLayout | undefined {
    const b = this.barLayouts[index];
    return b === 'upper' ? undefined : b;
  }

  /**
   * The base address BAR `index` holds, without its flag bits (a number:
   * exact below 2^53; larger 64-bit addresses are not mappable anyway).
   */
  barAddress(index: number): number {
    const b = this.bar(index);
    if (!b) return 0;
    const reg = PCI_BAR0 + 4 * index;
    const lo = this.get32(reg);
    if (b.kind === 'io') return (lo & ~0x3) >>> 0;
    const low = (lo & ~0xf) >>> 0;
    return b.kind === 'mem64' ? this.get32(reg + 4) * TWO32 + low : low;
  }

  /**
   * Declares an expansion ROM of `size` bytes (§6.2.5.2): bits 31:11 hold
   * the address, bit 0 enables decoding (together with Memory Space).
   */
  setRom(size: number): void {
    if (!isPowerOfTwo(size) || size < 0x800 || size > 0x8000_0000) {
      throw new RangeError(`expansion ROM size ${size} must be a power of two in 2 KiB..2 GiB`);
    }
    this.romBytes = size;
    this.set32(PCI_ROM_ADDRESS, 0);
    this.setWmask(PCI_ROM_ADDRESS, 4, ((~(size - 1) & 0xfffff800) | PCI_ROM_ENABLE) >>> 0);
  }

  /** Size of the expansion ROM, 0 if none. */
  get romSize(): number {
    return this.romBytes;
  }
  romAddress(): number {
    return (this.get32(PCI_ROM_ADDRESS) & 0xfffff800) >>> 0;
  }
  romEnabled(): boolean {
    return (this.get32(PCI_ROM_ADDRESS) & PCI_ROM_ENABLE) !== 0;
  }

  // ---- capabilities (§6.7) -------------------------------------------------

  /**
   * Marks device-specific registers in [offset, offset+length) as taken,
   * so capabilities are not placed over them.
   */
  reserve(offset: number, length: number): void {
    this.checkRange(offset, length);
    if (offset < PCI_DEVICE_SPECIFIC) throw new RangeError(`${hex(offset)} is in the predefined header`);
    if (this.used.subarray(offset, offset + length).some((u) => u !== 0)) {
      throw new RangeError(`config bytes ${hex(offset)}+${length} are already taken`);
    }
    this.used.fill(1, offset, offset + length);
  }

  /**
   * Adds a capability of `length` bytes (ID and next pointer included) at
   * the first free DWORD-aligned offset, or at `at`, and links it at the
   * end of the list: Status bit 4 says a list exists, 0x34 points to the
   * first entry, each entry's byte 1 to the next, 0 ends it. Capabilities
   * live in the first 256 bytes. Returns the offset.
   */
  addCapability(id: number, length: number, at?: number): number {
    if (!Number.isInteger(length) || length < 2) throw new RangeError(`bad capability length ${length}`);
    let offset = at;
    if (offset === undefined) {
      for (let o = PCI_DEVICE_SPECIFIC; o + length <= PCI_CONFIG_SPACE_SIZE; o += 4) {
        if (this.used.subarray(o, o + length).every((u) => u === 0)) {
          offset = o;
          break;
        }
      }
      if (offset === undefined) throw new RangeError(`no room for a ${length}-byte capability`);
    } else if (offset % 4 !== 0 || offset + length > PCI_CONFIG_SPACE_SIZE) {
      throw new RangeError(`capability at ${hex(offset)} must be DWORD-aligned and below 0x100`);
    }
    this.reserve(offset, length);
    this.set8(offset, id);
    this.set8(offset + 1, 0);
    if (this.lastCap === 0) this.set8(PCI_CAPABILITY_LIST, offset);
    else this.set8(this.lastCap + 1, offset);
    this.lastCap = offset;
    this.setStatusBits(PCI_STATUS_CAP_LIST, true);
    return offset;
  }

  /**
   * Walks the list as a guest would (low two bits of each pointer are
   * reserved, §6.7), stopping at 48 entries: a loop cannot hang it.
   */
  capabilities(): Capability[] {
    const caps: Capability[] = [];
    if (!(this.status & PCI_STATUS_CAP_LIST)) return caps;
    let p = this.get8(PCI_CAPABILITY_LIST) & 0xfc;
    while (p !== 0 && caps.length < 48) {
      caps.push({ id: this.get8(p), offset: p });
      p = this.get8(p + 1) & 0xfc;
    }
    return caps;
  }

  findCapability(id: number): number | undefined {
    return this.capabilities().find((c) => c.id === id)?.offset;
  }

  // ---- reset and state -----------------------------------------------------

  /**
   * Power-on values: every guest-writable bit back to 0 (command, BAR and
   * ROM addresses, interrupt line, capability registers), as QEMU's
   * pci_device_reset. Read-only bits keep what the device set.
   */
  resetRegisters(): void {
    for (let i = 0; i < this.size; i++) this.bytes[i]! &= ~(this.wmask[i]! | this.w1cmask[i]!);
  }

  /** The bytes, for saved state. */
  save(): number[] {
    return Array.from(this.bytes);
  }

  /**
   * Loads saved bytes; refuses a state of another function (vendor,
   * device, class or header type differ) or of another size.
   */
  load(bytes: unknown, who: string): void {
    if (
      !Array.isArray(bytes) ||
      bytes.length !== this.size ||
      !bytes.every((b) => Number.isInteger(b) && b >= 0 && b <= 0xff)
    ) {
      throw new DeviceStateError(`${who}: bad PCI config space in saved state`);
    }
    const same = (o: number) => bytes[o] === this.bytes[o];
    const identity = [0, 1, 2, 3, 0x09, 0x0a, 0x0b];
    if (
      !identity.every(same) ||
      ((bytes[PCI_HEADER_TYPE] as number) & 0x7f) !== (this.bytes[PCI_HEADER_TYPE]! & 0x7f)
    ) {
      throw new DeviceStateError(`${who}: saved PCI config space is of another device`);
    }
    this.bytes.set(bytes as number[]);
  }

  private setMask(masks: Uint8Array, offset: number, size: AccessSize, mask: number): void {
    this.checkRange(offset, size);
    for (let i = 0; i < size; i++) masks[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  private checkRange(offset: number, length: number): void {
    if (
      !Number.isInteger(offset) ||
      !Number.isInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.size
    ) {
      throw new RangeError(`config space range ${offset}+${length} outside ${this.size} bytes`);
    }
  }
}
