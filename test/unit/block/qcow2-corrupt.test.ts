import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockError } from '../../../src/block/image.js';
import { openImage } from '../../../src/block/open.js';
import { Qcow2Image } from '../../../src/block/qcow2.js';
import { hasQemuImg, qemuImg, tempDir } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function readU64(path: string, pos: number): number {
  const fd = openSync(path, 'r');
  const b = Buffer.alloc(8);
  readSync(fd, b, 0, 8, pos);
  closeSync(fd);
  return Number(b.readBigUInt64BE(0));
}

function patch(path: string, pos: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, bytes, 0, bytes.length, pos);
  closeSync(fd);
}

function u64(v: bigint | number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
}

/** A 4 MiB image with data in guest clusters 0 and 1 (64 KiB clusters); returns where its L1 and first L2 are. */
function makeImage(dir: string, name = 'img.qcow2') {
  const path = join(dir, name);
  qemuImg('create', '-q', '-f', 'qcow2', path, String(4 * MiB));
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 64k 64k', path], {
    stdio: 'ignore',
  });
  const l1 = readU64(path, 40);
  const l2 = readU64(path, l1) & 0x00fffffffffffe00;
  return { path, l1, l2 };
}

async function openError(path: string, opts = {}): Promise<BlockError> {
  try {
    const img = await openImage(path, { format: 'qcow2', ...opts });
    await img.close();
  } catch (err) {
    expect(err).toBeInstanceOf(BlockError);
    return err as BlockError;
  }
  throw new Error('open succeeded');
}

describe.skipIf(!hasQemuImg)('corrupt qcow2 images give clear errors, never wrong data', () => {
  let cleanup = () => {};
  let dir = '';
  afterEach(() => cleanup());
  const setup = () => {
    const t = tempDir();
    cleanup = t.cleanup;
    dir = t.dir;
  };

  it('a truncated header', async () => {
    setup();
    const { path } = makeImage(dir);
    truncateSync(path, 50);
    expect((await openError(path)).message).toMatch(/truncated header/);
  });

  it('bad magic (and detection then treats the file as raw)', async () => {
    setup();
    const { path } = makeImage(dir);
    patch(path, 0, Buffer.from('QFI\x00', 'latin1'));
    expect((await openError(path)).message).toMatch(/bad magic/);
    const raw = await openImage(path, { readOnly: true });
    expect(raw.format).toBe('raw');
    await raw.close();
  });

  it('cluster_bits 30', async () => {
    setup();
    const { path } = makeImage(dir);
    patch(path, 20, u32(30));
    expect((await openError(path)).message).toMatch(/cluster_bits 30/);
  });

  it('an unsupported version', async () => {
    setup();
    const { path } = makeImage(dir);
    patch(path, 4, u32(4));
    const err = await openError(path);
    expect(err.message).toMatch(/version 4/);
    expect(err.code).toBe('EINVAL');
  });

  it('the L1 table offset beyond the end of the file', async () => {
    setup();
    const { path } = makeImage(dir);
    patch(path, 40, u64(0x10000000));
    expect((await openError(path)).message).toMatch(/L1 table lies beyond the end of the file/);
  });

  it('an L1 table too small for the virtual size', async () => {
    setup();
    const { path } = makeImage(dir);
    patch(path, 24, u64(1024 * 1024 * MiB));
    expect((await openError(path)).message).toMatch(/too few/);
  });

  it('an unaligned L1 table offset, and one overlapping the refcount table', async () => {
    setup();
    const { path } = makeImage(dir);
    const l1 = readU64(path, 40);
    patch(path, 40, u64(l1 + 512));
    expect((await openError(path)).message).toMatch(/not cluster-aligned/);
    patch(path, 40, u64(readU64(path, 48)));
    expect((await openError(path)).message).toMatch(/overlaps/);
  });

  it('the refcount table beyond the end of the file', async () => {
    setup();
    const { path } = makeImage(dir);
    patch(path, 48, u64(0x40000000));
    expect((await openError(path)).message).toMatch(/refcount table lies beyond the end of the file/);
  });

  it('a refcount block pointer beyond the end of the file: writable open fails, read-only works', async () => {
    setup();
    const { path } = makeImage(dir);
    const rt = readU64(path, 48);
    patch(path, rt, u64(0x40000000));
    expect((await openError(path)).message).toMatch(/refcount block 0 lies beyond/);
    const img = await openImage(path, { readOnly: true });
    expect((await img.read(0, 16)).every((b) => b === 0x11)).toBe(true);
    await img.close();
  });

  it('an L2 entry pointing beyond the end of the file: EIO for that cluster only, and writes to it fail', async () => {
    setup();
    const { path, l2 } = makeImage(dir);
    patch(path, l2 + 8, u64((1n << 63n) | 0x40000000n));
    const before = readFileSync(path);
    const img = await openImage(path);
    const err = await img.read(64 * KiB, 512).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).code).toBe('EIO');
    expect((err as BlockError).message).toMatch(/beyond the end of the file/);
    // A read spanning the good and the bad cluster fails whole; the good one alone reads fine.
    await expect(img.read(60 * KiB, 8 * KiB)).rejects.toBeInstanceOf(BlockError);
    expect((await img.read(0, 64 * KiB)).every((b) => b === 0x11)).toBe(true);
    expect((await img.read(128 * KiB, 4096)).every((b) => b === 0)).toBe(true);
    await expect(img.write(64 * KiB, Buffer.alloc(512, 1))).rejects.toMatchObject({ code: 'EIO' });
    await img.close();
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('an L2 entry pointing into metadata (the L1 table) is EIO, and a write never lands there', async () => {
    setup();
    const { path, l1, l2 } = makeImage(dir);
    patch(path, l2 + 8, u64((1n << 63n) | BigInt(l1)));
    const before = readFileSync(path);
    const img = await openImage(path);
    await expect(img.read(64 * KiB, 512)).rejects.toThrow(/overlaps metadata/);
    await expect(img.write(64 * KiB + 100, Buffer.alloc(100, 9))).rejects.toMatchObject({ code: 'EIO' });
    await img.close();
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('an L2 table offset beyond the end of the file: EIO for its range, writes refused there', async () => {
    setup();
    const { path, l1 } = makeImage(dir);
    patch(path, l1, u64((1n << 63n) | 0x40000000n));
    const img = await openImage(path);
    await expect(img.read(0, 512)).rejects.toThrow(/L2 table 0 lies beyond the end of the file/);
    await expect(img.write(4096, Buffer.alloc(512, 1))).rejects.toMatchObject({ code: 'EIO' });
    await img.close();
  });

  it('an unaligned L2 table offset in the L1 table', async () => {
    setup();
    const { path, l1, l2 } = makeImage(dir);
    patch(path, l1, u64((1n << 63n) | BigInt(l2 + 512)));
    const img = await openImage(path, { readOnly: true });
    await expect(img.read(0, 512)).rejects.toThrow(/not cluster-aligned/);
    await img.close();
  });

  it('an L2 entry with reserved bits set, and a v2 zero flag', async () => {
    setup();
    const { path, l2 } = makeImage(dir);
    const e = readU64(path, l2);
    patch(path, l2, u64(BigInt(e) | 0x2n));
    let img = await openImage(path, { readOnly: true });
    await expect(img.read(0, 512)).rejects.toThrow(/reserved bits/);
    await img.close();
    const v2 = join(dir, 'v2.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', v2, String(MiB));
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 64k', v2], { stdio: 'ignore' });
    const v2l2 = readU64(v2, readU64(v2, 40)) & 0x00fffffffffffe00;
    patch(v2, v2l2, u64(BigInt(readU64(v2, v2l2)) | 1n));
    img = await openImage(v2, { readOnly: true });
    await expect(img.read(0, 512)).rejects.toThrow(/zero cluster flag in a version 2 image/);
    await img.close();
  });

  it('a backing file loop a -> b -> a', async () => {
    setup();
    const a = join(dir, 'a.qcow2');
    const b = join(dir, 'b.qcow2');
    writeFileSync(join(dir, 'base.raw'), Buffer.alloc(MiB));
    qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', a);
    qemuImg('create', '-q', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', b);
    qemuImg('rebase', '-u', '-b', 'b.qcow2', '-F', 'qcow2', a);
    const err = await openError(a);
    expect(err.message).toMatch(/backing file loop/);
    expect(err.message).toContain(`${a} -> ${b} -> ${a}`);
  });

  it('a backing chain deeper than 16', async () => {
    setup();
    writeFileSync(join(dir, 'l0.raw'), Buffer.alloc(MiB));
    let below = 'l0.raw';
    let fmt = 'raw';
    for (let i = 1; i <= 18; i++) {
      qemuImg('create', '-q', '-f', 'qcow2', '-b', below, '-F', fmt, join(dir, `l${i}.qcow2`));
      below = `l${i}.qcow2`;
      fmt = 'qcow2';
    }
    expect((await openError(join(dir, 'l18.qcow2'))).message).toMatch(
      /backing chain deeper than 16: .*l18\.qcow2 -> .*l17\.qcow2/,
    );
    // 16 levels below the top are fine.
    const ok = await openImage(join(dir, 'l16.qcow2'), { readOnly: true });
    await ok.close();
  });

  it('a missing backing file names the image that wants it', async () => {
    setup();
    writeFileSync(join(dir, 'gone.raw'), Buffer.alloc(MiB));
    const top = join(dir, 'top.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', 'gone.raw', '-F', 'raw', top);
    truncateSync(join(dir, 'gone.raw'), 0);
    execFileSync('rm', [join(dir, 'gone.raw')]);
    expect((await openError(top)).message).toMatch(
      /gone\.raw.*top\.qcow2|backing file .*gone\.raw of .*top\.qcow2/,
    );
  });

  it('an unknown incompatible feature bit, and extended L2 entries, by name', async () => {
    setup();
    const { path } = makeImage(dir);
    patch(path, 72, u64(1n << 10n));
    expect((await openError(path)).message).toMatch(
      /unsupported qcow2 feature: unknown incompatible feature bit 10/,
    );
    patch(path, 72, u64(1n << 4n));
    expect((await openError(path)).message).toMatch(/unsupported qcow2 feature: extended L2 entries/);
    const img = await openError(path, { readOnly: true });
    expect(img.code).toBe('EINVAL');
  });

  it('the corrupt bit refuses writing but allows reading', async () => {
    setup();
    const { path } = makeImage(dir);
    patch(path, 72, u64(2));
    expect((await openError(path)).message).toMatch(/marked corrupt/);
    const img = await Qcow2Image.open(path, { readOnly: true });
    expect((await img.read(0, 512)).every((b) => b === 0x11)).toBe(true);
    await img.close();
  });
});
