/**
 * Guest RAM to a sparse file and back, on a real file: zero pages are
 * holes on disk, restore zeroes what the holes cover, and a file that is
 * not this VM's RAM (or a user's file in the way) is refused.
 */
import { existsSync, mkdtempSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RAM_FILE_PAGE, readRamFile, writeRamFile } from '../../../../src/vmm/snapshot/ram-file.js';

const MiB = 1024 * 1024;
const addonBuilt = existsSync(new URL('../../../../build/Release/mvisor_kvm.node', import.meta.url));

/** Two regions as a VM with RAM below and above the PCI hole has, with data at the edges and a lone byte. */
function guestRam(): Uint8Array[] {
  const low = new Uint8Array(16 * MiB);
  const high = new Uint8Array(48 * MiB);
  low.fill(0x11, 0, RAM_FILE_PAGE); // the first page
  low[5 * MiB + 123] = 0x5a; // one byte in an otherwise zero page
  low.fill(0x22, low.length - 2 * RAM_FILE_PAGE); // the last two pages of the region
  for (let i = 0; i < RAM_FILE_PAGE * 3; i++) high[20 * MiB + i] = (i * 7) & 0xff; // a run of three pages
  high.fill(0x33, high.length - RAM_FILE_PAGE);
  return [low, high];
}

describe.skipIf(!addonBuilt)('RAM file (sparse snapshot RAM)', () => {
  it('writes zero pages as holes and restores every byte, zeroing what the holes cover', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mvisor-ram-'));
    const path = join(dir, 'ram');
    const ram = guestRam();
    const w = writeRamFile(path, ram);
    expect(w).toEqual({ size: 64 * MiB, dataBytes: 8 * RAM_FILE_PAGE });
    const st = statSync(path);
    expect(st.size).toBe(64 * MiB);
    expect(st.blocks * 512).toBeLessThan(1 * MiB); // sparse on disk
    // Restore over garbage: holes must come back as zeros.
    const back = [new Uint8Array(16 * MiB).fill(0xaa), new Uint8Array(48 * MiB).fill(0xaa)];
    const r = readRamFile(path, back);
    expect(r.dataBytes).toBe(8 * RAM_FILE_PAGE);
    expect(Buffer.compare(back[0]!, ram[0]!)).toBe(0);
    expect(Buffer.compare(back[1]!, ram[1]!)).toBe(0);
  });

  it('never writes over an existing file, and refuses a file of another size, naming it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mvisor-ram-'));
    const path = join(dir, 'ram');
    writeFileSync(path, "the user's file");
    expect(() => writeRamFile(path, guestRam())).toThrow(/EEXIST/);
    expect(readFileSync(path, 'utf8')).toBe("the user's file");
    const other = join(dir, 'ram2');
    writeRamFile(other, guestRam());
    truncateSync(other, 32 * MiB);
    expect(() => readRamFile(other, guestRam())).toThrow(
      `${other}: holds ${32 * MiB} bytes of RAM, the VM has ${64 * MiB}: it is truncated or from another VM`,
    );
    expect(() => writeRamFile(join(dir, 'ram3'), [new Uint8Array(1000)])).toThrow(
      /not a whole number of pages/,
    );
  });
});
