/**
 * Finds the OS's ACPI waking vector in guest memory, as firmware does when
 * the machine wakes from S3 (ACPI 6.4 §5.2.10, §16.3): the RSDP in the BIOS
 * area (0xE0000-0xFFFFF, 16-byte aligned, checksummed), its XSDT (or RSDT),
 * the FADT ("FACP"), its X_FIRMWARE_CTRL (or FIRMWARE_CTRL), and the FACS's
 * Firmware_Waking_Vector. Everything here was written by the guest (or its
 * firmware), so every pointer and length is checked.
 */
import type { GuestMemory } from '../../core/memory.js';

const RSDP_AREA = { start: 0xe0000, end: 0x100000 };
const MAX_TABLES = 64;

export type WakingVector =
  | {
      vector: number;
      facs: number;
      /** X_Firmware_Waking_Vector was set (ignored: we wake in real mode). */ x?: bigint;
    }
  | { problem: string };

function sum(b: Uint8Array): number {
  return b.reduce((s, x) => (s + x) & 0xff, 0);
}

function sig(b: Uint8Array, at = 0): string {
  return String.fromCharCode(...b.subarray(at, at + 4));
}

function findRsdp(mem: GuestMemory): { addr: number; bytes: Uint8Array } | undefined {
  const area = mem.tryView(RSDP_AREA.start, RSDP_AREA.end - RSDP_AREA.start);
  if (!area) return undefined;
  for (let off = 0; off + 20 <= area.length; off += 16) {
    if (String.fromCharCode(...area.subarray(off, off + 8)) !== 'RSD PTR ') continue;
    if (sum(area.subarray(off, off + 20)) !== 0) continue;
    return { addr: RSDP_AREA.start + off, bytes: area.subarray(off, Math.min(off + 36, area.length)) };
  }
  return undefined;
}

/** A table's bytes (header length checked), or undefined. */
function table(mem: GuestMemory, addr: number): Uint8Array | undefined {
  if (!Number.isSafeInteger(addr) || addr <= 0) return undefined;
  const head = mem.tryView(addr, 36);
  if (!head) return undefined;
  const len = new DataView(head.buffer, head.byteOffset, 36).getUint32(4, true);
  if (len < 36 || len > 1 << 20) return undefined;
  return mem.tryView(addr, len);
}

export function findWakingVector(mem: GuestMemory): WakingVector {
  const rsdp = findRsdp(mem);
  if (!rsdp) return { problem: 'no ACPI RSDP in 0xE0000-0xFFFFF' };
  const r = new DataView(rsdp.bytes.buffer, rsdp.bytes.byteOffset, rsdp.bytes.length);
  const revision = rsdp.bytes[15]!;
  let entries: number[] = [];
  const xsdtAddr = revision >= 2 && rsdp.bytes.length >= 32 ? Number(r.getBigUint64(24, true)) : 0;
  const xsdt = xsdtAddr ? table(mem, xsdtAddr) : undefined;
  if (xsdt && sig(xsdt) === 'XSDT') {
    const dv = new DataView(xsdt.buffer, xsdt.byteOffset, xsdt.length);
    for (let o = 36; o + 8 <= xsdt.length && entries.length < MAX_TABLES; o += 8)
      entries.push(Number(dv.getBigUint64(o, true)));
  } else {
    const rsdt = table(mem, r.getUint32(16, true));
    if (!rsdt || sig(rsdt) !== 'RSDT') return { problem: 'the RSDP points at neither an XSDT nor an RSDT' };
    const dv = new DataView(rsdt.buffer, rsdt.byteOffset, rsdt.length);
    for (let o = 36; o + 4 <= rsdt.length && entries.length < MAX_TABLES; o += 4)
      entries.push(dv.getUint32(o, true));
  }
  entries = entries.filter((a) => Number.isSafeInteger(a));
  const fadt = entries.map((a) => table(mem, a)).find((t) => t !== undefined && sig(t) === 'FACP');
  if (!fadt) return { problem: 'no FADT (FACP) in the root table' };
  const f = new DataView(fadt.buffer, fadt.byteOffset, fadt.length);
  const xFacs = fadt.length >= 140 ? Number(f.getBigUint64(132, true)) : 0;
  const facsAddr = xFacs || (fadt.length >= 40 ? f.getUint32(36, true) : 0);
  const facs = Number.isSafeInteger(facsAddr) && facsAddr > 0 ? mem.tryView(facsAddr, 64) : undefined;
  if (!facs || sig(facs) !== 'FACS') return { problem: 'the FADT names no FACS' };
  const d = new DataView(facs.buffer, facs.byteOffset, 64);
  const vector = d.getUint32(12, true);
  if (vector >= 0x100000) {
    return {
      problem: `the FACS waking vector 0x${vector.toString(16)} is not a real-mode address (below 1 MiB)`,
    };
  }
  const x = facs[32]! >= 1 ? d.getBigUint64(24, true) : 0n;
  return x !== 0n ? { vector, facs: facsAddr, x } : { vector, facs: facsAddr };
}
