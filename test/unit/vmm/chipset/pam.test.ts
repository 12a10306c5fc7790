import { describe, expect, it } from 'vitest';
import {
  LEGACY_AREA_SIZE,
  LEGACY_AREA_START,
  PAM_SEGMENTS,
  pamModes,
  pamSegment,
  type PamMode,
} from '../../../../src/vmm/chipset/pam.js';
import { hex, pamSetup as setup } from './helpers.js';

/** PAM register bytes that put every segment in `mode`. */
const all = (mode: PamMode) => [mode << 4, ...new Array<number>(6).fill(mode | (mode << 4))];
const le = (bytes: Uint8Array, at: number, n: number) => {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + bytes[at + i]!;
  return v;
};

describe('PAM segments and register decoding', () => {
  it('has 13 segments: 0xF0000 (64 KiB), then 16 KiB pieces from 0xC0000 to 0xEFFFF', () => {
    const segs = Array.from({ length: PAM_SEGMENTS }, (_, s) => pamSegment(s));
    expect(segs.map(({ gpa, size }) => `${hex(gpa)}+${hex(size)}`)).toEqual([
      'f0000+10000',
      'c0000+4000',
      'c4000+4000',
      'c8000+4000',
      'cc000+4000',
      'd0000+4000',
      'd4000+4000',
      'd8000+4000',
      'dc000+4000',
      'e0000+4000',
      'e4000+4000',
      'e8000+4000',
      'ec000+4000',
    ]);
    // Together they tile 0xC0000-0xFFFFF exactly.
    const sorted = [...segs].sort((a, b) => a.gpa - b.gpa);
    let at = LEGACY_AREA_START;
    for (const s of sorted) {
      expect(s.gpa).toBe(at);
      at += s.size;
    }
    expect(at).toBe(LEGACY_AREA_START + LEGACY_AREA_SIZE);
  });

  it('reads PAM0 bits 5:4 for 0xF0000 and PAM1-6 low nibble then high nibble from 0xC0000', () => {
    //           PAM0  PAM1  PAM2  PAM3  PAM4  PAM5  PAM6
    const regs = [0x1f, 0x21, 0x03, 0x30, 0x12, 0xcc, 0x3b];
    expect(pamModes(regs)).toEqual([
      1, // 0xF0000: PAM0 bits 5:4 (its low nibble is reserved)
      1, // 0xC0000: PAM1 low
      2, // 0xC4000: PAM1 high
      3, // 0xC8000: PAM2 low
      0, // 0xCC000: PAM2 high
      0, // 0xD0000: PAM3 low
      3, // 0xD4000: PAM3 high
      2, // 0xD8000: PAM4 low
      1, // 0xDC000: PAM4 high
      0, // 0xE0000: PAM5 low (bits 3:2 are reserved)
      0, // 0xE4000: PAM5 high (bits 7:6 are reserved)
      3, // 0xE8000: PAM6 low (0xb & 3)
      3, // 0xEC000: PAM6 high
    ]);
    expect(pamModes(all(3))).toEqual(new Array(13).fill(3));
    expect(pamModes(new Array(7).fill(0))).toEqual(new Array(13).fill(0));
  });
});

describe('PAM memory slots', () => {
  it('maps the ROM side read-only in mode 0, RAM read-only in 1, nothing in 2, RAM read-write in 3', () => {
    const { pam, mapper } = setup();
    pam.setMode(1, 0); // 0xC0000: pc.rom
    pam.setMode(0, 0); // 0xF0000: the last 64 KiB of the BIOS
    pam.setMode(9, 0); // 0xE0000: the BIOS at 0x20000 of its 256 KiB
    pam.setMode(2, 1);
    pam.setMode(3, 2);
    pam.setMode(4, 3);
    expect(mapper.take()).toEqual([
      'map c0000+4000 2@0 ro -> 10',
      'map f0000+10000 3@30000 ro -> 11',
      'map e0000+4000 3@20000 ro -> 12',
      'map c4000+4000 1@c4000 ro -> 13',
      'map cc000+4000 1@cc000 rw -> 14',
    ]);
    expect([0, 1, 2, 3, 4, 5].map((s) => pam.mode(s))).toEqual([0, 0, 1, 2, 3, undefined]);
  });

  it('maps every segment on the first apply and unmaps the old slot before mapping the new one', () => {
    const { pam, mapper } = setup();
    pam.apply(new Array(7).fill(0));
    const first = mapper.take();
    expect(first).toHaveLength(13);
    expect(first.every((c) => c.startsWith('map ') && c.includes(' ro -> '))).toBe(true);
    expect(mapper.live.size).toBe(13);

    pam.apply(all(3)); // SeaBIOS: make it all DRAM to copy itself in
    const calls = mapper.take();
    expect(calls).toHaveLength(26);
    expect(calls.slice(0, 2)).toEqual(['unmap 10', 'map f0000+10000 1@f0000 rw -> 23']);
    expect(calls.slice(2, 4)).toEqual(['unmap 11', 'map c0000+4000 1@c0000 rw -> 24']);
    expect(mapper.live.size).toBe(13);

    pam.apply(all(1)); // ... then read-only
    expect(
      mapper
        .take()
        .filter((c) => c.startsWith('map'))
        .every((c) => / 1@[0-9a-f]+ ro /.test(c)),
    ).toBe(true);

    pam.apply(all(2)); // write-only DRAM: every access exits
    expect(mapper.take().every((c) => c.startsWith('unmap'))).toBe(true);
    expect(mapper.live.size).toBe(0);
  });

  it('changes nothing for segments whose mode is unchanged', () => {
    const { pam, mapper } = setup();
    const regs = [0x30, 0x31, 0x00, 0x22, 0x33, 0x10, 0x03];
    pam.apply(regs);
    mapper.take();
    pam.apply(regs);
    pam.apply(Uint8Array.from(regs));
    expect(mapper.take()).toEqual([]);
    // One nibble: one segment (0xE4000, PAM5 high) remapped.
    pam.apply([0x30, 0x31, 0x00, 0x22, 0x33, 0x30, 0x03]);
    expect(mapper.take()).toEqual([
      expect.stringMatching(/^unmap \d+$/),
      expect.stringMatching(/^map e4000\+4000 1@e4000 rw -> \d+$/),
    ]);
  });
});

describe('PAM accesses that exit to the MMIO bus', () => {
  it('mode 2 reads the ROM side and writes DRAM', () => {
    const { pam, ram, rom, romBefore } = setup();
    pam.apply(all(2));
    // Every segment reads its own ROM bytes, at its own offset.
    for (const off of [0x0, 0x3ffc, 0x4000, 0x10123, 0x20000, 0x2fff0, 0x30000, 0x3fffc]) {
      expect(pam.read(off, 4), hex(off)).toBe(le(rom, off, 4));
      expect(pam.read(off + 1, 2), hex(off)).toBe(le(rom, off + 1, 2));
      expect(pam.read(off + 3, 1), hex(off)).toBe(rom[off + 3]);
    }
    pam.write(0x30010, 4, 0xdeadbeef); // 0xF0010
    pam.write(0x4002, 2, 0x1234); // 0xC4002
    pam.write(0x2ffff, 1, 0x5a); // 0xEFFFF
    expect(le(ram, 0x30010, 4)).toBe(0xdeadbeef);
    expect(le(ram, 0x4002, 2)).toBe(0x1234);
    expect(ram[0x2ffff]).toBe(0x5a);
    // Reads still come from the ROM side, which the writes did not touch.
    expect(pam.read(0x30010, 4)).toBe(le(rom, 0x30010, 4));
    expect(Buffer.compare(rom, romBefore)).toBe(0);
  });

  it('drops writes in modes 0 and 1 (they go to the ROM side); mode 1 reads DRAM', () => {
    const { pam, ram, rom, romBefore } = setup();
    const ramBefore = ram.slice();
    pam.setMode(0, 0); // 0xF0000: ROM
    pam.setMode(5, 1); // 0xD0000: DRAM read-only
    pam.write(0x30000, 4, 0x11223344);
    pam.write(0x10000, 4, 0x55667788);
    pam.write(0x13fff, 1, 0x99);
    expect(Buffer.compare(ram, ramBefore)).toBe(0);
    expect(Buffer.compare(rom, romBefore)).toBe(0);
    expect(pam.read(0x30000, 4)).toBe(le(rom, 0x30000, 4));
    expect(pam.read(0x10000, 4)).toBe(le(ram, 0x10000, 4));
    expect(pam.read(0x13ffe, 2)).toBe(le(ram, 0x13ffe, 2));
    expect(le(ram, 0x10000, 4)).not.toBe(le(rom, 0x10000, 4)); // the two sides do differ
  });

  it('mode 3 reads and writes DRAM; before any apply a segment answers as ROM', () => {
    const { pam, ram, rom } = setup();
    expect(pam.read(0x8000, 4)).toBe(le(rom, 0x8000, 4));
    pam.write(0x8000, 4, 0xcafef00d);
    expect(le(ram, 0x8000, 4)).not.toBe(0xcafef00d);
    pam.setMode(3, 3); // 0xC8000
    pam.write(0x8000, 4, 0xcafef00d);
    expect(pam.read(0x8000, 4)).toBe(0xcafef00d);
    expect(le(ram, 0x8000, 4)).toBe(0xcafef00d);
  });
});
