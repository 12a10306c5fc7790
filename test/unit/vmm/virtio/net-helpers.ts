/**
 * virtio-net test kit: a NetBackend that keeps to the flow-control
 * handshake of src/vmm/net/backend.ts (hold the refused frame, pause until
 * resume(), onWritable after a refused send), two of them as a cable
 * between two devices, and a driver that posts receive buffers and
 * transmit chains and reads frames back out of guest memory.
 */
import type { NetBackend, NetOffloads } from '../../../../src/vmm/net/backend.js';
import {
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_PCI_CLASS,
  VirtioNet,
  type VirtioNetOptions,
} from '../../../../src/vmm/virtio/net.js';
import { VirtioPciTransport } from '../../../../src/vmm/virtio/pci-transport.js';
import { RecordingSink, fakeCtx } from '../pci/helpers.js';
import { Driver, guestRam, type Buf } from './helpers.js';

export const HDR = 12;
export const RXQ = 0;
export const TXQ = 1;

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * One end of a test network. Frames for the device wait in `inbox`; the
 * first is delivered again after a refusal only once the device calls
 * resume(). With a peer, `send` puts the frame in the peer's inbox and is
 * refused (false) while that inbox holds `capacity` frames: a cable with
 * back-pressure both ways.
 */
export class TestNetBackend implements NetBackend {
  /** Every frame this end took from its device (copies), in order. */
  readonly sent: Uint8Array[] = [];
  /** Frames waiting for the device, oldest first. */
  readonly inbox: Uint8Array[] = [];
  /** Frames the peer may queue in `inbox` before its sends are refused. */
  capacity = 1;
  /** Refuse every send (a full host queue) until `becomeWritable()`. */
  full = false;
  /** Make `send` throw (a broken backend). */
  failSend = false;
  paused = false;
  /** Calls of `send`, refused ones included. */
  sendCalls = 0;
  resumes = 0;
  refusals = 0;
  closed = false;
  offloads: NetOffloads | undefined;
  peer: TestNetBackend | undefined;
  private receiver: ((frame: Uint8Array) => boolean) | undefined;
  private writableCb: (() => void) | undefined;
  private owesWritable = false;

  constructor(readonly vnetHeader: boolean) {}

  send(frame: readonly Uint8Array[]): boolean {
    this.sendCalls++;
    if (this.closed) return true;
    if (this.failSend) throw new Error('backend on fire');
    if (this.full || (this.peer && this.peer.inbox.length >= this.peer.capacity)) {
      this.owesWritable = true;
      return false;
    }
    const copy = concat(frame);
    this.sent.push(copy);
    if (this.peer) {
      this.peer.inbox.push(copy);
      this.peer.pump();
    }
    return true;
  }

  onWritable(fn: () => void): void {
    this.writableCb = fn;
  }

  setReceiver(fn: (frame: Uint8Array) => boolean): void {
    this.receiver = fn;
    this.pump();
  }

  resume(): void {
    this.resumes++;
    if (!this.paused) return;
    this.paused = false;
    this.pump();
  }

  setOffloads(o: NetOffloads): void {
    this.offloads = { ...o };
  }

  close(): void {
    this.closed = true;
    this.receiver = undefined;
  }

  /** A frame from the host side (ignores `capacity`). */
  inject(frame: Uint8Array): void {
    this.inbox.push(frame.slice());
    this.pump();
  }

  /** The host queue drained: sends are taken again. */
  becomeWritable(): void {
    this.full = false;
    this.notifyWritable();
  }

  private notifyWritable(): void {
    if (!this.owesWritable || this.full) return;
    this.owesWritable = false;
    this.writableCb?.();
  }

  private pump(): void {
    while (!this.paused && !this.closed && this.receiver && this.inbox.length) {
      if (!this.receiver(this.inbox[0]!)) {
        this.refusals++;
        this.paused = true;
        return;
      }
      this.inbox.shift();
      this.peer?.notifyWritable();
    }
  }
}

/** Two backends wired to each other. */
export function cable(vnetHeader: boolean): [TestNetBackend, TestNetBackend] {
  const a = new TestNetBackend(vnetHeader);
  const b = new TestNetBackend(vnetHeader);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

export const MAC_A = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
export const MAC_B = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];

/** A virtio-net device behind a PCI transport with queue work on setImmediate, and its driver. */
export function makeNet(opts: Partial<VirtioNetOptions> & { backend?: NetBackend; vnet?: boolean } = {}) {
  const { ctx, log } = fakeCtx();
  const mem = guestRam();
  const backend = opts.backend ?? new TestNetBackend(opts.vnet ?? false);
  const net = new VirtioNet({ mac: MAC_A, ...opts, backend });
  const sink = new RecordingSink();
  const dev = new VirtioPciTransport(net, { ctx, mem, msi: sink, classCode: VIRTIO_NET_PCI_CLASS });
  dev.attach({ setIntx: () => {}, remap: () => {} });
  const drv = new NetDriver(dev, mem);
  return { dev, drv, mem, net, backend: backend as TestNetBackend, log, sink };
}

export interface RxFrame {
  hdr: Uint8Array;
  payload: Uint8Array;
  /** Used buffers the frame took. */
  buffers: number;
}

/** Header fields (little-endian virtio_net_hdr_v1). */
export function header(
  f: Partial<
    Record<'flags' | 'gsoType' | 'hdrLen' | 'gsoSize' | 'csumStart' | 'csumOffset' | 'numBuffers', number>
  > = {},
): Uint8Array {
  const b = new Uint8Array(HDR);
  const v = new DataView(b.buffer);
  v.setUint8(0, f.flags ?? 0);
  v.setUint8(1, f.gsoType ?? 0);
  v.setUint16(2, f.hdrLen ?? 0, true);
  v.setUint16(4, f.gsoSize ?? 0, true);
  v.setUint16(6, f.csumStart ?? 0, true);
  v.setUint16(8, f.csumOffset ?? 0, true);
  v.setUint16(10, f.numBuffers ?? 0, true);
  return b;
}

export const numBuffersOf = (hdr: Uint8Array) => new DataView(hdr.buffer, hdr.byteOffset).getUint16(10, true);

/** An Ethernet frame of `len` bytes (destination, source, type 0x88b5, then a pattern). */
export function ethFrame(len: number, seed: number, dst = MAC_B, src = MAC_A): Uint8Array {
  const f = new Uint8Array(len);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  for (let i = 14; i < len; i++) f[i] = (i * 13 + seed) & 0xff;
  return f;
}

/** The driver side of virtio-net: receive buffers in, transmit chains out, frames read back. */
export class NetDriver extends Driver {
  /** Receive buffers posted, by head. */
  readonly rxBufs = new Map<number, { addr: number; len: number }>();
  /** Mergeable buffers (negotiated MRG_RXBUF): frames span buffers by num_buffers. */
  get mergeable(): boolean {
    return (this.dev.negotiatedFeatures & (1n << BigInt(VIRTIO_NET_F_MRG_RXBUF))) !== 0n;
  }

  /** Both queues of `size` entries, up to DRIVER_OK. */
  up(opts: { size?: number; features?: bigint } = {}): void {
    this.bringUp({ queues: 2, size: opts.size ?? 64, features: opts.features });
  }

  /** Posts `n` receive chains of one `size`-byte device-writable buffer each (no notify). */
  postRx(n: number, size: number): number[] {
    const heads: number[] = [];
    for (let i = 0; i < n; i++) {
      const addr = this.alloc(size);
      this.mem.fill(addr, size, 0xee);
      const head = this.addChain(RXQ, [{ addr, len: size, write: true }]);
      this.rxBufs.set(head, { addr, len: size });
      heads.push(head);
    }
    return heads;
  }

  /** Puts `hdr` + `payload` in guest memory as one transmit chain, split at `cuts` (byte offsets). */
  postTx(hdr: Uint8Array, payload: Uint8Array, cuts: number[] = [HDR]): number {
    const all = new Uint8Array(hdr.length + payload.length);
    all.set(hdr);
    all.set(payload, hdr.length);
    const addr = this.put(all);
    const bounds = [0, ...cuts.filter((c) => c > 0 && c < all.length), all.length];
    const bufs: Buf[] = [];
    for (let i = 0; i + 1 < bounds.length; i++)
      bufs.push({ addr: addr + bounds[i]!, len: bounds[i + 1]! - bounds[i]! });
    return this.addChain(TXQ, bufs);
  }

  /** Receive heads the device returned unused (length 0), in order. */
  readonly rxUnused: number[] = [];

  /** Frames delivered since the last call, assembled from the used ring by num_buffers. */
  received(): RxFrame[] {
    const used = this.takeUsed(RXQ);
    const frames: RxFrame[] = [];
    for (let i = 0; i < used.length;) {
      const first = used[i]!;
      if (first.len === 0) {
        this.rxUnused.push(first.id);
        i++;
        continue;
      }
      const buf = this.rxBufs.get(first.id);
      if (!buf) throw new Error(`used head ${first.id} was not posted`);
      const bytes = this.mem.read(buf.addr, first.len);
      const hdr = bytes.slice(0, HDR);
      const n = this.mergeable ? numBuffersOf(hdr) : 1;
      const parts: Uint8Array[] = [bytes.slice(HDR)];
      for (let k = 1; k < n; k++) {
        const u = used[i + k];
        if (!u) throw new Error(`frame announces ${n} buffers, ${k} used`);
        parts.push(this.mem.read(this.rxBufs.get(u.id)!.addr, u.len));
      }
      frames.push({ hdr, payload: concat(parts), buffers: n });
      i += n;
    }
    return frames;
  }
}
