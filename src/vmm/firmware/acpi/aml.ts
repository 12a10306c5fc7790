/**
 * A small ACPI Machine Language encoder (ACPI 6.5 §20, "ACPI Machine
 * Language (AML) Specification", and §6.4 for resource descriptors): just
 * the named objects, packages, buffers, data and resource templates a
 * static PC DSDT needs.
 *
 * Why hand-written: there is no maintained AML encoder on npm, and the
 * ACPICA compiler (iasl) works on files through a child process, which a
 * VMM building its tables at start-up should not depend on. iasl is used
 * only by the unit tests, as an independent check that what we encode
 * disassembles cleanly.
 *
 * Every builder is pure and returns the encoded bytes; composite objects
 * take the encodings of their children. There are deliberately no
 * operators for loops or arithmetic: guest kernels here interpret AML very
 * slowly (see ENVIRONMENT.md, "ACPI AML runs out of time here"), so the
 * DSDT is made of static data.
 */

/** Bytes of encoded AML: a term, a data object or a resource descriptor. */
export type Aml = Uint8Array;

/** Opcodes (§20.3, table 20.1 et seq.). */
export const ZERO_OP = 0x00;
export const ONE_OP = 0x01;
export const NAME_OP = 0x08;
export const BYTE_PREFIX = 0x0a;
export const WORD_PREFIX = 0x0b;
export const DWORD_PREFIX = 0x0c;
export const STRING_PREFIX = 0x0d;
export const QWORD_PREFIX = 0x0e;
export const SCOPE_OP = 0x10;
export const BUFFER_OP = 0x11;
export const PACKAGE_OP = 0x12;
export const VAR_PACKAGE_OP = 0x13;
export const METHOD_OP = 0x14;
export const DUAL_NAME_PREFIX = 0x2e;
export const MULTI_NAME_PREFIX = 0x2f;
export const EXT_OP_PREFIX = 0x5b;
export const DEVICE_OP = 0x82; // after EXT_OP_PREFIX
export const ROOT_CHAR = 0x5c; // '\'
export const PARENT_PREFIX_CHAR = 0x5e; // '^'
export const RETURN_OP = 0xa4;
export const ONES_OP = 0xff;

/** PkgLength can describe at most 2^28 - 1 bytes (§20.2.4). */
export const MAX_PKG_LENGTH = 0x0fff_ffff;

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * PkgLength (§20.2.4) for an object whose contents after the PkgLength are
 * `contentLength` bytes. The encoded length counts the PkgLength bytes
 * themselves, so the encoding size is picked first: one byte holds up to
 * 63 (bits 5-0), otherwise bits 7-6 of the lead byte say how many bytes
 * follow, bits 3-0 hold the low nibble and each following byte 8 more bits.
 */
export function pkgLength(contentLength: number): Uint8Array {
  if (!Number.isInteger(contentLength) || contentLength < 0) {
    throw new RangeError(`AML PkgLength: ${contentLength} is not a byte count`);
  }
  if (contentLength + 1 <= 0x3f) return Uint8Array.of(contentLength + 1);
  for (let follow = 1; follow <= 3; follow++) {
    const total = contentLength + 1 + follow;
    if (total < 2 ** (4 + 8 * follow)) {
      const out = new Uint8Array(1 + follow);
      out[0] = (follow << 6) | (total & 0x0f);
      for (let i = 1; i <= follow; i++) out[i] = Math.floor(total / 2 ** (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new RangeError(`AML PkgLength: ${contentLength} bytes is more than ${MAX_PKG_LENGTH}`);
}

/** `op` (one or two bytes), PkgLength, then `body`. */
function withPkgLength(op: readonly number[], body: readonly Uint8Array[]): Uint8Array {
  const content = concat(body);
  return concat([Uint8Array.from(op), pkgLength(content.length), content]);
}

const LEAD_NAME_CHAR = /^[A-Z_]$/;
const NAME_CHAR = /^[A-Z0-9_]$/;

/**
 * One NameSeg (§20.2.2): four characters, the first A-Z or '_', the rest
 * A-Z, 0-9 or '_'. Shorter names are padded with '_' as ASL does ("ISA" is
 * "ISA_").
 */
export function nameSeg(seg: string): Uint8Array {
  if (seg.length < 1 || seg.length > 4) throw new RangeError(`AML NameSeg "${seg}" is not 1-4 characters`);
  const padded = seg.padEnd(4, '_');
  if (!LEAD_NAME_CHAR.test(padded[0]!) || ![...padded.slice(1)].every((c) => NAME_CHAR.test(c))) {
    throw new RangeError(
      `AML NameSeg "${seg}" has characters outside A-Z, 0-9 and _ (or starts with a digit)`,
    );
  }
  return Uint8Array.from(padded, (c) => c.charCodeAt(0));
}

/**
 * NameString (§20.2.2) from ASL notation: an optional root prefix `\` or
 * any number of parent prefixes `^`, then NameSegs separated by dots
 * ("\\_SB.PCI0", "^LNKA", "_S5"). One segment is written as is, two with
 * DualNamePrefix, more with MultiNamePrefix and a count; a bare prefix
 * ("\\") ends in NullName.
 */
export function nameString(path: string): Uint8Array {
  let i = 0;
  const prefix: number[] = [];
  if (path.startsWith('\\')) {
    prefix.push(ROOT_CHAR);
    i = 1;
  } else {
    while (path[i] === '^') {
      prefix.push(PARENT_PREFIX_CHAR);
      i++;
    }
  }
  const rest = path.slice(i);
  if (rest === '') {
    if (prefix.length === 0) throw new RangeError('AML NameString is empty');
    return Uint8Array.from([...prefix, 0x00]);
  }
  const segs = rest.split('.').map(nameSeg);
  if (segs.length > 255) throw new RangeError(`AML NameString "${path}" has more than 255 segments`);
  const head = Uint8Array.from(prefix);
  if (segs.length === 1) return concat([head, segs[0]!]);
  if (segs.length === 2) return concat([head, Uint8Array.of(DUAL_NAME_PREFIX), ...segs]);
  return concat([head, Uint8Array.of(MULTI_NAME_PREFIX, segs.length), ...segs]);
}

/**
 * An Integer (§20.2.3 ComputationalData) with the shortest encoding:
 * ZeroOp, OneOp, OnesOp (all 64 bits set), or Byte/Word/DWord/QWordConst.
 */
export function int(value: number | bigint): Uint8Array {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new RangeError(`AML integer ${value} is not a safe integer (pass a bigint)`);
  }
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`AML integer ${value} is outside 0..2^64-1`);
  if (v === 0n) return Uint8Array.of(ZERO_OP);
  if (v === 1n) return Uint8Array.of(ONE_OP);
  if (v === 0xffff_ffff_ffff_ffffn) return Uint8Array.of(ONES_OP);
  let prefix: number;
  let size: number;
  if (v <= 0xffn) [prefix, size] = [BYTE_PREFIX, 1];
  else if (v <= 0xffffn) [prefix, size] = [WORD_PREFIX, 2];
  else if (v <= 0xffff_ffffn) [prefix, size] = [DWORD_PREFIX, 4];
  else [prefix, size] = [QWORD_PREFIX, 8];
  const out = new Uint8Array(1 + size);
  out[0] = prefix;
  for (let i = 0; i < size; i++) out[1 + i] = Number((v >> BigInt(8 * i)) & 0xffn);
  return out;
}

/** A String (§20.2.3): StringPrefix, ASCII characters 0x01-0x7F, NUL. */
export function str(s: string): Uint8Array {
  const out = new Uint8Array(s.length + 2);
  out[0] = STRING_PREFIX;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x01 || c > 0x7f)
      throw new RangeError(`AML string "${s}" has a character outside ASCII 0x01-0x7F`);
    out[1 + i] = c;
  }
  return out;
}

/**
 * The 32-bit compressed EISA id of a PNP id such as "PNP0A03" (ASL
 * EisaId(), §19.6.35): three letters of 5 bits each (A = 1) and four hex
 * digits, stored big-endian, so "PNP0A03" is the bytes 41 D0 0A 03.
 */
export function eisaIdValue(id: string): number {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id))
    throw new RangeError(`EISA id "${id}" is not three letters and four hex digits`);
  const l = (i: number) => id.charCodeAt(i) - 0x40;
  const be = ((l(0) << 26) | (l(1) << 21) | (l(2) << 16) | parseInt(id.slice(3), 16)) >>> 0;
  // The integer's little-endian bytes are the big-endian bytes above.
  return (
    (((be & 0xff) << 24) | (((be >>> 8) & 0xff) << 16) | (((be >>> 16) & 0xff) << 8) | (be >>> 24)) >>> 0
  );
}

export function eisaId(id: string): Uint8Array {
  return int(eisaIdValue(id));
}

/** DefName (§20.2.5.1): Name(path, value). */
export function name(path: string, value: Aml): Uint8Array {
  return concat([Uint8Array.of(NAME_OP), nameString(path), value]);
}

/** DefScope (§20.2.5.1): Scope(path) { terms }. */
export function scope(path: string, ...terms: Aml[]): Uint8Array {
  return withPkgLength([SCOPE_OP], [nameString(path), ...terms]);
}

/** DefDevice (§20.2.5.2): Device(path) { terms }. */
export function device(path: string, ...terms: Aml[]): Uint8Array {
  return withPkgLength([EXT_OP_PREFIX, DEVICE_OP], [nameString(path), ...terms]);
}

export interface MethodFlags {
  /** ArgCount, 0-7. */
  args?: number;
  serialized?: boolean;
  /** SyncLevel, 0-15 (only meaningful when serialized). */
  syncLevel?: number;
}

/** DefMethod (§20.2.5.2): Method(path, args, Serialized?) { terms }. */
export function method(path: string, flags: MethodFlags, ...terms: Aml[]): Uint8Array {
  const args = flags.args ?? 0;
  const sync = flags.syncLevel ?? 0;
  if (!Number.isInteger(args) || args < 0 || args > 7)
    throw new RangeError(`AML method ${path}: ${args} args`);
  if (!Number.isInteger(sync) || sync < 0 || sync > 15)
    throw new RangeError(`AML method ${path}: sync ${sync}`);
  const methodFlags = args | (flags.serialized ? 0x08 : 0) | (sync << 4);
  return withPkgLength([METHOD_OP], [nameString(path), Uint8Array.of(methodFlags), ...terms]);
}

/** DefReturn (§20.2.5.3): Return(value). */
export function ret(value: Aml): Uint8Array {
  return concat([Uint8Array.of(RETURN_OP), value]);
}

type PackageElement = Aml | number | bigint;

function element(e: PackageElement): Uint8Array {
  return typeof e === 'number' || typeof e === 'bigint' ? int(e) : e;
}

/**
 * DefPackage (§20.2.5.4) of data objects (numbers are encoded with int()).
 * More than 255 elements need DefVarPackage, whose count is a TermArg.
 */
export function pkg(elements: readonly PackageElement[]): Uint8Array {
  const body = elements.map(element);
  if (elements.length <= 255) return withPkgLength([PACKAGE_OP], [Uint8Array.of(elements.length), ...body]);
  return withPkgLength([VAR_PACKAGE_OP], [int(elements.length), ...body]);
}

/** DefBuffer (§20.2.5.4): Buffer(size) { bytes }, the size as an Integer. */
export function buf(bytes: Uint8Array): Uint8Array {
  return withPkgLength([BUFFER_OP], [int(bytes.length), bytes]);
}

// ---------------------------------------------------------------------------
// Resource descriptors (§6.4). Small items have a one-byte header (type in
// bits 6-3, length in bits 2-0), large items a type byte with bit 7 set and
// a 16-bit little-endian length of what follows.

function u16(v: number, what: string): [number, number] {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${what} ${v} does not fit 16 bits`);
  return [v & 0xff, v >>> 8];
}

function u32(v: number, what: string): [number, number, number, number] {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff)
    throw new RangeError(`${what} ${v} does not fit 32 bits`);
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
}

export interface IoRange {
  min: number;
  max: number;
  /** Alignment of the base, in bytes (default 1). */
  align?: number;
  /** Number of ports. */
  length: number;
}

/** IO(Decode16, min, max, align, length): I/O Port Descriptor, small item type 8 (§6.4.2.5). */
export function io(r: IoRange): Uint8Array {
  const align = r.align ?? 1;
  if (align > 0xff || r.length > 0xff)
    throw new RangeError(`IO descriptor align/length ${align}/${r.length} > 255`);
  return Uint8Array.of(0x47, 0x01, ...u16(r.min, 'IO min'), ...u16(r.max, 'IO max'), align, r.length);
}

/** IRQNoFlags() { irqs }: IRQ Descriptor without the flags byte, small item type 4 (§6.4.2.1). */
export function irqNoFlags(...irqs: number[]): Uint8Array {
  let mask = 0;
  for (const irq of irqs) {
    if (!Number.isInteger(irq) || irq < 0 || irq > 15)
      throw new RangeError(`IRQ descriptor: IRQ ${irq} is not 0-15`);
    mask |= 1 << irq;
  }
  return Uint8Array.of(0x22, mask & 0xff, mask >>> 8);
}

/** Memory32Fixed(ReadWrite|ReadOnly, base, length): large item 0x86 (§6.4.3.4). */
export function memory32Fixed(base: number, length: number, writable = true): Uint8Array {
  return Uint8Array.of(
    0x86,
    0x09,
    0x00,
    writable ? 0x01 : 0x00,
    ...u32(base, 'Memory32Fixed base'),
    ...u32(length, 'Memory32Fixed length'),
  );
}

/** Resource Type of the address space descriptors (§6.4.3.5, table 6.49). */
const ADDRESS_SPACE_MEMORY = 0;
const ADDRESS_SPACE_IO = 1;
const ADDRESS_SPACE_BUS = 2;

export interface AddressRange {
  min: number;
  max: number;
  /** Address translation offset (default 0). */
  translation?: number;
  /** Length (default max - min + 1, as for MinFixed/MaxFixed ranges). */
  length?: number;
  /** Granularity (default 0: MinFixed and MaxFixed with no alignment constraint). */
  granularity?: number;
}

/**
 * General Flags (§6.4.3.5.1-3, "General Flags"): ResourceProducer (bit 0 =
 * 0), PosDecode (bit 1 = 0), MinFixed (bit 2) and MaxFixed (bit 3): the
 * ranges a host bridge decodes, as QEMU's _CRS for PCI0 declares them.
 */
const PRODUCER_MIN_MAX_FIXED = 0x0c;

function wordAddress(type: number, typeFlags: number, r: AddressRange, what: string): Uint8Array {
  const length = r.length ?? r.max - r.min + 1;
  return Uint8Array.of(
    0x88,
    0x0d,
    0x00,
    type,
    PRODUCER_MIN_MAX_FIXED,
    typeFlags,
    ...u16(r.granularity ?? 0, `${what} granularity`),
    ...u16(r.min, `${what} min`),
    ...u16(r.max, `${what} max`),
    ...u16(r.translation ?? 0, `${what} translation`),
    ...u16(length, `${what} length`),
  );
}

/** WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, ...): Word Address Space Descriptor (§6.4.3.5.3). */
export function wordBusNumber(r: AddressRange): Uint8Array {
  return wordAddress(ADDRESS_SPACE_BUS, 0x00, r, 'WordBusNumber');
}

/**
 * WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, ...):
 * type-specific flags 3 = _RNG EntireRange (§6.4.3.5.5, I/O resource flags).
 */
export function wordIO(r: AddressRange): Uint8Array {
  return wordAddress(ADDRESS_SPACE_IO, 0x03, r, 'WordIO');
}

export interface MemoryRange extends AddressRange {
  /** _MEM: Cacheable (true) or NonCacheable (default). */
  cacheable?: boolean;
  /** _RW: ReadWrite (default) or ReadOnly. */
  writable?: boolean;
}

/**
 * DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable|NonCacheable,
 * ReadWrite, ...): DWord Address Space Descriptor, large item 0x87 (§6.4.3.5.2),
 * memory type-specific flags per §6.4.3.5.5 (bit 0 _RW, bits 2-1 _MEM).
 */
export function dwordMemory(r: MemoryRange): Uint8Array {
  const length = r.length ?? r.max - r.min + 1;
  const typeFlags = (r.writable === false ? 0 : 0x01) | (r.cacheable ? 0x02 : 0x00);
  return Uint8Array.of(
    0x87,
    0x17,
    0x00,
    ADDRESS_SPACE_MEMORY,
    PRODUCER_MIN_MAX_FIXED,
    typeFlags,
    ...u32(r.granularity ?? 0, 'DWordMemory granularity'),
    ...u32(r.min, 'DWordMemory min'),
    ...u32(r.max, 'DWordMemory max'),
    ...u32(r.translation ?? 0, 'DWordMemory translation'),
    ...u32(length, 'DWordMemory length'),
  );
}

/**
 * End Tag (§6.4.2.9) closing `descriptors`: small item 0x79 and a checksum
 * byte that makes all the template's bytes, the end tag's included, sum to
 * zero (a zero checksum would also be accepted).
 */
export function endTag(descriptors: Uint8Array): Uint8Array {
  let sum = 0x79;
  for (const b of descriptors) sum += b;
  return Uint8Array.of(0x79, -sum & 0xff);
}

/** ResourceTemplate() { items }: a Buffer holding the descriptors and an End Tag. */
export function resourceTemplate(...items: Uint8Array[]): Uint8Array {
  const descriptors = concat(items);
  return buf(concat([descriptors, endTag(descriptors)]));
}
