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
import { ResetControl, RESET_CONTROL_PORT } from './chipset/reset-control.js';
import { Piix4Pm } from './chipset/piix4-pm.js';

/** I/O base of the ACPI PM registers (what the FADT will name). */
export const PM_IO_BASE = 0x600;
import { I8042 } from './input/i8042.js';
import { Ps2Keyboard } from './input/ps2-keyboard.js';
import { Ps2Mouse } from './input/ps2-mouse.js';
import { Uart16550a } from './serial/uart-16550a.js';
import { DebugConsole } from './firmware/debug-console.js';
import { createCharBackend, type CharBackend } from './chardev/backend.js';

export interface MachineOptions {
  log: Logger;
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
  private readonly ctx: DeviceContext;

  constructor(
    readonly config: ResolvedVmmConfig,
    private readonly opts: MachineOptions,
  ) {
    const log = opts.log;
    this.layout = pcMemoryLayout(config.memory);
    this.e820 = buildE820(this.layout);
    const ram = [this.layout.lowRam, ...(this.layout.highRam ? [this.layout.highRam] : [])];
    this.vm = new KvmVm({
      cpus: config.vcpus,
      cpu: config.cpu,
      ram: ram.map((r) => ({ gpa: r.gpa, size: r.size })),
      log,
    });
    // A failure half-way (a bus overlap, a socket that cannot listen) must
    // not leave files, sockets or the VM behind.
    try {
      this.vm.native.setGsiRouting(pcGsiRoutes(this.vm.addon.constants));
      const vm = this.vm;
      this.ctx = {
        irq: vm,
        log,
        guestErrors: vm.guestErrors,
        requestReset: (reason) => vm.onGuestReset(reason),
        requestPowerOff: (reason) => vm.requestStop(ExitCode.Ok, `guest powered off (${reason})`),
      };

      const below = this.layout.lowRam.size;
      const above = this.layout.highRam?.size ?? 0;
      this.rtc = this.add(
        new CmosRtc(this.ctx, {
          memoryBytes: config.memory,
          belowFourGiB: below,
          aboveFourGiB: above,
          cpus: config.vcpus,
        }),
      );
      this.pio(0x70, 2, this.rtc);
      const keyboard = this.add(new Ps2Keyboard(this.ctx));
      const mouse = this.add(new Ps2Mouse(this.ctx));
      this.i8042 = this.add(new I8042(this.ctx, { keyboard, mouse }));
      vm.pio.register(0x60, 1, this.i8042.dataPort, 'i8042');
      vm.pio.register(0x64, 1, this.i8042.commandPort, 'i8042');
      this.pio(0x80, 1, this.add(new PostPort(this.ctx)));
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
      this.pio(RESET_CONTROL_PORT, 1, this.add(new ResetControl(this.ctx)));
      this.pm = this.add(new Piix4Pm(this.ctx));
      this.pio(PM_IO_BASE, 16, this.pm);
    } catch (e) {
      this.close();
      throw e;
    }
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

  /** Loads the kernel (PVH ELF vmlinux or bzImage), initrd, MP table; sets up vCPU 0. */
  loadKernel(): void {
    const c = this.config;
    let image: Uint8Array;
    try {
      image = readFileSync(c.kernel);
    } catch (e) {
      throw new BootError(`${c.kernel}: cannot read kernel: ${(e as Error).message}`);
    }
    let initrd: InitrdImage | undefined;
    if (c.initrd) {
      try {
        initrd = { data: readFileSync(c.initrd), path: c.initrd };
      } catch (e) {
        throw new BootError(`${c.initrd}: cannot read initrd: ${(e as Error).message}`);
      }
    }
    const mem = this.vm.mem;
    const lowRamEnd = Math.min(this.layout.lowRam.gpa + this.layout.lowRam.size, FOUR_GIB);
    writeMpTable(mem, c.vcpus);
    const regs = zeroRegs();
    let boot: BootCpuState;
    if (isElf(image)) {
      const k = loadPvhKernel(mem, image, c.kernel, {
        cmdline: c.cmdline,
        initrd,
        e820: this.e820,
        lowRamEnd,
      });
      boot = setupProtectedModeBoot(mem);
      regs.rip = BigInt(k.entry32);
      regs.rbx = BigInt(k.startInfo);
    } else if (isBzImage(image)) {
      const k = loadBzImage(mem, image, c.kernel, { cmdline: c.cmdline, initrd, e820: this.e820, lowRamEnd });
      boot = setupLongModeBoot(mem);
      regs.rip = BigInt(k.entry64);
      regs.rsi = BigInt(k.bootParams);
    } else {
      throw new BootError(
        `${c.kernel}: not a kernel mvisor can boot (neither an ELF vmlinux with a PVH note nor a bzImage, ${image.length} bytes)`,
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
    this.vm.close();
  }
}
