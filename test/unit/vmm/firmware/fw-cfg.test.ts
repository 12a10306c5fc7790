import { describe, expect, it } from 'vitest';
import { Bus } from '../../../../src/vmm/core/bus.js';
import type { DeviceContext } from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { GuestMemory } from '../../../../src/vmm/core/memory.js';
import {
  FW_CFG_BOOT_MENU,
  FW_CFG_DMA_CTL_ERROR,
  FW_CFG_DMA_CTL_READ,
  FW_CFG_DMA_CTL_SELECT,
  FW_CFG_DMA_CTL_SKIP,
  FW_CFG_DMA_CTL_WRITE,
  FW_CFG_E820_TABLE,
  FW_CFG_FILE_DIR,
  FW_CFG_ID,
  FW_CFG_MAX_CPUS,
  FW_CFG_NB_CPUS,
  FW_CFG_RAM_SIZE,
  FW_CFG_SIGNATURE,
  FW_CFG_UUID,
  FwCfg,
  FwCfgError,
  encodeBootMenuWait,
  encodeBootOrder,
  encodeE820File,
  type FwCfgOptions,
} from '../../../../src/vmm/firmware/fw-cfg.js';

const MiB = 0x10_0000;
/** Low RAM [0, 2 MiB) and a second region right after it [2 MiB, 3 MiB); nothing above. */
const RAM_END = 3 * MiB;
const DESC = 0x1000; // where tests put FWCfgDmaAccess structures
const BUF = 0x2000; // and their buffers

function setup(opts: Partial<FwCfgOptions> = {}) {
  const log = new MemoryLogger();
  const guestErrors = new RateLimitedLog(log, 1000);
  const ctx: DeviceContext = {
    irq: { setIrq: () => {} },
    log,
    guestErrors,
    requestReset: () => {},
    requestPowerOff: () => {},
  };
  const memory = new GuestMemory();
  memory.addRegion(0, new Uint8Array(2 * MiB));
  memory.addRegion(2 * MiB, new Uint8Array(MiB));
  const fw = new FwCfg(ctx, { memory, cpus: 2, ramSize: 3 * MiB, ...opts });
  const pio = new Bus('pio', guestErrors);
  pio.register(0x510, 1, fw.selectorPort, 'fw-cfg');
  pio.register(0x511, 1, fw.dataPort, 'fw-cfg');
  pio.register(0x514, 8, fw.dmaPort, 'fw-cfg');

  const select = (key: number) => pio.write(0x510, 2, key);
  const readBytes = (n: number) => Uint8Array.from({ length: n }, () => pio.read(0x511, 1));
  const readItem = (key: number, n: number) => {
    select(key);
    return readBytes(n);
  };
  /** Writes a FWCfgDmaAccess at `at` and triggers it as SeaBIOS does (outl of the byte-swapped low half). */
  const dma = (control: number, length: number, address: number | bigint, at = DESC): number => {
    const dv = memory.dataView(at, 16);
    dv.setUint32(0, control);
    dv.setUint32(4, length);
    dv.setBigUint64(8, BigInt(address));
    kick(at);
    return dv.getUint32(0);
  };
  const kick = (at: number) => {
    const big = BigInt(at);
    pio.write(0x514, 4, bswap32(Number(big >> 32n)));
    pio.write(0x518, 4, bswap32(Number(big & 0xffffffffn)));
  };
  return { fw, pio, memory, log, select, readBytes, readItem, dma, kick };
}

function bswap32(v: number): number {
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

interface DirEntry {
  name: string;
  size: number;
  select: number;
}

function parseDirectory(read: (n: number) => Uint8Array): DirEntry[] {
  const count = dv(read(4)).getUint32(0);
  const out: DirEntry[] = [];
  for (let i = 0; i < count; i++) {
    const e = read(64);
    const nameField = e.subarray(8, 64);
    const end = nameField.indexOf(0);
    expect(end).toBeGreaterThan(0);
    out.push({
      size: dv(e).getUint32(0),
      select: dv(e).getUint16(4),
      name: text(nameField.subarray(0, end)),
    });
  }
  return out;
}

describe('FwCfg port interface', () => {
  it('reads the "QEMU" signature byte by byte, then zeros past the end', () => {
    const { select, pio } = setup();
    select(FW_CFG_SIGNATURE);
    const bytes = [0, 1, 2, 3, 4, 5].map(() => pio.read(0x511, 1));
    expect(bytes).toEqual([0x51, 0x45, 0x4d, 0x55, 0, 0]);
    // reselecting rewinds
    select(FW_CFG_SIGNATURE);
    expect(pio.read(0x511, 1)).toBe(0x51);
  });

  it('starts (and resets) with the signature selected', () => {
    const { fw, pio, select } = setup();
    expect(pio.read(0x511, 1)).toBe(0x51);
    select(FW_CFG_ID);
    fw.reset();
    expect(pio.read(0x511, 1)).toBe(0x51);
  });

  it('reports the traditional and DMA interfaces in the ID item', () => {
    expect(dv(setup().readItem(FW_CFG_ID, 4)).getUint32(0, true)).toBe(3);
    expect(dv(setup({ dma: false }).readItem(FW_CFG_ID, 4)).getUint32(0, true)).toBe(1);
  });

  it('carries the CPU counts, RAM size and boot menu flag little endian', () => {
    const { readItem } = setup({ cpus: 3, maxCpus: 8, ramSize: 5 * 2 ** 32 + 7, bootMenu: true });
    expect(dv(readItem(FW_CFG_NB_CPUS, 2)).getUint16(0, true)).toBe(3);
    expect(dv(readItem(FW_CFG_MAX_CPUS, 2)).getUint16(0, true)).toBe(8);
    expect(dv(readItem(FW_CFG_RAM_SIZE, 8)).getBigUint64(0, true)).toBe(5n * 2n ** 32n + 7n);
    expect(dv(readItem(FW_CFG_BOOT_MENU, 2)).getUint16(0, true)).toBe(1);
  });

  it('lists files sorted by name with sizes and selectors from 0x20, in an empty directory too', () => {
    const empty = setup();
    expect(parseDirectory((n) => empty.readItem(FW_CFG_FILE_DIR, n))).toEqual([]);

    const { fw, select, readBytes } = setup();
    const names = [
      'etc/e820',
      'bootorder',
      'etc/table-loader',
      'etc/acpi/tables',
      'opt/org.mvisor/x',
      'genroms/a',
    ];
    const selectors = names.map((name, i) => fw.addFile(name, new Uint8Array(i * 10 + 1)));
    expect(selectors).toEqual([0x20, 0x21, 0x22, 0x23, 0x24, 0x25]);
    select(FW_CFG_FILE_DIR);
    const dir = parseDirectory(readBytes);
    expect(dir.map((e) => e.name)).toEqual([...names].sort());
    for (const e of dir) {
      const i = names.indexOf(e.name);
      expect(e.select).toBe(0x20 + i);
      expect(e.size).toBe(i * 10 + 1);
    }
    expect(readBytes(1)).toEqual(new Uint8Array([0])); // directory ends
  });

  it('reads a file found through the directory by its selector, and zeros past its end', () => {
    const { fw, select, readBytes, readItem } = setup();
    fw.addFile('etc/other', new Uint8Array([9]));
    const data = new TextEncoder().encode('/pci@i0cf8/ide@1,1/drive@0/disk@0\n\0');
    fw.addFile('bootorder', data);
    select(FW_CFG_FILE_DIR);
    const entry = parseDirectory(readBytes).find((e) => e.name === 'bootorder')!;
    expect(readItem(entry.select, entry.size + 3)).toEqual(Uint8Array.from([...data, 0, 0, 0]));
  });

  it('returns zeros for unknown items, and bit 14 of the selector does not change the item', () => {
    const { readItem } = setup();
    expect(readItem(0x1234, 4)).toEqual(new Uint8Array(4));
    expect(readItem(0x8123, 4)).toEqual(new Uint8Array(4));
    expect(text(readItem(0x4000 | FW_CFG_SIGNATURE, 4))).toBe('QEMU');
  });

  it('ignores data port writes and non-16-bit selector writes, logging them', () => {
    const { pio, select, log } = setup();
    select(FW_CFG_SIGNATURE);
    pio.write(0x511, 1, 0x41);
    pio.write(0x510, 1, 0x01);
    expect(pio.read(0x511, 1)).toBe(0x51);
    expect(log.lines.some((l) => l.includes('data port ignored'))).toBe(true);
    expect(log.lines.some((l) => l.includes('selector port ignored'))).toBe(true);
  });

  it('answers a wide data read with the next bytes in address order', () => {
    const { pio, select } = setup();
    select(FW_CFG_SIGNATURE);
    expect(pio.read(0x511, 2)).toBe(0x4551); // 'Q', 'E'
    expect(pio.read(0x511, 4)).toBe(0x554d); // 'M', 'U', then past the end
  });

  it('exposes legacy items set by the machine', () => {
    const { fw, readItem } = setup();
    const uuid = Uint8Array.from({ length: 16 }, (_, i) => i);
    fw.setItem(FW_CFG_UUID, uuid);
    fw.setItem(FW_CFG_E820_TABLE, new Uint8Array(4));
    expect(readItem(FW_CFG_UUID, 16)).toEqual(uuid);
    expect(() => fw.setItem(FW_CFG_SIGNATURE, uuid)).toThrow(FwCfgError);
    expect(() => fw.setItem(FW_CFG_FILE_DIR, uuid)).toThrow(FwCfgError);
    expect(() => fw.setItem(0x20, uuid)).toThrow(/addFile/);
    expect(() => fw.setItem(0x4001, uuid)).toThrow(FwCfgError);
  });

  it('refuses duplicate, empty and over-long file names', () => {
    const { fw } = setup();
    fw.addFile('etc/e820', new Uint8Array(20));
    expect(() => fw.addFile('etc/e820', new Uint8Array(20))).toThrow(/twice/);
    expect(() => fw.addFile('', new Uint8Array(1))).toThrow(FwCfgError);
    expect(() => fw.addFile('x'.repeat(56), new Uint8Array(1))).toThrow(FwCfgError);
    expect(fw.addFile('x'.repeat(55), new Uint8Array(1))).toBe(0x21);
  });
});

describe('FwCfg DMA interface', () => {
  it('reads "QEMU CFG" from the DMA register, as the big-endian 0x51454d5520434647', () => {
    const { pio } = setup();
    const hi = pio.read(0x514, 4);
    const lo = pio.read(0x518, 4);
    // Linux reads it with ioread32be, i.e. byte-swapped port reads.
    expect((BigInt(bswap32(hi)) << 32n) | BigInt(bswap32(lo))).toBe(0x51454d5520434647n);
    expect(text(Uint8Array.from({ length: 8 }, (_, i) => pio.read(0x514 + i, 1)))).toBe('QEMU CFG');
    expect(setup({ dma: false }).pio.read(0x514, 4)).toBe(0);
  });

  it('reads an item with SELECT|READ, then continues it with SKIP and READ', () => {
    const { fw, dma, memory } = setup();
    const data = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
    const sel = fw.addFile('etc/acpi/tables', data);
    expect(dma((sel << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 100, BUF)).toBe(0);
    expect(memory.read(BUF, 100)).toEqual(data.subarray(0, 100));
    expect(dma(FW_CFG_DMA_CTL_SKIP, 50, 0)).toBe(0);
    expect(dma(FW_CFG_DMA_CTL_READ, 150, BUF + 0x1000)).toBe(0);
    expect(memory.read(BUF + 0x1000, 150)).toEqual(data.subarray(150, 300));
  });

  it('zero-fills a read past the end of the item and still succeeds', () => {
    const { fw, dma, memory } = setup();
    const sel = fw.addFile('etc/boot-menu-wait', encodeBootMenuWait(0x1234));
    memory.fill(BUF, 8, 0xaa);
    expect(dma((sel << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 6, BUF)).toBe(0);
    expect(memory.read(BUF, 8)).toEqual(Uint8Array.from([0x34, 0x12, 0, 0, 0, 0, 0xaa, 0xaa]));
  });

  it('reads the signature item as SeaBIOS does, with a 32-bit-only trigger', () => {
    const { memory, pio } = setup();
    pio.write(0x514, 4, bswap32(0x1234));
    pio.write(0x518, 4, bswap32(DESC)); // at 0x1234_00001000: outside RAM, dropped
    const d = memory.dataView(DESC, 16);
    d.setUint32(0, (FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ);
    d.setUint32(4, 4);
    d.setBigUint64(8, BigInt(BUF));
    // The operation cleared the high half, so a lone low write reaches DESC.
    pio.write(0x518, 4, bswap32(DESC));
    expect(d.getUint32(0)).toBe(0);
    expect(text(memory.read(BUF, 4))).toBe('QEMU');
  });

  it('reads a buffer that spans two adjacent RAM regions', () => {
    const { fw, dma, memory } = setup();
    const data = Uint8Array.from({ length: 64 }, (_, i) => i + 1);
    const sel = fw.addFile('genroms/x.bin', data);
    expect(dma((sel << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 64, 2 * MiB - 32)).toBe(0);
    expect(memory.read(2 * MiB - 32, 32)).toEqual(data.subarray(0, 32));
    expect(memory.read(2 * MiB, 32)).toEqual(data.subarray(32));
  });

  it('writes into a writable file, in place, and tells the owner', () => {
    const { fw, dma, memory, readItem } = setup();
    const writes: Array<[number, number]> = [];
    const sel = fw.addFile('etc/smi/features-ok', new Uint8Array(8), {
      writable: true,
      onWrite: (o, l) => writes.push([o, l]),
    });
    memory.write(BUF, Uint8Array.from([1, 2, 3]));
    expect(dma((sel << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_SKIP, 2, 0)).toBe(0);
    expect(dma(FW_CFG_DMA_CTL_WRITE, 3, BUF)).toBe(0);
    expect(fw.fileData('etc/smi/features-ok')).toEqual(Uint8Array.from([0, 0, 1, 2, 3, 0, 0, 0]));
    expect(writes).toEqual([[2, 3]]);
    expect(readItem(sel, 8)).toEqual(Uint8Array.from([0, 0, 1, 2, 3, 0, 0, 0]));
  });

  it('refuses a write that would run past the end of a writable file, changing nothing', () => {
    const { fw, dma, memory } = setup();
    const sel = fw.addFile('opt/w', new Uint8Array(4), { writable: true });
    memory.fill(BUF, 8, 0xee);
    expect(dma((sel << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE, 5, BUF)).toBe(
      FW_CFG_DMA_CTL_ERROR,
    );
    expect(fw.fileData('opt/w')).toEqual(new Uint8Array(4));
  });

  it('sets ERROR for a write to a read-only item', () => {
    const { fw, dma, log } = setup();
    const sel = fw.addFile('etc/e820', new Uint8Array(20));
    expect(dma((sel << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE, 4, BUF)).toBe(
      FW_CFG_DMA_CTL_ERROR,
    );
    expect(fw.fileData('etc/e820')).toEqual(new Uint8Array(20));
    expect(dma((FW_CFG_ID << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE, 4, BUF)).toBe(
      FW_CFG_DMA_CTL_ERROR,
    );
    expect(log.lines.some((l) => l.includes('read-only'))).toBe(true);
  });

  it('sets ERROR, without throwing, for a buffer outside RAM', () => {
    const { fw, dma, log } = setup();
    const sel = fw.addFile('etc/acpi/rsdp', new Uint8Array(36).fill(1));
    for (const addr of [RAM_END - 8, RAM_END, 0xfee00000, 2 ** 53, 2n ** 64n - 1n]) {
      expect(dma((sel << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 36, addr)).toBe(
        FW_CFG_DMA_CTL_ERROR,
      );
    }
    // past the end of the item too (the zero fill must land in RAM)
    expect(dma(FW_CFG_DMA_CTL_READ, 16, RAM_END)).toBe(FW_CFG_DMA_CTL_ERROR);
    // and for a write sourced outside RAM
    const w = fw.addFile('opt/w', new Uint8Array(4), { writable: true });
    expect(dma((w << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE, 4, RAM_END)).toBe(
      FW_CFG_DMA_CTL_ERROR,
    );
    expect(log.lines.some((l) => l.includes('outside guest RAM'))).toBe(true);
  });

  it('drops a descriptor outside RAM without throwing, and flags one that starts in RAM', () => {
    const { pio, kick, memory, log, select } = setup();
    expect(() => kick(RAM_END)).not.toThrow();
    expect(() => kick(0xffff_fff0)).not.toThrow();
    expect(() => kick(2 ** 40)).not.toThrow();
    expect(log.lines.some((l) => l.includes('descriptor'))).toBe(true);
    // The descriptor runs off the end of RAM, but its control word is in RAM.
    memory.dataView(RAM_END - 8, 4).setUint32(0, FW_CFG_DMA_CTL_READ);
    kick(RAM_END - 8);
    expect(memory.dataView(RAM_END - 8, 4).getUint32(0)).toBe(FW_CFG_DMA_CTL_ERROR);
    select(FW_CFG_SIGNATURE);
    expect(pio.read(0x511, 1)).toBe(0x51); // still works
  });

  it('does nothing but select when no operation bit is set', () => {
    const { dma, pio, memory } = setup();
    memory.fill(BUF, 4, 0xaa);
    expect(dma((FW_CFG_ID << 16) | FW_CFG_DMA_CTL_SELECT, 4, BUF)).toBe(0);
    expect(memory.read(BUF, 4)).toEqual(new Uint8Array(4).fill(0xaa));
    expect(pio.read(0x511, 1)).toBe(3);
  });

  it('ignores DMA writes when DMA is off', () => {
    const { dma, memory } = setup({ dma: false });
    memory.fill(BUF, 4, 0xaa);
    expect(dma(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, BUF)).toBe(
      FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ,
    );
    expect(memory.read(BUF, 4)).toEqual(new Uint8Array(4).fill(0xaa));
  });
});

describe('FwCfg robustness and state', () => {
  it('survives every value written to 0x510, 0x511 and 0x514-0x51b', () => {
    const { fw, pio, memory, select } = setup();
    fw.addFile('etc/e820', new Uint8Array(40).fill(7));
    fw.addFile('opt/w', new Uint8Array(40), { writable: true });
    // Hostile descriptors in the first KiB of RAM.
    let seed = 12345;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    const fillHostile = () => {
      for (let i = 0; i < 256; i++) memory.dataView(i * 4, 4).setUint32(0, rand());
    };
    fillHostile();
    expect(() => {
      for (let v = 0; v <= 0xffff; v++) {
        pio.write(0x510, 2, v);
        pio.read(0x511, 1);
      }
      for (let v = 0; v <= 0xff; v++) {
        for (const size of [1, 2, 4] as const) {
          pio.write(0x510, size, v * 0x01010101);
          pio.write(0x511, size, v * 0x01010101);
          for (let port = 0x514; port <= 0x51b; port++) pio.write(port, size, v * 0x01010101);
          for (let port = 0x510; port <= 0x51b; port++) pio.read(port, size);
        }
      }
      const edges = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffff0, bswap32(RAM_END - 16)];
      for (let i = 0; i < 5000; i++) {
        if (i % 64 === 0) fillHostile();
        const inRam = i % 3 === 0;
        pio.write(0x514, 4, inRam ? 0 : rand());
        pio.write(0x518, 4, inRam ? bswap32(rand() & 0x3f0) : i < edges.length ? edges[i]! : rand());
      }
    }).not.toThrow();
    select(FW_CFG_SIGNATURE);
    expect(pio.read(0x511, 1)).toBe(0x51);
  });

  it('round-trips selector, offset and a latched DMA high half through saved state', () => {
    const a = setup();
    a.fw.addFile('etc/e820', Uint8Array.from([1, 2, 3, 4]));
    a.select(0x20);
    a.readBytes(2);
    a.pio.write(0x514, 4, bswap32(0));
    const state = JSON.parse(JSON.stringify(a.fw.saveState()));
    expect(state).toEqual({ version: 1, selector: 0x20, offset: 2, dmaHigh: 0 });

    const b = setup();
    b.fw.addFile('etc/e820', Uint8Array.from([1, 2, 3, 4]));
    b.fw.loadState(state);
    expect(b.readBytes(3)).toEqual(Uint8Array.from([3, 4, 0]));
    expect(() => b.fw.loadState({ version: 2, selector: 0, offset: 0 })).toThrow();
    expect(() => b.fw.loadState({ version: 1, selector: 0x10000, offset: 0 })).toThrow();
    expect(() => b.fw.loadState({ version: 1, selector: 0, offset: -1 })).toThrow();
    expect(() => b.fw.loadState({ version: 1, selector: '0', offset: 0 })).toThrow();
  });
});

describe('fw_cfg file encoders', () => {
  it('encodes etc/e820 as packed little-endian {u64 addr, u64 len, u32 type}', () => {
    const b = encodeE820File([
      { addr: 0, size: 0x9fc00, type: 1 },
      { addr: 0x1_0000_0000, size: 0x4000_0000, type: 2 },
    ]);
    expect(b.length).toBe(40);
    expect(dv(b).getBigUint64(0, true)).toBe(0n);
    expect(dv(b).getBigUint64(8, true)).toBe(0x9fc00n);
    expect(dv(b).getUint32(16, true)).toBe(1);
    expect(dv(b).getBigUint64(20, true)).toBe(0x1_0000_0000n);
    expect(dv(b).getBigUint64(28, true)).toBe(0x4000_0000n);
    expect(dv(b).getUint32(36, true)).toBe(2);
    expect(() => encodeE820File([{ addr: -1, size: 1, type: 1 }])).toThrow(RangeError);
  });

  it('encodes bootorder as newline-separated paths ending in NUL', () => {
    expect(text(encodeBootOrder(['/pci@i0cf8/ide@1,1/drive@0/disk@0', '/rom@genroms/x.rom']))).toBe(
      '/pci@i0cf8/ide@1,1/drive@0/disk@0\n/rom@genroms/x.rom\0',
    );
    expect(encodeBootOrder([]).length).toBe(0);
    expect(() => encodeBootOrder(['a\nb'])).toThrow(RangeError);
  });

  it('encodes etc/boot-menu-wait as u16 little endian', () => {
    expect(encodeBootMenuWait(2500)).toEqual(Uint8Array.from([0xc4, 0x09]));
    expect(() => encodeBootMenuWait(70000)).toThrow(RangeError);
  });
});
