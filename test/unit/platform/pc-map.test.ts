/**
 * The PC platform's fixed map (src/platform/pc-map.ts), the one place that
 * holds the machine's port numbers: its ranges are disjoint, and the device
 * models' port constants are the map's.
 */
import { describe, expect, it } from 'vitest';
import {
  COM1_PORTS,
  DEBUG_CONSOLE_PORTS,
  PC_FIXED_PORTS,
  PC_PORTS,
  storageControllerPorts,
} from '../../../src/platform/pc-map.js';
import { DMA1_PORT_BASE, DMA2_PORT_COUNT, DMA_PAGE_PORT_BASE } from '../../../src/vmm/chipset/i8257-dma.js';
import { FW_CFG_DMA_PORT, FW_CFG_SELECTOR_PORT } from '../../../src/vmm/firmware/fw-cfg.js';
import { IDE_LEGACY } from '../../../src/vmm/storage/ide/piix-ide.js';
import { FDC_DIR_PORT, FDC_PORT_BASE } from '../../../src/vmm/storage/floppy.js';
import { PCI_CONFIG_ADDRESS_PORT } from '../../../src/vmm/pci/host-bus.js';

describe('the PC fixed map', () => {
  it('has disjoint ranges, with the controllers a config may add', () => {
    const all = [
      ...PC_FIXED_PORTS,
      COM1_PORTS,
      DEBUG_CONSOLE_PORTS,
      ...storageControllerPorts({ floppy: true }),
    ];
    const sorted = [...all].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++)
      expect(sorted[i]!.start, `${sorted[i - 1]!.owner} / ${sorted[i]!.owner}`).toBeGreaterThanOrEqual(
        sorted[i - 1]!.end,
      );
    expect(PC_FIXED_PORTS).toHaveLength(Object.keys(PC_PORTS).length);
  });

  it('is where the device models take their ports from', () => {
    expect([DMA1_PORT_BASE, DMA_PAGE_PORT_BASE, DMA2_PORT_COUNT]).toEqual([0x00, 0x81, 32]);
    expect([FW_CFG_SELECTOR_PORT, FW_CFG_DMA_PORT, PCI_CONFIG_ADDRESS_PORT]).toEqual([0x510, 0x514, 0xcf8]);
    expect(IDE_LEGACY.map((c) => [c.command, c.control])).toEqual([
      [0x1f0, 0x3f6],
      [0x170, 0x376],
    ]);
    expect([FDC_PORT_BASE, FDC_DIR_PORT]).toEqual([0x3f0, 0x3f7]);
  });
});
