/**
 * Legacy option ROM checksums: the BIOS checks that a ROM's bytes sum to 0
 * (mod 256), and a $PnP expansion header's too (BIOS Boot Specification
 * 1.01, appendix A). The assembler cannot compute a sum over its own output,
 * so ROM sources leave both bytes 0 and the VMM fixes them when it offers a
 * ROM.
 */

/** Fixes the $PnP header checksum and the whole-ROM checksum (last byte), in place; returns `rom`. */
export function fixOptionRomChecksums(rom: Uint8Array): Uint8Array {
  if (rom[0] !== 0x55 || rom[1] !== 0xaa) throw new Error('option ROM: no 55 AA signature');
  if (rom.length % 512 !== 0 || rom[2]! * 512 !== rom.length) {
    throw new Error(`option ROM: size byte ${rom[2]} does not match length ${rom.length}`);
  }
  const sum = (a: Uint8Array) => a.reduce((s, b) => (s + b) & 0xff, 0);
  const pnp = rom[0x1a]! | (rom[0x1b]! << 8);
  if (pnp && pnp + 32 <= rom.length && String.fromCharCode(...rom.subarray(pnp, pnp + 4)) === '$PnP') {
    const len = rom[pnp + 5]! * 16;
    rom[pnp + 9] = 0;
    rom[pnp + 9] = (0x100 - sum(rom.subarray(pnp, pnp + len))) & 0xff;
  }
  rom[rom.length - 1] = 0;
  rom[rom.length - 1] = (0x100 - sum(rom)) & 0xff;
  return rom;
}
