/**
 * The i440FX PCI and memory controller (82441FX, "PMC"), PCI 00:00.0 of
 * QEMU's `pc` machine: 8086:1237, a host bridge. Besides its identity it
 * has what firmware programs: the PAM registers that turn the legacy BIOS
 * area into shadow RAM (pam.ts) and the SMRAM control register (0x72).
 * mvisor offers no SMM (no KVM_CAP_X86_SMM use): SMRAM keeps what the guest
 * writes and changes nothing, and the PIIX4 PM function tells SeaBIOS not
 * to set SMM up.
 */
import { PciDevice } from '../pci/device.js';
import { PAM0, PAM_REGISTERS, type PamMemory } from './pam.js';

export const I440FX_VENDOR_ID = 0x8086;
export const I440FX_DEVICE_ID = 0x1237;
export const I440FX_SMRAM = 0x72;
/** SMRAM power-on value: C_BASE_SEG = 010b (the 0xA0000 SMRAM segment). */
const SMRAM_DEFAULT = 0x02;
/** D_OPEN, D_CLS, D_LCK, G_SMRAME (what QEMU lets software write). */
const SMRAM_WMASK = 0x78;

export interface I440fxHostOptions {
  pam: PamMemory;
  /**
   * PAM at power-on: 'rom' (all zero: the BIOS ROM answers, as on hardware
   * and for firmware boot) or 'ram' (all read-write DRAM, for a direct
   * kernel boot where no firmware programs the PAM).
   */
  pamAtPowerOn: 'rom' | 'ram';
}

export class I440fxHost extends PciDevice {
  constructor(private readonly opts: I440fxHostOptions) {
    super('i440fx-host', {
      vendorId: I440FX_VENDOR_ID,
      deviceId: I440FX_DEVICE_ID,
      revision: 0x02,
      classCode: 0x060000,
    });
    this.config.setWmask(PAM0, 1, 0x30);
    for (let i = 1; i < PAM_REGISTERS; i++) this.config.setWmask(PAM0 + i, 1, 0x33);
    this.config.setWmask(I440FX_SMRAM, 1, SMRAM_WMASK);
    this.resetDevice();
  }

  /** PAM0..PAM6 as the guest programmed them. */
  pamRegisters(): number[] {
    return Array.from({ length: PAM_REGISTERS }, (_, i) => this.config.get8(PAM0 + i));
  }

  protected override onConfigWrite(offset: number, size: number): void {
    if (offset < PAM0 + PAM_REGISTERS && PAM0 < offset + size) this.opts.pam.apply(this.pamRegisters());
  }

  protected override resetDevice(): void {
    const ram = this.opts.pamAtPowerOn === 'ram';
    this.config.set8(PAM0, ram ? 0x30 : 0);
    for (let i = 1; i < PAM_REGISTERS; i++) this.config.set8(PAM0 + i, ram ? 0x33 : 0);
    this.config.set8(I440FX_SMRAM, SMRAM_DEFAULT);
    this.opts.pam.apply(this.pamRegisters());
  }

  /** PAM follows the loaded config bytes. */
  protected override loadDeviceState(): void {
    this.opts.pam.apply(this.pamRegisters());
  }
}
