import { describe, expect, it } from 'vitest';
import { pcMemoryLayout } from '../../../../src/vmm/boot/layout.js';
import { findWakingVector } from '../../../../src/vmm/firmware/acpi/waking-vector.js';
import { buildAcpiTables, linkAcpiTables } from '../../../../src/vmm/firmware/acpi/tables.js';
import { memoryFor } from '../boot/helpers.js';

const TABLES = 0x7f0_0000;
const RSDP = 0xf_5a10;

/** Guest memory with mvisor's ACPI tables linked at TABLES, the RSDP at RSDP. */
function machine() {
  const mem = memoryFor(pcMemoryLayout(128 * 1024 * 1024));
  const built = buildAcpiTables({ cpus: 2, pmBase: 0x600 });
  const linked = linkAcpiTables(built, { tablesAddr: TABLES, rsdpAddr: RSDP });
  mem.write(TABLES, linked.tables);
  mem.write(RSDP, linked.rsdp);
  const facs = TABLES + built.offsets.FACS!;
  return { mem, facs };
}

describe('findWakingVector (S3 resume, as firmware does it)', () => {
  it('follows RSDP -> XSDT -> FADT -> FACS to the Firmware_Waking_Vector the OS wrote', () => {
    const { mem, facs } = machine();
    expect(findWakingVector(mem)).toEqual({ vector: 0, facs });
    new DataView(mem.view(facs, 64).buffer, mem.view(facs, 64).byteOffset).setUint32(12, 0x1000, true);
    expect(findWakingVector(mem)).toEqual({ vector: 0x1000, facs });
    new DataView(mem.view(facs, 64).buffer, mem.view(facs, 64).byteOffset).setUint32(12, 0x100000, true);
    expect(findWakingVector(mem)).toEqual({
      problem: 'the FACS waking vector 0x100000 is not a real-mode address (below 1 MiB)',
    });
  });

  it('falls back to the RSDT when the XSDT is broken, and reports X_Firmware_Waking_Vector', () => {
    const { mem, facs } = machine();
    const rsdp = mem.view(RSDP, 36);
    const xsdt = Number(new DataView(rsdp.buffer, rsdp.byteOffset).getBigUint64(24, true));
    mem.view(xsdt, 4).set([0x58, 0x58, 0x58, 0x58]); // "XXXX"
    const f = new DataView(mem.view(facs, 64).buffer, mem.view(facs, 64).byteOffset);
    f.setUint32(12, 0x9000, true);
    f.setBigUint64(24, 0x123456n, true);
    mem.view(facs + 32, 1)[0] = 1; // FACS version 1
    expect(findWakingVector(mem)).toEqual({ vector: 0x9000, facs, x: 0x123456n });
  });

  it('says what is missing for guest memory without tables or with garbage pointers', () => {
    const empty = memoryFor(pcMemoryLayout(64 * 1024 * 1024));
    expect(findWakingVector(empty)).toEqual({ problem: 'no ACPI RSDP in 0xE0000-0xFFFFF' });
    const { mem } = machine();
    const rsdp = mem.view(RSDP, 36);
    const dv = new DataView(rsdp.buffer, rsdp.byteOffset);
    dv.setBigUint64(24, 0xffff_ffff_ffff_f000n, true); // XSDT far outside RAM
    dv.setUint32(16, 0xfffff000, true); // RSDT in the BIOS ROM hole
    rsdp[8] = 0;
    rsdp[8] = (0x100 - rsdp.subarray(0, 20).reduce((s, b) => (s + b) & 0xff, 0)) & 0xff;
    expect(findWakingVector(mem)).toEqual({ problem: 'the RSDP points at neither an XSDT nor an RSDT' });
  });
});
