/**
 * Builds minimal PVH-bootable ELF64 kernels for tests: one PT_LOAD segment
 * holding `code` at `loadAddr` (which is also the 32-bit PVH entry) and a
 * PT_NOTE with the Xen PHYS32_ENTRY note, the way Linux's vmlinux carries it.
 */
export function tinyPvhElf(code: Uint8Array | number[], loadAddr = 0x100000): Uint8Array {
  const body = Uint8Array.from(code);
  const ehdr = 64;
  const phdr = 56;
  const noteName = 'Xen\0';
  const noteSize = 12 + 4 + 4; // namesz, descsz, type, "Xen\0", 4-byte entry
  const phoff = ehdr;
  const noteOff = phoff + 2 * phdr;
  const codeOff = (noteOff + noteSize + 15) & ~15;
  const buf = new Uint8Array(codeOff + body.length);
  const dv = new DataView(buf.buffer);
  buf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0); // \x7fELF, 64-bit, little endian, version 1
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, 62, true); // EM_X86_64
  dv.setUint32(20, 1, true);
  dv.setBigUint64(24, BigInt(loadAddr), true); // e_entry
  dv.setBigUint64(32, BigInt(phoff), true);
  dv.setUint16(52, ehdr, true);
  dv.setUint16(54, phdr, true);
  dv.setUint16(56, 2, true); // e_phnum
  dv.setUint16(58, 64, true); // e_shentsize
  // PT_LOAD
  let p = phoff;
  dv.setUint32(p, 1, true);
  dv.setUint32(p + 4, 7, true); // RWX
  dv.setBigUint64(p + 8, BigInt(codeOff), true);
  dv.setBigUint64(p + 16, BigInt(loadAddr), true);
  dv.setBigUint64(p + 24, BigInt(loadAddr), true);
  dv.setBigUint64(p + 32, BigInt(body.length), true);
  dv.setBigUint64(p + 40, BigInt(body.length), true);
  dv.setBigUint64(p + 48, 0x1000n, true);
  // PT_NOTE
  p += phdr;
  dv.setUint32(p, 4, true);
  dv.setUint32(p + 4, 4, true);
  dv.setBigUint64(p + 8, BigInt(noteOff), true);
  dv.setBigUint64(p + 32, BigInt(noteSize), true);
  dv.setBigUint64(p + 40, BigInt(noteSize), true);
  dv.setBigUint64(p + 48, 4n, true);
  // the note: XEN_ELFNOTE_PHYS32_ENTRY (18)
  dv.setUint32(noteOff, 4, true);
  dv.setUint32(noteOff + 4, 4, true);
  dv.setUint32(noteOff + 8, 18, true);
  buf.set(new TextEncoder().encode(noteName), noteOff + 12);
  dv.setUint32(noteOff + 16, loadAddr, true);
  buf.set(body, codeOff);
  return buf;
}

/** x86 snippets (32-bit protected mode) for planted guests. */
export const x86 = {
  /** mov dx, port; mov al, byte; out dx, al  — one byte per character. */
  print(text: string, port = 0x3f8): number[] {
    const out: number[] = [0x66, 0xba, port & 0xff, port >> 8];
    for (const ch of Buffer.from(text)) out.push(0xb0, ch, 0xee);
    return out;
  },
  /** Pulses the i8042 reset line: mov al, 0xfe; out 0x64, al. */
  resetViaI8042: [0xb0, 0xfe, 0xe6, 0x64],
  /** Writes 0x06 (SYS_RST | RST_CPU) to the reset control register 0xCF9. */
  resetViaCf9: [0x66, 0xba, 0xf9, 0x0c, 0xb0, 0x06, 0xee],
  /**
   * Acts like a minimal ACPI OS: enables the power button event (PM1a_EN at
   * 0x602), polls PM1a_STS (0x600) until PWRBTN_STS is set, then enters S5
   * by writing SLP_EN with SLP_TYP 0 to PM1a_CNT (0x604).
   */
  acpiPowerButtonToS5: [
    ...[0x66, 0xba, 0x02, 0x06, 0x66, 0xb8, 0x00, 0x01, 0x66, 0xef], // mov dx,0x602; mov ax,0x100; out dx,ax
    ...[0x66, 0xba, 0x00, 0x06, 0x66, 0xed, 0x66, 0xa9, 0x00, 0x01, 0x74, 0xf4], // poll: in ax,dx; test ax,0x100; jz poll
    ...[0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00, 0x20, 0x66, 0xef], // mov dx,0x604; mov ax,0x2000; out dx,ax
  ],
  /** Enables the ACPI power button event, then ignores it (a guest that never shuts down). */
  acpiDeafToPowerButton: [0x66, 0xba, 0x02, 0x06, 0x66, 0xb8, 0x00, 0x01, 0x66, 0xef, 0xfa, 0xf4, 0xeb, 0xfd],
  /** ud2: with the boot IDT (limit 0) this escalates to a triple fault. */
  ud2: [0x0f, 0x0b],
  /** mov eax, addr; jmp eax */
  jumpTo(addr: number): number[] {
    return [0xb8, addr & 0xff, (addr >> 8) & 0xff, (addr >> 16) & 0xff, (addr >>> 24) & 0xff, 0xff, 0xe0];
  },
  fwait: [0x9b],
  hang: [0xeb, 0xfe],
};
