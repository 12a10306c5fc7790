/**
 * fw_cfg of the PC machine (src/vmm/machine.ts), filled as QEMU's pc machine
 * fills it.
 */
import {
  FwCfg,
  FW_CFG_DATA_PORT,
  FW_CFG_DMA_PORT,
  FW_CFG_DMA_PORT_LENGTH,
  FW_CFG_SELECTOR_PORT,
  FW_CFG_UUID,
} from '../firmware/fw-cfg.js';
import { TableLoader, TABLE_LOADER_FILE } from '../firmware/table-loader.js';
import { acpiTableLoader } from '../firmware/acpi/tables.js';
import { buildSmbios } from '../firmware/smbios.js';
import { E820_RAM } from '../boot/e820.js';
import { COM1_PORTS } from '../../platform/pc-map.js';
import { BootError } from '../boot/errors.js';
import { offerMultibootKernel, pcAcpiTables, readBootFile, type PcParts } from './pc-boot.js';

/** What a SeaBIOS without a display sends its text output (INT 10h) to: COM1 (fw_cfg etc/sercon-port). */
const SERCON_PORT = COM1_PORTS.start;

/**
 * fw_cfg for the firmware, as QEMU's pc machine fills it: CPU count and
 * RAM size, the UUID, the RAM map (etc/e820), boot order and menu, ACPI
 * tables with their table-loader script, SMBIOS, option ROMs (genroms/)
 * and the user's opt/ files.
 */
export function buildPcFwCfg(m: PcParts): FwCfg {
  const c = m.config;
  const fw = new FwCfg(m.ctx, {
    memory: m.vm.mem,
    cpus: c.vcpus,
    ramSize: c.memory,
    bootMenu: c.boot.menu,
  });
  const vm = m.vm;
  vm.pio.register(FW_CFG_SELECTOR_PORT, 1, fw.selectorPort, fw.name);
  vm.pio.register(FW_CFG_DATA_PORT, 1, fw.dataPort, fw.name);
  vm.pio.register(FW_CFG_DMA_PORT, FW_CFG_DMA_PORT_LENGTH, fw.dmaPort, fw.name);
  // FW_CFG_UUID in RFC 4122 byte order, as QEMU gives it.
  fw.setItem(FW_CFG_UUID, Uint8Array.from(Buffer.from(c.uuid.replace(/-/g, ''), 'hex')));
  // etc/e820: the RAM ranges; the firmware reserves its own areas.
  const e820 = [
    { addr: 0, size: m.layout.lowRam.size, type: E820_RAM },
    ...(m.layout.highRam
      ? [{ addr: m.layout.highRam.gpa, size: m.layout.highRam.size, type: E820_RAM }]
      : []),
  ];
  const e820Bytes = new Uint8Array(20 * e820.length);
  const dv = new DataView(e820Bytes.buffer);
  e820.forEach((e, i) => {
    dv.setBigUint64(i * 20, BigInt(e.addr), true);
    dv.setBigUint64(i * 20 + 8, BigInt(e.size), true);
    dv.setUint32(i * 20 + 16, e.type, true);
  });
  fw.addFile('etc/e820', e820Bytes);
  if (c.boot.menu && c.boot.menuTimeoutMs > 0) {
    // Without the file SeaBIOS waits its default 2.5 s.
    const wait = new Uint8Array(2);
    new DataView(wait.buffer).setUint16(0, Math.min(c.boot.menuTimeoutMs, 0xffff), true);
    fw.addFile('etc/boot-menu-wait', wait);
  }
  // No display device yet: SeaBIOS's text output (INT 10h) goes to COM1.
  fw.addFile('etc/sercon-port', Uint8Array.of(SERCON_PORT & 0xff, SERCON_PORT >> 8));
  if (c.acpi) {
    const { files, loader } = acpiTableLoader(pcAcpiTables(m.config), new TableLoader());
    for (const [name, data] of files) fw.addFile(name, data);
    fw.addFile(TABLE_LOADER_FILE, loader.build());
  }
  const smbios = buildSmbios({
    uuid: c.uuid,
    cpus: c.vcpus,
    memory: { below4g: m.layout.lowRam.size, above4g: m.layout.highRam?.size ?? 0 },
  });
  fw.addFile('etc/smbios/smbios-tables', smbios.tables);
  fw.addFile('etc/smbios/smbios-anchor', smbios.anchor);
  const bootPaths = m.bootPaths;
  // What the configured devices offer the firmware (option ROMs' genroms/).
  for (const f of m.firmwareFiles) fw.addFile(f.name, f.data);
  for (const f of c.fwCfgFiles) {
    let data: Uint8Array;
    if ('text' in f) data = new TextEncoder().encode(f.text);
    else data = readBootFile(f.path, `fw_cfg file ${f.name}`);
    fw.addFile(f.name, data);
  }
  const order = c.boot.order.map((name) => {
    const path = bootPaths.get(name);
    if (!path) throw new BootError(`boot.order: device "${name}" cannot be a boot device`);
    return path;
  });
  // A kernel with firmware boot: mvisor's multiboot ROM, booted first (QEMU's -kernel).
  if (c.firmware.kind === 'bios' && c.kernel) order.unshift(offerMultibootKernel(m, fw, c.kernel));
  if (order.length) fw.addFile('bootorder', new TextEncoder().encode(order.join('\n') + '\0'));
  return fw;
}
