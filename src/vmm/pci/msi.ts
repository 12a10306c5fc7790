/**
 * MSI capability (PCI Local Bus Spec 3.0 §6.8.1): the function signals an
 * interrupt by a DWORD memory write of Message Data to Message Address,
 * which on x86 the local APICs decode (Intel SDM vol. 3 §10.11). Here the
 * write is a call on an injected `MsiSink` (KVM_SIGNAL_MSI or an irqfd in
 * the machine, a recorder in tests).
 *
 * Layout (offsets from the capability):
 *   +0  ID 05h, next       +2  Message Control
 *   +4  Message Address    +8  Message Upper Address (64-bit only)
 *   +8/+C  Message Data (16 bits)
 *   then, with per-vector masking: Mask Bits, Pending Bits.
 * All registers live in config space, so the saved config bytes are the
 * whole state of the capability.
 */
import type { AccessSize } from '../core/device.js';
import { PCI_CAP_ID_MSI, type ConfigSpace } from './config-space.js';

/** Where MSI and MSI-X messages go. */
export interface MsiSink {
  signalMsi(addressLo: number, addressHi: number, data: number): void;
}

export type MsiVectorCount = 1 | 2 | 4 | 8 | 16 | 32;

export interface MsiOptions {
  /** Vectors the function asks for (Multiple Message Capable). Default 1. */
  vectors?: MsiVectorCount;
  /** 64-bit Message Address. Default true (Linux prefers it). */
  addr64?: boolean;
  /** Per-vector masking with Mask and Pending Bits. Default false. */
  perVectorMask?: boolean;
  /** Config offset for the capability; default the first free one. */
  at?: number;
}

/** Message Control bits (§6.8.1.3). */
export const MSI_CTRL_ENABLE = 0x0001;
export const MSI_CTRL_MMC_SHIFT = 1;
export const MSI_CTRL_MME_SHIFT = 4;
export const MSI_CTRL_MME_MASK = 0x0070;
export const MSI_CTRL_64BIT = 0x0080;
export const MSI_CTRL_PER_VECTOR_MASK = 0x0100;

export class MsiCapability {
  /** Config offset of the capability. */
  readonly offset: number;
  readonly vectors: MsiVectorCount;
  readonly addr64: boolean;
  readonly perVectorMask: boolean;
  private readonly dataReg: number;
  private readonly maskReg: number;
  private readonly pendingReg: number;

  constructor(
    private readonly config: ConfigSpace,
    opts: MsiOptions,
    private readonly sink: MsiSink,
  ) {
    this.vectors = opts.vectors ?? 1;
    this.addr64 = opts.addr64 ?? true;
    this.perVectorMask = opts.perVectorMask ?? false;
    if (![1, 2, 4, 8, 16, 32].includes(this.vectors))
      throw new RangeError(`bad MSI vector count ${this.vectors}`);
    // Capability lengths of §6.8.1 (figure 6-9): 0x0A/0x0E bytes without
    // masking, 0x14/0x18 with Mask and Pending Bits.
    const length = (this.addr64 ? 0x0e : 0x0a) + (this.perVectorMask ? 0x0a : 0);
    const off = config.addCapability(PCI_CAP_ID_MSI, length, opts.at);
    this.offset = off;
    this.dataReg = off + (this.addr64 ? 0x0c : 0x08);
    this.maskReg = this.dataReg + 4;
    this.pendingReg = this.maskReg + 4;
    const mmc = Math.log2(this.vectors);
    config.set16(
      off + 2,
      (mmc << MSI_CTRL_MMC_SHIFT) |
        (this.addr64 ? MSI_CTRL_64BIT : 0) |
        (this.perVectorMask ? MSI_CTRL_PER_VECTOR_MASK : 0),
    );
    config.setWmask(off + 2, 2, MSI_CTRL_ENABLE | MSI_CTRL_MME_MASK);
    // Address bits 1:0 are reserved, read as 0 (DWORD-aligned writes).
    config.setWmask(off + 4, 4, 0xfffffffc);
    if (this.addr64) config.setWmask(off + 8, 4, 0xffffffff);
    config.setWmask(this.dataReg, 2, 0xffff);
    if (this.perVectorMask) {
      // One mask bit per capable vector; the rest and all Pending Bits are read-only.
      config.setWmask(this.maskReg, 4, this.vectors === 32 ? 0xffffffff : (1 << this.vectors) - 1);
    }
    config.watch(off, length, (o, s) => this.configWritten(o, s));
  }

  get enabled(): boolean {
    return (this.config.get16(this.offset + 2) & MSI_CTRL_ENABLE) !== 0;
  }

  /**
   * Vectors software allocated (Multiple Message Enable, at most what the
   * function asked for; §6.8.1.3).
   */
  get allocatedVectors(): number {
    const mme = (this.config.get16(this.offset + 2) & MSI_CTRL_MME_MASK) >> MSI_CTRL_MME_SHIFT;
    return Math.min(1 << mme, this.vectors);
  }

  isMasked(vector: number): boolean {
    return this.perVectorMask && ((this.config.get32(this.maskReg) >>> vector) & 1) === 1;
  }

  isPending(vector: number): boolean {
    return this.perVectorMask && ((this.config.get32(this.pendingReg) >>> vector) & 1) === 1;
  }

  /**
   * Signals `vector`. Returns false when MSI is disabled (the function
   * then uses its INTx pin). A vector the guest did not allocate folds
   * onto the allocated ones (vector mod allocated); a device with its own
   * rule maps it first. A masked vector sets its Pending bit and is sent
   * when unmasked (§6.8.1.7).
   */
  notify(vector = 0): boolean {
    if (!this.enabled) return false;
    const v = vector & (this.allocatedVectors - 1);
    if (this.isMasked(v)) {
      this.config.set32(this.pendingReg, (this.config.get32(this.pendingReg) | (1 << v)) >>> 0);
      return true;
    }
    this.send(v);
    return true;
  }

  /** Clears a Pending bit whose cause went away before the vector was unmasked. */
  clearPending(vector: number): void {
    if (!this.perVectorMask) return;
    this.config.set32(this.pendingReg, (this.config.get32(this.pendingReg) & ~(1 << vector)) >>> 0);
  }

  /** Power-on: clears Pending Bits (the config reset clears the writable registers). */
  reset(): void {
    if (this.perVectorMask) this.config.set32(this.pendingReg, 0);
  }

  private send(vector: number): void {
    const lo = this.config.get32(this.offset + 4);
    const hi = this.addr64 ? this.config.get32(this.offset + 8) : 0;
    // §6.8.1.6: with several vectors allocated, the function puts the
    // vector number in the low bits of Message Data.
    const n = this.allocatedVectors;
    const data = (this.config.get16(this.dataReg) & ~(n - 1)) | vector;
    this.sink.signalMsi(lo, hi, data);
  }

  /** After a guest write: sends the pending vectors that are no longer masked. */
  private configWritten(_offset: number, _size: AccessSize): void {
    if (!this.perVectorMask || !this.enabled) return;
    const pending = this.config.get32(this.pendingReg);
    if (pending === 0) return;
    const mask = this.config.get32(this.maskReg);
    const n = this.allocatedVectors;
    for (let v = 0; v < n; v++) {
      const bit = 1 << v;
      if (pending & bit && !(mask & bit)) {
        this.clearPending(v);
        this.send(v);
      }
    }
  }
}
