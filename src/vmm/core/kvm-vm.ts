/**
 * A running KVM VM as the device model sees it: guest RAM (GuestMemory),
 * the port-I/O and MMIO buses, the in-kernel irqchip and PIT, vCPUs, and
 * the exit pump that hands each vCPU exit to the buses and answers it.
 *
 * The pump: native vCPU threads run KVM_RUN and post exits to mailboxes;
 * `pumpLoop` (on the JavaScript thread) takes them one at a time through
 * `NativeVm.pump`, which also answers the previous one, so one exit costs
 * one addon call. It yields to the event loop every few milliseconds of
 * continuous work, and the addon wakes it (uv_async) when an exit arrives
 * while JavaScript is idle. Native design notes: native/kvm_vm.cc.
 */
import {
  loadAddon,
  MAILBOX_WORDS,
  MailboxKind,
  type Addon,
  type NativeVcpu,
  type NativeVm,
  type VcpuStateKind,
} from '../kvm/addon.js';
import {
  checkStructSizes,
  encodeRegs,
  encodeSregs,
  initialFpu,
  parseSregs,
  type Regs,
  type Segment,
  type Sregs,
  zeroRegs,
} from '../kvm/structs.js';
import type { BootCpuState, SegmentDescriptor } from '../boot/pagetables.js';
import { applyCpuModel, cpuidForVcpu, decodeCpuid, encodeCpuid } from '../cpu/cpuid.js';
import { Bus, hex } from './bus.js';
import type { AccessSize, IrqSink } from './device.js';
import { RateLimitedLog } from './log.js';
import { GuestMemory } from './memory.js';
import { bytesAtRip, hexBytes, isResetState, snapshotCpu } from './cpu-state.js';
import { tryEmulate } from './emulation-fallback.js';
import {
  ExitCode,
  KVM_IDENTITY_MAP_ADDR,
  KVM_PIT_SPEAKER_DUMMY,
  KVM_TSS_ADDR,
  captureVcpuState,
  describeVcpu,
  type ExitStats,
  type HostMemoryBlock,
  type KvmVmOptions,
  type MapMemoryOptions,
  type VmStop,
} from './kvm-vm-defs.js';

export {
  ExitCode,
  KVM_IDENTITY_MAP_ADDR,
  KVM_TSS_ADDR,
  type ExitStats,
  type HostMemoryBlock,
  type KvmVmOptions,
  type MapMemoryOptions,
  type RamPlacement,
  type VmStop,
} from './kvm-vm-defs.js';

export class KvmVm implements IrqSink {
  readonly addon: Addon;
  readonly native: NativeVm;
  readonly vcpus: NativeVcpu[] = [];
  readonly mem = new GuestMemory();
  readonly pio: Bus;
  readonly mmio: Bus;
  readonly guestErrors: RateLimitedLog;
  readonly stats: ExitStats = { io: 0, mmio: 0, other: 0, wakeups: 0, byPort: new Map() };
  /** Count exits per port (bench/ only; costs a Map update per exit). */
  countPorts = false;

  private readonly runViews: DataView[] = [];
  private readonly runBytes: Uint8Array[] = [];
  private readonly mailbox: Int32Array;
  private readonly o: Record<string, number>;
  private readonly c: Record<string, number>;
  private readonly irqLevels = new Map<number, boolean>();
  /** Host memory of each `opts.ram` placement, in order. */
  readonly ramBlocks: HostMemoryBlock[] = [];
  /** The MSRs KVM saves and restores (KVM_GET_MSR_INDEX_LIST), for snapshots. */
  readonly msrIndices: Uint32Array;
  private readonly freeSlots: number[] = [];
  private nextSlot = 0;
  private readonlySupported: boolean | undefined;
  private readonly paused = new Set<number>();
  /** Each vCPU's state after creation, in the order resetCpus() sets it back. */
  private readonly powerOn: Array<Array<[VcpuStateKind, Buffer]>> = [];
  private pauseWaiters: (() => void)[] = [];
  private pauseDepth = 0;
  private stopInfo: VmStop | undefined;
  private stopWaiters: ((s: VmStop) => void)[] = [];
  private started = false;
  private closed = false;

  constructor(private readonly opts: KvmVmOptions) {
    this.addon = loadAddon();
    checkStructSizes(this.addon.structSizes);
    this.o = this.addon.runOffsets;
    this.c = this.addon.constants;
    this.guestErrors = new RateLimitedLog(opts.log);
    this.pio = new Bus('pio', this.guestErrors);
    this.mmio = new Bus('mmio', this.guestErrors);
    const kvm = new this.addon.Kvm(process.env.MVISOR_KVM_DEVICE ?? '/dev/kvm');
    this.native = new this.addon.Vm(kvm, opts.cpus);
    this.msrIndices = kvm.msrIndexList();
    this.native.setTssAddr(KVM_TSS_ADDR);
    this.native.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
    this.native.createIrqchip();
    this.native.createPit2(KVM_PIT_SPEAKER_DUMMY);
    this.mailbox = new Int32Array(this.native.mailboxBuffer());
    this.native.setSpin(opts.vcpuSpinNs ?? 200_000, opts.jsSpinNs ?? 50_000);

    // Guest RAM: one anonymous mapping per placement, one memory slot each
    // unless the machine maps it piecewise. ArrayBuffer views are capped at
    // 1 GiB each (V8 limits), so a region is exposed to GuestMemory as
    // consecutive 1 GiB views.
    for (const r of opts.ram) {
      const block = this.allocHostMemory(r.size);
      this.ramBlocks.push(block);
      if (r.mapped ?? true) this.mapMemory(r.gpa, r.size, block, 0);
      const chunk = 1 << 30;
      for (let off = 0; off < r.size; off += chunk) {
        const len = Math.min(chunk, r.size - off);
        this.mem.addRegion(r.gpa + off, this.hostBytes(block, off, len));
      }
    }

    const supported = decodeCpuid(kvm.supportedCpuid());
    const model = applyCpuModel(supported, opts.cpu, (name) =>
      opts.log.warn(`CPU feature ${name}: this host's KVM cannot provide it; left out`),
    );
    for (let i = 0; i < opts.cpus; i++) {
      const v = new this.addon.Vcpu(this.native, i);
      v.setCpuid(encodeCpuid(cpuidForVcpu(model, i)));
      v.setState('fpu', initialFpu());
      // MTRRs: default type write-back, enabled (Linux otherwise maps RAM uncached).
      v.setMsrs(new Uint32Array([0x2ff]), new BigUint64Array([0x806n]));
      const ab = v.runArea();
      this.runViews.push(new DataView(ab));
      this.runBytes.push(new Uint8Array(ab));
      this.vcpus.push(v);
      this.powerOn.push(captureVcpuState(v));
    }
  }

  /**
   * Puts every vCPU back into its power-on state (what KVM gave it at
   * creation, plus the VMM's FPU and MTRR defaults): the BSP at the reset
   * vector, the APs waiting for INIT/SIPI. Only while paused.
   */
  resetCpus(): void {
    this.vcpus.forEach((v, i) => {
      for (const [kind, state] of this.powerOn[i]!) v.setState(kind, state);
    });
  }

  /**
   * Starts vCPU `i` in real mode at a physical address (CS = vector >> 4,
   * IP = vector & 0xF), as firmware does to run an ACPI waking vector. After
   * resetCpus(), while paused.
   */
  setRealModeEntry(i: number, vector: number): void {
    const s = this.getSregs(i);
    const selector = (vector >>> 4) & 0xffff;
    s.cs = { ...s.cs, selector, base: BigInt(selector << 4) };
    this.setSregs(i, s);
    const r = zeroRegs();
    r.rip = BigInt(vector & 0xf);
    r.rflags = 2n;
    this.setRegs(i, r);
  }

  // ---- memory slots ----

  /** Allocates zeroed host memory (page-aligned size) for RAM or a ROM image. */
  allocHostMemory(size: number): HostMemoryBlock {
    return { id: this.native.allocRam(size), size };
  }

  /** Guest RAM as views of at most 1 GiB each, block after block (what a snapshot stores). */
  ramViews(): Uint8Array[] {
    const chunk = 1 << 30;
    return this.ramBlocks.flatMap((b) => {
      const out: Uint8Array[] = [];
      for (let off = 0; off < b.size; off += chunk)
        out.push(this.hostBytes(b, off, Math.min(chunk, b.size - off)));
      return out;
    });
  }

  /** A view of [offset, offset+length) of a block (at most 1 GiB); aliases the memory. */
  hostBytes(block: HostMemoryBlock, offset: number, length: number): Uint8Array {
    return new Uint8Array(this.native.ramView(block.id, offset, length));
  }

  /**
   * Maps [offset, offset+size) of `block` at guest-physical `gpa` (page
   * aligned) and returns the slot; `unmapMemory(slot)` removes it. When
   * KVM cannot make a slot read-only (no KVM_CAP_READONLY_MEM), the slot is
   * mapped writable and a warning says so.
   */
  mapMemory(
    gpa: number,
    size: number,
    block: HostMemoryBlock,
    offset: number,
    o: MapMemoryOptions = {},
  ): number {
    const slot = this.freeSlots.pop() ?? this.nextSlot++;
    let flags = 0;
    if (o.readonly) {
      this.readonlySupported ??= this.native.checkExtension(this.c.KVM_CAP_READONLY_MEM!) > 0;
      if (this.readonlySupported) flags |= this.c.KVM_MEM_READONLY!;
      else
        this.guestErrors.warn(
          'readonly-mem',
          () => 'KVM has no read-only memory slots: ROM is mapped writable',
        );
    }
    try {
      this.native.setMemoryRegion(slot, flags, gpa, size, block.id, offset);
    } catch (e) {
      this.freeSlots.push(slot);
      throw e;
    }
    return slot;
  }

  unmapMemory(slot: number): void {
    this.native.setMemoryRegion(slot, 0, 0, 0, 0, 0);
    this.freeSlots.push(slot);
  }

  // ---- IrqSink ----
  setIrq(gsi: number, level: boolean): void {
    if (this.irqLevels.get(gsi) === level) return;
    this.irqLevels.set(gsi, level);
    this.native.irqLine(gsi, level ? 1 : 0);
  }

  getSregs(i: number): Sregs {
    return parseSregs(this.vcpus[i]!.getState('sregs'));
  }
  setSregs(i: number, s: Sregs): void {
    this.vcpus[i]!.setState('sregs', encodeSregs(s));
  }
  setRegs(i: number, r: Regs): void {
    this.vcpus[i]!.setState('regs', encodeRegs(r));
  }

  /**
   * Puts vCPU `i` into a boot CPU state (control registers, flat segments,
   * GDT/IDT from src/vmm/boot/pagetables.ts) with the given registers.
   */
  setBootState(i: number, boot: BootCpuState, regs: Regs): void {
    const seg = (d: SegmentDescriptor): Segment => ({ ...d, base: BigInt(d.base), limit: d.limit >>> 0 });
    const s = this.getSregs(i);
    s.cs = seg(boot.cs);
    s.ds = s.es = s.fs = s.gs = s.ss = seg(boot.ds);
    s.tr = seg(boot.tss);
    s.gdt = { base: BigInt(boot.gdt.base), limit: boot.gdt.limit };
    s.idt = { base: BigInt(boot.idt.base), limit: boot.idt.limit };
    s.cr0 = BigInt(boot.cr0);
    s.cr3 = BigInt(boot.cr3);
    s.cr4 = BigInt(boot.cr4);
    s.efer = BigInt(boot.efer);
    this.setSregs(i, s);
    this.setRegs(i, regs);
  }

  /** Starts every vCPU thread; resolves when the VM stops. */
  run(): Promise<VmStop> {
    if (this.started) throw new Error('VM already started');
    this.started = true;
    this.native.setWakeHandler(() => {
      this.stats.wakeups++;
      this.pumpLoop();
    });
    for (let i = 0; i < this.vcpus.length; i++) this.native.startVcpu(i);
    setImmediate(this.pumpLoop);
    return new Promise((resolve) => {
      if (this.stopInfo) resolve(this.stopInfo);
      else this.stopWaiters.push(resolve);
    });
  }

  /** Ends the VM (idempotent): stops vCPU threads, settles run(). */
  stop(code: number, reason: string): void {
    if (this.stopInfo) return;
    this.stopInfo = { code, reason };
    this.native.stop();
    const pw = this.pauseWaiters;
    this.pauseWaiters = [];
    for (const f of pw) f();
    const w = this.stopWaiters;
    this.stopWaiters = [];
    for (const f of w) f(this.stopInfo);
  }

  get stopped(): VmStop | undefined {
    return this.stopInfo;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.stopInfo) this.stop(ExitCode.Ok, 'closed');
    this.native.close();
  }

  /**
   * Parks every vCPU outside KVM_RUN (for snapshots and state reads).
   * Pauses nest: the VM runs again when every pause() has had its resume().
   */
  pause(): Promise<void> {
    if (this.stopInfo) return Promise.resolve();
    this.pauseDepth++;
    for (let i = 0; i < this.vcpus.length; i++) if (!this.paused.has(i)) this.native.kick(i, true);
    return new Promise((resolve) => {
      if (this.paused.size === this.vcpus.length) resolve();
      else this.pauseWaiters.push(resolve);
    });
  }

  resume(): void {
    if (this.pauseDepth === 0) return;
    if (--this.pauseDepth > 0) return;
    for (const i of this.paused) {
      this.native.kick(i, false);
      this.native.complete(i);
    }
    this.paused.clear();
  }

  /** One line per vCPU: RIP, mode, MP state (for SIGUSR2 and error reports). */
  async describeVcpus(): Promise<string[]> {
    await this.pause();
    try {
      return this.vcpus.map((v, i) => describeVcpu(v, i));
    } finally {
      this.resume();
    }
  }

  private readonly pumpLoop = (): void => {
    if (this.stopInfo) return;
    const deadline = performance.now() + 4;
    let done = -1;
    for (let n = 1; ; n++) {
      const idx = this.native.pump(done);
      done = -1;
      if (idx < 0) return;
      try {
        if (this.handleMailbox(idx)) done = idx;
      } catch (e) {
        // A bug in a device model must not leave the vCPU unanswered or kill
        // the process without closing devices: stop the VM with an error.
        this.fatal(idx, ExitCode.VmmError, `internal error handling an exit: ${(e as Error).stack ?? e}`);
        return;
      }
      if (this.stopInfo) return;
      if ((n & 15) === 0 && performance.now() > deadline) {
        if (done >= 0) this.native.complete(done);
        setImmediate(this.pumpLoop);
        return;
      }
    }
  };

  /** Handles vCPU idx's posted event; returns true to let it run again. */
  private handleMailbox(idx: number): boolean {
    const kind = this.mailbox[idx * MAILBOX_WORDS + 1];
    if (kind === MailboxKind.KvmExit) return this.handleExit(idx);
    if (kind === MailboxKind.Paused || kind === MailboxKind.Parked) {
      this.paused.add(idx);
      if (this.paused.size === this.vcpus.length) {
        const w = this.pauseWaiters;
        this.pauseWaiters = [];
        for (const f of w) f();
      }
      return false;
    }
    if (kind === MailboxKind.RunError) {
      const err = this.mailbox[idx * MAILBOX_WORDS + 2]!;
      this.fatal(idx, ExitCode.VmmError, `KVM_RUN failed: errno ${err}`);
      return false;
    }
    return false;
  }

  private handleExit(idx: number): boolean {
    const dv = this.runViews[idx]!;
    const o = this.o;
    const reason = dv.getUint32(o.exit_reason!, true);
    const c = this.c;
    if (reason === c.KVM_EXIT_IO) {
      this.stats.io++;
      const out = dv.getUint8(o.io_direction!) === c.KVM_EXIT_IO_OUT;
      const size = dv.getUint8(o.io_size!) as AccessSize;
      const port = dv.getUint16(o.io_port!, true);
      const count = dv.getUint32(o.io_count!, true);
      let at = dv.getUint32(o.io_data_offset!, true);
      if (this.countPorts) this.stats.byPort.set(port, (this.stats.byPort.get(port) ?? 0) + count);
      for (let i = 0; i < count; i++, at += size) {
        if (out) {
          const v =
            size === 1 ? dv.getUint8(at) : size === 2 ? dv.getUint16(at, true) : dv.getUint32(at, true);
          this.pio.write(port, size, v);
        } else {
          const v = this.pio.read(port, size);
          if (size === 1) dv.setUint8(at, v & 0xff);
          else if (size === 2) dv.setUint16(at, v & 0xffff, true);
          else dv.setUint32(at, v >>> 0, true);
        }
      }
      return true;
    }
    if (reason === c.KVM_EXIT_MMIO) {
      this.stats.mmio++;
      const addr = Number(dv.getBigUint64(o.mmio_phys_addr!, true));
      const len = dv.getUint32(o.mmio_len!, true);
      const write = dv.getUint8(o.mmio_is_write!) !== 0;
      const d = o.mmio_data!;
      if (len === 8) {
        if (write) {
          this.mmio.write(addr, 4, dv.getUint32(d, true));
          this.mmio.write(addr + 4, 4, dv.getUint32(d + 4, true));
        } else {
          dv.setUint32(d, this.mmio.read(addr, 4) >>> 0, true);
          dv.setUint32(d + 4, this.mmio.read(addr + 4, 4) >>> 0, true);
        }
      } else if (len === 1 || len === 2 || len === 4) {
        if (write) {
          const v = len === 1 ? dv.getUint8(d) : len === 2 ? dv.getUint16(d, true) : dv.getUint32(d, true);
          this.mmio.write(addr, len, v);
        } else {
          const v = this.mmio.read(addr, len);
          if (len === 1) dv.setUint8(d, v & 0xff);
          else if (len === 2) dv.setUint16(d, v & 0xffff, true);
          else dv.setUint32(d, v >>> 0, true);
        }
      } else {
        this.guestErrors.warn('mmio-len', () => `MMIO access of ${len} bytes at ${hex(addr)} ignored`);
      }
      return true;
    }
    this.stats.other++;
    return this.handleRareExit(idx, reason);
  }

  private handleRareExit(idx: number, reason: number): boolean {
    const dv = this.runViews[idx]!;
    const o = this.o;
    const c = this.c;
    switch (reason) {
      case c.KVM_EXIT_SHUTDOWN:
        this.fatal(idx, ExitCode.GuestCrashed, 'guest triple fault (KVM_EXIT_SHUTDOWN)', { shutdown: true });
        return false;
      case c.KVM_EXIT_SYSTEM_EVENT: {
        const type = dv.getUint32(o.system_event_type!, true);
        if (type === c.KVM_SYSTEM_EVENT_SHUTDOWN) this.requestStop(ExitCode.Ok, 'guest powered off');
        else if (type === c.KVM_SYSTEM_EVENT_RESET) this.onGuestReset('KVM system event reset');
        else this.fatal(idx, ExitCode.GuestCrashed, `guest system event ${type} (crash)`);
        return false;
      }
      case c.KVM_EXIT_INTERNAL_ERROR:
        return this.internalError(idx);
      case c.KVM_EXIT_FAIL_ENTRY: {
        const why = dv.getBigUint64(o.fail_entry_reason!, true);
        this.fatal(idx, ExitCode.GuestCrashed, `KVM entry failed, hardware reason ${hex(why)}`);
        return false;
      }
      case c.KVM_EXIT_HLT:
        // Only without an in-kernel irqchip; a halted CPU with nothing to wake it.
        this.fatal(idx, ExitCode.GuestCrashed, 'guest halted with no interrupt controller to wake it');
        return false;
      case c.KVM_EXIT_INTR:
        return true;
      default:
        this.fatal(idx, ExitCode.GuestCrashed, `unexpected KVM exit reason ${reason}`);
        return false;
    }
  }

  private internalError(idx: number): boolean {
    const dv = this.runViews[idx]!;
    const o = this.o;
    const c = this.c;
    const sub = dv.getUint32(o.internal_suberror!, true);
    const vcpu = this.vcpus[idx]!;
    const snap = snapshotCpu(vcpu);
    let insn: Uint8Array | undefined;
    if (sub === c.KVM_INTERNAL_ERROR_EMULATION) {
      const flags = dv.getBigUint64(o.emulation_flags!, true);
      if (flags & BigInt(c.KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES!)) {
        const n = Math.min(15, dv.getUint8(o.emulation_insn_size!));
        insn = this.runBytes[idx]!.slice(o.emulation_insn_bytes!, o.emulation_insn_bytes! + n);
      }
    }
    if (!insn && snap) insn = bytesAtRip(vcpu, this.mem, snap);
    if (sub === c.KVM_INTERNAL_ERROR_EMULATION && snap && insn) {
      const did = tryEmulate(vcpu, snap, insn);
      if (did) {
        this.guestErrors.warn(
          `emulated-${did}`,
          () =>
            `vcpu${idx}: KVM could not emulate '${did}' at RIP ${hex(snap.regs.rip)}; completed it in the VMM`,
        );
        return true;
      }
    }
    const names: Record<number, string> = {
      [c.KVM_INTERNAL_ERROR_EMULATION!]: 'emulation failure',
      [c.KVM_INTERNAL_ERROR_SIMUL_EX!]: 'exception while delivering an exception',
      [c.KVM_INTERNAL_ERROR_DELIVERY_EV!]: 'event delivery failure',
      [c.KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON!]: 'unexpected exit reason',
    };
    const what = `KVM internal error, suberror ${sub} (${names[sub] ?? 'unknown'})`;
    const bytes = insn && insn.length ? `, instruction bytes ${hexBytes(insn)}` : '';
    this.fatal(idx, ExitCode.GuestCrashed, `${what}${bytes}`);
    return false;
  }

  /** Set by the machine: what a guest reset does. Default: stop with 0. */
  onGuestReset: (reason: string) => void = (reason) =>
    this.requestStop(ExitCode.Ok, `guest reset (${reason})`);

  /** Stops the VM after the current exit is handled. */
  requestStop(code: number, reason: string): void {
    this.stop(code, reason);
  }

  /** Stops the VM with a one-line error naming the vCPU, RIP and mode. */
  fatal(idx: number, code: number, what: string, opts: { shutdown?: boolean } = {}): void {
    const snap = snapshotCpu(this.vcpus[idx]!);
    // AMD SVM reinitialises the vCPU on a shutdown intercept (KVM's
    // shutdown_interception), so what reads back is the reset state, not
    // where the guest faulted: say so rather than print RIP 0xfff0.
    const where = !snap
      ? ''
      : opts.shutdown && isResetState(snap)
        ? '; its registers at the fault are lost (on AMD SVM, KVM resets the vCPU at a shutdown)'
        : ` at RIP ${hex(snap.regs.rip)} (${snap.mode}, CPL ${snap.cpl}, CS base ${hex(snap.sregs.cs.base)})`;
    const reason = `vcpu${idx}: ${what}${where}`;
    this.opts.log.error(reason);
    this.stop(code, reason);
  }
}
