/**
 * Intel MultiProcessor Specification 1.4 tables, for guests without ACPI
 * MADT (and as Linux's fallback when it has none): they tell the kernel how
 * many CPUs there are, their local APIC ids, where the IOAPIC is and how ISA
 * IRQs are wired to it.
 *
 * Layout (MP spec 1.4 §4): a 16-byte floating pointer structure in the BIOS
 * area 0xF0000-0xFFFFF (one of the places §4 says the OS searches),
 * followed directly by the configuration table: a 44-byte header and the
 * base table entries, sorted by entry type as §4.3 requires (processors,
 * buses, I/O APICs, I/O interrupts, local interrupts).
 */
import type { GuestMemory } from '../core/memory.js';
import { BootError, hex } from './errors.js';
import { HIMEM_START, IOAPIC_START, LAPIC_START, MPTABLE_START } from './layout.js';

export const MPF_SIGNATURE = '_MP_';
export const MPC_SIGNATURE = 'PCMP';
export const MPF_SIZE = 16;
export const MPC_HEADER_SIZE = 44;
/** MP spec revision 1.4 is written as 4 in both structures. */
export const MP_SPEC_REV = 4;
export const MPC_OEM_ID = 'MVISOR';
export const MPC_PRODUCT_ID = 'MVISOR-PC';

/** Base table entry types (MP spec 1.4 §4.3, table 4-3). */
export const MP_PROCESSOR = 0;
export const MP_BUS = 1;
export const MP_IOAPIC = 2;
export const MP_INTSRC = 3;
export const MP_LINTSRC = 4;
export const MP_PROCESSOR_SIZE = 20;
export const MP_ENTRY_SIZE = 8;

/** Interrupt types of I/O and local interrupt entries (§4.3.4, table 4-10). */
export const MP_INT = 0;
export const MP_NMI = 1;
export const MP_SMI = 2;
export const MP_EXTINT = 3;

/** Processor entry CPU flags (§4.3.1). */
export const MP_CPU_ENABLED = 0x01;
export const MP_CPU_BSP = 0x02;
/** Local APIC version of an integrated xAPIC as KVM emulates it. */
export const LAPIC_VERSION = 0x14;
/** Version register of KVM's in-kernel 24-pin IOAPIC. */
export const IOAPIC_VERSION = 0x11;
/** Local interrupt entries with this destination apply to all local APICs. */
export const MP_ALL_LAPICS = 0xff;
export const ISA_BUS_ID = 0;

/** Defaults for the processor entries' CPUID-derived fields: family 6, FPU and APIC present. */
export const DEFAULT_CPU_SIGNATURE = 6 << 8;
export const DEFAULT_CPU_FEATURES = (1 << 0) | (1 << 9);

export interface MpTableOptions {
  /**
   * Wire ISA IRQ 0 (the PIT) to IOAPIC pin 2 and leave IRQ 2 out, as
   * SeaBIOS does for QEMU/KVM ("etc/irq0-override"). The machine's KVM GSI
   * routing must then send GSI 0 to IOAPIC pin 2 like QEMU's
   * kvm_pc_setup_irq_routing(). Default true.
   */
  irq0Override?: boolean;
  /** CPUID.1:EAX (stepping, model, family) for the processor entries. */
  cpuSignature?: number;
  /** CPUID.1:EDX feature flags for the processor entries. */
  cpuFeatures?: number;
  ioapicAddr?: number;
  lapicAddr?: number;
}

export interface MpTableInfo {
  /** Address of the floating pointer structure. */
  readonly floatingPointer: number;
  /** Address of the configuration table header. */
  readonly configTable: number;
  /** Bytes written, floating pointer included. */
  readonly size: number;
  readonly ioapicId: number;
}

/** Byte that makes the sum of `bytes` zero modulo 256 (every MP structure's checksum rule). */
export function mpChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return (0x100 - sum) & 0xff;
}

function putAscii(buf: Uint8Array, off: number, s: string, width: number): void {
  // OEM/product ids and bus type strings are space padded, not NUL terminated (§4.2, §4.3.2).
  for (let i = 0; i < width; i++) buf[off + i] = i < s.length ? s.charCodeAt(i) : 0x20;
}

/** Size in bytes of the MP table (floating pointer + configuration table) for `cpus` CPUs. */
export function mpTableSize(cpus: number, irq0Override = true): number {
  const intsrc = irq0Override ? 15 : 16;
  return MPF_SIZE + MPC_HEADER_SIZE + cpus * MP_PROCESSOR_SIZE + (1 + 1 + intsrc + 2) * MP_ENTRY_SIZE;
}

/**
 * Writes the MP floating pointer at `addr` and the configuration table right
 * after it. One processor per vCPU (LAPIC id = index, cpu 0 the BSP), one
 * ISA bus, one IOAPIC whose id follows the LAPIC ids, ISA IRQs 0-15 on IOAPIC
 * pins, the 8259's ExtINT on the BSP's LINT0 and NMI on every LINT1.
 */
export function writeMpTable(
  mem: GuestMemory,
  cpus: number,
  addr: number = MPTABLE_START,
  opts: MpTableOptions = {},
): MpTableInfo {
  // LAPIC ids are one byte and 0xFF means "all"; the IOAPIC takes the id after the last CPU.
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 254) {
    throw new RangeError(`MP table: ${cpus} CPUs is outside 1-254`);
  }
  const irq0Override = opts.irq0Override ?? true;
  const size = mpTableSize(cpus, irq0Override);
  // §4: the structures live in the BIOS area (or EBDA / base memory top); keep them below 1 MiB.
  if (addr % 16 !== 0 || addr + size > HIMEM_START || !mem.tryView(addr, size)) {
    throw new BootError(
      `MP table for ${cpus} CPUs (${size} bytes) does not fit in guest RAM at ${hex(addr)}`,
    );
  }
  const buf = new Uint8Array(size);
  const dv = new DataView(buf.buffer);
  const ioapicId = cpus;
  const mpc = MPF_SIZE;

  // Floating pointer structure (§4.1, table 4-1).
  putAscii(buf, 0, MPF_SIGNATURE, 4);
  dv.setUint32(4, addr + mpc, true); // PHYSICAL ADDRESS POINTER of the configuration table
  buf[8] = 1; // LENGTH in 16-byte paragraphs
  buf[9] = MP_SPEC_REV;
  // Feature byte 1 = 0: a configuration table is present (no default config).
  // Feature byte 2 bit 7 (IMCRP) = 0: virtual wire mode, there is no IMCR.

  // Entries (§4.3), in the order the spec mandates.
  let off = mpc + MPC_HEADER_SIZE;
  let count = 0;
  const signature = opts.cpuSignature ?? DEFAULT_CPU_SIGNATURE;
  const features = opts.cpuFeatures ?? DEFAULT_CPU_FEATURES;
  for (let cpu = 0; cpu < cpus; cpu++) {
    // Processor entry (§4.3.1, table 4-4).
    buf[off] = MP_PROCESSOR;
    buf[off + 1] = cpu; // local APIC id
    buf[off + 2] = LAPIC_VERSION;
    buf[off + 3] = MP_CPU_ENABLED | (cpu === 0 ? MP_CPU_BSP : 0);
    dv.setUint32(off + 4, signature >>> 0, true);
    dv.setUint32(off + 8, features >>> 0, true);
    off += MP_PROCESSOR_SIZE;
    count++;
  }
  // Bus entry (§4.3.2): bus type strings are from table 4-8.
  buf[off] = MP_BUS;
  buf[off + 1] = ISA_BUS_ID;
  putAscii(buf, off + 2, 'ISA', 6);
  off += MP_ENTRY_SIZE;
  count++;
  // I/O APIC entry (§4.3.3).
  buf[off] = MP_IOAPIC;
  buf[off + 1] = ioapicId;
  buf[off + 2] = IOAPIC_VERSION;
  buf[off + 3] = 0x01; // EN
  dv.setUint32(off + 4, opts.ioapicAddr ?? IOAPIC_START, true);
  off += MP_ENTRY_SIZE;
  count++;
  // I/O interrupt assignment entries (§4.3.4). Flags 0: polarity and trigger
  // conform to the bus (ISA: active high, edge triggered).
  for (let irq = 0; irq < 16; irq++) {
    let pin = irq;
    if (irq0Override) {
      // The PIT output reaches IOAPIC pin 2 (pin 0 carries the 8259's
      // INTR); IRQ 2 is the 8259 cascade and has no pin of its own.
      if (irq === 0) pin = 2;
      else if (irq === 2) continue;
    }
    buf[off] = MP_INTSRC;
    buf[off + 1] = MP_INT;
    dv.setUint16(off + 2, 0, true);
    buf[off + 4] = ISA_BUS_ID;
    buf[off + 5] = irq;
    buf[off + 6] = ioapicId;
    buf[off + 7] = pin;
    off += MP_ENTRY_SIZE;
    count++;
  }
  // Local interrupt assignment entries (§4.3.5; §3.6.2.2 virtual wire mode):
  // the 8259 INTR goes to LINT0 of the BSP as ExtINT, NMI to LINT1 of all.
  const lint: [type: number, dest: number, lintin: number][] = [
    [MP_EXTINT, 0, 0],
    [MP_NMI, MP_ALL_LAPICS, 1],
  ];
  for (const [type, dest, lintin] of lint) {
    buf[off] = MP_LINTSRC;
    buf[off + 1] = type;
    dv.setUint16(off + 2, 0, true);
    buf[off + 4] = ISA_BUS_ID;
    buf[off + 5] = 0;
    buf[off + 6] = dest;
    buf[off + 7] = lintin;
    off += MP_ENTRY_SIZE;
    count++;
  }

  // Configuration table header (§4.2, table 4-2).
  putAscii(buf, mpc, MPC_SIGNATURE, 4);
  dv.setUint16(mpc + 4, off - mpc, true); // BASE TABLE LENGTH, header included
  buf[mpc + 6] = MP_SPEC_REV;
  putAscii(buf, mpc + 8, MPC_OEM_ID, 8);
  putAscii(buf, mpc + 16, MPC_PRODUCT_ID, 12);
  // OEM table pointer and size stay 0: no OEM table.
  dv.setUint16(mpc + 34, count, true);
  dv.setUint32(mpc + 36, opts.lapicAddr ?? LAPIC_START, true);
  // No extended entries: extended table length 0, and its checksum over
  // zero bytes is 0 (computed anyway so adding entries stays correct).
  const extended = buf.subarray(off, off);
  dv.setUint16(mpc + 40, extended.length, true);
  buf[mpc + 42] = mpChecksum(extended);
  buf[mpc + 7] = mpChecksum(buf.subarray(mpc, off));
  buf[10] = mpChecksum(buf.subarray(0, MPF_SIZE));

  mem.write(addr, buf);
  return { floatingPointer: addr, configTable: addr + mpc, size, ioapicId };
}
