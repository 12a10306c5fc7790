/**
 * `class: option-rom`: a legacy option ROM the firmware runs, offered as the
 * fw_cfg file `genroms/<name>.bin` (SeaBIOS runs it and, when its PnP header
 * has a bootstrap entry vector, lists it as the boot device `/rom@genroms/...`).
 * No device model: the firmware does the work.
 */
import type { OptionRomDevice } from '../../generated/vmm-config.js';
import type { DeviceDescriptor } from '../board/board.js';
import { optionRomProblem } from '../config/files.js';
import type { ResolvedOptionRomDevice } from '../config/types.js';

export const optionRomDevice: DeviceDescriptor<OptionRomDevice, ResolvedOptionRomDevice> = {
  class: 'option-rom',
  schema: {
    name: 'OptionRomDevice',
    manifest: true,
    definition: {
      description:
        'A legacy option ROM the firmware runs (fw_cfg genroms/); one with a boot entry vector is a boot device for boot.order.',
      type: 'object',
      additionalProperties: false,
      required: ['class', 'name', 'file'],
      properties: {
        class: {
          const: 'option-rom',
        },
        name: {
          $ref: '#/definitions/DeviceName',
        },
        file: {
          description: 'Path of the ROM image: 512 bytes .. 128 KiB, starting with 0x55 0xAA.',
          type: 'string',
          minLength: 1,
        },
      },
    },
  },
  resolve(d, ctx) {
    const file = ctx.abs(d.file);
    const why = optionRomProblem(file);
    if (why !== undefined) ctx.problem('file', why);
    return { class: 'option-rom', name: d.name, file };
  },
  create(d, board) {
    const file = `genroms/${d.name}.bin`;
    board.firmwareFile(file, board.readFile(d.file, 'option ROM'));
    board.bootPath(d.name, `/rom@${file}`);
  },
};
