/**
 * The PC machine: assembles a KVM VM and its devices from a resolved VMM
 * config (plain typed data; the YAML/CLI layer builds it), loads the guest
 * and runs it. This file is the only place that knows which device sits at
 * which port for the platform's own devices; the configured ones build
 * themselves from their descriptors (board/registry.ts) through a Board.
 */
import type { ResolvedCharSink, ResolvedDebugSink, ResolvedVmmConfig } from './config/types.js';
import type { ResolvedAtaDiskDevice } from './config/types.js';
import { KvmVm, ExitCode, type VmStop, type HostMemoryBlock } from './core/kvm-vm.js';
import type { Device, DeviceContext, IoHandler } from './core/device.js';
import type { Logger } from './core/log.js';
import { pcMemoryLayout, FOUR_GIB, HIMEM_START, LOW_MEMORY_END, type PcMemoryLayout } from './boot/layout.js';
import { buildE820, E820_RESERVED, type E820Entry } from './boot/e820.js';
import { BootError } from './boot/errors.js';
import { CmosRtc } from './chipset/cmos-rtc.js';
import { PostPort } from './chipset/post-port.js';
import { Port92 } from './chipset/port92.js';
import { COM1_PORTS, DEBUG_CONSOLE_PORTS, PC_PORTS, portCount, type PortRange } from '../platform/pc-map.js';
import {
  I8257Dma,
  DMA1_PORT_BASE,
  DMA1_PORT_COUNT,
  DMA2_PORT_BASE,
  DMA2_PORT_COUNT,
  DMA_PAGE_PORT_BASE,
  DMA_PAGE_PORT_COUNT,
} from './chipset/i8257-dma.js';
import { ResetControl } from './chipset/reset-control.js';
import { Piix4Pm } from './chipset/piix4-pm.js';
import { I440fxHost } from './chipset/i440fx-host.js';
import { Piix3 } from './chipset/piix3.js';
import { PamMemory, LEGACY_AREA_SIZE, LEGACY_AREA_START, pamSegment } from './chipset/pam.js';
import type { BlockImage } from '../block/image.js';
import { PiixIde } from './storage/ide/piix-ide.js';
import { ideCmosBytes } from './storage/ide/cmos.js';
import {
  FloppyController,
  FDC_PORT_BASE,
  FDC_PORT_COUNT,
  FDC_DIR_PORT,
  cmosFloppyType,
} from './storage/floppy.js';
import type { Board, StorageDrain } from './board/board.js';
import { descriptorOf } from './board/registry.js';
import { buildPcFwCfg } from './board/pc-fw-cfg.js';
import {
  DIRECT_BOOT_ACPI_END,
  DIRECT_BOOT_ACPI_RSDP,
  PM_IO_BASE,
  loadDirectKernel,
  readBootFile,
  type PcParts,
} from './board/pc-boot.js';
import { VirtioPciTransport } from './virtio/pci-transport.js';
import type { PciDevice } from './pci/device.js';
import { KvmIoEvents, kvmMsiSink } from './virtio/ioevent.js';
import { PciHostBus, BusBarMapper, PCI_CONFIG_ADDRESS_PORT, PCI_HOST_PORT_COUNT } from './pci/host-bus.js';
import type { FwCfg } from './firmware/fw-cfg.js';
import { pciIntxGsi, piixPirq } from './firmware/acpi/tables.js';
import { findWakingVector } from './firmware/acpi/waking-vector.js';
import { I8042 } from './input/i8042.js';
import { Ps2Keyboard } from './input/ps2-keyboard.js';
import { Ps2Mouse } from './input/ps2-mouse.js';
import { Uart16550a } from './serial/uart-16550a.js';
import { DebugConsole } from './firmware/debug-console.js';
import { createCharBackend, type CharBackend } from './chardev/backend.js';

export { DIRECT_BOOT_ACPI_RSDP, DIRECT_BOOT_ACPI_TABLES, PM_IO_BASE } from './board/pc-boot.js';

/** PCI 00:01.x functions of the PIIX. */
const PIIX_SLOT = 1;
/** The largest BIOS image mapped below 4 GiB (as QEMU allows). */
export const MAX_BIOS_SIZE = 16 << 20;

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
  private ioEvents: KvmIoEvents | undefined;
  /** What stopping the VM waits for (requests in flight). */
  private readonly storage: StorageDrain[] = [];
  private readonly floppyDrives: Array<{ image?: BlockImage; readOnly?: boolean } | undefined> = [];
  private readonly firmwareFiles: { name: string; data: Uint8Array }[] = [];
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
      this.fixed(PC_PORTS.rtc, this.rtc);
      const keyboard = this.add(new Ps2Keyboard(this.ctx));
      const mouse = this.add(new Ps2Mouse(this.ctx));
      this.i8042 = this.add(new I8042(this.ctx, { keyboard, mouse }));
      vm.pio.register(PC_PORTS.i8042Data.start, 1, this.i8042.dataPort, 'i8042');
      vm.pio.register(PC_PORTS.i8042Command.start, 1, this.i8042.commandPort, 'i8042');
      this.fixed(PC_PORTS.post, this.add(new PostPort(this.ctx)));
      this.fixed(PC_PORTS.port92, this.add(new Port92(this.ctx)));
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
      this.fixed(COM1_PORTS, this.com1);
      const debugSink = this.debugSink(config.debugConsole, 'debugcon');
      if (debugSink)
        this.fixed(
          DEBUG_CONSOLE_PORTS,
          this.add(new DebugConsole(this.ctx, { sink: debugSink, name: 'debugcon' })),
        );
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
      // Storage: the PIIX3 IDE function 00:01.1 is always there, as on QEMU's pc.
      this.ide = this.add(new PiixIde(this.ctx, { memory: vm.mem, decodeAtPowerOn: direct }));
      pci.attach(this.ide, PIIX_SLOT, 1);
      for (const r of this.ide.legacyPorts) vm.pio.register(r.base, r.length, r.handler, r.name);
      this.storage.push(this.ide);
      // The configured devices, each built by its descriptor (board/registry.ts).
      const board = this.board(images);
      for (const d of config.devices) descriptorOf(d.class)?.create(d, board);
      this.fdc = this.floppyController();
      // fw_cfg is there for a direct boot too (QEMU has it always): its
      // CPU count, RAM size and files serve test kernels and guest tools.
      this.fwCfg = this.add(buildPcFwCfg(this.parts()));
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** The Board the configured devices' descriptors build themselves on. */
  private board(images: ReadonlyMap<string, BlockImage>): Board {
    const vm = this.vm;
    return {
      ctx: this.ctx,
      mem: vm.mem,
      ide: this.ide,
      add: (d) => this.add(d),
      pio: (base, length, handler, name) => vm.pio.register(base, length, handler, name),
      mmio: (base, length, handler, name) => vm.mmio.register(base, length, handler, name),
      pci: (dev, slot) => this.attachPci(dev, slot),
      virtioPci: (dev, slot) => {
        this.ioEvents ??= new KvmIoEvents(vm);
        const transport = new VirtioPciTransport(dev, {
          ctx: this.ctx,
          mem: vm.mem,
          msi: kvmMsiSink(vm.native),
          ioEvents: this.ioEvents,
        });
        return this.attachPci(this.add(transport), slot);
      },
      image: (name) => images.get(name),
      charBackend: (sink) => this.charBackend(sink),
      debugSink: (out, name) => this.debugSink(out, name),
      bootPath: (device, path) => void this.bootPaths.set(device, path),
      firmwareFile: (name, data) => void this.firmwareFiles.push({ name, data }),
      readFile: (path, what) => readBootFile(path, what),
      requestStop: (code, reason) => vm.requestStop(code, reason),
      floppyDrive: (drive, d) => void (this.floppyDrives[drive] = d),
      storage: (d) => void this.storage.push(d),
    };
  }

  /** The i82078 floppy controller, when a floppy drive is configured (a PC has one for both drives). */
  private floppyController(): FloppyController | undefined {
    const drives = this.floppyDrives;
    if (!drives.length) return undefined;
    const fdc = this.add(
      new FloppyController(this.ctx, {
        dma: this.dma,
        drives: [drives[0] ?? {}, ...(drives[1] ? [drives[1]] : [])],
      }),
    );
    this.vm.pio.register(FDC_PORT_BASE, FDC_PORT_COUNT, fdc.ports, fdc.name);
    this.vm.pio.register(FDC_DIR_PORT, 1, fdc.dirPort, fdc.name);
    this.storage.push({ inFlight: () => fdc.inFlight(), drain: () => fdc.whenIdle() });
    return fdc;
  }

  /** Attaches a PCI device as function 0 of `slot`, or of the first free slot; returns the slot. */
  private attachPci(dev: PciDevice, slot: number | undefined): number {
    const at = slot ?? this.freePciSlot();
    this.pci.attach(dev, at, 0);
    return at;
  }

  private freePciSlot(): number {
    for (let slot = 2; slot < 32; slot++) if (!this.pci.device(slot, 0)) return slot;
    throw new BootError('no free PCI slot left on bus 0');
  }

  /** In ACPI S3 (suspended to RAM) or entering it. */
  suspendedToRam(): boolean {
    return this.sleep !== undefined;
  }

  /** Storage requests in flight now. */
  storageInFlight(): number {
    return this.storage.reduce((n, d) => n + d.inFlight(), 0);
  }

  /**
   * Waits until no storage request is in flight (the vCPUs are stopped or
   * paused); returns how many were in flight when it was called.
   */
  async drainStorage(): Promise<number> {
    const inFlight = this.storageInFlight();
    await Promise.all(this.storage.map((d) => d.drain()));
    return inFlight;
  }

  private add<T extends Device>(d: T): T {
    this.devices.push(d);
    return d;
  }

  /** Registers a device on its range of the fixed map (platform/pc-map.ts). */
  private fixed(r: PortRange, d: IoHandler & Device): void {
    this.vm.pio.register(r.start, portCount(r), d, d.name);
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

  /** Where a debug console's bytes go: stderr or a file (closed with the machine), or nowhere. */
  private debugSink(out: ResolvedDebugSink, name: string): ((d: Uint8Array) => void) | undefined {
    if (out.kind === 'none') return undefined;
    if (out.kind === 'stderr') return (d: Uint8Array) => void process.stderr.write(d);
    const backend = createCharBackend({ kind: 'file', path: out.path }, this.opts.log);
    // Host side only (the file is opened again on a restore): an empty state, so that it does not stop a snapshot.
    this.devices.push({
      name: `${name}-file`,
      close: () => backend.close(),
      saveState: () => ({ version: 1 }),
      loadState: () => undefined,
    });
    return (d: Uint8Array) => backend.write(d);
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

  /** Firmware boot: nothing to load (the vCPUs start at the reset vector); direct boot: the kernel. */
  load(): void {
    if (this.config.firmware.kind === 'direct') loadDirectKernel(this.parts());
  }

  private parts(): PcParts {
    return {
      config: this.config,
      vm: this.vm,
      layout: this.layout,
      e820: this.e820,
      pci: this.pci,
      ctx: this.ctx,
      log: this.opts.log,
      bootPaths: this.bootPaths,
      firmwareFiles: this.firmwareFiles,
    };
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
