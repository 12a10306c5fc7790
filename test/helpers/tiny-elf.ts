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

// --- a hostile platform guest ------------------------------------------------

/** 32-bit general registers by their encoding number. */
const R = { eax: 0, ecx: 1, edx: 2, ebx: 3, esp: 4, ebp: 5, esi: 6, edi: 7 } as const;
type Reg32 = (typeof R)[keyof typeof R];
type PortSize = 1 | 2 | 4;
/** Condition codes of Jcc (0x0F 0x80+cc). */
const CC = { b: 0x2, ae: 0x3, e: 0x4, ne: 0x5 } as const;

/**
 * Just enough of an x86 assembler (32-bit protected mode, flat segments)
 * for the hostile guest below: forward and backward labels, rel32 jumps.
 */
class Asm32 {
  readonly code: number[] = [];
  private readonly labels = new Map<string, number>();
  private readonly fixups: { at: number; label: string }[] = [];
  private nextLabel = 0;

  raw(bytes: readonly number[]): this {
    this.code.push(...bytes);
    return this;
  }
  private d32(v: number): this {
    return this.raw([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff]);
  }
  /** A fresh label name. */
  fresh(): string {
    return `.L${this.nextLabel++}`;
  }
  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.labels.set(name, this.code.length);
    return this;
  }
  private rel32(label: string): this {
    this.fixups.push({ at: this.code.length, label });
    return this.d32(0);
  }
  jmp(label: string): this {
    return this.raw([0xe9]).rel32(label);
  }
  j(cc: keyof typeof CC, label: string): this {
    return this.raw([0x0f, 0x80 + CC[cc]]).rel32(label);
  }
  /** mov r32, imm32 */
  mov(r: Reg32, imm: number): this {
    return this.raw([0xb8 + r]).d32(imm);
  }
  /** mov dst, src */
  movr(dst: Reg32, src: Reg32): this {
    return this.raw([0x89, 0xc0 | (src << 3) | dst]);
  }
  /** mov dx, port */
  dx(port: number): this {
    return this.raw([0x66, 0xba, port & 0xff, port >> 8]);
  }
  /** out dx, al/ax/eax */
  out(size: PortSize): this {
    return this.raw(size === 1 ? [0xee] : size === 2 ? [0x66, 0xef] : [0xef]);
  }
  /** in al/ax/eax, dx */
  in(size: PortSize): this {
    return this.raw(size === 1 ? [0xec] : size === 2 ? [0x66, 0xed] : [0xed]);
  }
  /** mov dx, port; out dx, (e)a(x|l) */
  outp(port: number, size: PortSize): this {
    return this.dx(port).out(size);
  }
  inp(port: number, size: PortSize): this {
    return this.dx(port).in(size);
  }
  private alu(op: number, r: Reg32, imm: number): this {
    return this.raw([0x81, 0xc0 | (op << 3) | r]).d32(imm);
  }
  add(r: Reg32, imm: number): this {
    return this.alu(0, r, imm);
  }
  or(r: Reg32, imm: number): this {
    return this.alu(1, r, imm);
  }
  and(r: Reg32, imm: number): this {
    return this.alu(4, r, imm);
  }
  cmp(r: Reg32, imm: number): this {
    return this.alu(7, r, imm);
  }
  /** test r32, imm32 */
  test(r: Reg32, imm: number): this {
    return this.raw([0xf7, 0xc0 | r]).d32(imm);
  }
  /** xor dst, src */
  xorr(dst: Reg32, src: Reg32): this {
    return this.raw([0x31, 0xc0 | (src << 3) | dst]);
  }
  shl(r: Reg32, n: number): this {
    return this.raw([0xc1, 0xe0 | r, n]);
  }
  shr(r: Reg32, n: number): this {
    return this.raw([0xc1, 0xe8 | r, n]);
  }
  dec(r: Reg32): this {
    return this.raw([0x48 + r]);
  }
  /** mov [addr], r32 */
  store(addr: number, r: Reg32): this {
    return this.raw([0x89, 0x05 | (r << 3)]).d32(addr);
  }
  /** mov r32, [addr] */
  load(r: Reg32, addr: number): this {
    return this.raw([0x8b, 0x05 | (r << 3)]).d32(addr);
  }
  /** mov dword [addr], imm32 */
  storeImm(addr: number, imm: number): this {
    return this.raw([0xc7, 0x05]).d32(addr).d32(imm);
  }
  /** mov [base], src (base neither esp nor ebp) */
  storeAt(base: Reg32, src: Reg32): this {
    return this.raw([0x89, (src << 3) | base]);
  }
  /** rep outs{b,w,d} (DS:ESI, ECX times, port DX) */
  repOuts(size: PortSize): this {
    return this.raw(size === 1 ? [0xf3, 0x6e] : size === 2 ? [0xf3, 0x66, 0x6f] : [0xf3, 0x6f]);
  }
  /** rep ins{b,w,d} (ES:EDI, ECX times, port DX) */
  repIns(size: PortSize): this {
    return this.raw(size === 1 ? [0xf3, 0x6c] : size === 2 ? [0xf3, 0x66, 0x6d] : [0xf3, 0x6d]);
  }
  /** Emits `body` in a loop that runs while cmp(counter, end) is below, counter += step. */
  loop(counter: Reg32, from: number, end: number, step: number, body: () => void): this {
    const top = this.fresh();
    this.mov(counter, from).label(top);
    body();
    return this.add(counter, step).cmp(counter, end).j('b', top);
  }
  /** Prints `ok` on COM1 when eax == value, else `bad`. */
  check(value: number, ok: string, bad: string): this {
    const no = this.fresh();
    const end = this.fresh();
    this.cmp(R.eax, value).j('ne', no).raw(x86.print(ok));
    this.jmp(end).label(no).raw(x86.print(bad));
    return this.label(end);
  }
  /** The code with every jump resolved. */
  finish(): number[] {
    for (const f of this.fixups) {
      const target = this.labels.get(f.label);
      if (target === undefined) throw new Error(`undefined label ${f.label}`);
      const rel = target - (f.at + 4);
      this.code.splice(f.at, 4, rel & 0xff, (rel >> 8) & 0xff, (rel >> 16) & 0xff, (rel >>> 24) & 0xff);
    }
    return this.code;
  }
}

function bswap32(v: number): number {
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
}

export interface HostilePlatformOptions {
  /** Guest RAM size in bytes, at most 3 GiB (a DMA descriptor straddles its end); default 16 MiB. */
  ramSize?: number;
  /** A free RAM page for DMA descriptors and buffers (above the code); default 0x300000. */
  scratch?: number;
  /** xorshift32 seed (non-zero). */
  seed?: number;
}

/**
 * What `hostilePlatformGuest` prints after "DMA-FLAGS ": one character per
 * DMA request whose control word lies in RAM ('E' when it came back as
 * ERROR, '0' when it came back 0, 'x' for anything else). First the
 * descriptor straddling the end of RAM, then the requests in the scratch
 * page in the order listed there.
 */
export const HOSTILE_DMA_EXPECTED = 'EEEEEEEEE00E';

/**
 * A guest (code for `tinyPvhElf`) that writes garbage to the PC platform's
 * registers and checks that the VMM keeps serving it. With interrupts off,
 * its code at 1 MiB and no stack use it survives whatever PAM, SMRAM,
 * PIRQ or PM base it programs (they only affect 0xA0000-0xFFFFF, ports
 * and interrupt lines). In order, printing a line on COM1 after each part:
 *
 *  1. PCI: for every bus-0 device, function and config dword, CONFIG_ADDRESS
 *     then a pseudo-random DWORD to CONFIG_DATA and a read back; for every
 *     eighth dword also byte, word and dword writes and reads at
 *     0xCFD-0xCFF (some crossing the end of CONFIG_DATA). "PCI-CONFIG-DONE"
 *  2. 0xCF8: garbage CONFIG_ADDRESS with and without the enable bit, each
 *     followed by a data write and read; byte/word writes and reads at
 *     0xCF8-0xCFB, 0xCF9 (reset control) only byte-wide and never with
 *     RST_CPU; `rep outsd` of garbage to CONFIG_DATA. "CF8-DONE"
 *  3. fw_cfg selector: every 7th selector 0..0xFFFF, each followed by data
 *     port reads; `rep outsw` of garbage selectors and `rep insb` of data.
 *     "FWCFG-SELECT-DONE"
 *  4. fw_cfg garbage: byte/word/dword writes to 0x510, 0x511 and every
 *     byte of 0x514-0x51B, reads of all of them, and DMA kicks whose
 *     descriptor address is garbage above 4 GiB. "FWCFG-GARBAGE-DONE"
 *  5. DMA descriptors outside RAM (0xFFFFF000, the LAPIC page, 0x7FFFFFF0,
 *     across 4 GiB, above 2^48, 2^53 and 2^64-16) and one straddling the
 *     end of RAM; descriptors in RAM with bad lengths, addresses, selectors
 *     and write requests to read-only items (see HOSTILE_DMA_EXPECTED),
 *     and 64 with garbage control and length and an address above 4 GiB.
 *     "DMA-FLAGS <one char per checked request>"
 *  6. A well-formed DMA read of the signature: "FWCFG-DMA-OK" when the
 *     control word is 0 and the buffer holds "QEMU", else "FWCFG-DMA-BAD";
 *     the signature through the data port: "FWCFG-PIO-OK"/"FWCFG-PIO-BAD";
 *     the host bridge's vendor/device ID: "PCI-ID-OK"/"PCI-ID-BAD".
 *  7. "HOSTILE-DONE", then a reset through 0xCF9 (0x06).
 *
 * About 130k port exits in all.
 */
export function hostilePlatformGuest(opts: HostilePlatformOptions = {}): number[] {
  const ramSize = opts.ramSize ?? 16 << 20;
  const S = opts.scratch ?? 0x300000;
  const a = new Asm32();
  const say = (text: string) => a.raw(x86.print(text));
  /** eax = ebp = next xorshift32 value (clobbers nothing else). */
  const prng = () =>
    a
      .movr(R.eax, R.ebp)
      .shl(R.eax, 13)
      .xorr(R.ebp, R.eax)
      .movr(R.eax, R.ebp)
      .shr(R.eax, 17)
      .xorr(R.ebp, R.eax)
      .movr(R.eax, R.ebp)
      .shl(R.eax, 5)
      .xorr(R.ebp, R.eax)
      .movr(R.eax, R.ebp);
  const check = (value: number, ok: string, bad: string) => a.check(value, ok, bad);
  /** Starts a DMA of the descriptor at hi:lo (the register is big endian). */
  const kick = (hi: number, lo: number) =>
    a.mov(R.eax, bswap32(hi)).outp(0x514, 4).mov(R.eax, bswap32(lo)).outp(0x518, 4);
  /** Writes a FWCfgDmaAccess at S. */
  const descriptor = (control: number, length: number, hi: number, lo: number) =>
    a
      .storeImm(S, bswap32(control))
      .storeImm(S + 4, bswap32(length))
      .storeImm(S + 8, bswap32(hi))
      .storeImm(S + 12, bswap32(lo));
  /** Prints E, 0 or x for the control word at `at`. */
  const flag = (at: number) => {
    const not1 = a.fresh();
    const not0 = a.fresh();
    const end = a.fresh();
    a.load(R.eax, at).cmp(R.eax, bswap32(1)).j('ne', not1);
    say('E');
    a.jmp(end).label(not1).cmp(R.eax, 0).j('ne', not0);
    say('0');
    a.jmp(end).label(not0);
    say('x');
    a.label(end);
  };

  a.raw([0xfa, 0xfc]); // cli; cld
  say('HOSTILE-START\n');
  a.mov(R.ebp, opts.seed ?? 0x2545f491);

  // 1. Every config dword of every bus-0 function.
  a.loop(R.ebx, 0x8000_0000, 0x8001_0000, 4, () => {
    const skip = a.fresh();
    a.movr(R.eax, R.ebx).outp(0xcf8, 4);
    prng();
    a.outp(0xcfc, 4).in(4);
    a.test(R.ebx, 0x1c).j('ne', skip);
    prng();
    a.outp(0xcfd, 1).outp(0xcfe, 2).outp(0xcff, 1);
    a.outp(0xcff, 2).outp(0xcfe, 4); // past the end of CONFIG_DATA
    a.inp(0xcfe, 1).inp(0xcfd, 2).inp(0xcff, 4);
    a.label(skip);
  });
  say('PCI-CONFIG-DONE\n');

  // 2. Garbage straight to CONFIG_ADDRESS and its neighbours.
  a.loop(R.ebx, 0, 1024, 1, () => {
    prng();
    a.outp(0xcf8, 4);
    prng();
    a.outp(0xcfc, 4).in(4);
    prng();
    a.and(R.eax, 0x7fff_ffff).outp(0xcf8, 4);
    prng();
    a.outp(0xcfc, 4).in(4).inp(0xcfe, 2);
    prng();
    a.and(R.eax, ~0x0400).outp(0xcf8, 2); // a word at 0xCF8 covers 0xCF9: no RST_CPU
    a.outp(0xcf8, 1).outp(0xcfa, 2).outp(0xcfb, 1);
    a.and(R.eax, ~0x04).outp(0xcf9, 1);
    a.inp(0xcf8, 1).inp(0xcf8, 2).inp(0xcf9, 1).inp(0xcfa, 2).inp(0xcf8, 4);
  });
  // Garbage for the string I/O below.
  a.loop(R.edi, S + 0x2000, S + 0x3000, 4, () => {
    prng();
    a.storeAt(R.edi, R.eax);
  });
  a.mov(R.eax, 0x8000_0058).outp(0xcf8, 4); // host bridge, the dword with PAM0-PAM2
  a.mov(R.esi, S + 0x2000)
    .mov(R.ecx, 0x400)
    .dx(0xcfc)
    .repOuts(4);
  say('CF8-DONE\n');

  // 3. Every 7th fw_cfg selector, each followed by data reads.
  a.loop(R.ebx, 0, 0x10000, 7, () => {
    const skip = a.fresh();
    a.movr(R.eax, R.ebx).outp(0x510, 2).inp(0x511, 1);
    a.test(R.ebx, 0x70).j('ne', skip);
    a.in(2).in(4);
    a.label(skip);
  });
  a.mov(R.esi, S + 0x2000)
    .mov(R.ecx, 0x800)
    .dx(0x510)
    .repOuts(2);
  a.mov(R.eax, 0x19).outp(0x510, 2); // the file directory
  a.mov(R.edi, S + 0x3000)
    .mov(R.ecx, 0x1000)
    .dx(0x511)
    .repIns(1);
  say('FWCFG-SELECT-DONE\n');

  // 4. Garbage at every width to every fw_cfg port.
  a.loop(R.ebx, 0, 256, 1, () => {
    prng();
    a.outp(0x510, 1).out(4).out(2);
    a.outp(0x511, 1).out(2).out(4);
    a.inp(0x510, 1).in(2).in(4).inp(0x511, 2).in(4);
    for (let p = 0x514; p < 0x51c; p++) {
      prng();
      a.outp(p, 1).out(2);
      if (p !== 0x514 && p !== 0x518) a.out(4);
      a.in(1).in(2).in(4);
    }
    // A DMA kick at a garbage address above 4 GiB (the high half is never 0).
    prng();
    a.or(R.eax, 0x0100_0000).outp(0x514, 4);
    prng();
    a.outp(0x518, 4);
  });
  say('FWCFG-GARBAGE-DONE\n');

  // 5. DMA descriptors outside RAM, or across its end.
  for (const [hi, lo] of [
    [0, 0xfffff000],
    [0, 0xfee00000],
    [0, 0x7ffffff0],
    [0, 0xfffffff8],
    [0x0001_0000, 0],
    [0x0020_0000, 0x10],
    [0xffff_ffff, 0xfffffff0],
  ]) {
    kick(hi!, lo!);
  }
  const straddle = ramSize - 8;
  a.storeImm(straddle, bswap32(0x0000_000a)).storeImm(straddle + 4, bswap32(4));
  kick(0, straddle);
  // Descriptors in RAM whose requests must fail (E) or do nothing (0).
  const FILE_DIR = 0x19;
  const cases: Array<[control: number, length: number, hi: number, lo: number]> = [
    [0x0000_000a, 0xffff_ffff, 0x0001_0000, 0], // read the signature to 2^48
    [(FILE_DIR << 16) | 0x0a, 0xffff_ffff, 0, S + 0x1000], // read the directory, then ~4 GiB of zeros
    [0x0000_0018, 4, 0, S + 0x800], // write to the read-only signature
    [0x3fff_0018, 1, 0, S + 0x800], // write to an item that does not exist
    [0x0000_000a, 16, 0, 0xffff_fff8], // read to the top of 4 GiB
    [0x7fff_000a, 0xffff_ffff, 0x1000_0000, 0], // read zeros beyond 2^53
    [0x0000_000a, 16, 0xffff_ffff, 0xffff_ffff], // read to 2^64-1
    [0x0000_000a, 8, 0, ramSize - 4], // read across the end of RAM
    [0x0000_000c, 0xffff_ffff, 0, 0], // skip 4 GiB: nothing to fail
    [0x0000_0000, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff], // no operation
    [0xffff_ffff, 0xffff_ffff, 0xdead_beef, 0], // every control bit
  ];
  say('DMA-FLAGS ');
  // The straddling descriptor's control word lies in RAM.
  flag(straddle);
  for (const [control, length, hi, lo] of cases) {
    descriptor(control, length, hi, lo);
    kick(0, S);
    flag(S);
  }
  say('\n');
  // Garbage control and length, an address above 4 GiB.
  a.loop(R.ebx, 0, 64, 1, () => {
    prng();
    a.store(S, R.eax);
    prng();
    a.store(S + 4, R.eax);
    prng();
    a.or(R.eax, 0x0100_0000).store(S + 8, R.eax);
    prng();
    a.store(S + 12, R.eax);
    kick(0, S);
  });

  // 6. Everything still works.
  a.storeImm(S + 0x800, 0);
  descriptor(0x0000_000a, 4, 0, S + 0x800);
  kick(0, S);
  const dmaBad = a.fresh();
  const dmaEnd = a.fresh();
  a.load(R.eax, S).cmp(R.eax, 0).j('ne', dmaBad);
  a.load(R.eax, S + 0x800)
    .cmp(R.eax, 0x554d4551)
    .j('ne', dmaBad); // "QEMU"
  say('FWCFG-DMA-OK\n');
  a.jmp(dmaEnd).label(dmaBad);
  say('FWCFG-DMA-BAD\n');
  a.label(dmaEnd);
  a.mov(R.eax, 0).outp(0x510, 2).inp(0x511, 1).shl(R.eax, 8).inp(0x511, 1).shl(R.eax, 8);
  a.inp(0x511, 1).shl(R.eax, 8).inp(0x511, 1);
  check(0x51454d55, 'FWCFG-PIO-OK\n', 'FWCFG-PIO-BAD\n'); // 'Q','E','M','U' from the top byte down
  a.mov(R.eax, 0x8000_0000).outp(0xcf8, 4).inp(0xcfc, 4);
  check(0x1237_8086, 'PCI-ID-OK\n', 'PCI-ID-BAD\n');

  // 7. Done.
  say('HOSTILE-DONE\n');
  a.raw(x86.resetViaCf9).raw(x86.hang);
  return a.finish();
}

// --- a guest that reports a panic through pvpanic-pci -------------------------

/**
 * A guest that does what Linux's pvpanic-pci driver does, without a
 * firmware: finds 1b36:0011 in PCI slot `slot`, places BAR0 at `bar` and
 * enables memory decoding, reads the supported events (prints CAPS=3 or
 * CAPS-BAD), writes PANICKED, prints AFTER-PANIC, then writes `exitValue`
 * to isa-debug-exit at 0xf4 (the VM ends with (v << 1) | 1 when it is still
 * running) and hangs.
 */
export function pvpanicGuest(slot: number, bar: number, exitValue: number): number[] {
  const a = new Asm32();
  const say = (text: string) => a.raw(x86.print(text));
  const cfg = (reg: number) => a.mov(R.eax, (0x8000_0000 | (slot << 11) | reg) >>> 0).outp(0xcf8, 4);
  const check = (value: number, ok: string, bad: string) => a.check(value, ok, bad);
  a.raw([0xfa, 0xfc]); // cli; cld
  cfg(0x00);
  a.inp(0xcfc, 4);
  check(0x0011_1b36, 'ID-OK\n', 'ID-BAD\n');
  cfg(0x10);
  a.mov(R.eax, bar).outp(0xcfc, 4);
  cfg(0x04);
  a.mov(R.eax, 0x0002).outp(0xcfc, 2); // Command: memory space
  a.load(R.eax, bar).and(R.eax, 0xff);
  check(3, 'CAPS=3\n', 'CAPS-BAD\n');
  a.storeImm(bar, 1); // PVPANIC_PANICKED
  say('AFTER-PANIC\n');
  a.mov(R.eax, exitValue).outp(0xf4, 1);
  a.raw(x86.hang);
  return a.finish();
}

// --- a guest that ticks forever (snapshots) -----------------------------------

/** Where the ticker keeps its count, in guest RAM. */
export const TICKER_COUNT_ADDR = 0x20_0000;

/**
 * A guest that never ends: tick i (from 0, kept in RAM at TICKER_COUNT_ADDR)
 * prints a line of two characters, 0x30 + (i & 63) and 0x30 + ((i >> 6) &
 * 63), then spins `delay` iterations. `tickOf` reads a line back. With
 * `fill`, it first writes a non-zero pattern over that much RAM (a busy
 * guest's memory, for bench/snapshot).
 */
export function tickerGuest(delay: number, fill?: { from: number; bytes: number }): number[] {
  const a = new Asm32();
  const top = a.fresh();
  const spin = a.fresh();
  a.raw([0xfa, 0xfc]); // cli; cld
  if (fill)
    a.mov(R.edi, fill.from)
      .mov(R.ecx, fill.bytes / 4)
      .mov(R.eax, 0x5a5a_5a5a)
      .raw([0xf3, 0xab]); // rep stosd
  a.storeImm(TICKER_COUNT_ADDR, 0);
  a.label(top);
  a.load(R.eax, TICKER_COUNT_ADDR).and(R.eax, 63).add(R.eax, 0x30).outp(0x3f8, 1);
  a.load(R.eax, TICKER_COUNT_ADDR).shr(R.eax, 6).and(R.eax, 63).add(R.eax, 0x30).outp(0x3f8, 1);
  a.mov(R.eax, 0x0a).outp(0x3f8, 1);
  a.mov(R.ecx, delay).label(spin).dec(R.ecx).j('ne', spin);
  a.load(R.eax, TICKER_COUNT_ADDR).add(R.eax, 1).store(TICKER_COUNT_ADDR, R.eax);
  a.jmp(top);
  return a.finish();
}

/** The tick a ticker line stands for, or undefined for another line. */
export function tickOf(line: string): number | undefined {
  if (!/^[0-o]{2}$/.test(line)) return undefined;
  return line.charCodeAt(0) - 0x30 + 64 * (line.charCodeAt(1) - 0x30);
}
