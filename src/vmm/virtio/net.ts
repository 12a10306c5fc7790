/**
 * virtio-net (Virtio 1.2 §5.1) on a NetBackend (net/backend.ts): a
 * VirtioDevice that knows nothing of PCI, put behind the virtio-pci
 * transport as virtio-blk is (with class code VIRTIO_NET_PCI_CLASS).
 *
 * Queues: receiveq1 (0) and transmitq1 (1). Every frame on either starts
 * with a 12-byte virtio_net_hdr_v1 (§5.1.6; num_buffers always there).
 *
 * Transmit (§5.1.6.2): one chain is one frame, header first; the framing
 * of buffers is not relied on (§2.6.4). The frame goes to the backend as
 * views of guest RAM (no copy) behind a private copy of the header, which
 * is checked once and is what the backend sees. A backend that is full
 * keeps the chain in flight until it calls back (`onWritable`); chains
 * behind it wait on the ring. Used length is 0 (nothing is written).
 *
 * Receive (§5.1.6.3, §5.1.6.4): a frame from the backend fills one chain,
 * or with VIRTIO_NET_F_MRG_RXBUF as many as it needs (num_buffers says
 * how many). Chains popped for a frame that did not fit yet stay reserved,
 * in order, for the next attempt. When the guest has no room, the device
 * refuses the frame and the backend holds it until the next receive-queue
 * notification (the handshake is described in net/backend.ts): no frame is
 * lost for lack of buffers. Frames are dropped (counted in `stats`) when
 * the link is down, when no buffer the guest could ever post holds them,
 * or when they are malformed.
 *
 * Header: a backend with a vnet header (a tap with IFF_VNET_HDR) gets and
 * gives the header as is, so checksum and segmentation offloads pass
 * through (CSUM, GUEST_CSUM, HOST/GUEST_TSO4/6 and ECN are offered only
 * then), except num_buffers, which the device owns; flags and GSO types the
 * driver did not negotiate are refused both ways. Without one (slirp) the
 * header is stripped on transmit, where a checksum or GSO request is a
 * guest error (those features were not offered), and a zero header is
 * prepended on receive.
 *
 * A guest controls every descriptor: a transmit chain that is short, too
 * large (over MAX_FRAME_WITH_HEADER), outside RAM or has device-writable
 * buffers, and a receive chain that is device-readable, outside RAM or
 * shorter than the header, is returned unused with a rate-limited guest
 * error (`transport.guestError`, as virtio-blk) and counted; the device
 * goes on with the next one. A broken ring (VirtqueueError) is
 * DEVICE_NEEDS_RESET as for every device. Nothing here throws into the
 * transport or the backend.
 *
 * Interrupts are batched per queue and turn, as for virtio-blk; a merged
 * frame's chains are published with one used-index update (completeMany).
 *
 * Saved state (versioned): MAC, MTU and link status. Chains in flight are
 * the transport's: receive chains reserved for a frame become reserved
 * again; transmit chains in flight were never taken by the backend (one
 * that is taken completes at once), so they are sent after a load. A frame
 * the backend holds back is the backend's, not saved: after a restore in
 * another process it is lost, as frames on a wire may be (the protocols
 * above retransmit).
 *
 * Not implemented: the control queue (CTRL_VQ and all that depends on it:
 * RX mode, MAC and VLAN filters, GUEST_ANNOUNCE, MQ, CTRL_GUEST_OFFLOADS),
 * UFO/USO, RSS and hash reports, RSC, SPEED_DUPLEX. The device filters
 * nothing: every frame goes to the guest, as with promiscuous mode on.
 */
import { DeviceStateError } from '../core/device.js';
import { RateLimitedLog } from '../core/log.js';
import {
  MAX_FRAME_WITH_HEADER,
  NO_OFFLOADS,
  VNET_HDR_LEN,
  type NetBackend,
  type NetOffloads,
} from '../net/backend.js';
import { bit, type VirtioDevice, type VirtioTransport } from './device.js';
import {
  ETH_HLEN,
  GUEST_OFFLOADS,
  MIN_MTU,
  NetCfg,
  NetHdr,
  OFFLOAD_FEATURES,
  RX_QUEUE,
  TX_QUEUE,
  VIRTIO_ID_NET,
  VIRTIO_NET_F_GUEST_CSUM,
  VIRTIO_NET_F_GUEST_ECN,
  VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_GUEST_TSO6,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_S_LINK_UP,
  featureDependencyError,
  macError,
  readableViews,
  rxHeaderError,
  txHeaderError,
} from './net-header.js';
import { ChainError, VirtqueueError, type Chain, type SplitQueue } from './virtqueue.js';

export * from './net-header.js';
export const VIRTIO_NET_STATE_VERSION = 1;

export interface VirtioNetOptions {
  backend: NetBackend;
  /** The NIC's address (6 bytes, unicast, not all zero): the caller derives a stable one. */
  mac: Uint8Array | readonly number[];
  name?: string;
  /** Largest queue size; default 256. */
  queueSize?: number;
  /** Offer VIRTIO_NET_F_MTU with this MTU (68..65535); default: not offered. */
  mtu?: number;
  /** Offer checksum and segmentation offloads when the backend has a vnet header; default true. */
  offloads?: boolean;
  /** Link status at power-on; default up. */
  linkUp?: boolean;
}

/** Counters since the device was created (not saved). */
export interface VirtioNetStats {
  txFrames: number;
  txBytes: number;
  /** Transmit frames dropped: guest errors, link down, backend failures. */
  txDropped: number;
  rxFrames: number;
  rxBytes: number;
  /** Received frames dropped: link down, no room the guest could ever give, malformed. */
  rxDropped: number;
  /** Guest errors (each also logged, rate-limited). */
  guestErrors: number;
}

/** The device's own part of saved state. */
export interface VirtioNetState {
  version: number;
  mac: number[];
  /** The MTU offered in config space, or null when VIRTIO_NET_F_MTU is not offered. */
  mtu: number | null;
  linkUp: boolean;
}

export class VirtioNet implements VirtioDevice {
  readonly name: string;
  readonly deviceType = VIRTIO_ID_NET;
  readonly features: bigint;
  readonly numQueues = 2;
  readonly queueSize: number;
  readonly backend: NetBackend;
  readonly stats: VirtioNetStats = {
    txFrames: 0,
    txBytes: 0,
    txDropped: 0,
    rxFrames: 0,
    rxBytes: 0,
    rxDropped: 0,
    guestErrors: 0,
  };
  private mac: Uint8Array;
  private readonly mtu: number | undefined;
  private linkUp: boolean;
  private queues: readonly SplitQueue[] = [];
  private transport: VirtioTransport | undefined;
  /** Complaints about the host side (the backend), rate-limited like guest errors. */
  private hostErrors: RateLimitedLog | undefined;
  /** Receive chains popped for a frame that did not fit yet, oldest first: used before the ring. */
  private rxReserved: Chain[] = [];
  /** A frame was refused: the backend holds it and waits for `resume()`. */
  private rxWaiting = false;
  /** Transmit chains popped and not taken by the backend (it was full), oldest first. */
  private txBacklog: Chain[] = [];
  /** The backend refused a frame and owes an `onWritable` call. */
  private txBlocked = false;
  /** The guest offload features the backend was last told about. */
  private offloadsSet: bigint | undefined;
  private closed = false;

  constructor(opts: VirtioNetOptions) {
    this.name = opts.name ?? 'virtio-net';
    this.queueSize = opts.queueSize ?? 256;
    const why = macError(opts.mac);
    if (why) throw new RangeError(`${this.name}: mac ${why}`);
    this.mac = Uint8Array.from(opts.mac);
    if (opts.mtu !== undefined && (!Number.isInteger(opts.mtu) || opts.mtu < MIN_MTU || opts.mtu > 0xffff)) {
      throw new RangeError(`${this.name}: mtu must be an integer in ${MIN_MTU}..65535`);
    }
    this.mtu = opts.mtu;
    this.linkUp = opts.linkUp ?? true;
    this.backend = opts.backend;
    let features = bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS) | bit(VIRTIO_NET_F_MRG_RXBUF);
    if (this.mtu !== undefined) features |= bit(VIRTIO_NET_F_MTU);
    if (this.backend.vnetHeader && (opts.offloads ?? true)) features |= OFFLOAD_FEATURES;
    this.features = features;
  }

  /** Whether the link is up (the status the guest reads). */
  get link(): boolean {
    return this.linkUp;
  }

  /** The MAC address in config space. */
  get macAddress(): Uint8Array {
    return this.mac.slice();
  }

  /**
   * Plugs or unplugs the cable: the status field changes and the driver
   * gets a configuration interrupt (§5.1.4.2). While the link is down,
   * frames both ways are dropped, as QEMU does.
   */
  setLink(up: boolean): void {
    if (up === this.linkUp) return;
    this.linkUp = up;
    if (!up) {
      // What waits would never go out: drop it now (backend's held frame, transmit backlog).
      this.resumeRx();
      if (this.transport?.running) this.transport.kick(TX_QUEUE);
    }
    this.transport?.configChanged();
  }

  // ---- VirtioDevice ----------------------------------------------------------

  attach(queues: readonly SplitQueue[], transport: VirtioTransport): void {
    if (this.transport) throw new Error(`${this.name}: already attached to a virtio transport`);
    this.queues = queues;
    this.transport = transport;
    this.hostErrors = new RateLimitedLog(transport.log);
    this.backend.onWritable(() => this.writable());
    this.backend.setReceiver((frame) => this.receive(frame));
  }

  readConfig(): Uint8Array {
    const b = new Uint8Array(NetCfg.size);
    const v = new DataView(b.buffer);
    b.set(this.mac, NetCfg.mac);
    v.setUint16(NetCfg.status, this.linkUp ? VIRTIO_NET_S_LINK_UP : 0, true);
    v.setUint16(NetCfg.maxVirtqueuePairs, 1, true);
    v.setUint16(NetCfg.mtu, this.mtu ?? 0, true);
    return b;
  }

  validateFeatures(features: bigint): string | undefined {
    return featureDependencyError(features);
  }

  queueNotify(queue: SplitQueue): void {
    this.syncOffloads();
    if (queue.index === RX_QUEUE) {
      // New receive buffers: the frame the backend holds may fit now.
      this.resumeRx();
    } else if (queue.index === TX_QUEUE) {
      this.transmit(queue);
    }
  }

  reset(): void {
    // The rings are gone; the backend still holds a refused frame
    // (rxWaiting: resumed at the next receive-queue notification) and
    // still owes an onWritable call (txBlocked).
    this.rxReserved = [];
    this.txBacklog = [];
    this.syncOffloads();
  }

  saveState(): VirtioNetState {
    return {
      version: VIRTIO_NET_STATE_VERSION,
      mac: [...this.mac],
      mtu: this.mtu ?? null,
      linkUp: this.linkUp,
    };
  }

  loadState(state: unknown): void {
    const s = state as Partial<VirtioNetState> | undefined;
    if (typeof s !== 'object' || s === null) throw new DeviceStateError(`${this.name}: no virtio-net state`);
    if (s.version !== VIRTIO_NET_STATE_VERSION) {
      throw new DeviceStateError(
        `${this.name}: cannot load virtio-net state version ${String(s.version)} (expected ${VIRTIO_NET_STATE_VERSION})`,
      );
    }
    if (!Array.isArray(s.mac) || macError(s.mac) || typeof s.linkUp !== 'boolean' || s.mtu === undefined) {
      throw new DeviceStateError(`${this.name}: bad virtio-net state`);
    }
    // The MTU decides what is offered; it must not change under the guest.
    if ((s.mtu ?? undefined) !== this.mtu) {
      throw new DeviceStateError(
        `${this.name}: saved with MTU ${s.mtu ?? 'not offered'}, this device has ${this.mtu ?? 'none'}`,
      );
    }
    // The guest read the MAC at probe and sends from it: keep the saved one (as QEMU).
    this.mac = Uint8Array.from(s.mac);
    this.linkUp = s.linkUp;
    // A held frame would now be dropped: let the backend go on.
    if (!this.linkUp) this.resumeRx();
  }

  stateLoaded(): void {
    this.offloadsSet = undefined;
    this.syncOffloads();
    const t = this.t;
    if (!t.running) return;
    const rx = this.queues[RX_QUEUE]!;
    const tx = this.queues[TX_QUEUE]!;
    // Receive chains in flight were reserved for a frame: reserved again.
    if (rx.active) this.rxReserved = rx.inflightChains();
    // Transmit chains in flight were never taken by the backend: the
    // transport's kick after a load sends them, then the ring.
    if (tx.active) this.txBacklog = tx.inflightChains();
  }

  /** The transport stopped: closes the backend (the device owns it). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.rxReserved = [];
    this.txBacklog = [];
    try {
      this.backend.close();
    } catch (e) {
      this.transport?.log.error(`${this.name}: closing the network backend: ${(e as Error).message}`);
    }
  }

  // ---- helpers ---------------------------------------------------------------

  /** The transport this device was attached to. */
  private get t(): VirtioTransport {
    if (!this.transport) throw new Error(`${this.name}: not attached to a virtio transport`);
    return this.transport;
  }

  private guestError(key: string, msg: string): void {
    this.stats.guestErrors++;
    this.t.guestError(key, msg);
  }

  private hostError(key: string, msg: string): void {
    this.hostErrors?.warn(`${this.name}-${key}`, () => `${this.name}: ${msg}`);
  }

  private has(feature: number): boolean {
    return this.t.hasFeature(feature);
  }

  /** Tells a vnet-header backend which receive offloads the running driver accepted, when that changed. */
  private syncOffloads(): void {
    const t = this.transport;
    if (!t || !this.backend.vnetHeader || !this.backend.setOffloads || this.closed) return;
    const f = t.running ? t.negotiatedFeatures & GUEST_OFFLOADS : 0n;
    if (f === this.offloadsSet) return;
    this.offloadsSet = f;
    const o: NetOffloads = f
      ? {
          csum: (f & bit(VIRTIO_NET_F_GUEST_CSUM)) !== 0n,
          tso4: (f & bit(VIRTIO_NET_F_GUEST_TSO4)) !== 0n,
          tso6: (f & bit(VIRTIO_NET_F_GUEST_TSO6)) !== 0n,
          ecn: (f & bit(VIRTIO_NET_F_GUEST_ECN)) !== 0n,
        }
      : { ...NO_OFFLOADS };
    try {
      this.backend.setOffloads(o);
    } catch (e) {
      this.hostError('offloads', `setting offloads: ${(e as Error).message}`);
    }
  }

  /** Lets the backend deliver again if it holds a frame we refused. */
  private resumeRx(): void {
    if (!this.rxWaiting || this.closed) return;
    this.rxWaiting = false;
    try {
      this.backend.resume();
    } catch (e) {
      this.t.log.error(`${this.name}: network backend resume: ${(e as Error).stack ?? e}`);
    }
  }

  /** The backend can take frames again: send what waits, on the event loop. */
  private writable(): void {
    this.txBlocked = false;
    if (!this.closed && this.transport?.running) this.transport.kick(TX_QUEUE);
  }

  // ---- transmit (§5.1.6.2) ---------------------------------------------------

  private transmit(queue: SplitQueue): void {
    if (this.txBlocked && this.linkUp) return; // onWritable kicks us again
    const epoch = this.t.epoch;
    while (this.txBacklog.length) {
      if (!this.sendChain(queue, this.txBacklog[0]!, epoch)) return;
      this.txBacklog.shift();
    }
    // At most one ring's worth per turn, so a driver that keeps adding
    // cannot hold the event loop.
    for (let n = 0; n < queue.size; n++) {
      const chain = queue.pop();
      if (!chain) return;
      if (!this.sendChain(queue, chain, epoch)) {
        this.txBacklog.push(chain);
        return;
      }
    }
    if (queue.hasAvailable()) this.t.kick(queue.index);
  }

  /** Sends (or drops) one chain and completes it; false when the backend is full (the chain stays in flight). */
  private sendChain(queue: SplitQueue, chain: Chain, epoch: number): boolean {
    const frame = this.linkUp && !this.closed ? this.txFrame(chain) : undefined;
    if (frame) {
      let taken: boolean | undefined;
      try {
        taken = this.backend.send(frame.iov);
      } catch (e) {
        this.hostError('send', `network backend send failed: ${(e as Error).message}`);
      }
      if (taken === false) {
        this.txBlocked = true;
        return false;
      }
      if (taken) {
        this.stats.txFrames++;
        this.stats.txBytes += frame.bytes;
      } else this.stats.txDropped++;
    } else this.stats.txDropped++;
    this.t.complete(queue, chain.head, 0, epoch);
    return true;
  }

  /** The buffers the backend gets for a transmit chain, or undefined (guest error logged) to drop it. */
  private txFrame(chain: Chain): { iov: Uint8Array[]; bytes: number } | undefined {
    const at = `transmit chain at descriptor ${chain.head}`;
    if (chain.writable.length) {
      this.guestError('tx-chain', `${at} has device-writable buffers; dropped`);
      return undefined;
    }
    if (chain.readLength < VNET_HDR_LEN + ETH_HLEN) {
      this.guestError('tx-short', `${at} is ${chain.readLength} bytes, less than header and Ethernet header`);
      return undefined;
    }
    if (chain.readLength > MAX_FRAME_WITH_HEADER) {
      this.guestError('tx-oversize', `${at} is ${chain.readLength} bytes (at most ${MAX_FRAME_WITH_HEADER})`);
      return undefined;
    }
    if (!chain.inRam) {
      this.guestError('tx-buffer', `${at} has a buffer outside guest RAM; dropped`);
      return undefined;
    }
    // A private copy: what is checked is what the backend gets.
    const hdr = chain.read(0, VNET_HDR_LEN);
    const payload = chain.readLength - VNET_HDR_LEN;
    const why = txHeaderError(hdr, payload, this.backend.vnetHeader, (f) => this.has(f));
    if (why) {
      this.guestError('tx-header', `${at}: ${why}; dropped`);
      return undefined;
    }
    const iov = readableViews(chain, VNET_HDR_LEN);
    if (this.backend.vnetHeader) {
      // num_buffers means nothing on transmit; the device owns it.
      hdr[NetHdr.numBuffers] = hdr[NetHdr.numBuffers + 1] = 0;
      iov.unshift(hdr);
    }
    return { iov, bytes: payload };
  }

  // ---- receive (§5.1.6.3, §5.1.6.4) ------------------------------------------

  /** The backend's receiver: true when the frame is consumed (delivered or dropped), false to hold it. */
  private receive(frame: Uint8Array): boolean {
    try {
      return this.receiveFrame(frame);
    } catch (e) {
      if (e instanceof VirtqueueError) {
        // The receive ring is broken: the device needs a reset; hold the
        // frame until the driver sets the device up again.
        this.t.needsReset(e.message);
        this.rxWaiting = true;
        return false;
      }
      this.t.log.error(`${this.name}: internal error receiving a frame: ${(e as Error).stack ?? e}`);
      this.stats.rxDropped++;
      return true;
    }
  }

  private receiveFrame(frame: Uint8Array): boolean {
    if (this.closed) return true;
    if (!this.linkUp) {
      this.stats.rxDropped++;
      return true;
    }
    const vnet = this.backend.vnetHeader;
    const payload = vnet ? frame.subarray(VNET_HDR_LEN) : frame;
    const total = VNET_HDR_LEN + payload.length;
    if (payload.length < ETH_HLEN || total > MAX_FRAME_WITH_HEADER) {
      this.hostError('rx-size', `frame of ${frame.length} bytes from the backend dropped`);
      this.stats.rxDropped++;
      return true;
    }
    const t = this.t;
    const rx = this.queues[RX_QUEUE]!;
    if (!t.running || !rx.active) {
      // No driver to take it (yet): the backend holds it until the driver
      // notifies the receive queue (DRIVER_OK kicks every enabled queue).
      this.rxWaiting = true;
      return false;
    }
    this.syncOffloads();
    const hdr = new Uint8Array(VNET_HDR_LEN);
    if (vnet) {
      hdr.set(frame.subarray(0, VNET_HDR_LEN));
      const why = rxHeaderError(hdr, payload.length, (f) => this.has(f), this.mtu);
      if (why) {
        this.hostError('rx-header', `frame from the backend dropped: ${why}`);
        this.stats.rxDropped++;
        return true;
      }
    }
    const mergeable = this.has(VIRTIO_NET_F_MRG_RXBUF);
    const chains: Chain[] = [];
    let room = 0;
    while (room < total) {
      const c = this.nextRxChain(rx);
      if (!c) break;
      if (!mergeable && c.writeLength < total) {
        // §5.1.6.3.1: without MRG_RXBUF one buffer holds a whole frame.
        // This one is too small for this frame (not for a smaller one).
        this.rxReserved.unshift(c);
        this.hostError(
          'rx-too-big',
          `${total}-byte frame dropped: the receive buffer holds ${c.writeLength}`,
        );
        this.stats.rxDropped++;
        return true;
      }
      chains.push(c);
      room += c.writeLength;
    }
    if (room < total) {
      this.rxReserved.unshift(...chains);
      if (rx.inflightCount >= rx.size) {
        // Every descriptor is with us already and still too small: the
        // driver can add nothing, so waiting would wait forever.
        this.hostError('rx-no-room', `${total}-byte frame dropped: all receive buffers hold ${room} bytes`);
        this.stats.rxDropped++;
        return true;
      }
      this.rxWaiting = true;
      return false;
    }
    // §5.1.6.4: num_buffers is 1 without MRG_RXBUF.
    new DataView(hdr.buffer).setUint16(NetHdr.numBuffers, chains.length, true);
    const epoch = t.epoch;
    const written: number[] = [];
    try {
      let pos = 0;
      chains.forEach((c, i) => {
        let at = 0;
        if (i === 0) {
          c.write(0, hdr);
          at = VNET_HDR_LEN;
        }
        const n = Math.min(c.writeLength - at, payload.length - pos);
        if (n > 0) c.write(at, payload.subarray(pos, pos + n));
        pos += n;
        written.push(at + n);
      });
    } catch (e) {
      if (!(e instanceof ChainError)) throw e;
      this.guestError('rx-buffer', `receive buffer: ${e.message}`);
      for (const c of chains) t.complete(rx, c.head, 0, epoch);
      this.stats.rxDropped++;
      return true;
    }
    // One used-index update for the frame's buffers: a driver sees all of them or none.
    t.completeMany(
      rx,
      chains.map((c, i) => ({ head: c.head, written: written[i]! })),
      epoch,
    );
    this.stats.rxFrames++;
    this.stats.rxBytes += payload.length;
    return true;
  }

  /** The next usable receive chain (reserved ones first), returning unusable ones empty; undefined when none. */
  private nextRxChain(rx: SplitQueue): Chain | undefined {
    for (;;) {
      const c = this.rxReserved.shift() ?? rx.pop();
      if (!c) return undefined;
      const why = c.readable.length
        ? 'has device-readable buffers'
        : !c.inRam
          ? 'has a buffer outside guest RAM'
          : c.writeLength < VNET_HDR_LEN
            ? `is ${c.writeLength} bytes, less than the ${VNET_HDR_LEN}-byte header`
            : undefined;
      if (!why) return c;
      this.guestError('rx-buffer', `receive chain at descriptor ${c.head} ${why}; returned unused`);
      this.t.complete(rx, c.head, 0, this.t.epoch);
    }
  }
}
