/**
 * Whole-VM snapshots: a guest that ticks forever is written to a snapshot
 * file through the control socket and stopped, then restored in a new
 * mvisor process, where it goes on exactly where it was: every tick once,
 * none lost, none twice. The file is sparse, and a snapshot that is not
 * this VM's (another config, a truncated file) or whose disk changed since
 * is refused with exit code 2 before the guest runs.
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  openSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/engine/apply/control-client.js';
import type { ControlResponse } from '../../src/platform/control-protocol.js';
import { scaled } from '../helpers/timeouts.js';
import { tickOf, tickerGuest, tinyPvhElf, x86 } from '../helpers/tiny-elf.js';
import { runMvisor, tempDir, type RunResult } from '../helpers/mvisor.js';

const MiB = 1024 * 1024;

/** Runs the config until `lines` ticks were printed, then sends `cmd` (with `args`) to its control socket once. */
async function runTicks(
  config: Record<string, unknown>,
  dir: string,
  extraArgs: string[],
  lines: number,
  send: (sock: string) => Promise<ControlResponse<'snapshot'> | ControlResponse<'stop'>>,
): Promise<{ run: RunResult; answer: Promise<unknown> | undefined }> {
  const sock = join(dir, `control-${extraArgs.length}.sock`);
  let seen = 0;
  let answer: Promise<unknown> | undefined;
  const run = await runMvisor(config, {
    dir,
    args: ['--control', sock, ...extraArgs],
    timeoutMs: scaled(60_000),
    onLine: (l) => {
      if (tickOf(l) !== undefined && ++seen === lines) answer = send(sock);
    },
  });
  return { run, answer };
}

/** The ticker guest (in `dir`) with a 4 MiB raw virtio-blk data disk. */
function tickerWithDisk(dir: string, memory: string) {
  const kernel = join(dir, 'ticker.elf');
  writeFileSync(kernel, tinyPvhElf(tickerGuest(20_000)));
  const disk = join(dir, 'data.img');
  writeFileSync(disk, Buffer.alloc(4 * MiB, 0x5a));
  const devices = [{ class: 'virtio-block', name: 'data', image: disk, format: 'raw' }];
  return { config: { name: 'ticker', memory, kernel, devices }, disk };
}

/** The ticks in serial output read as one stream (a snapshot may fall inside a line). */
function ticksIn(stdout: string): number[] {
  return stdout
    .split('\n')
    .map((l) => tickOf(l.replace(/\r$/, '')))
    .filter((t) => t !== undefined);
}

describe('snapshot and restore', () => {
  it(
    'a guest snapshotted and stopped goes on in a new process exactly where it was; the file is sparse',
    async () => {
      const dir = tempDir();
      const { config: base, disk } = tickerWithDisk(dir, '256M');
      // A firmware log file too (mvctl's machine.debug): host side, no state of its own.
      const config = { ...base, debugConsole: { file: join(dir, 'debug.log') } };
      const snap = join(dir, 'ticker.snap');

      const first = await runTicks(config, dir, [], 20, (sock) =>
        controlRequest(sock, 'snapshot', scaled(30_000), { file: snap, then: 'stop' }),
      );
      const report = await first.answer;
      expect(first.run.code, first.run.stderr).toBe(0);
      expect(report).toMatchObject({ ok: true, file: snap, bytes: statSync(snap).size });
      expect(first.run.stderr).toContain(`stopped after a snapshot to ${snap}`);
      // 256 MiB of RAM, almost all zero: holes on disk.
      expect(statSync(snap).size).toBeGreaterThan(256 * MiB);
      expect(statSync(snap).blocks * 512).toBeLessThan(4 * MiB);

      const second = await runTicks(config, dir, ['--restore', snap], 20, (sock) =>
        controlRequest(sock, 'stop', scaled(30_000)),
      );
      expect(second.run.code, second.run.stderr).toBe(0);
      expect(second.run.stderr).toContain(`restored ticker from ${snap}`);
      // One stream: the snapshot may fall inside a line, which the restored run ends.
      const ticks = ticksIn(first.run.stdout + second.run.stdout);
      // Every tick once, in order, across the two processes.
      expect(ticks.length).toBeGreaterThanOrEqual(40);
      expect(ticks).toEqual(ticks.map((_, i) => i));

      // Not this VM's snapshot: refused before the guest runs, naming the file.
      const other = await runMvisor({ ...config, memory: '32M' }, { dir, args: ['--restore', snap] });
      expect(other.code).toBe(2);
      expect(other.stderr).toContain(
        `cannot restore VM ticker: ${snap}: a snapshot of another config of VM "ticker"`,
      );
      const cut = join(dir, 'cut.snap');
      copyFileSync(snap, cut);
      truncateSync(cut, 1 * MiB);
      const truncated = await runMvisor(config, { dir, args: ['--restore', cut] });
      expect(truncated.code).toBe(2);
      expect(truncated.stderr).toMatch(new RegExp(`cannot restore VM ticker: ${cut}: truncated`));
      expect(truncated.stdout).toBe('');
      const missing = await runMvisor(config, { dir, args: ['--restore', join(dir, 'nothing.snap')] });
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain(
        `cannot restore VM ticker: ${join(dir, 'nothing.snap')}: no such file`,
      );
      // A disk written since the snapshot (one byte, in the middle): refused, naming it.
      const fd = openSync(disk, 'r+');
      writeSync(fd, Buffer.from([1]), 0, 1, 2 * MiB);
      closeSync(fd);
      const changed = await runMvisor(config, { dir, args: ['--restore', snap] });
      expect(changed.code).toBe(2);
      expect(changed.stderr).toContain(
        `cannot restore VM ticker: ${snap}: disk data (${disk}) changed since the snapshot: it was modified at`,
      );
    },
    scaled(120_000),
  );

  it(
    'sends a running VM over a Unix socket to a VMM waiting with --incoming, where it goes on; the sender stops',
    async () => {
      const dir = tempDir();
      const { config } = tickerWithDisk(dir, '64M');
      const incoming = join(dir, 'incoming.sock');
      const receiverControl = join(dir, 'receiver.sock');
      let seen = 0;
      let stopped: Promise<unknown> | undefined;
      // The receiver: waits, restores what arrives, and is stopped after 20 ticks of its own.
      const receiver = runMvisor(config, {
        dir,
        args: ['--incoming', `unix:${incoming}`, '--control', receiverControl],
        timeoutMs: scaled(60_000),
        onLine: (l) => {
          if (tickOf(l) !== undefined && ++seen === 20)
            stopped = controlRequest(receiverControl, 'stop', scaled(30_000));
        },
      });
      const t0 = Date.now();
      while (!existsSync(incoming) && Date.now() - t0 < scaled(30_000))
        await new Promise((r) => setTimeout(r, 20));
      const sender = await runTicks(config, dir, [], 20, (sock) =>
        controlRequest(sock, 'snapshot', scaled(30_000), { socket: incoming, then: 'stop' }),
      );
      expect(await sender.answer).toMatchObject({ ok: true, file: `unix:${incoming}` });
      expect(sender.run.code, sender.run.stderr).toBe(0);
      const got = await receiver;
      await stopped;
      expect(got.code, got.stderr).toBe(0);
      expect(got.stderr).toContain(`restored ticker from unix:${incoming}`);
      const ticks = ticksIn(sender.run.stdout + got.stdout);
      expect(ticks.length).toBeGreaterThanOrEqual(40);
      expect(ticks).toEqual(ticks.map((_, i) => i));
      // Nobody waiting: refused before the VM is touched, and it runs on.
      const alone = await runTicks(config, dir, [], 5, async (sock) => {
        const r = await controlRequest(sock, 'snapshot', scaled(30_000), { socket: incoming, then: 'stop' });
        await controlRequest(sock, 'stop', scaled(30_000));
        return r;
      });
      expect(await alone.answer).toMatchObject({
        ok: false,
        error: `${incoming}: no VMM is waiting there (mvisor --incoming unix:PATH)`,
      });
      expect(alone.run.stderr).toContain('stopped through the control socket');
    },
    scaled(120_000),
  );

  it(
    'takes a running VM back to a snapshot of it (control restore), and refuses one of another VM without touching it',
    async () => {
      const dir = tempDir();
      const kernel = join(dir, 'ticker.elf');
      writeFileSync(kernel, tinyPvhElf(tickerGuest(20_000)));
      const config = { name: 'ticker', memory: '64M', kernel };
      const snap = join(dir, 'back.snap');
      const sock = join(dir, 'c.sock');
      const other = join(dir, 'other.snap');
      let seen = 0;
      const answers: Promise<unknown>[] = [];
      // Another VM's snapshot, to be refused.
      const first = await runTicks({ ...config, name: 'other' }, dir, [], 3, (s) =>
        controlRequest(s, 'snapshot', scaled(30_000), { file: other, then: 'stop' }),
      );
      expect(await first.answer).toMatchObject({ ok: true });
      const run = await runMvisor(config, {
        dir,
        args: ['--control', sock],
        timeoutMs: scaled(60_000),
        onLine: (l) => {
          if (tickOf(l) === undefined) return;
          seen++;
          if (seen === 10)
            answers.push(controlRequest(sock, 'snapshot', scaled(30_000), { file: snap, then: 'resume' }));
          if (seen === 20)
            answers.push(
              (async () => {
                const refused = await controlRequest(sock, 'restore', scaled(30_000), { file: other });
                const back = await controlRequest(sock, 'restore', scaled(30_000), { file: snap });
                return [refused, back];
              })(),
            );
          if (seen === 40) answers.push(controlRequest(sock, 'stop', scaled(30_000)));
        },
      });
      expect(run.code, run.stderr).toBe(0);
      const [taken, [refused, back]] = (await Promise.all(answers)) as [unknown, unknown[]];
      expect(taken).toMatchObject({ ok: true });
      expect(refused).toMatchObject({
        ok: false,
        error: expect.stringMatching(
          /other\.snap: a snapshot of VM "other"; restore it with the config it was taken with/,
        ),
      });
      expect(back).toMatchObject({ ok: true, file: snap });
      const ticks = ticksIn(run.stdout);
      // Counting up to past 20, then again from where the snapshot was (after tick 9), up: once back.
      const drop = ticks.findIndex((t, i) => i > 0 && t < ticks[i - 1]!);
      expect(drop, ticks.join(' ')).toBeGreaterThanOrEqual(20);
      expect(ticks.slice(0, drop)).toEqual([...Array(drop).keys()]);
      const again = ticks.slice(drop);
      expect(again[0]).toBeGreaterThanOrEqual(10);
      expect(again[0]).toBeLessThan(drop);
      expect(again).toEqual(again.map((_, i) => again[0]! + i));
    },
    scaled(120_000),
  );

  it(
    'is refused while the guest is suspended to RAM, writing nothing',
    async () => {
      const dir = tempDir();
      const kernel = join(dir, 's3.elf');
      // Enters S3 (SLP_TYP 1, SLP_EN to PM1a_CNT), then would print "awake".
      const s3 = [0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00, 0x24, 0x66, 0xef];
      writeFileSync(
        kernel,
        tinyPvhElf([...x86.print('sleeping\n'), ...s3, ...x86.print('awake\n'), ...x86.hang]),
      );
      const sock = join(dir, 'c.sock');
      const snap = join(dir, 's3.snap');
      let answer: Promise<unknown> | undefined;
      const run = await runMvisor(
        { name: 'sleeper', memory: '32M', kernel },
        {
          dir,
          args: ['--control', sock],
          timeoutMs: scaled(60_000),
          onLine: (l) => {
            if (l.trim() !== 'sleeping' || answer) return;
            answer = (async () => {
              const state = async () =>
                ((await controlRequest(sock, 'status', scaled(10_000))) as { state?: string }).state;
              while ((await state()) !== 'suspended') await new Promise((r) => setTimeout(r, 20));
              const refused = await controlRequest(sock, 'snapshot', scaled(30_000), {
                file: snap,
                then: 'stop',
              });
              await controlRequest(sock, 'stop', scaled(10_000));
              return refused;
            })();
          },
        },
      );
      expect(await answer).toMatchObject({
        ok: false,
        error:
          'the guest is suspended to RAM (ACPI S3): wake it (the power button: control `powerdown`) and try again',
      });
      expect(run.code, run.stderr).toBe(0);
      expect(existsSync(snap)).toBe(false);
    },
    scaled(60_000),
  );
});
