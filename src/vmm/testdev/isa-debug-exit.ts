/**
 * QEMU's "isa-debug-exit": a port-I/O range where a write of any value `v`
 * ends the VMM at once with exit status `(v << 1) | 1` (QEMU calls
 * exit()), so a test kernel reports its result as the process status and
 * can never be mistaken for a clean QEMU exit (0). kvm-unit-tests run QEMU
 * with `-device isa-debug-exit,iobase=0xf4,iosize=0x4`; their exit(code)
 * does `outl(code, 0xf4)` (lib/x86/io.c), realmode.flat `outb(code, 0xf4)`,
 * and s3.flat's resume code a 32-bit `out` to 0xf4. Their run scripts read
 * status 1 as success (code 0) and 3 as a failed test (code 1)
 * (scripts/vmm.bash, qemu_fixup_return_code).
 *
 * The status the shell sees is the low 8 bits: `((v << 1) | 1) & 0xff`,
 * always odd. `onExit` gets that process exit code; the reason carries the
 * full value. Reads return 0 (QEMU's debug_exit_read). Accesses of 1, 2 and
 * 4 bytes are valid at any port of the range (QEMU ignores the offset).
 *
 * A device a VM names, never there by default. The machine registers it
 * with `vm.pio.register(dev.iobase, dev.iosize, dev, dev.name)` and wires
 * `onExit` to `vm.requestStop(code, reason)`.
 */
import type { AccessSize, Device, DeviceContext, DeviceState, IoHandler } from '../core/device.js';
import { expectVersion } from '../core/device.js';
import { hex } from '../core/bus.js';
import type { DeviceDescriptor } from '../board/board.js';
import type { IsaDebugExitDevice } from '../../generated/vmm-config.js';
import { ISA_DEBUG_EXIT_DEFAULTS } from '../../platform/pc-map.js';
import type { ResolvedIsaDebugExitDevice } from '../config/types.js';

/** QEMU's defaults (hw/misc/debugexit.c). */
export const DEBUG_EXIT_DEFAULT_IOBASE = 0x501;
export const DEBUG_EXIT_DEFAULT_IOSIZE = 2;
/** Where kvm-unit-tests want it (`iobase=0xf4,iosize=0x4`). */
export const KVM_UNIT_TESTS_DEBUG_EXIT_IOBASE = 0xf4;
export const KVM_UNIT_TESTS_DEBUG_EXIT_IOSIZE = 4;

const PORT_SPACE = 0x10000;

export interface IsaDebugExitOptions {
  /** First port (default 0x501, as QEMU). */
  iobase?: number;
  /** Number of ports (default 2, as QEMU). */
  iosize?: number;
  /**
   * Ends the VM: `code` is the process exit status, `((v << 1) | 1) & 0xff`;
   * `reason` names the value written and the full QEMU status. The machine
   * wires it to `vm.requestStop(code, reason)`.
   */
  onExit: (code: number, reason: string) => void;
  /** Instance name (default "isa-debug-exit"). */
  name?: string;
}

/** QEMU's status for a write of `value` (up to 33 bits, so not a 32-bit operation). */
export function debugExitStatus(value: number): number {
  return (value >>> 0) * 2 + 1;
}

/** What the process exit status is once the OS keeps the low 8 bits of QEMU's. */
export function debugExitCode(value: number): number {
  return ((value & 0x7f) << 1) | 1;
}

const sizeMask: Record<AccessSize, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff };

export class IsaDebugExit implements Device, IoHandler {
  readonly name: string;
  readonly iobase: number;
  readonly iosize: number;
  private readonly onExit: (code: number, reason: string) => void;

  constructor(
    private readonly ctx: DeviceContext,
    options: IsaDebugExitOptions,
  ) {
    this.name = options.name ?? 'isa-debug-exit';
    this.iobase = options.iobase ?? DEBUG_EXIT_DEFAULT_IOBASE;
    this.iosize = options.iosize ?? DEBUG_EXIT_DEFAULT_IOSIZE;
    if (!Number.isInteger(this.iobase) || this.iobase < 0 || this.iobase >= PORT_SPACE) {
      throw new RangeError(`${this.name}: iobase ${this.iobase} is not a port (0-0xffff)`);
    }
    if (!Number.isInteger(this.iosize) || this.iosize < 1 || this.iobase + this.iosize > PORT_SPACE) {
      throw new RangeError(
        `${this.name}: iosize ${this.iosize} does not fit the port space from ${hex(this.iobase)}`,
      );
    }
    this.onExit = options.onExit;
  }

  read(_offset: number, _size: AccessSize): number {
    return 0;
  }

  write(offset: number, size: AccessSize, value: number): void {
    const v = (value & sizeMask[size]) >>> 0;
    const code = debugExitCode(v);
    const reason =
      `guest wrote ${hex(v)} to ${this.name} (${size}-byte write to port ${hex(this.iobase + offset)}): ` +
      `QEMU status ${hex(debugExitStatus(v))}, process exit code ${code}`;
    // Debug level: kvm-unit-tests' scripts take any stderr line but warnings
    // with status 1 as a VMM failure.
    this.ctx.log.debug(reason);
    this.onExit(code, reason);
  }

  saveState(): DeviceState {
    return { version: 1 };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
  }
}

/** `class: isa-debug-exit`: QEMU's exit port (kvm-unit-tests end with it). */
export const isaDebugExitDevice: DeviceDescriptor<IsaDebugExitDevice, ResolvedIsaDebugExitDevice> = {
  class: 'isa-debug-exit',
  schema: {
    name: 'IsaDebugExitDevice',
    manifest: false,
    definition: {
      description:
        "QEMU's isa-debug-exit: a write of v to its ports ends the VMM with exit status (v << 1) | 1 (kvm-unit-tests uses iobase 0xf4, iosize 4).",
      type: 'object',
      additionalProperties: false,
      required: ['class'],
      properties: {
        class: {
          const: 'isa-debug-exit',
        },
        iobase: {
          description: 'First I/O port. Default 0x501 (as QEMU).',
          type: 'integer',
          minimum: 0,
          maximum: 65535,
          default: 1281,
        },
        iosize: {
          description: 'Number of I/O ports from iobase: 1, 2 or 4. Default 2 (as QEMU).',
          type: 'integer',
          enum: [1, 2, 4],
          default: 2,
        },
      },
    },
  },
  resolve(d, ctx) {
    const iobase = d.iobase ?? ISA_DEBUG_EXIT_DEFAULTS.iobase;
    const iosize = d.iosize ?? ISA_DEBUG_EXIT_DEFAULTS.iosize;
    if (iobase + iosize > 0x10000)
      ctx.problem('iobase', `ports ${hex(iobase)}+${iosize} go beyond the last I/O port 0xffff`);
    return { class: 'isa-debug-exit', iobase, iosize };
  },
  stateVersion: 1,
  claims: (d) => ({ ports: [{ start: d.iobase, end: d.iobase + d.iosize, owner: '', field: 'iobase' }] }),
  create(d, board) {
    const dev = board.add(
      new IsaDebugExit(board.ctx, {
        iobase: d.iobase,
        iosize: d.iosize,
        onExit: (code, reason) => board.requestStop(code, reason),
      }),
    );
    board.pio(dev.iobase, dev.iosize, dev, dev.name);
  },
};
