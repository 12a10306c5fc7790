/**
 * Parsers and writers for the kernel structs the addon passes as raw bytes
 * (struct kvm_regs, kvm_sregs, kvm_segment, kvm_fpu). Layouts follow
 * <linux/kvm.h> (x86); sizes are checked against the addon's sizeof values
 * at start-up by `checkStructSizes`.
 */

export interface Regs {
  rax: bigint;
  rbx: bigint;
  rcx: bigint;
  rdx: bigint;
  rsi: bigint;
  rdi: bigint;
  rsp: bigint;
  rbp: bigint;
  r8: bigint;
  r9: bigint;
  r10: bigint;
  r11: bigint;
  r12: bigint;
  r13: bigint;
  r14: bigint;
  r15: bigint;
  rip: bigint;
  rflags: bigint;
}

const regNames: (keyof Regs)[] = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
]; // prettier-ignore

export const REGS_SIZE = 144;
export const SREGS_SIZE = 312;
export const SEGMENT_SIZE = 24;

export function parseRegs(b: Uint8Array): Regs {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const r = {} as Regs;
  regNames.forEach((n, i) => (r[n] = dv.getBigUint64(i * 8, true)));
  return r;
}

export function encodeRegs(r: Regs): Uint8Array {
  const b = new Uint8Array(REGS_SIZE);
  const dv = new DataView(b.buffer);
  regNames.forEach((n, i) => dv.setBigUint64(i * 8, BigInt.asUintN(64, r[n]), true));
  return b;
}

export function zeroRegs(): Regs {
  const r = {} as Regs;
  for (const n of regNames) r[n] = 0n;
  r.rflags = 2n;
  return r;
}

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

export interface DTable {
  base: bigint;
  limit: number;
}

export interface Sregs {
  cs: Segment;
  ds: Segment;
  es: Segment;
  fs: Segment;
  gs: Segment;
  ss: Segment;
  tr: Segment;
  ldt: Segment;
  gdt: DTable;
  idt: DTable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
  apicBase: bigint;
  /** 4 x u64 bitmap of pending external interrupts. */
  interruptBitmap: bigint[];
  /** Not part of kvm_sregs: set by callers that know RFLAGS.VM (reports only). */
  rflagsVm?: boolean;
}

const segNames = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;

function readSeg(dv: DataView, o: number): Segment {
  return {
    base: dv.getBigUint64(o, true),
    limit: dv.getUint32(o + 8, true),
    selector: dv.getUint16(o + 12, true),
    type: dv.getUint8(o + 14),
    present: dv.getUint8(o + 15),
    dpl: dv.getUint8(o + 16),
    db: dv.getUint8(o + 17),
    s: dv.getUint8(o + 18),
    l: dv.getUint8(o + 19),
    g: dv.getUint8(o + 20),
    avl: dv.getUint8(o + 21),
    unusable: dv.getUint8(o + 22),
  };
}

function writeSeg(dv: DataView, o: number, s: Segment): void {
  dv.setBigUint64(o, s.base, true);
  dv.setUint32(o + 8, s.limit >>> 0, true);
  dv.setUint16(o + 12, s.selector, true);
  dv.setUint8(o + 14, s.type);
  dv.setUint8(o + 15, s.present);
  dv.setUint8(o + 16, s.dpl);
  dv.setUint8(o + 17, s.db);
  dv.setUint8(o + 18, s.s);
  dv.setUint8(o + 19, s.l);
  dv.setUint8(o + 20, s.g);
  dv.setUint8(o + 21, s.avl);
  dv.setUint8(o + 22, s.unusable);
  dv.setUint8(o + 23, 0);
}

export function parseSregs(b: Uint8Array): Sregs {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const segs = {} as Record<(typeof segNames)[number], Segment>;
  segNames.forEach((n, i) => (segs[n] = readSeg(dv, i * SEGMENT_SIZE)));
  const dt = (o: number): DTable => ({ base: dv.getBigUint64(o, true), limit: dv.getUint16(o + 8, true) });
  const u = (o: number) => dv.getBigUint64(o, true);
  return {
    ...segs,
    gdt: dt(192),
    idt: dt(208),
    cr0: u(224),
    cr2: u(232),
    cr3: u(240),
    cr4: u(248),
    cr8: u(256),
    efer: u(264),
    apicBase: u(272),
    interruptBitmap: [u(280), u(288), u(296), u(304)],
  };
}

export function encodeSregs(s: Sregs): Uint8Array {
  const b = new Uint8Array(SREGS_SIZE);
  const dv = new DataView(b.buffer);
  segNames.forEach((n, i) => writeSeg(dv, i * SEGMENT_SIZE, s[n]));
  const dt = (o: number, t: DTable) => {
    dv.setBigUint64(o, t.base, true);
    dv.setUint16(o + 8, t.limit, true);
  };
  dt(192, s.gdt);
  dt(208, s.idt);
  const u = (o: number, v: bigint) => dv.setBigUint64(o, BigInt.asUintN(64, v), true);
  u(224, s.cr0);
  u(232, s.cr2);
  u(240, s.cr3);
  u(248, s.cr4);
  u(256, s.cr8);
  u(264, s.efer);
  u(272, s.apicBase);
  s.interruptBitmap.forEach((w, i) => u(280 + i * 8, w));
  return b;
}

/** struct kvm_fpu: fpr[8][16], fcw, fsw, ftwx, pad, last_opcode, last_ip, last_dp, xmm[16][16], mxcsr. */
export const FPU_SIZE = 416;
export function initialFpu(): Uint8Array {
  const b = new Uint8Array(FPU_SIZE);
  const dv = new DataView(b.buffer);
  dv.setUint16(128, 0x37f, true); // fcw: x87 power-on control word
  dv.setUint32(408, 0x1f80, true); // mxcsr: all SSE exceptions masked
  return b;
}

export function checkStructSizes(sizes: Record<string, number>): void {
  const want: Record<string, number> = {
    kvm_regs: REGS_SIZE,
    kvm_sregs: SREGS_SIZE,
    kvm_segment: SEGMENT_SIZE,
    kvm_fpu: FPU_SIZE,
  };
  for (const [k, v] of Object.entries(want)) {
    if (sizes[k] !== v) throw new Error(`native struct ${k} is ${sizes[k]} bytes, TypeScript expects ${v}`);
  }
}
