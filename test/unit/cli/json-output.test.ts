/**
 * The JSON of show, state list and state show, from the real bin, validated
 * against the published schemas (schema/output/), and checked for content.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { mvctl } from '../../helpers/mvctl.js';
import { assertBuilt, tempDir } from '../../helpers/mvisor.js';
import { outputValidator, validationErrors } from '../../helpers/output-schemas.js';

function valid(name: string, text: string): unknown {
  const value: unknown = JSON.parse(text);
  const v = outputValidator(name);
  expect(v(value), `${name}: ${validationErrors(v)}`).toBe(true);
  return value;
}

it('show --json, state list --json and state show print versioned JSON that their schemas accept', () => {
  assertBuilt();
  const dir = tempDir('mvctl-json-');
  writeFileSync(join(dir, 'vmlinux'), '');
  writeFileSync(
    join(dir, 'vms.yaml'),
    [
      'apiVersion: mvisor.dev/v1alpha1\nkind: Disk\nmetadata: {name: data}\nspec: {size: 1M}\n',
      'apiVersion: mvisor.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: vm}\n' +
        'spec: {running: false, disks: [{disk: data}], firmware: {kernel: vmlinux, cmdline: console=ttyS0}}\n',
    ].join('---\n'),
  );
  const state = ['--state', join(dir, 'state.db')];
  const applied = mvctl(dir, ['apply', '-f', 'vms.yaml', '--auto-approve', ...state]);
  expect(applied.code, applied.stderr).toBe(0);

  const show = valid('show', mvctl(dir, ['show', '--json', ...state]).stdout) as {
    resources: { resource: string; status: string }[];
  };
  expect(show.resources.map((r) => `${r.resource} ${r.status}`)).toEqual([
    'Disk/data ready',
    'VirtualMachine/vm stopped',
  ]);
  const list = valid('state-list', mvctl(dir, ['state', 'list', '--json', ...state]).stdout) as {
    resources: { kind: string; name: string }[];
  };
  expect(list.resources.map((r) => `${r.kind}/${r.name}`)).toEqual(['Disk/data', 'VirtualMachine/vm']);
  const disk = valid('state-resource', mvctl(dir, ['state', 'show', 'Disk/data', ...state]).stdout) as {
    ownedFiles: string[];
    spec: { size: number };
  };
  expect(disk.spec.size).toBe(1024 * 1024);
  expect(disk.ownedFiles).toEqual([join(dir, 'disks', 'data.img')]);
});
