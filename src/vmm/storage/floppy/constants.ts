/**
 * The 82077AA/82078 floppy controller's constants: the PC's port, IRQ and
 * DMA assignments, the data rates, the register offsets and bits (DOR,
 * DSR, MSR, DIR), the ST0-ST3 status bits of the result phase, and the
 * controller's identification and reset values.
 */
import { FLOPPY_PORTS, portCount } from '../../../platform/pc-map.js';

export const FDC_PORT_BASE = FLOPPY_PORTS[0]!.start;
/** 0x3F0-0x3F5. */
export const FDC_PORT_COUNT = portCount(FLOPPY_PORTS[0]!);
/** DIR (read) / CCR (write). */
export const FDC_DIR_PORT = FLOPPY_PORTS[1]!.start;
export const FDC_IRQ = 6;
export const FDC_DMA_CHANNEL = 2;

export const FLOPPY_SECTOR_SIZE = 512;

// Data rates (DSR/CCR bits 1-0).
export const RATE_500K = 0;
export const RATE_300K = 1;
export const RATE_250K = 2;
export const RATE_1M = 3;

// Register offsets.
export const REG_SRA = 0;
export const REG_SRB = 1;
export const REG_DOR = 2;
export const REG_TDR = 3;
export const REG_MSR_DSR = 4;
export const REG_FIFO = 5;

// DOR.
export const DOR_SEL = 0x03;
export const DOR_NRESET = 0x04;
export const DOR_DMAGATE = 0x08;
export const DOR_MOTOR0 = 0x10;
export const DOR_MOTOR1 = 0x20;
/** After power-on (as QEMU and what a BIOS leaves): out of reset, INT/DRQ enabled. */
export const DOR_DEFAULT = DOR_NRESET | DOR_DMAGATE;

// DSR.
export const DSR_SWRESET = 0x80;
export const DSR_RATE = 0x03;

// MSR.
export const MSR_RQM = 0x80;
export const MSR_DIO = 0x40;
export const MSR_NDMA = 0x20;
export const MSR_CB = 0x10;

// DIR.
export const DIR_DSKCHG = 0x80;

// ST0.
export const ST0_EC = 0x10;
export const ST0_SE = 0x20;
export const ST0_ABNTERM = 0x40;
export const ST0_INVALID = 0x80;
export const ST0_POLLING = 0xc0;

// ST1.
export const ST1_MA = 0x01;
export const ST1_NW = 0x02;
export const ST1_ND = 0x04;
export const ST1_DE = 0x20;
export const ST1_EN = 0x80;

// ST2.
export const ST2_DD = 0x20;

// ST3.
export const ST3_WP = 0x40;
export const ST3_RDY = 0x20;
export const ST3_T0 = 0x10;
export const ST3_TS = 0x08;

/** CONFIGURE byte 2 after a reset: implied seek off, FIFO disabled, polling on, threshold 1. */
export const CONFIG_DEFAULT = 0x20;
export const VERSION_82077_UP = 0x90;
/** PART ID of QEMU's 82078 (Linux reports "S82078B"). */
export const PART_ID = 0x41;
export const RESET_SENSEI_COUNT = 4;
export const MAX_DRIVES = 2;
