/**
 * mvctl end to end: real manifests, a real SQLite state file, real VMM child
 * processes. One VM boots the guest-kit kernel (its first serial lines prove
 * the boot), the other a tiny guest that prints a marker and halts.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import { guestKit, repoRoot, tempDir, TEST_CPU, assertBuilt } from '../helpers/mvisor.js';
import { tinyPvhElf, x86 } from '../helpers/tiny-elf.js';

const mvctl = join(repoRoot, 'bin/mvctl.js');
/** The stubborn guest's shutdownTimeout: long enough for a second mvctl to start meanwhile, on a busy machine too. */
const SHUTDOWN_S = Math.round(scaled(8000) / 1000);

interface Out {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(dir: string, args: string[], input?: string): Out {
  const r = spawnSync(process.execPath, [mvctl, ...args, '--state', join(dir, 'state.db')], {
    cwd: dir,
    encoding: 'utf8',
    input,
    env: { ...process.env, NO_COLOR: '1' },
    timeout: scaled(120_000),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function manifests(dir: string, tinyMemory: string): void {
  const kit = guestKit();
  const tiny = join(dir, 'tiny.elf');
  if (!existsSync(tiny))
    writeFileSync(tiny, tinyPvhElf([...x86.print('tiny-up\n'), 0xfa, 0xf4, ...x86.hang]));
  writeFileSync(
    join(dir, 'vms.yaml'),
    `apiVersion: mvisor.dev/v1alpha1
kind: VirtualMachine
metadata: {name: linux}
spec:
  memory: 128M
  vcpus: 1
  cpu: ${TEST_CPU}
  firmware:
    kernel: ${kit.kernel}
    initrd: ${kit.initramfs}
    cmdline: console=ttyS0 acpi=off mvisor_test.action=halt
  serial: {file: linux-console.log}
---
apiVersion: mvisor.dev/v1alpha1
kind: VirtualMachine
metadata: {name: tiny}
spec:
  memory: ${tinyMemory}
  firmware: {kernel: tiny.elf}
---
apiVersion: mvisor.dev/v1alpha1
kind: Disk
metadata: {name: scratch}
spec: {format: raw, size: 8M}
`,
  );
}

function pidOf(dir: string, name: string): number {
  const db = new Database(join(dir, 'state.db'), { readonly: true });
  const row = db.prepare("SELECT pid FROM resources WHERE kind = 'VirtualMachine' AND name = ?").get(name) as
    { pid: number | null } | undefined;
  db.close();
  return row?.pid ?? 0;
}

function controlSocketOf(dir: string, name: string): string {
  const db = new Database(join(dir, 'state.db'), { readonly: true });
  const row = db
    .prepare("SELECT control_socket FROM resources WHERE kind = 'VirtualMachine' AND name = ?")
    .get(name) as { control_socket: string | null } | undefined;
  db.close();
  if (!row?.control_socket) throw new Error(`no control socket recorded for ${name}`);
  return row.control_socket;
}

/** Alive and not a zombie (a detached VMM is re-parented to PID 1, which may not reap it at once). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

async function waitFor(pred: () => boolean, ms: number, what: string): Promise<void> {
  const t = Date.now();
  while (!pred()) {
    if (Date.now() - t > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('mvctl plan/apply/destroy end to end', () => {
  it(
    'applies two VMs and a disk, converges, replaces on a memory change, repairs drift, locks, survives kill -9, destroys',
    async () => {
      assertBuilt();
      const dir = tempDir('mvctl-e2e-');
      manifests(dir, '16M');

      // apply without a terminal needs --auto-approve (it creates the state file, changes nothing)
      let r = run(dir, ['apply', '-f', 'vms.yaml']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/--auto-approve/);

      // plan: 3 to add, exit 2 with --detailed-exitcode
      r = run(dir, ['plan', '-f', 'vms.yaml', '--detailed-exitcode']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(2);
      expect(r.stdout).toMatch(/Plan: 3 to add, 0 to change, 0 to destroy/);

      r = run(dir, ['apply', '-f', 'vms.yaml', '--auto-approve']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const linuxPid = pidOf(dir, 'linux');
      const tinyPid = pidOf(dir, 'tiny');
      expect(alive(linuxPid)).toBe(true);
      expect(alive(tinyPid)).toBe(true);
      expect(existsSync(join(dir, 'disks', 'scratch.img'))).toBe(true);
      await waitFor(
        () =>
          existsSync(join(dir, 'linux-console.log')) &&
          readFileSync(join(dir, 'linux-console.log'), 'utf8').includes('Linux version'),
        scaled(60_000),
        'the Linux VM to print its first kernel line',
      );
      // mvctl console shows what the tiny guest printed (the console socket keeps recent output)
      r = run(dir, ['console', 'tiny', '--exit-on-eof'], '');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('tiny-up');

      // apply again: no changes, exit 0 under --detailed-exitcode
      r = run(dir, ['plan', '-f', 'vms.yaml', '--detailed-exitcode']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/No changes/);

      // memory change: the VM is replaced
      manifests(dir, '32M');
      r = run(dir, ['plan', '-f', 'vms.yaml', '--json']);
      const plan = JSON.parse(r.stdout) as { actions: { id: { name: string }; action: string }[] };
      expect(plan.actions.find((a) => a.id.name === 'tiny')?.action).toBe('replace');
      r = run(dir, ['apply', '-f', 'vms.yaml', '--auto-approve']);
      expect(r.code).toBe(0);
      const tinyPid2 = pidOf(dir, 'tiny');
      expect(tinyPid2).not.toBe(tinyPid);
      expect(alive(tinyPid)).toBe(false);
      expect(alive(tinyPid2)).toBe(true);
      expect(pidOf(dir, 'linux')).toBe(linuxPid);

      // kill -9 of a VM: plan shows the drift, apply recreates it
      process.kill(tinyPid2, 'SIGKILL');
      await waitFor(() => !alive(tinyPid2), 5000, 'the VM to die');
      r = run(dir, ['plan', '-f', 'vms.yaml', '--detailed-exitcode']);
      expect(r.code).toBe(2);
      expect(r.stdout).toMatch(/drift/i);
      expect(r.stdout).toMatch(/tiny/);
      r = run(dir, ['apply', '-f', 'vms.yaml', '--auto-approve']);
      expect(r.code).toBe(0);
      expect(alive(pidOf(dir, 'tiny'))).toBe(true);

      // concurrent applies: one holds the lock, the other fails at once naming it
      const db = new Database(join(dir, 'state.db'));
      db.prepare(
        "INSERT INTO locks (id, pid, hostname, command, since, token) VALUES (1, ?, 'test', 'mvctl apply', ?, 'test')",
      ).run(process.pid, new Date().toISOString());
      db.close();
      const t0 = Date.now();
      r = run(dir, ['apply', '-f', 'vms.yaml', '--auto-approve']);
      expect(r.code).toBe(1);
      expect(Date.now() - t0).toBeLessThan(scaled(10_000));
      expect(r.stderr).toMatch(new RegExp(`locked by \`mvctl apply\` \\(pid ${process.pid}`));
      r = run(dir, ['force-unlock']);
      expect(r.code).toBe(0);

      // kill -9 of mvctl mid-apply: the state file stays intact, and the next apply takes over the
      // dead apply's lock (same host and boot, its process gone), saying so, and converges
      manifests(dir, '48M');
      const victim = spawn(
        process.execPath,
        [mvctl, 'apply', '-f', 'vms.yaml', '--auto-approve', '--state', join(dir, 'state.db')],
        {
          cwd: dir,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      await new Promise<void>((resolve) => {
        victim.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (/destroying|creating/i.test(out)) {
            victim.kill('SIGKILL');
            resolve();
          }
        });
        victim.on('close', () => resolve());
      });
      await new Promise((res) => victim.on('close', res));
      const check = new Database(join(dir, 'state.db'), { readonly: true });
      expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
      check.close();
      r = run(dir, ['apply', '-f', 'vms.yaml', '--auto-approve']);
      expect(r.stderr).toMatch(
        new RegExp(
          `^mvctl: took over the state lock of \`mvctl apply\` \\(pid ${victim.pid} on host .*\\): that process is no longer running\n$`,
        ),
      );
      expect(r.code).toBe(0);
      r = run(dir, ['plan', '-f', 'vms.yaml', '--detailed-exitcode']);
      expect(r.code).toBe(0);

      // import of a running VM: forgotten by state rm (which leaves it running), adopted again by its
      // control socket, after which a plan with the same manifests is empty
      const tinyPid3 = pidOf(dir, 'tiny');
      const socket = controlSocketOf(dir, 'tiny');
      r = run(dir, ['state', 'rm', 'VirtualMachine/tiny']);
      expect(r.code).toBe(0);
      expect(alive(tinyPid3)).toBe(true);
      r = run(dir, ['import', 'VirtualMachine/tiny', socket, '-f', 'vms.yaml']);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain(`VirtualMachine/tiny: imported the running VMM (pid ${tinyPid3}`);
      r = run(dir, ['plan', '-f', 'vms.yaml', '--detailed-exitcode']);
      expect(r.code).toBe(0);

      // destroy: processes gone, state empty, disk file removed
      const pids = [pidOf(dir, 'linux'), pidOf(dir, 'tiny')];
      r = run(dir, ['destroy', '--auto-approve']);
      expect(r.code).toBe(0);
      for (const p of pids) expect(alive(p)).toBe(false);
      r = run(dir, ['state', 'list']);
      expect(r.stdout.trim()).toBe('');
      expect(existsSync(join(dir, 'disks', 'scratch.img'))).toBe(false);
    },
    scaled(600_000),
  );

  it(
    'a second mvctl fails at once on the lock while destroy waits out a guest that ignores the power button',
    async () => {
      assertBuilt();
      const dir = tempDir('mvctl-lock-');
      writeFileSync(
        join(dir, 'stubborn.elf'),
        tinyPvhElf([...x86.print('up\n'), ...x86.acpiDeafToPowerButton]),
      );
      writeFileSync(
        join(dir, 'vm.yaml'),
        `apiVersion: mvisor.dev/v1alpha1
kind: VirtualMachine
metadata: {name: stubborn}
spec:
  memory: 16M
  firmware: {kernel: stubborn.elf}
  shutdownTimeout: ${SHUTDOWN_S}s
`,
      );
      let r = run(dir, ['apply', '-f', 'vm.yaml', '--auto-approve']);
      expect(r.code).toBe(0);
      const pid = pidOf(dir, 'stubborn');
      await new Promise((res) => setTimeout(res, 300)); // let the guest enable PWRBTN_EN
      const t0 = Date.now();
      const destroy = spawn(
        process.execPath,
        [mvctl, 'destroy', '--auto-approve', '--state', join(dir, 'state.db')],
        {
          cwd: dir,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      destroy.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor(() => /destroying/.test(out), scaled(10_000), 'destroy to start');
      // What starting mvctl costs here and now (a state list takes no lock): "at once" is on top of it.
      const t = Date.now();
      expect(run(dir, ['state', 'list']).code).toBe(0);
      const startCost = Date.now() - t;
      const t1 = Date.now();
      r = run(dir, ['apply', '-f', 'vm.yaml', '--auto-approve']);
      expect(r.code).toBe(1);
      expect(Date.now() - t1 - startCost).toBeLessThan(scaled(3000));
      expect(r.stderr).toMatch(/state is locked by `mvctl destroy` \(pid \d+/);
      const code = await new Promise<number | null>((res) => destroy.on('close', res));
      expect(code).toBe(0);
      // The guest got the power button, ignored it for shutdownTimeout, then was stopped.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(SHUTDOWN_S * 1000);
      expect(out).toMatch(/destroyed .*stopped \(stop\)/);
      expect(alive(pid)).toBe(false);
      expect(run(dir, ['state', 'list']).stdout.trim()).toBe('');
    },
    scaled(120_000),
  );
});
