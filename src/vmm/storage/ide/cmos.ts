/**
 * The CMOS bytes a PC BIOS keeps about IDE hard disks, filled as QEMU's pc
 * machine does (pc_cmos_init_late) for the disks on the primary channel:
 *
 *   0x12       drive types, high nibble disk 0, low nibble disk 1 (0xF: see 0x19/0x1A)
 *   0x19/0x1A  extended types of disk 0 / 1: 47, "user defined" (parameters below)
 *   0x1B-0x23  disk 0 parameters: cylinders (2), heads, write precompensation (2),
 *              control byte, landing zone (2), sectors per track
 *   0x24-0x2C  disk 1 parameters
 *   0x39       BIOS translation of the four IDE disks, 2 bits each (channel * 2 + unit):
 *              0 none (CHS), 1 LBA, 2 large, 3 r-CHS
 *
 * SeaBIOS reads only 0x39 (its `get_translation` on QEMU); DOS-era
 * software reads the rest. 0x12 and 0x19-0x2C are inside the standard
 * checksum (0x10-0x2D, stored at 0x2E-0x2F), which the CMOS owner must
 * recompute after writing them.
 */
import { ataGeometry } from './ata-disk.js';

/** A hard disk as the CMOS describes it: its size in 512-byte sectors. */
export interface CmosDisk {
  sectors: number;
}

/** CMOS index/value pairs for up to four disks: [primary master, primary slave, secondary master, secondary slave]. */
export function ideCmosBytes(disks: ReadonlyArray<CmosDisk | undefined>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const [d0, d1] = [disks[0], disks[1]];
  out.push([0x12, (d0 ? 0xf0 : 0) | (d1 ? 0x0f : 0)]);
  out.push([0x19, d0 ? 47 : 0]);
  out.push([0x1a, d1 ? 47 : 0]);
  for (const [disk, base] of [
    [d0, 0x1b],
    [d1, 0x24],
  ] as const) {
    if (!disk) continue;
    const g = ataGeometry(disk.sectors);
    out.push(
      [base, g.cylinders & 0xff],
      [base + 1, g.cylinders >> 8],
      [base + 2, g.heads],
      [base + 3, 0xff], // no write precompensation
      [base + 4, 0xff],
      [base + 5, 0xc0 | (g.heads > 8 ? 0x08 : 0)], // retries off; bit 3: more than 8 heads
      [base + 6, g.cylinders & 0xff], // landing zone
      [base + 7, g.cylinders >> 8],
      [base + 8, g.sectors],
    );
  }
  let trans = 0;
  for (let i = 0; i < 4; i++) {
    const d = disks[i];
    if (!d) continue;
    // A disk beyond what CHS with 1024 cylinders reaches (528 MB) needs LBA translation.
    const lba = d.sectors > 1024 * 16 * 63;
    trans |= (lba ? 1 : 0) << (2 * i);
  }
  out.push([0x39, trans]);
  return out;
}
