/**
 * Floppy drives and their media: the disk formats recognised by image
 * size, the CMOS drive type codes, the per-drive state (head position,
 * disk change latch), and the geometry of sector IDs on a raw image.
 */
import type { BlockImage } from '../../../block/image.js';
import { FLOPPY_SECTOR_SIZE, RATE_1M, RATE_250K, RATE_300K, RATE_500K } from './constants.js';

export type FloppyDriveType = '360K' | '1.2M' | '720K' | '1.44M' | '2.88M';

/** A disk format the controller recognises by image size. */
export interface FloppyFormat {
  readonly name: string;
  readonly tracks: number;
  readonly heads: number;
  readonly sectors: number;
  /** Data rate the medium is recorded at (DSR bits 1-0). */
  readonly rate: number;
  /** The drive type that reads it natively. */
  readonly drive: FloppyDriveType;
}

const FORMATS: readonly FloppyFormat[] = [
  { name: '360K', tracks: 40, heads: 2, sectors: 9, rate: RATE_300K, drive: '360K' },
  { name: '720K', tracks: 80, heads: 2, sectors: 9, rate: RATE_250K, drive: '720K' },
  { name: '1.2M', tracks: 80, heads: 2, sectors: 15, rate: RATE_500K, drive: '1.2M' },
  { name: '1.44M', tracks: 80, heads: 2, sectors: 18, rate: RATE_500K, drive: '1.44M' },
  { name: '1.68M (DMF)', tracks: 80, heads: 2, sectors: 21, rate: RATE_500K, drive: '1.44M' },
  { name: '2.88M', tracks: 80, heads: 2, sectors: 36, rate: RATE_1M, drive: '2.88M' },
];

/** CMOS register 0x10 drive type codes (as SeaBIOS and Linux read them). */
export const CMOS_DRIVE_TYPE: Record<FloppyDriveType, number> = {
  '360K': 1,
  '1.2M': 2,
  '720K': 3,
  '1.44M': 4,
  '2.88M': 5,
};

function formatSize(f: FloppyFormat): number {
  return f.tracks * f.heads * f.sectors * FLOPPY_SECTOR_SIZE;
}

/** The image sizes a floppy drive accepts, for error messages. */
export const FLOPPY_IMAGE_SIZES: readonly string[] = FORMATS.map((f) => `${f.name} (${formatSize(f)} bytes)`);

/** The disk format of an image of `size` bytes, or undefined if no floppy has that size. */
export function floppyFormat(size: number): FloppyFormat | undefined {
  return FORMATS.find((f) => formatSize(f) === size);
}

/**
 * The CMOS drive type (register 0x10 nibble: 1 360K, 2 1.2M, 3 720K,
 * 4 1.44M, 5 2.88M) of the drive that reads an image of `imageSize` bytes.
 * The machine puts drive A: in the high nibble and B: in the low one, and
 * sets the equipment byte (0x14) bit 0 and bits 7-6 (drives - 1).
 */
export function cmosFloppyType(imageSize: number): number {
  const f = floppyFormat(imageSize);
  if (!f) {
    throw new RangeError(
      `a floppy image must be one of ${FLOPPY_IMAGE_SIZES.join(', ')}; this one has ${imageSize} bytes`,
    );
  }
  return CMOS_DRIVE_TYPE[f.drive];
}

export interface FloppyDriveOptions {
  /** The disk in the drive; none for an empty drive. The controller never closes images. */
  image?: BlockImage;
  /** Drive type (CMOS); default: the one native to the image's format, 1.44M for an empty drive. */
  type?: FloppyDriveType;
  /** Write-protect the disk even if the image is writable (a read-only image always is). */
  readOnly?: boolean;
}

export interface SectorId {
  c: number;
  h: number;
  r: number;
}

export interface Drive {
  readonly present: boolean;
  readonly type: FloppyDriveType;
  image: BlockImage | undefined;
  format: FloppyFormat | undefined;
  forceReadOnly: boolean;
  /** Present cylinder number (the controller's PCN for the drive). */
  track: number;
  head: number;
  /** Sector last under the head, for READ ID. */
  sector: number;
  /** The disk change latch (DIR bit 7); cleared by a step with a disk in. */
  changed: boolean;
}

export function writeProtected(d: Drive): boolean {
  return !d.image || d.image.readOnly || d.forceReadOnly;
}

/** Moves a drive's head; a step with a disk in clears the disk change latch. */
export function step(d: Drive, track: number): boolean {
  if (!d.present || d.track === track) return false;
  d.track = track;
  if (d.image) d.changed = false;
  return true;
}

/** Whether sector `id` (size code n) exists on the disk in `d` where the head is. */
export function sectorExists(d: Drive, id: SectorId, n: number): boolean {
  const f = d.format;
  return (
    f !== undefined &&
    n === 2 &&
    id.c === d.track &&
    id.c < f.tracks &&
    id.h < f.heads &&
    id.r >= 1 &&
    id.r <= f.sectors
  );
}

export function lba(f: FloppyFormat, id: SectorId): number {
  return (id.c * f.heads + id.h) * f.sectors + id.r - 1;
}

/** Runs of consecutive sectors: [first index in the list, count, byte offset in the image]. */
export function runs(f: FloppyFormat, sectors: SectorId[], count: number): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let i = 0; i < count; i++) {
    const sectorLba = lba(f, sectors[i]!);
    const last = out[out.length - 1];
    if (last && lba(f, sectors[last[0] + last[1] - 1]!) + 1 === sectorLba) last[1]++;
    else out.push([i, 1, sectorLba * FLOPPY_SECTOR_SIZE]);
  }
  return out;
}
