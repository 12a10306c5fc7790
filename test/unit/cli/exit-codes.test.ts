/**
 * mvctl's one exit-code contract, with the real bin as a child process (no
 * KVM needed: disks only): 0 success, 1 any error (usage errors included),
 * 2 only for "changes present" under --detailed-exitcode.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertBuilt, repoRoot, tempDir } from '../../helpers/mvisor.js';

function mvctl(dir: string, args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env.DEBUG;
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin/mvctl.js'), ...args], {
    cwd: dir,
    env,
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const DISK = 'apiVersion: mvisor.dev/v1alpha1\nkind: Disk\nmetadata: {name: data}\nspec: {size: 1M}\n';

describe('mvctl exit codes', () => {
  it('usage errors exit 1, not 2: an unknown command, an unknown flag, a missing flag value', () => {
    assertBuilt();
    const dir = tempDir('mvctl-exit-');
    for (const args of [['no-such-command'], ['plan', '--no-such-flag'], ['plan', '-f']]) {
      const r = mvctl(dir, args);
      expect(r.code, `mvctl ${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr).not.toBe('');
    }
    expect(mvctl(dir, ['--version']).code).toBe(0);
  });

  it('plan --detailed-exitcode: 2 with changes, 0 without, 1 on an error', () => {
    assertBuilt();
    const dir = tempDir('mvctl-exit-');
    writeFileSync(join(dir, 'disk.yaml'), DISK);
    const state = ['--state', join(dir, 'state.db')];
    // A named state file that does not exist: an error (a typo must not start an empty state), created by apply only.
    const missing = mvctl(dir, ['plan', '-f', 'disk.yaml', '--detailed-exitcode', ...state]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${join(dir, 'state.db')}: no such state file (--state)`);
    expect(existsSync(join(dir, 'state.db'))).toBe(false);
    expect(mvctl(dir, ['apply', '-f', 'disk.yaml', ...state]).code).toBe(1); // no terminal, no --auto-approve
    expect(mvctl(dir, ['plan', '-f', 'disk.yaml', '--detailed-exitcode', ...state]).code).toBe(2);
    expect(mvctl(dir, ['plan', '-f', 'disk.yaml', ...state]).code).toBe(0);
    expect(mvctl(dir, ['apply', '-f', 'disk.yaml', '--auto-approve', ...state]).code).toBe(0);
    expect(mvctl(dir, ['plan', '-f', 'disk.yaml', '--detailed-exitcode', ...state]).code).toBe(0);
    // Manifests that declare nothing: refused (it would destroy everything), unless --allow-empty.
    writeFileSync(join(dir, 'empty.yaml'), '# everything commented out\n---\n');
    const empty = mvctl(dir, ['plan', '-f', 'empty.yaml', '--detailed-exitcode', ...state]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain(
      'the manifests declare no resources, so the plan would destroy all 1 in state',
    );
    expect(
      mvctl(dir, ['plan', '-f', 'empty.yaml', '--allow-empty', '--detailed-exitcode', ...state]).code,
    ).toBe(2);
    writeFileSync(join(dir, 'bad.yaml'), 'kind: Disk\n');
    expect(mvctl(dir, ['plan', '-f', 'bad.yaml', '--detailed-exitcode', ...state]).code).toBe(1);
  });

  it('apply --json writes JSON lines only: the plan, each step, the summary; again with nothing to do', () => {
    assertBuilt();
    const dir = tempDir('mvctl-json-');
    writeFileSync(join(dir, 'disk.yaml'), DISK);
    const args = ['apply', '-f', 'disk.yaml', '--json', '--auto-approve', '--state', join(dir, 'state.db')];
    const types = (out: string) =>
      out
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { type: string }).type);
    const first = mvctl(dir, args);
    expect(first.code, first.stderr).toBe(0);
    expect(types(first.stdout)).toEqual(['plan', 'step-start', 'step-done', 'summary']);
    const again = mvctl(dir, args);
    expect(types(again.stdout)).toEqual(['plan', 'summary']);
  });

  it("a Disk over the user's file: plan and apply exit 1 naming the line, twice; destroy leaves the bytes", () => {
    assertBuilt();
    const dir = tempDir('mvctl-exit-');
    const mine = join(dir, 'mine.img');
    writeFileSync(mine, 'precious\n');
    writeFileSync(join(dir, 'disk.yaml'), DISK.replace('{size: 1M}', '{size: 1M, path: mine.img}'));
    const state = ['--state', join(dir, 'state.db')];
    for (const cmd of [['apply', '--auto-approve'], ['plan'], ['apply', '--auto-approve']]) {
      const r = mvctl(dir, [...cmd, '-f', 'disk.yaml', ...state]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(`disk.yaml:1:1: Disk/data: spec.path: ${mine} already exists`);
    }
    expect(mvctl(dir, ['destroy', '--auto-approve', ...state]).code).toBe(0);
    expect(readFileSync(mine, 'utf8')).toBe('precious\n');
  });
});
