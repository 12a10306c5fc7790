/**
 * What every PCI function (virtio, IDE, AHCI, VGA, USB, audio, the host
 * bridge) implements once: a configuration space, its BARs with the
 * handlers behind them, optional MSI/MSI-X, a level-triggered INTx output
 * and saved state. The host bus (host-bus.ts) maps the BARs where the guest
 * programs them and routes INTx; the device sees only offsets inside a BAR.
 *
 * A subclass declares its BARs and capabilities in its constructor:
 *
 *   class MyDevice extends PciDevice {
 *     private readonly regs: IoHandler = { read: ..., write: ... };
 *     constructor(sink: MsiSink) {
 *       super('my-dev', { vendorId: 0x1af4, deviceId: 0x1000, classCode: 0x020000, interruptPin: 1 });
 *       this.addBar({ index: 0, kind: 'io', size: 32, handler: this.regs });
 *       this.addMsi({ vectors: 1 }, sink);
 *     }
 *   }
 */
import type { AccessSize, Device, DeviceState, IoHandler } from '../core/device.js';
import { DeviceStateError, expectVersion } from '../core/device.js';
import {
  ConfigSpace,
  PCI_BAR0,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_MASTER,
  PCI_ROM_ADDRESS,
  PCI_STATUS_INTERRUPT,
  type BarKind,
  type PciHeader,
} from './config-space.js';
import { MsiCapability, type MsiOptions, type MsiSink } from './msi.js';
import { MsixCapability, type MsixOptions } from './msix.js';

export interface PciBar {
  /** 0..5; a 64-bit BAR also takes `index + 1`. */
  readonly index: number;
  readonly kind: BarKind;
  /** Bytes, a power of two (at least 4 for I/O, 16 for memory). */
  readonly size: number;
  readonly prefetchable?: boolean;
  /** Sees offsets inside the BAR. */
  readonly handler: IoHandler;
}

export interface PciRom {
  /** Bytes, a power of two of at least 2 KiB. */
  readonly size: number;
  /** Reads of the ROM image (writes to a ROM are the handler's to ignore). */
  readonly handler: IoHandler;
}

/** What the host bus gives a function it attached. */
export interface PciBusPort {
  /** The function's INTx output (after INTx Disable and the MSI enables) changed. */
  setIntx(level: boolean): void;
  /** Command, BARs or ROM BAR may have changed: map or unmap to match. */
  remap(): void;
}

/** Config ranges whose writes can change what is decoded: Command, the BARs, the ROM BAR. */
const decodeRanges: Array<[number, number]> = [
  [PCI_COMMAND, PCI_COMMAND + 2],
  [PCI_BAR0, PCI_BAR0 + 24],
  [PCI_ROM_ADDRESS, PCI_ROM_ADDRESS + 4],
];

export abstract class PciDevice implements Device {
  readonly config: ConfigSpace;
  protected msi: MsiCapability | undefined;
  protected msix: MsixCapability | undefined;
  private readonly barList: PciBar[] = [];
  private romDecl: PciRom | undefined;
  private port: PciBusPort | undefined;
  /** The device's interrupt condition (Status bit 3). */
  private intxLevel = false;
  /** What the pin drives: the condition unless INTx is disabled or MSI/MSI-X is on. */
  private intxOut = false;

  constructor(
    readonly name: string,
    header: PciHeader,
  ) {
    this.config = new ConfigSpace(header);
  }

  get bars(): readonly PciBar[] {
    return this.barList;
  }

  get rom(): PciRom | undefined {
    return this.romDecl;
  }

  /** Whether the function may master the bus (Command bit 2): DMA must wait for it. */
  get busMasterEnabled(): boolean {
    return (this.config.command & PCI_COMMAND_MASTER) !== 0;
  }

  /** The level the INTx pin drives now. */
  get intxAsserted(): boolean {
    return this.intxOut;
  }

  // ---- declarations (constructor time) -------------------------------------

  protected addBar(bar: PciBar): void {
    this.checkNotAttached();
    this.config.addBar(bar.index, {
      kind: bar.kind,
      size: bar.size,
      prefetchable: bar.prefetchable ?? false,
    });
    this.barList.push(bar);
    this.barList.sort((a, b) => a.index - b.index);
  }

  protected setRom(rom: PciRom): void {
    this.checkNotAttached();
    this.config.setRom(rom.size);
    this.romDecl = rom;
  }

  protected addMsi(opts: MsiOptions, sink: MsiSink): MsiCapability {
    this.checkNotAttached();
    if (this.msi) throw new Error(`${this.name}: MSI capability added twice`);
    this.msi = new MsiCapability(this.config, opts, sink);
    return this.msi;
  }

  protected addMsix(opts: MsixOptions, sink: MsiSink): MsixCapability {
    this.checkNotAttached();
    if (this.msix) throw new Error(`${this.name}: MSI-X capability added twice`);
    this.msix = new MsixCapability(this.config, opts, sink);
    return this.msix;
  }

  // ---- host bus side -------------------------------------------------------

  /** Called by the host bus when it plugs the function in. */
  attach(port: PciBusPort): void {
    if (this.port) throw new Error(`${this.name}: already attached to a PCI bus`);
    const m = this.msix;
    if (m) {
      for (const [what, bar, off, len] of [
        ['table', m.tableBar, m.tableOffset, m.tableSize],
        ['PBA', m.pbaBar, m.pbaOffset, m.pbaSize],
      ] as const) {
        const b = this.config.bar(bar);
        if (!b || b.kind === 'io' || off + len > b.size) {
          throw new Error(`${this.name}: MSI-X ${what} does not fit in a memory BAR${bar}`);
        }
      }
    }
    this.port = port;
  }

  detach(): void {
    this.port = undefined;
  }

  /** A configuration read from the guest (a range inside one DWORD). */
  readConfig(offset: number, size: AccessSize): number {
    return this.onConfigRead(offset, size, this.config.read(offset, size));
  }

  /** A configuration write from the guest (a range inside one DWORD). */
  writeConfig(offset: number, size: AccessSize, value: number): void {
    if (offset < 0 || offset >= this.config.size) return;
    this.config.write(offset, size, value);
    this.onConfigWrite(offset, size, value);
    const end = offset + size;
    if (decodeRanges.some(([s, e]) => offset < e && s < end)) this.port?.remap();
    this.updateIntx();
  }

  // ---- hooks for subclasses ------------------------------------------------

  /** Lets a device compute a register on read; `value` is what config space holds. */
  protected onConfigRead(_offset: number, _size: AccessSize, value: number): number {
    return value;
  }

  /** Runs after a guest config write was applied (masks, capabilities). */
  protected onConfigWrite(_offset: number, _size: AccessSize, _value: number): void {}

  /** Device-specific power-on state; runs after the config registers were reset. */
  protected resetDevice(): void {}

  /** Device-specific saved state (plain JSON); undefined when none. */
  protected saveDeviceState(): unknown {
    return undefined;
  }

  protected loadDeviceState(_state: unknown): void {}

  /**
   * Sets the function's interrupt condition. Status bit 3 follows it; the
   * pin is driven unless INTx Disable (Command bit 10, §6.2.2) is set or
   * MSI/MSI-X is enabled (§6.8.1.3, §6.8.2.3: the function may then not use
   * INTx#).
   */
  protected setIntx(level: boolean): void {
    this.intxLevel = level;
    this.config.setStatusBits(PCI_STATUS_INTERRUPT, level);
    this.updateIntx();
  }

  // ---- Device --------------------------------------------------------------

  /** Subclasses put their own power-on state in `resetDevice`. */
  reset(): void {
    this.config.resetRegisters();
    this.msi?.reset();
    this.msix?.reset();
    this.intxLevel = false;
    this.config.setStatusBits(PCI_STATUS_INTERRUPT, false);
    this.resetDevice();
    this.port?.remap();
    this.updateIntx();
  }

  saveState(): DeviceState {
    const state: DeviceState = { version: 1, config: this.config.save() };
    if (this.msix) state.msix = this.msix.saveState();
    const device = this.saveDeviceState();
    if (device !== undefined) state.device = device;
    return state;
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    if (this.msix && state.msix === undefined)
      throw new DeviceStateError(`${this.name}: saved state lacks MSI-X`);
    this.config.load(state.config, this.name);
    if (this.msix) this.msix.loadState(state.msix, this.name);
    this.loadDeviceState(state.device);
    this.intxLevel = (this.config.status & PCI_STATUS_INTERRUPT) !== 0;
    this.port?.remap();
    this.updateIntx();
  }

  private updateIntx(): void {
    const out =
      this.intxLevel &&
      this.config.interruptPin !== 0 &&
      !(this.config.command & PCI_COMMAND_INTX_DISABLE) &&
      !this.msi?.enabled &&
      !this.msix?.enabled;
    if (out === this.intxOut) return;
    this.intxOut = out;
    this.port?.setIntx(out);
  }

  private checkNotAttached(): void {
    if (this.port) throw new Error(`${this.name}: declare BARs and capabilities before attaching`);
  }
}
