import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openImage } from '../../../src/block/open.js';
import { Qcow2Image } from '../../../src/block/qcow2.js';
import { firstDiff, hasQemuImg, qemuCheck, qemuImg, qemuRaw, rng, tempDir } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * A crash stops the process between two pwrites: every write before it
 * has reached the kernel, none after it. This simulates that in-process:
 * file writes fail from the Nth on (the image sees EIO and gives up), then
 * the image is dropped without its close-time clean-up.
 */
async function fileHandleProto(): Promise<{ write: (...a: unknown[]) => Promise<unknown> }> {
  const fh = await open(import.meta.filename, 'r');
  const proto = Object.getPrototypeOf(fh) as { write: (...a: unknown[]) => Promise<unknown> };
  await fh.close();
  return proto;
}

type Op =
  | { kind: 'write'; off: number; data: Buffer }
  | { kind: 'discard' | 'zero'; off: number; len: number }
  | { kind: 'flush' };

/** Non-overlapping operations that allocate, fill refcount blocks, grow the refcount table and free. */
function scenario(size: number): Op[] {
  const r = rng(1234);
  const ops: Op[] = [];
  const slot = size / 16;
  for (let i = 0; i < 16; i++) {
    const base = i * slot;
    const kind = i % 5;
    if (kind === 3) ops.push({ kind: 'discard', off: base, len: slot / 2 });
    else if (kind === 4) ops.push({ kind: 'zero', off: base + 512, len: slot / 2 });
    else ops.push({ kind: 'write', off: base + (i % 3) * 700, data: r.bytes(slot - 4096) });
    if (i % 4 === 3) ops.push({ kind: 'flush' });
  }
  return ops;
}

async function runOps(img: Qcow2Image, ops: Op[], ref: Buffer, done: boolean[]): Promise<void> {
  for (const [i, op] of ops.entries()) {
    try {
      if (op.kind === 'write') await img.write(op.off, op.data);
      else if (op.kind === 'discard') await img.discard(op.off, op.len);
      else if (op.kind === 'zero') await img.writeZeroes(op.off, op.len, true);
      else await img.flush();
      done[i] = true;
      if (op.kind === 'write') op.data.copy(ref, op.off);
      else if (op.kind === 'zero') ref.fill(0, op.off, op.off + op.len);
    } catch {
      done[i] = false;
    }
  }
}

describe.skipIf(!hasQemuImg)('qcow2 crash safety (in-process simulation)', () => {
  let cleanup = () => {};
  afterEach(() => {
    vi.restoreAllMocks();
    cleanup();
  });

  it('re-opening after writes without close: at worst leaks, data intact, leaks repairable', async () => {
    const t = tempDir();
    cleanup = t.cleanup;
    const path = join(t.dir, 'd.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', path, String(8 * MiB));
    const ref = Buffer.alloc(8 * MiB);
    const img = (await openImage(path)) as Qcow2Image;
    const done: boolean[] = [];
    await runOps(img, scenario(8 * MiB), ref, done);
    expect(done.every(Boolean)).toBe(true);
    await img.abandon();

    const check = qemuCheck(path);
    expect(check.json?.['check-errors'] ?? 0, check.output).toBe(0);
    expect(check.json?.corruptions ?? 0, check.output).toBe(0);
    expect([0, 3], check.output).toContain(check.status);
    expect(firstDiff(qemuRaw(path, t.dir), ref)).toBe(-1);
    // mvisor reopens it and reads the same; qemu-img repairs the leaks.
    const again = await openImage(path, { readOnly: true });
    expect(firstDiff(await again.read(0, 8 * MiB), ref)).toBe(-1);
    await again.close();
    const repaired = qemuCheck(path, '-r', 'leaks');
    expect(repaired.status, repaired.output).toBe(0);
  });

  for (const [name, options] of [
    ['4 KiB clusters', 'cluster_size=4096'],
    [
      '512-byte clusters, 64-bit refcounts (refcount blocks and table growth)',
      'cluster_size=512,refcount_bits=64',
    ],
  ] as const) {
    it(`${name}: a crash after any write leaves qemu-img check with no corruption`, async () => {
      const t = tempDir();
      cleanup = t.cleanup;
      const size = 4 * MiB;
      const ops = scenario(size);
      const proto = await fileHandleProto();
      const original = proto.write;
      let writes = 0;
      let failFrom = Infinity;
      vi.spyOn(proto, 'write').mockImplementation(function (this: FileHandle, ...args: unknown[]) {
        if (++writes >= failFrom)
          return Promise.reject(Object.assign(new Error('injected crash'), { code: 'EIO' }));
        return original.apply(this, args);
      });

      // Count the writes of a clean run, then crash at points spread over it.
      const count = async (): Promise<number> => {
        const path = join(t.dir, 'count.qcow2');
        qemuImg('create', '-q', '-f', 'qcow2', '-o', options, path, String(size));
        const img = await Qcow2Image.open(path, { noSync });
        writes = 0;
        failFrom = Infinity;
        await runOps(img, ops, Buffer.alloc(size), []);
        const n = writes;
        await img.close();
        const after = await Qcow2Image.open(path, { readOnly: true });
        grewTable = after.headerInfo.refcountTableClusters > 1;
        await after.close();
        return n;
      };
      // fdatasync only matters for power loss, not for a process crash: skip it here to keep the test fast.
      const noSync = true;
      let grewTable = false;
      const total = await count();
      expect(total).toBeGreaterThan(20);
      if (options.includes('refcount_bits=64')) expect(grewTable).toBe(true);
      const points = new Set<number>();
      for (let i = 1; i <= 24; i++) points.add(Math.max(1, Math.round((total * i) / 24)));
      for (let i = 1; i <= 4; i++) points.add(i);

      for (const n of [...points].sort((a, b) => a - b)) {
        const path = join(t.dir, `crash-${n}.qcow2`);
        qemuImg('create', '-q', '-f', 'qcow2', '-o', options, path, String(size));
        const img = await Qcow2Image.open(path, { noSync });
        const ref = Buffer.alloc(size);
        const done: boolean[] = [];
        writes = 0;
        failFrom = n;
        await runOps(img, ops, ref, done);
        await img.abandon();
        failFrom = Infinity;

        const check = qemuCheck(path);
        expect(check.json?.corruptions ?? 0, `crash at write ${n}/${total}: ${check.output}`).toBe(0);
        expect(check.json?.['check-errors'] ?? 0, `crash at write ${n}/${total}: ${check.output}`).toBe(0);
        expect([0, 3], `crash at write ${n}/${total}: ${check.output}`).toContain(check.status);
        // Every operation that completed before the crash is readable (they do not overlap).
        const got = qemuRaw(path, t.dir);
        ops.forEach((op, i) => {
          if (!done[i] || op.kind === 'flush' || op.kind === 'discard') return;
          const len = op.kind === 'write' ? op.data.length : op.len;
          const diff = firstDiff(got.subarray(op.off, op.off + len), ref.subarray(op.off, op.off + len));
          expect(diff, `crash at write ${n}: op ${i} (${op.kind}) lost at +${diff}`).toBe(-1);
        });
        const repaired = qemuCheck(path, '-r', 'leaks');
        expect(repaired.status, repaired.output).toBe(0);
      }
    });
  }
});
