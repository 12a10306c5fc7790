/**
 * `mvctl import VirtualMachine/NAME SOCKET` against a stand-in VMM: a real
 * child process named mvisor.js with --control, answering `status` on its
 * socket as the VMM does (the nested mvctl test imports a real one).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { defaultVmUuid } from '../../../src/platform/uuid.js';
import { mvctl } from '../../helpers/mvctl.js';
import { assertBuilt, tempDir } from '../../helpers/mvisor.js';

const FAKE_VMM = `
const net = require('node:net');
const sock = process.argv[process.argv.indexOf('--control') + 1];
const status = JSON.parse(process.env.FAKE_STATUS);
net
  .createServer((s) => s.on('data', () => s.write(JSON.stringify({ ok: true, ...status, pid: process.pid }) + '\\n')))
  .listen(sock, () => process.stdout.write('ready\\n'));
`;

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

async function fakeVmm(dir: string, name: string, status: Record<string, unknown>): Promise<string> {
  writeFileSync(join(dir, 'mvisor.js'), FAKE_VMM);
  const socket = join(dir, `${name}.sock`);
  const child = spawn(process.execPath, [join(dir, 'mvisor.js'), '--control', socket], {
    env: { ...process.env, FAKE_STATUS: JSON.stringify(status) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
  return socket;
}

it('imports a running VMM that matches the manifest (then plans no change), and refuses one that does not', async () => {
  assertBuilt();
  const dir = tempDir('mvctl-import-vm-');
  writeFileSync(join(dir, 'vmlinux'), '');
  writeFileSync(
    join(dir, 'vm.yaml'),
    'apiVersion: mvisor.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: web}\n' +
      'spec: {memory: 64M, vcpus: 2, firmware: {kernel: vmlinux, cmdline: console=ttyS0}}\n',
  );
  const state = ['--state', join(dir, 'state.db')];
  // A whole status as the control protocol has it (src/platform/control-protocol.ts).
  const running = {
    state: 'running',
    vcpus: 2,
    memory: 64 * 2 ** 20,
    uuid: defaultVmUuid('web'),
    images: [],
    uptimeMs: 5,
    exits: { io: 0, mmio: 0, other: 0 },
  };

  // A named state file that does not exist is an error for import too (a typo must not start a new state).
  const typo = mvctl(dir, ['import', 'VirtualMachine/web', join(dir, 'x.sock'), '-f', 'vm.yaml', ...state]);
  expect(typo.code).toBe(1);
  expect(typo.stderr).toContain('no such state file (--state)');
  expect(mvctl(dir, ['state', 'init', ...state]).code).toBe(0);

  const other = await fakeVmm(dir, 'other', { ...running, name: 'web', memory: 32 * 2 ** 20 });
  const refused = mvctl(dir, ['import', 'VirtualMachine/web', other, '-f', 'vm.yaml', ...state]);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain(
    'vm.yaml:1:1: VirtualMachine/web: the VMM at ' +
      `${other} runs memory (bytes) 33554432, the manifest says spec.memory: 67108864`,
  );
  const disk = await fakeVmm(dir, 'disk', {
    ...running,
    name: 'web',
    images: [{ device: 'x', path: '/srv/x.img' }],
  });
  const images = mvctl(dir, ['import', 'VirtualMachine/web', disk, '-f', 'vm.yaml', ...state]);
  expect(images.code).toBe(1);
  expect(images.stderr).toContain(`the VMM at ${disk} runs the images x=/srv/x.img; the manifest gives none`);
  const nobody = mvctl(dir, [
    'import',
    'VirtualMachine/web',
    join(dir, 'none.sock'),
    '-f',
    'vm.yaml',
    ...state,
  ]);
  expect(nobody.code).toBe(1);
  expect(nobody.stderr).toContain('no mvisor VMM answers on its control socket');

  const socket = await fakeVmm(dir, 'web', { ...running, name: 'web' });
  const imported = mvctl(dir, ['import', 'VirtualMachine/web', socket, '-f', 'vm.yaml', ...state]);
  expect(imported.code, imported.stderr).toBe(0);
  expect(imported.stdout).toMatch(/VirtualMachine\/web: imported the running VMM \(pid \d+/);
  const plan = mvctl(dir, ['plan', '-f', 'vm.yaml', '--detailed-exitcode', ...state]);
  expect(plan.stdout).toContain('No changes');
  expect(plan.code).toBe(0);
  const again = mvctl(dir, ['import', 'VirtualMachine/web', socket, '-f', 'vm.yaml', ...state]);
  expect(again.code).toBe(1);
  expect(again.stderr).toContain('already in state');
});
