import { describe, expect, it } from 'vitest';
import { DeviceStateError, type DeviceState } from '../../../../src/vmm/core/device.js';
import type { GuestMemory } from '../../../../src/vmm/core/memory.js';
import {
  PCI_BAR0,
  PCI_CAP_ID_VENDOR,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_STATUS,
  PCI_STATUS_INTERRUPT,
} from '../../../../src/vmm/pci/config-space.js';
import {
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_STATUS_ACKNOWLEDGE,
  VIRTIO_STATUS_DRIVER,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FEATURES_OK,
  VIRTIO_STATUS_NEEDS_RESET,
  bit,
  type VirtioDevice,
  type VirtioTransport,
} from '../../../../src/vmm/virtio/device.js';
import { CommonCfg } from '../../../../src/vmm/virtio/pci-common-config.js';
import {
  DEVICE_CFG_OFFSET,
  ISR_CFG_OFFSET,
  NOTIFY_CFG_OFFSET,
  VIRTIO_ISR_CONFIG,
  VIRTIO_ISR_QUEUE,
  VirtioPciTransport,
  type IoEventHost,
} from '../../../../src/vmm/virtio/pci-transport.js';
import { VIRTIO_MSI_NO_VECTOR, type Chain, type SplitQueue } from '../../../../src/vmm/virtio/virtqueue.js';
import { RecordingSink, fakeCtx } from '../pci/helpers.js';
import { BAR4_BASE, Driver, guestRam, settle } from './helpers.js';

/**
 * A device for transport tests: each chain's readable bytes are copied
 * into its writable part; with `hold` set, chains wait for `finish`.
 */
class EchoDevice implements VirtioDevice {
  readonly name = 'echo';
  readonly deviceType = 42;
  readonly queueSize = 64;
  readonly features = bit(3);
  hold = false;
  readonly held: Array<{ q: SplitQueue; c: Chain; epoch: number }> = [];
  resets = 0;
  readonly cfg = Uint8Array.of(0x11, 0x22, 0x33, 0x44, 0x55);
  private queues: readonly SplitQueue[] = [];
  private t!: VirtioTransport;

  constructor(readonly numQueues = 2) {}

  attach(queues: readonly SplitQueue[], transport: VirtioTransport): void {
    this.queues = queues;
    this.t = transport;
  }

  queueNotify(q: SplitQueue): void {
    for (let c = q.pop(); c; c = q.pop()) {
      if (this.hold) this.held.push({ q, c, epoch: this.t.epoch });
      else this.echo(q, c, this.t.epoch);
    }
  }

  finish(i = 0): void {
    const h = this.held.splice(i, 1)[0]!;
    this.echo(h.q, h.c, h.epoch);
  }

  private echo(q: SplitQueue, c: Chain, epoch: number): void {
    const n = Math.min(c.readLength, c.writeLength);
    if (epoch === this.t.epoch) c.write(0, c.read(0, n));
    this.t.complete(q, c.head, n, epoch);
  }

  readConfig(): Uint8Array {
    return this.cfg;
  }

  reset(): void {
    this.resets++;
  }

  stateLoaded(): void {
    for (const q of this.queues)
      if (q.active) for (const c of q.inflightChains()) this.echo(q, c, this.t.epoch);
  }

  validateFeatures(f: bigint): string | undefined {
    return f & bit(3) ? undefined : 'feature 3 is required by this device';
  }

  bumpConfig(): void {
    this.t.configChanged();
  }

  breakIt(): void {
    this.t.needsReset('test');
  }
}

class FakeIoEvents implements IoEventHost {
  readonly active = new Map<number, () => void>();
  readonly log: string[] = [];
  refuse = false;
  watchMmioWrite(addr: number, len: number, onNotify: () => void): (() => void) | undefined {
    if (this.refuse) return undefined;
    this.log.push(`watch ${addr.toString(16)}/${len}`);
    this.active.set(addr, onNotify);
    return () => {
      this.log.push(`stop ${addr.toString(16)}`);
      this.active.delete(addr);
    };
  }
  /** The guest writes the notify address: KVM signals the eventfd. */
  hit(addr: number): void {
    this.active.get(addr)?.();
  }
}

function make(opts: { queues?: number; mem?: GuestMemory; ioEvents?: IoEventHost } = {}) {
  const { ctx, log, irqs } = fakeCtx();
  const mem = opts.mem ?? guestRam();
  const sink = new RecordingSink();
  const echo = new EchoDevice(opts.queues);
  const dev = new VirtioPciTransport(echo, {
    ctx,
    mem,
    msi: sink,
    ioEvents: opts.ioEvents,
    defer: (fn) => fn(),
  });
  const intx: boolean[] = [];
  dev.attach({ setIntx: (l) => intx.push(l), remap: () => {} });
  const drv = new Driver(dev, mem);
  return { dev, echo, drv, mem, sink, log, irqs, intx };
}

const ALL = () => bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX) | bit(3);

describe('virtio-pci transport', () => {
  it('is a modern virtio PCI function with the virtio capabilities (§4.1.2, §4.1.4)', () => {
    const { dev } = make();
    const c = dev.config;
    expect([c.vendorId, c.deviceId, c.get8(8), c.get16(0x2c), c.get16(0x2e)]).toEqual([
      0x1af4,
      0x1040 + 42,
      1,
      0x1af4,
      0x1100,
    ]);
    const vendorCaps = c.capabilities().filter((x) => x.id === PCI_CAP_ID_VENDOR);
    const caps = vendorCaps.map((x) => ({
      type: c.get8(x.offset + 3),
      len: c.get8(x.offset + 2),
      bar: c.get8(x.offset + 4),
      offset: c.get32(x.offset + 8),
      length: c.get32(x.offset + 12),
    }));
    expect(caps).toEqual([
      { type: 1, len: 16, bar: 4, offset: 0, length: 0x1000 },
      { type: 3, len: 16, bar: 4, offset: 0x1000, length: 0x1000 },
      { type: 4, len: 16, bar: 4, offset: 0x2000, length: 0x1000 },
      { type: 2, len: 20, bar: 4, offset: 0x3000, length: 0x1000 },
      { type: 5, len: 20, bar: 0, offset: 0, length: 0 },
    ]);
    expect(c.get32(vendorCaps[3]!.offset + 16)).toBe(4); // notify_off_multiplier
    expect(c.capabilities()[0]!.id).toBe(0x11); // MSI-X
    expect(c.get16(c.capabilities()[0]!.offset + 2) & 0x7ff).toBe(2); // 3 vectors: 2 queues + config
    expect(c.bar(4)).toEqual({ kind: 'mem64', size: 0x4000, prefetchable: true });
    expect(c.bar(1)?.kind).toBe('mem32');
    expect(c.interruptPin).toBe(1);
  });

  it('negotiates features: VERSION_1 required, offered bits only, device checks, none after FEATURES_OK', () => {
    const { drv, dev, log } = make();
    const offered = drv.deviceFeatures();
    expect(offered).toBe(ALL());
    expect(offered & (bit(VIRTIO_F_ACCESS_PLATFORM) | bit(VIRTIO_F_RING_PACKED))).toBe(0n);
    drv.write(CommonCfg.deviceFeatureSelect, 4, 2);
    expect(drv.read(CommonCfg.deviceFeature, 4)).toBe(0);

    expect(drv.negotiate(bit(3)) & VIRTIO_STATUS_FEATURES_OK).toBe(0); // no VERSION_1
    expect(log.lines.join('\n')).toMatch(/VERSION_1 is required/);
    expect(drv.negotiate(ALL() | bit(40)) & VIRTIO_STATUS_FEATURES_OK).toBe(0);
    expect(log.lines.join('\n')).toMatch(/bits 0x10000000000 were not offered/);
    expect(drv.negotiate(bit(VIRTIO_F_VERSION_1)) & VIRTIO_STATUS_FEATURES_OK).toBe(0);
    expect(log.lines.join('\n')).toMatch(/feature 3 is required/);

    const st = drv.negotiate(bit(VIRTIO_F_VERSION_1) | bit(3));
    expect(st).toBe(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    expect(dev.negotiatedFeatures).toBe(bit(VIRTIO_F_VERSION_1) | bit(3));
    drv.writeFeatures(ALL());
    expect(dev.negotiatedFeatures).toBe(bit(VIRTIO_F_VERSION_1) | bit(3));
    drv.write(CommonCfg.driverFeatureSelect, 4, 1);
    expect(drv.read(CommonCfg.driverFeature, 4)).toBe(1);
  });

  it('DRIVER_OK needs FEATURES_OK; status 0 resets features, queues and vectors', () => {
    const { drv, dev, echo } = make();
    drv.enablePci();
    drv.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK;
    expect(drv.status & VIRTIO_STATUS_DRIVER_OK).toBe(0);
    drv.bringUp({ features: ALL() });
    drv.write(CommonCfg.configMsixVector, 2, 2);
    expect(drv.status).toBe(15);
    const resets = echo.resets;
    drv.status = 0;
    expect(echo.resets).toBe(resets + 1);
    expect(drv.status).toBe(0);
    expect(dev.negotiatedFeatures).toBe(0n);
    expect(drv.read(CommonCfg.configMsixVector, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    drv.write(CommonCfg.queueSelect, 2, 0);
    expect([
      drv.read(CommonCfg.queueEnable, 2),
      drv.read(CommonCfg.queueSize, 2),
      drv.read(CommonCfg.queueDesc, 4),
    ]).toEqual([0, 64, 0]);
  });

  it('sets up queues through common configuration (§4.1.4.3)', () => {
    const { drv, dev, log } = make();
    drv.enablePci();
    drv.negotiate();
    expect(drv.read(CommonCfg.numQueues, 2)).toBe(2);
    drv.write(CommonCfg.queueSelect, 2, 1);
    expect([drv.read(CommonCfg.queueSize, 2), drv.read(CommonCfg.queueNotifyOff, 2)]).toEqual([64, 1]);
    drv.write(CommonCfg.queueSize, 2, 48); // not a power of two
    expect(drv.read(CommonCfg.queueSize, 2)).toBe(64);
    expect(log.lines.join('\n')).toMatch(/size 48 is not a power of two/);
    drv.write(CommonCfg.queueMsixVector, 2, 7); // only 3 vectors
    expect(drv.read(CommonCfg.queueMsixVector, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    drv.write(CommonCfg.queueMsixVector, 2, 2);
    expect(drv.read(CommonCfg.queueMsixVector, 2)).toBe(2);
    // 64-bit addresses as two halves.
    drv.write(CommonCfg.queueDesc, 4, 0x1234_5000);
    drv.write(CommonCfg.queueDesc + 4, 4, 0x10);
    expect([drv.read(CommonCfg.queueDesc, 4), drv.read(CommonCfg.queueDesc + 4, 4)]).toEqual([
      0x1234_5000, 0x10,
    ]);
    expect(dev.queues[1]!.desc).toBe(0x10_1234_5000);
    // A queue that does not exist reads size 0 and ignores writes.
    drv.write(CommonCfg.queueSelect, 2, 5);
    expect(drv.read(CommonCfg.queueSize, 2)).toBe(0);
    drv.write(CommonCfg.queueEnable, 2, 1);
    // Byte access to a 16-bit register merges into it.
    drv.write(CommonCfg.queueSelect, 1, 0);
    expect(drv.read(CommonCfg.queueSelect, 2)).toBe(0);
    drv.setupQueue(0, 16);
    expect(dev.queues[0]!.active).toBe(true);
    // Writes to an enabled queue's fields are refused.
    drv.write(CommonCfg.queueSize, 2, 8);
    expect(drv.read(CommonCfg.queueSize, 2)).toBe(16);
    // Read-only registers ignore writes.
    drv.write(CommonCfg.numQueues, 2, 9);
    expect(drv.read(CommonCfg.numQueues, 2)).toBe(2);
  });

  it('processes chains only after DRIVER_OK and with bus mastering on', async () => {
    const { drv, dev } = make();
    drv.enablePci();
    drv.negotiate();
    drv.setupQueue(0);
    const src = drv.put([1, 2, 3, 4]);
    const dst = drv.alloc(4);
    const head = drv.addChain(0, [
      { addr: src, len: 4 },
      { addr: dst, len: 4, write: true },
    ]);
    drv.notify(0);
    await settle();
    expect(drv.takeUsed(0)).toEqual([]);
    dev.writeConfig(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    drv.driverOk(); // buffers made available before DRIVER_OK are seen now... but DMA is off
    await settle();
    expect(drv.takeUsed(0)).toEqual([]);
    dev.writeConfig(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    await settle();
    expect(drv.takeUsed(0)).toEqual([{ id: head, len: 4 }]);
    expect(Array.from(drv.mem.read(dst, 4))).toEqual([1, 2, 3, 4]);
  });

  it('interrupts through INTx and the ISR when MSI-X is off; reading the ISR clears it', async () => {
    const { drv, dev, echo, intx, sink } = make();
    drv.bringUp();
    drv.addChain(0, [{ addr: drv.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    await settle();
    expect(intx).toEqual([true]);
    expect(dev.readConfig(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBeTruthy();
    expect(drv.read(ISR_CFG_OFFSET, 1)).toBe(VIRTIO_ISR_QUEUE);
    expect(intx).toEqual([true, false]);
    expect(drv.read(ISR_CFG_OFFSET, 1)).toBe(0);
    echo.bumpConfig();
    expect(drv.read(CommonCfg.configGeneration, 1)).toBe(1);
    expect(drv.read(ISR_CFG_OFFSET, 1)).toBe(VIRTIO_ISR_CONFIG);
    expect(sink.messages).toEqual([]);
  });

  it('interrupts through MSI-X: per-queue vectors, config vector, NO_VECTOR is silent', async () => {
    const { drv, echo, intx, sink } = make();
    drv.enablePci();
    drv.enableMsix(3);
    drv.negotiate();
    drv.write(CommonCfg.configMsixVector, 2, 2);
    drv.setupQueue(0, 16, 0);
    drv.setupQueue(1, 16, VIRTIO_MSI_NO_VECTOR);
    drv.driverOk();
    drv.addChain(0, [{ addr: drv.alloc(4), len: 4, write: true }]);
    drv.addChain(1, [{ addr: drv.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    drv.notify(1);
    await settle();
    expect(drv.takeUsed(1)).toHaveLength(1);
    expect(sink.messages).toEqual([[0xfee00000, 0, 0x40]]);
    echo.bumpConfig();
    expect(sink.messages[1]).toEqual([0xfee00020, 0, 0x42]);
    expect(intx).toEqual([]);
  });

  it('batches interrupts: one per queue per turn, suppressed by EVENT_IDX used_event', async () => {
    const { drv, echo, intx } = make();
    drv.bringUp();
    echo.hold = true;
    for (let i = 0; i < 3; i++) drv.addChain(0, [{ addr: drv.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    await settle();
    expect(drv.availEvent(0)).toBe(3);
    drv.setUsedEvent(0, 0xffff); // not before the used index wraps
    echo.finish();
    echo.finish();
    await settle();
    expect(intx).toEqual([true]); // the first decision always interrupts
    drv.read(ISR_CFG_OFFSET, 1);
    echo.finish();
    await settle();
    expect(intx).toEqual([true, false]);
    expect(drv.takeUsed(0)).toHaveLength(3);
  });

  it('a broken ring sets DEVICE_NEEDS_RESET with a config interrupt and stops the queues', async () => {
    const { drv, echo, log } = make();
    drv.bringUp();
    drv.setAvailIdx(0, 1000);
    drv.notify(0);
    await settle();
    expect(drv.status & VIRTIO_STATUS_NEEDS_RESET).toBeTruthy();
    expect(drv.read(ISR_CFG_OFFSET, 1)).toBe(VIRTIO_ISR_CONFIG);
    expect(log.lines.join('\n')).toMatch(/available index moved .*device needs a reset/);
    // The driver cannot clear the bit; a reset does.
    drv.status = 15;
    expect(drv.status & VIRTIO_STATUS_NEEDS_RESET).toBeTruthy();
    drv.bringUp();
    expect(drv.status).toBe(15);
    echo.breakIt();
    expect(drv.status & VIRTIO_STATUS_NEEDS_RESET).toBeTruthy();
  });

  it('a queue whose rings are not in RAM needs a reset instead of throwing', () => {
    const { drv } = make();
    drv.enablePci();
    drv.negotiate();
    drv.write(CommonCfg.queueSelect, 2, 0);
    drv.write(CommonCfg.queueDesc + 4, 4, 0x100);
    drv.write(CommonCfg.queueEnable, 2, 1);
    expect(drv.status & VIRTIO_STATUS_NEEDS_RESET).toBeTruthy();
  });

  it('reset mid-flight: completions of the old epoch touch neither memory nor the used ring', async () => {
    const { drv, echo, intx } = make();
    drv.bringUp();
    echo.hold = true;
    const dst = drv.alloc(4);
    drv.addChain(0, [
      { addr: drv.put([9, 9, 9, 9]), len: 4 },
      { addr: dst, len: 4, write: true },
    ]);
    drv.notify(0);
    await settle();
    expect(echo.held).toHaveLength(1);
    drv.status = 0;
    echo.finish();
    await settle();
    expect(Array.from(drv.mem.read(dst, 4))).toEqual([0, 0, 0, 0]);
    expect(drv.usedIdx(0)).toBe(0);
    expect(intx).toEqual([]);
  });

  it('serves device configuration and ignores writes to it', () => {
    const { drv, log } = make();
    expect(drv.read(DEVICE_CFG_OFFSET, 4)).toBe(0x44332211);
    expect(drv.read(DEVICE_CFG_OFFSET + 3, 4)).toBe(0x55 * 256 + 0x44);
    drv.write(DEVICE_CFG_OFFSET, 1, 0);
    expect(drv.read(DEVICE_CFG_OFFSET, 1)).toBe(0x11);
    expect(log.lines.join('\n')).toMatch(/read-only device configuration/);
  });

  it('reaches BAR4 through the VIRTIO_PCI_CAP_PCI_CFG window (§4.1.4.9)', () => {
    const { dev, drv } = make();
    const cap = dev.config
      .capabilities()
      .filter((c) => c.id === PCI_CAP_ID_VENDOR)
      .find((c) => dev.config.get8(c.offset + 3) === 5)!.offset;
    dev.writeConfig(cap + 4, 1, 4);
    dev.writeConfig(cap + 8, 4, CommonCfg.numQueues);
    dev.writeConfig(cap + 12, 4, 2);
    expect(dev.readConfig(cap + 16, 4)).toBe(2);
    dev.writeConfig(cap + 8, 4, CommonCfg.deviceStatus);
    dev.writeConfig(cap + 12, 4, 1);
    dev.writeConfig(cap + 16, 1, VIRTIO_STATUS_ACKNOWLEDGE);
    expect(drv.status).toBe(VIRTIO_STATUS_ACKNOWLEDGE);
    // A window into another BAR is not served (reads return the raw bytes).
    dev.writeConfig(cap + 4, 1, 2);
    expect(dev.readConfig(cap + 16, 4)).toBe(0);
  });

  describe('ioeventfds', () => {
    it('watch each enabled queue once the driver is running, move with the BAR, stop on decode off and reset', async () => {
      const io = new FakeIoEvents();
      const { drv, dev } = make({ ioEvents: io });
      drv.bringUp({ queues: 2 });
      const n0 = BAR4_BASE + NOTIFY_CFG_OFFSET;
      expect(io.log.splice(0)).toEqual([`watch ${n0.toString(16)}/2`, `watch ${(n0 + 4).toString(16)}/2`]);

      // A notification through the eventfd (no MMIO write) runs the queue.
      const h = drv.addChain(1, [{ addr: drv.alloc(4), len: 4, write: true }]);
      io.hit(n0 + 4);
      await settle();
      expect(drv.takeUsed(1)).toEqual([{ id: h, len: 0 }]);

      dev.writeConfig(PCI_BAR0 + 16, 4, 0xfd100000);
      const m0 = 0xfd100000 + NOTIFY_CFG_OFFSET;
      expect(io.log.splice(0)).toEqual([
        `stop ${n0.toString(16)}`,
        `watch ${m0.toString(16)}/2`,
        `stop ${(n0 + 4).toString(16)}`,
        `watch ${(m0 + 4).toString(16)}/2`,
      ]);
      dev.writeConfig(PCI_COMMAND, 2, PCI_COMMAND_MASTER);
      expect(io.active.size).toBe(0);
      dev.writeConfig(PCI_COMMAND, 2, PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
      expect(io.active.size).toBe(2);
      drv.status = 0;
      expect(io.active.size).toBe(0);
      drv.bringUp();
      expect(io.active.size).toBe(1);
      dev.close();
      expect(io.active.size).toBe(0);
    });

    it('fall back to MMIO notifications when the host refuses', async () => {
      const io = new FakeIoEvents();
      io.refuse = true;
      const { drv } = make({ ioEvents: io });
      drv.bringUp();
      const h = drv.addChain(0, [{ addr: drv.alloc(4), len: 4, write: true }]);
      drv.notify(0);
      await settle();
      expect(drv.takeUsed(0)).toEqual([{ id: h, len: 0 }]);
    });
  });

  it('saves and loads its state (version 1, plain JSON) and resumes in-flight chains', async () => {
    const a = make();
    a.drv.bringUp({ queues: 2 });
    a.drv.write(CommonCfg.queueSelect, 2, 1);
    a.echo.hold = true;
    const dst = a.drv.alloc(4);
    const head = a.drv.addChain(0, [
      { addr: a.drv.put([5, 6, 7, 8]), len: 4 },
      { addr: dst, len: 4, write: true },
    ]);
    a.drv.notify(0);
    await settle();
    const saved = JSON.parse(JSON.stringify(a.dev.saveState())) as DeviceState;
    expect(saved.version).toBe(1);

    const b = make({ mem: a.mem });
    b.dev.loadState(saved);
    const drv = a.drv; // the same guest memory and ring layout
    const st = b.dev;
    expect(st.status).toBe(15);
    expect(st.negotiatedFeatures).toBe(ALL());
    expect(st.queues[0]!.desc).toBe(0x10000);
    expect(st.queues[1]!.active).toBe(true);
    expect(new Driver(st, a.mem).read(CommonCfg.queueSelect, 2)).toBe(1);
    await settle();
    // b re-ran the chain a had in flight.
    expect(drv.takeUsed(0)).toEqual([{ id: head, len: 4 }]);
    expect(Array.from(a.mem.read(dst, 4))).toEqual([5, 6, 7, 8]);

    // A pending ISR (INTx asserted) survives the round trip.
    const c = make();
    c.drv.bringUp();
    c.echo.bumpConfig();
    const d = make({ mem: c.mem });
    d.dev.loadState(JSON.parse(JSON.stringify(c.dev.saveState())) as DeviceState);
    expect(d.dev.intxAsserted).toBe(true);
    expect(d.dev.readConfig(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBeTruthy();
    expect(new Driver(d.dev, c.mem).read(ISR_CFG_OFFSET, 1)).toBe(VIRTIO_ISR_CONFIG);
    expect(d.dev.intxAsserted).toBe(false);

    const bad = (s: unknown) => () => b.dev.loadState(s as never);
    const t = (saved.device as { transport: Record<string, unknown> }).transport;
    expect(bad({ ...saved, version: 2 })).toThrow(DeviceStateError);
    expect(bad({ ...saved, device: { transport: { ...t, status: 'x' } } })).toThrow(DeviceStateError);
    expect(bad({ ...saved, device: { transport: { ...t, driverFeatures: 'ffffffffffff' } } })).toThrow(
      /not offered/,
    );
    expect(bad({ ...saved, device: { transport: { ...t, queues: [] } } })).toThrow(DeviceStateError);
  });
});
