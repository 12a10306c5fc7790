/**
 * Firmware boot of a multiboot kernel: what the VMM gives SeaBIOS so that
 * mvisor's multiboot option ROM (roms/multiboot.asm) loads the kernel after
 * POST, as QEMU's -kernel does with its own ROM. The VMM plans the load
 * (src/vmm/boot/multiboot.ts, info block below 640 KiB so real-mode code
 * can finish it) and offers:
 *   genroms/mvisor-multiboot.rom the ROM, first in the boot order
 *   etc/mvisor/multiboot        the plan (entry, info block, memory map, chunks)
 *   etc/mvisor/multiboot-data   the chunks' bytes (segments with their zeros, modules, info block)
 * The ROM copies the chunks with fw_cfg DMA, rewrites the memory map from
 * INT 15h E820 (SeaBIOS's own reservations included) and enters the kernel.
 */
import { MULTIBOOT_ROM_BASE64 } from './roms/multiboot-rom.js';
import { fixOptionRomChecksums } from './option-rom.js';
import { MULTIBOOT_MMAP_ENTRY_SIZE, type MultibootPlan } from '../boot/multiboot.js';
import { LOW_MEMORY_END } from '../boot/layout.js';
import { BootError } from '../boot/errors.js';

/** SeaBIOS runs every genroms/ file; `.rom` keeps it apart from option-rom devices (genroms/<name>.bin). */
export const MULTIBOOT_ROM_FILE = 'genroms/mvisor-multiboot.rom';
export const MULTIBOOT_PLAN_FILE = 'etc/mvisor/multiboot';
export const MULTIBOOT_DATA_FILE = 'etc/mvisor/multiboot-data';
/** "MVMB", little endian. */
export const MULTIBOOT_PLAN_MAGIC = 0x424d564d;
/** The ROM's limit (MAX_CHUNKS in multiboot.asm). */
export const MULTIBOOT_MAX_CHUNKS = 32;
/** Memory map entries the ROM may write (SeaBIOS reports a handful). */
export const MULTIBOOT_MMAP_CAPACITY = 32;
const PLAN_HEADER = 24;

/** The option ROM with its checksums fixed. */
export function multibootRom(): Uint8Array {
  return fixOptionRomChecksums(new Uint8Array(Buffer.from(MULTIBOOT_ROM_BASE64, 'base64')));
}

/** The data file: every write's bytes followed by its zeros, in plan order. */
export function multibootData(plan: MultibootPlan): Uint8Array {
  const total = plan.writes.reduce((n, w) => n + w.data.length + w.zeros, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const w of plan.writes) {
    out.set(w.data, at);
    at += w.data.length + w.zeros;
  }
  return out;
}

/** The plan file, given the fw_cfg selector of the data file. */
export function multibootPlanFile(plan: MultibootPlan, dataSelector: number, path: string): Uint8Array {
  if (plan.writes.length > MULTIBOOT_MAX_CHUNKS) {
    throw new BootError(
      `${path}: ${plan.writes.length} pieces to load (segments, modules, info block); firmware boot loads at most ${MULTIBOOT_MAX_CHUNKS}`,
    );
  }
  for (const [what, addr] of [
    ['information block', plan.infoAddr + plan.info.size],
    ['memory map', plan.mmap.addr + plan.mmap.capacity * MULTIBOOT_MMAP_ENTRY_SIZE],
  ] as const) {
    if (addr > LOW_MEMORY_END) {
      throw new BootError(`${path}: the multiboot ${what} must lie below 640 KiB for firmware boot`);
    }
  }
  const out = new Uint8Array(PLAN_HEADER + 8 * plan.writes.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MULTIBOOT_PLAN_MAGIC, true);
  dv.setUint32(4, plan.entry >>> 0, true);
  dv.setUint32(8, plan.infoAddr, true);
  dv.setUint32(12, plan.mmap.addr, true);
  dv.setUint32(16, plan.mmap.capacity, true);
  dv.setUint16(20, dataSelector, true);
  dv.setUint16(22, plan.writes.length, true);
  plan.writes.forEach((w, i) => {
    dv.setUint32(PLAN_HEADER + 8 * i, w.addr, true);
    dv.setUint32(PLAN_HEADER + 8 * i + 4, w.data.length + w.zeros, true);
  });
  return out;
}
