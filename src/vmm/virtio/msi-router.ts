/**
 * GSIs for MSI routes (KVM_IRQ_ROUTING_MSI), for interrupts raised through
 * an irqfd: KVM_SET_GSI_ROUTING replaces the whole table, so one owner
 * keeps it. The machine's fixed routes (PIC and IOAPIC pins, GSIs 0-23:
 * pcGsiRoutes in machine.ts) are the base; MSI routes get GSIs from 24 up.
 *
 * Virtio devices do not need it today: they complete requests on the
 * JavaScript thread, where KVM_SIGNAL_MSI (one ioctl) costs what an
 * irqfd's eventfd write costs. An irqfd pays off when something off that
 * thread raises the interrupt (a native I/O thread, vhost): then
 *   const gsi = router.allocate();
 *   router.route(gsi, addressLo, addressHi, data);   // on MSI-X table writes
 *   vm.native.irqfd(eventfd, gsi);                   // and write the eventfd to interrupt
 */

/** Words per route in NativeVm.setGsiRouting: gsi, type, flags, u0..u3. */
const WORDS = 7;

export interface MsiRouterOptions {
  /** The fixed routes (7 words each), kept first in every table written. */
  base: Uint32Array;
  /** KVM_SET_GSI_ROUTING (NativeVm.setGsiRouting). */
  setRouting: (routes: Uint32Array) => void;
  /** The KVM_IRQ_ROUTING_MSI constant (addon.constants). */
  msiType: number;
  /** First GSI for MSI routes; default 24 (after the IOAPIC's pins). */
  firstGsi?: number;
  /** GSIs available: KVM_CAP_IRQ_ROUTING's limit (KVM_MAX_IRQ_ROUTES is 4096); default 1024. */
  gsiCount?: number;
}

interface MsiRoute {
  addressLo: number;
  addressHi: number;
  data: number;
}

export class MsiRouter {
  private readonly routes = new Map<number, MsiRoute | undefined>();
  private readonly firstGsi: number;
  private readonly gsiCount: number;

  constructor(private readonly opts: MsiRouterOptions) {
    if (opts.base.length % WORDS) throw new RangeError('base routes must hold 7 words per entry');
    this.firstGsi = opts.firstGsi ?? 24;
    this.gsiCount = opts.gsiCount ?? 1024;
    for (let i = 0; i < opts.base.length; i += WORDS) {
      if (opts.base[i]! >= this.firstGsi)
        throw new RangeError(`base route for GSI ${opts.base[i]} is in the MSI range`);
    }
  }

  /** A free GSI (no route until `route`). Throws when all are taken. */
  allocate(): number {
    for (let gsi = this.firstGsi; gsi < this.gsiCount; gsi++) {
      if (!this.routes.has(gsi)) {
        this.routes.set(gsi, undefined);
        return gsi;
      }
    }
    throw new RangeError(`no free GSI for an MSI route (${this.gsiCount - this.firstGsi} in use)`);
  }

  /** Points `gsi` at an MSI message and rewrites KVM's table (unless unchanged). */
  route(gsi: number, addressLo: number, addressHi: number, data: number): void {
    this.check(gsi);
    const cur = this.routes.get(gsi);
    if (cur && cur.addressLo === addressLo && cur.addressHi === addressHi && cur.data === data) return;
    this.routes.set(gsi, { addressLo: addressLo >>> 0, addressHi: addressHi >>> 0, data: data >>> 0 });
    this.commit();
  }

  /** Removes the route of `gsi` (it stays allocated): an irqfd on it then does nothing. */
  unroute(gsi: number): void {
    this.check(gsi);
    if (this.routes.get(gsi) === undefined) return;
    this.routes.set(gsi, undefined);
    this.commit();
  }

  free(gsi: number): void {
    this.check(gsi);
    const had = this.routes.get(gsi) !== undefined;
    this.routes.delete(gsi);
    if (had) this.commit();
  }

  /** The table KVM has now: base routes, then MSI routes by GSI. */
  table(): Uint32Array {
    const msi = [...this.routes]
      .filter((e): e is [number, MsiRoute] => e[1] !== undefined)
      .sort((a, b) => a[0] - b[0]);
    const t = new Uint32Array(this.opts.base.length + msi.length * WORDS);
    t.set(this.opts.base);
    let at = this.opts.base.length;
    for (const [gsi, r] of msi) {
      t.set([gsi, this.opts.msiType, 0, r.addressLo, r.addressHi, r.data, 0], at);
      at += WORDS;
    }
    return t;
  }

  private commit(): void {
    this.opts.setRouting(this.table());
  }

  private check(gsi: number): void {
    if (!this.routes.has(gsi)) throw new RangeError(`GSI ${gsi} was not allocated by this router`);
  }
}
