/**
 * The machine's side of exit-free queue notifications and of MSI delivery
 * for virtio devices:
 *
 * - `KvmIoEvents` (an IoEventHost): a KVM ioeventfd on a notify address
 *   makes the kernel signal an eventfd instead of exiting to the VMM; the
 *   addon's FdWatcher sees the eventfd fire on its own thread and calls
 *   back on the event loop (native/fdutil.cc). One watcher serves every
 *   device of a VM.
 * - `kvmMsiSink`: MSI-X messages as KVM_SIGNAL_MSI, one ioctl each, from
 *   the JavaScript thread that completes the request. (An irqfd would cost
 *   the same eventfd write from this thread; it pays off only for
 *   interrupts raised off the JavaScript thread. See msi-router.ts.)
 */
import type { RateLimitedLog } from '../core/log.js';
import type { Addon, NativeFdWatcher, NativeVm } from '../kvm/addon.js';
import type { MsiSink } from '../pci/msi.js';
import type { IoEventHost } from './pci-transport.js';

/** What KvmIoEvents needs of a KvmVm. */
export interface IoEventVm {
  readonly addon: Addon;
  readonly native: NativeVm;
  readonly guestErrors: RateLimitedLog;
}

export class KvmIoEvents implements IoEventHost {
  private readonly watcher: NativeFdWatcher;
  private readonly handlers = new Map<number, () => void>();
  private closed = false;

  constructor(private readonly vm: IoEventVm) {
    this.watcher = new vm.addon.FdWatcher((fd) => this.fired(fd));
    // The VM's own threads keep the process alive while it runs.
    this.watcher.unref();
  }

  watchMmioWrite(addr: number, len: number, onNotify: () => void): (() => void) | undefined {
    if (this.closed) return undefined;
    const { addon, native } = this.vm;
    const fd = addon.eventfdCreate(0, true);
    try {
      native.ioeventfd(fd, addr, len, 0);
    } catch (e) {
      addon.closeFd(fd);
      this.vm.guestErrors.warn(
        'ioeventfd',
        () =>
          `ioeventfd at 0x${addr.toString(16)} refused (${(e as Error).message}); notifications exit to the VMM`,
      );
      return undefined;
    }
    this.handlers.set(fd, onNotify);
    this.watcher.add(fd);
    let live = true;
    return () => {
      if (!live) return;
      live = false;
      this.handlers.delete(fd);
      if (!this.closed) this.watcher.remove(fd);
      try {
        native.ioeventfd(fd, addr, len, addon.constants.KVM_IOEVENTFD_FLAG_DEASSIGN!);
      } catch {
        // The VM is already closed: its ioeventfds went with it.
      }
      addon.closeFd(fd);
    };
  }

  /** Stops the watcher thread (after the VM's devices closed their watches). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
  }

  private fired(fd: number): void {
    const h = this.handlers.get(fd);
    if (!h) return;
    try {
      h();
    } catch (e) {
      // A device bug must not become an uncaught exception of the addon's callback.
      this.vm.guestErrors.warn(
        'ioevent-handler',
        () => `queue notification handler failed: ${(e as Error).stack ?? e}`,
      );
    }
  }
}

/** MSI messages as KVM_SIGNAL_MSI. */
export function kvmMsiSink(native: NativeVm): MsiSink {
  return { signalMsi: (lo, hi, data) => void native.signalMsi(lo, hi, data) };
}
