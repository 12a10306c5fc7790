/**
 * `class: floppy`: a floppy drive (A: is drive 0) with its image, or empty.
 * The board creates the i82078 controller (./floppy.ts) when a config has a
 * drive, as a PC has one controller for both.
 */
import type { FloppyDevice } from '../../generated/vmm-config.js';
import { floppyDriveOf } from '../../platform/placement.js';
import type { DeviceDescriptor } from '../board/board.js';
import type { ResolvedFloppyDevice } from '../config/types.js';

export const floppyDevice: DeviceDescriptor<FloppyDevice, ResolvedFloppyDevice> = {
  class: 'floppy',
  schema: {
    name: 'FloppyDevice',
    manifest: true,
    definition: {
      description:
        'A floppy drive on the i82078 floppy controller (drive 0 is A:); without an image the drive is empty.',
      type: 'object',
      additionalProperties: false,
      required: ['class', 'name'],
      properties: {
        class: {
          const: 'floppy',
        },
        name: {
          $ref: '#/definitions/DeviceName',
        },
        image: {
          description:
            'Path of the floppy image (raw or qcow2); it must exist and be readable, and writable unless readonly. Default: none (an empty drive).',
          type: 'string',
          minLength: 1,
        },
        format: {
          $ref: '#/definitions/ImageFormat',
        },
        readonly: {
          $ref: '#/definitions/ReadOnly',
        },
        drive: {
          description: 'Drive number: 0 (A:) or 1 (B:). Default: the first free one, in device order.',
          type: 'integer',
          enum: [0, 1],
        },
      },
    },
  },
  resolve: (d, ctx) => ({
    class: 'floppy',
    name: d.name,
    ...(d.image !== undefined ? { image: ctx.image({ ...d, image: d.image }) } : {}),
    drive: floppyDriveOf(ctx.placement),
  }),
  create(d, board) {
    const image = board.image(d.name);
    board.floppyDrive(d.drive, image ? { image, readOnly: d.image?.readOnly } : {});
    board.bootPath(d.name, `/pci@i0cf8/isa@1/fdc@03f0/floppy@${d.drive}`);
  },
};
