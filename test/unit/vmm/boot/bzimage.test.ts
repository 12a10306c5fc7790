import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  BOOT_PARAMS,
  CAN_USE_HEAP,
  HDR,
  LOADED_HIGH,
  XLF_KERNEL_64,
  isBzImage,
  loadBzImage,
  parseBzImage,
} from '../../../../src/vmm/boot/bzimage.js';
import { E820_RAM, buildE820 } from '../../../../src/vmm/boot/e820.js';
import { BootError } from '../../../../src/vmm/boot/errors.js';
import { pcMemoryLayout } from '../../../../src/vmm/boot/layout.js';
import { MiB, cstring, memoryFor, u16, u32, u8 } from './helpers.js';

interface FakeImageOptions {
  setupSects?: number;
  version?: number;
  xloadflags?: number;
  relocatable?: boolean;
  prefAddress?: number;
  initSize?: number;
  initrdAddrMax?: number;
  cmdlineSize?: number;
  kernelSize?: number;
}

const PATH = '/images/test-bzImage';

/** A bzImage with a plausible setup header and a patterned protected-mode part. */
function fakeBzImage(o: FakeImageOptions = {}): Uint8Array {
  const setupSects = o.setupSects ?? 4;
  const setupSize = ((setupSects || 4) + 1) * 512;
  const kernelSize = o.kernelSize ?? 0x3000;
  const img = new Uint8Array(setupSize + kernelSize);
  const dv = new DataView(img.buffer);
  img[HDR.setupSects] = setupSects;
  dv.setUint16(HDR.bootFlag, 0xaa55, true);
  img[HDR.jump] = 0xeb;
  img[HDR.jump + 1] = 0x6a; // header ends at 0x26c, as in 2.15 kernels
  dv.setUint32(HDR.header, 0x53726448, true);
  dv.setUint16(HDR.version, o.version ?? 0x020f, true);
  img[HDR.loadflags] = LOADED_HIGH;
  dv.setUint32(HDR.code32Start, 0x100000, true);
  dv.setUint32(HDR.initrdAddrMax, o.initrdAddrMax ?? 0x7fffffff, true);
  dv.setUint32(HDR.kernelAlignment, 0x200000, true);
  img[HDR.relocatableKernel] = o.relocatable === false ? 0 : 1;
  dv.setUint16(HDR.xloadflags, o.xloadflags ?? XLF_KERNEL_64, true);
  dv.setUint32(HDR.cmdlineSize, o.cmdlineSize ?? 2047, true);
  dv.setUint32(HDR.payloadOffset, 0x100, true);
  dv.setUint32(HDR.payloadLength, kernelSize - 0x200, true);
  dv.setBigUint64(HDR.prefAddress, BigInt(o.prefAddress ?? 0x1000000), true);
  dv.setUint32(HDR.initSize, o.initSize ?? 0x800000, true);
  for (let i = setupSize; i < img.length; i++) img[i] = (i * 7) & 0xff;
  return img;
}

function setup(total = 128 * MiB) {
  const layout = pcMemoryLayout(total);
  return { mem: memoryFor(layout), e820: buildE820(layout), lowRamEnd: layout.lowRam.size };
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

describe('parseBzImage', () => {
  it('decodes the setup header', () => {
    const img = fakeBzImage();
    expect(isBzImage(img)).toBe(true);
    const h = parseBzImage(img, PATH);
    expect(h).toMatchObject({
      version: 0x020f,
      setupSects: 4,
      kernelOffset: 5 * 512,
      kernelSize: 0x3000,
      relocatable: true,
      kernelAlignment: 0x200000,
      initrdAddrMax: 0x7fffffff,
      cmdlineSize: 2047,
      prefAddress: 0x1000000,
      initSize: 0x800000,
      headerEnd: 0x26c,
    });
  });

  it('reads setup_sects 0 as 4', () => {
    const h = parseBzImage(fakeBzImage({ setupSects: 0 }), PATH);
    expect(h.setupSects).toBe(4);
    expect(h.kernelOffset).toBe(0xa00);
    expect(parseBzImage(fakeBzImage({ setupSects: 30 }), PATH).kernelOffset).toBe(31 * 512);
  });

  it('rejects truncated images, with the path in the message', () => {
    expect(bootError(() => parseBzImage(new Uint8Array(0x200), PATH)).message).toMatch(
      /^\/images\/test-bzImage: truncated/,
    );
    const cut = fakeBzImage().subarray(0, 5 * 512 + 0x1000);
    expect(bootError(() => parseBzImage(cut, PATH)).message).toContain(`${PATH}: truncated`);
  });

  it('rejects a missing HdrS magic', () => {
    const img = fakeBzImage();
    img[HDR.header] = 0;
    expect(isBzImage(img)).toBe(false);
    expect(bootError(() => parseBzImage(img, PATH)).message).toContain(`${PATH}: not a bzImage`);
  });

  it('rejects protocols older than 2.12 and 32-bit-only kernels', () => {
    expect(bootError(() => parseBzImage(fakeBzImage({ version: 0x020b }), PATH)).message).toMatch(
      /test-bzImage: boot protocol 2\.11 is too old, need 2\.12/,
    );
    expect(bootError(() => parseBzImage(fakeBzImage({ xloadflags: 0 }), PATH)).message).toContain(
      'XLF_KERNEL_64',
    );
  });
});

describe('loadBzImage', () => {
  it('loads the kernel at 1 MiB and fills in the zero page', () => {
    const { mem, e820, lowRamEnd } = setup();
    const img = fakeBzImage();
    const initrd = new Uint8Array(0x2345).fill(0x5a);
    const boot = loadBzImage(mem, img, PATH, {
      cmdline: 'console=ttyS0 panic=-1',
      initrd: { data: initrd, path: '/images/initrd' },
      e820,
      lowRamEnd,
    });
    expect(boot.entry64).toBe(0x100200);
    expect(boot.bootParams).toBe(0x7000);
    expect(mem.read(0x100000, 0x3000)).toEqual(img.subarray(5 * 512));

    const zp = 0x7000;
    // Setup header copied.
    expect(u32(mem, zp + HDR.header)).toBe(0x53726448);
    expect(u16(mem, zp + HDR.version)).toBe(0x020f);
    expect(u32(mem, zp + HDR.initSize)).toBe(0x800000);
    // Loader-owned fields.
    expect(u8(mem, zp + 0x210)).toBe(0xff); // type_of_loader
    expect(u8(mem, zp + 0x211) & (LOADED_HIGH | CAN_USE_HEAP)).toBe(LOADED_HIGH | CAN_USE_HEAP);
    expect(u16(mem, zp + 0x224)).toBe(0xfe00); // heap_end_ptr
    expect(u32(mem, zp + 0x228)).toBe(0x20000); // cmd_line_ptr
    expect(u32(mem, zp + 0x0c8)).toBe(0); // ext_cmd_line_ptr
    expect(cstring(mem, 0x20000)).toBe('console=ttyS0 panic=-1');
    // Initrd at the top of RAM, page aligned, above the kernel.
    const rdAddr = u32(mem, zp + 0x218);
    expect(u32(mem, zp + 0x21c)).toBe(0x2345);
    expect(u32(mem, zp + 0x0c0)).toBe(0);
    expect(u32(mem, zp + 0x0c4)).toBe(0);
    expect(rdAddr % 0x1000).toBe(0);
    expect(rdAddr + 0x2345).toBeLessThanOrEqual(128 * MiB);
    expect(rdAddr + 0x2345 + 0x1000).toBeGreaterThan(128 * MiB);
    expect(rdAddr).toBeGreaterThanOrEqual(boot.kernelEnd);
    expect(mem.read(rdAddr, 0x2345)).toEqual(initrd);
    expect(boot.initrd).toEqual({ addr: rdAddr, size: 0x2345 });
    // e820.
    expect(u8(mem, zp + 0x1e8)).toBe(e820.length);
    e820.forEach((e, i) => {
      const dv = mem.dataView(zp + 0x2d0 + i * 20, 20);
      expect(Number(dv.getBigUint64(0, true))).toBe(e.addr);
      expect(Number(dv.getBigUint64(8, true))).toBe(e.size);
      expect(dv.getUint32(16, true)).toBe(e.type);
    });
    expect(u32(mem, zp + 0x2d0 + 3 * 20 + 16)).toBe(E820_RAM);
    // The kernel runs from pref_address (16 MiB) and needs init_size from there.
    expect(boot.kernelEnd).toBe(0x1000000 + 0x800000);
  });

  it('records acpi_rsdp_addr when given', () => {
    const { mem, e820, lowRamEnd } = setup();
    loadBzImage(mem, fakeBzImage(), PATH, { cmdline: '', e820, lowRamEnd, acpiRsdp: 0xe0000 });
    expect(u32(mem, 0x7000 + BOOT_PARAMS.acpiRsdpAddr)).toBe(0xe0000);
  });

  it('loads a non-relocatable kernel at pref_address', () => {
    const { mem, e820, lowRamEnd } = setup();
    const img = fakeBzImage({ relocatable: false, prefAddress: 0x2000000 });
    const boot = loadBzImage(mem, img, PATH, { cmdline: 'x', e820, lowRamEnd });
    expect(boot.loadAddr).toBe(0x2000000);
    expect(boot.entry64).toBe(0x2000200);
    expect(mem.read(0x2000000, 16)).toEqual(img.subarray(2560, 2576));
  });

  it('keeps the initrd below initrd_addr_max', () => {
    const { mem, e820, lowRamEnd } = setup();
    const img = fakeBzImage({ initrdAddrMax: 0x37fffff });
    const boot = loadBzImage(mem, img, PATH, {
      cmdline: '',
      initrd: { data: new Uint8Array(0x1000), path: 'rd' },
      e820,
      lowRamEnd,
    });
    expect(boot.initrd?.addr).toBe(0x3800000 - 0x1000);
  });

  it('rejects a kernel that does not fit in RAM', () => {
    const { mem, e820, lowRamEnd } = setup(16 * MiB);
    const err = bootError(() => loadBzImage(mem, fakeBzImage(), PATH, { cmdline: '', e820, lowRamEnd }));
    expect(err.message).toContain(`${PATH}: kernel does not fit in RAM`);
  });

  it('rejects a command line longer than cmdline_size', () => {
    const { mem, e820, lowRamEnd } = setup();
    const img = fakeBzImage({ cmdlineSize: 16 });
    expect(() => loadBzImage(mem, img, PATH, { cmdline: 'a'.repeat(16), e820, lowRamEnd })).not.toThrow();
    const err = bootError(() => loadBzImage(mem, img, PATH, { cmdline: 'a'.repeat(17), e820, lowRamEnd }));
    expect(err.message).toContain(PATH);
    expect(err.message).toContain('at most 16');
  });

  it('rejects an initrd that does not fit, naming the initrd', () => {
    const { mem, e820, lowRamEnd } = setup(32 * MiB);
    const err = bootError(() =>
      loadBzImage(mem, fakeBzImage(), PATH, {
        cmdline: '',
        initrd: { data: new Uint8Array(16 * MiB), path: '/images/big.cpio' },
        e820,
        lowRamEnd,
      }),
    );
    expect(err.message).toMatch(/^\/images\/big\.cpio: initrd/);
  });
});

function realBzImage(): string | undefined {
  const env = process.env.MVISOR_TEST_BZIMAGE;
  if (env) return existsSync(env) ? env : undefined;
  try {
    const name = readdirSync('/boot').find((f) => f.startsWith('vmlinuz-'));
    if (!name) return undefined;
    const path = `/boot/${name}`;
    readFileSync(path, { flag: 'r' }).subarray(0, 1); // may be unreadable (0600)
    return path;
  } catch {
    return undefined;
  }
}

const real = realBzImage();

describe.skipIf(!real)('real bzImage', () => {
  it('parses and loads', () => {
    const path = real!;
    const img = new Uint8Array(readFileSync(path));
    const h = parseBzImage(img, path);
    expect(h.version).toBeGreaterThanOrEqual(0x020c);
    expect(h.xloadflags & XLF_KERNEL_64).toBe(XLF_KERNEL_64);
    expect(h.initSize).toBeGreaterThan(h.kernelSize);
    const { mem, e820, lowRamEnd } = setup(256 * MiB);
    const boot = loadBzImage(mem, img, path, {
      cmdline: 'console=ttyS0',
      initrd: { data: new Uint8Array(MiB), path: 'rd' },
      e820,
      lowRamEnd,
    });
    expect(boot.entry64).toBe(boot.loadAddr + 0x200);
    expect(u32(mem, 0x7000 + 0x202)).toBe(0x53726448);
  });
});
