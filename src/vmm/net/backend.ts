/**
 * Network backends: the host side of a NIC model (virtio-net, virtio/net.ts),
 * as QEMU's NetClientState peer or Cloud Hypervisor's `net_util::Tap`. A
 * backend moves whole Ethernet frames: a tap device (with IFF_VNET_HDR), a
 * user-mode network stack (slirp), or a test cable (test/unit/vmm/virtio/
 * net-helpers.ts). The device never knows which.
 *
 * ## Frames and the virtio-net header
 *
 * A backend with `vnetHeader` puts a 12-byte struct virtio_net_hdr_v1
 * (Virtio 1.2 §5.1.6; Linux's virtio_net_hdr_mrg_rxbuf, little-endian) in
 * front of every frame, both ways: a tap opened with IFF_VNET_HDR and
 * TUNSETVNETHDRSZ 12. Its checksum and segmentation fields then pass
 * between guest and host unchanged, so the guest can hand over 64 KiB TCP
 * segments with partial checksums and take them in. A backend without it
 * (slirp) moves plain frames: the device strips and adds the header.
 *
 * ## Guest to host: `send`
 *
 * The device calls `send(iovecs)` with one frame as a list of buffers that
 * are views of guest RAM, valid only during the call: the backend writes
 * them (writev) or copies them before it returns. `true` means the frame
 * is taken (sent, or dropped by the backend for its own reasons: a host
 * error is a lost frame, as on a wire). `false` means the backend is full
 * and took nothing: the device keeps the frame (and everything behind it
 * on its transmit queue) and sends it again after the backend calls the
 * `onWritable` callback, once, when it can take a frame again. That call
 * never comes from inside `send`.
 *
 * ## Host to guest: the receiver, and flow control
 *
 * The device registers one receiver with `setReceiver`. The backend calls
 * it on the event loop with one frame (header included when `vnetHeader`),
 * which is only valid during the call: the device copies it into guest
 * receive buffers before returning.
 *
 *   - `true`: the frame is consumed (delivered to the guest, or dropped by
 *     the device: link down, a frame no guest buffer can hold, a malformed
 *     header). The backend forgets it and may deliver the next one, in the
 *     same turn or later.
 *   - `false`: the guest has no receive buffers for it now. The frame is
 *     NOT consumed: the backend keeps that very frame, stops reading (a
 *     tap: stops polling its fd, so the kernel queue fills and the host
 *     drops there, as on a real NIC; slirp: stops polling its sockets, so
 *     TCP windows close), and delivers nothing more until the device calls
 *     `resume()`. It then delivers the kept frame first, then goes on in
 *     order. No frame is lost or reordered by this handshake.
 *
 * The device calls `resume()` when the driver adds receive buffers (its
 * receive queue is notified) after it refused a frame, and when a refusal
 * no longer applies (the link went down: frames are dropped from then on).
 * `resume()` on a backend that is not paused does nothing. The backend may
 * call the receiver from inside `resume()` (the device is ready for that),
 * or later. The device is never called back from inside its own receiver.
 *
 * A backend starts delivering only once a receiver is set.
 *
 * ## Offloads
 *
 * A tap hands the guest GSO frames and partial checksums only if told the
 * guest takes them (TUNSETOFFLOAD). A `vnetHeader` backend gets the
 * receive offloads the driver accepted through `setOffloads`, each time
 * they change (feature negotiation, reset, a loaded state). Frames that
 * still ask for an offload the guest did not accept are dropped by the
 * device.
 *
 * ## Ownership
 *
 * The device that takes a backend owns it: the device's `close()` closes
 * it. After `close()` the backend calls nothing and `send` returns true
 * (frames are dropped).
 */

/** Bytes of struct virtio_net_hdr_v1 (§5.1.6): with VIRTIO_F_VERSION_1 always 12, num_buffers included. */
export const VNET_HDR_LEN = 12;

/** Largest frame a backend may hand over or the guest may send, header included (64 KiB + header, as QEMU). */
export const MAX_FRAME_WITH_HEADER = 65550;

/** Receive offloads the guest driver accepted (what TUNSETOFFLOAD takes). */
export interface NetOffloads {
  /** Partial checksums (VIRTIO_NET_F_GUEST_CSUM; TUN_F_CSUM). */
  csum: boolean;
  /** TCP segmentation over IPv4 / IPv6 (GUEST_TSO4 / GUEST_TSO6; TUN_F_TSO4 / TUN_F_TSO6). */
  tso4: boolean;
  tso6: boolean;
  /** TSO with the ECN bit (GUEST_ECN; TUN_F_TSO_ECN). */
  ecn: boolean;
}

export const NO_OFFLOADS: Readonly<NetOffloads> = Object.freeze({
  csum: false,
  tso4: false,
  tso6: false,
  ecn: false,
});

export interface NetBackend {
  /** Whether every frame, both ways, starts with a 12-byte virtio_net_hdr_v1 (tap: yes; slirp: never). */
  readonly vnetHeader: boolean;

  /**
   * One frame from the guest, as buffers valid only during the call. True:
   * taken (or dropped by the backend); false: full, nothing taken, the
   * device retries after `onWritable`.
   */
  send(frame: readonly Uint8Array[]): boolean;

  /** Sets the callback called once the backend can take frames again after `send` returned false. */
  onWritable(fn: () => void): void;

  /**
   * Sets the consumer of host frames (one; a later call replaces it).
   * It returns false when it cannot take the frame now: the backend keeps
   * it and pauses until `resume()` (see the file comment).
   */
  setReceiver(fn: (frame: Uint8Array) => boolean): void;

  /** The device can take frames again: deliver the kept frame, then carry on. No-op when not paused. */
  resume(): void;

  /** The receive offloads the guest accepts (only called on `vnetHeader` backends). */
  setOffloads?(offloads: NetOffloads): void;

  /** Releases host resources; idempotent. */
  close(): void;
}
