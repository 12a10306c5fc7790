/**
 * QEMU's "pci-testdev" (hw/misc/pci-testdev.c), PCI 1b36:0005 ("QEMU PCI
 * Test Device", Red Hat): a table of I/O exit tests behind two BARs, which
 * kvm-unit-tests use to time and check port-I/O and MMIO exits.
 *
 * BAR0 is 4 KiB of 32-bit MMIO, BAR1 256 ports. Each BAR starts with the
 * header of the selected test (QEMU's PCITestDevHdr, little-endian):
 *
 *   0  test    u8   write n to select test n of this BAR (0-2; anything
 *                   else deselects); reads the test's global index
 *   1  width   u8   1: the test writes bytes
 *   4  offset  u32  where in this BAR the test writes
 *   8  data    u8   the byte to write (0xFA; 0xCE for the wildcard test)
 *  12  count   u32  writes counted since the test was selected
 *  16  name    NUL-terminated "mmio-no-eventfd", "portio-datamatch-eventfd"...
 *
 * Three tests per BAR: "no-eventfd" (every write reaches the VMM, which
 * counts writes of `data`), "wildcard-eventfd" (any value) and
 * "datamatch-eventfd" (only `data`). QEMU backs the last two with a KVM
 * ioeventfd at `offset` while the test is selected, so their writes never
 * leave the kernel and `count` stays 0; for MMIO wildcard it asks for any
 * access length when KVM_CAP_IOEVENTFD_ANY_LENGTH is there. Here every
 * test is counted in TypeScript, an exit per write, so `count` is the
 * number of matching writes for all six. kvm-unit-tests accept both: their
 * check (lib/pci-testdev.c) selects each test until `width` reads 0,
 * expects `count` 0 after selection, writes `data` 16 times at `offset`
 * and passes when `count` is 0 or 16.
 *
 * Like QEMU, both BARs are accessed one byte at a time: a wider write is
 * that many byte writes at consecutive offsets (so a 32-bit write to
 * `test` selects by its low byte), reads outside the header return 0, and
 * one test is selected for the whole device. No interrupt pin; class
 * 0x00ff (QEMU writes PCI_CLASS_OTHERS, 0xff, as the 16-bit class word:
 * base class 0x00, sub-class 0xff, "Unclassified device [00ff]"); QEMU's
 * default subsystem 1af4:1100. QEMU's optional `membar` BAR2 is not
 * provided (no kvm-unit-tests test uses it).
 *
 * Users in kvm-unit-tests: x86/vmexit.c ("pci-mem" and "pci-io" timings,
 * walking the table the same way), x86/vmx_tests.c (EPT tests: MMIO EPT
 * violations on BAR0), arm/pci-test.c (lib/pci-testdev.c). x86 tests
 * read the BAR addresses the firmware assigned and do not program BARs.
 */
import type { AccessSize, DeviceContext, IoHandler } from '../core/device.js';
import { DeviceStateError } from '../core/device.js';
import { PciDevice } from '../pci/device.js';
import type { DeviceDescriptor } from '../board/board.js';
import type { PciTestdevDevice } from '../../generated/vmm-config.js';
import { pciSlotOf } from '../../platform/placement.js';
import type { ResolvedPciTestdevDevice } from '../config/types.js';

export const PCI_VENDOR_ID_REDHAT = 0x1b36;
export const PCI_DEVICE_ID_REDHAT_TEST = 0x0005;
/** Base class 0x00, sub-class 0xff, programming interface 0 (see above). */
export const PCI_TESTDEV_CLASS = 0x00ff00;
/** QEMU's default subsystem IDs (hw/pci/pci.c pci_set_default_subsystem_id). */
export const PCI_SUBVENDOR_ID_REDHAT_QUMRANET = 0x1af4;
export const PCI_SUBDEVICE_ID_QEMU = 0x1100;

export const PCI_TESTDEV_MEM_BAR = 0;
export const PCI_TESTDEV_IO_BAR = 1;
/** QEMU: IOTEST_MEMSIZE * 2 and IOTEST_IOSIZE * 2. */
export const PCI_TESTDEV_MEM_SIZE = 4096;
export const PCI_TESTDEV_IO_SIZE = 256;

/** Header fields (byte offsets in either BAR). */
export const TESTDEV_HDR_TEST = 0;
export const TESTDEV_HDR_WIDTH = 1;
export const TESTDEV_HDR_OFFSET = 4;
export const TESTDEV_HDR_DATA = 8;
export const TESTDEV_HDR_COUNT = 12;
export const TESTDEV_HDR_NAME = 16;

const IOTEST_DATAMATCH = 0xfa;
const IOTEST_NOMATCH = 0xce;
const KINDS = ['no-eventfd', 'wildcard-eventfd', 'datamatch-eventfd'] as const;
const BARS = ['mmio', 'portio'] as const;
export const PCI_TESTDEV_TESTS_PER_BAR = KINDS.length;

export interface PciTestdevTest {
  /** Global index: BAR * 3 + test (what the `test` field reads). */
  readonly index: number;
  readonly bar: (typeof BARS)[number];
  readonly kind: (typeof KINDS)[number];
  readonly name: string;
  /** Where the test writes, inside its BAR. */
  readonly offset: number;
  readonly width: 1;
  readonly data: number;
  /** Only writes of `data` count (all but the wildcard test). */
  readonly matchData: boolean;
  /** QEMU runs it on a KVM ioeventfd (its writes then never reach the VMM). */
  readonly ioeventfd: boolean;
}

/** The six tests, as QEMU lays them out: offset = half the BAR + the global index. */
export const PCI_TESTDEV_TESTS: readonly PciTestdevTest[] = BARS.flatMap((bar, b) =>
  KINDS.map((kind, k) => {
    const index = b * KINDS.length + k;
    const matchData = kind !== 'wildcard-eventfd';
    return {
      index,
      bar,
      kind,
      name: `${bar}-${kind}`,
      offset: (bar === 'mmio' ? PCI_TESTDEV_MEM_SIZE : PCI_TESTDEV_IO_SIZE) / 2 + index,
      width: 1 as const,
      data: matchData ? IOTEST_DATAMATCH : IOTEST_NOMATCH,
      matchData,
      ioeventfd: kind !== 'no-eventfd',
    };
  }),
);

/** A test's header without its count: QEMU's buffer, name and NUL included. */
function headerBytes(t: PciTestdevTest): Uint8Array {
  const name = Buffer.from(t.name, 'latin1');
  const b = new Uint8Array(TESTDEV_HDR_NAME + name.length + 1);
  const v = new DataView(b.buffer);
  v.setUint8(TESTDEV_HDR_TEST, t.index);
  v.setUint8(TESTDEV_HDR_WIDTH, t.width);
  v.setUint32(TESTDEV_HDR_OFFSET, t.offset, true);
  v.setUint8(TESTDEV_HDR_DATA, t.data);
  b.set(name, TESTDEV_HDR_NAME);
  return b;
}

const HEADERS = PCI_TESTDEV_TESTS.map(headerBytes);

export interface PciTestdevOptions {
  /** Instance name (default "pci-testdev"). */
  name?: string;
}

export class PciTestdev extends PciDevice {
  /** The selected test's global index, or -1. */
  private current = -1;
  private readonly counts: number[] = PCI_TESTDEV_TESTS.map(() => 0);

  constructor(_ctx: DeviceContext, options: PciTestdevOptions = {}) {
    super(options.name ?? 'pci-testdev', {
      vendorId: PCI_VENDOR_ID_REDHAT,
      deviceId: PCI_DEVICE_ID_REDHAT_TEST,
      classCode: PCI_TESTDEV_CLASS,
      revision: 0,
      subsystemVendorId: PCI_SUBVENDOR_ID_REDHAT_QUMRANET,
      subsystemId: PCI_SUBDEVICE_ID_QEMU,
      interruptPin: 0,
    });
    this.addBar({
      index: PCI_TESTDEV_MEM_BAR,
      kind: 'mem32',
      size: PCI_TESTDEV_MEM_SIZE,
      handler: this.barHandler(0, PCI_TESTDEV_MEM_SIZE),
    });
    this.addBar({
      index: PCI_TESTDEV_IO_BAR,
      kind: 'io',
      size: PCI_TESTDEV_IO_SIZE,
      handler: this.barHandler(1, PCI_TESTDEV_IO_SIZE),
    });
  }

  /** The selected test, if any. */
  get selected(): PciTestdevTest | undefined {
    return this.current < 0 ? undefined : PCI_TESTDEV_TESTS[this.current];
  }

  /** Writes counted by test `index` since it was last selected. */
  count(index: number): number {
    return this.counts[index] ?? 0;
  }

  private barHandler(bar: number, size: number): IoHandler {
    return {
      read: (offset: number, width: AccessSize) => {
        let v = 0;
        for (let i = 0; i < width; i++) {
          const o = offset + i;
          v |= (o < size ? this.readByte(o) : 0xff) << (8 * i);
        }
        return v >>> 0;
      },
      write: (offset: number, width: AccessSize, value: number) => {
        for (let i = 0; i < width; i++) {
          const o = offset + i;
          if (o < size) this.writeByte(bar, o, (value >>> (8 * i)) & 0xff);
        }
      },
    };
  }

  private readByte(offset: number): number {
    if (this.current < 0) return 0;
    if (offset >= TESTDEV_HDR_COUNT && offset < TESTDEV_HDR_COUNT + 4) {
      return (this.counts[this.current]! >>> (8 * (offset - TESTDEV_HDR_COUNT))) & 0xff;
    }
    return HEADERS[this.current]![offset] ?? 0;
  }

  private writeByte(bar: number, offset: number, b: number): void {
    if (offset === TESTDEV_HDR_TEST) {
      // Selecting (or deselecting) always ends the test that ran.
      this.current = -1;
      if (b < KINDS.length) {
        this.current = bar * KINDS.length + b;
        this.counts[this.current] = 0;
      }
      return;
    }
    const t = this.selected;
    if (!t || offset !== t.offset) return;
    if (t.matchData && b !== t.data) return;
    this.counts[t.index] = (this.counts[t.index]! + 1) >>> 0;
  }

  protected override resetDevice(): void {
    this.current = -1;
    this.counts.fill(0);
  }

  protected override saveDeviceState(): unknown {
    return { current: this.current, counts: [...this.counts] };
  }

  protected override loadDeviceState(saved: unknown): void {
    const s = (typeof saved === 'object' && saved !== null ? saved : {}) as Record<string, unknown>;
    const { current, counts } = s;
    if (
      typeof current !== 'number' ||
      !Number.isInteger(current) ||
      current < -1 ||
      current >= PCI_TESTDEV_TESTS.length
    ) {
      throw new DeviceStateError(`${this.name}: bad saved current test`);
    }
    if (
      !Array.isArray(counts) ||
      counts.length !== PCI_TESTDEV_TESTS.length ||
      !counts.every((c) => typeof c === 'number' && Number.isInteger(c) && c >= 0 && c <= 0xffff_ffff)
    ) {
      throw new DeviceStateError(`${this.name}: bad saved counts`);
    }
    this.current = current;
    counts.forEach((c: number, i) => (this.counts[i] = c));
  }
}

/** `class: pci-testdev`: QEMU's pci-testdev, PCI 1b36:0005 (kvm-unit-tests). */
export const pciTestdevDevice: DeviceDescriptor<PciTestdevDevice, ResolvedPciTestdevDevice> = {
  class: 'pci-testdev',
  schema: {
    name: 'PciTestdevDevice',
    manifest: false,
    definition: {
      description: "QEMU's pci-testdev (PCI 1b36:0005), as kvm-unit-tests uses it.",
      type: 'object',
      additionalProperties: false,
      required: ['class'],
      properties: {
        class: {
          const: 'pci-testdev',
        },
        slot: {
          description:
            'PCI slot on bus 0 (2..31; 0 is the host bridge, 1 the PIIX). Default: the first free slot from 2 up, in device order (shared with virtio-block devices).',
          type: 'integer',
          minimum: 2,
          maximum: 31,
        },
      },
    },
  },
  resolve: (_d, ctx) => ({ class: 'pci-testdev', slot: pciSlotOf(ctx.placement) }),
  create(d, board) {
    board.pci(board.add(new PciTestdev(board.ctx)), d.slot);
  },
};
