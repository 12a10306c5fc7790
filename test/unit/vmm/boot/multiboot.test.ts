import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { E820_RAM, E820_RESERVED, buildE820 } from '../../../../src/vmm/boot/e820.js';
import { BootError } from '../../../../src/vmm/boot/errors.js';
import { pcMemoryLayout } from '../../../../src/vmm/boot/layout.js';
import {
  MBI,
  MB_HEADER_AOUT_KLUDGE,
  MB_HEADER_MEMORY_INFO,
  MB_HEADER_PAGE_ALIGN,
  MB_HEADER_VIDEO_MODE,
  MB_INFO_BOOT_LOADER_NAME,
  MB_INFO_CMDLINE,
  MB_INFO_MEMORY,
  MB_INFO_MEM_MAP,
  MB_INFO_MODS,
  MULTIBOOT_BOOTLOADER_MAGIC,
  MULTIBOOT_HEADER_MAGIC,
  MULTIBOOT_INFO_SIZE,
  findMultibootHeader,
  isMultiboot,
  loadMultibootKernel,
  planMultibootKernel,
} from '../../../../src/vmm/boot/multiboot.js';
import { CR0_PE, CR0_PG } from '../../../../src/vmm/boot/pagetables.js';
import { MiB, cstring, memoryFor, u32, u64 } from './helpers.js';

const PATH = '/images/kernel.elf';

interface AddressFields {
  headerAddr: number;
  loadAddr: number;
  loadEndAddr: number;
  bssEndAddr: number;
  entryAddr: number;
}

/** A Multiboot header (spec §3.1.1): 12 bytes, or 32 with the address fields of flag 16. */
function mbHeader(flags: number, addr?: AddressFields, checksumDelta = 0): Uint8Array {
  const out = new Uint8Array(addr ? 32 : 12);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MULTIBOOT_HEADER_MAGIC, true);
  dv.setUint32(4, flags >>> 0, true);
  dv.setUint32(8, (-(MULTIBOOT_HEADER_MAGIC + flags) + checksumDelta) >>> 0, true);
  if (addr) {
    dv.setUint32(12, addr.headerAddr, true);
    dv.setUint32(16, addr.loadAddr, true);
    dv.setUint32(20, addr.loadEndAddr, true);
    dv.setUint32(24, addr.bssEndAddr, true);
    dv.setUint32(28, addr.entryAddr, true);
  }
  return out;
}

interface Seg {
  paddr: number;
  /** Defaults to paddr. */
  vaddr?: number;
  data: Uint8Array;
  memsz: number;
}

function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff || 1);
}

/**
 * An ELF32 i386 executable like kvm-unit-tests' .flat files: the first
 * segment's data starts with the Multiboot header.
 */
function elf32Kernel(o: { header?: Uint8Array; segments?: Seg[]; entry?: number } = {}): Uint8Array {
  const header = o.header ?? mbHeader(0);
  const text = pattern(0x600, 1);
  text.set(header, 0);
  const segments = o.segments ?? [
    { paddr: 0x400000, data: text, memsz: 0x600 },
    { paddr: 0x401000, data: pattern(0x300, 2), memsz: 0x2000 },
  ];
  const phoff = 52;
  let off = phoff + segments.length * 32;
  const offsets = segments.map((s) => {
    off = Math.ceil(off / 16) * 16;
    const o2 = off;
    off += s.data.length;
    return o2;
  });
  const out = new Uint8Array(off);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, 3, true); // EM_386
  dv.setUint32(20, 1, true);
  dv.setUint32(24, o.entry ?? 0x400010, true);
  dv.setUint32(28, phoff, true);
  dv.setUint16(40, 52, true);
  dv.setUint16(42, 32, true);
  dv.setUint16(44, segments.length, true);
  segments.forEach((s, i) => {
    const p = phoff + i * 32;
    dv.setUint32(p, 1, true); // PT_LOAD
    dv.setUint32(p + 4, offsets[i]!, true);
    dv.setUint32(p + 8, s.vaddr ?? s.paddr, true);
    dv.setUint32(p + 12, s.paddr, true);
    dv.setUint32(p + 16, s.data.length, true);
    dv.setUint32(p + 20, s.memsz, true);
    dv.setUint32(p + 24, 5, true);
    dv.setUint32(p + 28, 0x1000, true);
    out.set(s.data, offsets[i]!);
  });
  return out;
}

/**
 * A raw (a.out-kludge) kernel: 0x40 bytes of padding, the header at file
 * offset 0x40 (loaded at 0x100040), code up to 0x1000 bytes.
 */
function aoutKernel(addr: Partial<AddressFields> = {}, fileSize = 0x1000): Uint8Array {
  const fields: AddressFields = {
    headerAddr: 0x100040,
    loadAddr: 0x100000,
    loadEndAddr: 0x100800,
    bssEndAddr: 0x103000,
    entryAddr: 0x100100,
    ...addr,
  };
  const out = pattern(fileSize, 3);
  out.set(mbHeader(MB_HEADER_AOUT_KLUDGE | MB_HEADER_PAGE_ALIGN | MB_HEADER_MEMORY_INFO, fields), 0x40);
  return out;
}

function setup(total = 64 * MiB) {
  const layout = pcMemoryLayout(total);
  const mem = memoryFor(layout);
  // Dirty RAM, so zeroed bss is visibly the loader's doing.
  for (const r of mem.list()) r.bytes.fill(0xaa);
  return { mem, e820: buildE820(layout), lowRamEnd: layout.lowRam.size };
}

function bootError(fn: () => unknown): BootError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(BootError);
    expect((e as Error).message).not.toContain('\n');
    return e as BootError;
  }
  throw new Error('expected a BootError');
}

describe('isMultiboot', () => {
  it('finds a 4-byte aligned header with a valid checksum in the first 8192 bytes', () => {
    const img = new Uint8Array(0x4000);
    img.set(mbHeader(MB_HEADER_MEMORY_INFO), 0x1ff0);
    expect(isMultiboot(img)).toBe(true);
    expect(findMultibootHeader(img)).toEqual({ offset: 0x1ff0, flags: MB_HEADER_MEMORY_INFO });
    expect(isMultiboot(elf32Kernel())).toBe(true);
  });

  it('ignores a bad checksum, a misaligned header and one past 8192 bytes', () => {
    const bad = new Uint8Array(0x1000);
    bad.set(mbHeader(0, undefined, 1), 0x100);
    expect(isMultiboot(bad)).toBe(false);
    const misaligned = new Uint8Array(0x1000);
    misaligned.set(mbHeader(0), 0x102);
    expect(isMultiboot(misaligned)).toBe(false);
    const late = new Uint8Array(0x4000);
    late.set(mbHeader(0), 0x2000);
    expect(isMultiboot(late)).toBe(false);
    const straddling = new Uint8Array(0x4000);
    straddling.set(mbHeader(0), 0x1ff8);
    expect(isMultiboot(straddling)).toBe(false);
    expect(isMultiboot(new Uint8Array(0))).toBe(false);
    expect(isMultiboot(new Uint8Array(8))).toBe(false);
  });

  it('takes the first valid header after a corrupt one', () => {
    const img = new Uint8Array(0x1000);
    img.set(mbHeader(0, undefined, 5), 0x10);
    img.set(mbHeader(MB_HEADER_PAGE_ALIGN), 0x20);
    expect(findMultibootHeader(img)).toEqual({ offset: 0x20, flags: MB_HEADER_PAGE_ALIGN });
  });
});

describe('loadMultibootKernel: ELF', () => {
  it('loads PT_LOAD segments at their physical addresses and zeroes the bss', () => {
    const { mem, e820, lowRamEnd } = setup();
    const img = elf32Kernel();
    const boot = loadMultibootKernel(mem, img, PATH, { cmdline: '', e820, lowRamEnd });
    expect(boot.format).toBe('elf32');
    expect(boot.entry).toBe(0x400010);
    expect(boot.kernelStart).toBe(0x400000);
    expect(boot.kernelEnd).toBe(0x403000);
    expect(mem.read(0x400000, 12)).toEqual(mbHeader(0));
    expect(mem.read(0x400000, 0x600)).toEqual(img.subarray(0x80, 0x680));
    expect(mem.read(0x401000, 0x300)).toEqual(pattern(0x300, 2));
    expect(mem.read(0x401300, 0x1d00).every((b) => b === 0)).toBe(true);
    expect(mem.read(0x403000, 1)[0]).toBe(0xaa);
    expect(boot.warnings).toEqual([]);
  });

  it('returns the 32-bit flat protected-mode state of spec §3.2', () => {
    const { mem, e820, lowRamEnd } = setup();
    const boot = loadMultibootKernel(mem, elf32Kernel(), PATH, { cmdline: '', e820, lowRamEnd });
    expect(boot.eax).toBe(MULTIBOOT_BOOTLOADER_MAGIC);
    expect(boot.eax).toBe(0x2badb002);
    expect(boot.rflags & 0x200).toBe(0); // IF
    expect(boot.rflags & 0x20000).toBe(0); // VM
    const cpu = boot.cpu;
    expect(cpu.cr0 & CR0_PE).toBe(CR0_PE);
    expect(cpu.cr0 & CR0_PG).toBe(0);
    expect(cpu.efer).toBe(0);
    expect(cpu.cs).toMatchObject({ base: 0, limit: 0xffffffff, db: 1, l: 0, s: 1, present: 1 });
    expect(cpu.cs.type & 0xa).toBe(0xa); // code, readable
    expect(cpu.ds).toMatchObject({ base: 0, limit: 0xffffffff, db: 1, s: 1, present: 1 });
    expect(cpu.ds.type & 0xa).toBe(0x2); // data, writable
    // The GDT is in guest memory: its CS and DS descriptors say flat 4 GiB, 32-bit.
    expect([u32(mem, cpu.gdt.base + cpu.cs.selector), u32(mem, cpu.gdt.base + cpu.cs.selector + 4)]).toEqual([
      0x0000ffff, 0x00cf9b00,
    ]);
    expect([u32(mem, cpu.gdt.base + cpu.ds.selector), u32(mem, cpu.gdt.base + cpu.ds.selector + 4)]).toEqual([
      0x0000ffff, 0x00cf9300,
    ]);
  });

  it('translates a virtual entry point to its physical address', () => {
    const text = pattern(0x400, 4);
    text.set(mbHeader(0), 0);
    const img = elf32Kernel({
      segments: [{ paddr: 0x100000, vaddr: 0xc0100000, data: text, memsz: 0x1000 }],
      entry: 0xc0100020,
    });
    const { mem, e820, lowRamEnd } = setup();
    const boot = loadMultibootKernel(mem, img, PATH, { cmdline: '', e820, lowRamEnd });
    expect(boot.entry).toBe(0x100020);
    expect(mem.read(0x100000, 0x400)).toEqual(text);
  });

  it('rejects an entry point outside every segment', () => {
    const { mem, e820, lowRamEnd } = setup();
    const err = bootError(() =>
      loadMultibootKernel(mem, elf32Kernel({ entry: 0x500000 }), PATH, { cmdline: '', e820, lowRamEnd }),
    );
    expect(err.message).toBe(`${PATH}: ELF entry point 0x500000 is outside every loadable segment`);
  });

  it('rejects overlapping segments, segments outside RAM and segments over the boot GDT', () => {
    const { mem, e820, lowRamEnd } = setup();
    const text = pattern(0x200, 5);
    text.set(mbHeader(0), 0);
    const load = (segments: Seg[], entry = segments[0]!.paddr) =>
      bootError(() =>
        loadMultibootKernel(mem, elf32Kernel({ segments, entry }), PATH, { cmdline: '', e820, lowRamEnd }),
      ).message;
    expect(
      load([
        { paddr: 0x200000, data: text, memsz: 0x2000 },
        { paddr: 0x201000, data: pattern(0x10, 6), memsz: 0x10 },
      ]),
    ).toBe(`${PATH}: kernel segments 0x200000-0x202000 and 0x201000-0x201010 overlap`);
    expect(load([{ paddr: 64 * MiB - 0x100, data: text, memsz: 0x200 }])).toBe(
      `${PATH}: kernel segment 0x3ffff00-0x4000100 is not inside guest RAM`,
    );
    // The EBDA and the BIOS area are reserved in the e820 map.
    expect(load([{ paddr: 0x9fc00, data: text, memsz: 0x200 }])).toContain('is not inside guest RAM');
    expect(load([{ paddr: 0x400, data: text, memsz: 0x200 }])).toBe(
      `${PATH}: kernel segment 0x400-0x600 overlaps the boot GDT/IDT at 0x500-0x548`,
    );
    expect(load([{ paddr: 0xfffff000, data: text, memsz: 0x2000 }])).toContain('above 4 GiB');
    // Nothing was written.
    expect(mem.read(0x200000, 1)[0]).toBe(0xaa);
  });

  it('rejects ELF files it cannot load', () => {
    const { mem, e820, lowRamEnd } = setup();
    const load = (img: Uint8Array) =>
      bootError(() => loadMultibootKernel(mem, img, PATH, { cmdline: '', e820, lowRamEnd })).message;
    const arm = elf32Kernel();
    arm[18] = 40;
    expect(load(arm)).toContain('is not i386');
    const truncated = elf32Kernel().subarray(0, 0x300);
    expect(load(truncated)).toContain('truncated ELF file');
    const bigBss = elf32Kernel();
    new DataView(bigBss.buffer).setUint32(52 + 20, 0x10, true); // p_memsz < p_filesz
    expect(load(bigBss)).toContain('p_filesz 0x600 > p_memsz 0x10');
  });

  it('loads a 64-bit ELF (GRUB 2 does) when everything is below 4 GiB', () => {
    // A minimal ELF64 with one PT_LOAD at 2 MiB holding the header.
    const text = pattern(0x100, 7);
    text.set(mbHeader(0), 0);
    const img = new Uint8Array(0x100 + 0x100);
    const dv = new DataView(img.buffer);
    img.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
    dv.setUint16(16, 2, true);
    dv.setUint16(18, 62, true);
    dv.setUint32(20, 1, true);
    dv.setBigUint64(24, 0x200010n, true);
    dv.setBigUint64(32, 64n, true);
    dv.setUint16(54, 56, true);
    dv.setUint16(56, 1, true);
    dv.setUint32(64, 1, true);
    dv.setBigUint64(64 + 8, 0x100n, true);
    dv.setBigUint64(64 + 16, 0x200000n, true);
    dv.setBigUint64(64 + 24, 0x200000n, true);
    dv.setBigUint64(64 + 32, 0x100n, true);
    dv.setBigUint64(64 + 40, 0x1000n, true);
    img.set(text, 0x100);
    const { mem, e820, lowRamEnd } = setup();
    const boot = loadMultibootKernel(mem, img, PATH, { cmdline: '', e820, lowRamEnd });
    expect(boot).toMatchObject({
      format: 'elf64',
      entry: 0x200010,
      kernelStart: 0x200000,
      kernelEnd: 0x201000,
    });
    expect(mem.read(0x200000, 0x100)).toEqual(text);
  });
});

describe('loadMultibootKernel: a.out kludge (header flag 16)', () => {
  it('loads load_addr..load_end_addr from the file and zeroes up to bss_end_addr', () => {
    const { mem, e820, lowRamEnd } = setup();
    const img = aoutKernel();
    const boot = loadMultibootKernel(mem, img, '/images/raw.bin', { cmdline: '', e820, lowRamEnd });
    expect(boot.format).toBe('a.out kludge');
    expect(boot.entry).toBe(0x100100);
    expect(boot.kernelStart).toBe(0x100000);
    expect(boot.kernelEnd).toBe(0x103000);
    expect(mem.read(0x100000, 0x800)).toEqual(img.subarray(0, 0x800));
    expect(mem.read(0x100800, 0x2800).every((b) => b === 0)).toBe(true);
    expect(mem.read(0x103000, 1)[0]).toBe(0xaa);
  });

  it('loads the whole rest of the file when load_end_addr is 0, and wins over ELF headers', () => {
    const { mem, e820, lowRamEnd } = setup();
    const img = aoutKernel({ loadEndAddr: 0, bssEndAddr: 0 }, 0x1800);
    const boot = loadMultibootKernel(mem, img, PATH, { cmdline: '', e820, lowRamEnd });
    expect(boot.kernelEnd).toBe(0x101800);
    expect(mem.read(0x100000, 0x1800)).toEqual(img);

    // An ELF file with flag 16 is loaded by the address fields, not by its program headers.
    const elf = elf32Kernel({
      header: mbHeader(MB_HEADER_AOUT_KLUDGE, {
        headerAddr: 0x300080,
        loadAddr: 0x300000,
        loadEndAddr: 0,
        bssEndAddr: 0x302000,
        entryAddr: 0x300090,
      }),
    });
    const b2 = loadMultibootKernel(mem, elf, PATH, { cmdline: '', e820, lowRamEnd });
    expect(b2).toMatchObject({ format: 'a.out kludge', entry: 0x300090, kernelStart: 0x300000 });
    expect(mem.read(0x300000, elf.length)).toEqual(elf);
  });

  it('rejects inconsistent address fields', () => {
    const { mem, e820, lowRamEnd } = setup();
    const load = (addr: Partial<AddressFields>, size?: number) =>
      bootError(() =>
        loadMultibootKernel(mem, aoutKernel(addr, size), PATH, { cmdline: '', e820, lowRamEnd }),
      ).message;
    expect(load({ loadAddr: 0x100080 })).toBe(
      `${PATH}: inconsistent multiboot header: load_addr 0x100080 is above header_addr 0x100040`,
    );
    expect(load({ headerAddr: 0x100080 })).toContain('before the file start');
    expect(load({ loadEndAddr: 0x100040 })).toContain('leaves out the header');
    expect(load({ loadEndAddr: 0x102000 })).toContain('truncated kernel');
    expect(load({ bssEndAddr: 0x100400 })).toContain('bss_end_addr 0x100400 is below');
    expect(load({ entryAddr: 0x200000 })).toContain('entry_addr 0x200000 is outside the kernel');
    expect(
      load({ loadAddr: 0xfff00, headerAddr: 0xfff40, loadEndAddr: 0x100800, entryAddr: 0x100000 }),
    ).toContain('kernel segment 0xfff00-0x103000 is not inside guest RAM');
    const cut = aoutKernel().subarray(0, 0x50);
    expect(
      bootError(() => loadMultibootKernel(mem, cut, PATH, { cmdline: '', e820, lowRamEnd })).message,
    ).toContain('address fields end past the end of the file');
  });

  it('needs the address fields for a file that is not ELF', () => {
    const { mem, e820, lowRamEnd } = setup();
    const img = new Uint8Array(0x1000);
    img.set(mbHeader(0), 0x40);
    expect(
      bootError(() => loadMultibootKernel(mem, img, PATH, { cmdline: '', e820, lowRamEnd })).message,
    ).toBe(
      `${PATH}: multiboot kernel is not ELF and its header lacks the address fields (flag 16) that say where to load it`,
    );
  });
});

describe('loadMultibootKernel: header checks', () => {
  it('refuses a file without a valid header', () => {
    const { mem, e820, lowRamEnd } = setup();
    const img = elf32Kernel({ header: mbHeader(0, undefined, 1) });
    expect(
      bootError(() => loadMultibootKernel(mem, img, PATH, { cmdline: '', e820, lowRamEnd })).message,
    ).toMatch(/^\/images\/kernel\.elf: no multiboot header/);
  });

  it('refuses required features it lacks (flag bits 3-15) and ignores optional ones (16-31)', () => {
    const { mem, e820, lowRamEnd } = setup();
    const load = (flags: number) =>
      loadMultibootKernel(mem, elf32Kernel({ header: mbHeader(flags) }), PATH, {
        cmdline: '',
        e820,
        lowRamEnd,
      });
    expect(bootError(() => load(1 << 3)).message).toBe(
      `${PATH}: the multiboot header requires a feature mvisor lacks (flag bit 3 in 0x8)`,
    );
    expect(bootError(() => load((1 << 3) | (1 << 15) | MB_HEADER_MEMORY_INFO)).message).toContain(
      'flag bits 3, 15 in 0x800a',
    );
    expect(load(MB_HEADER_PAGE_ALIGN | MB_HEADER_MEMORY_INFO | (1 << 20)).warnings).toEqual([]);
  });

  it('accepts a video mode request (flag 2) with a warning and passes no video information', () => {
    const { mem, e820, lowRamEnd } = setup();
    const boot = loadMultibootKernel(mem, elf32Kernel({ header: mbHeader(MB_HEADER_VIDEO_MODE) }), PATH, {
      cmdline: '',
      e820,
      lowRamEnd,
    });
    expect(boot.warnings).toEqual([
      `${PATH}: the kernel asks for a video mode (multiboot flag 2); it starts with none set`,
    ]);
    expect(u32(mem, boot.infoAddr) & ((1 << 11) | (1 << 12))).toBe(0);
  });
});

describe('the multiboot information', () => {
  it('has flags, mem_lower/mem_upper, the e820 memory map, command line and loader name', () => {
    const { mem, e820, lowRamEnd } = setup(64 * MiB);
    const boot = loadMultibootKernel(mem, elf32Kernel(), PATH, {
      cmdline: 'console=ttyS0 verbose',
      e820,
      lowRamEnd,
    });
    const mbi = boot.infoAddr;
    expect(mbi).toBe(0x10000);
    expect(u32(mem, mbi + MBI.flags)).toBe(
      MB_INFO_MEMORY | MB_INFO_CMDLINE | MB_INFO_MODS | MB_INFO_MEM_MAP | MB_INFO_BOOT_LOADER_NAME,
    );
    expect(u32(mem, mbi + MBI.memLower)).toBe(639); // RAM up to the EBDA at 0x9FC00
    expect(u32(mem, mbi + MBI.memUpper)).toBe(63 * 1024);
    expect(cstring(mem, u32(mem, mbi + MBI.cmdline))).toBe(`${PATH} console=ttyS0 verbose`);
    expect(boot.cmdline).toEqual({ addr: u32(mem, mbi + MBI.cmdline), size: PATH.length + 23 });
    expect(cstring(mem, u32(mem, mbi + MBI.bootLoaderName))).toBe('mvisor');
    expect(u32(mem, mbi + MBI.modsCount)).toBe(0);
    expect(u32(mem, mbi + MBI.bootDevice)).toBe(0);

    const mmapLen = u32(mem, mbi + MBI.mmapLength);
    const mmapAddr = u32(mem, mbi + MBI.mmapAddr);
    expect(mmapLen).toBe(e820.length * 24);
    const entries = [];
    for (let p = mmapAddr; p < mmapAddr + mmapLen; p += u32(mem, p) + 4) {
      expect(u32(mem, p)).toBe(20);
      entries.push({ addr: u64(mem, p + 4), size: u64(mem, p + 12), type: u32(mem, p + 20) });
    }
    expect(entries).toEqual(e820);
    expect(entries[0]).toEqual({ addr: 0, size: 0x9fc00, type: E820_RAM });
    expect(entries.some((e) => e.type === E820_RESERVED)).toBe(true);
    // The whole block is where boot.info says, in conventional memory.
    expect(boot.info.addr).toBe(mbi);
    expect(mbi + boot.info.size).toBeLessThanOrEqual(0xa0000);
  });

  it('uses the kernel path alone when there are no arguments, and a given loader name', () => {
    const { mem, e820, lowRamEnd } = setup();
    const boot = loadMultibootKernel(mem, elf32Kernel(), PATH, {
      cmdline: '',
      e820,
      lowRamEnd,
      bootLoaderName: 'mvisor 0.1',
    });
    expect(cstring(mem, u32(mem, boot.infoAddr + MBI.cmdline))).toBe(PATH);
    expect(cstring(mem, u32(mem, boot.infoAddr + MBI.bootLoaderName))).toBe('mvisor 0.1');
    const err = bootError(() =>
      loadMultibootKernel(mem, elf32Kernel(), PATH, { cmdline: 'a\0b', e820, lowRamEnd }),
    );
    expect(err.message).toBe(`${PATH}: the kernel command line contains a NUL byte`);
  });

  it('mem_upper stops at the PCI hole', () => {
    // The map of a 4 GiB guest; only the first 64 MiB need backing here.
    const mem = memoryFor(pcMemoryLayout(64 * MiB));
    const e820 = buildE820(pcMemoryLayout(4096 * MiB));
    const lowRamEnd = 64 * MiB;
    const boot = loadMultibootKernel(mem, elf32Kernel(), PATH, { cmdline: '', e820, lowRamEnd });
    expect(u32(mem, boot.infoAddr + MBI.memUpper)).toBe((0xc000_0000 - MiB) / 1024);
    const mmap = u32(mem, boot.infoAddr + MBI.mmapAddr);
    const last = mmap + u32(mem, boot.infoAddr + MBI.mmapLength) - 24;
    expect(u64(mem, last + 4)).toBe(0x1_0000_0000); // RAM above 4 GiB
  });

  it('places modules page aligned above the kernel with their command lines', () => {
    const { mem, e820, lowRamEnd } = setup();
    const a = pattern(0x1234, 8);
    const b = pattern(0x10, 9);
    const boot = loadMultibootKernel(mem, elf32Kernel(), PATH, {
      cmdline: 'x',
      modules: [
        { data: a, cmdline: '/images/env NR_CPUS=2', path: '/images/env' },
        { data: b, cmdline: '' },
        { data: new Uint8Array(0), cmdline: 'empty' },
      ],
      e820,
      lowRamEnd,
    });
    expect(boot.modules).toEqual([
      { addr: 0x403000, size: 0x1234 },
      { addr: 0x405000, size: 0x10 },
      { addr: 0x406000, size: 0 },
    ]);
    const mbi = boot.infoAddr;
    expect(u32(mem, mbi + MBI.modsCount)).toBe(3);
    const list = u32(mem, mbi + MBI.modsAddr);
    const mods = [0, 1, 2].map((i) => ({
      start: u32(mem, list + i * 16),
      end: u32(mem, list + i * 16 + 4),
      string: cstring(mem, u32(mem, list + i * 16 + 8)),
      pad: u32(mem, list + i * 16 + 12),
    }));
    expect(mods).toEqual([
      { start: 0x403000, end: 0x404234, string: '/images/env NR_CPUS=2', pad: 0 },
      { start: 0x405000, end: 0x405010, string: '', pad: 0 },
      { start: 0x406000, end: 0x406000, string: 'empty', pad: 0 },
    ]);
    expect(mem.read(0x403000, a.length)).toEqual(a);
    expect(mem.read(0x405000, b.length)).toEqual(b);
    expect(cstring(mem, u32(mem, mbi + MBI.cmdline))).toBe(`${PATH} x`);
  });

  it('keeps modules above 1 MiB and the info block off a kernel in conventional memory', () => {
    // Like kvm-unit-tests' realmode.flat (0x8000-0xDA30), but also covering 0x10000-0x2FFFF.
    const text = pattern(0x800, 10);
    text.set(mbHeader(0), 0);
    const img = elf32Kernel({
      segments: [
        { paddr: 0x8000, data: text, memsz: 0x800 },
        { paddr: 0x10000, data: pattern(0x100, 11), memsz: 0x20000 },
      ],
      entry: 0x8010,
    });
    const { mem, e820, lowRamEnd } = setup();
    const boot = loadMultibootKernel(mem, img, PATH, {
      cmdline: '',
      modules: [{ data: pattern(0x100, 12), cmdline: 'm' }],
      e820,
      lowRamEnd,
    });
    expect(boot.infoAddr).toBe(0x30000);
    expect(boot.modules).toEqual([{ addr: MiB, size: 0x100 }]);
    expect(mem.read(0x8000, 0x800)).toEqual(text);
  });

  it('moves the info block above 1 MiB when conventional memory is taken', () => {
    const text = pattern(0x100, 13);
    text.set(mbHeader(0), 0);
    const img = elf32Kernel({
      segments: [{ paddr: 0x1000, data: text, memsz: 0x9ec00 }],
      entry: 0x1000,
    });
    const { mem, e820, lowRamEnd } = setup();
    const boot = loadMultibootKernel(mem, img, PATH, {
      cmdline: '',
      modules: [{ data: pattern(0x2000, 14), cmdline: '' }],
      e820,
      lowRamEnd,
    });
    expect(boot.modules).toEqual([{ addr: MiB, size: 0x2000 }]);
    expect(boot.infoAddr).toBe(MiB + 0x2000);
  });

  it('refuses modules that do not fit below lowRamEnd', () => {
    const { mem, e820, lowRamEnd } = setup(16 * MiB);
    const err = bootError(() =>
      loadMultibootKernel(mem, elf32Kernel(), PATH, {
        cmdline: '',
        modules: [{ data: new Uint8Array(16 * MiB), cmdline: '', path: '/images/big.img' }],
        e820,
        lowRamEnd,
      }),
    );
    expect(err.message).toBe(
      '/images/big.img: module of 16777216 bytes does not fit in guest RAM between 0x403000 and 0x1000000',
    );
  });
});

/** kvm-unit-tests built from ../shared/peers (x86/*.flat are ELF32 multiboot kernels). */
function kvmUnitTests(): string | undefined {
  const env = process.env.MVISOR_TEST_KUT_DIR;
  if (env) return existsSync(join(env, 'x86/smptest.flat')) ? env : undefined;
  try {
    const name = readdirSync('/tmp/kut').find((f) => f.startsWith('kvm-unit-tests'));
    const dir = name && join('/tmp/kut', name);
    return dir && existsSync(join(dir, 'x86/smptest.flat')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

const kut = kvmUnitTests();
if (!kut) {
  console.warn(
    'multiboot.test.ts: skipping the kvm-unit-tests kernels: MVISOR_TEST_KUT_DIR names no built suite' +
      ' (make test builds ../shared/peers/kvm-unit-tests-*.tar.gz into ~/.cache/mvisor and sets it)',
  );
}

describe.skipIf(!kut)('kvm-unit-tests kernels', () => {
  const read = (name: string) => new Uint8Array(readFileSync(join(kut!, 'x86', name)));

  it('smptest.flat is an ELF32 multiboot kernel at 4 MiB that loads with an environ module', () => {
    const img = read('smptest.flat');
    expect(isMultiboot(img)).toBe(true);
    expect(findMultibootHeader(img)?.flags).toBe(0);
    const { mem, e820, lowRamEnd } = setup(64 * MiB);
    const env = new TextEncoder().encode('NR_CPUS=2\n');
    const boot = loadMultibootKernel(mem, img, 'x86/smptest.flat', {
      cmdline: '',
      modules: [{ data: env, cmdline: 'environ' }],
      e820,
      lowRamEnd,
    });
    expect(boot.format).toBe('elf32');
    expect(boot.kernelStart).toBeGreaterThanOrEqual(0x400000);
    expect(boot.entry).toBeGreaterThanOrEqual(boot.kernelStart);
    expect(boot.entry).toBeLessThan(boot.kernelEnd);
    expect(boot.modules[0]!.addr).toBeGreaterThanOrEqual(boot.kernelEnd);
    expect(boot.infoAddr).toBe(0x10000);
    // cstart64.S puts the header first in .text, the first segment.
    expect(u32(mem, boot.kernelStart)).toBe(MULTIBOOT_HEADER_MAGIC);
  });

  it('realmode.flat loads in conventional memory, clear of the info block', () => {
    const img = read('realmode.flat');
    expect(isMultiboot(img)).toBe(true);
    const { mem, e820, lowRamEnd } = setup(64 * MiB);
    const boot = loadMultibootKernel(mem, img, 'x86/realmode.flat', { cmdline: '', e820, lowRamEnd });
    expect(boot.format).toBe('elf32');
    expect(boot.kernelStart).toBe(0x8000);
    expect(boot.kernelEnd).toBeLessThanOrEqual(0x10000);
    expect(boot.infoAddr).toBeGreaterThanOrEqual(boot.kernelEnd);
  });

  it.skipIf(!existsSync(join(kut ?? '', 'x86/smptest.elf')))('smptest.elf (ELF64) loads as well', () => {
    const { mem, e820, lowRamEnd } = setup(64 * MiB);
    const boot = loadMultibootKernel(mem, read('smptest.elf'), 'x86/smptest.elf', {
      cmdline: '',
      e820,
      lowRamEnd,
    });
    expect(boot.format).toBe('elf64');
    expect(boot.entry).toBe(
      loadMultibootKernel(setup().mem, read('smptest.flat'), 'x86/smptest.flat', {
        cmdline: '',
        e820,
        lowRamEnd,
      }).entry,
    );
  });
});

describe('planMultibootKernel (firmware boot)', () => {
  it('writes nothing, lists segments (with their zeros), modules and the info block, and reserves map room', () => {
    const { mem, e820, lowRamEnd } = setup();
    const before = Uint8Array.from(mem.view(0x100000, 0x4000));
    const modules = [{ data: pattern(300, 9), cmdline: 'm0' }];
    const plan = planMultibootKernel(mem, aoutKernel(), 'k', {
      cmdline: 'x',
      modules,
      e820,
      lowRamEnd,
      mmapCapacity: 32,
      infoInConventionalMemory: true,
    });
    expect(mem.view(0x100000, 0x4000)).toEqual(before);
    expect(plan.writes.map((w) => [w.addr, w.data.length, w.zeros])).toEqual([
      [0x100000, 0x800, 0x2800],
      [plan.modules[0]!.addr, 300, 0],
      [plan.infoAddr, plan.info.size, 0],
    ]);
    expect(plan.infoAddr).toBeLessThan(0xa0000);
    expect(plan.mmap.capacity).toBe(32);
    const info = plan.writes[2]!.data;
    const dv = new DataView(info.buffer, info.byteOffset);
    expect(dv.getUint32(MBI.mmapAddr, true)).toBe(plan.mmap.addr);
    // The block holds 32 entries' room; the VMM's e820 fills the first ones.
    expect(dv.getUint32(MBI.mmapLength, true)).toBe(e820.length * 24);
    expect(plan.info.size).toBeGreaterThanOrEqual(MULTIBOOT_INFO_SIZE + 32 * 24);
  });

  it('refuses an info block that cannot stay below 640 KiB when asked to', () => {
    const { mem, e820, lowRamEnd } = setup();
    const e = bootError(() =>
      planMultibootKernel(mem, aoutKernel(), 'k', {
        cmdline: 'y'.repeat(0xfff0),
        modules: Array.from({ length: 12 }, (_, i) => ({
          data: pattern(16, i),
          cmdline: 'z'.repeat(0xfff0),
        })),
        e820,
        lowRamEnd,
        infoInConventionalMemory: true,
      }),
    );
    expect(e.message).toMatch(
      /^k: no room in guest RAM below 640 KiB for the \d+-byte multiboot information/,
    );
  });
});
