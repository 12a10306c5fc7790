/**
 * `class: floppy`: a floppy drive (A: is drive 0) with its image, or empty.
 * The board creates the i82078 controller (./floppy.ts) when a config has a
 * drive, as a PC has one controller for both.
 */
import type { DeviceDescriptor } from '../board/board.js';

export const floppyDevice: DeviceDescriptor<'floppy'> = {
  class: 'floppy',
  schema: 'FloppyDevice',
  create(d, board) {
    const image = board.image(d.name);
    board.floppyDrive(d.drive, image ? { image, readOnly: d.image?.readOnly } : {});
    board.bootPath(d.name, `/pci@i0cf8/isa@1/fdc@03f0/floppy@${d.drive}`);
  },
};
