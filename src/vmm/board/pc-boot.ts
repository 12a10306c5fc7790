/**
 * Loading what a PC boots, apart from the board that holds the devices
 * (src/vmm/machine.ts): a direct kernel boot (PVH ELF, bzImage or multiboot,
 * with initrd or modules, MP and ACPI tables, PCI resources as a BIOS would
 * assign them) and the multiboot kernel offered to SeaBIOS through mvisor's
 * option ROM.
 */
import { readFileSync } from 'node:fs';
import { PC_PORTS } from '../../platform/pc-map.js';
import type { ResolvedVmmConfig } from '../config/types.js';
import type { KvmVm } from '../core/kvm-vm.js';
import type { DeviceContext } from '../core/device.js';
import type { Logger } from '../core/log.js';
import { zeroRegs } from '../kvm/structs.js';
import {
  FOUR_GIB,
  BOOT_STACK_POINTER,
  DEFAULT_PCI_HOLE_START,
  IOAPIC_START,
  type PcMemoryLayout,
} from '../boot/layout.js';
import type { E820Entry } from '../boot/e820.js';
import { writeMpTable } from '../boot/mptable.js';
import { isElf } from '../boot/elf.js';
import { isBzImage, loadBzImage } from '../boot/bzimage.js';
import { loadPvhKernel } from '../boot/pvh.js';
import { BootError } from '../boot/errors.js';
import { setupLongModeBoot, setupProtectedModeBoot, type BootCpuState } from '../boot/pagetables.js';
import type { InitrdImage } from '../boot/loader.js';
import {
  isMultiboot,
  loadMultibootKernel,
  planMultibootKernel,
  type MultibootModule,
} from '../boot/multiboot.js';
import {
  MULTIBOOT_DATA_FILE,
  MULTIBOOT_MMAP_CAPACITY,
  MULTIBOOT_PLAN_FILE,
  MULTIBOOT_ROM_FILE,
  multibootData,
  multibootPlanFile,
  multibootRom,
} from '../firmware/multiboot-loader.js';
import type { FwCfg } from '../firmware/fw-cfg.js';
import { buildAcpiTables, linkAcpiTables } from '../firmware/acpi/tables.js';
import { PCI_BAR0, PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MEMORY } from '../pci/config-space.js';
import type { PciHostBus } from '../pci/host-bus.js';

/** I/O base of the ACPI PM registers (what SeaBIOS programs and the FADT names). */
export const PM_IO_BASE = PC_PORTS.pm.start;
/** Direct boot: the ACPI tables and the RSDP in the reserved 0xE0000 segment. */
export const DIRECT_BOOT_ACPI_RSDP = 0xe0000;
export const DIRECT_BOOT_ACPI_TABLES = 0xe0040;
export const DIRECT_BOOT_ACPI_END = 0xf0000;
/** RAM below 4 GiB that a firmware-booted kernel leaves to the BIOS's tables (SeaBIOS's high zone is 256 KiB). */
const FIRMWARE_HIGH_RESERVE = 0x100000;
/** Where a BIOS loads a boot sector: what a firmware-booted kernel may use starts here. */
const BOOT_SECTOR_ADDR = 0x7c00;

/** The parts of the PC machine that loading and fw_cfg read. */
export interface PcParts {
  readonly config: ResolvedVmmConfig;
  readonly vm: KvmVm;
  readonly layout: PcMemoryLayout;
  readonly e820: E820Entry[];
  readonly pci: PciHostBus;
  readonly ctx: DeviceContext;
  readonly log: Logger;
  /** fw_cfg bootorder paths of the boot devices, by device name. */
  readonly bootPaths: Map<string, string>;
  /** fw_cfg files the configured devices offer (option ROMs). */
  readonly firmwareFiles: readonly { name: string; data: Uint8Array }[];
}

export function pcAcpiTables(config: ResolvedVmmConfig) {
  return buildAcpiTables({ cpus: config.vcpus, pmBase: PM_IO_BASE });
}

/**
 * A direct kernel boot has no firmware to assign PCI resources, so the
 * machine does what SeaBIOS would: every BAR of bus 0 gets an address
 * (I/O from 0xC000, memory from the start of the PCI hole, each aligned
 * to its size, largest first) and I/O and memory decoding are turned on.
 * Kernels that assign their own (Linux) may move them; test kernels
 * (kvm-unit-tests) use them as they are.
 */
export function assignPciResources(pci: PciHostBus, layout: PcMemoryLayout): void {
  const bars: Array<{ slot: number; fn: number; index: number; kind: string; size: number }> = [];
  for (let slot = 0; slot < 32; slot++)
    for (let fn = 0; fn < 8; fn++) {
      const d = pci.device(slot, fn);
      if (!d) continue;
      for (const b of d.bars) bars.push({ slot, fn, index: b.index, kind: b.kind, size: b.size });
    }
  bars.sort((a, b) => b.size - a.size);
  let io = 0xc000;
  let mem = layout.lowRam.size;
  mem = Math.max(mem, DEFAULT_PCI_HOLE_START);
  const align = (v: number, a: number) => Math.ceil(v / a) * a;
  const used = new Set<string>();
  for (const b of bars) {
    let addr: number;
    if (b.kind === 'io') {
      addr = align(io, b.size);
      if (addr + b.size > 0x10000) continue;
      io = addr + b.size;
    } else {
      addr = align(mem, b.size);
      if (addr + b.size > IOAPIC_START) continue;
      mem = addr + b.size;
    }
    const reg = PCI_BAR0 + 4 * b.index;
    pci.writeConfig(b.slot, b.fn, reg, 4, addr >>> 0);
    if (b.kind === 'mem64') pci.writeConfig(b.slot, b.fn, reg + 4, 4, 0);
    used.add(`${b.slot}.${b.fn}`);
  }
  for (const key of used) {
    const [slot, fn] = key.split('.').map(Number) as [number, number];
    const cmd = pci.readConfig(slot, fn, PCI_COMMAND, 2);
    pci.writeConfig(slot, fn, PCI_COMMAND, 2, cmd | PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
  }
}

/** Plans the kernel's load and offers it with the multiboot ROM; returns the ROM's bootorder path. */
export function offerMultibootKernel(m: PcParts, fw: FwCfg, kernel: string): string {
  const c = m.config;
  const image = readBootFile(kernel, 'kernel');
  if (!isMultiboot(image)) {
    throw new BootError(
      `${kernel}: firmware boot takes a multiboot kernel only (a Linux kernel boots with firmware: direct)`,
    );
  }
  const plan = planMultibootKernel(m.vm.mem, image, kernel, {
    cmdline: c.cmdline,
    modules: readModules(m.config),
    e820: m.e820,
    lowRamEnd: Math.min(m.layout.lowRam.gpa + m.layout.lowRam.size, FOUR_GIB),
    mmapCapacity: MULTIBOOT_MMAP_CAPACITY,
    infoInConventionalMemory: true,
  });
  for (const w of plan.warnings) m.log.warn(`${kernel}: ${w}`);
  // While the ROM copies, the BIOS still uses the IVT, the BDA and its stack
  // below 0x7C00 (where boot sectors go; the EBDA is reserved in the map)
  // and its tables at the top of RAM below 4 GiB.
  const ramTop = m.layout.lowRam.gpa + m.layout.lowRam.size;
  for (const w of plan.writes) {
    const end = w.addr + w.data.length + w.zeros;
    if (w.addr < BOOT_SECTOR_ADDR || end > ramTop - FIRMWARE_HIGH_RESERVE) {
      throw new BootError(
        `${kernel}: loads 0x${w.addr.toString(16)}-0x${end.toString(16)}, where the BIOS lives (firmware boot loads from 0x7c00 to ${FIRMWARE_HIGH_RESERVE >> 20} MiB below the top of RAM; use firmware: direct)`,
      );
    }
  }
  const dataSelector = fw.addFile(MULTIBOOT_DATA_FILE, multibootData(plan));
  fw.addFile(MULTIBOOT_PLAN_FILE, multibootPlanFile(plan, dataSelector, kernel));
  fw.addFile(MULTIBOOT_ROM_FILE, multibootRom());
  return `/rom@${MULTIBOOT_ROM_FILE}`;
}

function readModules(config: ResolvedVmmConfig): MultibootModule[] {
  return (config.modules ?? []).map((m) => {
    return { data: readBootFile(m.path, 'module'), cmdline: m.cmdline, path: m.path };
  });
}

/** Loads the kernel (PVH ELF vmlinux or bzImage), initrd, MP table, ACPI tables; sets up vCPU 0. */
export function loadDirectKernel(m: PcParts): void {
  const c = m.config;
  if (!c.kernel) throw new BootError('direct kernel boot needs a kernel');
  const kernel = c.kernel;
  const image = readBootFile(kernel, 'kernel');
  let initrd: InitrdImage | undefined;
  if (c.initrd) {
    initrd = { data: readBootFile(c.initrd, 'initrd'), path: c.initrd };
  }
  const mem = m.vm.mem;
  const lowRamEnd = Math.min(m.layout.lowRam.gpa + m.layout.lowRam.size, FOUR_GIB);
  writeMpTable(mem, c.vcpus);
  let acpiRsdp: number | undefined;
  if (c.acpi) {
    const built = pcAcpiTables(m.config);
    if (DIRECT_BOOT_ACPI_TABLES + built.tables.length > DIRECT_BOOT_ACPI_END) {
      throw new BootError(`ACPI tables (${built.tables.length} bytes) do not fit below 0xF0000`);
    }
    const linked = linkAcpiTables(built, {
      tablesAddr: DIRECT_BOOT_ACPI_TABLES,
      rsdpAddr: DIRECT_BOOT_ACPI_RSDP,
    });
    mem.write(DIRECT_BOOT_ACPI_TABLES, linked.tables);
    mem.write(DIRECT_BOOT_ACPI_RSDP, linked.rsdp);
    acpiRsdp = DIRECT_BOOT_ACPI_RSDP;
  }
  assignPciResources(m.pci, m.layout);
  const regs = zeroRegs();
  let boot: BootCpuState;
  if (isMultiboot(image)) {
    const modules = readModules(m.config);
    const k = loadMultibootKernel(mem, image, kernel, {
      cmdline: c.cmdline,
      modules,
      e820: m.e820,
      lowRamEnd,
    });
    for (const w of k.warnings) m.log.warn(`${kernel}: ${w}`);
    boot = k.cpu;
    regs.rip = BigInt(k.entry);
    regs.rax = BigInt(k.eax);
    regs.rbx = BigInt(k.infoAddr);
    regs.rflags = BigInt(k.rflags);
    m.vm.setBootState(0, boot, regs);
    return;
  } else if (isElf(image)) {
    const k = loadPvhKernel(mem, image, kernel, {
      cmdline: c.cmdline,
      initrd,
      e820: m.e820,
      lowRamEnd,
      acpiRsdp,
    });
    boot = setupProtectedModeBoot(mem);
    regs.rip = BigInt(k.entry32);
    regs.rbx = BigInt(k.startInfo);
  } else if (isBzImage(image)) {
    const k = loadBzImage(mem, image, kernel, {
      cmdline: c.cmdline,
      initrd,
      e820: m.e820,
      lowRamEnd,
      acpiRsdp,
    });
    boot = setupLongModeBoot(mem);
    regs.rip = BigInt(k.entry64);
    regs.rsi = BigInt(k.bootParams);
  } else {
    throw new BootError(
      `${kernel}: not a kernel mvisor can boot (neither an ELF vmlinux with a PVH note nor a bzImage, ${image.length} bytes)`,
    );
  }
  regs.rsp = BigInt(BOOT_STACK_POINTER);
  regs.rflags = 2n;
  m.vm.setBootState(0, boot, regs);
}

/** A file the machine needs to boot; an unreadable one is a BootError naming the file and what it is. */
export function readBootFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new BootError(`${path}: cannot read ${what}: ${(e as Error).message}`);
  }
}
