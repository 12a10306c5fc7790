/**
 * A snapshot of a SeaBIOS guest in the middle of disk I/O: the disk-check
 * guest of test/guests/boot-sector/disk-check.asm, booted by SeaBIOS from
 * an ATA disk on the PIIX3 IDE, does round after round of INT 13h reads,
 * writes and read-backs (the BIOS's requests go through mvisor's IDE
 * model), each round reading what the previous one wrote. The host
 * snapshots it through the control socket and stops it, restores it in a
 * new process, and the guest finishes as an uninterrupted run does: the
 * round lines, each once and in order, and the disk bytes that
 * diskCheckModel computes here (an uninterrupted run matched the model
 * natively, every time: tested while the guest was written; it is not run
 * here, to keep the nested time down).
 */
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/engine/apply/control-client.js';
import type { SnapshotResult } from '../../src/platform/control-protocol.js';
import { diskCheckDisk, diskCheckModel, type DiskCheckWork } from '../helpers/boot-images.js';
import { runMvisor, tempDir, TEST_CPU, type RunResult } from '../helpers/mvisor.js';
import { scaled } from '../helpers/timeouts.js';

/**
 * Small: every sector costs mvisor about a hundred port-I/O exits (SeaBIOS's
 * PIO), a round 14 sectors (2 KiB read, written, read back; the journal's
 * read and write), 0.2-0.5 s natively on a busy 2-core machine.
 */
const WORK: DiskCheckWork = { rounds: 16, sectorsPerRound: 4 };
/** The snapshot is asked for when the guest prints this round's line. */
const SNAPSHOT_AT = 5;
const RUN_TIMEOUT = scaled(60_000);

const onPath = (cmd: string) => ['/usr/bin', '/usr/local/bin', '/bin'].some((d) => existsSync(join(d, cmd)));
const missing = onPath('nasm') ? [] : ['nasm (Debian package nasm)'];
if (missing.length) console.warn(`snapshot-bios: skipped, missing ${missing.join(', ')}`);
// Built when the file loads: `make test` loads it natively first (vitest list), since
// the nested test host's root, where the cache lives, is read-only.
if (missing.length === 0) diskCheckDisk(WORK);

/** The guest's "round r sum XXXX" lines in `stdout` (SeaBIOS's terminal escapes dropped). */
function roundLines(stdout: string): string[] {
  return (
    stdout
      // eslint-disable-next-line no-control-regex
      .replace(/\x1b\[[0-9;?]*[a-zA-Z]|\x1bc/g, '')
      .split(/\r?\n/)
      .map((l) => /round \d+ sum [0-9A-F]{4}/.exec(l)?.[0])
      .filter((l) => l !== undefined)
  );
}

function context(r: RunResult): string {
  return `exit ${r.code ?? r.signal} after ${r.ms} ms\nstdout (tail):\n${r.stdout.slice(-2000)}\nstderr:\n${r.stderr.slice(-3000)}`;
}

const suite = 'snapshot and restore of a SeaBIOS guest doing INT 13h disk I/O on IDE';
describe.skipIf(missing.length > 0)(
  missing.length ? `${suite} (skipped: missing ${missing.join(', ')})` : suite,
  () => {
    it(
      'the disk-check guest snapshotted mid-run finishes after a restore in a new process with the output and image bytes of an uninterrupted run',
      async () => {
        const dir = tempDir('mvisor-snap-bios-');
        const original = diskCheckDisk(WORK);
        const model = diskCheckModel(readFileSync(original), WORK);
        const config = (image: string) => ({
          name: 'disk-check',
          memory: '64M',
          vcpus: 1,
          cpu: TEST_CPU,
          firmware: 'bios',
          devices: [
            { class: 'ata-disk', name: 'hd', image, format: 'raw' },
            // The guest's error path writes 1 here: exit code 3 instead of a hang.
            { class: 'isa-debug-exit' },
          ],
          boot: { order: ['hd'] },
        });

        // Snapshotted and stopped while round SNAPSHOT_AT+1 runs, then restored.
        const disk = join(dir, 'snap.raw');
        copyFileSync(original, disk);
        const snap = join(dir, 'disk-check.snap');
        const sock = join(dir, 'c.sock');
        const at = new RegExp(`\\bround ${SNAPSHOT_AT} sum\\b`);
        let answer: Promise<unknown> | undefined;
        const first = await runMvisor(config(disk), {
          dir,
          args: ['--control', sock],
          timeoutMs: RUN_TIMEOUT,
          onLine: (l) => {
            if (answer === undefined && at.test(l))
              answer = controlRequest(sock, 'snapshot', scaled(30_000), { file: snap, then: 'stop' });
          },
        });
        const report = (await answer) as ({ ok: boolean } & SnapshotResult) | undefined;
        console.log(
          `snapshot: ${JSON.stringify(report)}; first run exit ${first.code ?? first.signal} after ${first.ms} ms, ` +
            `${roundLines(first.stdout).length} rounds`,
        );
        expect(report, context(first)).toBeDefined();
        expect(first.code, context(first)).toBe(0);
        expect(report!.ok).toBe(true);
        expect(first.stderr).toContain(`stopped after a snapshot to ${snap}`);
        // Mid-run: not every round was done.
        expect(first.stdout).not.toContain('disk-check done');
        expect(roundLines(first.stdout).length).toBeLessThan(WORK.rounds);

        const second = await runMvisor(config(disk), {
          dir,
          args: ['--restore', snap],
          timeoutMs: RUN_TIMEOUT,
        });
        console.log(
          `restored run: exit ${second.code ?? second.signal} after ${second.ms} ms, ${roundLines(second.stdout).length} rounds`,
        );
        expect(second.code, context(second)).toBe(0);
        expect(second.stderr).toContain(`restored disk-check from ${snap}`);
        expect(second.stderr).toContain('guest reset (port 0xCF9 write 0x6)');
        expect(second.stdout).toContain('disk-check done');
        expect(second.stdout).not.toContain('disk-check error');
        // Both runs' output as one stream (a line may have been cut by the snapshot).
        expect(roundLines(first.stdout + second.stdout)).toEqual(model.lines);
        expect(Buffer.compare(readFileSync(disk), model.image), 'the restored run left another disk').toBe(0);
      },
      2 * RUN_TIMEOUT + scaled(30_000),
    );
  },
);
