/**
 * mvctl's one exit-code contract, with the real bin as a child process (no
 * KVM needed: disks only): 0 success, 1 any error (usage errors included),
 * 2 only for "changes present" under --detailed-exitcode.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { StateStore } from '../../../src/engine/state/store.js';
import { mvctl } from '../../helpers/mvctl.js';
import { assertBuilt, tempDir } from '../../helpers/mvisor.js';
import { outputValidator } from '../../helpers/output-schemas.js';

const validatePlan = outputValidator('plan');
const validateEvent = outputValidator('apply-event');

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

  it('show prints every line of a failure reason and exits 1 while a resource is failed', () => {
    assertBuilt();
    const dir = tempDir('mvctl-show-');
    const path = join(dir, 'state.db');
    const store = StateStore.open(path);
    store.put({ kind: 'Disk', name: 'ok', spec: { format: 'raw', size: 512 }, status: 'ready' });
    store.put({
      kind: 'VirtualMachine',
      name: 'web',
      spec: {},
      status: 'failed',
      error: 'web: mvisor exited with code 1 before the VM ran:\nfirst log line\nlast log line',
    });
    store.close();
    const r = mvctl(dir, ['show', '--state', path]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      '    error: web: mvisor exited with code 1 before the VM ran:\n    error: first log line\n    error: last log line\n',
    );
    expect(r.stderr).toBe('mvctl show: 1 resource(s) failed\n');
  });

  it('apply --json writes JSON lines only: the plan, each step, the summary; again with nothing to do', () => {
    assertBuilt();
    const dir = tempDir('mvctl-json-');
    writeFileSync(join(dir, 'disk.yaml'), DISK);
    const args = ['apply', '-f', 'disk.yaml', '--json', '--auto-approve', '--state', join(dir, 'state.db')];
    // Every line is valid against the published schema (schema/output/).
    const types = (out: string) =>
      out
        .trim()
        .split('\n')
        .map((l) => {
          const event = JSON.parse(l) as { type: string };
          expect(validateEvent(event), JSON.stringify(validateEvent.errors)).toBe(true);
          return event.type;
        });
    const first = mvctl(dir, args);
    expect(first.code, first.stderr).toBe(0);
    expect(types(first.stdout)).toEqual(['plan', 'step-start', 'step-done', 'summary']);
    const again = mvctl(dir, args);
    expect(types(again.stdout)).toEqual(['plan', 'summary']);
    const plan = mvctl(dir, ['plan', '-f', 'disk.yaml', '--json', '--state', join(dir, 'state.db')]);
    expect(validatePlan(JSON.parse(plan.stdout)), JSON.stringify(validatePlan.errors)).toBe(true);
  });

  it("a Disk over the user's file: plan and apply refuse naming the line; import adopts it (checked), destroy keeps its bytes", () => {
    assertBuilt();
    const dir = tempDir('mvctl-exit-');
    const mine = join(dir, 'mine.img');
    const bytes = Buffer.alloc(1024 * 1024, 0x5a);
    writeFileSync(mine, bytes);
    writeFileSync(join(dir, 'disk.yaml'), DISK.replace('{size: 1M}', '{size: 1M, path: mine.img}'));
    const state = ['--state', join(dir, 'state.db')];
    for (const cmd of [['apply', '--auto-approve'], ['plan'], ['apply', '--auto-approve']]) {
      const r = mvctl(dir, [...cmd, '-f', 'disk.yaml', ...state]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(`disk.yaml:1:1: Disk/data: spec.path: ${mine} already exists`);
      expect(r.stderr).toContain(`mvctl import Disk/data ${mine}`);
    }
    // The manifest must describe the file: a wrong size is refused.
    writeFileSync(join(dir, 'wrong.yaml'), DISK.replace('{size: 1M}', '{size: 2M, path: mine.img}'));
    const wrong = mvctl(dir, ['import', 'Disk/data', mine, '-f', 'wrong.yaml', ...state]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(
      `Disk/data: ${mine} is 1048576 bytes (virtual size), the manifest says size: 2097152 bytes`,
    );
    const imported = mvctl(dir, ['import', 'Disk/data', mine, '-f', 'disk.yaml', ...state]);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stdout).toContain(`Disk/data: imported ${mine} (raw, 1048576 bytes)`);
    expect(mvctl(dir, ['plan', '-f', 'disk.yaml', '--detailed-exitcode', ...state]).code).toBe(0);
    const destroyed = mvctl(dir, ['destroy', '--auto-approve', ...state]);
    expect(destroyed.code).toBe(0);
    expect(destroyed.stdout).toContain(`kept ${mine}`);
    expect(readFileSync(mine)).toEqual(bytes);
  });
});
