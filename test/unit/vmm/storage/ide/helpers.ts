import { BlockError, type BlockImage } from '../../../../../src/block/image.js';
import { Bus } from '../../../../../src/vmm/core/bus.js';
import type { AccessSize, DeviceContext } from '../../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../../src/vmm/core/log.js';
import { GuestMemory } from '../../../../../src/vmm/core/memory.js';
import { PCI_COMMAND } from '../../../../../src/vmm/pci/config-space.js';
import { AtaDisk } from '../../../../../src/vmm/storage/ide/ata-disk.js';
import { AtapiCdrom } from '../../../../../src/vmm/storage/ide/atapi-cdrom.js';
import { PiixIde, PIIX_BMIBA_BAR } from '../../../../../src/vmm/storage/ide/piix-ide.js';

/** The byte an untouched image holds at `offset`: a pattern that differs per sector and per byte. */
export function pattern(offset: number): number {
  const sector = Math.floor(offset / 512);
  return ((offset % 512) ^ (sector * 37) ^ (sector >>> 8)) & 0xff;
}

/**
 * An in-memory BlockImage, sparse (untouched sectors read as `pattern`) so
 * that it can be as large as an LBA48 disk. `hold()` parks requests until
 * `release()`; `failNext` makes the next request fail.
 */
export class MemImage implements BlockImage {
  readonly path = '/fake/image';
  readonly format = 'raw' as const;
  readonly written = new Map<number, number>();
  readonly calls: string[] = [];
  failNext: BlockError | undefined;
  private held: Array<() => void> | undefined;

  constructor(
    readonly size: number,
    readonly readOnly = false,
  ) {}

  byteAt(offset: number): number {
    return this.written.get(offset) ?? pattern(offset);
  }

  bytes(offset: number, length: number): Uint8Array {
    return Uint8Array.from({ length }, (_, i) => this.byteAt(offset + i));
  }

  hold(): void {
    this.held = [];
  }

  release(): void {
    const h = this.held ?? [];
    this.held = undefined;
    for (const f of h) f();
  }

  private gate<T>(f: () => T): Promise<T> {
    const fail = this.failNext;
    this.failNext = undefined;
    return new Promise<T>((resolve, reject) => {
      const run = () => {
        if (fail) reject(fail);
        else {
          try {
            resolve(f());
          } catch (e) {
            reject(e);
          }
        }
      };
      if (this.held) this.held.push(run);
      else queueMicrotask(run);
    });
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    this.calls.push(`read ${offset}+${length}`);
    return this.gate(() => {
      if (offset + length > this.size) throw new BlockError('outside', 'EINVAL');
      return this.bytes(offset, length);
    });
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    this.calls.push(`write ${offset}+${data.length}`);
    if (this.readOnly) return Promise.reject(new BlockError('read-only', 'EROFS'));
    const copy = data.slice();
    return this.gate(() => {
      copy.forEach((b, i) => this.written.set(offset + i, b));
    });
  }

  flush(): Promise<void> {
    this.calls.push('flush');
    return this.gate(() => undefined);
  }

  discard(): Promise<void> {
    return Promise.resolve();
  }

  writeZeroes(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

export const BM_BASE = 0xc000;
export const RAM_SIZE = 0x100000;

export interface Rig {
  ide: PiixIde;
  pio: Bus;
  mem: GuestMemory;
  ram: Uint8Array;
  ctx: DeviceContext;
  log: MemoryLogger;
  /** Every setIrq call, in order. */
  irqs: Array<[number, boolean]>;
  level: (irq: number) => boolean;
  disk: AtaDisk | undefined;
  cd: AtapiCdrom | undefined;
  diskImage: MemImage;
  cdImage: MemImage;
  outb(port: number, v: number): void;
  outw(port: number, v: number): void;
  outl(port: number, v: number): void;
  inb(port: number): number;
  inw(port: number): number;
  inl(port: number): number;
  /** Lets image requests finish and their completions run. */
  settle(): Promise<void>;
}

export interface RigOptions {
  diskSize?: number;
  diskReadOnly?: boolean;
  noDisk?: boolean;
  cdSectors?: number;
  noCd?: boolean;
  /** Leave IDETIM as at power-on (decode off), as firmware finds it. */
  firmwareBoot?: boolean;
  /** Also a disk as primary slave. */
  slaveDisk?: boolean;
}

/**
 * A PIIX3 IDE function wired as the machine would: legacy ports and BAR4
 * (at 0xC000) on a port bus, I/O and bus mastering enabled, a disk as
 * primary master and a CD-ROM as secondary master, 1 MiB of guest RAM.
 */
export function rig(o: RigOptions = {}): Rig {
  const log = new MemoryLogger();
  const irqs: Array<[number, boolean]> = [];
  const levels = new Map<number, boolean>();
  const ctx: DeviceContext = {
    irq: {
      setIrq: (g, l) => {
        irqs.push([g, l]);
        levels.set(g, l);
      },
    },
    log,
    guestErrors: new RateLimitedLog(log, 100000),
    requestReset: () => {},
    requestPowerOff: () => {},
  };
  const mem = new GuestMemory();
  const ram = new Uint8Array(RAM_SIZE);
  mem.addRegion(0, ram);
  const ide = new PiixIde(ctx, { memory: mem, decodeAtPowerOn: !o.firmwareBoot });
  const diskImage = new MemImage(o.diskSize ?? 64 * 1024 * 1024, o.diskReadOnly ?? false);
  const cdImage = new MemImage((o.cdSectors ?? 1000) * 2048, true);
  const disk = o.noDisk ? undefined : new AtaDisk({ name: 'hd0', image: diskImage });
  const cd = o.noCd ? undefined : new AtapiCdrom({ name: 'cd0', image: cdImage });
  if (disk) ide.attachDrive(0, 0, disk);
  if (o.slaveDisk) ide.attachDrive(0, 1, new AtaDisk({ name: 'hd1', image: new MemImage(1 << 20) }));
  if (cd) ide.attachDrive(1, 0, cd);
  const pio = new Bus('pio', ctx.guestErrors);
  for (const p of ide.legacyPorts) pio.register(p.base, p.length, p.handler, p.name);
  const bar = ide.bars.find((b) => b.index === PIIX_BMIBA_BAR)!;
  pio.register(BM_BASE, bar.size, bar.handler, 'bmiba');
  ide.writeConfig(0x20, 4, BM_BASE);
  ide.writeConfig(PCI_COMMAND, 2, 0x0005); // I/O space, bus master
  const io = (size: AccessSize) => ({
    out: (port: number, v: number) => pio.write(port, size, v),
    in: (port: number) => pio.read(port, size),
  });
  return {
    ide,
    pio,
    mem,
    ram,
    ctx,
    log,
    irqs,
    level: (irq) => levels.get(irq) ?? false,
    disk,
    cd,
    diskImage,
    cdImage,
    outb: io(1).out,
    outw: io(2).out,
    outl: io(4).out,
    inb: io(1).in,
    inw: io(2).in,
    inl: io(4).in,
    settle: async () => {
      for (let i = 0; i < 5; i++) {
        await ide.drain();
        await new Promise((r) => setImmediate(r));
      }
    },
  };
}

/** Primary and secondary command block / control ports. */
export const P = { base: 0x1f0, ctl: 0x3f6, irq: 14 };
export const S = { base: 0x170, ctl: 0x376, irq: 15 };

/** Reads `n` bytes from the data port in 16-bit words. */
export function readData(r: Rig, base: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 2) {
    const w = r.inw(base);
    out[i] = w & 0xff;
    out[i + 1] = w >> 8;
  }
  return out;
}

export function writeData(r: Rig, base: number, data: Uint8Array): void {
  for (let i = 0; i < data.length; i += 2) r.outw(base, data[i]! | (data[i + 1]! << 8));
}

/** The IDENTIFY word `i` of a 512-byte block. */
export function word(id: Uint8Array, i: number): number {
  return id[2 * i]! | (id[2 * i + 1]! << 8);
}

/** An ATA string of IDENTIFY words [first, first + count). */
export function ataString(id: Uint8Array, first: number, count: number): string {
  let s = '';
  for (let i = 0; i < count; i++) {
    const w = word(id, first + i);
    s += String.fromCharCode(w >> 8, w & 0xff);
  }
  return s.trimEnd();
}

/** Writes a PRD table at `at`: entries of [address, byte count]; the last gets EOT. */
export function writePrd(r: Rig, at: number, entries: Array<[number, number]>): void {
  const dv = new DataView(r.ram.buffer);
  entries.forEach(([addr, count], i) => {
    dv.setUint32(at + 8 * i, addr, true);
    dv.setUint32(at + 8 * i + 4, (count & 0xffff) | (i === entries.length - 1 ? 0x8000_0000 : 0), true);
  });
}
