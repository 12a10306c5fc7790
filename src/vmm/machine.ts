/**
 * The PC machine: assembles a KVM VM and its devices from a resolved VMM
 * config (plain typed data; the YAML/CLI layer builds it), loads the guest
 * and runs it. This file is the only place that knows which device sits at
 * which port; devices only see their options and a DeviceContext.
 */
import { readFileSync } from 'node:fs';
import type { ResolvedCharSink, ResolvedDebugSink, ResolvedVmmConfig } from './config/types.js';
import { KvmVm, ExitCode, type VmStop } from './core/kvm-vm.js';
import type { Device, DeviceContext, IoHandler } from './core/device.js';
import type { Logger } from './core/log.js';
import { zeroRegs } from './kvm/structs.js';
import { pcMemoryLayout, FOUR_GIB, BOOT_STACK_POINTER, type PcMemoryLayout } from './boot/layout.js';
import { buildE820, type E820Entry } from './boot/e820.js';
import { writeMpTable } from './boot/mptable.js';
import { isElf } from './boot/elf.js';
import { isBzImage, loadBzImage } from './boot/bzimage.js';
import { loadPvhKernel } from './boot/pvh.js';
import { BootError } from './boot/errors.js';
import { setupLongModeBoot, setupProtectedModeBoot, type BootCpuState } from './boot/pagetables.js';
import type { InitrdImage } from './boot/loader.js';
import { CmosRtc } from './chipset/cmos-rtc.js';
import { PostPort } from './chipset/post-port.js';
import { Port92, PORT_92 } from './chipset/port92.js';
import {
  I8257Dma,
  DMA1_PORT_BASE,
  DMA1_PORT_COUNT,
  DMA2_PORT_BASE,
  DMA2_PORT_COUNT,
  DMA_PAGE_PORT_BASE,
  DMA_PAGE_PORT_COUNT,
} from './chipset/i8257-dma.js';
import type { BlockImage } from '../block/image.js';
import { PiixIde, ideBootPath } from './storage/ide/piix-ide.js';
import { AtaDisk } from './storage/ide/ata-disk.js';
import { AtapiCdrom } from './storage/ide/atapi-cdrom.js';
import { ideCmosBytes } from './storage/ide/cmos.js';
import {
  FloppyController,
  FDC_PORT_BASE,
  FDC_PORT_COUNT,
  FDC_DIR_PORT,
  cmosFloppyType,
} from './storage/floppy.js';
import { VirtioBlk } from './virtio/blk.js';
import { VirtioPciTransport } from './virtio/pci-transport.js';
import { IsaDebugExit } from './testdev/isa-debug-exit.js';
import { PcTestdev } from './testdev/pc-testdev.js';
import { PciTestdev } from './testdev/pci-testdev.js';
import { isMultiboot, loadMultibootKernel, planMultibootKernel } from './boot/multiboot.js';
import type { MultibootModule } from './boot/multiboot.js';
import {
  MULTIBOOT_DATA_FILE,
  MULTIBOOT_MMAP_CAPACITY,
  MULTIBOOT_PLAN_FILE,
  MULTIBOOT_ROM_FILE,
  multibootData,
  multibootPlanFile,
  multibootRom,
} from './firmware/multiboot-loader.js';
import { PCI_BAR0, PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MEMORY } from './pci/config-space.js';
import { KvmIoEvents, kvmMsiSink } from './virtio/ioevent.js';
import type { ResolvedAtaDiskDevice, ResolvedDevice } from './config/types.js';
import { ResetControl } from './chipset/reset-control.js';
import { Piix4Pm } from './chipset/piix4-pm.js';
import { I440fxHost } from './chipset/i440fx-host.js';
import { Piix3 } from './chipset/piix3.js';
import { PamMemory, LEGACY_AREA_SIZE, LEGACY_AREA_START, pamSegment } from './chipset/pam.js';
import { PciHostBus, BusBarMapper, PCI_CONFIG_ADDRESS_PORT, PCI_HOST_PORT_COUNT } from './pci/host-bus.js';
import {
  FwCfg,
  FW_CFG_DATA_PORT,
  FW_CFG_DMA_PORT,
  FW_CFG_DMA_PORT_LENGTH,
  FW_CFG_SELECTOR_PORT,
  FW_CFG_UUID,
} from './firmware/fw-cfg.js';
import { TableLoader, TABLE_LOADER_FILE } from './firmware/table-loader.js';
import {
  buildAcpiTables,
  linkAcpiTables,
  acpiTableLoader,
  pciIntxGsi,
  piixPirq,
} from './firmware/acpi/tables.js';
import { buildSmbios } from './firmware/smbios.js';
import { findWakingVector } from './firmware/acpi/waking-vector.js';
import { E820_RAM, E820_RESERVED } from './boot/e820.js';
import { HIMEM_START, LOW_MEMORY_END, DEFAULT_PCI_HOLE_START, IOAPIC_START } from './boot/layout.js';

/** RAM below 4 GiB that a firmware-booted kernel leaves to the BIOS's tables (SeaBIOS's high zone is 256 KiB). */
const FIRMWARE_HIGH_RESERVE = 0x100000;
/** Where a BIOS loads a boot sector: what a firmware-booted kernel may use starts here. */
const BOOT_SECTOR_ADDR = 0x7c00;
import type { HostMemoryBlock } from './core/kvm-vm.js';

/** I/O base of the ACPI PM registers (what SeaBIOS programs and the FADT names). */
export const PM_IO_BASE = 0x600;
/** Direct boot: the ACPI tables and the RSDP in the reserved 0xE0000 segment. */
export const DIRECT_BOOT_ACPI_RSDP = 0xe0000;
export const DIRECT_BOOT_ACPI_TABLES = 0xe0040;
const DIRECT_BOOT_ACPI_END = 0xf0000;
/** PCI 00:01.x functions of the PIIX. */
const PIIX_SLOT = 1;
/** The largest BIOS image mapped below 4 GiB (as QEMU allows). */
export const MAX_BIOS_SIZE = 16 << 20;
/** What a SeaBIOS without a display sends its text output (INT 10h) to: COM1 (fw_cfg etc/sercon-port). */
const SERCON_PORT = 0x3f8;
import { I8042 } from './input/i8042.js';
import { Ps2Keyboard } from './input/ps2-keyboard.js';
import { Ps2Mouse } from './input/ps2-mouse.js';
import { Uart16550a } from './serial/uart-16550a.js';
import { DebugConsole } from './firmware/debug-console.js';
import { createCharBackend, type CharBackend } from './chardev/backend.js';

export interface MachineOptions {
  log: Logger;
  /** Opened images of the storage devices, by device name (storage/images.ts). */
  images?: ReadonlyMap<string, BlockImage>;
  /** Called when the user asks to quit from the console (Ctrl-A x). */
  onConsoleQuit?: () => void;
}

/** KVM GSI routing of a PC with the IRQ0→pin 2 override (as QEMU/SeaBIOS wire it). */
export function pcGsiRoutes(c: Record<string, number>): Uint32Array {
  const routes: number[] = [];
  const chip = c.KVM_IRQ_ROUTING_IRQCHIP!;
  for (let gsi = 0; gsi < 16; gsi++) {
    if (gsi !== 2)
      routes.push(
        gsi,
        chip,
        0,
        gsi < 8 ? c.KVM_IRQCHIP_PIC_MASTER! : c.KVM_IRQCHIP_PIC_SLAVE!,
        gsi % 8,
        0,
        0,
      );
    if (gsi === 0) routes.push(0, chip, 0, c.KVM_IRQCHIP_IOAPIC!, 2, 0, 0);
    else if (gsi !== 2) routes.push(gsi, chip, 0, c.KVM_IRQCHIP_IOAPIC!, gsi, 0, 0);
  }
  for (let gsi = 16; gsi < 24; gsi++) routes.push(gsi, chip, 0, c.KVM_IRQCHIP_IOAPIC!, gsi, 0, 0);
  return Uint32Array.from(routes);
}

export class PcMachine {
  readonly vm: KvmVm;
  readonly layout: PcMemoryLayout;
  readonly e820: E820Entry[];
  readonly devices: Device[] = [];
  readonly com1: Uart16550a;
  readonly rtc: CmosRtc;
  readonly i8042: I8042;
  readonly pm: Piix4Pm;
  readonly dma: I8257Dma;
  readonly ide: PiixIde;
  readonly fdc: FloppyController | undefined;
  readonly virtioBlks: VirtioBlk[] = [];
  private ioEvents: KvmIoEvents | undefined;
  /** fw_cfg bootorder paths of the boot devices, by device name. */
  private readonly bootPaths = new Map<string, string>();
  readonly pci: PciHostBus;
  readonly host: I440fxHost;
  readonly piix3: Piix3;
  readonly pam: PamMemory;
  readonly fwCfg: FwCfg;
  private readonly ctx: DeviceContext;
  private bios: { block: HostMemoryBlock; size: number; bytes: Uint8Array } | undefined;
  /** While in S3: settles when every vCPU is parked. */
  private sleep: Promise<void> | undefined;

  constructor(
    readonly config: ResolvedVmmConfig,
    private readonly opts: MachineOptions,
  ) {
    const log = opts.log;
    this.layout = pcMemoryLayout(config.memory);
    const direct = config.firmware.kind === 'direct';
    this.e820 = buildE820(
      this.layout,
      direct && config.acpi
        ? [
            {
              addr: DIRECT_BOOT_ACPI_RSDP,
              size: DIRECT_BOOT_ACPI_END - DIRECT_BOOT_ACPI_RSDP,
              type: E820_RESERVED,
            },
          ]
        : [],
    );
    const low = this.layout.lowRam;
    this.vm = new KvmVm({
      cpus: config.vcpus,
      cpu: config.cpu,
      ram: [
        { gpa: low.gpa, size: low.size, mapped: false },
        ...(this.layout.highRam ? [{ gpa: this.layout.highRam.gpa, size: this.layout.highRam.size }] : []),
      ],
      log,
    });
    // A failure half-way (a bus overlap, a socket that cannot listen) must
    // not leave files, sockets or the VM behind.
    try {
      this.vm.native.setGsiRouting(pcGsiRoutes(this.vm.addon.constants));
      if (config.pitLostTicks === 'discard') this.vm.native.pitReinject(false);
      const vm = this.vm;
      // Low RAM around the legacy hole: DRAM below 640 KiB and from 1 MiB;
      // 0xA0000-0xBFFFF is the (future) VGA window, 0xC0000-0xFFFFF is PAM's.
      const lowBlock = vm.ramBlocks[0]!;
      vm.mapMemory(0, LOW_MEMORY_END, lowBlock, 0);
      if (low.size > HIMEM_START) vm.mapMemory(HIMEM_START, low.size - HIMEM_START, lowBlock, HIMEM_START);
      if (!direct) this.bios = this.loadBios(config.firmware.kind === 'bios' ? config.firmware.path : '');
      const pcRom = vm.allocHostMemory(LEGACY_AREA_SIZE);
      const pcRomBytes = vm.hostBytes(pcRom, 0, LEGACY_AREA_SIZE);
      this.pam = new PamMemory({
        mapper: vm,
        ram: {
          block: lowBlock,
          offset: LEGACY_AREA_START,
          bytes: vm.hostBytes(lowBlock, LEGACY_AREA_START, LEGACY_AREA_SIZE),
        },
        rom: (segment) => this.legacyRom(segment, pcRom, pcRomBytes),
      });
      vm.mmio.register(LEGACY_AREA_START, LEGACY_AREA_SIZE, this.pam, 'pam');
      this.ctx = {
        irq: vm,
        log,
        guestErrors: vm.guestErrors,
        requestReset: (reason) => vm.onGuestReset(reason),
        requestPowerOff: (reason) => vm.requestStop(ExitCode.Ok, `guest powered off (${reason})`),
        requestSuspend: (reason) => this.suspend(reason),
        requestWake: (reason) => this.wake(reason),
      };

      const below = this.layout.lowRam.size;
      const above = this.layout.highRam?.size ?? 0;
      const images = opts.images ?? new Map<string, BlockImage>();
      const floppies = config.devices.filter((d) => d.class === 'floppy');
      const floppyType = (drive: number) => {
        const f = floppies.find((d) => d.drive === drive);
        if (!f) return 0;
        const img = images.get(f.name);
        return img ? cmosFloppyType(img.size) : 4; // 4: 1.44 MB, an empty drive
      };
      const ideDisks = [0, 1].map((unit) => {
        const d = config.devices.find(
          (x): x is ResolvedAtaDiskDevice => x.class === 'ata-disk' && x.channel === 0 && x.unit === unit,
        );
        const img = d && images.get(d.name);
        return img ? { sectors: Math.floor(img.size / 512) } : undefined;
      });
      this.rtc = this.add(
        new CmosRtc(this.ctx, {
          onAlarm: () => this.pm.rtcAlarm(),
          memoryBytes: config.memory,
          belowFourGiB: below,
          aboveFourGiB: above,
          cpus: config.vcpus,
          floppyTypes: (floppyType(0) << 4) | floppyType(1),
          floppyDrives: floppies.length,
          extraBytes: ideCmosBytes(ideDisks),
        }),
      );
      this.pio(0x70, 2, this.rtc);
      const keyboard = this.add(new Ps2Keyboard(this.ctx));
      const mouse = this.add(new Ps2Mouse(this.ctx));
      this.i8042 = this.add(new I8042(this.ctx, { keyboard, mouse }));
      vm.pio.register(0x60, 1, this.i8042.dataPort, 'i8042');
      vm.pio.register(0x64, 1, this.i8042.commandPort, 'i8042');
      this.pio(0x80, 1, this.add(new PostPort(this.ctx)));
      this.pio(PORT_92, 1, this.add(new Port92(this.ctx)));
      // The two cascaded 8237 DMA controllers and their page registers
      // (0x81-0x8F, so the POST port 0x80 stays apart).
      this.dma = this.add(new I8257Dma(this.ctx, { memory: vm.mem }));
      vm.pio.register(DMA1_PORT_BASE, DMA1_PORT_COUNT, this.dma.dma1Ports, this.dma.name);
      vm.pio.register(DMA2_PORT_BASE, DMA2_PORT_COUNT, this.dma.dma2Ports, this.dma.name);
      vm.pio.register(DMA_PAGE_PORT_BASE, DMA_PAGE_PORT_COUNT, this.dma.pagePorts, this.dma.name);
      // Port 0x61 (system control port B with the PIT channel 2 gate and
      // output) is served inside KVM by the in-kernel PIT (KVM_PIT_SPEAKER_DUMMY),
      // which the TSC calibration of guests needs exactly.

      this.com1 = this.add(
        new Uart16550a('com1', this.ctx, { irq: 4, backend: this.charBackend(config.serial) }),
      );
      this.pio(0x3f8, 8, this.com1);
      this.debugConsole(0x402, config.debugConsole, 'debugcon');
      for (const d of config.devices) {
        if (d.class === 'serial-port') {
          const name = `serial-${d.port.toString(16)}`;
          this.pio(
            d.port,
            8,
            this.add(new Uart16550a(name, this.ctx, { irq: d.irq, backend: this.charBackend(d.serial) })),
          );
        } else if (d.class === 'debug-console') {
          this.debugConsole(d.port, d.output, `debugcon-${d.port.toString(16)}`);
        }
      }
      // PCI: the i440FX host bridge at 00:00.0, the PIIX3 ISA bridge at
      // 00:01.0 and the PIIX4 power management function at 00:01.3, as in
      // QEMU's pc machine. The reset control register 0xCF9 sits inside
      // the host bus's ports.
      const resetControl = this.add(new ResetControl(this.ctx));
      const mapper = new BusBarMapper(vm.pio, vm.mmio);
      // The PIIX3 re-routes through the bus, which needs the PIIX3 for its routes.
      const late: { pci?: PciHostBus } = {};
      this.piix3 = new Piix3({ onRoutingChange: () => late.pci?.refreshIntxRouting() });
      const pci =
        (late.pci =
        this.pci =
          this.add(
            new PciHostBus(this.ctx, {
              mapper,
              intxRoute: (slot, pin) => {
                // In APIC mode the _PRT sends PIRQA-D to IOAPIC pins 16-19; a
                // PIC-mode OS (or the BIOS) uses the ISA IRQ the PIIX3 routes
                // the PIRQ to. Both are driven, as on an ICH.
                const isa = this.piix3.pirqIrq(piixPirq(slot, pin));
                const apic = pciIntxGsi(slot, pin);
                return isa === undefined ? apic : [apic, isa];
              },
              onResetControl: (v) => resetControl.write(0, 1, v),
              readResetControl: () => resetControl.read(0, 1),
            }),
          ));
      vm.pio.register(PCI_CONFIG_ADDRESS_PORT, PCI_HOST_PORT_COUNT, pci, pci.name);
      this.host = this.add(new I440fxHost({ pam: this.pam, pamAtPowerOn: direct ? 'ram' : 'rom' }));
      pci.attach(this.host, 0, 0);
      pci.attach(this.add(this.piix3), PIIX_SLOT, 0);
      this.pm = this.add(new Piix4Pm(this.ctx, { mapper, ioBase: direct ? PM_IO_BASE : undefined }));
      pci.attach(this.pm, PIIX_SLOT, 3);
      const storage = this.attachStorage(config.devices, images, direct);
      this.attachTestDevices(config.devices);
      this.ide = storage.ide;
      this.fdc = storage.fdc;
      // fw_cfg is there for a direct boot too (QEMU has it always): its
      // CPU count, RAM size and files serve test kernels and guest tools.
      this.fwCfg = this.add(this.buildFwCfg());
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /**
   * Storage: the PIIX3 IDE function 00:01.1 (always there, as on QEMU's
   * pc) with its ATA disks and ATAPI CD-ROMs, the floppy controller when a
   * floppy drive is configured, and each virtio-block on its own PCI slot.
   */
  private attachStorage(
    devices: readonly ResolvedDevice[],
    images: ReadonlyMap<string, BlockImage>,
    direct: boolean,
  ): { ide: PiixIde; fdc: FloppyController | undefined } {
    const vm = this.vm;
    const ide = this.add(new PiixIde(this.ctx, { memory: vm.mem, decodeAtPowerOn: direct }));
    this.pci.attach(ide, PIIX_SLOT, 1);
    for (const r of ide.legacyPorts) vm.pio.register(r.base, r.length, r.handler, r.name);
    const floppyDrives: Array<{ image?: BlockImage; readOnly?: boolean } | undefined> = [];
    let nextSlot = 2;
    const usedSlots = new Set(devices.flatMap((d) => (d.class === 'virtio-block' && d.slot ? [d.slot] : [])));
    for (const d of devices) {
      const image = 'name' in d ? images.get(d.name) : undefined;
      if (d.class === 'ata-disk') {
        if (!image) throw new BootError(`devices: ${d.name}: no image`);
        ide.attachDrive(d.channel, d.unit, new AtaDisk({ name: d.name, image }));
        this.bootPaths.set(d.name, ideBootPath(d.channel, d.unit));
      } else if (d.class === 'ata-cdrom') {
        ide.attachDrive(d.channel, d.unit, new AtapiCdrom({ name: d.name, image }));
        this.bootPaths.set(d.name, ideBootPath(d.channel, d.unit));
      } else if (d.class === 'floppy') {
        floppyDrives[d.drive] = { image, readOnly: d.image?.readOnly };
        this.bootPaths.set(d.name, `/pci@i0cf8/isa@1/fdc@03f0/floppy@${d.drive}`);
      } else if (d.class === 'virtio-block') {
        if (!image) throw new BootError(`devices: ${d.name}: no image`);
        let slot = d.slot;
        if (slot === undefined) {
          while (usedSlots.has(nextSlot)) nextSlot++;
          slot = nextSlot++;
        }
        this.ioEvents ??= new KvmIoEvents(vm);
        const blk = new VirtioBlk({
          image,
          name: d.name,
          serial: d.serial,
          numQueues: d.queues,
          readOnly: d.image.readOnly,
        });
        const pciBlk = new VirtioPciTransport(blk, {
          ctx: this.ctx,
          mem: vm.mem,
          msi: kvmMsiSink(vm.native),
          ioEvents: this.ioEvents,
        });
        this.pci.attach(this.add(pciBlk), slot, 0);
        this.virtioBlks.push(blk);
        // SeaBIOS matches "/pci@i0cf8/*@<slot>" as QEMU names virtio-blk.
        this.bootPaths.set(d.name, `/pci@i0cf8/scsi@${slot.toString(16)}/disk@0,0`);
      }
    }
    let fdc: FloppyController | undefined;
    if (floppyDrives.length) {
      const drives = [floppyDrives[0] ?? {}, ...(floppyDrives[1] ? [floppyDrives[1]] : [])];
      fdc = this.add(new FloppyController(this.ctx, { dma: this.dma, drives }));
      vm.pio.register(FDC_PORT_BASE, FDC_PORT_COUNT, fdc.ports, fdc.name);
      vm.pio.register(FDC_DIR_PORT, 1, fdc.dirPort, fdc.name);
    }
    return { ide, fdc };
  }

  /** QEMU's test devices (kvm-unit-tests), only when the config names them. */
  private attachTestDevices(devices: readonly ResolvedDevice[]): void {
    const vm = this.vm;
    for (const d of devices) {
      if (d.class === 'isa-debug-exit') {
        const dev = this.add(
          new IsaDebugExit(this.ctx, {
            iobase: d.iobase,
            iosize: d.iosize,
            onExit: (code, reason) => vm.requestStop(code, reason),
          }),
        );
        vm.pio.register(dev.iobase, dev.iosize, dev, dev.name);
      } else if (d.class === 'pc-testdev') {
        const dev = this.add(new PcTestdev(this.ctx));
        for (const r of dev.pioRanges) vm.pio.register(r.base, r.length, r.handler, r.name);
        for (const r of dev.mmioRanges) vm.mmio.register(r.base, r.length, r.handler, r.name);
      } else if (d.class === 'pci-testdev') {
        const slot = d.slot ?? this.freePciSlot();
        this.pci.attach(this.add(new PciTestdev(this.ctx)), slot, 0);
      }
    }
  }

  private freePciSlot(): number {
    for (let slot = 2; slot < 32; slot++) if (!this.pci.device(slot, 0)) return slot;
    throw new BootError('no free PCI slot left on bus 0');
  }

  /**
   * A direct kernel boot has no firmware to assign PCI resources, so the
   * machine does what SeaBIOS would: every BAR of bus 0 gets an address
   * (I/O from 0xC000, memory from the start of the PCI hole, each aligned
   * to its size, largest first) and I/O and memory decoding are turned on.
   * Kernels that assign their own (Linux) may move them; test kernels
   * (kvm-unit-tests) use them as they are.
   */
  private assignPciResources(): void {
    const bars: Array<{ slot: number; fn: number; index: number; kind: string; size: number }> = [];
    for (let slot = 0; slot < 32; slot++)
      for (let fn = 0; fn < 8; fn++) {
        const d = this.pci.device(slot, fn);
        if (!d) continue;
        for (const b of d.bars) bars.push({ slot, fn, index: b.index, kind: b.kind, size: b.size });
      }
    bars.sort((a, b) => b.size - a.size);
    let io = 0xc000;
    let mem = this.layout.lowRam.size;
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
      this.pci.writeConfig(b.slot, b.fn, reg, 4, addr >>> 0);
      if (b.kind === 'mem64') this.pci.writeConfig(b.slot, b.fn, reg + 4, 4, 0);
      used.add(`${b.slot}.${b.fn}`);
    }
    for (const key of used) {
      const [slot, fn] = key.split('.').map(Number) as [number, number];
      const cmd = this.pci.readConfig(slot, fn, PCI_COMMAND, 2);
      this.pci.writeConfig(slot, fn, PCI_COMMAND, 2, cmd | PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    }
  }

  /** Waits until no storage request is in flight (the vCPUs are stopped or paused). */
  async drainStorage(): Promise<void> {
    await Promise.all([...this.virtioBlks.map((b) => b.drain()), this.ide.drain(), this.fdc?.whenIdle()]);
  }

  private add<T extends Device>(d: T): T {
    this.devices.push(d);
    return d;
  }

  private pio(base: number, length: number, d: IoHandler & Device): void {
    this.vm.pio.register(base, length, d, d.name);
  }

  private charBackend(sink: ResolvedCharSink): CharBackend {
    switch (sink.kind) {
      case 'stdio':
        return createCharBackend({ kind: 'stdio', onQuit: this.opts.onConsoleQuit }, this.opts.log);
      case 'file':
        return createCharBackend({ kind: 'file', path: sink.path }, this.opts.log);
      case 'socket':
        return createCharBackend({ kind: 'unix', path: sink.path }, this.opts.log);
      case 'none':
        return createCharBackend({ kind: 'null' }, this.opts.log);
    }
  }

  private debugConsole(port: number, out: ResolvedDebugSink, name: string): void {
    if (out.kind === 'none') return;
    const backend =
      out.kind === 'file' ? createCharBackend({ kind: 'file', path: out.path }, this.opts.log) : undefined;
    const sink = backend
      ? (d: Uint8Array) => backend.write(d)
      : (d: Uint8Array) => void process.stderr.write(d);
    const dc = new DebugConsole(this.ctx, { sink, name });
    this.add(dc);
    if (backend) this.devices.push({ name: `${name}-file`, close: () => backend.close() });
    this.pio(port, 1, dc);
  }

  /**
   * Reads the BIOS image and maps it read-only at the top of 4 GiB, where
   * the reset vector (0xFFFFFFF0) is; its last 128 KiB also back the ROM
   * side of the legacy area at 0xE0000-0xFFFFF (see pam.ts).
   */
  private loadBios(path: string): { block: HostMemoryBlock; size: number; bytes: Uint8Array } {
    const image = readBootFile(path, 'BIOS image');
    if (image.length < 0x10000 || image.length > MAX_BIOS_SIZE || image.length % 0x10000 !== 0) {
      throw new BootError(
        `${path}: a BIOS image must be a multiple of 64 KiB between 64 KiB and 16 MiB (it is ${image.length} bytes)`,
      );
    }
    const block = this.vm.allocHostMemory(image.length);
    const bytes = this.vm.hostBytes(block, 0, image.length);
    bytes.set(image);
    this.vm.mapMemory(FOUR_GIB - image.length, image.length, block, 0, { readonly: true });
    return { block, size: image.length, bytes };
  }

  /** The ROM side of a PAM segment: the BIOS's last 128 KiB at the top of 1 MiB, pc.rom below. */
  private legacyRom(
    segment: number,
    pcRom: HostMemoryBlock,
    pcRomBytes: Uint8Array,
  ): { block: HostMemoryBlock; offset: number; bytes: Uint8Array } {
    const { gpa, size } = pamSegment(segment);
    const bios = this.bios;
    const alias = bios ? Math.min(bios.size, 0x20000) : 0;
    if (bios && gpa >= HIMEM_START - alias) {
      const offset = bios.size - (HIMEM_START - gpa);
      return { block: bios.block, offset, bytes: bios.bytes.subarray(offset, offset + size) };
    }
    const offset = gpa - LEGACY_AREA_START;
    return { block: pcRom, offset, bytes: pcRomBytes.subarray(offset, offset + size) };
  }

  private acpiTables() {
    return buildAcpiTables({ cpus: this.config.vcpus, pmBase: PM_IO_BASE });
  }

  /**
   * fw_cfg for the firmware, as QEMU's pc machine fills it: CPU count and
   * RAM size, the UUID, the RAM map (etc/e820), boot order and menu, ACPI
   * tables with their table-loader script, SMBIOS, option ROMs (genroms/)
   * and the user's opt/ files.
   */
  private buildFwCfg(): FwCfg {
    const c = this.config;
    const fw = new FwCfg(this.ctx, {
      memory: this.vm.mem,
      cpus: c.vcpus,
      ramSize: c.memory,
      bootMenu: c.boot.menu,
    });
    const vm = this.vm;
    vm.pio.register(FW_CFG_SELECTOR_PORT, 1, fw.selectorPort, fw.name);
    vm.pio.register(FW_CFG_DATA_PORT, 1, fw.dataPort, fw.name);
    vm.pio.register(FW_CFG_DMA_PORT, FW_CFG_DMA_PORT_LENGTH, fw.dmaPort, fw.name);
    // FW_CFG_UUID in RFC 4122 byte order, as QEMU gives it.
    fw.setItem(FW_CFG_UUID, Uint8Array.from(Buffer.from(c.uuid.replace(/-/g, ''), 'hex')));
    // etc/e820: the RAM ranges; the firmware reserves its own areas.
    const e820 = [
      { addr: 0, size: this.layout.lowRam.size, type: E820_RAM },
      ...(this.layout.highRam
        ? [{ addr: this.layout.highRam.gpa, size: this.layout.highRam.size, type: E820_RAM }]
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
      const { files, loader } = acpiTableLoader(this.acpiTables(), new TableLoader());
      for (const [name, data] of files) fw.addFile(name, data);
      fw.addFile(TABLE_LOADER_FILE, loader.build());
    }
    const smbios = buildSmbios({
      uuid: c.uuid,
      cpus: c.vcpus,
      memory: { below4g: this.layout.lowRam.size, above4g: this.layout.highRam?.size ?? 0 },
    });
    fw.addFile('etc/smbios/smbios-tables', smbios.tables);
    fw.addFile('etc/smbios/smbios-anchor', smbios.anchor);
    const bootPaths = this.bootPaths;
    for (const d of c.devices) {
      if (d.class !== 'option-rom') continue;
      const rom = readBootFile(d.file, 'option ROM');
      const file = `genroms/${d.name}.bin`;
      fw.addFile(file, rom);
      bootPaths.set(d.name, `/rom@${file}`);
    }
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
    if (c.firmware.kind === 'bios' && c.kernel) order.unshift(this.offerMultibootKernel(fw, c.kernel));
    if (order.length) fw.addFile('bootorder', new TextEncoder().encode(order.join('\n') + '\0'));
    return fw;
  }

  /** ACPI S3: parks every vCPU (the one that asked finishes its instruction first); RAM and devices stay. */
  private suspend(reason: string): boolean {
    if (this.sleep) return false;
    this.opts.log.info(`guest suspended to RAM (${reason})`);
    this.sleep = this.vm.pause();
    return true;
  }

  /**
   * The end of S3, doing what firmware does on resume: every CPU reset,
   * the BSP in real mode at the FACS's waking vector, the APs waiting for
   * INIT/SIPI. Devices keep their state (the OS reinitializes what it
   * needs). Without a waking vector the guest is reset.
   */
  private wake(reason: string): void {
    const parked = this.sleep;
    if (!parked) return;
    this.sleep = undefined;
    parked
      .then(() => {
        if (this.vm.stopped) return;
        this.resumeFromS3(reason);
      })
      .catch((e: Error) =>
        this.vm.stop(ExitCode.VmmError, `S3 wake (${reason}) failed: ${e.stack ?? e.message}`),
      );
  }

  private resumeFromS3(reason: string): void {
    const w = findWakingVector(this.vm.mem);
    if ('problem' in w || w.vector === 0) {
      const why = 'problem' in w ? w.problem : 'the FACS waking vector is 0';
      // A reset ends the VM (onReset: exit), so the vCPUs stay parked.
      this.ctx.requestReset(`S3 wake (${reason}): ${why}`);
      return;
    }
    if (w.x !== undefined) {
      this.opts.log.warn(
        `S3 wake: X_Firmware_Waking_Vector 0x${w.x.toString(16)} ignored; waking in real mode at 0x${w.vector.toString(16)}`,
      );
    }
    this.vm.resetCpus();
    this.vm.setRealModeEntry(0, w.vector);
    this.opts.log.info(`guest woke (${reason}) at waking vector 0x${w.vector.toString(16)}`);
    this.vm.resume();
  }

  /** Plans the kernel's load and offers it with the multiboot ROM; returns the ROM's bootorder path. */
  private offerMultibootKernel(fw: FwCfg, kernel: string): string {
    const c = this.config;
    const image = readBootFile(kernel, 'kernel');
    if (!isMultiboot(image)) {
      throw new BootError(
        `${kernel}: firmware boot takes a multiboot kernel only (a Linux kernel boots with firmware: direct)`,
      );
    }
    const plan = planMultibootKernel(this.vm.mem, image, kernel, {
      cmdline: c.cmdline,
      modules: this.readModules(),
      e820: this.e820,
      lowRamEnd: Math.min(this.layout.lowRam.gpa + this.layout.lowRam.size, FOUR_GIB),
      mmapCapacity: MULTIBOOT_MMAP_CAPACITY,
      infoInConventionalMemory: true,
    });
    for (const w of plan.warnings) this.opts.log.warn(`${kernel}: ${w}`);
    // While the ROM copies, the BIOS still uses the IVT, the BDA and its stack
    // below 0x7C00 (where boot sectors go; the EBDA is reserved in the map)
    // and its tables at the top of RAM below 4 GiB.
    const ramTop = this.layout.lowRam.gpa + this.layout.lowRam.size;
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

  private readModules(): MultibootModule[] {
    return (this.config.modules ?? []).map((m) => {
      return { data: readBootFile(m.path, 'module'), cmdline: m.cmdline, path: m.path };
    });
  }

  /** Firmware boot: nothing to load (the vCPUs start at the reset vector); direct boot: the kernel. */
  load(): void {
    if (this.config.firmware.kind === 'direct') this.loadKernel();
  }

  /** Loads the kernel (PVH ELF vmlinux or bzImage), initrd, MP table, ACPI tables; sets up vCPU 0. */
  private loadKernel(): void {
    const c = this.config;
    if (!c.kernel) throw new BootError('direct kernel boot needs a kernel');
    const kernel = c.kernel;
    const image = readBootFile(kernel, 'kernel');
    let initrd: InitrdImage | undefined;
    if (c.initrd) {
      initrd = { data: readBootFile(c.initrd, 'initrd'), path: c.initrd };
    }
    const mem = this.vm.mem;
    const lowRamEnd = Math.min(this.layout.lowRam.gpa + this.layout.lowRam.size, FOUR_GIB);
    writeMpTable(mem, c.vcpus);
    let acpiRsdp: number | undefined;
    if (c.acpi) {
      const built = this.acpiTables();
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
    this.assignPciResources();
    const regs = zeroRegs();
    let boot: BootCpuState;
    if (isMultiboot(image)) {
      const modules = this.readModules();
      const k = loadMultibootKernel(mem, image, kernel, {
        cmdline: c.cmdline,
        modules,
        e820: this.e820,
        lowRamEnd,
      });
      for (const w of k.warnings) this.opts.log.warn(`${kernel}: ${w}`);
      boot = k.cpu;
      regs.rip = BigInt(k.entry);
      regs.rax = BigInt(k.eax);
      regs.rbx = BigInt(k.infoAddr);
      regs.rflags = BigInt(k.rflags);
      this.vm.setBootState(0, boot, regs);
      return;
    } else if (isElf(image)) {
      const k = loadPvhKernel(mem, image, kernel, {
        cmdline: c.cmdline,
        initrd,
        e820: this.e820,
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
        e820: this.e820,
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
    this.vm.setBootState(0, boot, regs);
  }

  async run(): Promise<VmStop> {
    const stop = await this.vm.run();
    return stop;
  }

  /** Releases devices (flushing their output) and the VM. */
  close(): void {
    for (const d of [...this.devices].reverse()) {
      try {
        d.close?.();
      } catch (e) {
        this.opts.log.warn(`closing ${d.name}: ${(e as Error).message}`);
      }
    }
    this.ioEvents?.close();
    this.vm.close();
  }
}

/** A file the machine needs to boot; an unreadable one is a BootError naming the file and what it is. */
function readBootFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new BootError(`${path}: cannot read ${what}: ${(e as Error).message}`);
  }
}
