/**
 * The execution of the 82078 command set once the FIFO has all of a
 * command's bytes: the register commands (SPECIFY, CONFIGURE, VERSION,
 * DUMPREG, LOCK, ...), SEEK, RELATIVE SEEK, RECALIBRATE, SENSE INTERRUPT
 * STATUS, SENSE DRIVE STATUS and READ ID. Data commands start their
 * execution phase in transfer.ts.
 */
import {
  PART_ID,
  RESET_SENSEI_COUNT,
  ST0_ABNTERM,
  ST0_EC,
  ST0_INVALID,
  ST0_POLLING,
  ST0_SE,
  ST1_MA,
  ST3_RDY,
  ST3_T0,
  ST3_TS,
  ST3_WP,
  VERSION_82077_UP,
} from './constants.js';
import type { FdcCore } from './core.js';
import { step, writeProtected } from './drive.js';
import type { Op } from './opcodes.js';
import { startFormat, startTransfer } from './transfer.js';

export function execute(fdc: FdcCore, op: Op, cmd: number[]): void {
  switch (op) {
    case 'read':
    case 'readTrack':
    case 'write':
    case 'verify':
      startTransfer(fdc, op, cmd);
      return;
    case 'format':
      startFormat(fdc, cmd);
      return;
    case 'readId':
      readId(fdc, cmd);
      return;
    case 'specify':
      fdc.specify1 = cmd[1]!;
      fdc.specify2 = cmd[2]!;
      fdc.toCommandPhase();
      return;
    case 'senseDrive':
      senseDriveStatus(fdc, cmd);
      return;
    case 'recalibrate':
      seekTo(fdc, cmd[1]! & 3, 0, true);
      return;
    case 'senseInt':
      senseInterrupt(fdc);
      return;
    case 'seek':
      fdc.drives[cmd[1]! & 3]!.head = (cmd[1]! >> 2) & 1;
      seekTo(fdc, cmd[1]! & 3, cmd[2]!, false);
      return;
    case 'relativeSeek': {
      const drive = cmd[1]! & 3;
      const d = fdc.drives[drive]!;
      d.head = (cmd[1]! >> 2) & 1;
      const target = cmd[0]! & 0x40 ? d.track + cmd[2]! : d.track - cmd[2]!;
      seekTo(fdc, drive, Math.max(0, Math.min(0xff, target)), false);
      return;
    }
    case 'version':
      fdc.toResultPhase([VERSION_82077_UP]);
      return;
    case 'partId':
      fdc.toResultPhase([PART_ID]);
      return;
    case 'configure':
      fdc.config = cmd[2]! & 0x7f;
      fdc.pretrk = cmd[3]!;
      fdc.toCommandPhase();
      return;
    case 'perpendicular': {
      const v = cmd[1]!;
      const drives = v & 0x80 ? v & 0x3c : fdc.perpendicular & 0x3c; // OW: overwrite D3-D0
      fdc.perpendicular = drives | (v & 0x03);
      fdc.toCommandPhase();
      return;
    }
    case 'lock':
      fdc.locked = (cmd[0]! & 0x80) !== 0;
      fdc.toResultPhase([fdc.locked ? 0x10 : 0x00]);
      return;
    case 'dumpreg':
      fdc.toResultPhase([
        fdc.drives[0]!.track,
        fdc.drives[1]!.track,
        fdc.drives[2]!.track,
        fdc.drives[3]!.track,
        fdc.specify1,
        fdc.specify2,
        fdc.lastScEot,
        (fdc.locked ? 0x80 : 0) | fdc.perpendicular,
        fdc.config,
        fdc.pretrk,
      ]);
      return;
    case 'powerdown':
      fdc.powerdown = cmd[1]!;
      fdc.toResultPhase([cmd[1]!]);
      return;
    case 'driveSpec': {
      const last = cmd[cmd.length - 1]!;
      for (const b of cmd.slice(1)) if (!(b & 0x80)) fdc.driveSpec[b & 3] = b;
      if (!(last & 0x80)) {
        fdc.toResultPhase([ST0_INVALID]); // five specifications without "done"
      } else if (last & 0x40) {
        fdc.toCommandPhase(); // NRP: no result phase
      } else {
        fdc.toResultPhase([...fdc.driveSpec]);
      }
      return;
    }
    case 'invalid':
      fdc.guestError(
        `invalid-${cmd[0]}`,
        () => `${fdc.name}: unsupported command 0x${cmd[0]!.toString(16)}, answered "invalid"`,
      );
      fdc.toResultPhase([ST0_INVALID]);
      return;
  }
}

/** SEEK, RELATIVE SEEK and RECALIBRATE: instant; the interrupt reports the end. */
function seekTo(fdc: FdcCore, drive: number, track: number, recalibrate: boolean): void {
  const d = fdc.drives[drive]!;
  let st0 = ST0_SE | drive;
  if (recalibrate && !d.present) {
    st0 |= ST0_ABNTERM | ST0_EC; // no TRK0 signal from a missing drive
  } else {
    step(d, track);
  }
  if (!d.present && !recalibrate) d.track = track; // the controller counts steps anyway
  fdc.toCommandPhase();
  fdc.driveBusy |= 1 << drive;
  fdc.senseSt0 = st0;
  fdc.senseDrive = drive;
  fdc.raiseInt();
}

function senseInterrupt(fdc: FdcCore): void {
  if (fdc.resetSensei > 0) {
    const drive = RESET_SENSEI_COUNT - fdc.resetSensei;
    fdc.resetSensei--;
    fdc.toResultPhase([ST0_POLLING | drive, fdc.drives[drive]!.track]);
    fdc.setInt(false);
    return;
  }
  if (!fdc.intPending || fdc.senseSt0 === undefined) {
    fdc.toResultPhase([ST0_INVALID]);
    return;
  }
  const st0 = fdc.senseSt0;
  fdc.senseSt0 = undefined;
  fdc.driveBusy &= ~(1 << fdc.senseDrive);
  fdc.toResultPhase([st0, fdc.drives[fdc.senseDrive]!.track]);
  fdc.setInt(false);
}

function senseDriveStatus(fdc: FdcCore, cmd: number[]): void {
  const drive = cmd[1]! & 3;
  const head = (cmd[1]! >> 2) & 1;
  const d = fdc.drives[drive]!;
  d.head = head;
  let st3 = ST3_RDY | ST3_TS | (head << 2) | drive;
  if (d.present) {
    if (writeProtected(d)) st3 |= ST3_WP;
    if (d.track === 0) st3 |= ST3_T0;
  }
  fdc.toResultPhase([st3]);
}

function readId(fdc: FdcCore, cmd: number[]): void {
  const drive = cmd[1]! & 3;
  const head = (cmd[1]! >> 2) & 1;
  const d = fdc.drives[drive]!;
  d.head = head;
  const st0 = (head << 2) | drive;
  const err = fdc.mediaError(d, (cmd[0]! & 0x40) !== 0);
  const f = d.format;
  if (err || !f || d.track >= f.tracks || head >= f.heads) {
    fdc.finish([st0 | ST0_ABNTERM, err || ST1_MA, 0, d.track, head, d.sector, 2]);
    return;
  }
  // The disk spins: each READ ID sees the next sector header (QEMU does this for Coherent).
  d.sector = (d.sector % f.sectors) + 1;
  fdc.finish([st0, 0, 0, d.track, head, d.sector, 2]);
}
