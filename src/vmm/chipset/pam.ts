/**
 * The i440FX's Programmable Attribute Map (82441FX datasheet §3.2.12,
 * registers PAM0-PAM6 at config 0x59-0x5F): for each piece of the legacy
 * BIOS area 0xC0000-0xFFFFF it says whether reads and writes go to DRAM
 * or to the PCI/ISA side, where the BIOS ROM (its last 128 KiB aliased at
 * 0xE0000) and the option-ROM area live. Firmware uses it to shadow itself:
 * SeaBIOS makes the area read-write DRAM, copies itself from the ROM
 * alias below 4 GiB, then makes it read-only.
 *
 * Thirteen segments: 0xF0000-0xFFFFF (PAM0 bits 5:4), and 16 KiB segments
 * from 0xC0000 to 0xEFFFF (PAM1-PAM6, low nibble first). Per segment the
 * two bits RE (read enable) and WE (write enable) select:
 *   0 (neither)  reads and writes go to the ROM side  -> ROM mapped read-only
 *   1 (RE)       reads from DRAM, writes to the ROM side -> DRAM mapped read-only
 *   2 (WE)       reads from the ROM side, writes to DRAM -> no slot: every access exits here
 *   3 (RE|WE)    DRAM                                   -> DRAM mapped read-write
 * "Mapped" means a KVM memory slot, so only writes to read-only slots (and
 * every access in mode 2) reach this handler through the MMIO bus. Writes
 * that go to the ROM side are dropped, as on hardware.
 *
 * What backs the ROM side: the last min(128 KiB, BIOS size) of the BIOS
 * image at the top of 1 MiB (QEMU's "isa-bios" alias) and below it a
 * zero-filled ROM block (QEMU's "pc.rom"), which a firmware shadows
 * option ROMs over once the area is DRAM.
 */
import type { AccessSize, IoHandler } from '../core/device.js';
import type { HostMemoryBlock, MapMemoryOptions } from '../core/kvm-vm.js';

export const LEGACY_AREA_START = 0xc0000;
export const LEGACY_AREA_SIZE = 0x40000;
export const PAM_SEGMENTS = 13;
/** Config offset of PAM0. */
export const PAM0 = 0x59;
export const PAM_REGISTERS = 7;

export type PamMode = 0 | 1 | 2 | 3;

/** The KVM memory-slot operations PAM needs (KvmVm implements them). */
export interface SlotMapper {
  mapMemory(gpa: number, size: number, block: HostMemoryBlock, offset: number, o?: MapMemoryOptions): number;
  unmapMemory(slot: number): void;
}

/** A host block and the offset in it that corresponds to guest address 0xC0000. */
export interface LegacyBacking {
  block: HostMemoryBlock;
  /** Offset of 0xC0000 in `block`. */
  offset: number;
  /** Host view of [0xC0000, 0x100000) as the guest would read it. */
  bytes: Uint8Array;
}

export interface PamOptions {
  mapper: SlotMapper;
  /** Guest RAM (the low RAM block; 0xC0000 lies inside it). */
  ram: LegacyBacking;
  /**
   * The ROM side of a segment: the host block and offset that back it and
   * a view of the segment's bytes (pieces of the BIOS image and pc.rom).
   */
  rom: (segment: number) => { block: HostMemoryBlock; offset: number; bytes: Uint8Array };
}

/** Guest-physical start and size of a segment. */
export function pamSegment(segment: number): { gpa: number; size: number } {
  if (segment === 0) return { gpa: 0xf0000, size: 0x10000 };
  return { gpa: LEGACY_AREA_START + (segment - 1) * 0x4000, size: 0x4000 };
}

/** The mode of each segment encoded in the PAM registers (7 bytes, PAM0 first). */
export function pamModes(regs: ArrayLike<number>): PamMode[] {
  const modes: PamMode[] = [((regs[0]! >> 4) & 3) as PamMode];
  for (let s = 1; s < PAM_SEGMENTS; s++) {
    const reg = regs[(s + 1) >> 1]!;
    modes.push(((s & 1 ? reg : reg >> 4) & 3) as PamMode);
  }
  return modes;
}

export class PamMemory implements IoHandler {
  private readonly modes: Array<PamMode | undefined> = new Array(PAM_SEGMENTS).fill(undefined);
  private readonly slots: Array<number | undefined> = new Array(PAM_SEGMENTS).fill(undefined);

  constructor(private readonly opts: PamOptions) {}

  mode(segment: number): PamMode | undefined {
    return this.modes[segment];
  }

  /** Applies the PAM register bytes (PAM0..PAM6): remaps the segments whose mode changed. */
  apply(regs: ArrayLike<number>): void {
    pamModes(regs).forEach((m, s) => this.setMode(s, m));
  }

  setMode(segment: number, mode: PamMode): void {
    if (this.modes[segment] === mode) return;
    const { gpa, size } = pamSegment(segment);
    const old = this.slots[segment];
    if (old !== undefined) {
      this.opts.mapper.unmapMemory(old);
      this.slots[segment] = undefined;
    }
    this.modes[segment] = mode;
    const off = gpa - LEGACY_AREA_START;
    if (mode === 1 || mode === 3) {
      this.slots[segment] = this.opts.mapper.mapMemory(
        gpa,
        size,
        this.opts.ram.block,
        this.opts.ram.offset + off,
        {
          readonly: mode === 1,
        },
      );
    } else if (mode === 0) {
      const rom = this.opts.rom(segment);
      this.slots[segment] = this.opts.mapper.mapMemory(gpa, size, rom.block, rom.offset, { readonly: true });
    }
  }

  // ---- MMIO exits in [0xC0000, 0x100000) ----------------------------------

  read(offset: number, size: AccessSize): number {
    const segment = segmentAt(offset);
    const mode = this.modes[segment] ?? 0;
    const bytes = mode === 1 || mode === 3 ? this.opts.ram.bytes : this.romBytesAt(segment);
    const base = mode === 1 || mode === 3 ? offset : offset - pamSegment(segment).gpa + LEGACY_AREA_START;
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + (bytes[base + i] ?? 0xff);
    return v;
  }

  write(offset: number, size: AccessSize, value: number): void {
    const mode = this.modes[segmentAt(offset)] ?? 0;
    if (mode !== 2 && mode !== 3) return; // to the ROM side: dropped
    for (let i = 0; i < size && offset + i < LEGACY_AREA_SIZE; i++) {
      this.opts.ram.bytes[offset + i] = (value >>> (8 * i)) & 0xff;
    }
  }

  private romBytesAt(segment: number): Uint8Array {
    return this.opts.rom(segment).bytes;
  }
}

/** The segment of an offset from 0xC0000. */
function segmentAt(offset: number): number {
  if (offset >= 0x30000) return 0;
  return 1 + Math.floor(offset / 0x4000);
}
