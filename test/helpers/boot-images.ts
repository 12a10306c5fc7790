/**
 * Bootable floppy, disk and CD images around the boot-marker boot sector
 * of test/guests/boot-sector/ (one 512-byte sector that prints a marker
 * through INT 10h and straight to COM1, then resets through 0xCF9):
 *
 * - `bootFloppy`: a 1.44 MB floppy whose sector 0 is the boot sector (an
 *   empty FAT12 file system around it);
 * - `bootDisk`: a raw disk whose MBR is the boot sector, with one partition
 *   entry (SeaBIOS only needs the 55 AA signature, but a disk without a
 *   partition table looks odd to every other tool);
 * - `bootDiskQcow2`: the same disk converted by qemu-img;
 * - `bootIso`: an ISO 9660 image with the boot sector as its El Torito
 *   no-emulation boot image (xorriso).
 *
 * And `diskCheckDisk`: a raw disk that boots the disk-check guest of
 * test/guests/boot-sector/disk-check.asm (rounds of INT 13h reads, writes
 * and read-backs), with `diskCheckModel` computing what it prints and
 * leaves on the disk.
 *
 * Images are cached under ~/.cache/mvisor/test-boot/<hash>/, keyed by the
 * assembler source, the marker and the image kind; tests that let a guest
 * write should copy them first.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ASM_REL = 'test/guests/boot-sector/boot-marker.asm';
/** Bump when a builder below changes what it writes. */
const BUILDER_VERSION = '1';

/** The repository root, from test/helpers/ in the sources or dist/test/helpers/ when compiled. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, ASM_REL))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find ${ASM_REL} above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export const BOOT_SECTOR_ASM = join(repoRoot(), ASM_REL);

/** 1.44 MB: 80 cylinders × 2 heads × 18 sectors × 512 bytes. */
export const FLOPPY_BYTES = 1_474_560;
const SECTOR = 512;
const MiB = 1024 * 1024;
/** Where the MBR partition table starts (four 16-byte entries). */
const PART_TABLE = 0x1be;

/** The line the boot sector prints through INT 10h. */
export const bootInt10Line = (marker: string): string => marker;
/** The line the boot sector writes straight to COM1. */
export const bootSerialLine = (marker: string): string => `SERIAL:${marker}`;

function checkMarker(marker: string): void {
  if (!/^[\x20-\x7e]+$/.test(marker) || marker.includes('"') || marker.length > 64) {
    throw new Error(
      `boot marker must be 1-64 printable ASCII characters without '"': ${JSON.stringify(marker)}`,
    );
  }
}

function run(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr?.toString().trim() || err.message}`);
  }
}

/**
 * The cached file `name` for (kind, marker, extra): built by `build(path,
 * work)` in a scratch directory and moved into place, so that a crash or a
 * concurrent build never leaves half an image behind.
 */
function cached(
  kind: string,
  marker: string,
  extra: string,
  name: string,
  build: (out: string, work: string) => void,
  asm = BOOT_SECTOR_ASM,
): string {
  checkMarker(marker);
  const hash = createHash('sha256')
    .update(readFileSync(asm))
    .update(`\0${BUILDER_VERSION}\0${kind}\0${marker}\0${extra}`)
    .digest('hex')
    .slice(0, 16);
  const root = join(homedir(), '.cache/mvisor/test-boot');
  const dir = join(root, hash);
  const out = join(dir, name);
  if (existsSync(out)) return out;
  mkdirSync(root, { recursive: true });
  const work = mkdtempSync(join(root, '.build-'));
  try {
    const staged = join(work, 'out');
    mkdirSync(staged);
    build(join(staged, name), work);
    try {
      renameSync(staged, dir);
    } catch (e) {
      // Another process built it first.
      if (!existsSync(out)) throw e;
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}

/** The 512-byte boot sector for `marker` (nasm), as a file. */
export function bootSector(marker: string): string {
  return cached('sector', marker, '', 'boot.bin', (out) => {
    run('nasm', ['-f', 'bin', '-D', `MARKER="${marker}"`, '-o', out, BOOT_SECTOR_ASM]);
    const s = readFileSync(out);
    if (s.length !== SECTOR || s[510] !== 0x55 || s[511] !== 0xaa) {
      throw new Error(`${BOOT_SECTOR_ASM}: not a 512-byte sector ending in 55 AA (${s.length} bytes)`);
    }
  });
}

function sectorBytes(marker: string): Buffer {
  return readFileSync(bootSector(marker));
}

/**
 * A 1.44 MB floppy image: the boot sector (with its FAT12 BPB) in sector 0,
 * then two empty FATs (sectors 1 and 10, media byte F0) and an empty root
 * directory, so that mtools and guests see an empty file system.
 */
export function bootFloppy(marker: string): string {
  return cached('floppy', marker, '', 'floppy.img', (out) => {
    const img = Buffer.alloc(FLOPPY_BYTES);
    sectorBytes(marker).copy(img, 0);
    for (const fat of [1, 10]) img.set([0xf0, 0xff, 0xff], fat * SECTOR);
    writeFileSync(out, img);
  });
}

/**
 * A raw disk of `sizeMiB` MiB whose MBR is the boot sector, with one
 * active partition (type 0xDA, "non-FS data") from 1 MiB to the end.
 */
export function bootDisk(marker: string, sizeMiB = 16): string {
  if (!Number.isInteger(sizeMiB) || sizeMiB < 2 || sizeMiB > 4096) {
    throw new Error(`boot disk size must be 2..4096 MiB, not ${sizeMiB}`);
  }
  return cached('disk', marker, String(sizeMiB), 'disk.raw', (out) => {
    const mbr = sectorBytes(marker);
    const start = 2048;
    const count = sizeMiB * 2048 - start;
    const e = PART_TABLE;
    mbr[e] = 0x80; // active
    mbr.set([0xfe, 0xff, 0xff], e + 1); // CHS start: beyond CHS, use LBA
    mbr[e + 4] = 0xda;
    mbr.set([0xfe, 0xff, 0xff], e + 5); // CHS end
    mbr.writeUInt32LE(start, e + 8);
    mbr.writeUInt32LE(count, e + 12);
    writeFileSync(out, mbr);
    // Sparse up to the full size: the rest reads as zeros.
    run('truncate', ['-s', `${sizeMiB}M`, out]);
  });
}

/** `bootDisk(marker, sizeMiB)` converted to qcow2 by qemu-img. */
export function bootDiskQcow2(marker: string, sizeMiB = 16): string {
  const raw = bootDisk(marker, sizeMiB);
  return cached('qcow2', marker, String(sizeMiB), 'disk.qcow2', (out) => {
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, out]);
  });
}

/**
 * An ISO 9660 image whose El Torito boot catalog names boot.img, the boot
 * sector padded to 2 KiB, as a no-emulation image of 4 virtual sectors
 * (what -boot-load-size 4 makes the BIOS load, at 07C0:0000).
 */
export function bootIso(marker: string): string {
  return cached('iso', marker, '', 'boot.iso', (out, work) => {
    const tree = join(work, 'tree');
    mkdirSync(tree);
    const img = Buffer.alloc(4 * SECTOR);
    sectorBytes(marker).copy(img, 0);
    writeFileSync(join(tree, 'boot.img'), img);
    writeFileSync(join(tree, 'README.TXT'), `mvisor boot marker ${marker}\n`);
    run('xorriso', [
      '-as',
      'mkisofs',
      '-quiet',
      '-V',
      'MVISOR_BOOT',
      '-b',
      'boot.img',
      '-no-emul-boot',
      '-boot-load-size',
      '4',
      '-o',
      out,
      tree,
    ]);
  });
}

// ---------------------------------------------------------------------------
// The disk-check guest.

export const DISK_CHECK_ASM = join(repoRoot(), 'test/guests/boot-sector/disk-check.asm');

/** The disk-check guest's layout (disk-check.asm's constants). */
export const DISK_CHECK = {
  /** First sector of region R_0; R_i follows at i * sectorsPerRound. */
  dataLba: 2048,
  /** The journal sector: rounds done (dword 0) and a hash of their sums (dword 4). */
  journalLba: 63,
} as const;

/** How much work the disk-check guest does: `rounds` rounds of `sectorsPerRound` sectors. */
export interface DiskCheckWork {
  /** 1..255 */
  rounds: number;
  /** 1..128 (64 KiB) */
  sectorsPerRound: number;
}

const rol16 = (v: number, n: number): number => ((v << n) | (v >>> (16 - n))) & 0xffff;

/**
 * A raw disk of `sizeMiB` MiB that boots the disk-check guest for
 * `work.rounds` rounds of `work.sectorsPerRound` sectors: the guest (MBR
 * and second stage) from sector 0, a zero journal, regions R_0..R_rounds
 * filled with a pseudo-random pattern (xorshift32), one active partition
 * (type 0xDA) from 1 MiB to the end.
 */
export function diskCheckDisk(work: DiskCheckWork, sizeMiB = 4): string {
  const { rounds, sectorsPerRound } = work;
  const { dataLba, journalLba } = DISK_CHECK;
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 255) {
    throw new Error(`disk-check rounds must be 1..255, not ${rounds}`);
  }
  if (!Number.isInteger(sectorsPerRound) || sectorsPerRound < 1 || sectorsPerRound > 128) {
    throw new Error(`disk-check sectors per round must be 1..128, not ${sectorsPerRound}`);
  }
  const needed = (dataLba + (rounds + 1) * sectorsPerRound) * SECTOR;
  if (!Number.isInteger(sizeMiB) || sizeMiB * MiB < needed || sizeMiB > 64) {
    throw new Error(`a disk-check disk of ${sizeMiB} MiB cannot hold the work (${needed} bytes)`);
  }
  return cached(
    'disk-check',
    'disk-check',
    `${rounds}/${sectorsPerRound}/${sizeMiB}`,
    'disk.raw',
    (out, scratch) => {
      const bin = join(scratch, 'disk-check.bin');
      run('nasm', [
        ...['-f', 'bin', '-D', `ROUNDS=${rounds}`, '-D', `SECTORS=${sectorsPerRound}`],
        ...['-o', bin, DISK_CHECK_ASM],
      ]);
      const code = readFileSync(bin);
      if (code.length % SECTOR || code[510] !== 0x55 || code[511] !== 0xaa) {
        throw new Error(`${DISK_CHECK_ASM}: not whole sectors with 55 AA at 510 (${code.length} bytes)`);
      }
      if (code.length > journalLba * SECTOR) {
        throw new Error(`${DISK_CHECK_ASM}: ${code.length} bytes run into the journal sector`);
      }
      const img = Buffer.alloc(sizeMiB * MiB);
      code.copy(img, 0);
      const e = PART_TABLE;
      img[e] = 0x80; // active
      img.set([0xfe, 0xff, 0xff], e + 1); // CHS start: beyond CHS, use LBA
      img[e + 4] = 0xda;
      img.set([0xfe, 0xff, 0xff], e + 5); // CHS end
      img.writeUInt32LE(2048, e + 8);
      img.writeUInt32LE(sizeMiB * 2048 - 2048, e + 12);
      let x = 0x6d766973;
      for (let o = dataLba * SECTOR; o < needed; o += 4) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        img.writeInt32LE(x | 0, o);
      }
      writeFileSync(out, img);
    },
    DISK_CHECK_ASM,
  );
}

/**
 * What the disk-check guest does to `image` (a disk from `diskCheckDisk`
 * for the same work), computed here: the lines it prints ("round r sum
 * XXXX") and the disk it leaves (a new buffer).
 */
export function diskCheckModel(image: Buffer, work: DiskCheckWork): { lines: string[]; image: Buffer } {
  const { rounds, sectorsPerRound } = work;
  const { dataLba, journalLba } = DISK_CHECK;
  const disk = Buffer.from(image);
  const size = sectorsPerRound * SECTOR;
  const region = (i: number) => (dataLba + i * sectorsPerRound) * SECTOR;
  const lines: string[] = [];
  const j = journalLba * SECTOR;
  for (let r = 0; r < rounds; r++) {
    const data = Buffer.from(disk.subarray(region(r), region(r) + size));
    let s = 0;
    for (let o = 0; o < size; o += 2) s = (rol16(s, 1) + data.readUInt16LE(o)) & 0xffff;
    let k = (s ^ ((r * 0x0101) & 0xffff)) & 0xffff;
    for (let o = 0; o < size; o += 2) {
      data.writeUInt16LE(rol16(data.readUInt16LE(o), 3) ^ k, o);
      k = (k + 0x9e37) & 0xffff;
    }
    data.copy(disk, region(r + 1));
    disk.writeUInt32LE(disk.readUInt32LE(j) + 1, j);
    const h = disk.readUInt32LE(j + 4);
    disk.writeUInt32LE((((h << 5) | (h >>> 27)) ^ s) >>> 0, j + 4);
    lines.push(`round ${r} sum ${s.toString(16).toUpperCase().padStart(4, '0')}`);
  }
  return { lines, image: disk };
}
