import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { E820_RESERVED, buildE820 } from '../../../../src/vmm/boot/e820.js';
import { PT_LOAD, PT_NOTE, elfNotes, isElf, parseElf64 } from '../../../../src/vmm/boot/elf.js';
import { BootError } from '../../../../src/vmm/boot/errors.js';
import { pcMemoryLayout } from '../../../../src/vmm/boot/layout.js';
import { HVM_START_MAGIC, findPvhEntry, loadPvhKernel } from '../../../../src/vmm/boot/pvh.js';
import { MiB, cstring, memoryFor, u32, u64 } from './helpers.js';

const PATH = '/images/vmlinux';

interface Seg {
  paddr: number;
  data: Uint8Array;
  memsz: number;
}

interface FakeElfOptions {
  segments?: Seg[];
  /** Value of the Xen PHYS32_ENTRY note; undefined leaves the note out. */
  pvhEntry?: number;
  pvhDescSize?: 4 | 8;
}

function note(owner: string, type: number, desc: Uint8Array): Uint8Array {
  const name = new TextEncoder().encode(`${owner}\0`);
  const pad = (n: number) => Math.ceil(n / 4) * 4;
  const out = new Uint8Array(12 + pad(name.length) + pad(desc.length));
  const dv = new DataView(out.buffer);
  dv.setUint32(0, name.length, true);
  dv.setUint32(4, desc.length, true);
  dv.setUint32(8, type, true);
  out.set(name, 12);
  out.set(desc, 12 + pad(name.length));
  return out;
}

/** An ELF64 x86-64 executable with the given PT_LOAD segments and a PT_NOTE segment. */
function fakeElf(o: FakeElfOptions = {}): Uint8Array {
  const segments = o.segments ?? [
    { paddr: 0x1000000, data: new Uint8Array(0x800).fill(0xc3), memsz: 0x2000 },
    { paddr: 0x1400000, data: new Uint8Array(0x100).fill(0x11), memsz: 0x100 },
  ];
  const gnu = note('GNU', 3, new Uint8Array(20).fill(1));
  let notes = gnu;
  if (o.pvhEntry !== undefined) {
    const size = o.pvhDescSize ?? 8;
    const desc = new Uint8Array(size);
    if (size === 8) new DataView(desc.buffer).setBigUint64(0, BigInt(o.pvhEntry), true);
    else new DataView(desc.buffer).setUint32(0, o.pvhEntry, true);
    const xen = note('Xen', 18, desc);
    notes = new Uint8Array(gnu.length + xen.length);
    notes.set(gnu);
    notes.set(xen, gnu.length);
  }
  const phnum = segments.length + 1;
  let off = 64 + phnum * 56;
  const offsets = segments.map((s) => {
    const o2 = off;
    off += s.data.length;
    return o2;
  });
  const noteOff = off;
  off += notes.length;
  const out = new Uint8Array(off);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, 62, true); // EM_X86_64
  dv.setUint32(20, 1, true);
  dv.setBigUint64(24, 0xffffffff81000000n, true);
  dv.setBigUint64(32, 64n, true);
  dv.setUint16(52, 64, true);
  dv.setUint16(54, 56, true);
  dv.setUint16(56, phnum, true);
  const ph = (i: number, type: number, offset: number, paddr: number, filesz: number, memsz: number) => {
    const p = 64 + i * 56;
    dv.setUint32(p, type, true);
    dv.setUint32(p + 4, 5, true);
    dv.setBigUint64(p + 8, BigInt(offset), true);
    dv.setBigUint64(p + 16, 0xffffffff80000000n + BigInt(paddr), true);
    dv.setBigUint64(p + 24, BigInt(paddr), true);
    dv.setBigUint64(p + 32, BigInt(filesz), true);
    dv.setBigUint64(p + 40, BigInt(memsz), true);
    dv.setBigUint64(p + 48, type === PT_NOTE ? 4n : 0x200000n, true);
  };
  segments.forEach((s, i) => {
    ph(i, PT_LOAD, offsets[i]!, s.paddr, s.data.length, s.memsz);
    out.set(s.data, offsets[i]!);
  });
  ph(segments.length, PT_NOTE, noteOff, 0x1000800, notes.length, notes.length);
  out.set(notes, noteOff);
  return out;
}

function setup(total = 64 * MiB) {
  const layout = pcMemoryLayout(total);
  return { mem: memoryFor(layout), e820: buildE820(layout) };
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

describe('parseElf64', () => {
  it('reads the program headers and notes', () => {
    const bytes = fakeElf({ pvhEntry: 0x1000400 });
    expect(isElf(bytes)).toBe(true);
    const elf = parseElf64(bytes, PATH);
    expect(elf.entry).toBe(0xffffffff81000000n);
    expect(elf.programHeaders.map((p) => p.type)).toEqual([PT_LOAD, PT_LOAD, PT_NOTE]);
    expect(elf.programHeaders[0]).toMatchObject({ paddr: 0x1000000, filesz: 0x800, memsz: 0x2000 });
    expect(elfNotes(bytes, elf, PATH).map((n) => [n.owner, n.type, n.desc.length])).toEqual([
      ['GNU', 3, 20],
      ['Xen', 18, 8],
    ]);
    expect(findPvhEntry(bytes, elf, PATH)).toBe(0x1000400);
    const four = fakeElf({ pvhEntry: 0x1000404, pvhDescSize: 4 });
    expect(findPvhEntry(four, parseElf64(four, PATH), PATH)).toBe(0x1000404);
  });

  it('rejects files that are not 64-bit x86 ELF executables', () => {
    expect(bootError(() => parseElf64(new Uint8Array(10), PATH)).message).toContain(`${PATH}: truncated`);
    const notElf = fakeElf();
    notElf[0] = 0;
    expect(bootError(() => parseElf64(notElf, PATH)).message).toContain('not an ELF');
    const elf32 = fakeElf();
    elf32[4] = 1;
    expect(bootError(() => parseElf64(elf32, PATH)).message).toContain('64-bit');
    const arm = fakeElf();
    arm[18] = 183;
    expect(bootError(() => parseElf64(arm, PATH)).message).toContain('x86-64');
  });

  it('rejects program headers or segments past the end of the file', () => {
    const bytes = fakeElf();
    expect(bootError(() => parseElf64(bytes.subarray(0, 100), PATH)).message).toContain('program headers');
    expect(bootError(() => parseElf64(bytes.subarray(0, bytes.length - 30), PATH)).message).toContain(
      `${PATH}: truncated`,
    );
  });
});

describe('loadPvhKernel', () => {
  it('loads segments and writes hvm_start_info, the module list and memory map', () => {
    const { mem, e820 } = setup();
    mem.fill(0x1000000, 0x2000, 0xaa); // the .bss part must be zeroed
    const initrd = new Uint8Array(0x1800).fill(0x77);
    const boot = loadPvhKernel(mem, fakeElf({ pvhEntry: 0x1000400 }), PATH, {
      cmdline: 'console=ttyS0',
      initrd: { data: initrd, path: '/images/initrd' },
      e820,
    });
    expect(boot.entry32).toBe(0x1000400);
    expect(boot.startInfo).toBe(0x6000);
    expect(boot.kernelEnd).toBe(0x1400100);
    expect(mem.read(0x1000000, 0x800).every((b) => b === 0xc3)).toBe(true);
    expect(mem.read(0x1000800, 0x1800).every((b) => b === 0)).toBe(true);
    expect(mem.read(0x1400000, 0x100).every((b) => b === 0x11)).toBe(true);

    const si = boot.startInfo;
    expect(u32(mem, si)).toBe(HVM_START_MAGIC);
    expect(u32(mem, si + 4)).toBe(1); // version
    expect(u32(mem, si + 8)).toBe(0); // flags
    expect(u32(mem, si + 12)).toBe(1); // nr_modules
    const modlist = u64(mem, si + 16);
    expect(cstring(mem, u64(mem, si + 24))).toBe('console=ttyS0');
    expect(u64(mem, si + 32)).toBe(0); // rsdp_paddr
    const memmap = u64(mem, si + 40);
    expect(u32(mem, si + 48)).toBe(e820.length);
    // Module list: the initrd, page aligned at the top of RAM.
    const rd = u64(mem, modlist);
    expect(u64(mem, modlist + 8)).toBe(0x1800);
    expect(rd % 0x1000).toBe(0);
    expect(rd + 0x1800).toBeLessThanOrEqual(64 * MiB);
    expect(rd).toBeGreaterThan(64 * MiB - 0x3000);
    expect(mem.read(rd, 0x1800)).toEqual(initrd);
    // Memory map: 24-byte entries.
    e820.forEach((e, i) => {
      expect(u64(mem, memmap + i * 24)).toBe(e.addr);
      expect(u64(mem, memmap + i * 24 + 8)).toBe(e.size);
      expect(u32(mem, memmap + i * 24 + 16)).toBe(e.type);
    });
  });

  it('says CONFIG_PVH is missing when there is no PVH note', () => {
    const { mem, e820 } = setup();
    const err = bootError(() => loadPvhKernel(mem, fakeElf(), PATH, { cmdline: '', e820 }));
    expect(err.message).toMatch(/^\/images\/vmlinux: .*CONFIG_PVH/);
  });

  it('rejects segments outside RAM', () => {
    const { mem, e820 } = setup(16 * MiB);
    const bytes = fakeElf({ pvhEntry: 0x1000400 });
    expect(bootError(() => loadPvhKernel(mem, bytes, PATH, { cmdline: '', e820 })).message).toContain(
      `${PATH}: ELF segment at 0x1000000-0x1002000 is not inside guest RAM`,
    );
    const low = fakeElf({
      pvhEntry: 0x8000,
      segments: [{ paddr: 0x7000, data: new Uint8Array(16), memsz: 0x2000 }],
    });
    expect(() =>
      loadPvhKernel(memoryFor(pcMemoryLayout(64 * MiB)), low, PATH, { cmdline: '', e820 }),
    ).toThrow(BootError);
    // RAM that the memory map reserves is not RAM for the kernel either.
    const { mem: mem2 } = setup();
    const reserved = buildE820(pcMemoryLayout(64 * MiB), [
      { addr: 0x1400000, size: 0x1000, type: E820_RESERVED },
    ]);
    expect(() => loadPvhKernel(mem2, bytes, PATH, { cmdline: '', e820: reserved })).toThrow(BootError);
  });

  it('rejects an entry point outside the kernel', () => {
    const { mem, e820 } = setup();
    expect(() => loadPvhKernel(mem, fakeElf({ pvhEntry: 0x10 }), PATH, { cmdline: '', e820 })).toThrow(
      BootError,
    );
  });
});

const vmlinux = process.env.MVISOR_TEST_VMLINUX;

describe.skipIf(!vmlinux || !existsSync(vmlinux))('real vmlinux', () => {
  it('finds the PVH entry and loads', () => {
    const bytes = new Uint8Array(readFileSync(vmlinux!));
    const { mem, e820 } = setup(128 * MiB);
    const boot = loadPvhKernel(mem, bytes, vmlinux!, { cmdline: 'console=ttyS0', e820 });
    expect(boot.entry32).toBeGreaterThanOrEqual(boot.kernelStart);
    expect(u32(mem, 0x6000)).toBe(HVM_START_MAGIC);
  });
});
