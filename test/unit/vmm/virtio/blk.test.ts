import { describe, expect, it } from 'vitest';
import { BlockError } from '../../../../src/block/image.js';
import type { DeviceState } from '../../../../src/vmm/core/device.js';
import {
  BlkCfg,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_MQ,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_GET_LIFETIME,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VirtioBlk,
  type VirtioBlkOptions,
} from '../../../../src/vmm/virtio/blk.js';
import { VIRTIO_F_VERSION_1, bit } from '../../../../src/vmm/virtio/device.js';
import { CommonCfg } from '../../../../src/vmm/virtio/pci-common-config.js';
import { DEVICE_CFG_OFFSET, VirtioPciTransport } from '../../../../src/vmm/virtio/pci-transport.js';
import { RecordingSink, fakeCtx } from '../pci/helpers.js';
import { Driver, FakeImage, guestRam, settle, type Buf } from './helpers.js';

const MiB = 1 << 20;

function make(opts: Partial<VirtioBlkOptions> & { size?: number; readOnlyImage?: boolean } = {}) {
  const { ctx, log } = fakeCtx();
  const mem = guestRam();
  const image = opts.image ?? new FakeImage(opts.size ?? MiB, opts.readOnlyImage);
  const sink = new RecordingSink();
  const dev = new VirtioPciTransport(new VirtioBlk({ serial: 'MV-DISK-0001', ...opts, image }), {
    ctx,
    mem,
    msi: sink,
    defer: (fn) => fn(),
  });
  dev.attach({ setIntx: () => {}, remap: () => {} });
  const drv = new Driver(dev, mem);
  return { dev, drv, mem, image: image as FakeImage, log, sink };
}

interface Req {
  head: number;
  data: number;
  status: number;
  dataLen: number;
}

/** Header, data buffer (device-writable for IN/GET_ID), status byte: three descriptors, or one indirect table. */
function request(
  drv: Driver,
  type: number,
  sector: number | bigint,
  opts: { data?: Uint8Array; inLen?: number; qi?: number; indirect?: boolean; extra?: Buf[] } = {},
): Req {
  const hdr = new Uint8Array(16);
  const v = new DataView(hdr.buffer);
  v.setUint32(0, type, true);
  v.setBigUint64(8, BigInt(sector), true);
  const bufs: Buf[] = [{ addr: drv.put(hdr), len: 16 }];
  let data = 0;
  let dataLen = 0;
  if (opts.data) {
    data = drv.put(opts.data);
    dataLen = opts.data.length;
    bufs.push({ addr: data, len: dataLen });
  } else if (opts.inLen) {
    data = drv.alloc(opts.inLen);
    dataLen = opts.inLen;
    drv.mem.fill(data, dataLen, 0xee);
    bufs.push({ addr: data, len: dataLen, write: true });
  }
  bufs.push(...(opts.extra ?? []));
  const status = drv.alloc(1);
  drv.mem.fill(status, 1, 0xff);
  bufs.push({ addr: status, len: 1, write: true });
  const qi = opts.qi ?? 0;
  const head = opts.indirect ? drv.addIndirect(qi, bufs) : drv.addChain(qi, bufs);
  return { head, data, status, dataLen };
}

const statusOf = (drv: Driver, r: Req) => drv.mem.read(r.status, 1)[0];

function pattern(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
}

function dwz(segs: Array<[number, number, number]>): Uint8Array {
  const b = new Uint8Array(16 * segs.length);
  const v = new DataView(b.buffer);
  segs.forEach(([sector, count, flags], i) => {
    v.setBigUint64(16 * i, BigInt(sector), true);
    v.setUint32(16 * i + 8, count, true);
    v.setUint32(16 * i + 12, flags, true);
  });
  return b;
}

describe('virtio-blk', () => {
  it('offers its features and describes the disk in config space (§5.2.3, §5.2.4)', () => {
    const { drv, dev } = make({ size: 3 * MiB + 512, numQueues: 2, queueSize: 128 });
    expect(dev.config.deviceId).toBe(0x1042);
    const f = drv.deviceFeatures();
    for (const b of [
      VIRTIO_BLK_F_FLUSH,
      VIRTIO_BLK_F_MQ,
      VIRTIO_BLK_F_DISCARD,
      VIRTIO_BLK_F_WRITE_ZEROES,
      2,
      6,
    ])
      expect(f & bit(b)).toBeTruthy();
    expect(f & bit(VIRTIO_BLK_F_RO)).toBe(0n);
    const cfg = (o: number, size: 1 | 2 | 4) => drv.read(DEVICE_CFG_OFFSET + o, size);
    expect([cfg(BlkCfg.capacity, 4), cfg(BlkCfg.capacity + 4, 4)]).toEqual([6145, 0]);
    expect(cfg(BlkCfg.segMax, 4)).toBe(126);
    expect(cfg(BlkCfg.blkSize, 4)).toBe(512);
    expect(cfg(BlkCfg.numQueues, 2)).toBe(2);
    expect(cfg(BlkCfg.maxDiscardSeg, 4)).toBe(32);
    expect(cfg(BlkCfg.writeZeroesMayUnmap, 1)).toBe(1);
    expect(drv.read(CommonCfg.numQueues, 2)).toBe(2);

    const ro = make({ readOnlyImage: true });
    const rf = ro.drv.deviceFeatures();
    expect(rf & bit(VIRTIO_BLK_F_RO)).toBeTruthy();
    expect(rf & (bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES))).toBe(0n);
    expect(() => make({ serial: 'x'.repeat(21) })).toThrow(/serial/);
  });

  it('writes, reads back, flushes, gets the ID, discards and zeroes through descriptors', async () => {
    const { drv, image } = make();
    drv.bringUp();
    const data = pattern(4096, 3);
    const w = request(drv, VIRTIO_BLK_T_OUT, 8, { data });
    drv.notify(0);
    await settle();
    expect(statusOf(drv, w)).toBe(VIRTIO_BLK_S_OK);
    expect(drv.takeUsed(0)).toEqual([{ id: w.head, len: 1 }]);
    expect(image.data.subarray(4096, 8192)).toEqual(data);

    const r = request(drv, VIRTIO_BLK_T_IN, 8, { inLen: 4096, indirect: true });
    const fl = request(drv, VIRTIO_BLK_T_FLUSH, 0);
    const id = request(drv, VIRTIO_BLK_T_GET_ID, 0, { inLen: 20 });
    drv.notify(0);
    await settle();
    expect(drv.mem.read(r.data, 4096)).toEqual(data);
    expect([statusOf(drv, r), statusOf(drv, fl), statusOf(drv, id)]).toEqual([0, 0, 0]);
    expect(image.flushes).toBe(1);
    expect(Buffer.from(drv.mem.read(id.data, 20)).toString('latin1')).toBe('MV-DISK-0001\0\0\0\0\0\0\0\0');
    // In completion order: GET_ID needs no I/O.
    expect(drv.takeUsed(0).sort((x, y) => x.id - y.id)).toEqual([
      { id: r.head, len: 4097 },
      { id: fl.head, len: 1 },
      { id: id.head, len: 21 },
    ]);

    const d = request(drv, VIRTIO_BLK_T_DISCARD, 0, { data: dwz([[8, 4, 0]]) });
    const z = request(drv, VIRTIO_BLK_T_WRITE_ZEROES, 0, {
      data: dwz([
        [12, 2, 1],
        [100, 1, 0],
      ]),
    });
    drv.notify(0);
    await settle();
    expect([statusOf(drv, d), statusOf(drv, z)]).toEqual([0, 0]);
    expect(image.ops.slice(-3)).toEqual(['discard 4096+2048', 'zeroes 6144+1024 unmap', 'zeroes 51200+512']);
    expect(image.data.subarray(4096, 7168).every((b) => b === 0)).toBe(true);
    expect(image.data[7168]).toBe(data[3072]);
  });

  it('completes requests in the order their I/O finishes', async () => {
    const { drv, image } = make();
    drv.bringUp();
    image.hold = true;
    const a = request(drv, VIRTIO_BLK_T_IN, 0, { inLen: 512 });
    const b = request(drv, VIRTIO_BLK_T_OUT, 1, { data: pattern(512, 1) });
    const c = request(drv, VIRTIO_BLK_T_FLUSH, 0);
    drv.notify(0);
    await settle();
    expect(image.pending).toEqual(['read 0+512', 'write 512+512', 'flush']);
    image.release('flush');
    await settle();
    image.release('write');
    await settle();
    expect(drv.takeUsed(0).map((u) => u.id)).toEqual([c.head, b.head]);
    expect(statusOf(drv, a)).toBe(0xff);
    image.release('read');
    await settle();
    expect(drv.takeUsed(0)).toEqual([{ id: a.head, len: 513 }]);
  });

  it('fails bad requests with IOERR or UNSUPP and goes on', async () => {
    const { drv, image, log } = make({ size: 64 * 1024 });
    drv.bringUp({ size: 64 });
    const cases: Array<[string, Req, number]> = [
      ['unaligned read', request(drv, VIRTIO_BLK_T_IN, 0, { inLen: 100 }), VIRTIO_BLK_S_IOERR],
      ['read past the end', request(drv, VIRTIO_BLK_T_IN, 127, { inLen: 1024 }), VIRTIO_BLK_S_IOERR],
      ['huge sector', request(drv, VIRTIO_BLK_T_IN, 2n ** 63n, { inLen: 512 }), VIRTIO_BLK_S_IOERR],
      [
        'write past the end',
        request(drv, VIRTIO_BLK_T_OUT, 128, { data: pattern(512, 0) }),
        VIRTIO_BLK_S_IOERR,
      ],
      ['unknown type', request(drv, 0x77, 0, { inLen: 512 }), VIRTIO_BLK_S_UNSUPP],
      ['GET_LIFETIME', request(drv, VIRTIO_BLK_T_GET_LIFETIME, 0, { inLen: 16 }), VIRTIO_BLK_S_UNSUPP],
      [
        'discard with unmap',
        request(drv, VIRTIO_BLK_T_DISCARD, 0, { data: dwz([[0, 1, 1]]) }),
        VIRTIO_BLK_S_UNSUPP,
      ],
      [
        'reserved flags',
        request(drv, VIRTIO_BLK_T_WRITE_ZEROES, 0, { data: dwz([[0, 1, 6]]) }),
        VIRTIO_BLK_S_UNSUPP,
      ],
      [
        'discard past the end',
        request(drv, VIRTIO_BLK_T_DISCARD, 0, { data: dwz([[120, 9, 0]]) }),
        VIRTIO_BLK_S_IOERR,
      ],
      [
        'discard of 15 bytes',
        request(drv, VIRTIO_BLK_T_DISCARD, 0, { data: new Uint8Array(15) }),
        VIRTIO_BLK_S_IOERR,
      ],
      [
        'too many segments',
        request(drv, VIRTIO_BLK_T_DISCARD, 0, { data: dwz(Array.from({ length: 33 }, () => [0, 1, 0])) }),
        VIRTIO_BLK_S_IOERR,
      ],
      [
        'a data buffer outside RAM',
        request(drv, VIRTIO_BLK_T_IN, 0, { extra: [{ addr: 0x7000_0000, len: 512, write: true }] }),
        VIRTIO_BLK_S_IOERR,
      ],
    ];
    drv.notify(0);
    await settle();
    for (const [what, r, st] of cases) expect([what, statusOf(drv, r)]).toEqual([what, st]);
    const used = drv.takeUsed(0);
    expect(used.map((u) => u.id).sort((x, y) => x - y)).toEqual(cases.map(([, r]) => r.head));
    expect(used.every((u) => u.len === 1)).toBe(true);
    expect(image.ops).toEqual([]);
    expect(log.lines.join('\n')).toMatch(/not whole sectors/);

    // An image error is IOERR too.
    image.failNext = new BlockError('disk on fire', 'EIO');
    const e = request(drv, VIRTIO_BLK_T_IN, 0, { inLen: 512 });
    drv.notify(0);
    await settle();
    expect(statusOf(drv, e)).toBe(VIRTIO_BLK_S_IOERR);
    expect(drv.mem.read(e.data, 1)[0]).toBe(0xee);
    expect(log.lines.join('\n')).toMatch(/disk on fire/);
  });

  it('refuses writes, discards and zeroes on a read-only disk', async () => {
    const { drv, image } = make({ readOnly: true });
    drv.bringUp();
    const w = request(drv, VIRTIO_BLK_T_OUT, 0, { data: pattern(512, 1) });
    const d = request(drv, VIRTIO_BLK_T_DISCARD, 0, { data: dwz([[0, 1, 0]]) });
    const r = request(drv, VIRTIO_BLK_T_IN, 0, { inLen: 512 });
    drv.notify(0);
    await settle();
    expect([statusOf(drv, w), statusOf(drv, d), statusOf(drv, r)]).toEqual([
      VIRTIO_BLK_S_IOERR,
      VIRTIO_BLK_S_UNSUPP, // DISCARD was not offered, so not negotiated
      VIRTIO_BLK_S_OK,
    ]);
    expect(image.ops).toEqual(['read 0+512']);
  });

  it('hostile chains: no status byte, short header, malformed chains; the device never throws', async () => {
    const { drv, log } = make();
    drv.bringUp();
    const noStatus = drv.addChain(0, [{ addr: drv.put(new Uint8Array(16)), len: 16 }]);
    const shortHdr = drv.alloc(1);
    const sh = drv.addChain(0, [
      { addr: drv.put(new Uint8Array(8)), len: 8 },
      { addr: shortHdr, len: 1, write: true },
    ]);
    // A loop through the descriptor table.
    const q = drv.queues.get(0)!;
    const loop = drv.takeDescs(0, 2);
    drv.writeDesc(q.desc, loop, 0x1000, 16, 1, loop + 1);
    drv.writeDesc(q.desc, loop + 1, 0x1000, 16, 1, loop);
    drv.publish(0, loop);
    // A status byte outside RAM.
    const outStatus = drv.addChain(0, [
      { addr: drv.put(new Uint8Array(16)), len: 16 },
      { addr: 0x7fff_0000, len: 1, write: true },
    ]);
    const ok = request(drv, VIRTIO_BLK_T_FLUSH, 0);
    drv.notify(0);
    await settle();
    expect(drv.takeUsed(0)).toEqual([
      { id: noStatus, len: 0 },
      { id: sh, len: 1 },
      { id: loop, len: 0 },
      { id: outStatus, len: 0 },
      { id: ok.head, len: 1 },
    ]);
    expect(drv.mem.read(shortHdr, 1)[0]).toBe(VIRTIO_BLK_S_IOERR);
    expect(statusOf(drv, ok)).toBe(VIRTIO_BLK_S_OK);
    const text = log.lines.join('\n');
    expect(text).toMatch(/no status byte/);
    expect(text).toMatch(/a loop/);
    expect(drv.status).toBe(15);
  });

  it('runs several queues (MQ) independently', async () => {
    const { drv, image } = make({ numQueues: 3 });
    drv.bringUp({ queues: 3 });
    image.hold = true;
    const a = request(drv, VIRTIO_BLK_T_OUT, 0, { data: pattern(512, 9), qi: 2 });
    const b = request(drv, VIRTIO_BLK_T_IN, 1, { inLen: 512, qi: 1 });
    drv.notify(2);
    drv.notify(1);
    await settle();
    image.release('read');
    await settle();
    expect(drv.takeUsed(1).map((u) => u.id)).toEqual([b.head]);
    expect(drv.takeUsed(2)).toEqual([]);
    image.release('write');
    await settle();
    expect(drv.takeUsed(2).map((u) => u.id)).toEqual([a.head]);
  });

  it('interrupts per queue through MSI-X', async () => {
    const { drv, sink } = make({ numQueues: 2 });
    drv.enablePci();
    drv.enableMsix(3);
    drv.negotiate();
    drv.setupQueue(0, 16, 1);
    drv.setupQueue(1, 16, 0);
    drv.driverOk();
    request(drv, VIRTIO_BLK_T_FLUSH, 0, { qi: 1 });
    drv.notify(1);
    await settle();
    expect(sink.messages).toEqual([[0xfee00000, 0, 0x40]]);
  });

  it('a reset while I/O is in flight drops the completions: guest memory and rings stay untouched', async () => {
    const { drv, image, sink } = make();
    drv.bringUp();
    image.hold = true;
    image.data.fill(0x5a, 0, 512);
    const r = request(drv, VIRTIO_BLK_T_IN, 0, { inLen: 512 });
    drv.notify(0);
    await settle();
    drv.status = 0;
    image.release();
    await settle();
    expect(drv.mem.read(r.data, 512).every((b) => b === 0xee)).toBe(true);
    expect(statusOf(drv, r)).toBe(0xff);
    expect(drv.usedIdx(0)).toBe(0);
    expect(sink.messages).toEqual([]);
    // The device works again after re-initialisation.
    image.hold = false;
    drv.bringUp();
    const r2 = request(drv, VIRTIO_BLK_T_IN, 0, { inLen: 512 });
    drv.notify(0);
    await settle();
    expect(statusOf(drv, r2)).toBe(VIRTIO_BLK_S_OK);
    expect(drv.mem.read(r2.data, 512).every((b) => b === 0x5a)).toBe(true);
  });

  it('saves and loads: requests in flight run again on the loaded device', async () => {
    const a = make();
    a.drv.bringUp();
    a.image.hold = true;
    const w = request(a.drv, VIRTIO_BLK_T_OUT, 2, { data: pattern(1024, 4) });
    a.drv.notify(0);
    await settle();
    await Promise.resolve();
    const saved = JSON.parse(JSON.stringify(a.dev.saveState())) as DeviceState;
    expect(saved.version).toBe(1);

    // The same guest memory (restored RAM) and a fresh image view of the disk.
    const { ctx } = fakeCtx();
    const image = new FakeImage(MiB);
    const b = new VirtioPciTransport(new VirtioBlk({ image }), {
      ctx,
      mem: a.mem,
      msi: new RecordingSink(),
      defer: (fn) => fn(),
    });
    b.loadState(saved);
    expect(b.negotiatedFeatures & bit(VIRTIO_F_VERSION_1)).toBeTruthy();
    await b.device.drain();
    await settle();
    expect(image.ops).toEqual(['write 1024+1024']);
    expect(image.data.subarray(1024, 2048)).toEqual(pattern(1024, 4));
    expect(a.drv.takeUsed(0)).toEqual([{ id: w.head, len: 1 }]);
    expect(statusOf(a.drv, w)).toBe(VIRTIO_BLK_S_OK);
  });

  it('drain waits for requests; close leaves the image to whoever opened it (storage/images.ts)', async () => {
    const { drv, image, dev } = make();
    drv.bringUp();
    image.hold = true;
    request(drv, VIRTIO_BLK_T_FLUSH, 0);
    drv.notify(0);
    await settle();
    let drained = false;
    void dev.device.drain().then(() => (drained = true));
    await settle();
    expect(drained).toBe(false);
    dev.close();
    image.release();
    await settle();
    expect(drained).toBe(true);
    expect(image.closed).toBe(false);
  });
});
