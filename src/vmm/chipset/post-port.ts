/**
 * POST code register at port 0x80: the BIOS writes progress codes here and
 * Linux writes it as an I/O delay. It keeps the last byte written and reads
 * it back. Register with `pio.register(0x80, 1, post, 'post')`.
 */
import {
  DeviceStateError,
  expectVersion,
  type AccessSize,
  type Device,
  type DeviceContext,
  type DeviceState,
  type IoHandler,
} from '../core/device.js';

export const POST_PORT = 0x80;

export interface PostPortOptions {
  /** Instance name (default "post"). */
  name?: string;
  /** Called on every write (tracing); keep it cheap: Linux uses the port as an I/O delay. */
  onCode?: (code: number) => void;
}

export class PostPort implements Device, IoHandler {
  readonly name: string;
  private code = 0;

  constructor(
    _ctx: DeviceContext,
    private readonly options: PostPortOptions = {},
  ) {
    this.name = options.name ?? 'post';
  }

  /** The last POST code written. */
  get lastCode(): number {
    return this.code;
  }

  read(_offset: number, _size: AccessSize): number {
    return this.code;
  }

  write(_offset: number, _size: AccessSize, value: number): void {
    this.code = value & 0xff;
    this.options.onCode?.(this.code);
  }

  reset(): void {
    this.code = 0;
  }

  saveState(): DeviceState {
    return { version: 1, code: this.code };
  }

  loadState(state: DeviceState): void {
    expectVersion(this.name, state, 1);
    const { code } = state;
    if (typeof code !== 'number' || !Number.isInteger(code) || code < 0 || code > 0xff) {
      throw new DeviceStateError(`${this.name}: malformed state`);
    }
    this.code = code;
  }
}
