import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Runs the real bins as child processes. They load the compiled commands,
 * so this needs `npx tsc -p tsconfig.build.json` first.
 */
const root = fileURLToPath(new URL('../../../../', import.meta.url));
const built = existsSync(`${root}dist/src/commands/vm/run.js`);
if (!built)
  console.warn('cli.test.ts: dist/ is missing; run `npx tsc -p tsconfig.build.json` to run these tests');

function run(bin: string, args: string[]) {
  const env = { ...process.env };
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
    '(known: serial-port, debug-console, option-rom, virtio-block, ata-disk, ata-cdrom, floppy, isa-debug-exit, pc-testdev, pci-testdev)';

  it('mvisor -c <bad config> prints one file:line line and exits 2', () => {
    const r = run('mvisor', ['-c', badDevice]);
    expect(r.stderrLines).toEqual([expected]);
    expect(r.code).toBe(2);
  });

  it('mvctl vm run -c <bad config> does the same', () => {
    const r = run('mvctl', ['vm', 'run', '-c', badDevice]);
    expect(r.stderrLines).toEqual([expected]);
    expect(r.code).toBe(2);
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

  it('shows examples in the help', () => {
    const r = run('mvctl', ['vm', 'run', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/EXAMPLES/);
    expect(r.stdout).toMatch(/mvisor -c vm\.yaml/);
  });
});
