/**
 * Firmware boot: Debian's SeaBIOS (bios-256k.bin) on mvisor's i440FX/PIIX
 * machine. The boot device is a legacy option ROM given to SeaBIOS as fw_cfg
 * `genroms/<name>.bin` (test/guests/option-rom/boot-marker.asm, checked
 * against QEMU in option-rom-qemu.test.ts): its bootstrap entry vector
 * prints a marker through INT 10h (SeaBIOS's serial console, since the
 * machine has no display) and straight to COM1, then resets through 0xCF9.
 * Disks, CD-ROMs and floppies as boot devices come with the storage issue.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import { runMvisor, tempDir, TEST_CPU } from '../helpers/mvisor.js';
import { buildOptionRom, int10Line, serialLine } from '../helpers/option-rom.js';

const TIMEOUT = scaled(180_000);
const BIOS = '/usr/share/seabios/bios-256k.bin';

// Built when the file loads: `make test` loads it natively first (vitest list), since
// the nested test host's root, where the cache lives, is read-only.
const ROMS = {
  a: buildOptionRom({ marker: 'mvisor-boot-A' }),
  b: buildOptionRom({ marker: 'mvisor-boot-B' }),
};
const roms = () => ROMS;

/** Serial lines without SeaBIOS's terminal escapes. */
function serialText(stdout: string): string {
  // eslint-disable-next-line no-control-regex
  return stdout.replace(/\x1b\[[0-9;?]*[a-zA-Z]|\x1bc/g, '');
}

describe('SeaBIOS firmware boot', () => {
  it(
    'SeaBIOS POSTs on i440FX/PIIX (PCI devices, CPUs, ACPI, SMBIOS, UUID in its log) and boots an option ROM: marker through INT 10h and COM1, reset ends mvisor with 0',
    async () => {
      const dir = tempDir();
      const { b } = roms();
      const uuid = '6f1d3a52-8c0b-4e7a-9d21-5b3c4e5f6a70';
      const r = await runMvisor(
        {
          name: 'seabios',
          memory: '128M',
          vcpus: 2,
          cpu: TEST_CPU,
          firmware: 'bios',
          uuid,
          devices: [{ class: 'option-rom', name: 'marker', file: b }],
          boot: { order: ['marker'] },
          debugConsole: { file: join(dir, 'seabios.log') },
        },
        { timeoutMs: TIMEOUT, dir },
      );
      const debug = readFileSync(join(dir, 'seabios.log'), 'utf8');
      const serial = serialText(r.stdout);
      console.log(`SeaBIOS boot: exit ${r.code} after ${(r.ms / 1000).toFixed(1)} s`);
      expect(debug).toMatch(/SeaBIOS \(version 1\.16/);
      expect(debug).toContain('Found QEMU fw_cfg');
      expect(debug).toContain('QEMU fw_cfg DMA interface supported');
      expect(debug).toMatch(/qemu\/e820: addr 0x0000000000000000 len 0x0000000008000000 \[RAM\]/);
      expect(debug).toContain('Moving pm_base to 0x600');
      // PCI enumeration: the host bridge, the ISA bridge, the IDE and PM functions.
      expect(debug).toContain('Found 4 PCI devices (max PCI bus is 00)');
      expect(debug).toContain('PCI: init bdf=00:00.0 id=8086:1237');
      expect(debug).toContain('PCI: init bdf=00:01.0 id=8086:7000');
      expect(debug).toContain('PCI: init bdf=00:01.1 id=8086:7010');
      expect(debug).toContain('PCI: init bdf=00:01.3 id=8086:7113');
      expect(debug).toContain('Found 2 cpu(s) max supported 2 cpu(s)');
      // ACPI through the table loader (the FADT found via the XSDT), SMBIOS from fw_cfg.
      expect(debug).toMatch(/table\(50434146\)=0x[0-9a-f]+ \(via xsdt\)/);
      expect(debug).toMatch(/ACPI: parse DSDT at 0x[0-9a-f]+/);
      expect(debug).toContain('Copying SMBIOS');
      expect(debug).toContain('sercon: using ioport 0x3f8');
      expect(debug).toContain('Searching bootorder for: /rom@genroms/marker.bin');
      expect(serial).toContain(`Machine UUID ${uuid}`);
      expect(serial).toContain('Booting from ROM...');
      expect(serial).toContain(int10Line('mvisor-boot-B'));
      expect(serial).toContain(serialLine('mvisor-boot-B'));
      expect(r.stderr).toContain('guest reset (port 0xCF9 write 0x6)');
      expect(r.code).toBe(0);
    },
    TIMEOUT + scaled(30_000),
  );

  it(
    'boot order from the config is honoured: with ROMs a and b, order [b, a] boots b and [a, b] boots a; machine.debug sends the firmware log to stderr',
    async () => {
      const { a, b } = roms();
      const devices = [
        { class: 'option-rom', name: 'a', file: a },
        { class: 'option-rom', name: 'b', file: b },
      ];
      const base = { memory: '64M', vcpus: 1, cpu: TEST_CPU, firmware: 'bios', devices };
      const rb = await runMvisor(
        { ...base, name: 'order-b', boot: { order: ['b', 'a'] } },
        { timeoutMs: TIMEOUT },
      );
      expect(serialText(rb.stdout)).toContain(serialLine('mvisor-boot-B'));
      expect(rb.stdout).not.toContain(serialLine('mvisor-boot-A'));
      expect(rb.code).toBe(0);
      const ra = await runMvisor(
        { ...base, name: 'order-a', machine: { type: 'pc', debug: true }, boot: { order: ['a', 'b'] } },
        { timeoutMs: TIMEOUT },
      );
      expect(serialText(ra.stdout)).toContain(serialLine('mvisor-boot-A'));
      expect(ra.stdout).not.toContain(serialLine('mvisor-boot-B'));
      expect(ra.stderr).toContain('Searching bootorder for: /rom@genroms/a.bin');
      expect(ra.stderr).toMatch(/boot order:\n1: \/rom@genroms\/a\.bin\n2: \/rom@genroms\/b\.bin/);
      expect(ra.code).toBe(0);
    },
    2 * TIMEOUT + scaled(30_000),
  );

  it('a file that is not a BIOS image: one error line naming the file and field, exit 2', async () => {
    const dir = tempDir();
    const bad = join(dir, 'bios.bin');
    writeFileSync(bad, Buffer.alloc(100 * 1024, 0x90));
    const r = await runMvisor(
      { name: 'bad-bios', firmware: { bios: bad } },
      { timeoutMs: scaled(30_000), dir },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(bad);
    expect(r.stderr).toMatch(/firmware\.bios/);
    expect(readFileSync(BIOS).length).toBe(256 * 1024);
  });
});
