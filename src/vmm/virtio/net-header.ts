/**
 * The virtio-net definitions of Virtio 1.2 §5.1 (device ID, feature bits
 * and their dependencies, struct virtio_net_hdr_v1, struct
 * virtio_net_config), and pure checks: a header in either direction
 * against the negotiated features, a MAC address. No device state: the
 * device model is net.ts (which re-exports all of this).
 */
import { bit } from './device.js';
import type { Chain } from './virtqueue.js';

export const VIRTIO_ID_NET = 1;
/** PCI class of a virtio-net function: network, Ethernet (QEMU's). */
export const VIRTIO_NET_PCI_CLASS = 0x020000;

/** Feature bits (§5.1.3). */
export const VIRTIO_NET_F_CSUM = 0;
export const VIRTIO_NET_F_GUEST_CSUM = 1;
export const VIRTIO_NET_F_CTRL_GUEST_OFFLOADS = 2;
export const VIRTIO_NET_F_MTU = 3;
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_GUEST_TSO4 = 7;
export const VIRTIO_NET_F_GUEST_TSO6 = 8;
export const VIRTIO_NET_F_GUEST_ECN = 9;
export const VIRTIO_NET_F_GUEST_UFO = 10;
export const VIRTIO_NET_F_HOST_TSO4 = 11;
export const VIRTIO_NET_F_HOST_TSO6 = 12;
export const VIRTIO_NET_F_HOST_ECN = 13;
export const VIRTIO_NET_F_HOST_UFO = 14;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;
export const VIRTIO_NET_F_CTRL_VQ = 17;
export const VIRTIO_NET_F_GUEST_ANNOUNCE = 21;
export const VIRTIO_NET_F_MQ = 22;

/** Header flags and GSO types (§5.1.6). */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_F_RSC_INFO = 4;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/** struct virtio_net_hdr_v1 field offsets. */
export const NetHdr = {
  flags: 0,
  gsoType: 1,
  hdrLen: 2,
  gsoSize: 4,
  csumStart: 6,
  csumOffset: 8,
  numBuffers: 10,
} as const;

/** Link status bit of the config status field (§5.1.4). */
export const VIRTIO_NET_S_LINK_UP = 1;

/** Config space layout (§5.1.4, struct virtio_net_config), as far as the fields this device fills. */
export const NetCfg = {
  mac: 0x00,
  status: 0x06,
  maxVirtqueuePairs: 0x08,
  mtu: 0x0a,
  size: 0x0c,
} as const;

export const RX_QUEUE = 0;
export const TX_QUEUE = 1;

/** Ethernet header: the smallest frame either way. */
export const ETH_HLEN = 14;
/** A VLAN tag on top of the MTU (the received-frame limit of §5.1.4.1). */
export const VLAN_HLEN = 4;
/** Linux's ETH_MIN_MTU: a smaller MTU in config space is ignored by the driver. */
export const MIN_MTU = 68;

/** Offload features a vnet-header backend makes possible. */
export const OFFLOAD_FEATURES =
  bit(VIRTIO_NET_F_CSUM) |
  bit(VIRTIO_NET_F_GUEST_CSUM) |
  bit(VIRTIO_NET_F_GUEST_TSO4) |
  bit(VIRTIO_NET_F_GUEST_TSO6) |
  bit(VIRTIO_NET_F_GUEST_ECN) |
  bit(VIRTIO_NET_F_HOST_TSO4) |
  bit(VIRTIO_NET_F_HOST_TSO6) |
  bit(VIRTIO_NET_F_HOST_ECN);
/** The receive offloads among them (what a tap is told with TUNSETOFFLOAD). */
export const GUEST_OFFLOADS =
  bit(VIRTIO_NET_F_GUEST_CSUM) |
  bit(VIRTIO_NET_F_GUEST_TSO4) |
  bit(VIRTIO_NET_F_GUEST_TSO6) |
  bit(VIRTIO_NET_F_GUEST_ECN);

const FEATURE_NAMES: Record<number, string> = {
  [VIRTIO_NET_F_CSUM]: 'CSUM',
  [VIRTIO_NET_F_GUEST_CSUM]: 'GUEST_CSUM',
  [VIRTIO_NET_F_GUEST_TSO4]: 'GUEST_TSO4',
  [VIRTIO_NET_F_GUEST_TSO6]: 'GUEST_TSO6',
  [VIRTIO_NET_F_GUEST_ECN]: 'GUEST_ECN',
  [VIRTIO_NET_F_HOST_TSO4]: 'HOST_TSO4',
  [VIRTIO_NET_F_HOST_TSO6]: 'HOST_TSO6',
  [VIRTIO_NET_F_HOST_ECN]: 'HOST_ECN',
};

/** §5.1.3.1: a feature and the features one of which it requires. */
const FEATURE_DEPENDENCIES: ReadonlyArray<readonly [number, readonly number[]]> = [
  [VIRTIO_NET_F_GUEST_TSO4, [VIRTIO_NET_F_GUEST_CSUM]],
  [VIRTIO_NET_F_GUEST_TSO6, [VIRTIO_NET_F_GUEST_CSUM]],
  [VIRTIO_NET_F_GUEST_ECN, [VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6]],
  [VIRTIO_NET_F_HOST_TSO4, [VIRTIO_NET_F_CSUM]],
  [VIRTIO_NET_F_HOST_TSO6, [VIRTIO_NET_F_CSUM]],
  [VIRTIO_NET_F_HOST_ECN, [VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6]],
];

/** §5.1.3.1: why a set of driver features breaks a dependency, or undefined. */
export function featureDependencyError(features: bigint): string | undefined {
  for (const [f, deps] of FEATURE_DEPENDENCIES) {
    if (features & bit(f) && !deps.some((d) => features & bit(d))) {
      return `${FEATURE_NAMES[f]} requires ${deps.map((d) => FEATURE_NAMES[d]).join(' or ')} (§5.1.3.1)`;
    }
  }
  return undefined;
}

/**
 * §5.1.6.2.1: why the header of a transmitted frame of `payload` bytes
 * (after the header) cannot go to the backend, or undefined. With a vnet
 * header backend it may ask for what the driver negotiated (`has`);
 * without one it may ask for nothing (CSUM and HOST_TSO* were not offered).
 */
export function txHeaderError(
  hdr: Uint8Array,
  payload: number,
  vnetHeader: boolean,
  has: (feature: number) => boolean,
): string | undefined {
  const flags = hdr[NetHdr.flags]!;
  const gso = hdr[NetHdr.gsoType]!;
  if (!vnetHeader) {
    if (gso) return `GSO type 0x${gso.toString(16)} (segmentation not offered)`;
    if (flags) return `header flags 0x${flags.toString(16)} (checksum offload not offered)`;
    return undefined;
  }
  if (flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM) return `header flags 0x${flags.toString(16)}`;
  if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    if (!has(VIRTIO_NET_F_CSUM)) return 'partial checksum without VIRTIO_NET_F_CSUM';
    const v = new DataView(hdr.buffer, hdr.byteOffset, hdr.byteLength);
    const start = v.getUint16(NetHdr.csumStart, true);
    const off = v.getUint16(NetHdr.csumOffset, true);
    if (start + off + 2 > payload) return `checksum at ${start}+${off} past the ${payload}-byte frame`;
  }
  const why = gsoError(gso, {
    tcpv4: has(VIRTIO_NET_F_HOST_TSO4),
    tcpv6: has(VIRTIO_NET_F_HOST_TSO6),
    ecn: has(VIRTIO_NET_F_HOST_ECN),
  });
  return why && `${why} (not negotiated)`;
}

/**
 * §5.1.6.4.1: checks the header a vnet-header backend gave a received
 * frame of `payload` bytes against what the driver accepted (`has`), and
 * clears in place the flags it must not see. The reason to drop the frame,
 * or undefined. `mtu` is the MTU offered, if any (§5.1.4.1).
 */
export function rxHeaderError(
  hdr: Uint8Array,
  payload: number,
  has: (feature: number) => boolean,
  mtu: number | undefined,
): string | undefined {
  const flags = hdr[NetHdr.flags]!;
  const gso = hdr[NetHdr.gsoType]!;
  const csum = has(VIRTIO_NET_F_GUEST_CSUM);
  if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM && !csum) return 'partial checksum, GUEST_CSUM not negotiated';
  // Without GUEST_CSUM flags must be 0; RSC_INFO needs RSC_EXT (not offered).
  hdr[NetHdr.flags] = flags & (csum ? VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID : 0);
  const why = gsoError(gso, {
    tcpv4: has(VIRTIO_NET_F_GUEST_TSO4),
    tcpv6: has(VIRTIO_NET_F_GUEST_TSO6),
    ecn: has(VIRTIO_NET_F_GUEST_ECN),
  });
  if (why) return `${why}, not negotiated`;
  // §5.1.4.1: no unsegmented frame over the MTU once it is negotiated.
  if (
    mtu !== undefined &&
    has(VIRTIO_NET_F_MTU) &&
    (gso & ~VIRTIO_NET_HDR_GSO_ECN) === VIRTIO_NET_HDR_GSO_NONE &&
    payload > mtu + ETH_HLEN + VLAN_HLEN
  ) {
    return `${payload}-byte frame over the ${mtu}-byte MTU`;
  }
  return undefined;
}

/** Why a GSO type is not allowed with the given segmentation features, or undefined. */
function gsoError(
  gso: number,
  allowed: { tcpv4: boolean; tcpv6: boolean; ecn: boolean },
): string | undefined {
  const type = gso & ~VIRTIO_NET_HDR_GSO_ECN;
  const ok =
    type === VIRTIO_NET_HDR_GSO_NONE
      ? !(gso & VIRTIO_NET_HDR_GSO_ECN)
      : (type === VIRTIO_NET_HDR_GSO_TCPV4 && allowed.tcpv4) ||
        (type === VIRTIO_NET_HDR_GSO_TCPV6 && allowed.tcpv6);
  if (!ok) return `GSO type 0x${gso.toString(16)}`;
  if (gso & VIRTIO_NET_HDR_GSO_ECN && !allowed.ecn) return 'GSO with ECN';
  return undefined;
}

/** Why `mac` cannot be a NIC's address, or undefined. */
export function macError(mac: ArrayLike<number>): string | undefined {
  if (mac.length !== 6 || !Array.from(mac).every((b) => Number.isInteger(b) && b >= 0 && b <= 255))
    return 'must be 6 bytes';
  if (mac[0]! & 1) return 'is a multicast address';
  if (Array.from(mac).every((b) => b === 0)) return 'is all zero';
  return undefined;
}

/** Views of a chain's device-readable part from byte `offset` (every segment in RAM). */
export function readableViews(chain: Chain, offset: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = offset;
  for (const s of chain.readable) {
    for (const v of s.views!) {
      if (skip >= v.length) {
        skip -= v.length;
        continue;
      }
      out.push(skip ? v.subarray(skip) : v);
      skip = 0;
    }
  }
  return out;
}
