/**
 * QEMU/Bochs-style debug console ("isa-debugcon") at port 0x402, where
 * SeaBIOS and OVMF print their debug log. Each write appends its low byte;
 * a read returns 0xE9, which firmware uses to detect the port. Output is
 * batched and handed to the sink on the next setImmediate (or when the
 * buffer fills, or on close). Register with
 * `pio.register(0x402, 1, debugcon, 'debugcon')`.
 */
import { DEBUG_CONSOLE_PORTS } from '../../platform/pc-map.js';
import type { AccessSize, Device, DeviceContext, DeviceState, IoHandler } from '../core/device.js';
import { expectVersion } from '../core/device.js';
import type { DebugConsoleDevice } from '../../generated/vmm-config.js';
import type { DeviceDescriptor } from '../board/board.js';
import type { ResolvedDebugConsoleDevice } from '../config/types.js';

export const DEBUG_CONSOLE_PORT = DEBUG_CONSOLE_PORTS.start;

export interface DebugConsoleOptions {
  /** Receives the output; the array is the sink's to keep. */
  sink: (data: Uint8Array) => void;
  /** Value reads return (default 0xE9). */
  readback?: number;
  /** Instance name (default "debugcon"). */
  name?: string;
}

const BUFFER_SIZE = 4096;

export class DebugConsole implements Device, IoHandler {
  readonly name: string;
  private readonly sink: (data: Uint8Array) => void;
  private readonly readback: number;
  private buffer = new Uint8Array(BUFFER_SIZE);
  private length = 0;
  private immediate: NodeJS.Immediate | undefined;
  private closed = false;
  private sinkFailed = false;

  constructor(
    private readonly ctx: DeviceContext,
    options: DebugConsoleOptions,
  ) {
    this.name = options.name ?? 'debugcon';
    this.sink = options.sink;
    this.readback = (options.readback ?? 0xe9) & 0xff;
  }

  read(_offset: number, _size: AccessSize): number {
    return this.readback;
  }

  write(_offset: number, _size: AccessSize, value: number): void {
    if (this.closed) return;
    this.buffer[this.length++] = value & 0xff;
    if (this.length >= BUFFER_SIZE) {
      this.flush();
    } else if (!this.immediate) {
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        this.flush();
      });
    }
  }

  /** Hands buffered output to the sink now. */
  flush(): void {
    if (this.immediate) {
      clearImmediate(this.immediate);
      this.immediate = undefined;
    }
    if (this.length === 0) return;
    const data = this.buffer.slice(0, this.length);
    this.length = 0;
    try {
      this.sink(data);
    } catch (err) {
      if (!this.sinkFailed) {
        this.sinkFailed = true;
        this.ctx.log.error(
          `${this.name}: output sink failed: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
    }
  }

  reset(): void {
    this.flush();
  }

  saveState(): DeviceState {
    return { version: 1 };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
  }

  close(): void {
    this.flush();
    this.closed = true;
  }
}

/** `class: debug-console`: an extra write-only debug port (like 0x402). */
export const debugConsoleDevice: DeviceDescriptor<DebugConsoleDevice, ResolvedDebugConsoleDevice> = {
  class: 'debug-console',
  schema: {
    name: 'DebugConsoleDevice',
    manifest: true,
    definition: {
      description: 'An extra write-only debug console on one I/O port.',
      type: 'object',
      additionalProperties: false,
      required: ['class', 'port'],
      properties: {
        class: {
          const: 'debug-console',
        },
        port: {
          description: 'I/O port.',
          type: 'integer',
          minimum: 0,
          maximum: 65535,
        },
        output: {
          description: 'stderr (default) or {file: path}.',
          oneOf: [
            {
              type: 'string',
              enum: ['stderr'],
            },
            {
              $ref: '#/definitions/FileSink',
            },
          ],
          default: 'stderr',
        },
      },
    },
  },
  resolve: (d, ctx) => ({
    class: 'debug-console',
    port: d.port,
    output: ctx.debugSink(d.output ?? 'stderr'),
  }),
  stateVersion: 1,
  claims: (d) => ({ ports: [{ start: d.port, end: d.port + 1, owner: '', field: 'port' }] }),
  create(d, board) {
    const name = `debugcon-${d.port.toString(16)}`;
    const sink = board.debugSink(d.output, name);
    if (!sink) return;
    board.pio(d.port, 1, board.add(new DebugConsole(board.ctx, { sink, name })), name);
  },
};
