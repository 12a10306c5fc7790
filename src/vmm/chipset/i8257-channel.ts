/**
 * Register map and state of the two cascaded 8237A DMA controllers
 * (i8257-dma.ts): port and register constants, the per-channel and
 * per-controller registers, the register reads and terminal-count logic
 * that need no device context, and the saved-state layout with its checks.
 */
import { PC_PORTS, portCount } from '../../platform/pc-map.js';
import { DeviceStateError, type AccessSize, type DeviceState } from '../core/device.js';

export const DMA1_PORT_BASE = PC_PORTS.dma1.start;
export const DMA1_PORT_COUNT = portCount(PC_PORTS.dma1);
export const DMA2_PORT_BASE = PC_PORTS.dma2.start;
export const DMA2_PORT_COUNT = portCount(PC_PORTS.dma2);
/** Port 0x80 (the POST port) is not part of the page register block. */
export const DMA_PAGE_PORT_BASE = PC_PORTS.dmaPages.start;
export const DMA_PAGE_PORT_COUNT = portCount(PC_PORTS.dmaPages);

/** The cascade channel (DMA1 feeds DMA2's channel 0). */
export const DMA_CASCADE_CHANNEL = 4;

// Controller registers (index = port offset >> dshift).
export const REG_STATUS_COMMAND = 0x8;
export const REG_REQUEST = 0x9;
export const REG_SINGLE_MASK = 0xa;
export const REG_MODE = 0xb;
export const REG_CLEAR_FLIP_FLOP = 0xc;
export const REG_TEMP_MASTER_CLEAR = 0xd;
export const REG_CLEAR_MASK = 0xe;
export const REG_ALL_MASK = 0xf;

// Command register.
export const CMD_DISABLE = 0x04;
/** Everything but "controller disable": memory-to-memory, fixed address, timing, priority, polarity. */
export const CMD_UNSUPPORTED = 0xfb;

// Mode register.
export const MODE_TYPE_MASK = 0x0c;
export const DMA_MODE_VERIFY = 0x00;
export const DMA_MODE_WRITE = 0x04;
export const DMA_MODE_READ = 0x08;
export const MODE_AUTO_INIT = 0x10;
export const MODE_DECREMENT = 0x20;
export const MODE_OP_MASK = 0xc0;
export const MODE_OP_CASCADE = 0xc0;

/** Page register offset (from 0x81) of each channel. */
export const PAGE_INDEX: readonly number[] = [0x87, 0x83, 0x81, 0x82, 0x8f, 0x8b, 0x89, 0x8a].map(
  (p) => p - DMA_PAGE_PORT_BASE,
);

export interface Channel {
  baseAddr: number;
  baseCount: number;
  curAddr: number;
  curCount: number;
  mode: number;
  /** Units (bytes or words) moved since the count register was last loaded. */
  pos: number;
}

export interface Controller {
  /** 0 for DMA1 (8-bit), 1 for DMA2 (16-bit): port index shift and unit size. */
  readonly dshift: number;
  command: number;
  mask: number;
  /** Terminal count bits 0-3 of the status register (cleared when read). */
  tc: number;
  /** Software DREQ bits (request register). */
  request: number;
  /** Hardware DREQ bits held by devices. */
  dreq: number;
  flipFlop: boolean;
  readonly channels: Channel[];
}

export function newChannel(): Channel {
  return { baseAddr: 0, baseCount: 0, curAddr: 0, curCount: 0, mode: 0, pos: 0 };
}

export function newController(dshift: number): Controller {
  return {
    dshift,
    command: 0,
    mask: 0xf,
    tc: 0,
    request: 0,
    dreq: 0,
    flipFlop: false,
    channels: [newChannel(), newChannel(), newChannel(), newChannel()],
  };
}

export const TYPE_NAMES: Record<number, string> = {
  [DMA_MODE_VERIFY]: 'verify',
  [DMA_MODE_WRITE]: 'write',
  [DMA_MODE_READ]: 'read',
  [MODE_TYPE_MASK]: 'illegal',
};

/** Reads controller register `reg` (reads have side effects only on the controller itself). */
export function readControllerReg(c: Controller, reg: number): number {
  if (reg < 8) {
    const ch = c.channels[reg >> 1]!;
    const v = reg & 1 ? ch.curCount : ch.curAddr;
    const high = c.flipFlop;
    c.flipFlop = !c.flipFlop;
    return high ? (v >> 8) & 0xff : v & 0xff;
  }
  switch (reg) {
    case REG_STATUS_COMMAND: {
      // Status: TC bits 3-0 (cleared by the read), request bits 7-4.
      const v = c.tc | ((c.dreq | c.request) << 4);
      c.tc = 0;
      return v & 0xff;
    }
    case REG_TEMP_MASTER_CLEAR:
      return 0; // temporary register: only memory-to-memory transfers fill it
    case REG_ALL_MASK:
      return 0xf0 | c.mask; // PIIX: the mask register reads back here
    default:
      return 0; // write-only registers (QEMU reads them as 0)
  }
}

/** 8237A master clear: command, status, request, temporary and flip-flop cleared, all channels masked. */
export function masterClear(c: Controller): void {
  c.command = 0;
  c.tc = 0;
  c.request = 0;
  c.flipFlop = false;
  c.mask = 0xf;
}

/** Moves a channel's current registers on by `units`, handling terminal count. */
export function advanceChannel(c: Controller, index: number, units: number): void {
  const ch = c.channels[index]!;
  const step = ch.mode & MODE_DECREMENT ? -units : units;
  ch.curAddr = (ch.curAddr + step) & 0xffff;
  ch.curCount -= units;
  ch.pos += units;
  if (ch.curCount >= 0) return;
  // Terminal count: the count register has rolled over to 0xFFFF.
  ch.curCount = 0xffff;
  c.tc |= 1 << index;
  c.request &= ~(1 << index);
  if (ch.mode & MODE_AUTO_INIT) {
    ch.curAddr = ch.baseAddr;
    ch.curCount = ch.baseCount;
    ch.pos = 0;
  } else {
    c.mask |= 1 << index;
  }
}

// --- saved state -------------------------------------------------------------

/** The saved registers of both controllers and the page registers (state version 1). */
export function saveDmaState(controllers: readonly Controller[], pages: Uint8Array): DeviceState {
  return {
    version: 1,
    controllers: controllers.map((c) => ({
      command: c.command,
      mask: c.mask,
      tc: c.tc,
      request: c.request,
      flipFlop: c.flipFlop,
      channels: c.channels.map((ch) => ({ ...ch })),
    })),
    pages: Array.from(pages),
  };
}

/** One controller's registers as parseDmaState() checked them. */
export interface SavedController {
  o: Record<string, unknown>;
  channels: Channel[];
}

/** Checks a version-1 saved state (the version is checked by the caller); throws DeviceStateError if malformed. */
export function parseDmaState(
  name: string,
  state: DeviceState,
): { controllers: SavedController[]; pages: number[] } {
  const bad = (): never => {
    throw new DeviceStateError(`${name}: malformed state`);
  };
  const { controllers, pages } = state;
  if (!Array.isArray(controllers) || controllers.length !== 2) bad();
  if (!isByteArray(pages, DMA_PAGE_PORT_COUNT)) bad();
  const parsed = (controllers as unknown[]).map((raw) => {
    if (typeof raw !== 'object' || raw === null) return bad();
    const o = raw as Record<string, unknown>;
    if (!isUint(o.command, 0xff) || !isUint(o.mask, 0xf) || !isUint(o.tc, 0xf) || !isUint(o.request, 0xf))
      bad();
    if (typeof o.flipFlop !== 'boolean' || !Array.isArray(o.channels) || o.channels.length !== 4) bad();
    const channels = (o.channels as unknown[]).map((rc): Channel => {
      if (typeof rc !== 'object' || rc === null) return bad();
      const r = rc as Record<string, unknown>;
      for (const k of ['baseAddr', 'baseCount', 'curAddr', 'curCount'] as const)
        if (!isUint(r[k], 0xffff)) bad();
      if (!isUint(r.mode, 0xff) || !isUint(r.pos, 0x10000)) bad();
      return {
        baseAddr: r.baseAddr as number,
        baseCount: r.baseCount as number,
        curAddr: r.curAddr as number,
        curCount: r.curCount as number,
        mode: r.mode as number,
        pos: r.pos as number,
      };
    });
    return { o, channels };
  });
  return { controllers: parsed, pages: pages as number[] };
}

// --- helpers -----------------------------------------------------------------

export function checkChannel(channel: number): void {
  if (!Number.isInteger(channel) || channel < 0 || channel > 7) {
    throw new RangeError(`ISA DMA channel ${channel} does not exist (0-7)`);
  }
}

export function bytewise(size: AccessSize, byte: (i: number) => number): number {
  let v = 0;
  for (let i = 0; i < size; i++) v |= (byte(i) & 0xff) << (8 * i);
  return v >>> 0;
}

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
}

function isByteArray(v: unknown, length: number): v is number[] {
  return Array.isArray(v) && v.length === length && v.every((b) => isUint(b, 0xff));
}
