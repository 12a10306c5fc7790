/**
 * Guest physical memory as the VMM sees it: RAM regions backed by host
 * memory (ArrayBuffers that alias the mmap'd guest RAM the addon gives, so
 * nothing is copied) placed at guest-physical addresses. Boot loaders,
 * firmware tables and DMA-capable devices read and write guest memory only
 * through this class, which bounds-checks every access: a guest-supplied
 * address outside RAM is an error the caller handles, never a crash.
 */

export interface RamRegion {
  /** Guest-physical start. */
  readonly gpa: number;
  readonly size: number;
  /** Host view of the region (aliases guest RAM). */
  readonly bytes: Uint8Array;
}

export class GuestMemoryError extends Error {}

export class GuestMemory {
  private readonly regions: RamRegion[] = [];

  addRegion(gpa: number, bytes: Uint8Array): void {
    const size = bytes.byteLength;
    for (const r of this.regions) {
      if (gpa < r.gpa + r.size && r.gpa < gpa + size) {
        throw new GuestMemoryError(
          `RAM region at 0x${gpa.toString(16)} overlaps one at 0x${r.gpa.toString(16)}`,
        );
      }
    }
    this.regions.push({ gpa, size, bytes });
    this.regions.sort((a, b) => a.gpa - b.gpa);
  }

  list(): readonly RamRegion[] {
    return this.regions;
  }

  /** Total RAM in bytes. */
  get totalSize(): number {
    return this.regions.reduce((s, r) => s + r.size, 0);
  }

  /**
   * A view of [gpa, gpa+length) if it lies inside one RAM region, else
   * undefined (the range crosses a hole or leaves RAM).
   */
  tryView(gpa: number, length: number): Uint8Array | undefined {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0)
      return undefined;
    for (const r of this.regions) {
      if (gpa >= r.gpa && gpa + length <= r.gpa + r.size) {
        const off = gpa - r.gpa;
        return r.bytes.subarray(off, off + length);
      }
    }
    return undefined;
  }

  /** Like tryView, but throws a GuestMemoryError naming the range. */
  view(gpa: number, length: number): Uint8Array {
    const v = this.tryView(gpa, length);
    if (!v) {
      throw new GuestMemoryError(
        `guest memory 0x${gpa.toString(16)}+0x${length.toString(16)} is not inside guest RAM`,
      );
    }
    return v;
  }

  write(gpa: number, data: Uint8Array): void {
    this.view(gpa, data.byteLength).set(data);
  }

  read(gpa: number, length: number): Uint8Array {
    return Uint8Array.from(this.view(gpa, length));
  }

  fill(gpa: number, length: number, value = 0): void {
    this.view(gpa, length).fill(value);
  }

  dataView(gpa: number, length: number): DataView {
    const v = this.view(gpa, length);
    return new DataView(v.buffer, v.byteOffset, v.byteLength);
  }
}
