/** `class: ata-cdrom`: an ATAPI CD-ROM drive (./atapi-cdrom.ts) on the PIIX3 IDE controller. */
import type { AtaCdromDevice } from '../../../generated/vmm-config.js';
import { idePositionOf } from '../../../platform/placement.js';
import type { DeviceDescriptor } from '../../board/board.js';
import type { ResolvedAtaCdromDevice } from '../../config/types.js';
import { AtapiCdrom } from './atapi-cdrom.js';
import { ideBootPath } from './piix-ide.js';

export const ataCdromDevice: DeviceDescriptor<AtaCdromDevice, ResolvedAtaCdromDevice> = {
  class: 'ata-cdrom',
  schema: {
    name: 'AtaCdromDevice',
    manifest: true,
    definition: {
      description:
        'An ATAPI CD-ROM drive on the PIIX3 IDE controller, always read-only; without an image the drive is empty.',
      type: 'object',
      additionalProperties: false,
      required: ['class', 'name'],
      properties: {
        class: {
          const: 'ata-cdrom',
        },
        name: {
          $ref: '#/definitions/DeviceName',
        },
        image: {
          description:
            'Path of the disc image (an ISO, raw or qcow2); it must exist and be readable. Default: none (an empty drive).',
          type: 'string',
          minLength: 1,
        },
        format: {
          $ref: '#/definitions/ImageFormat',
        },
        channel: {
          $ref: '#/definitions/IdeChannel',
        },
        unit: {
          $ref: '#/definitions/IdeUnit',
        },
      },
    },
  },
  resolve: (d, ctx) => ({
    class: 'ata-cdrom',
    name: d.name,
    ...(d.image !== undefined ? { image: ctx.image({ ...d, image: d.image }, true) } : {}),
    ...idePositionOf(ctx.placement),
  }),
  create(d, board) {
    board.ide.attachDrive(d.channel, d.unit, new AtapiCdrom({ name: d.name, image: board.image(d.name) }));
    board.bootPath(d.name, ideBootPath(d.channel, d.unit));
  },
};
