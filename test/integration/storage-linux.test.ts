/**
 * Storage under the guest-kit Linux kernel: virtio-blk (raw image), an IDE
 * disk (qcow2) and an ATAPI CD-ROM (an ISO made by xorriso). The kernel's
 * test module (guests/kernel/mvisor_test.c, `mvisor_test.disks` and
 * `mvisor_test.iso`) reads the host's pattern, writes its own and reads it
 * back through the block layer, and mounts the ISO; the host then checks
 * the images (qcow2 through `qemu-img convert`, and `qemu-img check`).
 * Where KVM emulates guest kernel code, user space cannot make system
 * calls, so this is proved in kernel mode.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import { guestKit, mvisorBin, runMvisor, tempDir, TEST_CPU, type RunResult } from '../helpers/mvisor.js';

const BOOT_TIMEOUT = scaled(3 * 60_000);
const MiB = 1024 * 1024;

function which(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function fact(r: RunResult, key: string): string {
  const m = new RegExp(`mvtest: .*\\b${key}=(\\S+)`).exec(r.stdout);
  if (!m)
    throw new Error(
      `no mvtest ${key}= in the serial log:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`,
    );
  return m[1]!;
}

const hex8 = (n: number) => n.toString(16).padStart(8, '0');

/** What the test module writes over sectors 16-23 of disk `name`. */
function guestPattern(name: string): Buffer {
  const buf = Buffer.alloc(4096);
  let n = 0;
  for (let i = 0; n < 4096 - 32; i++) n += buf.write(`mvisor:${name}:${i}\n`, n, 'latin1');
  return buf;
}

/** A disk image with 4 KiB of random bytes at sector 8; returns them. */
function rawDisk(path: string, size: number): Buffer {
  const img = Buffer.alloc(size);
  const pattern = randomBytes(4096);
  pattern.copy(img, 8 * 512);
  writeFileSync(path, img);
  return pattern;
}

const tools = ['qemu-img', 'xorriso'].every(which);

describe.skipIf(!tools)('storage under Linux (virtio-blk, IDE qcow2, ATAPI ISO)', () => {
  it(
    'the guest reads the host pattern and writes its own on virtio-blk (raw) and an IDE disk (qcow2), mounts an ISO through ATAPI; images are right and qemu-img check-clean afterwards',
    async () => {
      const dir = tempDir();
      const kit = guestKit();
      const vdaPattern = rawDisk(join(dir, 'vda.raw'), 16 * MiB);
      const sdaPattern = rawDisk(join(dir, 'sda.src.raw'), 16 * MiB);
      execFileSync('qemu-img', [
        'convert',
        '-f',
        'raw',
        '-O',
        'qcow2',
        join(dir, 'sda.src.raw'),
        join(dir, 'sda.qcow2'),
      ]);
      const isoDir = join(dir, 'iso');
      mkdirSync(isoDir);
      const file = randomBytes(300 * 1024 + 123);
      writeFileSync(join(isoDir, 'hello.bin'), file);
      execFileSync('xorriso', ['-as', 'mkisofs', '-quiet', '-o', join(dir, 'cd.iso'), isoDir], {
        stdio: 'ignore',
      });

      const r = await runMvisor(
        {
          name: 'storage-linux',
          memory: '128M',
          vcpus: 1,
          cpu: TEST_CPU,
          kernel: kit.kernel,
          initrd: kit.initramfs,
          cmdline:
            `console=ttyS0 mvisor_test.disks=vda,sda ` +
            'mvisor_test.iso=sr0:/hello.bin mvisor_test.action=poweroff',
          devices: [
            { class: 'virtio-block', name: 'vda', image: join(dir, 'vda.raw'), serial: 'MVISOR-VDA' },
            { class: 'ata-disk', name: 'sda', image: join(dir, 'sda.qcow2'), channel: 0, unit: 0 },
            { class: 'ata-cdrom', name: 'cd', image: join(dir, 'cd.iso'), channel: 1, unit: 0 },
          ],
        },
        { timeoutMs: BOOT_TIMEOUT, dir },
      );
      console.log(`storage boot: exit ${r.code} after ${(r.ms / 1000).toFixed(1)} s`);
      expect(r.stdout).toMatch(/virtio_blk virtio\d+: \[vda\] 32768 512-byte logical blocks/);
      expect(r.stdout).toMatch(/ata1\.00: ATA-\d+: MVISOR HARDDISK/);
      expect(r.stdout).toMatch(/scsi \d+:0:0:0: CD-ROM +MVISOR/);
      expect(fact(r, 'disk_vda_sectors')).toBe('32768');
      expect(fact(r, 'disk_vda_read_crc')).toBe(hex8(crc32(vdaPattern)));
      expect(fact(r, 'disk_vda_write')).toBe('ok');
      expect(fact(r, 'disk_sda_sectors')).toBe('32768');
      expect(fact(r, 'disk_sda_read_crc')).toBe(hex8(crc32(sdaPattern)));
      expect(fact(r, 'disk_sda_write')).toBe('ok');
      expect(fact(r, 'iso_size')).toBe(String(file.length));
      expect(fact(r, 'iso_crc')).toBe(hex8(crc32(file)));
      expect(r.code).toBe(0);

      // The host sees what the guest wrote.
      const vda = readFileSync(join(dir, 'vda.raw'));
      expect(vda.subarray(16 * 512, 24 * 512).equals(guestPattern('vda'))).toBe(true);
      execFileSync('qemu-img', ['check', join(dir, 'sda.qcow2')]);
      execFileSync('qemu-img', ['convert', '-O', 'raw', join(dir, 'sda.qcow2'), join(dir, 'sda.out.raw')]);
      const sda = readFileSync(join(dir, 'sda.out.raw'));
      expect(sda.subarray(16 * 512, 24 * 512).equals(guestPattern('sda'))).toBe(true);
      expect(sda.subarray(8 * 512, 16 * 512).equals(sdaPattern)).toBe(true);
    },
    BOOT_TIMEOUT + scaled(60_000),
  );

  it(
    'kill -9 of mvisor during a guest write loop leaves the qcow2 image qemu-img check-clean (leaks allowed)',
    async () => {
      const dir = tempDir();
      const kit = guestKit();
      const img = join(dir, 'loop.qcow2');
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', img, '64M']);
      const config = join(dir, 'vm.yaml');
      writeFileSync(
        config,
        JSON.stringify({
          name: 'write-loop',
          memory: '128M',
          vcpus: 1,
          cpu: TEST_CPU,
          kernel: kit.kernel,
          initrd: kit.initramfs,
          cmdline: `console=ttyS0 mvisor_test.write_loop=sda mvisor_test.action=none`,
          devices: [{ class: 'ata-disk', name: 'sda', image: img }],
        }),
      );
      const child = spawn(process.execPath, [mvisorBin, '-c', config], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      const killed = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), BOOT_TIMEOUT);
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (d: string) => {
          out += d;
          // Kill while writes are in flight: after a full round over the disk.
          if (/mvtest: write_loop_round=1\b/.test(out) && !child.killed) {
            clearTimeout(timer);
            child.kill('SIGKILL');
            resolve(true);
          }
        });
        child.on('close', () => resolve(false));
      });
      await new Promise((r) =>
        child.exitCode !== null || child.signalCode ? r(null) : child.on('close', r),
      );
      expect(killed, `the write loop never completed a round:\n${out.slice(-2000)}`).toBe(true);
      // Exit 0: clean; 3: leaked clusters only (allowed after a crash); 2: corruption.
      let code = 0;
      let report = '';
      try {
        report = execFileSync('qemu-img', ['check', img], { encoding: 'utf8' });
      } catch (e) {
        const err = e as { status: number; stdout: string };
        code = err.status;
        report = err.stdout;
      }
      console.log(`qemu-img check after kill -9: exit ${code}\n${report}`);
      expect([0, 3]).toContain(code);
      expect(report).not.toMatch(/ERROR/);
    },
    BOOT_TIMEOUT + scaled(60_000),
  );
});
