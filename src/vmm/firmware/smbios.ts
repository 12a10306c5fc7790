/**
 * SMBIOS tables (DMTF DSP0134 3.x; structure layouts as of version 2.8)
 * describing the machine to the guest: BIOS, system (with its UUID),
 * chassis, processors, memory and boot status.
 *
 * The output is an entry point ("anchor") and the structure table, the
 * two halves QEMU hands SeaBIOS/OVMF as fw_cfg "etc/smbios/smbios-anchor"
 * and "etc/smbios/smbios-tables"; the firmware copies the table and fills
 * in its address. For direct kernel boot the VMM places the table itself,
 * writes the address with setSmbiosTableAddress() and puts the anchor on a
 * 16-byte boundary in 0xF0000-0xFFFFF, where Linux's dmi_scan looks for it.
 *
 * Structure handles are (type << 8) | index, as QEMU numbers them, so a
 * handle tells what it refers to.
 */
import { DEFAULT_CPU_FEATURES, DEFAULT_CPU_SIGNATURE } from '../boot/mptable.js';

export type SmbiosEntryPointVersion = '2.8' | '3.0';

export interface SmbiosOptions {
  /** System UUID, "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" or 16 bytes in RFC 4122 (big-endian) order. */
  uuid: string | Uint8Array;
  /** vCPUs. */
  cpus: number;
  /** CPU sockets (one type 4 structure each); default one per vCPU. Must divide `cpus`. */
  sockets?: number;
  /** Guest RAM in bytes below and above 4 GiB, as the memory layout split it. */
  memory: { below4g: number; above4g: number };
  /** Manufacturer in types 0 (BIOS vendor), 1, 3 and 4 (default "mvisor"). */
  vendor?: string;
  /** Product name in type 1 and version of types 3 and 4 (default "mvisor PC (i440FX + PIIX4)"). */
  product?: string;
  /** BIOS version (type 0) and system version (type 1). */
  version?: string;
  /** System serial number (type 1). */
  serial?: string;
  /** Entry point: SMBIOS 2.8 `_SM_` (default) or 3.0 `_SM3_`. */
  entryPoint?: SmbiosEntryPointVersion;
  /** Guest address of the structure table, if already known (default 0; see setSmbiosTableAddress). */
  tableAddress?: number;
  /** CPUID.1 EAX and EDX for the Processor ID of type 4. */
  cpuSignature?: number;
  cpuFeatures?: number;
}

export interface Smbios {
  /** The entry point structure (31 bytes for 2.8, 24 for 3.0). */
  anchor: Uint8Array;
  /** The structure table, ending with the type 127 structure. */
  tables: Uint8Array;
  structureCount: number;
  maxStructureSize: number;
}

export const SMBIOS_TYPE_BIOS = 0;
export const SMBIOS_TYPE_SYSTEM = 1;
export const SMBIOS_TYPE_CHASSIS = 3;
export const SMBIOS_TYPE_PROCESSOR = 4;
export const SMBIOS_TYPE_MEMORY_ARRAY = 16;
export const SMBIOS_TYPE_MEMORY_DEVICE = 17;
export const SMBIOS_TYPE_MEMORY_ARRAY_MAPPED_ADDRESS = 19;
export const SMBIOS_TYPE_SYSTEM_BOOT = 32;
export const SMBIOS_TYPE_END = 127;

export const SMBIOS21_ANCHOR_SIZE = 0x1f;
export const SMBIOS30_ANCHOR_SIZE = 0x18;
/** Offset of the `_DMI_` intermediate anchor in the 2.1-style entry point. */
export const SMBIOS21_INTERMEDIATE_OFFSET = 0x10;
export const SMBIOS21_INTERMEDIATE_SIZE = 0x0f;

/** Largest memory device QEMU describes; more RAM is split over several type 17s (hw/smbios/smbios.c MAX_DIMM_SZ). */
export const MAX_MEMORY_DEVICE_SIZE = 16 * 2 ** 30;

const KIB = 1024;
const MIB = 1024 * 1024;
const FOUR_GIB = 2 ** 32;
const NO_HANDLE = 0xffff;
/** "Not provided" for memory error information handles. */
const NO_ERROR_INFO = 0xfffe;
const DEFAULT_VENDOR = 'mvisor';
const DEFAULT_PRODUCT = 'mvisor PC (i440FX + PIIX4)';
const DEFAULT_VERSION = '0.1.0';
const BIOS_RELEASE_DATE = '01/01/2026';

function sum8(b: Uint8Array, start: number, length: number): number {
  let s = 0;
  for (let i = start; i < start + length; i++) s += b[i]!;
  return s & 0xff;
}

function fixChecksum(b: Uint8Array, offset: number, start: number, length: number): void {
  b[offset] = 0;
  b[offset] = -sum8(b, start, length) & 0xff;
}

/**
 * The 16 bytes of an SMBIOS UUID field (DSP0134 §7.2.1): since 2.6 the
 * first three fields (time_low, time_mid, time_hi_and_version) are stored
 * little-endian and the rest as written, so "00112233-4455-6677-8899-
 * aabbccddeeff" becomes 33 22 11 00 55 44 77 66 88 99 AA BB CC DD EE FF.
 */
export function encodeSmbiosUuid(uuid: string | Uint8Array): Uint8Array {
  let rfc: Uint8Array;
  if (typeof uuid === 'string') {
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(uuid)) {
      throw new RangeError(`SMBIOS: "${uuid}" is not a UUID`);
    }
    rfc = Uint8Array.from(Buffer.from(uuid.replace(/-/g, ''), 'hex'));
  } else {
    if (uuid.length !== 16) throw new RangeError(`SMBIOS: a UUID is 16 bytes, not ${uuid.length}`);
    rfc = uuid;
  }
  const out = Uint8Array.from(rfc);
  out.set([rfc[3]!, rfc[2]!, rfc[1]!, rfc[0]!, rfc[5]!, rfc[4]!, rfc[7]!, rfc[6]!], 0);
  return out;
}

/** Sizes of the memory devices (type 17) `total` bytes are described as: 16 GiB each, the rest in the last. */
export function memoryDeviceSizes(total: number): number[] {
  const sizes: number[] = [];
  for (let left = total; left > 0; left -= MAX_MEMORY_DEVICE_SIZE)
    sizes.push(Math.min(left, MAX_MEMORY_DEVICE_SIZE));
  return sizes;
}

/** One structure: its formatted area (header included) and its string set. */
class Structure {
  readonly bytes: Uint8Array;
  readonly dv: DataView;
  private readonly strings: string[] = [];

  constructor(type: number, length: number, handle: number) {
    this.bytes = new Uint8Array(length);
    this.dv = new DataView(this.bytes.buffer);
    this.bytes[0] = type;
    this.bytes[1] = length;
    this.dv.setUint16(2, handle, true);
  }

  u8(off: number, v: number): this {
    this.bytes[off] = v;
    return this;
  }

  u16(off: number, v: number): this {
    this.dv.setUint16(off, v, true);
    return this;
  }

  u32(off: number, v: number): this {
    this.dv.setUint32(off, v, true);
    return this;
  }

  u64(off: number, v: number): this {
    this.dv.setBigUint64(off, BigInt(v), true);
    return this;
  }

  /** A string field: its 1-based number in the string set, or 0 for none (DSP0134 §6.1.3). */
  str(off: number, s: string | undefined): this {
    if (s === undefined || s === '') {
      this.bytes[off] = 0;
      return this;
    }
    if (!/^[\x20-\x7e]+$/.test(s)) throw new RangeError(`SMBIOS: string "${s}" is not printable ASCII`);
    let n = this.strings.indexOf(s) + 1;
    if (n === 0) n = this.strings.push(s);
    if (n > 255) throw new RangeError('SMBIOS: more than 255 strings in one structure');
    this.bytes[off] = n;
    return this;
  }

  /**
   * Formatted area, then each string NUL-terminated and one more NUL; a
   * structure without strings ends in two NULs (§6.1.3).
   */
  encode(): Uint8Array {
    const text = this.strings.length === 0 ? '\0\0' : this.strings.map((s) => `${s}\0`).join('') + '\0';
    const out = new Uint8Array(this.bytes.length + text.length);
    out.set(this.bytes);
    out.set(Buffer.from(text, 'latin1'), this.bytes.length);
    return out;
  }
}

function checkBytes(what: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`SMBIOS: ${what} ${v} is not a byte count`);
}

/** Builds the entry point and the structure table (types 0, 1, 3, 4, 16, 17, 19, 32, 127). */
export function buildSmbios(opts: SmbiosOptions): Smbios {
  const { cpus } = opts;
  const sockets = opts.sockets ?? cpus;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 255)
    throw new RangeError(`SMBIOS: ${cpus} CPUs is outside 1-255`);
  if (!Number.isInteger(sockets) || sockets < 1 || cpus % sockets !== 0) {
    throw new RangeError(`SMBIOS: ${cpus} CPUs do not split evenly over ${sockets} sockets`);
  }
  const { below4g, above4g } = opts.memory;
  checkBytes('memory below 4 GiB', below4g);
  checkBytes('memory above 4 GiB', above4g);
  if (below4g === 0 || below4g > FOUR_GIB) throw new RangeError(`SMBIOS: ${below4g} bytes below 4 GiB`);
  const vendor = opts.vendor ?? DEFAULT_VENDOR;
  const product = opts.product ?? DEFAULT_PRODUCT;
  const version = opts.version ?? DEFAULT_VERSION;
  const uuid = encodeSmbiosUuid(opts.uuid);
  const structures: Structure[] = [];
  const add = (type: number, length: number, index = 0) => {
    const s = new Structure(type, length, (type << 8) | index);
    structures.push(s);
    return s;
  };

  // Type 0, BIOS Information (§7.1), 2.4+ length 0x18.
  add(SMBIOS_TYPE_BIOS, 0x18)
    .str(0x04, vendor)
    .str(0x05, version)
    .u16(0x06, 0xe800) // starting segment: a 96 KiB BIOS image, as QEMU reports it
    .str(0x08, BIOS_RELEASE_DATE)
    .u8(0x09, 0) // ROM size 64 KiB * (n + 1)
    .u32(0x0a, 1 << 3) // characteristics: "BIOS characteristics not supported"
    .u8(0x13, (1 << 2) | (1 << 4)) // extension byte 2: targeted content distribution, virtual machine
    .u8(0x14, 0) // system BIOS major/minor release
    .u8(0x15, 0)
    .u8(0x16, 0xff) // no embedded controller firmware
    .u8(0x17, 0xff);

  // Type 1, System Information (§7.2), 2.4+ length 0x1B.
  const system = add(SMBIOS_TYPE_SYSTEM, 0x1b)
    .str(0x04, vendor)
    .str(0x05, product)
    .str(0x06, version)
    .str(0x07, opts.serial)
    .u8(0x18, 0x06); // wake-up type: power switch
  system.bytes.set(uuid, 0x08);

  // Type 3, System Enclosure (§7.4), 2.7 length 0x16 (no contained elements, SKU string).
  add(SMBIOS_TYPE_CHASSIS, 0x16)
    .str(0x04, vendor)
    .u8(0x05, 0x01) // type: other
    .str(0x06, product)
    .u8(0x09, 0x03) // boot-up, power supply and thermal state: safe
    .u8(0x0a, 0x03)
    .u8(0x0b, 0x03)
    .u8(0x0c, 0x02); // security status: unknown

  // Type 4, Processor Information (§7.5), 2.6+ length 0x2A, one per socket.
  const cores = cpus / sockets;
  for (let i = 0; i < sockets; i++) {
    add(SMBIOS_TYPE_PROCESSOR, 0x2a, i)
      .str(0x04, `CPU ${i}`)
      .u8(0x05, 0x03) // central processor
      .u8(0x06, 0xfe) // family: see Processor Family 2
      .str(0x07, vendor)
      .u32(0x08, (opts.cpuSignature ?? DEFAULT_CPU_SIGNATURE) >>> 0) // Processor ID: CPUID.1 EAX, EDX
      .u32(0x0c, (opts.cpuFeatures ?? DEFAULT_CPU_FEATURES) >>> 0)
      .str(0x10, product)
      .u16(0x14, 2000) // max and current speed in MHz, QEMU's defaults
      .u16(0x16, 2000)
      .u8(0x18, 0x41) // socket populated, CPU enabled
      .u8(0x19, 0x01) // upgrade: other
      .u16(0x1a, NO_HANDLE) // no L1/L2/L3 cache structures
      .u16(0x1c, NO_HANDLE)
      .u16(0x1e, NO_HANDLE)
      .u8(0x23, cores) // core count, cores enabled, thread count
      .u8(0x24, cores)
      .u8(0x25, cores)
      .u16(0x26, 0x04 | (cores > 1 ? 0x08 : 0)) // 64-bit capable, multi-core
      .u16(0x28, 0x01); // Processor Family 2: other
  }

  // Type 16, Physical Memory Array (§7.17), 2.7+ length 0x17.
  const total = below4g + above4g;
  const devices = memoryDeviceSizes(total);
  const arrayHandle = SMBIOS_TYPE_MEMORY_ARRAY << 8;
  const array = add(SMBIOS_TYPE_MEMORY_ARRAY, 0x17)
    .u8(0x04, 0x01) // location: other
    .u8(0x05, 0x03) // use: system memory
    .u8(0x06, 0x06) // error correction: multi-bit ECC, as QEMU says
    .u16(0x0b, NO_ERROR_INFO)
    .u16(0x0d, devices.length);
  const totalKib = Math.ceil(total / KIB);
  // Maximum Capacity in KiB, or 0x80000000 and Extended Maximum Capacity in bytes from 2 TiB.
  if (totalKib < 0x8000_0000) array.u32(0x07, totalKib);
  else array.u32(0x07, 0x8000_0000).u64(0x0f, total);

  // Type 17, Memory Device (§7.18), 2.8 length 0x28.
  devices.forEach((size, i) => {
    const mib = Math.ceil(size / MIB);
    const dev = add(SMBIOS_TYPE_MEMORY_DEVICE, 0x28, i)
      .u16(0x04, arrayHandle)
      .u16(0x06, NO_ERROR_INFO)
      .u16(0x08, 0xffff) // total and data width unknown
      .u16(0x0a, 0xffff)
      .u8(0x0e, 0x09) // form factor: DIMM
      .str(0x10, `DIMM ${i}`)
      .u8(0x12, 0x07) // memory type: RAM
      .u16(0x13, 0x02) // type detail: other
      .str(0x17, vendor);
    // Size in MiB (bit 15 clear), or 0x7FFF and Extended Size in MiB from 32 GiB - 1 MiB.
    if (mib < 0x7fff) dev.u16(0x0c, mib);
    else dev.u16(0x0c, 0x7fff).u32(0x1c, mib);
  });

  // Type 19, Memory Array Mapped Address (§7.20), 2.7+ length 0x1F: RAM below and above 4 GiB.
  const ranges = [
    { start: 0, size: below4g },
    { start: FOUR_GIB, size: above4g },
  ].filter((r) => r.size > 0);
  ranges.forEach((r, i) => {
    const mapped = add(SMBIOS_TYPE_MEMORY_ARRAY_MAPPED_ADDRESS, 0x1f, i).u16(0x0c, arrayHandle).u8(0x0e, 1); // partition width
    const startKib = r.start / KIB;
    const endKib = Math.ceil((r.start + r.size) / KIB) - 1;
    // Addresses in KiB, or 0xFFFFFFFF and Extended Starting/Ending Address in bytes from 4 TiB.
    if (endKib < 0xffff_ffff) mapped.u32(0x04, startKib).u32(0x08, endKib);
    else
      mapped
        .u32(0x04, 0xffff_ffff)
        .u32(0x08, 0xffff_ffff)
        .u64(0x0f, r.start)
        .u64(0x17, r.start + r.size - 1);
  });

  // Type 32, System Boot Information (§7.33): 6 reserved bytes, then "no errors detected".
  add(SMBIOS_TYPE_SYSTEM_BOOT, 0x0b).u8(0x0a, 0);
  // Type 127, End-of-Table (§7.45).
  add(SMBIOS_TYPE_END, 0x04);

  const encoded = structures.map((s) => s.encode());
  const tables = new Uint8Array(encoded.reduce((n, e) => n + e.length, 0));
  let off = 0;
  for (const e of encoded) {
    tables.set(e, off);
    off += e.length;
  }
  const maxStructureSize = Math.max(...encoded.map((e) => e.length));
  const version30 = opts.entryPoint === '3.0';
  if (!version30 && tables.length > 0xffff)
    throw new RangeError(`SMBIOS: ${tables.length}-byte table needs the 3.0 entry point`);
  const anchor = version30
    ? entryPoint30(tables.length)
    : entryPoint21(tables.length, structures.length, maxStructureSize);
  return {
    anchor: setSmbiosTableAddress(anchor, opts.tableAddress ?? 0),
    tables,
    structureCount: structures.length,
    maxStructureSize,
  };
}

/** SMBIOS 2.1-style (here 2.8) 32-bit entry point, `_SM_` with the `_DMI_` intermediate anchor (§5.2.1). */
function entryPoint21(tableLength: number, count: number, maxStructureSize: number): Uint8Array {
  const a = new Uint8Array(SMBIOS21_ANCHOR_SIZE);
  const dv = new DataView(a.buffer);
  a.set(Buffer.from('_SM_', 'latin1'), 0);
  a[0x05] = SMBIOS21_ANCHOR_SIZE;
  a[0x06] = 2; // major
  a[0x07] = 8; // minor
  dv.setUint16(0x08, maxStructureSize, true);
  a[0x0a] = 0; // entry point revision; 0x0B-0x0F formatted area, zero
  a.set(Buffer.from('_DMI_', 'latin1'), SMBIOS21_INTERMEDIATE_OFFSET);
  dv.setUint16(0x16, tableLength, true);
  dv.setUint16(0x1c, count, true);
  a[0x1e] = 0x28; // BCD revision 2.8
  return a;
}

/** SMBIOS 3.0 64-bit entry point, `_SM3_` (§5.2.2). */
function entryPoint30(tableLength: number): Uint8Array {
  const a = new Uint8Array(SMBIOS30_ANCHOR_SIZE);
  const dv = new DataView(a.buffer);
  a.set(Buffer.from('_SM3_', 'latin1'), 0);
  a[0x06] = SMBIOS30_ANCHOR_SIZE;
  a[0x07] = 3; // major
  a[0x08] = 0; // minor
  a[0x09] = 0; // docrev
  a[0x0a] = 1; // entry point revision: 3.0
  dv.setUint32(0x0c, tableLength, true); // structure table maximum size
  return a;
}

/**
 * A copy of `anchor` whose structure table address is `address`, with its
 * checksums recomputed (for 2.8 the intermediate one first, since the
 * entry point checksum covers it).
 */
export function setSmbiosTableAddress(anchor: Uint8Array, address: number): Uint8Array {
  const a = Uint8Array.from(anchor);
  const dv = new DataView(a.buffer);
  const sig = Buffer.from(a.subarray(0, 5)).toString('latin1');
  if (sig === '_SM3_') {
    if (!Number.isSafeInteger(address) || address < 0)
      throw new RangeError(`SMBIOS: table address ${address}`);
    dv.setBigUint64(0x10, BigInt(address), true);
    fixChecksum(a, 0x05, 0, SMBIOS30_ANCHOR_SIZE);
  } else if (sig.startsWith('_SM_')) {
    if (!Number.isInteger(address) || address < 0 || address > 0xffff_ffff) {
      throw new RangeError(`SMBIOS: 2.8 table address 0x${address.toString(16)} is above 4 GiB`);
    }
    dv.setUint32(0x18, address, true);
    fixChecksum(a, 0x15, SMBIOS21_INTERMEDIATE_OFFSET, SMBIOS21_INTERMEDIATE_SIZE);
    fixChecksum(a, 0x04, 0, SMBIOS21_ANCHOR_SIZE);
  } else {
    throw new RangeError(`SMBIOS: "${sig}" is not an entry point`);
  }
  return a;
}
