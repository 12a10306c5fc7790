import { GuestMemory } from '../../../../src/vmm/core/memory.js';
import { type PcMemoryLayout } from '../../../../src/vmm/boot/layout.js';

/** Guest memory backed by fresh zeroed arrays for each RAM range of a layout. */
export function memoryFor(layout: PcMemoryLayout): GuestMemory {
  const mem = new GuestMemory();
  mem.addRegion(layout.lowRam.gpa, new Uint8Array(layout.lowRam.size));
  if (layout.highRam) mem.addRegion(layout.highRam.gpa, new Uint8Array(layout.highRam.size));
  return mem;
}

export function u8(mem: GuestMemory, gpa: number): number {
  return mem.view(gpa, 1)[0]!;
}

export function u16(mem: GuestMemory, gpa: number): number {
  return mem.dataView(gpa, 2).getUint16(0, true);
}

export function u32(mem: GuestMemory, gpa: number): number {
  return mem.dataView(gpa, 4).getUint32(0, true);
}

export function u64(mem: GuestMemory, gpa: number): number {
  return Number(mem.dataView(gpa, 8).getBigUint64(0, true));
}

export function cstring(mem: GuestMemory, gpa: number, max = 0x10000): string {
  const v = mem.view(gpa, max);
  const end = v.indexOf(0);
  return new TextDecoder().decode(v.subarray(0, end < 0 ? max : end));
}

export const MiB = 0x10_0000;
export const GiB = 0x4000_0000;
