/**
 * The oracle for the boot-marker option ROM (test/guests/option-rom/): under
 * Debian's QEMU (`-M pc`, Debian's SeaBIOS) the ROM picked by the boot order
 * prints its marker through INT 10h (SeaBIOS's serial console) and straight
 * to COM1, and resets the machine; the other ROM never runs. mvisor's
 * firmware-boot tests use the same ROM and expect the same lines.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import { tempDir } from '../helpers/mvisor.js';
import {
  QEMU,
  QEMU_PC_ARGS,
  buildOptionRom,
  genromsBootPath,
  int10Line,
  qemuOptionRomArgs,
  serialLine,
} from '../helpers/option-rom.js';

const TIMEOUT_MS = scaled(120_000);

function hasNasm(): boolean {
  return ['/usr/bin/nasm', '/usr/local/bin/nasm'].some((p) => existsSync(p));
}

// Built when the file loads: `make test` loads it natively first (vitest list), since
// the nested test host's root, where the cache lives, is read-only.
const ROMS = hasNasm()
  ? {
      a: buildOptionRom({ marker: 'mvisor-boot-A' }),
      b: buildOptionRom({ marker: 'mvisor-boot-B' }),
      checked: buildOptionRom({ marker: 'mvisor-boot-A', name: 'checked' }),
    }
  : { a: '', b: '', checked: '' };

const missing = [
  !existsSync(QEMU) && `${QEMU} (Debian package qemu-system-x86)`,
  !hasNasm() && 'nasm',
].filter((x): x is string => typeof x === 'string');
if (missing.length) {
  console.warn(`option-rom-qemu: skipped, missing ${missing.join(', ')}`);
}

interface QemuRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function runQemu(args: string[]): Promise<QemuRun> {
  const t0 = Date.now();
  const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('latin1');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (stdout += d));
  child.stderr.on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

const lines = (s: string) => s.split(/\r?\n/).map((l) => l.replace(/\r$/, ''));

const suite = 'boot-marker option ROM under QEMU -M pc';
describe.skipIf(missing.length > 0)(
  missing.length ? `${suite} (skipped: missing ${missing.join(', ')})` : suite,
  () => {
    it(
      'SeaBIOS boots the ROM the boot order names: its BEV prints the marker via INT 10h and COM1, then resets',
      async () => {
        const dir = tempDir('mvisor-orom-');
        const a = join(dir, 'a.bin');
        const b = join(dir, 'b.bin');
        copyFileSync(ROMS.a, a);
        copyFileSync(ROMS.b, b);
        const debugLog = join(dir, 'seabios-debug.log');
        const r = await runQemu([
          ...QEMU_PC_ARGS,
          ...qemuOptionRomArgs({ roms: [a, b], boot: b, dir }),
          // SeaBIOS's debug output (port 0x402), to check the path it looked for
          ...['-chardev', `file,id=dbg,path=${debugLog}`, '-device', 'isa-debugcon,iobase=0x402,chardev=dbg'],
        ]);
        const out = lines(r.stdout);
        const context = `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

        expect(r.signal, `QEMU did not end within ${TIMEOUT_MS / 1000} s\n${context}`).toBeNull();
        expect(r.code, context).toBe(0); // the guest's reset ends QEMU under -no-reboot
        expect(out, context).toContain(int10Line('mvisor-boot-B'));
        expect(out, context).toContain(serialLine('mvisor-boot-B'));
        // INT 10h output comes first: the BEV writes COM1 directly only after it
        expect(out.indexOf(int10Line('mvisor-boot-B'))).toBeLessThan(
          out.indexOf(serialLine('mvisor-boot-B')),
        );
        expect(r.stdout).not.toContain('mvisor-boot-A');

        // QEMU names -option-rom files genroms/<basename>; SeaBIOS searches the
        // boot order for /rom@genroms/<basename> for each of them
        const debug = readFileSync(debugLog, 'latin1');
        expect(debug).toContain(`Searching bootorder for: ${genromsBootPath(a)}`);
        expect(debug).toContain(`Searching bootorder for: ${genromsBootPath(b)}`);
        expect(genromsBootPath(b)).toBe('/rom@genroms/b.bin');
        expect(debug).toContain('sercon: using ioport 0x3f8');
      },
      TIMEOUT_MS + scaled(10_000),
    );

    it('the ROM is a valid option ROM: 55 AA, size in 512-byte blocks, $PnP header with a BEV, checksums 0', () => {
      const rom = readFileSync(ROMS.checked);
      const sum = (a: Uint8Array) => a.reduce((s, x) => (s + x) & 0xff, 0);
      expect([rom[0], rom[1]]).toEqual([0x55, 0xaa]);
      expect(rom.length % 512).toBe(0);
      expect(rom[2]! * 512).toBe(rom.length);
      expect(sum(rom)).toBe(0);
      const pnp = rom.readUInt16LE(0x1a);
      expect(rom.subarray(pnp, pnp + 4).toString('latin1')).toBe('$PnP');
      expect(sum(rom.subarray(pnp, pnp + rom[pnp + 5]! * 16))).toBe(0);
      const product = rom.readUInt16LE(pnp + 0x10);
      expect(rom.subarray(product, rom.indexOf(0, product)).toString('latin1')).toBe('checked');
      expect(rom.readUInt16LE(pnp + 0x1a)).toBeGreaterThan(0); // BEV
      expect(rom.readUInt16LE(pnp + 0x16)).toBe(0); // no BCV
    });
  },
);
