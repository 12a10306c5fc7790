import type { AccessSize, DeviceContext, IoHandler } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import type { PciHeader } from '../../../../src/vmm/pci/config-space.js';
import { PciDevice, type PciBar, type PciRom } from '../../../../src/vmm/pci/device.js';
import type { BarMapper, BusKind } from '../../../../src/vmm/pci/host-bus.js';
import type { MsiOptions, MsiSink } from '../../../../src/vmm/pci/msi.js';
import type { MsixOptions } from '../../../../src/vmm/pci/msix.js';

export function fakeCtx() {
  const log = new MemoryLogger();
  const irqs: Array<[number, boolean]> = [];
  const ctx: DeviceContext = {
    irq: { setIrq: (gsi, level) => irqs.push([gsi, level]) },
    log,
    guestErrors: new RateLimitedLog(log, 1000),
    requestReset: () => {},
    requestPowerOff: () => {},
  };
  return { ctx, irqs, log };
}

export class RecordingSink implements MsiSink {
  readonly messages: Array<[number, number, number]> = [];
  signalMsi(addressLo: number, addressHi: number, data: number): void {
    this.messages.push([addressLo, addressHi, data]);
  }
}

/** A handler that remembers its accesses and reads back a tag plus the offset. */
export function regs(tag: number): IoHandler & { log: string[] } {
  const log: string[] = [];
  return {
    log,
    read: (off: number, size: AccessSize) => {
      log.push(`r${off}/${size}`);
      return (tag + off) & 0xffff;
    },
    write: (off: number, size: AccessSize, v: number) => void log.push(`w${off}/${size}=${v.toString(16)}`),
  };
}

export interface TestDeviceSpec {
  header?: Partial<PciHeader>;
  bars?: PciBar[];
  rom?: PciRom;
  msi?: MsiOptions;
  msix?: MsixOptions;
  sink?: MsiSink;
}

/** A PCI function for tests, with the protected parts opened up. */
export class TestDevice extends PciDevice {
  readonly writes: string[] = [];
  counter = 0;
  resets = 0;

  constructor(name: string, spec: TestDeviceSpec = {}) {
    super(name, { vendorId: 0x1234, deviceId: 0x5678, classCode: 0x020000, interruptPin: 1, ...spec.header });
    const sink = spec.sink ?? new RecordingSink();
    if (spec.msi) this.addMsi(spec.msi, sink);
    if (spec.msix) this.addMsix(spec.msix, sink);
    for (const b of spec.bars ?? []) this.addBar(b);
    if (spec.rom) this.setRom(spec.rom);
  }

  get msiCap() {
    return this.msi;
  }
  get msixCap() {
    return this.msix;
  }
  /** Declaring a capability after attach must fail. */
  lateMsi(): void {
    this.addMsi({}, new RecordingSink());
  }
  raise(level: boolean): void {
    this.setIntx(level);
  }
  protected override onConfigWrite(offset: number, size: AccessSize, value: number): void {
    this.writes.push(`${offset}/${size}=${value.toString(16)}`);
  }
  protected override resetDevice(): void {
    this.resets++;
    this.counter = 0;
  }
  protected override saveDeviceState(): unknown {
    return { counter: this.counter };
  }
  protected override loadDeviceState(state: unknown): void {
    this.counter = (state as { counter: number }).counter;
  }
}

/** A BarMapper that records calls and refuses overlaps, like the real buses. */
export class FakeMapper implements BarMapper {
  readonly calls: string[] = [];
  readonly ranges = new Map<string, { base: number; size: number; handler: IoHandler; owner: string }>();

  map(kind: BusKind, base: number, size: number, handler: IoHandler, owner: string): boolean {
    for (const [k, r] of this.ranges) {
      if (k.startsWith(kind + ':') && base < r.base + r.size && r.base < base + size) {
        this.calls.push(`refuse ${kind} ${base.toString(16)}+${size.toString(16)} ${owner}`);
        return false;
      }
    }
    this.ranges.set(`${kind}:${base}`, { base, size, handler, owner });
    this.calls.push(`map ${kind} ${base.toString(16)}+${size.toString(16)} ${owner}`);
    return true;
  }

  unmap(kind: BusKind, base: number): void {
    this.ranges.delete(`${kind}:${base}`);
    this.calls.push(`unmap ${kind} ${base.toString(16)}`);
  }

  take(): string[] {
    return this.calls.splice(0);
  }
}
