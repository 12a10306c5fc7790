/**
 * PCI bus 0 behind the host bridge, reached through configuration
 * mechanism #1 (PCI Local Bus Spec 3.0 §3.2.2.3.2): a DWORD write to
 * CONFIG_ADDRESS (port 0xCF8) selects bus/device/function/register with
 * bit 31 enabling the translation, and CONFIG_DATA (0xCFC-0xCFF) reaches
 * that DWORD of the function's config space at any byte offset.
 *
 * Only DWORD accesses at 0xCF8 are CONFIG_ADDRESS; byte and word accesses
 * there pass through to ordinary I/O (§3.2.2.3.2), which on a PC is the
 * PIIX/ICH reset control register at 0xCF9 (82371AB §4.1.5): byte writes
 * to it go to `onResetControl`.
 *
 * The bus keeps what the guest programmed and what is mapped in step: when
 * Command, a BAR or the ROM BAR changes, the function's BARs are mapped on
 * the port-I/O or MMIO bus through a `BarMapper`, or unmapped. A mapping
 * that would overlap something is refused and logged, never thrown at the
 * guest; it is retried whenever something else is unmapped.
 *
 * INTx is level-triggered and shared (§2.2.6): each function's pin goes
 * through `intxRoute(slot, pin)` to a GSI (PIIX PIRQ routing supplies it
 * later), and a GSI is the OR of the functions driving it.
 */
import { PC_PORTS, portCount } from '../../platform/pc-map.js';
import type { AccessSize, Device, DeviceContext, DeviceState, IoHandler } from '../core/device.js';
import { DeviceStateError, expectVersion } from '../core/device.js';
import { Bus, BusOverlapError, hex } from '../core/bus.js';
import { PCI_COMMAND_IO, PCI_COMMAND_MEMORY, type IntxPin } from './config-space.js';
import type { PciDevice } from './device.js';

export const PCI_CONFIG_ADDRESS_PORT = PC_PORTS.pciHost.start;
export const PCI_CONFIG_DATA_PORT = PC_PORTS.pciHost.start + 4;
/** The host bus claims 0xCF8-0xCFF. */
export const PCI_HOST_PORT_COUNT = portCount(PC_PORTS.pciHost);
export const PCI_SLOTS = 32;
export const PCI_FUNCTIONS = 8;

/** CONFIG_ADDRESS: enable, bus, device, function, register (bits 1:0 and 30:24 reserved, read 0). */
const CONFIG_ADDRESS_ENABLE = 0x8000_0000;
const CONFIG_ADDRESS_MASK = 0x80ff_fffc;

export type BusKind = 'pio' | 'mmio';

/** Puts BAR ranges on the machine's buses; tests record the calls. */
export interface BarMapper {
  /** Maps `handler` at [base, base+size); false when refused (overlap, out of range). */
  map(kind: BusKind, base: number, size: number, handler: IoHandler, owner: string): boolean;
  unmap(kind: BusKind, base: number): void;
}

/** A BarMapper over the machine's port-I/O and MMIO `Bus`es. */
export class BusBarMapper implements BarMapper {
  constructor(
    private readonly pio: Bus,
    private readonly mmio: Bus,
  ) {}

  map(kind: BusKind, base: number, size: number, handler: IoHandler, owner: string): boolean {
    try {
      (kind === 'pio' ? this.pio : this.mmio).register(base, size, handler, owner);
      return true;
    } catch (e) {
      if (e instanceof BusOverlapError || e instanceof RangeError) return false;
      throw e;
    }
  }

  unmap(kind: BusKind, base: number): void {
    (kind === 'pio' ? this.pio : this.mmio).unregister(base);
  }
}

export interface PciHostBusOptions {
  mapper: BarMapper;
  /**
   * GSIs a slot's INTx pin (1 = INTA# ... 4 = INTD#) drives: none when not
   * routed, or several (a PC's PIRQ reaches an ISA IRQ through the PIIX and
   * an IOAPIC input directly).
   */
  intxRoute: (slot: number, pin: IntxPin) => number | readonly number[] | undefined;
  /** Byte writes to port 0xCF9 (reset control). */
  onResetControl?: (value: number) => void;
  /** Byte reads of port 0xCF9; 0xFF (nothing there) without it. */
  readResetControl?: () => number;
  /** MMIO BARs must end at or below this address (x86-64: 52 physical address bits). */
  mmioLimit?: number;
  name?: string;
}

interface Mapping {
  kind: BusKind;
  base: number;
  size: number;
}

/** BAR slots of a function: 0..5 the BARs, 6 the expansion ROM. */
const ROM_SLOT = 6;

interface PciFunction {
  readonly device: PciDevice;
  readonly slot: number;
  readonly fn: number;
  readonly mapped: Array<Mapping | undefined>;
  /** The last mapping refused per BAR slot, so a refusal is logged once. */
  readonly refused: Array<Mapping | undefined>;
  intx: boolean;
  /** The GSIs this function's asserted pin drives (routed when asserted). */
  gsis: readonly number[];
}

const allOnes: Record<AccessSize, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff };
const sameMapping = (a: Mapping | undefined, b: Mapping | undefined): boolean =>
  a === b ||
  (a !== undefined && b !== undefined && a.kind === b.kind && a.base === b.base && a.size === b.size);

export class PciHostBus implements Device, IoHandler {
  readonly name: string;
  private address = 0;
  private readonly functions: Array<PciFunction | undefined> = new Array(PCI_SLOTS * PCI_FUNCTIONS).fill(
    undefined,
  );
  /** Levels this bus last drove per GSI (only lines it raised are listed). */
  private readonly driven = new Map<number, boolean>();
  private readonly mmioLimit: number;

  constructor(
    private readonly ctx: DeviceContext,
    private readonly opts: PciHostBusOptions,
  ) {
    this.name = opts.name ?? 'pci-host';
    this.mmioLimit = opts.mmioLimit ?? 2 ** 52;
  }

  // ---- topology ------------------------------------------------------------

  /** Plugs `device` in as `slot`.`fn`; function 0 gets the multi-function bit when others exist. */
  attach(device: PciDevice, slot: number, fn = 0): void {
    checkDevfn(slot, fn);
    const i = slot * PCI_FUNCTIONS + fn;
    if (this.functions[i])
      throw new Error(`PCI ${devfnName(slot, fn)} is taken by ${this.functions[i].device.name}`);
    if (this.functions.some((f) => f?.device === device))
      throw new Error(`${device.name} is already on the PCI bus`);
    const f: PciFunction = {
      device,
      slot,
      fn,
      mapped: new Array(ROM_SLOT + 1).fill(undefined),
      refused: new Array(ROM_SLOT + 1).fill(undefined),
      intx: false,
      gsis: [],
    };
    device.attach({ setIntx: (level) => this.setIntx(f, level), remap: () => this.remap(f) });
    this.functions[i] = f;
    this.updateMultiFunction(slot);
    this.remap(f);
    if (device.intxAsserted) this.setIntx(f, true);
  }

  /** Unplugs a function: its BARs are unmapped and its INTx released. */
  detach(slot: number, fn = 0): PciDevice | undefined {
    checkDevfn(slot, fn);
    const i = slot * PCI_FUNCTIONS + fn;
    const f = this.functions[i];
    if (!f) return undefined;
    this.setIntx(f, false);
    let freed = false;
    f.mapped.forEach((m, bar) => {
      if (!m) return;
      this.opts.mapper.unmap(m.kind, m.base);
      f.mapped[bar] = undefined;
      freed = true;
    });
    f.device.detach();
    this.functions[i] = undefined;
    this.updateMultiFunction(slot);
    if (freed) this.retryRefused();
    return f.device;
  }

  device(slot: number, fn = 0): PciDevice | undefined {
    if (!isDevfn(slot, fn)) return undefined;
    return this.functions[slot * PCI_FUNCTIONS + fn]?.device;
  }

  /** What is mapped for a function, by BAR slot (0..5, 6 = ROM). */
  mappings(slot: number, fn = 0): ReadonlyArray<Readonly<Mapping> | undefined> {
    if (!isDevfn(slot, fn)) return [];
    return this.functions[slot * PCI_FUNCTIONS + fn]?.mapped ?? [];
  }

  // ---- configuration access ------------------------------------------------

  /** Reads bus 0's config space (ECAM later reuses this); empty functions read all-ones. */
  readConfig(slot: number, fn: number, offset: number, size: AccessSize): number {
    const d = this.device(slot, fn);
    if (!d) return allOnes[size];
    return d.readConfig(offset, size);
  }

  writeConfig(slot: number, fn: number, offset: number, size: AccessSize, value: number): void {
    this.device(slot, fn)?.writeConfig(offset, size, value);
  }

  // ---- ports 0xCF8-0xCFF ---------------------------------------------------

  read(offset: number, size: AccessSize): number {
    if (offset === 0 && size === 4) return this.address;
    if (offset === 1 && size === 1) return (this.opts.readResetControl?.() ?? 0xff) & 0xff;
    if (offset >= 4) return this.readData(offset - 4, size);
    this.ctx.guestErrors.warn(
      'pci-cf8-access',
      () => `PCI: ${size}-byte read of port ${hex(PCI_CONFIG_ADDRESS_PORT + offset)} ignored`,
    );
    return allOnes[size];
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (offset === 0 && size === 4) {
      this.address = (value & CONFIG_ADDRESS_MASK) >>> 0;
    } else if (offset === 1 && size === 1) {
      this.opts.onResetControl?.(value & 0xff);
    } else if (offset >= 4) {
      this.writeData(offset - 4, size, value);
    } else {
      this.ctx.guestErrors.warn(
        'pci-cf8-access',
        () => `PCI: ${size}-byte write of port ${hex(PCI_CONFIG_ADDRESS_PORT + offset)} ignored`,
      );
    }
  }

  /**
   * Resolves CONFIG_ADDRESS: the function and the register DWORD, or
   * undefined when translation is off or the bus is not 0 (no bridges).
   */
  private target(): { f: PciFunction | undefined; reg: number } | undefined {
    const a = this.address;
    if (!(a & CONFIG_ADDRESS_ENABLE) || (a >>> 16) & 0xff) return undefined;
    const slot = (a >>> 11) & 0x1f;
    const fn = (a >>> 8) & 0x7;
    return { f: this.functions[slot * PCI_FUNCTIONS + fn], reg: a & 0xfc };
  }

  /** `byte` is the offset inside CONFIG_DATA (0..3); bytes past 0xCFF are not ours. */
  private readData(byte: number, size: AccessSize): number {
    const t = this.target();
    if (!t?.f) return allOnes[size];
    const n = Math.min(size, 4 - byte);
    if (n === size) return t.f.device.readConfig(t.reg + byte, size);
    let v = 0;
    for (let i = size - 1; i >= 0; i--)
      v = v * 256 + (i < n ? t.f.device.readConfig(t.reg + byte + i, 1) : 0xff);
    return v;
  }

  private writeData(byte: number, size: AccessSize, value: number): void {
    const t = this.target();
    if (!t?.f) return;
    const n = Math.min(size, 4 - byte);
    if (n === size) {
      t.f.device.writeConfig(t.reg + byte, size, value);
      return;
    }
    for (let i = 0; i < n; i++) t.f.device.writeConfig(t.reg + byte + i, 1, (value >>> (8 * i)) & 0xff);
  }

  // ---- BAR mapping ---------------------------------------------------------

  /** Where a BAR slot should be mapped now, or undefined when it must not decode. */
  private wanted(f: PciFunction, bar: number): Mapping | undefined {
    const c = f.device.config;
    const cmd = c.command;
    if (bar === ROM_SLOT) {
      // §6.2.5.2: the ROM decodes when both its enable bit and Memory Space are set.
      const size = c.romSize;
      if (!size || !(cmd & PCI_COMMAND_MEMORY) || !c.romEnabled()) return undefined;
      return this.checkMmio(c.romAddress(), size, true);
    }
    const layout = c.bar(bar);
    if (!layout) return undefined;
    const base = c.barAddress(bar);
    if (layout.kind === 'io') {
      if (!(cmd & PCI_COMMAND_IO)) return undefined;
      // x86 has 64 KiB of ports; an address of 0 means "not assigned" (as QEMU).
      if (base === 0 || base + layout.size > 0x10000) return undefined;
      return { kind: 'pio', base, size: layout.size };
    }
    if (!(cmd & PCI_COMMAND_MEMORY)) return undefined;
    return this.checkMmio(base, layout.size, layout.kind === 'mem32');
  }

  /**
   * A memory range decodes if it is not at 0 (not assigned) and fits: a
   * 32-bit range that reaches 4 GiB is what sizing (all-ones) leaves
   * behind, not an assignment (QEMU's pci_bar_address does the same); a
   * 64-bit one must end at or below `mmioLimit`.
   */
  private checkMmio(base: number, size: number, is32: boolean): Mapping | undefined {
    if (base === 0 || base + size > this.mmioLimit || (is32 && base + size >= 2 ** 32)) return undefined;
    return { kind: 'mmio', base, size };
  }

  /** Brings one function's mappings in line with its registers; true if something was unmapped. */
  private sync(f: PciFunction, logRefusals: boolean): boolean {
    let freed = false;
    for (let bar = 0; bar <= ROM_SLOT; bar++) {
      const want = this.wanted(f, bar);
      const cur = f.mapped[bar];
      if (sameMapping(want, cur)) continue;
      if (cur) {
        this.opts.mapper.unmap(cur.kind, cur.base);
        f.mapped[bar] = undefined;
        freed = true;
      }
      if (!want) {
        f.refused[bar] = undefined;
        continue;
      }
      const handler =
        bar === ROM_SLOT ? f.device.rom?.handler : f.device.bars.find((b) => b.index === bar)?.handler;
      if (!handler) continue;
      const owner = `${f.device.name} ${bar === ROM_SLOT ? 'ROM' : `BAR${bar}`}`;
      let ok: boolean;
      try {
        ok = this.opts.mapper.map(want.kind, want.base, want.size, handler, owner);
      } catch (e) {
        ok = false;
        this.ctx.guestErrors.warn(
          'pci-bar-map-error',
          () => `PCI: mapping ${owner} failed: ${(e as Error).message}`,
        );
      }
      if (ok) {
        f.mapped[bar] = want;
        f.refused[bar] = undefined;
      } else if (logRefusals && !sameMapping(want, f.refused[bar])) {
        f.refused[bar] = want;
        this.ctx.guestErrors.warn(
          'pci-bar-refused',
          () =>
            `PCI: ${owner} at ${want.kind} ${hex(want.base)}+${hex(want.size)} overlaps another range; left unmapped`,
        );
      }
    }
    return freed;
  }

  private remap(f: PciFunction): void {
    if (this.sync(f, true)) this.retryRefused();
  }

  /** After an unmap: mappings refused earlier get another try (silently). */
  private retryRefused(): void {
    for (const g of this.functions) if (g?.refused.some((r) => r)) this.sync(g, false);
  }

  // ---- INTx ----------------------------------------------------------------

  private setIntx(f: PciFunction, level: boolean): void {
    if (f.intx === level) return;
    const old = f.gsis;
    f.intx = level;
    f.gsis = level ? this.route(f) : [];
    for (const gsi of new Set([...old, ...f.gsis])) this.updateLine(gsi);
  }

  /**
   * Re-reads `intxRoute` for every asserted pin: for the chipset to call
   * when the guest reprograms interrupt routing (PIIX PIRQ registers).
   */
  refreshIntxRouting(): void {
    const touched = new Set<number>();
    for (const f of this.functions) {
      if (!f?.intx) continue;
      for (const gsi of f.gsis) touched.add(gsi);
      f.gsis = this.route(f);
      for (const gsi of f.gsis) touched.add(gsi);
    }
    for (const gsi of touched) this.updateLine(gsi);
  }

  private route(f: PciFunction): readonly number[] {
    const pin = f.device.config.interruptPin;
    if (pin < 1 || pin > 4) return [];
    const r = this.opts.intxRoute(f.slot, pin as IntxPin);
    return r === undefined ? [] : typeof r === 'number' ? [r] : [...new Set(r)];
  }

  /** Drives `gsi` with the OR of the pins on it, calling setIrq only on change. */
  private updateLine(gsi: number): void {
    const level = this.functions.some((f) => f?.intx && f.gsis.includes(gsi));
    if ((this.driven.get(gsi) ?? false) === level) return;
    this.driven.set(gsi, level);
    this.ctx.irq.setIrq(gsi, level);
  }

  // ---- Device --------------------------------------------------------------

  reset(): void {
    this.address = 0;
  }

  saveState(): DeviceState {
    return { version: 1, address: this.address };
  }

  /** Mappings and INTx levels follow from the functions' own state (they remap on load). */
  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const a = state.address;
    if (typeof a !== 'number' || !Number.isInteger(a) || a < 0 || a > 0xffffffff) {
      throw new DeviceStateError(`${this.name}: bad CONFIG_ADDRESS in saved state`);
    }
    this.address = (a & CONFIG_ADDRESS_MASK) >>> 0;
  }

  private updateMultiFunction(slot: number): void {
    const f0 = this.functions[slot * PCI_FUNCTIONS];
    if (!f0) return;
    let others = false;
    for (let fn = 1; fn < PCI_FUNCTIONS; fn++) if (this.functions[slot * PCI_FUNCTIONS + fn]) others = true;
    if (others) f0.device.config.setMultiFunction(true);
  }
}

function isDevfn(slot: number, fn: number): boolean {
  return (
    Number.isInteger(slot) &&
    Number.isInteger(fn) &&
    slot >= 0 &&
    slot < PCI_SLOTS &&
    fn >= 0 &&
    fn < PCI_FUNCTIONS
  );
}

function checkDevfn(slot: number, fn: number): void {
  if (!isDevfn(slot, fn)) throw new RangeError(`bad PCI slot ${slot} function ${fn}`);
}

function devfnName(slot: number, fn: number): string {
  return `00:${slot.toString(16).padStart(2, '0')}.${fn}`;
}
