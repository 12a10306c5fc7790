/**
 * `class: pvpanic`: QEMU's pvpanic-pci (docs/specs/pvpanic.rst), PCI
 * 1b36:0011, through which a guest tells the host that it panicked: Linux's
 * pvpanic-pci driver (and Windows' pvpanic driver) write PANICKED from the
 * panic notifier, or CRASH_LOADED when a crash kernel (kdump) takes over
 * and will reboot by itself. libvirt's <panic model='pvpanic'/> and
 * on_crash act on it; here `onPanic` does: `stop` ends mvisor with exit
 * code 3, like a triple fault, so that a supervisor sees a crash rather
 * than a guest that hangs at its panic message; `log` only says so.
 *
 * BAR0 is 16 bytes of MMIO (QEMU maps 2; 16 is the smallest memory BAR):
 * a read of byte 0 returns the events the device supports, a write of byte
 * 0 reports events (bit 0 PANICKED, bit 1 CRASH_LOADED; other bits are
 * ignored, as the specification says). Class 0x0880 (other system
 * peripheral), no interrupt. No state: a report acts at once.
 */
import type { PvpanicDevice } from '../../generated/vmm-config.js';
import { pciSlotOf } from '../../platform/placement.js';
import type { DeviceDescriptor } from '../board/board.js';
import type { AccessSize, IoHandler } from '../core/device.js';
import { ExitCode } from '../core/kvm-vm-defs.js';
import { PciDevice } from '../pci/device.js';

export const PVPANIC_VENDOR_ID = 0x1b36;
export const PVPANIC_DEVICE_ID = 0x0011;
export const PVPANIC_CLASS = 0x088000;
export const PVPANIC_BAR_SIZE = 16;
/** Event bits (the register). */
export const PVPANIC_PANICKED = 1 << 0;
export const PVPANIC_CRASH_LOADED = 1 << 1;
const SUPPORTED = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;

/** The guest's report. */
export type PvpanicEvent = 'panicked' | 'crash-loaded';

export class PvpanicPci extends PciDevice {
  private readonly regs: IoHandler = {
    read: (offset: number) => (offset === 0 ? SUPPORTED : 0),
    write: (offset: number, _size: AccessSize, value: number) => {
      if (offset !== 0) return;
      if (value & PVPANIC_PANICKED) this.onEvent('panicked');
      else if (value & PVPANIC_CRASH_LOADED) this.onEvent('crash-loaded');
    },
  };

  constructor(private readonly onEvent: (e: PvpanicEvent) => void) {
    super('pvpanic', {
      vendorId: PVPANIC_VENDOR_ID,
      deviceId: PVPANIC_DEVICE_ID,
      classCode: PVPANIC_CLASS,
      revision: 1,
      subsystemVendorId: 0x1af4,
      subsystemId: 0x1100,
    });
    this.addBar({ index: 0, kind: 'mem32', size: PVPANIC_BAR_SIZE, handler: this.regs });
  }
}

export interface ResolvedPvpanicDevice {
  class: 'pvpanic';
  /** What a panic report does: `stop` ends mvisor with exit code 3, `log` only logs it. */
  onPanic: 'stop' | 'log';
  /** PCI slot on bus 0; assigned like virtio-block's when not configured. */
  slot: number;
}

export const pvpanicDevice: DeviceDescriptor<PvpanicDevice, ResolvedPvpanicDevice> = {
  class: 'pvpanic',
  schema: {
    name: 'PvpanicDevice',
    manifest: false,
    definition: {
      description:
        "QEMU's pvpanic-pci (PCI 1b36:0011): the guest reports a kernel panic (Linux's pvpanic-pci driver, Windows' pvpanic), and onPanic says what happens.",
      type: 'object',
      additionalProperties: false,
      required: ['class'],
      properties: {
        class: { const: 'pvpanic' },
        onPanic: {
          description:
            'What a panic report does: stop (default) ends the VM with exit code 3, as a triple fault does; log only logs it. A crash kernel taking over (CRASH_LOADED) is only logged.',
          type: 'string',
          enum: ['stop', 'log'],
          default: 'stop',
        },
        slot: {
          description: 'PCI slot on bus 0 (2..31). Default: the first free one, in device order.',
          type: 'integer',
          minimum: 2,
          maximum: 31,
        },
      },
    },
  },
  resolve: (d, ctx) => ({ class: 'pvpanic', onPanic: d.onPanic ?? 'stop', slot: pciSlotOf(ctx.placement) }),
  create(d, board) {
    const log = board.ctx.log;
    const dev = new PvpanicPci((e) => {
      if (e === 'crash-loaded') return log.warn('pvpanic: the guest panicked and a crash kernel took over');
      if (d.onPanic === 'log') return log.error('pvpanic: the guest panicked (onPanic: log, the VM goes on)');
      // An error line, as for a triple fault: the VM ends as a crash.
      log.error('guest panicked (pvpanic)');
      board.requestStop(ExitCode.GuestCrashed, 'guest panicked (pvpanic)');
    });
    board.pci(board.add(dev), d.slot);
  },
};
