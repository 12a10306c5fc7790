/** `--target` with the real bin: plan and apply of one resource, a saved plan, a bad reference. */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { mvctl } from '../../helpers/mvctl.js';
import { assertBuilt, tempDir } from '../../helpers/mvisor.js';
import { outputValidator, validationErrors } from '../../helpers/output-schemas.js';

const disk = (name: string) =>
  `apiVersion: mvisor.dev/v1alpha1\nkind: Disk\nmetadata: {name: ${name}}\nspec: {size: 1M}\n`;

it('plan and apply --target change only the targeted resource; a saved plan cannot be re-targeted', () => {
  assertBuilt();
  const dir = tempDir('mvctl-target-');
  writeFileSync(join(dir, 'disks.yaml'), [disk('a'), disk('b')].join('---\n'));
  const state = ['--state', join(dir, 'state.db')];

  expect(mvctl(dir, ['state', 'init', ...state]).code).toBe(0);

  const p = mvctl(dir, [
    'plan',
    '-f',
    'disks.yaml',
    '--target',
    'Disk/a',
    '--json',
    '--out',
    'p.json',
    ...state,
  ]);
  expect(p.code, p.stderr).toBe(0);
  const json = JSON.parse(p.stdout) as { targets: string[]; actions: { key: string }[] };
  const validatePlan = outputValidator('plan');
  expect(validatePlan(json), validationErrors(validatePlan)).toBe(true);
  expect(json.targets).toEqual(['Disk/a']);
  expect(json.actions.map((a) => a.key)).toEqual(['Disk/a']);

  const retarget = mvctl(dir, ['apply', 'p.json', '--target', 'Disk/b', ...state]);
  expect(retarget.code).toBe(1);
  expect(retarget.stderr).toContain('--target applies to a new plan');
  const applied = mvctl(dir, ['apply', 'p.json', ...state]);
  expect(applied.code, applied.stderr).toBe(0);
  expect(existsSync(join(dir, 'disks', 'a.img'))).toBe(true);
  expect(existsSync(join(dir, 'disks', 'b.img'))).toBe(false);

  const bad = mvctl(dir, [
    'plan',
    '-f',
    'disks.yaml',
    '--target',
    'Disk/zzz',
    '--target',
    'nonsense',
    ...state,
  ]);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain('nonsense: expected KIND/NAME');
  const rest = mvctl(dir, ['apply', '-f', 'disks.yaml', '--target', 'Disk/b', '--auto-approve', ...state]);
  expect(rest.code, rest.stderr).toBe(0);
  expect(rest.stdout).toContain('Targeted plan: only Disk/b');
  expect(existsSync(join(dir, 'disks', 'b.img'))).toBe(true);
});
