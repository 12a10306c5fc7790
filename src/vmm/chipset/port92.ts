/**
 * System control port A at 0x92 (the PS/2 "fast A20 and init" port, in
 * the PIIX's ISA bridge on a PC; QEMU's "port92"): bit 1 gates A20, and
 * writing bit 0 from 0 to 1 resets the machine. KVM has no A20 mask, so
 * the A20 bit is stored and read back (it reads 1 after power-on, as on
 * QEMU, since address line 20 is never masked).
 */
import { PC_PORTS } from '../../platform/pc-map.js';
import type { AccessSize, Device, DeviceContext, DeviceState, IoHandler } from '../core/device.js';
import { expectVersion } from '../core/device.js';

export const PORT_92 = PC_PORTS.port92.start;
const FAST_RESET = 0x01;
const A20 = 0x02;

export class Port92 implements Device, IoHandler {
  readonly name = 'port92';
  private value = A20;

  constructor(private readonly ctx: DeviceContext) {}

  read(_offset: number, _size: AccessSize): number {
    return this.value;
  }

  write(_offset: number, _size: AccessSize, value: number): void {
    const old = this.value;
    this.value = value & (A20 | FAST_RESET);
    if (value & FAST_RESET && !(old & FAST_RESET)) this.ctx.requestReset('port 0x92 fast reset');
  }

  reset(): void {
    this.value = A20;
  }

  saveState(): DeviceState {
    return { version: 1, value: this.value };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    this.value = typeof state.value === 'number' ? state.value & (A20 | FAST_RESET) : A20;
  }
}
