import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** qemu-img (Debian qemu-utils) is the oracle; tests that need it skip without it. */
export const hasQemuImg = spawnSync('qemu-img', ['--version'], { stdio: 'ignore' }).status === 0;
if (!hasQemuImg)
  console.warn('qemu-img not found (apt-get install qemu-utils): skipping the qcow2 oracle tests');

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'mvisor-block-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface CheckResult {
  status: number;
  output: string;
  json: { 'check-errors': number; leaks?: number; corruptions?: number; 'leaks-fixed'?: number } | null;
}

/** `qemu-img check`: exit 0 clean, 2 corruptions, 3 leaks only. */
export function qemuCheck(path: string, ...extra: string[]): CheckResult {
  const r = spawnSync('qemu-img', ['check', '--output=json', ...extra, path], { encoding: 'utf8' });
  let json: CheckResult['json'] = null;
  try {
    json = JSON.parse(r.stdout) as CheckResult['json'];
  } catch {
    json = null;
  }
  return { status: r.status ?? -1, output: `${r.stdout}${r.stderr}`, json };
}

/** The guest-visible bytes of an image, as QEMU reads them. */
export function qemuRaw(path: string, dir: string, name = 'oracle.raw'): Buffer {
  const out = join(dir, name);
  rmSync(out, { force: true });
  qemuImg('convert', '-O', 'raw', path, out);
  const data = readFileSync(out);
  rmSync(out, { force: true });
  return data;
}

/** Part of the guest-visible bytes (for disks too large to hold whole). */
export function qemuRawSlice(path: string, dir: string, offset: number, length: number): Buffer {
  const out = join(dir, 'oracle-slice.raw');
  rmSync(out, { force: true });
  qemuImg('convert', '-O', 'raw', path, out); // sparse output: cheap for mostly empty disks
  const fd = openSync(out, 'r');
  const buf = Buffer.alloc(length);
  readSync(fd, buf, 0, length, offset);
  closeSync(fd);
  rmSync(out, { force: true });
  return buf;
}

/** mulberry32: small seeded PRNG so failures reproduce from the seed. */
export function rng(seed: number): {
  next: () => number;
  int: (n: number) => number;
  bytes: (n: number) => Buffer;
} {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const bytes = (n: number) => {
    const b = Buffer.alloc(n);
    // Patterned rather than fully random: cheap, and a misplaced block is still caught.
    const base = int(256);
    const step = 1 + int(250);
    for (let i = 0; i < n; i++) b[i] = (base + i * step + (i >> 9)) & 0xff;
    return b;
  };
  return { next, int, bytes };
}

/** First differing offset of two buffers, or -1. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
