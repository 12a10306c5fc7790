/** `class: serial-port`: an extra 16550A UART (COM2..COM4) on 8 ports (./uart-16550a.ts). */
import type { SerialPortDevice } from '../../generated/vmm-config.js';
import type { DeviceDescriptor } from '../board/board.js';
import type { ResolvedSerialPortDevice } from '../config/types.js';
import { Uart16550a } from './uart-16550a.js';

export const serialPortDevice: DeviceDescriptor<SerialPortDevice, ResolvedSerialPortDevice> = {
  class: 'serial-port',
  schema: {
    name: 'SerialPortDevice',
    manifest: true,
    definition: {
      description: 'An extra 16550 UART (COM2..COM4).',
      type: 'object',
      additionalProperties: false,
      required: ['class', 'port'],
      properties: {
        class: {
          const: 'serial-port',
        },
        port: {
          description: 'I/O base port: 0x2f8 (COM2), 0x3e8 (COM3) or 0x2e8 (COM4).',
          type: 'integer',
          enum: [760, 1000, 744],
        },
        irq: {
          description: 'ISA IRQ. Default 3 for 0x2f8 and 0x2e8, 4 for 0x3e8.',
          type: 'integer',
          enum: [3, 4],
        },
        serial: {
          $ref: '#/definitions/CharSink',
        },
      },
    },
  },
  stateVersion: 1,
  resolve: (d, ctx) => ({
    class: 'serial-port',
    port: d.port,
    irq: d.irq ?? (d.port === 0x3e8 ? 4 : 3),
    serial: ctx.charSink(d.serial ?? 'none', 'serial'),
  }),
  claims: (d) => ({ ports: [{ start: d.port, end: d.port + 8, owner: '', field: 'port' }] }),
  create(d, board) {
    const name = `serial-${d.port.toString(16)}`;
    const uart = board.add(
      new Uart16550a(name, board.ctx, { irq: d.irq, backend: board.charBackend(d.serial) }),
    );
    board.pio(d.port, 8, uart, name);
  },
};
