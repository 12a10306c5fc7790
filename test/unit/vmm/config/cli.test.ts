import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEVICE_REGISTRY } from '../../../../src/vmm/board/registry.js';

/**
 * Runs the real bins as child processes. They load the compiled commands,
 * so this needs `npx tsc -p tsconfig.build.json` first.
 */
const root = fileURLToPath(new URL('../../../../', import.meta.url));
const built = existsSync(`${root}dist/src/commands/vm/run.js`);
if (!built)
  console.warn('cli.test.ts: dist/ is missing; run `npx tsc -p tsconfig.build.json` to run these tests');

function run(bin: string, args: string[], extraEnv: Record<string, string> = {}) {
  const env = { ...process.env, ...extraEnv };
  delete env.DEBUG;
  const r = spawnSync(process.execPath, [`bin/${bin}.js`, ...args], {
    cwd: root,
    env,
    encoding: 'utf8',
    timeout: 30_000,
  });
  return {
    code: r.status,
    stdout: r.stdout,
    stderrLines: r.stderr.split('\n').filter((l) => l.trim() !== ''),
  };
}

describe.skipIf(!built)('mvisor / mvctl vm run (child process)', () => {
  const badDevice = 'test/fixtures/vmm-config/bad-unknown-device.yaml';
  const expected =
    `${badDevice}:7:12: devices[1].class: unknown device class "virtio-blk" ` +
    `(known: ${Object.keys(DEVICE_REGISTRY).join(', ')})`;

  it('mvisor -c <bad config> prints one file:line line and exits 2', () => {
    const r = run('mvisor', ['-c', badDevice]);
    expect(r.stderrLines).toEqual([expected]);
    expect(r.code).toBe(2);
  });

  it('the one-file bundle bin/mvisor.js loads (scripts/bundle.mjs) is fresh and behaves as the modules do', () => {
    const bundle = `${root}dist/src/cli/vm-run.bundle.cjs`;
    expect(existsSync(bundle), 'make build writes the bundle').toBe(true);
    expect(statSync(bundle).mtimeMs).toBeGreaterThanOrEqual(
      statSync(`${root}dist/src/cli/vm-run.js`).mtimeMs,
    );
    for (const args of [
      ['-c', badDevice],
      ['-c', 'test/fixtures/vmm-config/good-minimal.yaml', '--serial', 'tty'],
    ]) {
      const bundled = run('mvisor', args);
      const modules = run('mvisor', args, { MVISOR_UNBUNDLED: '1' });
      expect(bundled).toEqual(modules);
      expect(bundled.code).toBe(2);
    }
  });

  it("mvctl vm run -c <bad config> prints the same, with mvctl's exit code 1 (2 means changes present)", () => {
    const r = run('mvctl', ['vm', 'run', '-c', badDevice]);
    expect(r.stderrLines).toEqual([expected]);
    expect(r.code).toBe(1);
  });

  it('exits 2 without -c', () => {
    const r = run('mvisor', []);
    expect(r.code).toBe(2);
    expect(r.stderrLines.join('\n')).toMatch(/Missing required flag config/);
  });

  it('exits 2 for an unknown flag or a bad --serial', () => {
    expect(run('mvisor', ['-c', badDevice, '--bogus']).code).toBe(2);
    const r = run('mvisor', ['-c', 'test/fixtures/vmm-config/good-minimal.yaml', '--serial', 'tty']);
    expect(r.stderrLines).toEqual([
      '--serial: invalid value "tty": expected stdio, none, file:PATH or socket:PATH',
    ]);
    expect(r.code).toBe(2);
  });

  it('without a usable /dev/kvm: one line naming the cause and the remedy, exit 1, before the VM starts', () => {
    const noKvm = { MVISOR_KVM_DEVICE: '/nonexistent/kvm' };
    const r = run('mvisor', ['-c', 'test/fixtures/vmm-config/good-minimal.yaml'], noKvm);
    expect(r.stderrLines).toHaveLength(1);
    expect(r.stderrLines[0]).toMatch(
      /^mvisor: cannot run VM minimal: \/nonexistent\/kvm does not exist: .*(modprobe|paravirtual).*nested virtualization/,
    );
    expect(r.code).toBe(1);
    // A bad config is still reported as such (exit 2) first: validating it starts nothing.
    expect(run('mvisor', ['-c', badDevice], noKvm).code).toBe(2);
    const m = run('mvctl', ['vm', 'run', '-c', 'test/fixtures/vmm-config/good-minimal.yaml'], noKvm);
    expect(m.stderrLines).toEqual(r.stderrLines);
    expect(m.code).toBe(1);
  });

  it('mvctl apply of a plan that starts a VM refuses before it changes anything when KVM is not usable', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mvctl-nokvm-'));
    const state = join(dir, 'state.db');
    const noKvm = { MVISOR_KVM_DEVICE: '/nonexistent/kvm' };
    const r = run(
      'mvctl',
      ['apply', '-f', 'test/fixtures/manifests/good/minimal.yaml', '--auto-approve', '--state', state],
      noKvm,
    );
    expect(r.code).toBe(1);
    expect(r.stderrLines.join('\n')).toMatch(
      /cannot start VirtualMachine\/tiny: \/nonexistent\/kvm does not exist: .*; nothing was changed/,
    );
    const list = run('mvctl', ['state', 'list', '--state', state]);
    expect(list.code).toBe(0);
    expect(list.stdout.trim()).toBe('');
    expect(existsSync(join(dir, 'vms'))).toBe(false);
  });

  it('shows examples in the help', () => {
    const r = run('mvctl', ['vm', 'run', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/EXAMPLES/);
    expect(r.stdout).toMatch(/mvisor -c vm\.yaml/);
  });
});
