/**
 * virtio-net against a guest that writes anything: malformed and oversized
 * transmit chains, unusable receive chains, bad backend frames, a ring in
 * nowhere. The device stays up and the next good frame goes through.
 */
import { describe, expect, it } from 'vitest';
import { MAX_FRAME_WITH_HEADER } from '../../../../src/vmm/net/backend.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4 } from '../../../../src/vmm/virtio/net.js';
import { CommonCfg } from '../../../../src/vmm/virtio/pci-common-config.js';
import { settle } from './helpers.js';
import { HDR, RXQ, TXQ, ethFrame, header, makeNet } from './net-helpers.js';

const payloads = (frames: Array<{ payload: Uint8Array }>) => frames.map((f) => f.payload);

describe('virtio-net against a hostile guest', () => {
  it('hostile transmit chains are dropped with a guest error; the next good frame goes out', async () => {
    const { drv, net, backend, log } = makeNet();
    drv.up();
    const q = drv.queues.get(TXQ)!;
    const heads: number[] = [];
    // Shorter than the header; a header and a 5-byte runt; 65551 bytes.
    heads.push(drv.addChain(TXQ, [{ addr: drv.put(new Uint8Array(8)), len: 8 }]));
    heads.push(drv.postTx(header(), new Uint8Array(5)));
    heads.push(drv.postTx(header(), ethFrame(MAX_FRAME_WITH_HEADER - HDR + 1, 1)));
    // A device-writable buffer; a buffer outside RAM.
    heads.push(
      drv.addChain(TXQ, [
        { addr: drv.put(header()), len: HDR },
        { addr: drv.put(ethFrame(60, 1)), len: 60 },
        { addr: drv.alloc(16), len: 16, write: true },
      ]),
    );
    heads.push(
      drv.addChain(TXQ, [
        { addr: drv.put(header()), len: HDR },
        { addr: 0x7000_0000, len: 60 },
      ]),
    );
    // Offloads a plain backend cannot do (not offered).
    heads.push(drv.postTx(header({ gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1448 }), ethFrame(3000, 2)));
    heads.push(
      drv.postTx(
        header({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 }),
        ethFrame(100, 3),
      ),
    );
    // A descriptor loop (the virtqueue drops it).
    const loop = drv.takeDescs(TXQ, 2);
    drv.writeDesc(q.desc, loop, 0x1000, 16, 1, loop + 1);
    drv.writeDesc(q.desc, loop + 1, 0x1000, 16, 1, loop);
    heads.push(drv.publish(TXQ, loop));
    const good = ethFrame(200, 4);
    heads.push(drv.postTx(header(), good));
    // A backend that throws loses that frame only.
    drv.notify(TXQ);
    await settle();
    expect(drv.takeUsed(TXQ)).toEqual(heads.map((id) => ({ id, len: 0 })));
    expect(backend.sent).toEqual([good]);
    expect(net.stats).toMatchObject({ txFrames: 1, txDropped: 7, guestErrors: 7 });
    expect(drv.status).toBe(15);
    const text = log.lines.join('\n');
    for (const re of [
      /is 8 bytes, less than header/,
      /is 17 bytes/,
      /is 65551 bytes \(at most 65550\)/,
      /device-writable/,
      /outside guest RAM/,
      /GSO type 0x1 \(segmentation not offered\)/,
      /checksum offload not offered/,
      /a loop/,
    ])
      expect(text).toMatch(re);

    backend.failSend = true;
    drv.postTx(header(), ethFrame(100, 5));
    drv.notify(TXQ);
    await settle();
    backend.failSend = false;
    const good2 = ethFrame(300, 6);
    drv.postTx(header(), good2);
    drv.notify(TXQ);
    await settle();
    expect(backend.sent).toEqual([good, good2]);
    expect(net.stats.txDropped).toBe(8);
    expect(log.lines.join('\n')).toMatch(/backend on fire/);
    expect(drv.status).toBe(15);
  });

  it('hostile receive chains are returned unused; bad backend frames are dropped; the next frame goes through', async () => {
    const { drv, net, backend, log } = makeNet();
    drv.up();
    const bad = [
      // device-readable, then device-writable
      drv.addChain(RXQ, [
        { addr: drv.alloc(16), len: 16 },
        { addr: drv.alloc(2048), len: 2048, write: true },
      ]),
      // only device-readable
      drv.addChain(RXQ, [{ addr: drv.alloc(2048), len: 2048 }]),
      // smaller than the header
      drv.addChain(RXQ, [{ addr: drv.alloc(8), len: 8, write: true }]),
      // outside RAM
      drv.addChain(RXQ, [{ addr: 0x7000_0000, len: 2048, write: true }]),
    ];
    drv.postRx(1, 2048);
    drv.notify(RXQ);
    await settle();
    const f = ethFrame(1000, 1);
    backend.inject(f);
    expect(payloads(drv.received())).toEqual([f]);
    expect(drv.rxUnused).toEqual(bad);
    expect(net.stats).toMatchObject({ guestErrors: 4, rxFrames: 1, rxDropped: 0 });
    expect(log.lines.join('\n')).toMatch(/less than the 12-byte header/);

    drv.postRx(2, 2048);
    drv.notify(RXQ);
    await settle();
    backend.inject(new Uint8Array(10));
    backend.inject(ethFrame(MAX_FRAME_WITH_HEADER - HDR + 1, 2));
    const f2 = ethFrame(64, 3);
    backend.inject(f2);
    expect(payloads(drv.received())).toEqual([f2]);
    expect(net.stats.rxDropped).toBe(2);
    expect(drv.status).toBe(15);
  });

  it('a ring at a bogus address needs a reset; the held frame arrives once the driver sets the device up again', async () => {
    const { drv, backend, net } = makeNet();
    drv.enablePci();
    drv.negotiate();
    drv.setupQueue(TXQ, 64);
    drv.write(CommonCfg.queueSelect, 2, RXQ);
    drv.write(CommonCfg.queueSize, 2, 64);
    drv.write(CommonCfg.queueDesc, 4, 0x7000_0000);
    drv.write(CommonCfg.queueDriver, 4, 0x7000_1000);
    drv.write(CommonCfg.queueDevice, 4, 0x7000_2000);
    drv.write(CommonCfg.queueEnable, 2, 1);
    drv.driverOk();
    expect(drv.status & 0x40).toBe(0x40);
    const f = ethFrame(700, 1);
    backend.inject(f);
    expect(backend.paused).toBe(true);
    await settle();

    drv.up();
    drv.postRx(2, 2048);
    drv.notify(RXQ);
    await settle();
    expect(drv.status).toBe(15);
    expect(payloads(drv.received())).toEqual([f]);
    expect(net.stats.rxDropped).toBe(0);
  });
});
