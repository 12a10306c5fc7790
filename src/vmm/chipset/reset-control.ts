/**
 * Reset control register at port 0xCF9 (Intel PIIX3/PIIX4 and ICH "RC"
 * register; datasheet 82371AB §4.1.5). Writing bit 2 (RST_CPU) resets the
 * machine; bit 1 (SYS_RST) selects a hard reset, which for a VM is the same.
 * Linux uses it with `reboot=pci`, and as a fallback of its default reboot.
 * The PCI host bridge that owns 0xCF8-0xCFF arrives with the PIIX chipset;
 * this register then moves inside it.
 */
import type { AccessSize, Device, DeviceContext, DeviceState, IoHandler } from '../core/device.js';
import { expectVersion } from '../core/device.js';

export const RESET_CONTROL_PORT = 0xcf9;
const RST_CPU = 0x04;

export class ResetControl implements Device, IoHandler {
  readonly name: string;
  private value = 0;

  constructor(
    private readonly ctx: DeviceContext,
    opts: { name?: string } = {},
  ) {
    this.name = opts.name ?? 'reset-control';
  }

  read(_offset: number, _size: AccessSize): number {
    return this.value;
  }

  write(_offset: number, _size: AccessSize, value: number): void {
    // Only SYS_RST (bit 1) and RST_CPU (bit 2) are stored; RST_CPU self-clears.
    this.value = value & 0x02;
    if (value & RST_CPU) this.ctx.requestReset(`port 0xCF9 write 0x${(value & 0xff).toString(16)}`);
  }

  reset(): void {
    this.value = 0;
  }

  saveState(): DeviceState {
    return { version: 1, value: this.value };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    this.value = typeof state.value === 'number' ? state.value & 0x02 : 0;
  }
}
