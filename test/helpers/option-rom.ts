/**
 * Builds the boot-marker option ROM of test/guests/option-rom/ (a legacy
 * option ROM with a $PnP header and a Bootstrap Entry Vector) and the fw_cfg
 * files that make SeaBIOS boot it, the way QEMU's `-option-rom` does: the
 * ROM becomes fw_cfg file `genroms/<basename>`, SeaBIOS runs it, lists it
 * as a boot device (bootorder path `/rom@genroms/<basename>`) and boots it
 * by a far call to its BEV, which prints the marker and resets the machine.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixOptionRomChecksums } from '../../src/vmm/firmware/option-rom.js';

const ASM_REL = 'test/guests/option-rom/boot-marker.asm';

/** The repository root, from test/helpers/ in the sources or dist/test/helpers/ when compiled. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, ASM_REL))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find ${ASM_REL} above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export const OPTION_ROM_ASM = join(repoRoot(), ASM_REL);

/** Content of fw_cfg `etc/sercon-port`: COM1 (0x3F8), 16-bit little endian. */
export const SERCON_PORT_FILE_BYTES = Uint8Array.from([0xf8, 0x03]);

/** The line the ROM's BEV prints through INT 10h (SeaBIOS's serial console). */
export const int10Line = (marker: string): string => marker;
/** The line the ROM's BEV writes straight to COM1. */
export const serialLine = (marker: string): string => `SERIAL:${marker}`;

/** SeaBIOS's bootorder path for a ROM given as fw_cfg file `genroms/<romFile>`. */
export function genromsBootPath(romFile: string): string {
  return `/rom@genroms/${basename(romFile)}`;
}

export interface OptionRomOptions {
  /** Printed by the BEV (INT 10h, then `SERIAL:` + marker on COM1). */
  marker: string;
  /** PnP product name: the boot menu entry ("mvisor boot marker <marker>" if not given). */
  name?: string;
}

function checkText(what: string, s: string): void {
  if (!/^[\x20-\x7e]+$/.test(s) || s.includes('"')) {
    throw new Error(`option ROM ${what} must be printable ASCII without '"': ${JSON.stringify(s)}`);
  }
}

export { fixOptionRomChecksums };

/**
 * Assembles the boot-marker ROM with nasm (cached under
 * ~/.cache/mvisor/test-roms/<hash>.bin, keyed by the assembler source, the
 * marker and the name) and returns its path. Give it to a VMM under the
 * base name you want SeaBIOS to see (QEMU's -option-rom uses the file's
 * base name): copy or link it.
 */
export function buildOptionRom(opts: OptionRomOptions): string {
  const name = opts.name ?? `mvisor boot marker ${opts.marker}`;
  checkText('marker', opts.marker);
  checkText('name', name);
  const src = readFileSync(OPTION_ROM_ASM);
  const hash = createHash('sha256')
    .update(src)
    .update('\0' + opts.marker + '\0' + name)
    .digest('hex')
    .slice(0, 16);
  const cacheDir = join(homedir(), '.cache/mvisor/test-roms');
  const out = join(cacheDir, `${hash}.bin`);
  if (existsSync(out)) return out;
  mkdirSync(cacheDir, { recursive: true });
  const work = mkdtempSync(join(cacheDir, '.build-'));
  try {
    const raw = join(work, 'rom.bin');
    execFileSync(
      'nasm',
      ['-f', 'bin', '-D', `MARKER="${opts.marker}"`, '-D', `NAME="${name}"`, '-o', raw, OPTION_ROM_ASM],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const rom = fixOptionRomChecksums(new Uint8Array(readFileSync(raw)));
    const tmp = join(work, 'fixed.bin');
    writeFileSync(tmp, rom);
    renameSync(tmp, out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}

export interface QemuOptionRomBoot {
  /** ROM files, in the order QEMU should load them; SeaBIOS sees each as genroms/<basename>. */
  roms: string[];
  /** The ROM to boot first (one of `roms`). */
  boot?: string;
  /** Where the fw_cfg file etc/sercon-port is written. */
  dir: string;
}

/**
 * QEMU arguments for `-M pc` that load the ROMs, turn on SeaBIOS's serial
 * console on COM1 and put one ROM first in the boot order.
 *
 * The boot order goes in as `-option-rom <file>,bootindex=0`, not as a
 * `-fw_cfg name=bootorder,file=...`: QEMU rewrites fw_cfg `bootorder` from
 * its own bootindex list at machine reset, so a user-supplied one is
 * replaced (by an empty list when no device has a bootindex). With
 * bootindex QEMU writes `/rom@genroms/<basename>` into `bootorder`, the
 * path SeaBIOS searches for.
 */
export function qemuOptionRomArgs(o: QemuOptionRomBoot): string[] {
  const args: string[] = [];
  for (const r of o.roms) {
    if (r.includes(',')) throw new Error(`QEMU option values cannot hold ',': ${r}`);
    args.push('-option-rom', r === o.boot ? `${r},bootindex=0` : r);
  }
  if (o.boot !== undefined && !o.roms.includes(o.boot)) throw new Error(`boot ROM ${o.boot} is not in roms`);
  // SeaBIOS would also turn its serial console on by itself under
  // -nographic (fw_cfg key FW_CFG_NOGRAPHIC set, src/fw/paravirt.c); the
  // file makes it explicit, as a VMM without that key has to.
  const sercon = join(o.dir, 'sercon-port');
  writeFileSync(sercon, SERCON_PORT_FILE_BYTES);
  args.push('-fw_cfg', `name=etc/sercon-port,file=${sercon}`);
  return args;
}

/** The QEMU machine the option-ROM tests and bench compare against (Debian's SeaBIOS, no VGA). */
export const QEMU_PC_ARGS = [
  '-enable-kvm',
  '-M',
  'pc',
  '-m',
  '128',
  '-nographic',
  '-vga',
  'none',
  '-no-reboot',
  '-serial',
  'stdio',
  '-monitor',
  'none',
];

export const QEMU = '/usr/bin/qemu-system-x86_64';
