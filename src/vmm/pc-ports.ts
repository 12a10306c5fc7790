/**
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

export const PC_FIXED_PORTS: readonly PortRange[] = [
  { start: 0x00, end: 0x10, owner: 'the first DMA controller' },
  { start: 0x20, end: 0x22, owner: 'the master PIC (in KVM)' },
  { start: 0x40, end: 0x44, owner: 'the PIT (in KVM)' },
  { start: 0x60, end: 0x61, owner: 'the i8042 keyboard controller' },
  { start: 0x61, end: 0x62, owner: 'system control port B (in KVM)' },
  { start: 0x64, end: 0x65, owner: 'the i8042 keyboard controller' },
  { start: 0x70, end: 0x72, owner: 'the CMOS/RTC' },
  { start: 0x80, end: 0x81, owner: 'the POST port' },
  { start: 0x81, end: 0x90, owner: 'the DMA page registers' },
  { start: 0x92, end: 0x93, owner: 'system control port A' },
  { start: 0xa0, end: 0xa2, owner: 'the slave PIC (in KVM)' },
  { start: 0xc0, end: 0xe0, owner: 'the second DMA controller' },
  { start: 0x4d0, end: 0x4d2, owner: 'the ELCR (in KVM)' },
  { start: 0x510, end: 0x512, owner: 'fw_cfg' },
  { start: 0x514, end: 0x51c, owner: 'fw_cfg DMA' },
  { start: 0x600, end: 0x640, owner: 'the ACPI power management registers' },
  { start: 0xcf8, end: 0xd00, owner: 'the PCI host bridge (configuration mechanism #1, reset control)' },
];
