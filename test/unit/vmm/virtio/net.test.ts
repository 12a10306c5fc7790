/**
 * virtio-net (src/vmm/virtio/net.ts) behind the real virtio-pci transport,
 * driven by a small driver over fake guest RAM: frames both ways over a
 * cable of two devices, mergeable receive buffers, flow control with the
 * backend, vnet headers and offloads, link status, interrupts, saved state.
 */
import { describe, expect, it } from 'vitest';
import type { DeviceState } from '../../../../src/vmm/core/device.js';
import { NO_OFFLOADS } from '../../../../src/vmm/net/backend.js';
import { VIRTIO_F_VERSION_1, bit } from '../../../../src/vmm/virtio/device.js';
import {
  NetCfg,
  VIRTIO_NET_F_CSUM,
  VIRTIO_NET_F_CTRL_VQ,
  VIRTIO_NET_F_GUEST_CSUM,
  VIRTIO_NET_F_GUEST_ECN,
  VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_GUEST_TSO6,
  VIRTIO_NET_F_HOST_ECN,
  VIRTIO_NET_F_HOST_TSO4,
  VIRTIO_NET_F_HOST_TSO6,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_PCI_CLASS,
  VirtioNet,
} from '../../../../src/vmm/virtio/net.js';
import { CommonCfg } from '../../../../src/vmm/virtio/pci-common-config.js';
import {
  DEVICE_CFG_OFFSET,
  ISR_CFG_OFFSET,
  NOTIFY_CFG_OFFSET,
  VIRTIO_BAR,
  VIRTIO_ISR_CONFIG,
  VirtioPciTransport,
} from '../../../../src/vmm/virtio/pci-transport.js';
import { RecordingSink, fakeCtx } from '../pci/helpers.js';
import { settle } from './helpers.js';
import {
  HDR,
  MAC_A,
  MAC_B,
  RXQ,
  TXQ,
  TestNetBackend,
  cable,
  ethFrame,
  header,
  makeNet,
  numBuffersOf,
} from './net-helpers.js';

const OFFLOADS = [
  VIRTIO_NET_F_CSUM,
  VIRTIO_NET_F_GUEST_CSUM,
  VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_GUEST_TSO6,
  VIRTIO_NET_F_GUEST_ECN,
  VIRTIO_NET_F_HOST_TSO4,
  VIRTIO_NET_F_HOST_TSO6,
  VIRTIO_NET_F_HOST_ECN,
].reduce((m, f) => m | bit(f), 0n);
const GUEST_OFFLOADS = [
  VIRTIO_NET_F_GUEST_CSUM,
  VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_GUEST_TSO6,
  VIRTIO_NET_F_GUEST_ECN,
].reduce((m, f) => m | bit(f), 0n);

const cat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
const payloads = (frames: Array<{ payload: Uint8Array }>) => frames.map((f) => f.payload);

/** A notification through another transport's BAR4 (the device restored from a saved state). */
function notifyOn(dev: VirtioPciTransport, qi: number): void {
  dev.bars.find((b) => b.index === VIRTIO_BAR)!.handler.write(NOTIFY_CFG_OFFSET + 4 * qi, 2, qi);
}

describe('virtio-net', () => {
  it('offers offloads only with a vnet-header backend; MAC, link status and MTU in config (§5.1.3, §5.1.4)', () => {
    const plain = makeNet();
    expect(plain.dev.config.deviceId).toBe(0x1041);
    expect(plain.dev.config.get16(0x0a)).toBe(VIRTIO_NET_PCI_CLASS >> 8);
    const f = plain.drv.deviceFeatures();
    for (const b of [VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_F_VERSION_1])
      expect([b, f & bit(b)]).toEqual([b, bit(b)]);
    expect(f & OFFLOADS).toBe(0n);
    expect(f & (bit(VIRTIO_NET_F_MTU) | bit(VIRTIO_NET_F_CTRL_VQ))).toBe(0n);
    const cfg = (drv: typeof plain.drv, o: number, size: 1 | 2) => drv.read(DEVICE_CFG_OFFSET + o, size);
    expect(Array.from({ length: 6 }, (_, i) => cfg(plain.drv, NetCfg.mac + i, 1))).toEqual(MAC_A);
    expect(cfg(plain.drv, NetCfg.status, 2)).toBe(1);
    expect(cfg(plain.drv, NetCfg.maxVirtqueuePairs, 2)).toBe(1);

    const tap = makeNet({ vnet: true, mtu: 9000 });
    const tf = tap.drv.deviceFeatures();
    expect(tf & OFFLOADS).toBe(OFFLOADS);
    expect(tf & bit(VIRTIO_NET_F_MTU)).toBe(bit(VIRTIO_NET_F_MTU));
    expect(cfg(tap.drv, NetCfg.mtu, 2)).toBe(9000);
    expect(makeNet({ vnet: true, offloads: false }).drv.deviceFeatures() & OFFLOADS).toBe(0n);
    expect(makeNet({ linkUp: false }).drv.read(DEVICE_CFG_OFFSET + NetCfg.status, 2)).toBe(0);

    // §5.1.3.1: GUEST_TSO4 needs GUEST_CSUM; FEATURES_OK stays clear.
    const st = tap.drv.negotiate(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_NET_F_GUEST_TSO4));
    expect(st & 8).toBe(0);
    expect(tap.log.lines.join('\n')).toMatch(/GUEST_TSO4 requires GUEST_CSUM/);
    expect(tap.drv.negotiate(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_NET_F_GUEST_CSUM)) & 8).toBe(8);

    const backend = new TestNetBackend(false);
    expect(() => new VirtioNet({ backend, mac: [1, 2, 3, 4, 5] })).toThrow(/6 bytes/);
    expect(() => new VirtioNet({ backend, mac: [1, 0, 0, 0, 0, 1] })).toThrow(/multicast/);
    expect(() => new VirtioNet({ backend, mac: [0, 0, 0, 0, 0, 0] })).toThrow(/zero/);
    expect(() => new VirtioNet({ backend, mac: MAC_A, mtu: 60 })).toThrow(/mtu/);
  });

  it('two devices on a cable exchange frames both ways, byte-exact; a plain backend sees no header', async () => {
    const [a, b] = cable(false);
    const A = makeNet({ backend: a, mac: MAC_A });
    const B = makeNet({ backend: b, mac: MAC_B });
    A.drv.up();
    B.drv.up();
    A.drv.postRx(8, 2048);
    B.drv.postRx(8, 2048);
    A.drv.notify(RXQ);
    B.drv.notify(RXQ);
    const f1 = ethFrame(60, 1);
    const f2 = ethFrame(1514, 2);
    const f3 = ethFrame(300, 3);
    A.drv.postTx(header(), f1);
    // The header split over two descriptors, the frame over three more (§2.6.4).
    A.drv.postTx(header(), f2, [5, HDR, 40, 1000]);
    const f3at = A.drv.put(cat(header(), f3));
    A.drv.addIndirect(TXQ, [
      { addr: f3at, len: 20 },
      { addr: f3at + 20, len: HDR + f3.length - 20 },
    ]);
    A.drv.notify(TXQ);
    await settle();
    expect(a.sent).toEqual([f1, f2, f3]);
    const got = B.drv.received();
    expect(payloads(got)).toEqual([f1, f2, f3]);
    for (const g of got) expect(g.hdr).toEqual(header({ numBuffers: 1 }));
    expect(A.drv.takeUsed(TXQ).map((u) => u.len)).toEqual([0, 0, 0]);

    const r1 = ethFrame(1000, 9, MAC_A, MAC_B);
    const r2 = ethFrame(64, 10, MAC_A, MAC_B);
    B.drv.postTx(header(), r1);
    B.drv.postTx(header(), r2);
    B.drv.notify(TXQ);
    await settle();
    expect(payloads(A.drv.received())).toEqual([r1, r2]);
    expect(A.net.stats).toMatchObject({ txFrames: 3, txBytes: 60 + 1514 + 300, rxFrames: 2, rxBytes: 1064 });
    expect(B.net.stats).toMatchObject({
      txFrames: 2,
      rxFrames: 3,
      rxDropped: 0,
      txDropped: 0,
      guestErrors: 0,
    });
  });

  it('spreads a 9000-byte frame over 4 KiB buffers with num_buffers (MRG_RXBUF, §5.1.6.4)', async () => {
    const { drv, backend } = makeNet();
    drv.up();
    const heads = drv.postRx(4, 4096);
    drv.notify(RXQ);
    await settle();
    const jumbo = ethFrame(9000, 5);
    backend.inject(jumbo);
    const used = drv.takeUsed(RXQ);
    expect(used).toEqual([
      { id: heads[0], len: 4096 },
      { id: heads[1], len: 4096 },
      { id: heads[2], len: HDR + 9000 - 8192 },
    ]);
    const bytes = cat(...used.map((u) => drv.mem.read(drv.rxBufs.get(u.id)!.addr, u.len)));
    expect(numBuffersOf(bytes)).toBe(3);
    expect(bytes.subarray(HDR)).toEqual(jumbo);
    // The next frame takes the fourth buffer alone.
    const small = ethFrame(80, 6);
    backend.inject(small);
    expect(drv.received()).toEqual([{ hdr: header({ numBuffers: 1 }), payload: small, buffers: 1 }]);
  });

  it('without MRG_RXBUF a frame takes one buffer; a buffer too small drops that frame and serves the next', async () => {
    const { drv, backend, net, log } = makeNet();
    drv.up({ features: drv.deviceFeatures() & ~bit(VIRTIO_NET_F_MRG_RXBUF) });
    const [small] = drv.postRx(1, 1000);
    drv.notify(RXQ);
    await settle();
    backend.inject(ethFrame(1514, 1));
    expect(net.stats.rxDropped).toBe(1);
    expect(log.lines.join('\n')).toMatch(/1526-byte frame dropped: the receive buffer holds 1000/);
    const f = ethFrame(500, 2);
    backend.inject(f);
    drv.postRx(1, 9100);
    drv.notify(RXQ);
    await settle();
    const jumbo = ethFrame(9000, 3);
    backend.inject(jumbo);
    const got = drv.received();
    expect(got).toEqual([
      { hdr: header({ numBuffers: 1 }), payload: f, buffers: 1 },
      { hdr: header({ numBuffers: 1 }), payload: jumbo, buffers: 1 },
    ]);
    expect(drv.rxBufs.get(small)).toBeDefined();
    expect(backend.paused).toBe(false);
  });

  it('without receive buffers the backend holds the frame and resumes when buffers arrive: no frame lost', async () => {
    const [a, b] = cable(false);
    const A = makeNet({ backend: a });
    const B = makeNet({ backend: b, mac: MAC_B });
    A.drv.up();
    B.drv.up();
    const frames = Array.from({ length: 6 }, (_, i) => ethFrame(100 + 50 * i, i));
    for (const f of frames) A.drv.postTx(header(), f);
    A.drv.notify(TXQ);
    await settle();
    // B refused the first frame (its end holds it); A's next send was refused, so A keeps the rest.
    expect(b.paused).toBe(true);
    expect(b.inbox).toEqual([frames[0]]);
    expect(a.sent).toHaveLength(1);
    expect(A.drv.takeUsed(TXQ)).toHaveLength(1);

    B.drv.postRx(2, 2048);
    B.drv.notify(RXQ);
    await settle(20);
    expect(payloads(B.drv.received())).toEqual(frames.slice(0, 2));
    expect(b.paused).toBe(true);

    B.drv.postRx(10, 2048);
    B.drv.notify(RXQ);
    await settle(20);
    expect(payloads(B.drv.received())).toEqual(frames.slice(2));
    expect(A.drv.takeUsed(TXQ)).toHaveLength(5);
    expect(a.sent).toEqual(frames);
    expect(B.net.stats.rxDropped + A.net.stats.txDropped).toBe(0);
    expect(b.paused).toBe(false);
  });

  it('a merged frame keeps the buffers it has until enough arrive; with every descriptor taken it is dropped', async () => {
    const { drv, backend } = makeNet();
    drv.up();
    const [first] = drv.postRx(1, 4096);
    drv.notify(RXQ);
    await settle();
    const jumbo = ethFrame(9000, 7);
    backend.inject(jumbo);
    expect(backend.paused).toBe(true);
    expect(drv.usedIdx(RXQ)).toBe(0);
    drv.postRx(1, 4096);
    drv.notify(RXQ);
    await settle();
    expect(backend.paused).toBe(true);
    drv.postRx(1, 4096);
    drv.notify(RXQ);
    await settle();
    expect(backend.paused).toBe(false);
    const got = drv.received();
    expect(got.map((g) => [g.buffers, g.payload])).toEqual([[3, jumbo]]);
    expect(numBuffersOf(drv.mem.read(drv.rxBufs.get(first!)!.addr, HDR))).toBe(3);

    // A 4-entry ring of 1 KiB buffers can never hold 9 KiB: dropped, not waited for.
    const q = makeNet();
    q.drv.up({ size: 4 });
    q.drv.postRx(4, 1024);
    q.drv.notify(RXQ);
    await settle();
    q.backend.inject(ethFrame(9000, 1));
    expect(q.backend.paused).toBe(false);
    expect(q.net.stats.rxDropped).toBe(1);
    expect(q.log.lines.join('\n')).toMatch(/all receive buffers hold 4096 bytes/);
    const next = ethFrame(900, 2);
    q.backend.inject(next);
    expect(payloads(q.drv.received())).toEqual([next]);
  });

  it('a full backend keeps transmit frames in order and sends them on onWritable; a reset forgets them', async () => {
    const { drv, backend, net } = makeNet();
    drv.up();
    backend.full = true;
    const frames = [ethFrame(100, 1), ethFrame(200, 2), ethFrame(300, 3)];
    for (const f of frames) drv.postTx(header(), f);
    drv.notify(TXQ);
    await settle();
    expect(backend.sent).toEqual([]);
    expect(drv.usedIdx(TXQ)).toBe(0);
    // Notifications while blocked change nothing: no retry before onWritable.
    drv.notify(TXQ);
    await settle();
    expect(drv.usedIdx(TXQ)).toBe(0);
    expect(backend.sendCalls).toBe(1);
    backend.becomeWritable();
    await settle();
    expect(backend.sent).toEqual(frames);
    expect(drv.takeUsed(TXQ)).toHaveLength(3);

    backend.full = true;
    drv.postTx(header(), ethFrame(400, 4));
    drv.notify(TXQ);
    await settle();
    drv.status = 0;
    drv.up();
    backend.becomeWritable();
    await settle();
    expect(backend.sent).toHaveLength(3);
    const after = ethFrame(500, 5);
    drv.postTx(header(), after);
    drv.notify(TXQ);
    await settle();
    expect(backend.sent.at(-1)).toEqual(after);
    expect(net.stats.txDropped).toBe(0);
  });

  it('a vnet-header backend gets and gives the header unchanged but num_buffers; offloads follow the driver', async () => {
    const [a, b] = cable(true);
    const A = makeNet({ backend: a });
    const B = makeNet({ backend: b, mac: MAC_B });
    A.drv.up();
    B.drv.up();
    B.drv.postRx(4, 4096);
    B.drv.notify(RXQ);
    await settle();
    expect(b.offloads).toEqual({ csum: true, tso4: true, tso6: true, ecn: true });
    const gso = {
      flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
      gsoType: VIRTIO_NET_HDR_GSO_TCPV4,
      hdrLen: 54,
      gsoSize: 1448,
      csumStart: 34,
      csumOffset: 16,
    };
    const seg = ethFrame(3000, 4);
    A.drv.postTx(header({ ...gso, numBuffers: 7 }), seg, [3, HDR, 100]);
    A.drv.notify(TXQ);
    await settle();
    expect(a.sent).toEqual([cat(header(gso), seg)]);
    expect(B.drv.received()).toEqual([{ hdr: header({ ...gso, numBuffers: 1 }), payload: seg, buffers: 1 }]);

    // A driver without guest offloads: the backend is told; frames that
    // still ask for them are dropped; DATA_VALID is cleared.
    B.drv.status = 0;
    expect(b.offloads).toEqual(NO_OFFLOADS);
    B.drv.up({ features: B.drv.deviceFeatures() & ~GUEST_OFFLOADS });
    B.drv.postRx(4, 4096);
    B.drv.notify(RXQ);
    await settle();
    expect(b.offloads).toEqual(NO_OFFLOADS);
    b.inject(
      cat(header({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 }), ethFrame(100, 1)),
    );
    b.inject(cat(header({ gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1448 }), ethFrame(3000, 2)));
    const ok = ethFrame(100, 3);
    b.inject(cat(header({ flags: VIRTIO_NET_HDR_F_DATA_VALID }), ok));
    expect(B.drv.received()).toEqual([{ hdr: header({ numBuffers: 1 }), payload: ok, buffers: 1 }]);
    expect(B.net.stats.rxDropped).toBe(2);

    // Transmit: a GSO type the driver did not negotiate is a guest error.
    A.drv.status = 0;
    A.drv.up({ features: A.drv.deviceFeatures() & ~bit(VIRTIO_NET_F_HOST_TSO6) });
    A.drv.postTx(header({ ...gso, gsoType: VIRTIO_NET_HDR_GSO_TCPV6 }), seg);
    A.drv.postTx(header(gso), seg);
    A.drv.notify(TXQ);
    await settle();
    expect(a.sent).toHaveLength(2);
    expect(A.net.stats).toMatchObject({ txDropped: 1, guestErrors: 1 });
    expect(A.log.lines.join('\n')).toMatch(/GSO type 0x4 \(not negotiated\)/);
  });

  it('link down and up: status bit, configuration interrupt, frames dropped both ways while down', async () => {
    const { drv, net, backend } = makeNet();
    drv.up();
    drv.notify(RXQ);
    await settle();
    backend.inject(ethFrame(100, 0)); // no buffers yet: held
    expect(backend.paused).toBe(true);
    const gen = drv.read(CommonCfg.configGeneration, 1);
    drv.read(ISR_CFG_OFFSET, 1);
    net.setLink(false);
    expect(net.link).toBe(false);
    expect(drv.read(DEVICE_CFG_OFFSET + NetCfg.status, 2)).toBe(0);
    expect(drv.read(CommonCfg.configGeneration, 1)).toBe(gen + 1);
    expect(drv.read(ISR_CFG_OFFSET, 1) & VIRTIO_ISR_CONFIG).toBe(VIRTIO_ISR_CONFIG);
    // The held frame was let go and dropped: a frame on an unplugged cable.
    expect(backend.paused).toBe(false);
    drv.postRx(2, 2048);
    drv.notify(RXQ);
    drv.postTx(header(), ethFrame(100, 1));
    drv.notify(TXQ);
    backend.inject(ethFrame(100, 2));
    await settle();
    expect(backend.sent).toEqual([]);
    expect(drv.takeUsed(TXQ)).toEqual([{ id: 0, len: 0 }]);
    expect(drv.received()).toEqual([]);
    expect(net.stats).toMatchObject({ txDropped: 1, rxDropped: 2, guestErrors: 0 });

    net.setLink(true);
    expect(drv.read(DEVICE_CFG_OFFSET + NetCfg.status, 2)).toBe(1);
    expect(drv.read(CommonCfg.configGeneration, 1)).toBe(gen + 2);
    expect(drv.read(ISR_CFG_OFFSET, 1) & VIRTIO_ISR_CONFIG).toBe(VIRTIO_ISR_CONFIG);
    const out = ethFrame(100, 3);
    const inn = ethFrame(100, 4);
    drv.postTx(header(), out);
    drv.notify(TXQ);
    backend.inject(inn);
    await settle();
    expect(backend.sent).toEqual([out]);
    expect(payloads(drv.received())).toEqual([inn]);
  });

  it('interrupts once per queue per turn (MSI-X)', async () => {
    const { drv, backend, sink } = makeNet();
    drv.enablePci();
    drv.enableMsix(3);
    drv.negotiate();
    drv.setupQueue(RXQ, 64, 0);
    drv.setupQueue(TXQ, 64, 1);
    drv.driverOk();
    drv.postRx(4, 2048);
    drv.notify(RXQ);
    await settle();
    expect(sink.messages).toEqual([]);
    backend.inject(ethFrame(100, 1));
    backend.inject(ethFrame(100, 2));
    backend.inject(ethFrame(100, 3));
    await settle();
    expect(sink.messages).toEqual([[0xfee00000, 0, 0x40]]);
    for (let i = 0; i < 3; i++) drv.postTx(header(), ethFrame(100, i));
    drv.notify(TXQ);
    await settle();
    expect(sink.messages.slice(1)).toEqual([[0xfee00010, 0, 0x41]]);
    expect(drv.received()).toHaveLength(3);
  });

  it('saves and loads mid-traffic (JSON): reserved receive buffers and unsent transmit frames carry on', async () => {
    const a = makeNet();
    a.drv.up();
    const [first] = a.drv.postRx(1, 4096);
    a.drv.notify(RXQ);
    await settle();
    a.backend.inject(ethFrame(9000, 1)); // one buffer of three: reserved, the frame held
    expect(a.backend.paused).toBe(true);
    a.backend.full = true;
    const t1 = ethFrame(100, 1);
    const t2 = ethFrame(200, 2);
    a.drv.postTx(header(), t1);
    a.drv.postTx(header(), t2);
    a.drv.notify(TXQ);
    await settle();
    expect(a.backend.sent).toEqual([]);
    const saved = JSON.parse(JSON.stringify(a.dev.saveState())) as DeviceState;
    expect((saved.device as { device: unknown }).device).toEqual({
      version: 1,
      mac: MAC_A,
      mtu: null,
      linkUp: true,
    });

    // The restored VM: the same RAM, a new process with a fresh backend (the held frame was the old one's).
    const { ctx } = fakeCtx();
    const backend = new TestNetBackend(false);
    const net = new VirtioNet({ backend, mac: MAC_B });
    const b = new VirtioPciTransport(net, {
      ctx,
      mem: a.mem,
      msi: new RecordingSink(),
      classCode: VIRTIO_NET_PCI_CLASS,
    });
    b.loadState(saved);
    await settle();
    expect(net.macAddress).toEqual(Uint8Array.from(MAC_A));
    expect(backend.sent).toEqual([t1, t2]);
    expect(a.drv.takeUsed(TXQ)).toHaveLength(2);

    a.drv.postRx(2, 4096);
    notifyOn(b, RXQ);
    await settle();
    const jumbo = ethFrame(9000, 2);
    backend.inject(jumbo);
    expect(a.drv.received().map((g) => [g.buffers, g.payload])).toEqual([[3, jumbo]]);
    expect(numBuffersOf(a.mem.read(a.drv.rxBufs.get(first!)!.addr, HDR))).toBe(3);
    const t3 = ethFrame(300, 3);
    a.drv.postTx(header(), t3);
    notifyOn(b, TXQ);
    await settle();
    expect(backend.sent).toEqual([t1, t2, t3]);

    // Link status comes back as saved; another version, another MTU and garbage are refused.
    const other = (edit: (d: Record<string, unknown>) => void, mtu?: number) => {
      const copy = JSON.parse(JSON.stringify(saved)) as DeviceState;
      edit((copy.device as { device: Record<string, unknown> }).device);
      const n = new VirtioNet({ backend: new TestNetBackend(false), mac: MAC_A, mtu });
      const dev = new VirtioPciTransport(n, {
        ctx,
        mem: a.mem,
        msi: new RecordingSink(),
        classCode: VIRTIO_NET_PCI_CLASS,
      });
      return { net: n, load: () => dev.loadState(copy) };
    };
    const down = other((d) => (d.linkUp = false));
    down.load();
    expect(down.net.link).toBe(false);
    expect(down.net.readConfig()[NetCfg.status]).toBe(0);
    expect(other((d) => (d.version = 2)).load).toThrow(/version 2/);
    expect(other(() => {}, 1500).load).toThrow(/MTU/);
    expect(other((d) => (d.mac = [1, 2, 3])).load).toThrow(/bad virtio-net state/);
  });
});
