/**
 * The 82078 command set: decoding of the opcode byte (the first byte
 * written to the FIFO in the command phase) into the command and the
 * number of parameter bytes that follow.
 */

export type Op =
  | 'read'
  | 'write'
  | 'readTrack'
  | 'verify'
  | 'format'
  | 'readId'
  | 'specify'
  | 'senseDrive'
  | 'recalibrate'
  | 'senseInt'
  | 'seek'
  | 'relativeSeek'
  | 'version'
  | 'configure'
  | 'perpendicular'
  | 'lock'
  | 'dumpreg'
  | 'partId'
  | 'powerdown'
  | 'driveSpec'
  | 'invalid';

export interface CommandInfo {
  readonly op: Op;
  /** Parameter bytes after the opcode (driveSpec: until a byte with bit 7 set). */
  readonly params: number;
}

/** Decodes an opcode byte (82078 command set; MT/MFM/SK bits masked where the command has them). */
export function decode(v: number): CommandInfo {
  if ((v & 0x1f) === 0x06) return { op: 'read', params: 8 };
  if ((v & 0x1f) === 0x05) return { op: 'write', params: 8 }; // SK set is accepted, as QEMU does for BeOS
  if ((v & 0xbf) === 0x02) return { op: 'readTrack', params: 8 };
  if ((v & 0x1f) === 0x16) return { op: 'verify', params: 8 };
  if ((v & 0xbf) === 0x0d) return { op: 'format', params: 5 };
  if ((v & 0xbf) === 0x0a) return { op: 'readId', params: 1 };
  if ((v & 0xbf) === 0x8f) return { op: 'relativeSeek', params: 2 };
  if ((v & 0x7f) === 0x14) return { op: 'lock', params: 0 };
  switch (v) {
    case 0x03:
      return { op: 'specify', params: 2 };
    case 0x04:
      return { op: 'senseDrive', params: 1 };
    case 0x07:
      return { op: 'recalibrate', params: 1 };
    case 0x08:
      return { op: 'senseInt', params: 0 };
    case 0x0e:
      return { op: 'dumpreg', params: 0 };
    case 0x0f:
      return { op: 'seek', params: 2 };
    case 0x10:
      return { op: 'version', params: 0 };
    case 0x12:
      return { op: 'perpendicular', params: 1 };
    case 0x13:
      return { op: 'configure', params: 3 };
    case 0x17:
      return { op: 'powerdown', params: 1 };
    case 0x18:
      return { op: 'partId', params: 0 };
    case 0x8e:
      return { op: 'driveSpec', params: 5 };
    default:
      return { op: 'invalid', params: 0 };
  }
}
