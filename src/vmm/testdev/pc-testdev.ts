/**
 * QEMU's "pc-testdev" (hw/misc/pc-testdev.c): the ISA test device of
 * kvm-unit-tests' x86 tests, which QEMU runs with
 * `-device pc-testdev -device isa-debug-exit,iobase=0xf4,iosize=0x4`.
 * Five fixed ranges, each a handler here:
 *
 *   port 0xE0-0xE3  `ioport`      a 32-bit scratch register: accesses of 1,
 *                                 2 or 4 bytes at any offset write and read
 *                                 back its bytes (little-endian).
 *                                 emulator.flat (string I/O, `rep insb` into
 *                                 MMIO), realmode.flat (`in`/`out` of al, ax,
 *                                 eax, with and without dx), amd_sev.flat
 *                                 (`rep outsw`).
 *   port 0xE4-0xE7  `flushPort`   "flush page": a 32-bit write of a guest-
 *                                 physical address makes QEMU mprotect the
 *                                 host page PROT_NONE and back, so KVM drops
 *                                 its EPT/NPT/shadow mapping and the next
 *                                 guest access faults into KVM. Other sizes
 *                                 are invalid and dropped; reads return 0.
 *                                 eventinj.flat, to take an EPT violation
 *                                 while delivering an exception onto a
 *                                 flushed stack or IDT page.
 *   port 0xE8-0xEB  `ioportByte`  the same register as 0xE0, which QEMU
 *                                 reaches one byte at a time (a test of its
 *                                 access splitting); the guest sees the same
 *                                 values. No current kvm-unit-tests test.
 *   port 0x2000-0x2017 `irqPorts` IRQ lines: a byte written to 0x2000 + n
 *                                 sets ISA IRQ n to (byte != 0); wider
 *                                 accesses are split into bytes, reads
 *                                 return 0. ioapic.flat (lines 0x0D, 0x0E,
 *                                 0x0F: edge, level, coalescing, remote IRR),
 *                                 vmx.flat's APIC pass-through tests (0x0F),
 *                                 through lib/x86/apic.c set_irq_line().
 *                                 QEMU asserts the line is an ISA IRQ (0-15)
 *                                 and aborts otherwise; lines 16-23 are
 *                                 logged and ignored here.
 *   MMIO 0xFF000000-0xFF00FFFF `iomem` 64 KiB of device memory (QEMU's
 *                                 IOMEM_LEN), read and written through exits:
 *                                 emulator.flat maps its first page twice
 *                                 (x86/ioram.h IORAM_BASE_PHYS) to test the
 *                                 emulation of instructions on MMIO,
 *                                 lam.flat to test LAM on MMIO.
 *
 * Accesses that run past the end of a range are cut there, as QEMU's
 * dispatch does: the bytes beyond read as an unclaimed port/address
 * (all-ones, mvisor's open bus; QEMU would ask the next device) and their
 * writes are dropped. Flushing a page needs host help that TypeScript
 * does not have: `onFlushPage` is called with the page address, and
 * without it the write is accepted and does nothing (eventinj's checks
 * still pass; they then do not exercise the fault during delivery).
 *
 * A device a VM names, never there by default. The machine registers
 * every entry of `pioRanges` and `mmioRanges` on its buses.
 */
import type { AccessSize, Device, DeviceContext, DeviceState, IoHandler } from '../core/device.js';
import { DeviceStateError, expectVersion } from '../core/device.js';
import { hex } from '../core/bus.js';
import type { DeviceDescriptor } from '../board/board.js';
import type { PcTestdevDevice } from '../../generated/vmm-config.js';
import { formatSize } from '../../platform/size.js';
import { readableFile } from '../config/files.js';
import type { ResolvedPcTestdevDevice } from '../config/types.js';
import { PC_TESTDEV_MMIO, PC_TESTDEV_PORTS } from '../../platform/pc-map.js';

export const PC_TESTDEV_IOPORT = 0xe0;
export const PC_TESTDEV_FLUSH_PORT = 0xe4;
export const PC_TESTDEV_IOPORT_BYTE = 0xe8;
export const PC_TESTDEV_IRQ_PORT = 0x2000;
/** 24 ports, one per IOAPIC input; QEMU only accepts the 16 ISA IRQs. */
export const PC_TESTDEV_IRQ_LINES = 24;
const ISA_IRQS = 16;
export const PC_TESTDEV_IOMEM_BASE = 0xff00_0000;
export const PC_TESTDEV_IOMEM_SIZE = 0x1_0000;
const PAGE_MASK = 0xffff_f000;

export interface PcTestdevRange {
  readonly base: number;
  readonly length: number;
  readonly handler: IoHandler;
  readonly name: string;
}

export interface PcTestdevOptions {
  /**
   * Called on a 32-bit write to port 0xE4 with the 4 KiB page it names
   * (guest-physical): the host should make KVM drop its mapping of that
   * page (QEMU mprotects it PROT_NONE, then read/write).
   */
  onFlushPage?: (gpa: number) => void;
  /** Instance name (default "pc-testdev"). */
  name?: string;
}

/** Reads `size` bytes at `offset` of a `length`-byte range; bytes past the end read as open bus. */
function readBytes(offset: number, size: AccessSize, length: number, byte: (o: number) => number): number {
  let v = 0;
  for (let i = 0; i < size; i++) {
    const o = offset + i;
    v |= (o >= 0 && o < length ? byte(o) : 0xff) << (8 * i);
  }
  return v >>> 0;
}

function writeBytes(
  offset: number,
  size: AccessSize,
  value: number,
  length: number,
  byte: (o: number, b: number) => void,
): void {
  for (let i = 0; i < size; i++) {
    const o = offset + i;
    if (o >= 0 && o < length) byte(o, (value >>> (8 * i)) & 0xff);
  }
}

export class PcTestdev implements Device {
  readonly name: string;
  /** Ports 0xE0-0xE3. */
  readonly ioport: IoHandler;
  /** Ports 0xE4-0xE7. */
  readonly flushPort: IoHandler;
  /** Ports 0xE8-0xEB. */
  readonly ioportByte: IoHandler;
  /** Ports 0x2000-0x2017. */
  readonly irqPorts: IoHandler;
  /** MMIO 0xFF000000-0xFF00FFFF. */
  readonly iomem: IoHandler;
  readonly pioRanges: readonly PcTestdevRange[];
  readonly mmioRanges: readonly PcTestdevRange[];

  /** The scratch register behind 0xE0 and 0xE8, little-endian. */
  private readonly data = new Uint8Array(4);
  private readonly mem = new Uint8Array(PC_TESTDEV_IOMEM_SIZE);
  /** IRQ lines this device drives high (bit n = IRQ n). */
  private lines = 0;

  constructor(
    private readonly ctx: DeviceContext,
    private readonly options: PcTestdevOptions = {},
  ) {
    this.name = options.name ?? 'pc-testdev';
    const scratch: IoHandler = {
      read: (offset, size) => readBytes(offset, size, 4, (o) => this.data[o]!),
      write: (offset, size, value) =>
        writeBytes(offset, size, value, 4, (o, b) => {
          this.data[o] = b;
        }),
    };
    this.ioport = scratch;
    this.ioportByte = scratch;
    this.flushPort = {
      read: () => 0,
      write: (offset, size, value) => this.flush(offset, size, value),
    };
    this.irqPorts = {
      // Reads of any size are split into byte reads that return 0.
      read: () => 0,
      write: (offset, size, value) =>
        writeBytes(offset, size, value, PC_TESTDEV_IRQ_LINES, (line, b) => this.setLine(line, b !== 0)),
    };
    this.iomem = {
      read: (offset, size) => readBytes(offset, size, PC_TESTDEV_IOMEM_SIZE, (o) => this.mem[o]!),
      write: (offset, size, value) =>
        writeBytes(offset, size, value, PC_TESTDEV_IOMEM_SIZE, (o, b) => {
          this.mem[o] = b;
        }),
    };
    this.pioRanges = [
      { base: PC_TESTDEV_IOPORT, length: 4, handler: this.ioport, name: this.name },
      { base: PC_TESTDEV_FLUSH_PORT, length: 4, handler: this.flushPort, name: this.name },
      { base: PC_TESTDEV_IOPORT_BYTE, length: 4, handler: this.ioportByte, name: this.name },
      { base: PC_TESTDEV_IRQ_PORT, length: PC_TESTDEV_IRQ_LINES, handler: this.irqPorts, name: this.name },
    ];
    this.mmioRanges = [
      { base: PC_TESTDEV_IOMEM_BASE, length: PC_TESTDEV_IOMEM_SIZE, handler: this.iomem, name: this.name },
    ];
  }

  /** IRQ lines the device drives high now (bit n = IRQ n). */
  get assertedLines(): number {
    return this.lines;
  }

  private flush(offset: number, size: AccessSize, value: number): void {
    // QEMU declares the region valid for 4-byte accesses only.
    if (offset !== 0 || size !== 4) {
      this.ctx.guestErrors.warn(
        `${this.name}-flush-size`,
        () => `${this.name}: ${size}-byte write to port ${hex(PC_TESTDEV_FLUSH_PORT + offset)} ignored`,
      );
      return;
    }
    this.options.onFlushPage?.((value & PAGE_MASK) >>> 0);
  }

  private setLine(line: number, level: boolean): void {
    if (line >= ISA_IRQS) {
      this.ctx.guestErrors.warn(
        `${this.name}-irq-line`,
        () => `${this.name}: IRQ line ${line} is not an ISA IRQ (QEMU aborts); ignored`,
      );
      return;
    }
    const bit = 1 << line;
    this.lines = level ? this.lines | bit : this.lines & ~bit;
    this.ctx.irq.setIrq(line, level);
  }

  reset(): void {
    this.data.fill(0);
    this.mem.fill(0);
    this.lowerAll(0);
  }

  /** Lowers the lines driven high that `keep` does not name. */
  private lowerAll(keep: number): void {
    for (let line = 0; line < ISA_IRQS; line++) {
      if (this.lines & ~keep & (1 << line)) this.setLine(line, false);
    }
  }

  saveState(): DeviceState {
    const used = this.mem.some((b) => b !== 0);
    return {
      version: 1,
      data: new DataView(this.data.buffer).getUint32(0, true),
      lines: this.lines,
      // Omitted when all zero (the common case: 64 KiB of base64 otherwise).
      ...(used ? { iomem: Buffer.from(this.mem).toString('base64') } : {}),
    };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const { data, lines, iomem } = state;
    if (typeof data !== 'number' || !Number.isInteger(data) || data < 0 || data > 0xffff_ffff) {
      throw new DeviceStateError(`${this.name}: bad saved data`);
    }
    if (typeof lines !== 'number' || !Number.isInteger(lines) || lines < 0 || lines >= 1 << ISA_IRQS) {
      throw new DeviceStateError(`${this.name}: bad saved lines`);
    }
    let mem: Uint8Array | undefined;
    if (iomem !== undefined) {
      if (typeof iomem !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(iomem)) {
        throw new DeviceStateError(`${this.name}: bad saved iomem`);
      }
      mem = new Uint8Array(Buffer.from(iomem, 'base64'));
      if (mem.length !== PC_TESTDEV_IOMEM_SIZE) throw new DeviceStateError(`${this.name}: bad saved iomem`);
    }
    new DataView(this.data.buffer).setUint32(0, data, true);
    if (mem) this.mem.set(mem);
    else this.mem.fill(0);
    // Drive the saved levels (a line's level is the device's output).
    this.lowerAll(lines);
    for (let line = 0; line < ISA_IRQS; line++) {
      if (lines & ~this.lines & (1 << line)) this.setLine(line, true);
    }
  }
}

/** `class: pc-testdev`: QEMU's pc-testdev (kvm-unit-tests). */
export const pcTestdevDevice: DeviceDescriptor<PcTestdevDevice, ResolvedPcTestdevDevice> = {
  class: 'pc-testdev',
  schema: {
    name: 'PcTestdevDevice',
    manifest: false,
    definition: {
      description:
        "QEMU's pc-testdev, as kvm-unit-tests uses it: I/O ports 0xe0-0xeb (a scratch register, page flush, byte-wise scratch register), 0x2000-0x2017 (ISA IRQ lines) and 64 KiB of test memory at 0xff000000.",
      type: 'object',
      additionalProperties: false,
      required: ['class'],
      properties: {
        class: {
          const: 'pc-testdev',
        },
      },
    },
  },
  resolve(_d, ctx) {
    if (ctx.firmware.kind === 'bios') {
      const bios = readableFile(ctx.firmware.path);
      const biosStart = bios.problem === undefined ? 2 ** 32 - bios.size : 2 ** 32;
      if (biosStart < PC_TESTDEV_MMIO.end) {
        ctx.problem(
          'class',
          `its test memory ${hex(PC_TESTDEV_MMIO.start)}-${hex(PC_TESTDEV_MMIO.end - 1)} overlaps the ` +
            `BIOS image mapped from ${hex(biosStart)} (use a BIOS image of at most ${formatSize(2 ** 32 - PC_TESTDEV_MMIO.end)})`,
        );
      }
    }
    return { class: 'pc-testdev' };
  },
  stateVersion: 1,
  claims: () => ({
    ports: PC_TESTDEV_PORTS.map((r) => ({ ...r, field: 'class' })),
    mmio: [{ ...PC_TESTDEV_MMIO, owner: 'pc-testdev', field: 'class' }],
  }),
  create(_d, board) {
    const dev = board.add(new PcTestdev(board.ctx));
    for (const r of dev.pioRanges) board.pio(r.base, r.length, r.handler, r.name);
    for (const r of dev.mmioRanges) board.mmio(r.base, r.length, r.handler, r.name);
  },
};
