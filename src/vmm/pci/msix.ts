/**
 * MSI-X capability (PCI Local Bus Spec 3.0 §6.8.2). The capability in
 * config space only says where things are; the vectors themselves live in
 * memory BARs: the MSI-X Table (16 bytes a vector: Message Address,
 * Message Upper Address, Message Data, Vector Control) and the Pending Bit
 * Array (one bit a vector, in QWORDs). This class owns both and gives the
 * device `IoHandler`s for them, to put in its BARs.
 *
 * Capability layout (offsets from the capability):
 *   +0 ID 11h, next   +2 Message Control (Table Size N-1, Function Mask,
 *   MSI-X Enable)     +4 Table Offset | BIR   +8 PBA Offset | BIR
 *
 * A vector that fires while masked (its own Mask bit or the Function Mask)
 * sets its Pending bit and is sent once unmasked (§6.8.2.9).
 */
import type { AccessSize, IoHandler } from '../core/device.js';
import { DeviceStateError } from '../core/device.js';
import { PCI_CAP_ID_MSIX, PCI_NUM_BARS, type ConfigSpace } from './config-space.js';
import type { MsiSink } from './msi.js';

export const MSIX_CTRL_TABLE_SIZE = 0x07ff;
export const MSIX_CTRL_FUNCTION_MASK = 0x4000;
export const MSIX_CTRL_ENABLE = 0x8000;
/** Vector Control bit 0 (§6.8.2.9). */
export const MSIX_VECTOR_MASKED = 0x1;
export const MSIX_ENTRY_SIZE = 16;
export const MSIX_MAX_VECTORS = 2048;

export interface MsixOptions {
  /** 1..2048. */
  vectors: number;
  /** BAR index (BIR) and offset of the table; the offset is QWORD-aligned. */
  tableBar: number;
  tableOffset: number;
  pbaBar: number;
  pbaOffset: number;
  /** Config offset for the capability; default the first free one. */
  at?: number;
}

export interface MsixState {
  /** Table DWORDs, four per vector. */
  table: number[];
  /** Vectors whose Pending bit is set. */
  pending: number[];
}

/**
 * A layout with the table at offset 0 and the PBA after it, in one BAR of
 * at least 4 KiB (§6.8.2: both may share a naturally aligned 4 KiB range).
 */
export function msixBarLayout(vectors: number): { tableOffset: number; pbaOffset: number; barSize: number } {
  const tableBytes = vectors * MSIX_ENTRY_SIZE;
  const pbaOffset = tableBytes;
  const end = pbaOffset + Math.ceil(vectors / 64) * 8;
  return { tableOffset: 0, pbaOffset, barSize: Math.max(0x1000, 2 ** Math.ceil(Math.log2(end))) };
}

export class MsixCapability {
  readonly offset: number;
  readonly vectors: number;
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;
  /** Bytes of the table and of the PBA. */
  readonly tableSize: number;
  readonly pbaSize: number;
  /** The table: offsets from its start. DWORD accesses as the spec asks; smaller ones work too. */
  readonly table: IoHandler;
  /** The Pending Bit Array, read-only (§6.8.2.10: writes are undefined; ignored). */
  readonly pba: IoHandler;
  private readonly entries: Uint8Array;
  private readonly view: DataView;
  private readonly pending: Uint8Array;

  constructor(
    private readonly config: ConfigSpace,
    opts: MsixOptions,
    private readonly sink: MsiSink,
  ) {
    const { vectors, tableBar, tableOffset, pbaBar, pbaOffset } = opts;
    if (!Number.isInteger(vectors) || vectors < 1 || vectors > MSIX_MAX_VECTORS) {
      throw new RangeError(`bad MSI-X vector count ${vectors}`);
    }
    for (const [what, bar, off] of [
      ['table', tableBar, tableOffset],
      ['PBA', pbaBar, pbaOffset],
    ] as const) {
      if (!Number.isInteger(bar) || bar < 0 || bar >= PCI_NUM_BARS)
        throw new RangeError(`bad MSI-X ${what} BAR ${bar}`);
      // The BIR takes bits 2:0, so offsets are QWORD-aligned (§6.8.2.4).
      if (!Number.isInteger(off) || off < 0 || off % 8 !== 0 || off > 0xfffffff8) {
        throw new RangeError(`bad MSI-X ${what} offset ${off}`);
      }
    }
    this.vectors = vectors;
    this.tableBar = tableBar;
    this.tableOffset = tableOffset;
    this.pbaBar = pbaBar;
    this.pbaOffset = pbaOffset;
    this.tableSize = vectors * MSIX_ENTRY_SIZE;
    this.pbaSize = Math.ceil(vectors / 64) * 8;
    if (
      tableBar === pbaBar &&
      tableOffset < pbaOffset + this.pbaSize &&
      pbaOffset < tableOffset + this.tableSize
    ) {
      throw new RangeError('MSI-X table and PBA overlap');
    }
    this.entries = new Uint8Array(this.tableSize);
    this.view = new DataView(this.entries.buffer);
    this.pending = new Uint8Array(vectors);
    this.resetTable();

    const off = config.addCapability(PCI_CAP_ID_MSIX, 12, opts.at);
    this.offset = off;
    config.set16(off + 2, vectors - 1);
    config.setWmask(off + 2, 2, MSIX_CTRL_FUNCTION_MASK | MSIX_CTRL_ENABLE);
    config.set32(off + 4, (tableOffset | tableBar) >>> 0);
    config.set32(off + 8, (pbaOffset | pbaBar) >>> 0);
    config.watch(off + 2, 2, () => this.deliverPending());

    this.table = {
      read: (offset, size) => this.readTable(offset, size),
      write: (offset, size, value) => this.writeTable(offset, size, value),
    };
    this.pba = {
      read: (offset, size) => this.readPba(offset, size),
      write: () => {},
    };
  }

  /**
   * A handler for a BAR that holds the table and the PBA (offsets from the
   * BAR's start); other offsets read 0 and ignore writes.
   */
  get barHandler(): IoHandler {
    if (this.tableBar !== this.pbaBar) throw new Error('MSI-X table and PBA are in different BARs');
    const inTable = (o: number) => o >= this.tableOffset && o < this.tableOffset + this.tableSize;
    const inPba = (o: number) => o >= this.pbaOffset && o < this.pbaOffset + this.pbaSize;
    return {
      read: (o, size) => {
        if (inTable(o)) return this.readTable(o - this.tableOffset, size);
        if (inPba(o)) return this.readPba(o - this.pbaOffset, size);
        return 0;
      },
      write: (o, size, value) => {
        if (inTable(o)) this.writeTable(o - this.tableOffset, size, value);
      },
    };
  }

  get enabled(): boolean {
    return (this.config.get16(this.offset + 2) & MSIX_CTRL_ENABLE) !== 0;
  }

  get functionMasked(): boolean {
    return (this.config.get16(this.offset + 2) & MSIX_CTRL_FUNCTION_MASK) !== 0;
  }

  isMasked(vector: number): boolean {
    return (this.view.getUint32(vector * MSIX_ENTRY_SIZE + 12, true) & MSIX_VECTOR_MASKED) !== 0;
  }

  isPending(vector: number): boolean {
    return this.pending[vector] === 1;
  }

  /** The table entry of `vector` as the guest programmed it. */
  entry(vector: number): { addressLo: number; addressHi: number; data: number; control: number } {
    const b = vector * MSIX_ENTRY_SIZE;
    return {
      addressLo: this.view.getUint32(b, true),
      addressHi: this.view.getUint32(b + 4, true),
      data: this.view.getUint32(b + 8, true),
      control: this.view.getUint32(b + 12, true),
    };
  }

  /**
   * Signals `vector`. Returns false when MSI-X is disabled (the function
   * then uses MSI or INTx). While the vector or the function is masked the
   * Pending bit is set instead (§6.8.2.9). A vector past the table is a
   * bug of the device model: it throws.
   */
  notify(vector: number): boolean {
    if (!Number.isInteger(vector) || vector < 0 || vector >= this.vectors) {
      throw new RangeError(`MSI-X vector ${vector} outside 0..${this.vectors - 1}`);
    }
    if (!this.enabled) return false;
    if (this.functionMasked || this.isMasked(vector)) {
      this.pending[vector] = 1;
      return true;
    }
    this.send(vector);
    return true;
  }

  /** Clears a Pending bit whose cause went away while masked (§6.8.2.9). */
  clearPending(vector: number): void {
    if (vector >= 0 && vector < this.vectors) this.pending[vector] = 0;
  }

  /** Power-on: every vector masked, nothing pending (§6.8.2.9: Mask bit set after reset). */
  reset(): void {
    this.resetTable();
  }

  saveState(): MsixState {
    const table: number[] = [];
    for (let i = 0; i < this.tableSize; i += 4) table.push(this.view.getUint32(i, true));
    const pending: number[] = [];
    this.pending.forEach((p, v) => p && pending.push(v));
    return { table, pending };
  }

  loadState(state: unknown, who: string): void {
    const s = state as Partial<MsixState> | null;
    if (
      typeof s !== 'object' ||
      s === null ||
      !Array.isArray(s.table) ||
      s.table.length !== this.tableSize / 4 ||
      !s.table.every((d) => Number.isInteger(d) && d >= 0 && d <= 0xffffffff) ||
      !Array.isArray(s.pending) ||
      !s.pending.every((v) => Number.isInteger(v) && v >= 0 && v < this.vectors)
    ) {
      throw new DeviceStateError(`${who}: bad MSI-X state`);
    }
    s.table.forEach((d, i) => this.view.setUint32(i * 4, d, true));
    this.pending.fill(0);
    for (const v of s.pending) this.pending[v] = 1;
  }

  private resetTable(): void {
    this.entries.fill(0);
    for (let v = 0; v < this.vectors; v++)
      this.view.setUint32(v * MSIX_ENTRY_SIZE + 12, MSIX_VECTOR_MASKED, true);
    this.pending.fill(0);
  }

  private send(vector: number): void {
    const e = this.entry(vector);
    this.sink.signalMsi(e.addressLo, e.addressHi, e.data);
  }

  /** Sends every pending vector that is no longer masked. */
  private deliverPending(): void {
    if (!this.enabled || this.functionMasked) return;
    for (let v = 0; v < this.vectors; v++) {
      if (this.pending[v] && !this.isMasked(v)) {
        this.pending[v] = 0;
        this.send(v);
      }
    }
  }

  private readTable(offset: number, size: AccessSize): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) {
      const o = offset + i;
      v = v * 256 + (o >= 0 && o < this.tableSize ? this.entries[o]! : 0);
    }
    return v;
  }

  private writeTable(offset: number, size: AccessSize, value: number): void {
    let unmasked = false;
    for (let i = 0; i < size; i++) {
      const o = offset + i;
      if (o < 0 || o >= this.tableSize) continue;
      let b = (value >>> (8 * i)) & 0xff;
      if (o % MSIX_ENTRY_SIZE >= 12) {
        // Vector Control: only the Mask bit is implemented; bits 31:1 are reserved (read 0).
        if (o % MSIX_ENTRY_SIZE !== 12) continue;
        b &= MSIX_VECTOR_MASKED;
        if (this.entries[o]! & MSIX_VECTOR_MASKED && !(b & MSIX_VECTOR_MASKED)) unmasked = true;
      }
      this.entries[o] = b;
    }
    if (unmasked) this.deliverPending();
  }

  private readPba(offset: number, size: AccessSize): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) {
      const o = offset + i;
      let byte = 0;
      if (o >= 0 && o < this.pbaSize) {
        for (let bit = 0; bit < 8; bit++) if (this.pending[o * 8 + bit]) byte |= 1 << bit;
      }
      v = v * 256 + byte;
    }
    return v;
  }
}
