/**
 * A snapshot of a Linux guest in the middle of disk I/O: the guest-kit
 * kernel with 2 vCPUs runs three writers at once on a virtio-blk disk,
 * round after round; the host snapshots it through the control socket and
 * stops it, restores it in a new process, and the guest finishes as an
 * uninterrupted run would: every round printed once and in order, and the
 * disk holding exactly what the writers wrote (computed here).
 *
 * The disk has an I/O limit (128 KiB/s) and the writers write 64 KiB at a
 * time with O_DIRECT, so that each request waits its turn for up to 1.5 s
 * and each round keeps the device busy for 4.5 s: the snapshot, taken while
 * round 2 runs, finds requests in flight, and its metadata says how many it
 * drained. (The image is on tmpfs, where a request without a limit
 * completes in microseconds and none was ever in flight; with 1 MiB/s the
 * writers, fed through pipes in the nested guest, did not keep up with the
 * limit, and a CI run drained none.)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/engine/apply/control-client.js';
import { openSnapshotFile } from '../../src/vmm/snapshot/snapshot-file.js';
import { scaled } from '../helpers/timeouts.js';
import { guestKit, initramfsWithTest, runMvisor, tempDir, TEST_CPU } from '../helpers/mvisor.js';

const ROUNDS = 5;
const WRITERS = 3;
const CHUNK = 192 * 1024;
const BOOT_TIMEOUT = scaled(90_000);
const DISK = ROUNDS * WRITERS * CHUNK;
const LIMIT = { bytesPerSecond: 128 * 1024 };

const script = `
i=0
while [ $i -lt ${ROUNDS} ]; do
  for j in $(seq 0 ${WRITERS - 1}); do
    yes "mvisor-round-$i-$j" | head -c ${CHUNK} | dd of=/dev/vda bs=65536 seek=$(( (i * ${WRITERS} + j) * ${CHUNK / 65536} )) oflag=direct iflag=fullblock conv=notrunc,fsync 2>/dev/null &
  done
  # A second in, every writer has a request waiting its turn at the device.
  sleep 1
  echo "writing $i"
  wait
  echo "round $i"
  i=$((i + 1))
done
echo "rounds done"
`;

/** What the writers leave on the disk. */
function expectedDisk(size: number): Buffer {
  const disk = Buffer.alloc(size);
  for (let i = 0; i < ROUNDS; i++)
    for (let j = 0; j < WRITERS; j++) {
      const line = Buffer.from(`mvisor-round-${i}-${j}\n`);
      const at = (i * WRITERS + j) * CHUNK;
      for (let k = 0; k < CHUNK; k += line.length)
        line.copy(disk, at + k, 0, Math.min(line.length, CHUNK - k));
    }
  return disk;
}

const rounds = (stdout: string) => [...stdout.matchAll(/^round (\d+)\r?$/gm)].map((m) => Number(m[1]));

describe('snapshot and restore of Linux', () => {
  it(
    'a 2-vCPU guest snapshotted during disk I/O finishes after a restore in a new process with the output and disk bytes of an uninterrupted run',
    async () => {
      const dir = tempDir();
      const kit = guestKit();
      const disk = join(dir, 'vda.raw');
      writeFileSync(disk, Buffer.alloc(DISK));
      const config = {
        name: 'linux-snap',
        memory: '128M',
        vcpus: 2,
        cpu: TEST_CPU,
        kernel: kit.kernel,
        initrd: initramfsWithTest(script, { dir }),
        cmdline: 'console=ttyS0 mvisor_test.enable=0 mvinit.action=poweroff',
        devices: [{ class: 'virtio-block', name: 'vda', image: disk, format: 'raw', throttle: LIMIT }],
      };
      const snap = join(dir, 'linux.snap');
      const sock = join(dir, 'c.sock');
      let answer: Promise<unknown> | undefined;
      const first = await runMvisor(config, {
        dir,
        args: ['--control', sock],
        timeoutMs: BOOT_TIMEOUT,
        onLine: (l) => {
          // Round 2's writers started: 576 KiB at 128 KiB/s keep the disk busy for 4.5 s.
          if (answer === undefined && /^writing 2\r?$/.test(l))
            answer = controlRequest(sock, 'snapshot', scaled(60_000), { file: snap, then: 'stop' });
        },
      });
      const report = (await answer) as { ok: boolean; drainedRequests: number; pausedMs: number };
      console.log(`snapshot: ${JSON.stringify(report)}; first run exit ${first.code} after ${first.ms} ms`);
      expect(first.code, first.stderr).toBe(0);
      expect(report.ok).toBe(true);
      // The file's own metadata: requests were in flight at the pause, and drained.
      const saved = openSnapshotFile(snap);
      const drained = (saved.state as { drainedRequests?: unknown }).drainedRequests;
      saved.close();
      expect(drained).toBe(report.drainedRequests);
      expect(drained).toBeGreaterThanOrEqual(1);

      const second = await runMvisor(config, { dir, args: ['--restore', snap], timeoutMs: BOOT_TIMEOUT });
      console.log(`restored run: exit ${second.code} after ${second.ms} ms`);
      const context = `${second.stdout.slice(-3000)}\n${second.stderr.slice(-2000)}`;
      expect(second.stdout, context).toContain('rounds done');
      expect(second.stdout).toContain('mvinit: test.sh exit=0');
      expect(second.code, context).toBe(0);
      const all = [...rounds(first.stdout), ...rounds(second.stdout)];
      expect(all).toEqual([...Array(ROUNDS).keys()]);
      expect(Buffer.compare(readFileSync(disk), expectedDisk(DISK))).toBe(0);
    },
    2 * BOOT_TIMEOUT + scaled(30_000),
  );
});
