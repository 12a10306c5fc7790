import { describe, expect, it } from 'vitest';
import {
  SplitQueue,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VirtqueueError,
  resolveGuest,
} from '../../../../src/vmm/virtio/virtqueue.js';
import { RAM_SIZE, Rings, guestRam } from './helpers.js';

function setup(opts: { size?: number; eventIdx?: boolean; indirect?: boolean; split?: boolean } = {}) {
  const mem = guestRam(opts.split);
  const rings = new Rings(mem);
  const size = opts.size ?? 8;
  const l = rings.layout(0, size);
  const q = new SplitQueue(0, 16);
  q.size = size;
  q.desc = l.desc;
  q.driver = l.avail;
  q.device = l.used;
  q.eventIdx = opts.eventIdx ?? false;
  q.indirect = opts.indirect ?? true;
  q.ready = true;
  q.activate(mem);
  const errors: string[] = [];
  q.onGuestError = (m) => errors.push(m);
  return { mem, rings, q, l, errors };
}

describe('SplitQueue', () => {
  it('pops a chain of readable then writable buffers and copies across them', () => {
    const { rings, q, mem } = setup();
    const a = rings.put([1, 2, 3]);
    const b = rings.put([4, 5]);
    const w1 = rings.alloc(2);
    const w2 = rings.alloc(3);
    const head = rings.addChain(0, [
      { addr: a, len: 3 },
      { addr: b, len: 2 },
      { addr: w1, len: 2, write: true },
      { addr: w2, len: 3, write: true },
    ]);
    const c = q.pop()!;
    expect(c.head).toBe(head);
    expect([c.readLength, c.writeLength, c.inRam]).toEqual([5, 5, true]);
    expect(Array.from(c.read(1, 3))).toEqual([2, 3, 4]);
    c.write(1, Uint8Array.of(9, 8, 7));
    expect(Array.from(mem.read(w1, 2))).toEqual([0, 9]);
    expect(Array.from(mem.read(w2, 3))).toEqual([8, 7, 0]);
    expect(() => c.read(3, 3)).toThrow(/past the 5-byte/);
    expect(q.pop()).toBeUndefined();
    expect(q.inflightCount).toBe(1);
    q.push(head, 5);
    expect(rings.takeUsed(0)).toEqual([{ id: head, len: 5 }]);
    expect(q.inflightCount).toBe(0);
  });

  it('follows an indirect table, and a direct chain that ends in one', () => {
    const { rings, q, l } = setup();
    const r = rings.put([7, 7]);
    const w = rings.alloc(4);
    const head = rings.addIndirect(0, [
      { addr: r, len: 2 },
      { addr: w, len: 4, write: true },
    ]);
    const c = q.pop()!;
    expect([c.head, c.readLength, c.writeLength]).toEqual([head, 2, 4]);
    // A normal descriptor chained to an indirect one (§2.7.5.3.1 allows it).
    const table = rings.alloc(16);
    rings.writeDesc(table, 0, w, 4, VIRTQ_DESC_F_WRITE, 0);
    const h2 = rings.takeDescs(0, 2);
    rings.writeDesc(l.desc, h2, r, 2, VIRTQ_DESC_F_NEXT, h2 + 1);
    rings.writeDesc(l.desc, h2 + 1, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
    rings.publish(0, h2);
    const c2 = q.pop()!;
    expect([c2.head, c2.readLength, c2.writeLength]).toEqual([h2, 2, 4]);
  });

  it('resolves a buffer that crosses from one RAM region into the next', () => {
    const { rings, q, mem } = setup({ split: true });
    const at = RAM_SIZE / 2 - 2;
    rings.addChain(0, [{ addr: at, len: 4, write: true }]);
    const c = q.pop()!;
    expect(c.writable[0]!.views!.length).toBe(2);
    c.write(0, Uint8Array.of(1, 2, 3, 4));
    expect(Array.from(mem.read(at, 2))).toEqual([1, 2]);
    expect(Array.from(mem.read(at + 2, 2))).toEqual([3, 4]);
    expect(resolveGuest(mem, RAM_SIZE - 1, 2)).toBeUndefined();
  });

  it('marks buffers outside guest RAM instead of failing the chain', () => {
    const { rings, q } = setup();
    rings.addChain(0, [
      { addr: 0x1000, len: 16 },
      { addr: 0x7fff_0000_0000, len: 512, write: true },
      { addr: 2 ** 62, len: 1, write: true },
    ]);
    const c = q.pop()!;
    expect(c.inRam).toBe(false);
    expect(c.writable.map((s) => s.views)).toEqual([undefined, undefined]);
    expect(() => c.write(0, new Uint8Array(1))).toThrow(/not in guest RAM/);
    expect(c.read(0, 16).length).toBe(16);
  });

  describe('hostile chains are returned unused with a guest error, and the queue goes on', () => {
    const cases: Array<[string, (r: Rings, desc: number, head: number) => void, RegExp]> = [
      [
        'a loop',
        (r, d, h) => {
          r.writeDesc(d, h, 0x1000, 8, VIRTQ_DESC_F_NEXT, h + 1);
          r.writeDesc(d, h + 1, 0x1000, 8, VIRTQ_DESC_F_NEXT, h);
        },
        /more than 8 descriptors/,
      ],
      [
        'a next index past the table',
        (r, d, h) => r.writeDesc(d, h, 0x1000, 8, VIRTQ_DESC_F_NEXT, 99),
        /index 99 past/,
      ],
      ['a zero-length buffer', (r, d, h) => r.writeDesc(d, h, 0x1000, 0, 0, 0), /zero-length/],
      [
        'readable after writable',
        (r, d, h) => {
          r.writeDesc(d, h, 0x1000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, h + 1);
          r.writeDesc(d, h + 1, 0x2000, 8, 0, 0);
        },
        /device-readable descriptor .* after a device-writable/,
      ],
      [
        'an indirect table inside an indirect table',
        (r, d, h) => {
          const inner = r.alloc(16);
          r.writeDesc(inner, 0, 0x1000, 8, 0, 0);
          const outer = r.alloc(16);
          r.writeDesc(outer, 0, inner, 16, VIRTQ_DESC_F_INDIRECT, 0);
          r.writeDesc(d, h, outer, 16, VIRTQ_DESC_F_INDIRECT, 0);
        },
        /inside an indirect table/,
      ],
      [
        'INDIRECT with NEXT',
        (r, d, h) => r.writeDesc(d, h, r.alloc(16), 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, h + 1),
        /with NEXT/,
      ],
      [
        'an indirect table of 15 bytes',
        (r, d, h) => r.writeDesc(d, h, 0x1000, 15, VIRTQ_DESC_F_INDIRECT, 0),
        /of 15 bytes/,
      ],
      [
        'a huge indirect table',
        (r, d, h) => r.writeDesc(d, h, 0x1000, 16 * 4096, VIRTQ_DESC_F_INDIRECT, 0),
        /4096 entries/,
      ],
      [
        'an indirect table outside RAM',
        (r, d, h) => r.writeDesc(d, h, 0x4000_0000, 64, VIRTQ_DESC_F_INDIRECT, 0),
        /not in guest RAM/,
      ],
      [
        'a loop inside an indirect table',
        (r, d, h) => {
          const t = r.alloc(32);
          r.writeDesc(t, 0, 0x1000, 8, VIRTQ_DESC_F_NEXT, 1);
          r.writeDesc(t, 1, 0x1000, 8, VIRTQ_DESC_F_NEXT, 0);
          r.writeDesc(d, h, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
        },
        /more than 2 descriptors/,
      ],
      [
        'a chain of 4 GiB',
        (r, d, h) => {
          r.writeDesc(d, h, 0x1000, 0xffffffff, VIRTQ_DESC_F_NEXT, h + 1);
          r.writeDesc(d, h + 1, 0x1000, 1, 0, 0);
        },
        /4 GiB/,
      ],
    ];
    for (const [what, build, msg] of cases) {
      it(what, () => {
        const { rings, q, l, errors } = setup();
        const head = rings.takeDescs(0, 2);
        build(rings, l.desc, head);
        rings.publish(0, head);
        const good = rings.addChain(0, [{ addr: 0x3000, len: 4, write: true }]);
        const c = q.pop();
        expect(c?.head).toBe(good);
        expect(errors).toHaveLength(1);
        expect(errors[0]).toMatch(msg);
        expect(rings.takeUsed(0)).toEqual([{ id: head, len: 0 }]);
      });
    }

    it('indirect descriptors without VIRTIO_F_INDIRECT_DESC', () => {
      const { rings, q, errors } = setup({ indirect: false });
      const head = rings.addIndirect(0, [{ addr: 0x1000, len: 4 }]);
      expect(q.pop()).toBeUndefined();
      expect(errors[0]).toMatch(/without VIRTIO_F_INDIRECT_DESC/);
      expect(rings.takeUsed(0)).toEqual([{ id: head, len: 0 }]);
    });
  });

  it('a broken ring is a VirtqueueError: index jump, head past the table, head in use', () => {
    let s = setup();
    s.rings.setAvailIdx(0, 9);
    expect(() => s.q.pop()).toThrow(VirtqueueError);
    expect(() => s.q.pop()).toThrow(/moved from 0 to 9/);

    s = setup();
    s.rings.publish(0, 8);
    expect(() => s.q.pop()).toThrow(/head descriptor 8 past/);

    s = setup();
    const h = s.rings.addChain(0, [{ addr: 0x1000, len: 4 }]);
    s.q.pop();
    s.rings.publish(0, h);
    expect(() => s.q.pop()).toThrow(/while in use/);
  });

  it('refuses rings outside RAM or misaligned, and sizes that are not powers of two', () => {
    const mem = guestRam();
    const q = new SplitQueue(0, 16);
    q.desc = 0x1000;
    q.driver = 0x2000;
    q.device = RAM_SIZE - 8;
    expect(() => q.activate(mem)).toThrow(/device area .* not inside/);
    q.device = 0x3002;
    expect(() => q.activate(mem)).toThrow(/misaligned/);
    q.device = 0x3000;
    q.size = 12;
    expect(() => q.activate(mem)).toThrow(/power of two/);
    q.size = 16;
    q.activate(mem);
    expect(q.active).toBe(true);
    expect(() => new SplitQueue(0, 100)).toThrow(RangeError);
  });

  it('EVENT_IDX: publishes avail_event when the ring runs dry and interrupts per used_event', () => {
    const { rings, q } = setup({ eventIdx: true });
    const heads = [0, 1, 2].map(() => rings.addChain(0, [{ addr: 0x1000, len: 4, write: true }]));
    while (q.pop());
    expect(rings.availEvent(0)).toBe(3);
    // The driver wants an interrupt once the used index passes 1 (used_event = 1).
    rings.setUsedEvent(0, 1);
    q.push(heads[0]!, 4);
    expect(q.needsInterrupt()).toBe(true); // the first decision always interrupts
    q.push(heads[1]!, 4);
    expect(q.needsInterrupt()).toBe(true); // used index went 1 -> 2, past used_event 1
    q.push(heads[2]!, 4);
    expect(q.needsInterrupt()).toBe(false); // 2 -> 3: used_event 1 is behind
  });

  it('pushMany returns several chains in order with one used-index update, skipping heads not in flight', () => {
    const { rings, q } = setup();
    const heads = [0, 1, 2].map(() => rings.addChain(0, [{ addr: 0x1000, len: 8, write: true }]));
    while (q.pop());
    q.pushMany([
      { head: heads[2]!, written: 8 },
      { head: 77, written: 1 }, // not one of ours
      { head: heads[0]!, written: 3 },
    ]);
    expect(rings.takeUsed(0)).toEqual([
      { id: heads[2], len: 8 },
      { id: heads[0], len: 3 },
    ]);
    expect(q.inflightCount).toBe(1);
    q.pushMany([{ head: heads[2]!, written: 8 }]); // twice: ignored
    expect(rings.takeUsed(0)).toEqual([]);
  });

  it('without EVENT_IDX interrupts unless the driver set VIRTQ_AVAIL_F_NO_INTERRUPT', () => {
    const { rings, q } = setup();
    const h = rings.addChain(0, [{ addr: 0x1000, len: 4, write: true }]);
    q.pop();
    q.push(h, 4);
    expect(q.needsInterrupt()).toBe(true);
    rings.setAvailFlags(0, VIRTQ_AVAIL_F_NO_INTERRUPT);
    expect(q.needsInterrupt()).toBe(false);
  });

  it('wraps the 16-bit ring indices', () => {
    const { rings, q, mem } = setup({ size: 4 });
    // Start both sides just below the wrap.
    const st = q.saveState();
    q.loadState({ ...st, lastAvail: 65530, usedIdx: 65530 });
    q.activate(mem);
    const l = rings.queues.get(0)!;
    l.availIdx = l.usedSeen = 65530;
    rings.setAvailIdx(0, 65530);
    mem.dataView(l.used, 4).setUint16(2, 65530, true);
    for (let n = 0; n < 20; n++) {
      const h = rings.addChain(0, [{ addr: 0x1000, len: 4 }]);
      expect(q.pop()!.head).toBe(h);
      q.push(h, 0);
      expect(rings.takeUsed(0)).toEqual([{ id: h, len: 0 }]);
    }
    expect(rings.usedIdx(0)).toBe((65530 + 20) & 0xffff);
  });

  it('saves and restores positions and in-flight heads; re-parses them', () => {
    const { rings, q, mem, l } = setup();
    const a = rings.addChain(0, [{ addr: 0x1000, len: 4 }]);
    const b = rings.addChain(0, [{ addr: 0x2000, len: 8, write: true }]);
    q.pop();
    q.pop();
    q.push(a, 0);
    const s = JSON.parse(JSON.stringify(q.saveState())) as ReturnType<SplitQueue['saveState']>;
    expect(s.inflight).toEqual([b]);
    const q2 = new SplitQueue(0, 16);
    q2.loadState(s);
    q2.activate(mem);
    expect(q2.pop()).toBeUndefined();
    const again = q2.inflightChains();
    expect(again.map((c) => [c.head, c.writeLength])).toEqual([[b, 8]]);
    q2.push(b, 8);
    expect(rings.takeUsed(0)).toEqual([
      { id: a, len: 0 },
      { id: b, len: 8 },
    ]);
    expect(() => q2.loadState({ ...s, inflight: [99] })).toThrow(/bad saved state/);
    expect(() => q2.loadState({ ...s, size: 64 })).toThrow(/bad saved state/);
    expect(l.size).toBe(8);
  });
});
