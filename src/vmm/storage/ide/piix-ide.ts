/**
 * The PIIX3 IDE interface (82371SB function 1, 8086:7010), PCI 00:01.1 of
 * QEMU's `pc` machine and MVisor's: two IDE channels in ISA-compatible
 * ("legacy") mode plus SFF-8038i bus-master DMA.
 *
 * - Class 01 01 80: mass storage, IDE, programming interface 80h (bus
 *   master capable; both channels fixed in compatibility mode, so BARs 0-3
 *   do not exist and the channels sit at the ISA addresses below).
 * - BAR4 (BMIBA, 16 bytes of I/O): the bus-master registers, primary at
 *   +0, secondary at +8 (bus-master.ts).
 * - Config 0x40-0x41 / 0x42-0x43 IDETIM: timing of each channel, bit 15
 *   the channel's IDE decode enable, which gates its legacy ports (reset
 *   value 0, SeaBIOS writes 0x8000, Linux's ata_piix skips a channel
 *   without it). 0x44 SIDETIM (slave timing) is writable too.
 *
 * The legacy ports are fixed ISA addresses the machine registers once
 * (they are not BARs):
 *
 *   for (const p of ide.legacyPorts) vm.pio.register(p.base, p.length, p.handler, p.name);
 *
 * which is vm.pio.register(0x1f0, 8, ide.channels[0].commandBlock, ...),
 * (0x3f6, 1, ide.channels[0].controlBlock, ...), (0x170, 8, secondary
 * command block) and (0x376, 1, secondary control block). The channels
 * interrupt on ISA IRQ 14 and 15 through `ctx.irq`; the function itself
 * has no INTx pin, as in compatibility mode.
 */
import { IDE_PORTS } from '../../../platform/pc-map.js';
import type { AccessSize, DeviceContext, IoHandler } from '../../core/device.js';
import { DeviceStateError } from '../../core/device.js';
import type { GuestMemory } from '../../core/memory.js';
import { PciDevice } from '../../pci/device.js';
import { BusMasterChannel } from './bus-master.js';
import { IdeChannel } from './channel.js';
import type { IdeDrive } from './drive.js';

export const PIIX3_IDE_VENDOR_ID = 0x8086;
export const PIIX3_IDE_DEVICE_ID = 0x7010;
export const PIIX3_IDE_CLASS = 0x010180;
/** The function number beside the PIIX3 ISA bridge (slot 1, function 0). */
export const PIIX3_IDE_FUNCTION = 1;
export const PIIX_IDETIM = 0x40;
export const PIIX_SIDETIM = 0x44;
export const IDETIM_DECODE_ENABLE = 0x8000;
/** BAR4: bus-master registers. */
export const PIIX_BMIBA_BAR = 4;
export const BMIBA_SIZE = 16;

/** The ISA resources of the two channels in compatibility mode. */
export const IDE_LEGACY = [
  { command: IDE_PORTS[0]!.start, control: IDE_PORTS[1]!.start, irq: 14 },
  { command: IDE_PORTS[2]!.start, control: IDE_PORTS[3]!.start, irq: 15 },
] as const;

export interface LegacyPortRange {
  readonly base: number;
  readonly length: number;
  readonly handler: IoHandler;
  readonly name: string;
}

export interface PiixIdeOptions {
  /** Guest RAM: all bus-master DMA goes through it. */
  memory: GuestMemory;
  /**
   * Power on with both channels' IDE decode enabled (IDETIM bit 15), as
   * firmware leaves them: for a direct kernel boot, which has none.
   */
  decodeAtPowerOn?: boolean;
  name?: string;
}

/** SeaBIOS / OpenFirmware device path of a drive, for fw_cfg `bootorder` (as QEMU names it). */
export function ideBootPath(channel: 0 | 1, unit: 0 | 1, slot = 1, fn = PIIX3_IDE_FUNCTION): string {
  return `/pci@i0cf8/ide@${slot.toString(16)},${fn}/drive@${channel}/disk@${unit}`;
}

export class PiixIde extends PciDevice {
  readonly channels: readonly [IdeChannel, IdeChannel];
  readonly busMasters: readonly [BusMasterChannel, BusMasterChannel];
  readonly legacyPorts: readonly LegacyPortRange[];

  private readonly bmRegs: IoHandler = {
    read: (offset: number, size: AccessSize) => {
      let v = 0;
      for (let i = 0; i < size; i++) {
        const o = offset + i;
        const b = o >= 0 && o < BMIBA_SIZE ? this.busMasters[o >> 3]!.read(o & 7, 1) : 0xff;
        v |= b << (8 * i);
      }
      return v >>> 0;
    },
    write: (offset: number, size: AccessSize, value: number) => {
      for (let i = 0; i < size; i++) {
        const o = offset + i;
        if (o >= 0 && o < BMIBA_SIZE) this.busMasters[o >> 3]!.write(o & 7, 1, (value >>> (8 * i)) & 0xff);
      }
    },
  };

  constructor(
    ctx: DeviceContext,
    private readonly opts: PiixIdeOptions,
  ) {
    const name = opts.name ?? 'piix3-ide';
    super(name, {
      vendorId: PIIX3_IDE_VENDOR_ID,
      deviceId: PIIX3_IDE_DEVICE_ID,
      classCode: PIIX3_IDE_CLASS,
      interruptPin: 0,
    });
    // 82371SB §2.3: medium DEVSEL timing, fast back-to-back capable.
    this.config.setStatusBits(0x0280, true);
    this.config.setWmask(PIIX_IDETIM, 4, 0xffffffff);
    this.config.setWmask(PIIX_SIDETIM, 1, 0xff);
    this.addBar({ index: PIIX_BMIBA_BAR, kind: 'io', size: BMIBA_SIZE, handler: this.bmRegs });

    const channels: IdeChannel[] = [];
    const bms: BusMasterChannel[] = [];
    for (const i of [0, 1] as const) {
      const chName = `${name}.${i === 0 ? 'primary' : 'secondary'}`;
      const ch = new IdeChannel({
        name: chName,
        log: ctx.log,
        guestErrors: ctx.guestErrors,
        setIrq: (level) => ctx.irq.setIrq(IDE_LEGACY[i].irq, level),
        decodeEnabled: () => (this.config.get16(PIIX_IDETIM + 2 * i) & IDETIM_DECODE_ENABLE) !== 0,
      });
      const bm = new BusMasterChannel({
        name: chName,
        memory: opts.memory,
        guestErrors: ctx.guestErrors,
        canMaster: () => this.busMasterEnabled,
        onStart: () => ch.dmaStarted(),
        onStop: () => ch.dmaStopped(),
      });
      ch.setBusMaster(bm);
      channels.push(ch);
      bms.push(bm);
    }
    this.channels = [channels[0]!, channels[1]!];
    this.busMasters = [bms[0]!, bms[1]!];
    this.legacyPorts = this.channels.flatMap((ch, i) => [
      { base: IDE_LEGACY[i]!.command, length: 8, handler: ch.commandBlock, name: ch.name },
      { base: IDE_LEGACY[i]!.control, length: 1, handler: ch.controlBlock, name: ch.name },
    ]);
    this.powerOnConfig();
  }

  /** Plugs a drive into a channel (0 primary, 1 secondary) as device 0 or 1, before the guest runs. */
  attachDrive(channel: 0 | 1, unit: 0 | 1, drive: IdeDrive): void {
    this.channels[channel].attach(unit, drive);
  }

  /** Resolves when no drive has image I/O in flight (before a snapshot, or closing the images). */
  /** Image requests in flight on both channels. */
  inFlight(): number {
    return this.channels.reduce((n, c) => n + c.inFlight(), 0);
  }

  async drain(): Promise<void> {
    await Promise.all(this.channels.map((c) => c.drain()));
  }

  private powerOnConfig(): void {
    if (this.opts.decodeAtPowerOn) {
      this.config.set16(PIIX_IDETIM, IDETIM_DECODE_ENABLE);
      this.config.set16(PIIX_IDETIM + 2, IDETIM_DECODE_ENABLE);
    }
  }

  protected override resetDevice(): void {
    this.powerOnConfig();
    for (const bm of this.busMasters) bm.reset();
    for (const ch of this.channels) ch.reset();
  }

  protected override saveDeviceState(): unknown {
    return {
      ide: 1,
      busMasters: this.busMasters.map((b) => b.save()),
      channels: this.channels.map((c) => c.save()),
    };
  }

  protected override loadDeviceState(saved: unknown): void {
    const s = (typeof saved === 'object' && saved !== null ? saved : {}) as Record<string, unknown>;
    if (s.ide !== 1) throw new DeviceStateError(`${this.name}: saved IDE state of an unknown version`);
    const bms = Array.isArray(s.busMasters) ? s.busMasters : [];
    const chs = Array.isArray(s.channels) ? s.channels : [];
    this.busMasters.forEach((b, i) => b.load(bms[i]));
    this.channels.forEach((c, i) => c.load(chs[i]));
  }
}
