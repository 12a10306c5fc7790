/**
 * The data commands' execution phase: READ DATA, READ TRACK, WRITE DATA,
 * VERIFY and FORMAT TRACK. Sectors come from or go to the image
 * asynchronously; data moves by ISA DMA (channel 2) or through the FIFO in
 * non-DMA mode; the result phase follows the 82077AA result table (5-6).
 */
import { BlockError, type BlockImage } from '../../../block/image.js';
import {
  FLOPPY_SECTOR_SIZE,
  ST0_ABNTERM,
  ST0_SE,
  ST1_DE,
  ST1_EN,
  ST1_MA,
  ST1_ND,
  ST1_NW,
  ST2_DD,
} from './constants.js';
import type { Execution, FdcCore } from './core.js';
import { lba, runs, sectorExists, step, writeProtected, type FloppyFormat, type SectorId } from './drive.js';
import { decode } from './opcodes.js';

/** READ DATA, READ TRACK, WRITE DATA, VERIFY: checks, implied seek, the sector list. */
export function startTransfer(
  fdc: FdcCore,
  op: 'read' | 'readTrack' | 'write' | 'verify',
  cmd: number[],
): void {
  const drive = cmd[1]! & 3;
  const d = fdc.drives[drive]!;
  const mt = op !== 'readTrack' && (cmd[0]! & 0x80) !== 0;
  const [c, h, r0, n, eot] = [cmd[2]!, cmd[3]!, cmd[4]!, cmd[5]!, cmd[6]!];
  fdc.lastScEot = eot;
  const fail = (st1: number, st2 = 0): void =>
    fdc.finish([ST0_ABNTERM | ((h & 1) << 2) | drive, st1, st2, c, h, r0, n]);
  const err = fdc.mediaError(d, (cmd[0]! & 0x40) !== 0);
  if (err) return fail(err);
  if (op === 'write' && writeProtected(d)) return fail(ST1_NW);
  const seeked = step(d, c);
  d.head = h & 1;

  // The sectors from R to EOT (then, with MT, side 1 from sector 1), up to the first that does not exist.
  const sectors: SectorId[] = [];
  let end: Execution['end'] = 'eot';
  let missing: SectorId | undefined;
  let id: SectorId = { c, h, r: op === 'readTrack' ? 1 : r0 };
  const limit = op === 'verify' && cmd[1]! & 0x80 ? cmd[8]! : Infinity; // VERIFY with EC: SC sectors
  for (let guard = 0; guard < 512 && sectors.length < limit; guard++) {
    if (!sectorExists(d, id, n)) {
      end = 'notfound';
      missing = id;
      break;
    }
    sectors.push(id);
    if (id.r === eot) {
      if (mt && id.h === 0) id = { c, h: 1, r: 1 };
      else break;
    } else {
      id = { c, h: id.h, r: (id.r + 1) & 0xff };
    }
  }
  const x: Execution = {
    kind: op === 'write' ? 'write' : 'read',
    drive,
    cmd,
    sectors,
    end,
    missing,
    data: new Uint8Array(op === 'verify' ? 0 : sectors.length * FLOPPY_SECTOR_SIZE),
    stage: 'fetch',
    done: 0,
    tc: false,
    seeked,
  };
  fdc.phase = 'execution';
  fdc.exec = x;
  if (op === 'verify') {
    // Nothing goes to the host: the sectors are "read" and checked (an image has no CRC errors).
    x.tc = x.end === 'eot';
    finishTransfer(fdc, x, x.sectors.length);
    return;
  }
  if (sectors.length === 0) {
    finishTransfer(fdc, x, 0);
    return;
  }
  if (x.kind === 'read') fetchSectors(fdc, x);
  else startDataPhase(fdc, x);
}

/** Reads the command's sectors from the image, then starts the data phase. */
export function fetchSectors(fdc: FdcCore, x: Execution): void {
  x.stage = 'fetch';
  const d = fdc.drives[x.drive]!;
  const image = d.image;
  const f = d.format;
  if (!image || !f) {
    abortExec(fdc, ST1_MA);
    return;
  }
  const reads = runs(f, x.sectors, x.sectors.length).map(([first, count, offset]) =>
    image.read(
      offset,
      count * FLOPPY_SECTOR_SIZE,
      x.data.subarray(first * FLOPPY_SECTOR_SIZE, (first + count) * FLOPPY_SECTOR_SIZE),
    ),
  );
  fdc.io(
    Promise.all(reads),
    (parts) => {
      // An image may hand back its own buffer instead of filling ours.
      runs(f, x.sectors, x.sectors.length).forEach(([first], i) => {
        const part = parts[i]!;
        const at = first * FLOPPY_SECTOR_SIZE;
        if (part.buffer !== x.data.buffer || part.byteOffset !== x.data.byteOffset + at) x.data.set(part, at);
      });
      startDataPhase(fdc, x);
    },
    (err) => ioFailed(fdc, x, err, 'read'),
  );
}

/** Data moves: DMA (DRQ) or the FIFO (non-DMA mode: RQM and an interrupt). */
function startDataPhase(fdc: FdcCore, x: Execution): void {
  x.stage = 'transfer';
  if (fdc.pio()) {
    fdc.raiseInt();
  } else {
    fdc.updateDreq();
  }
}

/** The DMA controller's callback for channel 2. */
export function dmaTransfer(fdc: FdcCore, pos: number, size: number): number {
  const x = fdc.exec;
  if (!x || fdc.phase !== 'execution' || x.stage !== 'transfer' || fdc.pio()) return pos;
  const n = Math.min(x.data.length - x.done, size - pos);
  const chunk = x.data.subarray(x.done, x.done + n);
  if (x.kind === 'read') fdc.dma.dmaWrite(fdc.dmaChannel, chunk, pos, n);
  else fdc.dma.dmaRead(fdc.dmaChannel, chunk, pos, n);
  x.done += n;
  if (pos + n >= size) x.tc = true;
  if (x.tc || x.done >= x.data.length) endDataPhase(fdc);
  return pos + n;
}

/** Terminal count or all data moved. */
export function endDataPhase(fdc: FdcCore): void {
  const x = fdc.exec!;
  x.stage = x.kind === 'read' ? 'transfer' : 'commit';
  if (x.kind === 'read') {
    finishTransfer(fdc, x, Math.ceil(x.done / FLOPPY_SECTOR_SIZE));
    return;
  }
  fdc.updateDreq();
  // The guest must see the next interrupt as an edge (Linux's pseudo-DMA handler waits for it).
  fdc.setInt(false);
  commit(fdc, x);
}

/** Writes what the guest sent to the image (WRITE DATA, FORMAT TRACK). */
export function commit(fdc: FdcCore, x: Execution): void {
  x.stage = 'commit';
  const d = fdc.drives[x.drive]!;
  const image = d.image;
  const f = d.format;
  if (!image || !f) {
    abortExec(fdc, ST1_MA);
    return;
  }
  if (x.kind === 'format') {
    commitFormat(fdc, x, image, f);
    return;
  }
  const count = Math.ceil(x.done / FLOPPY_SECTOR_SIZE);
  x.data.fill(0, x.done, count * FLOPPY_SECTOR_SIZE); // a sector cut short by TC is completed with zeroes
  const writes = runs(f, x.sectors, count).map(([first, n, offset]) =>
    image.write(offset, x.data.subarray(first * FLOPPY_SECTOR_SIZE, (first + n) * FLOPPY_SECTOR_SIZE)),
  );
  fdc.io(
    Promise.all(writes),
    () => finishTransfer(fdc, x, count),
    (err) => ioFailed(fdc, x, err, 'write'),
  );
}

/**
 * The result of a read or write that moved `count` sectors (82077AA
 * table 5-6 for the ID it reports).
 */
function finishTransfer(fdc: FdcCore, x: Execution, count: number): void {
  const cmd = x.cmd;
  const drive = x.drive;
  const mt = (cmd[0]! & 0x80) !== 0 && decode(cmd[0]!).op !== 'readTrack';
  const eot = cmd[6]!;
  const n = cmd[5]!;
  const last = count > 0 ? x.sectors[count - 1]! : undefined;
  const d = fdc.drives[drive]!;
  if (last) d.sector = last.r;
  const se = x.seeked ? ST0_SE : 0;
  const st0 = (h: number): number => se | ((h & 1) << 2) | drive;
  if (x.tc && last) {
    let next: SectorId;
    if (last.r !== eot) next = { c: last.c, h: last.h, r: last.r + 1 };
    else if (mt && last.h === 0) next = { c: last.c, h: 1, r: 1 };
    else next = { c: last.c + 1, h: mt ? last.h ^ 1 : last.h, r: 1 };
    fdc.finish([st0(last.h), 0, 0, next.c & 0xff, next.h, next.r & 0xff, n]);
    return;
  }
  if (x.tc || count < x.sectors.length || (x.end === 'eot' && !last)) {
    // TC before the first byte, or a data phase cut short: report where it stopped.
    const at = last ?? { c: cmd[2]!, h: cmd[3]!, r: cmd[4]! };
    fdc.finish([st0(at.h), 0, 0, at.c, at.h, at.r, n]);
    return;
  }
  if (x.end === 'notfound') {
    const m = x.missing!;
    fdc.finish([ST0_ABNTERM | st0(m.h), ST1_ND, 0, m.c, m.h, m.r, n]);
    return;
  }
  // Ran past EOT without terminal count: "end of cylinder", naming the last sector.
  const l = last!;
  fdc.finish([ST0_ABNTERM | st0(l.h), ST1_EN, 0, l.c, l.h, l.r, n]);
}

/** FORMAT TRACK: 4 ID bytes per sector from the guest, then sectors filled with the pattern. */
export function startFormat(fdc: FdcCore, cmd: number[]): void {
  const drive = cmd[1]! & 3;
  const head = (cmd[1]! >> 2) & 1;
  const d = fdc.drives[drive]!;
  const [n, sc] = [cmd[2]!, cmd[3]!];
  fdc.lastScEot = sc;
  d.head = head;
  const fail = (st1: number): void =>
    fdc.finish([ST0_ABNTERM | (head << 2) | drive, st1, 0, d.track, head, 1, n]);
  const err = fdc.mediaError(d, (cmd[0]! & 0x40) !== 0);
  if (err) return fail(err);
  if (writeProtected(d)) return fail(ST1_NW);
  const x: Execution = {
    kind: 'format',
    drive,
    cmd,
    sectors: [],
    end: 'eot',
    missing: undefined,
    data: new Uint8Array(sc * 4),
    stage: 'transfer',
    done: 0,
    tc: false,
    seeked: false,
  };
  fdc.phase = 'execution';
  fdc.exec = x;
  if (sc === 0) {
    finishFormat(fdc, x);
    return;
  }
  startDataPhase(fdc, x);
}

function commitFormat(fdc: FdcCore, x: Execution, image: BlockImage, f: FloppyFormat): void {
  const d = fdc.drives[x.drive]!;
  const head = (x.cmd[1]! >> 2) & 1;
  const fill = x.cmd[5]!;
  const writes: Promise<void>[] = [];
  for (let at = 0; at + 4 <= x.done; at += 4) {
    const [c, h, r, n] = [x.data[at]!, x.data[at + 1]!, x.data[at + 2]!, x.data[at + 3]!];
    // A raw image only holds the standard layout: IDs that do not name a slot in it are not kept.
    if (c !== d.track || h !== head || n !== 2 || !sectorExists(d, { c, h, r }, n)) continue;
    const sectorLba = lba(f, { c, h, r });
    writes.push(image.write(sectorLba * FLOPPY_SECTOR_SIZE, new Uint8Array(FLOPPY_SECTOR_SIZE).fill(fill)));
  }
  fdc.io(
    Promise.all(writes),
    () => finishFormat(fdc, x),
    (err) => ioFailed(fdc, x, err, 'write'),
  );
}

function finishFormat(fdc: FdcCore, x: Execution): void {
  const head = (x.cmd[1]! >> 2) & 1;
  const at = Math.max(0, Math.floor(x.done / 4) - 1) * 4;
  const id =
    x.done >= 4 ? Array.from(x.data.subarray(at, at + 4)) : [fdc.drives[x.drive]!.track, head, 1, x.cmd[2]!];
  fdc.finish([(head << 2) | x.drive, 0, 0, ...id]);
}

/** Ends the running data command with an error (disk gone, I/O error). */
export function abortExec(fdc: FdcCore, st1: number, st2 = 0): void {
  const x = fdc.exec;
  if (!x) return;
  fdc.generation++;
  const cmd = x.cmd;
  const head = x.kind === 'format' ? (cmd[1]! >> 2) & 1 : cmd[3]! & 1;
  const id =
    x.kind === 'format'
      ? [fdc.drives[x.drive]!.track, head, 1, cmd[2]!]
      : [cmd[2]!, cmd[3]!, cmd[4]!, cmd[5]!];
  fdc.finish([ST0_ABNTERM | (head << 2) | x.drive, st1, st2, ...id]);
}

function ioFailed(fdc: FdcCore, x: Execution, err: unknown, what: 'read' | 'write'): void {
  if (fdc.exec !== x) return;
  const image = fdc.drives[x.drive]!.image;
  fdc.ctx.log.warn(
    `${fdc.name}: ${what} of ${image?.path ?? 'the floppy image'} failed: ${err instanceof Error ? err.message : String(err)}`,
  );
  if (err instanceof BlockError && err.code === 'EROFS') abortExec(fdc, ST1_NW);
  else abortExec(fdc, ST1_DE, what === 'read' ? ST2_DD : 0);
}
