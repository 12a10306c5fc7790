/**
 * Builds test/guests/multiboot/mb-probe.asm, a multiboot kernel that prints
 * what its loader handed over (EAX, the info block, the command line, the
 * first module, the memory map, CR0/CS/EFLAGS) and exits through
 * isa-debug-exit. Cached under ~/.cache/mvisor/test-roms/, keyed by the
 * source.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './mvisor.js';

export const MB_PROBE_ASM = join(repoRoot, 'test/guests/multiboot/mb-probe.asm');

export function buildMultibootProbe(): string {
  const src = readFileSync(MB_PROBE_ASM);
  const hash = createHash('sha256').update(src).digest('hex').slice(0, 16);
  const dir = join(homedir(), '.cache/mvisor/test-roms');
  const out = join(dir, `mb-probe-${hash}.bin`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  execFileSync('nasm', ['-f', 'bin', '-o', tmp, MB_PROBE_ASM], { stdio: ['ignore', 'pipe', 'pipe'] });
  renameSync(tmp, out);
  return out;
}

export interface ProbeReport {
  magic: number;
  flags: number;
  lower: number;
  upper: number;
  cmdline: string;
  mods: number;
  mod0: string;
  mmap: { base: number; length: number; type: number }[];
  cr0: number;
  cs: number;
  eflags: number;
  done: boolean;
}

/** Parses the probe's lines out of the serial output (undefined fields stay 0/''). */
export function parseProbe(serial: string): ProbeReport {
  const r: ProbeReport = {
    magic: 0,
    flags: 0,
    lower: 0,
    upper: 0,
    cmdline: '',
    mods: 0,
    mod0: '',
    mmap: [],
    cr0: 0,
    cs: 0,
    eflags: 0,
    done: false,
  };
  const h = (s: string | undefined) => parseInt(s ?? '0', 16);
  for (const line of serial.split(/\r?\n/)) {
    let m: RegExpExecArray | null;
    if ((m = /^MB magic=(\w{8}) flags=(\w{8}) lower=(\w{8}) upper=(\w{8})/.exec(line))) {
      [r.magic, r.flags, r.lower, r.upper] = [h(m[1]), h(m[2]), h(m[3]), h(m[4])];
    } else if ((m = /^MB cmdline=(.*)$/.exec(line))) r.cmdline = m[1] ?? '';
    else if ((m = /^MB mods=(\w{8})(?: mod0=(.*))?$/.exec(line))) {
      r.mods = h(m[1]);
      r.mod0 = m[2] ?? '';
    } else if ((m = /^MB mmap (\w{8}) (\w{8}) (\w{8})$/.exec(line))) {
      r.mmap.push({ base: h(m[1]), length: h(m[2]), type: h(m[3]) });
    } else if ((m = /^MB cr0=(\w{8}) cs=(\w{8}) eflags=(\w{8})$/.exec(line))) {
      [r.cr0, r.cs, r.eflags] = [h(m[1]), h(m[2]), h(m[3])];
    } else if (line === 'MB done') r.done = true;
  }
  return r;
}
