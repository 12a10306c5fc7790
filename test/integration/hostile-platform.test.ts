/**
 * A hostile guest: garbage written to every PCI config register of bus 0,
 * to CONFIG_ADDRESS and its neighbours, and to every fw_cfg port, plus DMA
 * descriptors that point outside RAM or ask for impossible transfers. Each
 * must end as a (rate-limited) guest-error warning or a control word with
 * ERROR set, never a crash of mvisor; afterwards the platform still
 * answers (fw_cfg DMA and port reads, the host bridge's ID) and the guest
 * resets the machine itself.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import { HOSTILE_DMA_EXPECTED, hostilePlatformGuest, tinyPvhElf } from '../helpers/tiny-elf.js';
import { runMvisor, tempDir } from '../helpers/mvisor.js';

const MEMORY = 16 << 20;

describe('hostile platform guest', () => {
  it(
    'garbage to every PCI config register and fw_cfg port leaves mvisor running',
    async () => {
      const dir = tempDir();
      const kernel = join(dir, 'hostile.elf');
      writeFileSync(kernel, tinyPvhElf(hostilePlatformGuest({ ramSize: MEMORY })));
      const r = await runMvisor(
        { name: 'hostile', memory: '16M', kernel },
        { dir, timeoutMs: scaled(240_000) },
      );
      const diag = `exit ${r.code} ${r.signal ?? ''} after ${r.ms} ms\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

      // The guest got through every part and reset the machine itself.
      for (const marker of [
        'HOSTILE-START',
        'PCI-CONFIG-DONE',
        'CF8-DONE',
        'FWCFG-SELECT-DONE',
        'FWCFG-GARBAGE-DONE',
        'HOSTILE-DONE',
      ]) {
        expect(r.stdout, diag).toContain(marker);
      }
      expect(r.code, diag).toBe(0);
      expect(r.stderr, diag).toContain('guest reset (port 0xCF9 write 0x6)');

      // Bad DMA requests came back with ERROR (or did nothing), a good one succeeded.
      expect(r.stdout, diag).toContain(`DMA-FLAGS ${HOSTILE_DMA_EXPECTED}\n`);
      expect(r.stdout, diag).toContain('FWCFG-DMA-OK');
      expect(r.stdout, diag).toContain('FWCFG-PIO-OK');
      expect(r.stdout, diag).toContain('PCI-ID-OK');

      // Guest errors are warned about, rate-limited, and never crash the VMM.
      expect(r.stderr, diag).toMatch(/fw-cfg: DMA descriptor at 0x[0-9a-f]+ is not in guest RAM/);
      expect(r.stderr, diag).toMatch(/fw-cfg: DMA read into 0x[0-9a-f]+\+0x[0-9a-f]+ outside guest RAM/);
      expect(r.stderr, diag).toMatch(/PCI: \d-byte write of port 0xcf[8ab] ignored/);
      expect(r.stderr, diag).not.toMatch(/internal error|uncaught|TypeError|RangeError|ReferenceError/i);
      expect(r.stderr, diag).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m); // a stack frame
      const lines = r.stderr.split('\n').filter((l) => l.trim());
      expect(lines.length, diag).toBeLessThan(250);
    },
    scaled(300_000),
  );
});
