/**
 * The addon's FdWatcher: an eventfd written from JavaScript, or hit by a
 * guest through an ioeventfd (no vCPU exit), reaches the callback on the
 * event loop; many writes before the loop runs are one call; remove and
 * close stop it at once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { KvmVm } from '../../src/vmm/core/kvm-vm.js';
import { MemoryLogger } from '../../src/vmm/core/log.js';
import { loadAddon, type NativeFdWatcher } from '../../src/vmm/kvm/addon.js';
import { zeroRegs } from '../../src/vmm/kvm/structs.js';
import { setupLongModeBoot } from '../../src/vmm/boot/pagetables.js';
import { KvmIoEvents } from '../../src/vmm/virtio/ioevent.js';

const addon = loadAddon();
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanups.splice(0).reverse()) f();
});

function watcher(onFire: (fd: number) => void): NativeFdWatcher {
  const w = new addon.FdWatcher(onFire);
  cleanups.push(() => w.close());
  return w;
}

function eventfd(nonblock = true): number {
  const fd = addon.eventfdCreate(0, nonblock);
  cleanups.push(() => addon.closeFd(fd));
  return fd;
}

/** Resolves with the fds fired once `n` calls arrived (or after `ms`). */
function collect(
  n: number,
  ms = 2000,
): { fired: number[]; done: Promise<number[]>; on: (fd: number) => void } {
  const fired: number[] = [];
  let resolve!: (v: number[]) => void;
  const done = new Promise<number[]>((r) => (resolve = r));
  const timer = setTimeout(() => resolve(fired), ms);
  return {
    fired,
    done,
    on: (fd) => {
      fired.push(fd);
      if (fired.length >= n) {
        clearTimeout(timer);
        resolve(fired);
      }
    },
  };
}

describe('FdWatcher', () => {
  it('an eventfd written from JavaScript reaches the callback, coalesced, and is drained', async () => {
    const c = collect(1);
    const w = watcher(c.on);
    const a = eventfd();
    const b = eventfd();
    w.add(a);
    w.add(b);
    // Three writes before the event loop runs: one call.
    addon.eventfdWrite(a);
    addon.eventfdWrite(a);
    addon.eventfdWrite(a, 5);
    expect(await c.done).toEqual([a]);
    await sleep(50);
    expect(c.fired).toEqual([a]);
    expect(addon.eventfdRead(a)).toBe(0); // the watcher read the counter
    // Each later write fires again (the registration is re-armed).
    const d = collect(2);
    const w2 = watcher(d.on);
    w.close();
    const e = eventfd();
    w2.add(e);
    addon.eventfdWrite(e);
    await sleep(50);
    addon.eventfdWrite(e);
    expect(await d.done).toEqual([e, e]);
  });

  it('remove and close stop callbacks at once, even for writes already seen by the thread', async () => {
    const fired: number[] = [];
    const w = watcher((fd) => fired.push(fd));
    const a = eventfd();
    w.add(a);
    addon.eventfdWrite(a);
    // Give the thread time to read it and queue the call, then remove
    // before the event loop delivers it.
    const until = Date.now() + 30;
    while (Date.now() < until);
    expect(w.remove(a)).toBe(true);
    expect(w.remove(a)).toBe(false);
    await sleep(50);
    expect(fired).toEqual([]);

    w.add(a);
    addon.eventfdWrite(a);
    const until2 = Date.now() + 30;
    while (Date.now() < until2);
    w.close();
    await sleep(50);
    expect(fired).toEqual([]);
    expect(() => w.add(a)).toThrow(/closed/);
    w.close(); // idempotent
  });

  it('refuses a blocking fd, a bad fd and a second add', () => {
    const w = watcher(() => {});
    expect(() => w.add(eventfd(false))).toThrow(/non-blocking/);
    expect(() => w.add(-1)).toThrow(/EBADF|fcntl/);
    const a = eventfd();
    w.add(a);
    expect(() => w.add(a)).toThrow(/already watched/);
    expect(() => new (addon.FdWatcher as unknown as new () => unknown)()).toThrow(/callback/);
  });

  it('an fd closed without remove fires at most once and never spins', async () => {
    const fired: number[] = [];
    const w = watcher((fd) => fired.push(fd));
    const a = addon.eventfdCreate(0, true);
    w.add(a);
    addon.closeFd(a);
    await sleep(50);
    expect(fired).toEqual([]);
    expect(w.remove(a)).toBe(true);
  });

  it('a guest MMIO write caught by an ioeventfd reaches the callback without an exit', async () => {
    const vm = notifyingGuest();
    const notify = 0xd000_0000;
    let exits = 0;
    vm.mmio.register(notify, 0x1000, { read: () => 0, write: () => void exits++ }, 'notify');
    const fd = eventfd();
    vm.native.ioeventfd(fd, notify, 2, 0);
    const c = collect(1, scaled(10_000));
    const w = watcher(c.on);
    w.add(fd);
    await vm.run();
    // Ten writes: one call, or a few when the event loop ran in between.
    const fired = await c.done;
    expect(fired.length).toBeGreaterThanOrEqual(1);
    expect(fired.length).toBeLessThanOrEqual(10);
    expect(new Set(fired)).toEqual(new Set([fd]));
    expect(exits).toBe(0);
    w.remove(fd);
    vm.native.ioeventfd(fd, notify, 2, addon.constants.KVM_IOEVENTFD_FLAG_DEASSIGN!);
  });

  it('KvmIoEvents: a virtio notify address watched without exits, and back to MMIO exits once stopped', async () => {
    const notify = 0xd000_0000;
    let exits = 0;
    const vm = notifyingGuest();
    vm.mmio.register(notify, 0x1000, { read: () => 0, write: () => void exits++ }, 'notify');
    const io = new KvmIoEvents(vm);
    cleanups.push(() => io.close());
    const c = collect(1, scaled(10_000));
    const stop = io.watchMmioWrite(notify, 2, () => c.on(0))!;
    expect(stop).toBeTypeOf('function');
    await vm.run();
    const fired = await c.done;
    expect(fired.length).toBeGreaterThanOrEqual(1);
    expect(fired.length).toBeLessThanOrEqual(10);
    expect(exits).toBe(0);
    stop();
    stop(); // idempotent

    // Watched and stopped before the guest runs: every write exits again.
    const vm2 = notifyingGuest();
    vm2.mmio.register(notify, 0x1000, { read: () => 0, write: () => void exits++ }, 'notify');
    const io2 = new KvmIoEvents(vm2);
    cleanups.push(() => io2.close());
    let fired2 = 0;
    io2.watchMmioWrite(notify, 2, () => void fired2++)!();
    await vm2.run();
    await sleep(50);
    expect([exits, fired2]).toEqual([10, 0]);
  });
});

/** A 64-bit guest that writes a 16-bit value to 0xD0000000 ten times, then `out 0x11` stops it. */
function notifyingGuest(): KvmVm {
  const vm = new KvmVm({
    cpus: 1,
    cpu: { model: 'host', features: {} },
    ram: [{ gpa: 0, size: 4 << 20 }],
    log: new MemoryLogger(),
  });
  cleanups.push(() => vm.close());
  // mov rbx, 0xd0000000; mov ecx, 10; 1: mov [rbx], ax; dec ecx; jnz 1b; out 0x11, al; jmp $
  const code = [
    0x48, 0xbb, 0x00, 0x00, 0x00, 0xd0, 0, 0, 0, 0, 0xb9, 10, 0, 0, 0, 0x66, 0x89, 0x03, 0xff, 0xc9, 0x75,
    0xf9, 0xe6, 0x11, 0xeb, 0xfe,
  ];
  vm.mem.write(0x100000, Uint8Array.from(code));
  const r = zeroRegs();
  r.rip = 0x100000n;
  r.rsp = 0x1ff000n;
  vm.setBootState(0, setupLongModeBoot(vm.mem), r);
  vm.pio.register(0x11, 1, { read: () => 0, write: () => vm.requestStop(0, 'done') }, 'done');
  return vm;
}
