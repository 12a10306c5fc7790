/**
 * The PC platform's fixed map, in one place: the I/O ports a PC machine
 * always occupies, where its optional controllers sit, and the PCI slots and
 * IDE positions devices are placed in. The VMM config loader and the manifest
 * normaliser check devices against it; the board (src/vmm/machine.ts) puts
 * its devices there. No KVM here: the engine imports it too.
 *
 * I/O ports a PC machine always occupies: devices of its own and those KVM
 * emulates in the kernel (accesses to those never reach the VMM). The
 * config loader refuses extra devices on them.
 */
export interface PortRange {
  start: number;
  /** Exclusive. */
  end: number;
  owner: string;
}

/**
 * The fixed map, by name: what the board (src/vmm/machine.ts) and the device
 * models register, and what the config loader refuses other devices on. The
 * numbers live here only; devices import theirs from here.
 */
export const PC_PORTS = {
  dma1: { start: 0x00, end: 0x10, owner: 'the first DMA controller' },
  pic1: { start: 0x20, end: 0x22, owner: 'the master PIC (in KVM)' },
  pit: { start: 0x40, end: 0x44, owner: 'the PIT (in KVM)' },
  i8042Data: { start: 0x60, end: 0x61, owner: 'the i8042 keyboard controller' },
  portB: { start: 0x61, end: 0x62, owner: 'system control port B (in KVM)' },
  i8042Command: { start: 0x64, end: 0x65, owner: 'the i8042 keyboard controller' },
  rtc: { start: 0x70, end: 0x72, owner: 'the CMOS/RTC' },
  post: { start: 0x80, end: 0x81, owner: 'the POST port' },
  dmaPages: { start: 0x81, end: 0x90, owner: 'the DMA page registers' },
  port92: { start: 0x92, end: 0x93, owner: 'system control port A' },
  pic2: { start: 0xa0, end: 0xa2, owner: 'the slave PIC (in KVM)' },
  dma2: { start: 0xc0, end: 0xe0, owner: 'the second DMA controller' },
  elcr: { start: 0x4d0, end: 0x4d2, owner: 'the ELCR (in KVM)' },
  fwCfg: { start: 0x510, end: 0x512, owner: 'fw_cfg' },
  fwCfgDma: { start: 0x514, end: 0x51c, owner: 'fw_cfg DMA' },
  pm: { start: 0x600, end: 0x640, owner: 'the ACPI power management registers' },
  pciHost: {
    start: 0xcf8,
    end: 0xd00,
    owner: 'the PCI host bridge (configuration mechanism #1, reset control)',
  },
} as const satisfies Record<string, PortRange>;

/** The ports a PC machine always occupies, in address order. */
export const PC_FIXED_PORTS: readonly PortRange[] = Object.values(PC_PORTS);

/** The number of ports of a range. */
export const portCount = (r: PortRange): number => r.end - r.start;

/** PCI slots on bus 0 for devices: 0 is the i440FX host bridge, 1 the PIIX3 (ISA bridge, IDE, PM). */
export const PCI_DEVICE_SLOTS = { first: 2, last: 31 } as const;

/** The IDE positions (channel, unit), in the order unassigned devices take them. */
export const IDE_POSITIONS: readonly (readonly [0 | 1, 0 | 1])[] = [
  [0, 0],
  [0, 1],
  [1, 0],
  [1, 1],
];

/** The PIIX3 IDE channels' legacy ports. */
export const IDE_PORTS: readonly PortRange[] = [
  { start: 0x1f0, end: 0x1f8, owner: 'the primary IDE channel' },
  { start: 0x3f6, end: 0x3f7, owner: 'the primary IDE channel' },
  { start: 0x170, end: 0x178, owner: 'the secondary IDE channel' },
  { start: 0x376, end: 0x377, owner: 'the secondary IDE channel' },
];
/** The floppy controller's ports (0x3f6 is the primary IDE channel's). */
export const FLOPPY_PORTS: readonly PortRange[] = [
  { start: 0x3f0, end: 0x3f6, owner: 'the floppy controller' },
  { start: 0x3f7, end: 0x3f8, owner: 'the floppy controller' },
];

/**
 * The I/O ports of the storage controllers: the PIIX3 IDE channels (the
 * IDE function is always there, as on QEMU's pc) and, when a floppy drive
 * is configured, the floppy controller (the ISA DMA controller it uses is
 * in PC_FIXED_PORTS).
 */
export function storageControllerPorts(uses: { floppy: boolean }): PortRange[] {
  return [...IDE_PORTS, ...(uses.floppy ? FLOPPY_PORTS : [])];
}

/** isa-debug-exit's defaults, as QEMU's (hw/misc/debugexit.c). */
export const ISA_DEBUG_EXIT_DEFAULTS = { iobase: 0x501, iosize: 2 } as const;

/**
 * The I/O ports of QEMU's pc-testdev (hw/misc/pc-testdev.c): a 32-bit
 * scratch register at 0xe0, the page flush port at 0xe4, the byte-wise
 * scratch register at 0xe8, and one port per ISA IRQ line from 0x2000.
 */
export const PC_TESTDEV_PORTS: readonly PortRange[] = [
  { start: 0xe0, end: 0xec, owner: 'pc-testdev' },
  { start: 0x2000, end: 0x2018, owner: 'pc-testdev' },
];

/** pc-testdev's test memory (64 KiB at 0xff000000, QEMU's IOMEM_LEN). */
export const PC_TESTDEV_MMIO = { start: 0xff00_0000, end: 0xff01_0000 } as const;

/** COM1, always there (the VM's `serial`). */
export const COM1_PORTS: PortRange = { start: 0x3f8, end: 0x400, owner: 'the COM1 serial port (serial)' };

/** The firmware debug console (QEMU's isa-debugcon at 0x402, `debugConsole`). */
export const DEBUG_CONSOLE_PORTS: PortRange = { start: 0x402, end: 0x403, owner: 'debugConsole' };
