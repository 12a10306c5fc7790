import { describe, expect, it } from 'vitest';
import {
  LOADER_ENTRY_SIZE,
  TableLoader,
  TableLoaderError,
  parseTableLoader,
  runTableLoader,
} from '../../../../src/vmm/firmware/table-loader.js';

const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

function cstr(b: Uint8Array, at: number, len = 56): string {
  const f = b.subarray(at, at + len);
  const end = f.indexOf(0);
  expect(end).toBeGreaterThanOrEqual(0);
  expect([...f.subarray(end)].every((x) => x === 0)).toBe(true); // NUL padded
  return new TextDecoder().decode(f.subarray(0, end));
}

describe('TableLoader byte layout', () => {
  it('encodes ALLOCATE as {u32 1, file[56], u32 align, u8 zone}, zero padded to 128 bytes', () => {
    const b = new TableLoader()
      .allocate('etc/acpi/rsdp', 36, 16, 'fseg')
      .allocate('etc/acpi/tables', 4096, 64)
      .build();
    expect(b.length).toBe(2 * LOADER_ENTRY_SIZE);
    expect(dv(b).getUint32(0, true)).toBe(1);
    expect(cstr(b, 4)).toBe('etc/acpi/rsdp');
    expect(dv(b).getUint32(60, true)).toBe(16);
    expect(b[64]).toBe(2); // FSEG
    expect(b.subarray(65, 128).every((x) => x === 0)).toBe(true);
    expect(cstr(b, 128 + 4)).toBe('etc/acpi/tables');
    expect(dv(b).getUint32(128 + 60, true)).toBe(64);
    expect(b[128 + 64]).toBe(1); // HIGH
  });

  it('encodes ADD_POINTER as {u32 2, dest[56], src[56], u32 offset, u8 size}', () => {
    const b = new TableLoader()
      .allocate('etc/acpi/rsdp', 36, 16, 'fseg')
      .allocate('etc/acpi/tables', 4096, 64)
      .addPointer('etc/acpi/rsdp', 16, 4, 'etc/acpi/tables')
      .build()
      .subarray(2 * LOADER_ENTRY_SIZE);
    expect(b.length).toBe(128);
    expect(dv(b).getUint32(0, true)).toBe(2);
    expect(cstr(b, 4)).toBe('etc/acpi/rsdp');
    expect(cstr(b, 60)).toBe('etc/acpi/tables');
    expect(dv(b).getUint32(116, true)).toBe(16);
    expect(b[120]).toBe(4);
    expect(b.subarray(121).every((x) => x === 0)).toBe(true);
  });

  it('encodes ADD_CHECKSUM as {u32 3, file[56], u32 offset, u32 start, u32 length}', () => {
    const b = new TableLoader()
      .allocate('etc/acpi/tables', 4096, 64)
      .addChecksum('etc/acpi/tables', 0x49, 0x40, 0x74)
      .build()
      .subarray(LOADER_ENTRY_SIZE);
    expect(dv(b).getUint32(0, true)).toBe(3);
    expect(cstr(b, 4)).toBe('etc/acpi/tables');
    expect(dv(b).getUint32(60, true)).toBe(0x49);
    expect(dv(b).getUint32(64, true)).toBe(0x40);
    expect(dv(b).getUint32(68, true)).toBe(0x74);
    expect(b.subarray(72).every((x) => x === 0)).toBe(true);
  });

  it('parses what it builds, and skips unknown commands', () => {
    const loader = new TableLoader()
      .allocate('etc/acpi/rsdp', 36, 16, 'fseg')
      .allocate('etc/acpi/tables', 4096, 64)
      .addPointer('etc/acpi/rsdp', 16, 4, 'etc/acpi/tables')
      .addChecksum('etc/acpi/rsdp', 8, 0, 20);
    const script = loader.build();
    expect(parseTableLoader(script)).toEqual(loader.commands);
    const withUnknown = new Uint8Array(script.length + LOADER_ENTRY_SIZE);
    withUnknown.set(script);
    dv(withUnknown).setUint32(script.length, 4, true); // WRITE_POINTER, newer QEMU
    expect(parseTableLoader(withUnknown).at(-1)).toEqual({ kind: 'unknown', command: 4 });
    expect(() => parseTableLoader(script.subarray(1))).toThrow(TableLoaderError);
  });

  it('refuses commands firmware would reject', () => {
    const l = new TableLoader().allocate('a', 16, 16);
    expect(() => l.allocate('a', 16, 16)).toThrow(/twice/);
    expect(() => l.allocate('b', 16, 3)).toThrow(/power of two/);
    expect(() => l.allocate('b', 0, 16)).toThrow(TableLoaderError);
    expect(() => l.allocate('x'.repeat(56), 16, 16)).toThrow(TableLoaderError);
    expect(() => l.addPointer('a', 0, 4, 'b')).toThrow(/before it is allocated/);
    expect(() => l.addPointer('a', 13, 4, 'a')).toThrow(/outside/);
    expect(() => l.addPointer('a', 0, 3 as 4, 'a')).toThrow(/pointer size/);
    expect(() => l.addChecksum('a', 16, 0, 16)).toThrow(/outside/);
    expect(() => l.addChecksum('a', 0, 8, 9)).toThrow(/outside/);
    expect(l.commands).toHaveLength(1);
  });
});

describe('runTableLoader', () => {
  it('places files, patches pointers with their addresses and fixes checksums', () => {
    const rsdp = new Uint8Array(20);
    new TextEncoder().encodeInto('RSD PTR ', rsdp);
    dv(rsdp).setUint32(16, 0x10, true); // RSDT at offset 0x10 of etc/acpi/tables
    const tables = new Uint8Array(0x40).fill(0x11);
    tables[0x19] = 0;
    const script = new TableLoader()
      .allocate('etc/acpi/rsdp', rsdp.length, 16, 'fseg')
      .allocate('etc/acpi/tables', tables.length, 64)
      .addPointer('etc/acpi/rsdp', 16, 4, 'etc/acpi/tables')
      .addChecksum('etc/acpi/rsdp', 8, 0, 20)
      .addChecksum('etc/acpi/tables', 0x19, 0x10, 0x20)
      .build();
    const placed: string[] = [];
    const out = runTableLoader(
      script,
      new Map([
        ['etc/acpi/rsdp', rsdp],
        ['etc/acpi/tables', tables],
      ]),
      (file, size, align, zone) => {
        placed.push(`${file}:${size}:${align}:${zone}`);
        return zone === 'fseg' ? 0xf5a00 : 0x7ffe0000;
      },
    );
    expect(placed).toEqual(['etc/acpi/rsdp:20:16:fseg', 'etc/acpi/tables:64:64:high']);
    const r = out.get('etc/acpi/rsdp')!;
    expect(r.address).toBe(0xf5a00);
    expect(dv(r.data).getUint32(16, true)).toBe(0x7ffe0010);
    expect(r.data.reduce((s, x) => s + x, 0) & 0xff).toBe(0);
    const t = out.get('etc/acpi/tables')!.data;
    expect(t.subarray(0x10, 0x30).reduce((s, x) => s + x, 0) & 0xff).toBe(0);
    expect(rsdp[8]).toBe(0); // the inputs are not modified
  });

  it('throws on a file it does not have', () => {
    const script = new TableLoader().allocate('etc/acpi/tables', 4, 4).build();
    expect(() => runTableLoader(script, new Map(), () => 0)).toThrow(/no fw_cfg file/);
  });
});
