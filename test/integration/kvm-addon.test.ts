/**
 * The native KVM addon under real KVM, in-process: guest RAM aliasing,
 * ioeventfd (a guest write that never reaches user space), dirty page
 * logging, complete vCPU state get/set, pause/resume, and errors that name
 * the ioctl.
 */
import { describe, expect, it } from 'vitest';
import { KvmVm } from '../../src/vmm/core/kvm-vm.js';
import { MemoryLogger } from '../../src/vmm/core/log.js';
import { loadAddon } from '../../src/vmm/kvm/addon.js';
import { parseRegs, zeroRegs } from '../../src/vmm/kvm/structs.js';
import { setupLongModeBoot } from '../../src/vmm/boot/pagetables.js';

/** A 64-bit CPL0 VM (the bzImage boot CPU state) running `code` at 1 MiB. */
function longModeVm(code: number[], cpus = 1): KvmVm {
  const vm = new KvmVm({
    cpus,
    cpu: { model: 'host', features: {} },
    ram: [{ gpa: 0, size: 4 << 20 }],
    log: new MemoryLogger(),
  });
  vm.mem.write(0x100000, Uint8Array.from(code));
  const r = zeroRegs();
  r.rip = 0x100000n;
  r.rsp = 0x1ff000n;
  vm.setBootState(0, setupLongModeBoot(vm.mem), r);
  return vm;
}

const done = [0xe6, 0x11]; // out 0x11, al
const hang = [0xeb, 0xfe];
function stopOn0x11(vm: KvmVm): void {
  vm.pio.register(0x11, 1, { read: () => 0, write: () => vm.requestStop(0, 'done') }, 'done');
}

describe('KVM addon', () => {
  it('guest RAM is shared with TypeScript without copies', async () => {
    // mov dword [0x300000], 0x5a5a1234 ; out 0x11
    const vm = longModeVm([
      0xc7,
      0x04,
      0x25,
      0x00,
      0x00,
      0x30,
      0x00,
      0x34,
      0x12,
      0x5a,
      0x5a,
      ...done,
      ...hang,
    ]);
    stopOn0x11(vm);
    const view = vm.mem.view(0x300000, 4);
    await vm.run();
    expect(Array.from(view)).toEqual([0x34, 0x12, 0x5a, 0x5a]);
    vm.close();
  });

  it('an ioeventfd catches guest writes in the kernel: no exit reaches user space', async () => {
    // mov ecx, 10; loop: out 0x500, al (via dx); dec ecx; jnz loop; out 0x11
    const code = [0xb9, 10, 0, 0, 0, 0x66, 0xba, 0x00, 0x05, 0xee, 0xff, 0xc9, 0x75, 0xfb, ...done, ...hang];
    const vm = longModeVm(code);
    stopOn0x11(vm);
    let seen = 0;
    vm.pio.register(0x500, 1, { read: () => 0, write: () => void seen++ }, 'should-not-see');
    const a = loadAddon();
    const fd = a.eventfdCreate(0, true);
    vm.native.ioeventfd(fd, 0x500, 1, a.constants.KVM_IOEVENTFD_FLAG_PIO!);
    await vm.run();
    expect(seen).toBe(0);
    expect(a.eventfdRead(fd)).toBe(10);
    expect(vm.stats.io).toBe(1); // only the final out 0x11
    vm.close();
    a.closeFd(fd);
  });

  it('dirty page logging reports the pages the guest wrote', async () => {
    // mov byte [0x201000], 1; mov byte [0x305000], 1; out 0x11
    const vm = longModeVm([
      0xc6,
      0x04,
      0x25,
      0x00,
      0x10,
      0x20,
      0x00,
      0x01,
      0xc6,
      0x04,
      0x25,
      0x00,
      0x50,
      0x30,
      0x00,
      0x01,
      ...done,
      ...hang,
    ]);
    stopOn0x11(vm);
    const c = vm.addon.constants;
    // Re-register slot 0 with dirty logging on (ramId 0 backs it).
    vm.native.setMemoryRegion(0, c.KVM_MEM_LOG_DIRTY_PAGES!, 0, 4 << 20, 0, 0);
    const bitmap = new Uint8Array(((4 << 20) >> 12) / 8);
    vm.native.getDirtyLog(0, bitmap); // clear what set-up wrote
    await vm.run();
    vm.native.getDirtyLog(0, bitmap);
    const dirty: number[] = [];
    bitmap.forEach((b, i) => {
      for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) dirty.push(i * 8 + bit);
    });
    expect(dirty).toContain(0x201);
    expect(dirty).toContain(0x305);
    vm.close();
  });

  it('every piece of vCPU and VM state can be read and set back', async () => {
    const vm = longModeVm([...hang]);
    const v = vm.vcpus[0]!;
    for (const kind of [
      'regs',
      'sregs',
      'fpu',
      'lapic',
      'xsave',
      'xcrs',
      'events',
      'mpstate',
      'debugregs',
    ] as const) {
      const b = v.getState(kind);
      expect(b.length).toBeGreaterThan(0);
      v.setState(kind, b);
      expect(Buffer.compare(v.getState(kind), b)).toBe(0);
    }
    for (const kind of ['pit2', 'clock'] as const) vm.native.setState(kind, vm.native.getState(kind));
    for (const chip of [0, 1, 2]) vm.native.setState('irqchip', vm.native.getState('irqchip', chip));
    const r = parseRegs(v.getState('regs'));
    expect(r.rip).toBe(0x100000n);
    const tsc = v.getMsrs(new Uint32Array([0x10]));
    expect(tsc.length).toBe(1);
    expect(v.setMsrs(new Uint32Array([0x2ff]), new BigUint64Array([0x806n]))).toBe(1);
    expect(vm.addon.Kvm.prototype).toBeDefined();
    vm.close();
  });

  it('IRQ lines and irqfds raise interrupt requests in the in-kernel PIC; MSIs can be signalled', async () => {
    const vm = longModeVm([...hang]);
    const a = vm.addon;
    // kvm_irqchip: chip_id, pad, then struct kvm_pic_state { last_irr, irr, imr, ... }
    const picIrr = () => vm.native.getState('irqchip', a.constants.KVM_IRQCHIP_PIC_MASTER!)[9]!;
    expect(picIrr() & (1 << 5)).toBe(0);
    vm.setIrq(5, true);
    vm.setIrq(5, false);
    expect(picIrr() & (1 << 5)).toBe(1 << 5);
    const fd = a.eventfdCreate(0, true);
    vm.native.irqfd(fd, 6);
    a.eventfdWrite(fd, 1);
    await new Promise((r) => setTimeout(r, 50)); // irqfd injection runs on a kernel worker
    expect(picIrr() & (1 << 6)).toBe(1 << 6);
    vm.native.irqfd(fd, 6, a.constants.KVM_IRQFD_FLAG_DEASSIGN!);
    a.closeFd(fd);
    expect(typeof vm.native.signalMsi(0xfee00000, 0, 0x30)).toBe('number');
    vm.close();
  });

  it('pauses a computing guest and resumes it', async () => {
    const vm = longModeVm([...hang], 2);
    const run = vm.run();
    await vm.pause();
    const lines = await vm.describeVcpus();
    expect(lines[0]).toMatch(/vcpu0: RIP 0x100000 64-bit long mode CPL 0/);
    expect(lines[1]).toMatch(/mp-state uninitialized/);
    vm.resume();
    vm.stop(0, 'test');
    expect((await run).reason).toBe('test');
    vm.close();
  });

  it('failed ioctls throw errors that name the ioctl and errno; bad arguments are TypeErrors', () => {
    const vm = longModeVm([...hang]);
    const a = vm.addon;
    let err: (Error & { syscall?: string; code?: string }) | undefined;
    try {
      // slot 1 overlapping slot 0
      vm.native.setMemoryRegion(1, 0, 0x1000, 0x1000, 0, 0);
    } catch (e) {
      err = e as Error & { syscall?: string; code?: string };
    }
    expect(err?.message).toMatch(/^KVM_SET_USER_MEMORY_REGION: .* \(errno \d+\)$/);
    expect(err?.syscall).toBe('KVM_SET_USER_MEMORY_REGION');
    expect(err?.code).toBe('EEXIST');
    expect(() => vm.vcpus[0]!.setState('regs', new Uint8Array(3))).toThrow(RangeError);
    expect(() => vm.native.irqLine(-1 as number, 1)).toThrow(RangeError);
    expect(() => (vm.native.setGsiRouting as (x: unknown) => void)('nope')).toThrow(TypeError);
    expect(() => new a.Kvm('/nonexistent/kvm')).toThrow(
      /open \/nonexistent\/kvm \(KVM is not available.*ENOENT|No such file/,
    );
    vm.close();
  });
});
