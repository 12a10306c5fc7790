/**
 * `class: option-rom`: a legacy option ROM the firmware runs, offered as the
 * fw_cfg file `genroms/<name>.bin` (SeaBIOS runs it and, when its PnP header
 * has a bootstrap entry vector, lists it as the boot device `/rom@genroms/...`).
 * No device model: the firmware does the work.
 */
import type { DeviceDescriptor } from '../board/board.js';

export const optionRomDevice: DeviceDescriptor<'option-rom'> = {
  class: 'option-rom',
  schema: 'OptionRomDevice',
  create(d, board) {
    const file = `genroms/${d.name}.bin`;
    board.firmwareFile(file, board.readFile(d.file, 'option ROM'));
    board.bootPath(d.name, `/rom@${file}`);
  },
};
