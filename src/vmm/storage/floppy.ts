/**
 * Intel 82078-compatible floppy disk controller in PC-AT mode, with up to
 * two 3.5"/5.25" drives (A: and B:) whose disks are raw images behind
 * BlockImage. Modelled after QEMU's hw/block/fdc.c, with the register and
 * command behaviour of the Intel 82077AA/82078 datasheets where QEMU
 * takes shortcuts.
 *
 * Wiring on a PC (the machine does it):
 *
 *   pio.register(FDC_PORT_BASE, FDC_PORT_COUNT, fdc.ports, fdc.name);   // 0x3F0-0x3F5
 *   pio.register(FDC_DIR_PORT, 1, fdc.dirPort, fdc.name);               // 0x3F7 (0x3F6 is IDE's)
 *   IRQ 6 (ctx.irq), ISA DMA channel 2 (the I8257Dma), CMOS byte 0x10 =
 *   fdc.cmosDriveTypes() (drive A: in the high nibble).
 *
 * Registers (offset from 0x3F0): 0 SRA and 1 SRB (PS/2 status, read-only),
 * 2 DOR, 3 TDR, 4 MSR (read) / DSR (write), 5 FIFO (data), 7 DIR (read) /
 * CCR (write).
 *
 * Model:
 *  - Geometry comes from the image size (360K, 720K, 1.2M, 1.44M, 1.68M
 *    DMF, 2.88M); every sector is 512 bytes (N = 2). The programmed data
 *    rate (DSR/CCR) must match the medium, or READ ID and transfers fail
 *    with "missing address mark", as QEMU does: SeaBIOS and Linux find the
 *    format by trying rates.
 *  - Read and write commands always seek to the cylinder in the command
 *    (an implied seek, whatever CONFIGURE's EIS says): SeaBIOS issues READ
 *    DATA without a SEEK first, and QEMU behaves the same way.
 *  - Image I/O is asynchronous. A read command fetches all its sectors (up
 *    to the end of the track, or of the cylinder with MT) first; meanwhile
 *    MSR shows the controller busy and the guest polls or waits for IRQ 6.
 *    Then data moves by DMA (DREQ on channel 2, the whole transfer in one
 *    DMA callback) or, after SPECIFY with ND set, through the FIFO (MSR
 *    RQM|NDMA), and the result phase raises the interrupt. Writes take the
 *    data from the guest first and write the image before the result.
 *  - Termination follows the datasheet's result phase table (82077AA table
 *    5-6): terminal count from the DMA controller ends a command normally
 *    and the result names the sector after the last one; running past EOT
 *    without TC (always the case in non-DMA mode) ends it with IC=01 and
 *    ST1 EN, naming the last sector, which Linux expects of pseudo-DMA.
 *    A sector cut short by TC is completed: read on, or written with
 *    zeroes (82077AA "WRITE DATA").
 *  - DOR bit 3 (DMAGATE) gates the INT and DRQ outputs as on a PC/AT.
 *    DOR reset (bit 2 low, then high) and DSR software reset end with the
 *    drive-polling interrupt: four SENSE INTERRUPT STATUS give 0xC0-0xC3.
 *  - No timing: seeks complete at once, motors need not spin, the FIFO
 *    never over- or underruns.
 *  - Not implemented (answer 0x80 "invalid"): READ/WRITE DELETED DATA,
 *    SCAN EQUAL/LOW/HIGH, SAVE, RESTORE, OPTION, FORMAT AND WRITE. Drives
 *    2 and 3 never exist. TDR boot-drive swapping is not modelled.
 *
 * The model is split across floppy/: constants.ts (ports, register bits,
 * status bits), drive.ts (formats, CMOS types, drive state, sector
 * geometry), opcodes.ts (command decoding), core.ts (shared state, INT,
 * DRQ, resets), registers.ts (the register file), commands.ts (non-data
 * commands), transfer.ts (data commands, DMA and image I/O), state.ts
 * (save/load) and controller.ts (the Device). This module is the public
 * entry point.
 */
export {
  FDC_DIR_PORT,
  FDC_DMA_CHANNEL,
  FDC_IRQ,
  FDC_PORT_BASE,
  FDC_PORT_COUNT,
  FLOPPY_SECTOR_SIZE,
} from './floppy/constants.js';
export {
  FLOPPY_IMAGE_SIZES,
  cmosFloppyType,
  floppyFormat,
  type FloppyDriveOptions,
  type FloppyDriveType,
  type FloppyFormat,
} from './floppy/drive.js';
export { FloppyController, type FloppyControllerOptions } from './floppy/controller.js';
