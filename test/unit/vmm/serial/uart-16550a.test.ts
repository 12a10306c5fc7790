import { describe, it, expect } from 'vitest';
import {
  DeviceStateError,
  type AccessSize,
  type DeviceContext,
  type IrqSink,
} from '../../../../src/vmm/core/device.js';
import { MemoryLogger, RateLimitedLog } from '../../../../src/vmm/core/log.js';
import { MemoryBackend } from '../../../../src/vmm/chardev/backend.js';
import { Uart16550a } from '../../../../src/vmm/serial/uart-16550a.js';

const RBR = 0;
const THR = 0;
const DLL = 0;
const IER = 1;
const DLM = 1;
const IIR = 2;
const FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

class RecordingIrq implements IrqSink {
  readonly calls: { gsi: number; level: boolean }[] = [];
  setIrq(gsi: number, level: boolean): void {
    this.calls.push({ gsi, level });
  }
  levels(): boolean[] {
    return this.calls.map((c) => c.level);
  }
  clear(): void {
    this.calls.length = 0;
  }
}

function setup(irqNum = 4) {
  const irq = new RecordingIrq();
  const log = new MemoryLogger();
  const ctx: DeviceContext = {
    irq,
    log,
    guestErrors: new RateLimitedLog(log),
    requestReset: () => {},
    requestPowerOff: () => {},
  };
  const backend = new MemoryBackend();
  const uart = new Uart16550a('com1', ctx, { irq: irqNum, backend });
  const rd = (off: number, size: AccessSize = 1): number => uart.read(off, size);
  const wr = (off: number, value: number, size: AccessSize = 1): void => uart.write(off, size, value);
  return { uart, irq, log, backend, ctx, rd, wr };
}

describe('Uart16550a registers', () => {
  it('has the power-on values of the datasheet', () => {
    const { rd } = setup();
    expect(rd(IER)).toBe(0);
    expect(rd(IIR)).toBe(0x01);
    expect(rd(LCR)).toBe(0);
    expect(rd(MCR)).toBe(0);
    expect(rd(LSR)).toBe(0x60);
    // The virtual cable asserts CTS, DSR and DCD; no deltas.
    expect(rd(MSR)).toBe(0xb0);
  });

  it('switches offsets 0 and 1 to the divisor latch with DLAB', () => {
    const { rd, wr, backend } = setup();
    wr(LCR, 0x83);
    wr(DLL, 0x01);
    wr(DLM, 0x02);
    expect(rd(DLL)).toBe(0x01);
    expect(rd(DLM)).toBe(0x02);
    expect(backend.output().length).toBe(0);
    wr(LCR, 0x03);
    expect(rd(IER)).toBe(0);
    wr(IER, 0x05);
    expect(rd(IER)).toBe(0x05);
    wr(THR, 0x41);
    expect(backend.text()).toBe('A');
    wr(LCR, 0x83);
    expect(rd(DLL)).toBe(0x01);
    expect(rd(DLM)).toBe(0x02);
    expect(rd(LCR)).toBe(0x83);
  });

  it('keeps the scratch register', () => {
    const { rd, wr } = setup();
    for (const v of [0x00, 0x55, 0xaa, 0xff]) {
      wr(SCR, v);
      expect(rd(SCR)).toBe(v);
    }
  });

  it('masks IER and MCR to the bits a 16550A has', () => {
    const { rd, wr } = setup();
    wr(IER, 0xff);
    expect(rd(IER)).toBe(0x0f);
    wr(MCR, 0xff);
    expect(rd(MCR)).toBe(0x1f);
  });

  it('sends THR writes to the backend at once, LSR THRE|TEMT stay set', () => {
    const { rd, wr, backend } = setup();
    wr(LCR, 0x03);
    for (const c of 'hello\n') {
      wr(THR, c.charCodeAt(0));
      expect(rd(LSR) & 0x60).toBe(0x60);
    }
    expect(backend.text()).toBe('hello\n');
    expect(backend.writeCalls).toBe(6);
  });

  it('splits wide accesses into byte accesses', () => {
    const { rd, wr } = setup();
    wr(LCR, 0x80);
    wr(DLL, 0x3412, 2);
    expect(rd(DLL)).toBe(0x12);
    expect(rd(DLM)).toBe(0x34);
    expect(rd(DLL, 2)).toBe(0x3412);
    // Bytes past the last register read as all-ones.
    wr(SCR, 0x77);
    expect(rd(SCR, 2)).toBe(0xff77);
  });
});

describe('Uart16550a THRE interrupt', () => {
  it('raises on enabling ETBEI, clears on reading IIR, raises again after a THR write', () => {
    const { rd, wr, irq, uart } = setup(4);
    wr(MCR, 0x08); // OUT2
    expect(irq.calls).toEqual([]);
    wr(IER, 0x02);
    expect(irq.calls).toEqual([{ gsi: 4, level: true }]);
    expect(uart.irqAsserted).toBe(true);
    expect(rd(IIR)).toBe(0x02);
    expect(irq.levels()).toEqual([true, false]);
    expect(rd(IIR)).toBe(0x01);
    wr(THR, 0x41);
    expect(irq.levels()).toEqual([true, false, true]);
    expect(rd(IIR)).toBe(0x02);
    expect(rd(IIR)).toBe(0x01);
    expect(irq.levels()).toEqual([true, false, true, false]);
  });

  it('pulses the line when THR is written while the interrupt is pending', () => {
    const { wr, irq } = setup();
    wr(MCR, 0x08);
    wr(IER, 0x02);
    irq.clear();
    wr(THR, 0x41);
    // Cleared by the THR write, raised again as the (instant) transmitter empties THR.
    expect(irq.levels()).toEqual([false, true]);
  });

  it('re-raises when ETBEI is toggled off and on, and forgets it when ETBEI is cleared', () => {
    const { rd, wr, irq } = setup();
    wr(MCR, 0x08);
    wr(IER, 0x02);
    expect(rd(IIR)).toBe(0x02);
    expect(rd(IIR)).toBe(0x01);
    wr(IER, 0x00);
    wr(IER, 0x02);
    expect(rd(IIR)).toBe(0x02);
    wr(IER, 0x00);
    expect(irq.levels().at(-1)).toBe(false);
    wr(IER, 0x01); // ETBEI stays clear
    expect(rd(IIR)).toBe(0x01);
  });

  it('passes the Linux UART_BUG_THRE startup probe', () => {
    const { rd, wr } = setup();
    wr(MCR, 0x0b);
    wr(IER, 0x02);
    const iir1 = rd(IIR);
    wr(IER, 0x00);
    wr(IER, 0x02);
    const iir = rd(IIR);
    wr(IER, 0x00);
    expect(iir1 & 0x01).toBe(0);
    expect(iir & 0x01).toBe(0);
  });

  it('only calls setIrq when the level changes', () => {
    const { wr, irq } = setup();
    wr(MCR, 0x08);
    wr(IER, 0x02);
    wr(IER, 0x02);
    wr(IER, 0x03);
    wr(SCR, 1);
    wr(LCR, 3);
    expect(irq.levels()).toEqual([true]);
  });
});

describe('Uart16550a OUT2 gating', () => {
  it('keeps the IRQ line low without OUT2 while IIR still reports', () => {
    const { rd, wr, irq } = setup();
    wr(IER, 0x02);
    expect(irq.calls).toEqual([]);
    wr(MCR, 0x03); // DTR|RTS, no OUT2
    expect(irq.calls).toEqual([]);
    wr(MCR, 0x0b);
    expect(irq.levels()).toEqual([true]);
    wr(MCR, 0x03);
    expect(irq.levels()).toEqual([true, false]);
    expect(rd(IIR)).toBe(0x02);
  });

  it('disconnects the IRQ in loopback (the OUT2 pin is forced inactive)', () => {
    const { rd, wr, irq } = setup();
    wr(MCR, 0x08);
    wr(IER, 0x02);
    expect(irq.levels()).toEqual([true]);
    wr(MCR, 0x18);
    expect(irq.levels()).toEqual([true, false]);
    expect(rd(IIR) & 0x0f).toBe(0x02);
  });
});

describe('Uart16550a loopback and modem status', () => {
  it('passes Linux autoconfig: MCR=0x1A gives MSR & 0xF0 == 0x90', () => {
    const { rd, wr } = setup();
    wr(MCR, 0x1a);
    expect(rd(MSR) & 0xf0).toBe(0x90);
    wr(MCR, 0x1f);
    expect(rd(MSR) & 0xf0).toBe(0xf0);
    wr(MCR, 0x10);
    expect(rd(MSR) & 0xf0).toBe(0x00);
  });

  it('mirrors each MCR output on its MSR input', () => {
    const { rd, wr } = setup();
    const pairs: [number, number][] = [
      [0x01, 0x20], // DTR -> DSR
      [0x02, 0x10], // RTS -> CTS
      [0x04, 0x40], // OUT1 -> RI
      [0x08, 0x80], // OUT2 -> DCD
    ];
    for (const [mcr, msr] of pairs) {
      wr(MCR, 0x10 | mcr);
      expect(rd(MSR) & 0xf0).toBe(msr);
    }
  });

  it('sends transmitted bytes back to the receiver, not to the backend', () => {
    const { rd, wr, backend } = setup();
    wr(FCR, 0x07);
    wr(MCR, 0x10);
    wr(THR, 0x55);
    wr(THR, 0xaa);
    expect(backend.output().length).toBe(0);
    expect(rd(LSR) & 0x01).toBe(1);
    expect(rd(RBR)).toBe(0x55);
    expect(rd(RBR)).toBe(0xaa);
    expect(rd(LSR) & 0x01).toBe(0);
    wr(MCR, 0x00);
    wr(THR, 0x42);
    expect(backend.text()).toBe('B');
  });

  it('holds host input while in loopback and delivers it afterwards', () => {
    const { rd, wr, backend } = setup();
    wr(MCR, 0x10);
    backend.inject('x');
    expect(rd(LSR) & 0x01).toBe(0);
    wr(MCR, 0x00);
    expect(rd(LSR) & 0x01).toBe(1);
    expect(rd(RBR)).toBe(0x78);
  });

  it('sets delta bits on modem line changes and clears them on MSR read', () => {
    const { rd, wr, irq } = setup();
    wr(IER, 0x08);
    wr(MCR, 0x18); // loopback, OUT2 -> DCD stays 1; CTS, DSR drop
    // CTS and DSR went 1 -> 0, DCD stayed 1, RI stayed 0.
    expect(rd(IIR)).toBe(0x00);
    expect(rd(MSR)).toBe(0x80 | 0x01 | 0x02);
    expect(rd(MSR)).toBe(0x80);
    expect(rd(IIR)).toBe(0x01);
    wr(MCR, 0x1c); // OUT1 -> RI rises: no TERI
    expect(rd(MSR)).toBe(0xc0);
    wr(MCR, 0x18); // RI falls: TERI
    expect(rd(MSR)).toBe(0x84);
    wr(MCR, 0x10); // DCD falls: DDCD
    expect(rd(MSR)).toBe(0x08);
    expect(irq.calls).toEqual([]); // loopback: the IRQ pin is off
  });

  it('raises the modem status interrupt from external lines', () => {
    const { rd, wr, irq, uart } = setup();
    wr(MCR, 0x08);
    wr(IER, 0x08);
    uart.setModemInputs({ dcd: false });
    expect(irq.levels()).toEqual([true]);
    expect(rd(IIR)).toBe(0x00);
    expect(rd(MSR)).toBe(0x30 | 0x08);
    expect(irq.levels()).toEqual([true, false]);
  });
});

describe('Uart16550a receiver and FIFO', () => {
  it('reports FIFOs enabled in IIR bits 6-7', () => {
    const { rd, wr } = setup();
    wr(FCR, 0x01);
    expect(rd(IIR)).toBe(0xc1);
    wr(FCR, 0x00);
    expect(rd(IIR)).toBe(0x01);
    // Linux's 16750 probe: FCR bit 5 is reserved, IIR bit 5 stays 0.
    wr(FCR, 0x21);
    expect(rd(IIR)).toBe(0xc1);
  });

  it('raises RX data interrupt in 16450 mode and clears it by reading RBR', () => {
    const { rd, wr, irq, backend } = setup();
    wr(MCR, 0x08);
    wr(IER, 0x01);
    backend.inject('ab');
    expect(irq.levels()).toEqual([true]);
    expect(rd(IIR)).toBe(0x04);
    expect(rd(RBR)).toBe(0x61);
    // The queued byte moves into RBR as the guest reads.
    expect(rd(IIR)).toBe(0x04);
    expect(rd(RBR)).toBe(0x62);
    expect(rd(IIR)).toBe(0x01);
    expect(irq.levels()).toEqual([true, false]);
    expect(rd(LSR)).toBe(0x60);
  });

  it('reports data below the trigger level as a character timeout and at it as data available', () => {
    const { rd, wr, backend } = setup();
    wr(FCR, 0x41); // FIFO, trigger 4
    wr(IER, 0x01);
    expect(rd(IIR)).toBe(0xc1);
    backend.inject('ab');
    expect(rd(IIR)).toBe(0xcc);
    backend.inject('cd');
    expect(rd(IIR)).toBe(0xc4);
    expect(rd(RBR)).toBe(0x61);
    expect(rd(IIR)).toBe(0xcc);
    rd(RBR);
    rd(RBR);
    rd(RBR);
    expect(rd(IIR)).toBe(0xc1);
  });

  it.each([
    [0x01, 1],
    [0x41, 4],
    [0x81, 8],
    [0xc1, 14],
  ])('FCR=%i triggers at %i bytes', (fcr, level) => {
    const { rd, wr, backend } = setup();
    wr(FCR, fcr);
    wr(IER, 0x01);
    for (let i = 1; i <= 16; i++) {
      backend.inject(Uint8Array.of(i));
      expect(rd(IIR)).toBe(i >= level ? 0xc4 : 0xcc);
    }
  });

  it('does not report RX interrupts in FIFO polled mode', () => {
    const { rd, wr, backend } = setup();
    wr(FCR, 0xc1);
    backend.inject('abc');
    expect(rd(IIR)).toBe(0xc1);
    expect(rd(LSR) & 0x01).toBe(1);
  });

  it('queues input beyond the FIFO and loses none of it', () => {
    const { rd, wr, backend, uart } = setup();
    wr(FCR, 0x01);
    const data = Uint8Array.from({ length: 100 }, (_, i) => i);
    backend.inject(data);
    expect(uart.queuedInput).toBe(100 - 16);
    const got: number[] = [];
    while (rd(LSR) & 0x01) got.push(rd(RBR));
    expect(got).toEqual([...data]);
    expect(rd(LSR) & 0x01).toBe(0);
    expect(rd(LSR) & 0x02).toBe(0);
  });

  it('clears the RX FIFO with FCR bit 1 and on mode change', () => {
    const { rd, wr, backend } = setup();
    wr(FCR, 0x01);
    backend.inject('abc');
    wr(FCR, 0x03);
    expect(rd(LSR) & 0x01).toBe(0);
    backend.inject('def');
    wr(FCR, 0x00);
    expect(rd(LSR) & 0x01).toBe(0);
  });

  it('flags overrun in 16450 mode, keeping the newest byte', () => {
    const { rd, wr, irq } = setup();
    wr(MCR, 0x18);
    wr(IER, 0x05);
    wr(THR, 0x31);
    expect(rd(IIR)).toBe(0x04);
    wr(THR, 0x32);
    expect(rd(IIR)).toBe(0x06);
    expect(rd(LSR)).toBe(0x60 | 0x02 | 0x01);
    expect(rd(LSR)).toBe(0x60 | 0x01);
    expect(rd(IIR)).toBe(0x04);
    expect(rd(RBR)).toBe(0x32);
    expect(irq.calls).toEqual([]);
  });

  it('flags overrun in FIFO mode, keeping the FIFO', () => {
    const { rd, wr } = setup();
    wr(FCR, 0x01);
    wr(MCR, 0x10);
    wr(IER, 0x04);
    for (let i = 0; i < 17; i++) wr(THR, i);
    expect(rd(IIR)).toBe(0xc6);
    expect(rd(LSR) & 0x03).toBe(0x03);
    const got: number[] = [];
    while (rd(LSR) & 0x01) got.push(rd(RBR));
    expect(got).toEqual(Array.from({ length: 16 }, (_, i) => i));
  });

  it('orders interrupts: line status > RX data > THR empty > modem status', () => {
    const { rd, wr } = setup();
    wr(IER, 0x0f);
    wr(MCR, 0x10); // loopback: CTS/DSR/DCD drop -> modem status delta
    wr(THR, 0x31);
    wr(THR, 0x32); // overrun; THRE pending after the write
    expect(rd(IIR)).toBe(0x06);
    rd(LSR);
    expect(rd(IIR)).toBe(0x04);
    rd(RBR);
    expect(rd(IIR)).toBe(0x02); // reading it as the source clears THRE
    expect(rd(IIR)).toBe(0x00);
    rd(MSR);
    expect(rd(IIR)).toBe(0x01);
  });

  it('does not clear THRE when reading IIR reports a higher priority interrupt', () => {
    const { rd, wr } = setup();
    wr(IER, 0x03);
    wr(MCR, 0x10);
    wr(THR, 0x31);
    expect(rd(IIR)).toBe(0x04);
    rd(RBR);
    expect(rd(IIR)).toBe(0x02);
  });
});

describe('Uart16550a state', () => {
  it('round-trips through saveState/loadState (and JSON)', () => {
    const a = setup();
    a.wr(LCR, 0x80);
    a.wr(DLL, 0x01);
    a.wr(DLM, 0x00);
    a.wr(LCR, 0x1b);
    a.wr(FCR, 0x81);
    a.wr(IER, 0x0f);
    a.wr(MCR, 0x0b);
    a.wr(SCR, 0x5a);
    a.backend.inject(Uint8Array.from({ length: 40 }, (_, i) => 0x40 + i));
    a.rd(RBR);
    a.uart.setModemInputs({ ri: true });
    const saved = JSON.parse(JSON.stringify(a.uart.saveState()));
    expect(saved.version).toBe(1);

    const b = setup();
    b.uart.loadState(saved);
    expect(b.uart.saveState()).toEqual(a.uart.saveState());
    expect(b.irq.levels()).toEqual([true]);
    for (const off of [LCR, IER, MCR, SCR, MSR, LSR, IIR]) expect(b.rd(off)).toBe(a.rd(off));
    const drain = (x: ReturnType<typeof setup>): number[] => {
      const out: number[] = [];
      while (x.rd(LSR) & 0x01) out.push(x.rd(RBR));
      return out;
    };
    const got = drain(b);
    expect(got).toEqual(drain(a));
    expect(got.length).toBe(39);
    b.wr(LCR, 0x80);
    expect(b.rd(DLL)).toBe(0x01);
  });

  it('refuses other versions and malformed states', () => {
    const { uart } = setup();
    const good = uart.saveState();
    expect(() => uart.loadState({ ...good, version: 2 })).toThrow(DeviceStateError);
    expect(() => uart.loadState({ ...good, ier: 0x10 })).toThrow(DeviceStateError);
    expect(() => uart.loadState({ ...good, rxFifo: [1, 2] })).toThrow(DeviceStateError); // FIFO off: 1 byte
    expect(() => uart.loadState({ ...good, inputQueue: '%%' })).toThrow(DeviceStateError);
    expect(() => uart.loadState({ ...good, thrIPending: 1 })).toThrow(DeviceStateError);
    expect(uart.saveState()).toEqual(good);
  });

  it('reset() restores power-on values and lowers the IRQ', () => {
    const { uart, rd, wr, irq, backend } = setup();
    wr(MCR, 0x0b);
    wr(IER, 0x0f);
    wr(FCR, 0xc1);
    wr(LCR, 0x03);
    backend.inject('zzz');
    uart.reset();
    expect(irq.levels()).toEqual([true, false]);
    expect([rd(IER), rd(IIR), rd(LCR), rd(MCR), rd(LSR), rd(MSR)]).toEqual([0, 1, 0, 0, 0x60, 0xb0]);
  });

  it('closes its backend and ignores late input', () => {
    const { uart, backend, rd } = setup();
    uart.close();
    expect(backend.closed).toBe(true);
    backend.inject('x');
    expect(rd(LSR)).toBe(0x60);
  });
});

describe('Uart16550a hostile guest', () => {
  it('never throws for any value written to any register in any mode', () => {
    const { uart, backend } = setup();
    const sizes: AccessSize[] = [1, 2, 4];
    for (const lcr of [0x00, 0x80, 0xbf, 0xff]) {
      for (const mcr of [0x00, 0x10, 0x1f, 0xff]) {
        for (let off = 0; off < 8; off++) {
          for (let v = 0; v < 256; v++) {
            uart.write(LCR, 1, lcr);
            uart.write(MCR, 1, mcr);
            uart.write(off, 1, v);
            uart.read(off, 1);
          }
        }
        backend.inject('input');
      }
    }
    const weird = [-1, 2 ** 32, 2 ** 53, -(2 ** 53), 1.5, NaN, Infinity, -Infinity, 0xdeadbeef];
    for (const off of [-1, 8, 0xffff, 2 ** 31, 1.5, NaN]) {
      for (const size of sizes) {
        expect(() => uart.write(off, size, 0xff)).not.toThrow();
        expect(() => uart.read(off, size)).not.toThrow();
      }
    }
    for (let off = 0; off < 8; off++) {
      for (const size of sizes) {
        for (const v of weird) {
          expect(() => uart.write(off, size, v)).not.toThrow();
          const r = uart.read(off, size);
          expect(Number.isInteger(r) && r >= 0 && r < 2 ** (8 * size)).toBe(true);
        }
      }
    }
    const saved = JSON.parse(JSON.stringify(uart.saveState()));
    expect(() => uart.loadState(saved)).not.toThrow();
    uart.reset();
    uart.write(LCR, 1, 0x03);
    backend.take();
    uart.write(THR, 1, 0x4f);
    expect(backend.text()).toBe('O');
  });
});
