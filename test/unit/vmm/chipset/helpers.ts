import {
  LEGACY_AREA_SIZE,
  LEGACY_AREA_START,
  PamMemory,
  pamSegment,
} from '../../../../src/vmm/chipset/pam.js';
import type { SlotMapper } from '../../../../src/vmm/chipset/pam.js';
import type { HostMemoryBlock, MapMemoryOptions } from '../../../../src/vmm/core/kvm-vm.js';

export const hex = (n: number) => n.toString(16);

/** A SlotMapper that records its calls (`map gpa+size block@offset ro|rw -> slot`, `unmap slot`). */
export class FakeSlots implements SlotMapper {
  readonly calls: string[] = [];
  private next = 10;
  /** What each live slot maps. */
  readonly live = new Map<number, string>();

  mapMemory(gpa: number, size: number, block: HostMemoryBlock, offset: number, o?: MapMemoryOptions): number {
    const slot = this.next++;
    const what = `${hex(gpa)}+${hex(size)} ${block.id}@${hex(offset)} ${o?.readonly ? 'ro' : 'rw'}`;
    this.live.set(slot, what);
    this.calls.push(`map ${what} -> ${slot}`);
    return slot;
  }

  unmapMemory(slot: number): void {
    if (!this.live.delete(slot)) throw new Error(`unmap of slot ${slot}, which is not mapped`);
    this.calls.push(`unmap ${slot}`);
  }

  take(): string[] {
    return this.calls.splice(0);
  }
}

export const RAM: HostMemoryBlock = { id: 1, size: 0x100000 };
export const PC_ROM: HostMemoryBlock = { id: 2, size: LEGACY_AREA_SIZE };
export const BIOS: HostMemoryBlock = { id: 3, size: 0x40000 };

/**
 * PAM over a fake mapper, wired as the machine does: RAM block 1 (0xC0000 at
 * offset 0xC0000), the ROM side from a 256 KiB BIOS (block 3) for
 * 0xE0000-0xFFFFF and a pc.rom block (2) below. The host views of both
 * sides have distinct patterns, so a read shows which side answered.
 */
export function pamSetup() {
  const mapper = new FakeSlots();
  const ram = new Uint8Array(LEGACY_AREA_SIZE).map((_, i) => (i * 7 + 1) & 0xff);
  // What the guest would read from the ROM side at 0xC0000 + i.
  const rom = new Uint8Array(LEGACY_AREA_SIZE).map((_, i) => ((i >> 8) ^ (i * 13) ^ 0xa5) & 0xff);
  const romBefore = rom.slice();
  const pam = new PamMemory({
    mapper,
    ram: { block: RAM, offset: LEGACY_AREA_START, bytes: ram },
    rom: (segment) => {
      const { gpa, size } = pamSegment(segment);
      const off = gpa - LEGACY_AREA_START;
      const bytes = rom.subarray(off, off + size);
      if (gpa >= 0xe0000) return { block: BIOS, offset: BIOS.size - (0x100000 - gpa), bytes };
      return { block: PC_ROM, offset: off, bytes };
    },
  });
  return { pam, mapper, ram, rom, romBefore };
}
