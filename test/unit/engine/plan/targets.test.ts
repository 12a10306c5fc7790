/**
 * `--target`: a plan of some resources and what they depend on, nothing else;
 * a targeted delete of something a remaining resource uses is refused.
 */
import { describe, expect, it } from 'vitest';
import { plan, PlanError, type Plan } from '../../../../src/engine/plan/planner.js';
import { renderPlan } from '../../../../src/engine/plan/render.js';
import { DISK, have, policy, VM, want } from './fixtures.js';

const actionsOf = (p: Plan): string[] => p.actions.map((a) => `${a.action} ${a.key}`);
const id = (key: string) => {
  const [kind, name] = key.split('/') as [never, string];
  return { kind, name };
};

describe('plan --target', () => {
  const desired = [
    want('Network/lan', { bridge: 'br0' }),
    want('Disk/root', DISK),
    want('Disk/other', DISK),
    want('VirtualMachine/web', VM, ['Disk/root', 'Network/lan']),
    want('VirtualMachine/db', VM, ['Disk/other']),
  ];

  it('plans a target and what it depends on, and says so', () => {
    const p = plan(desired, [have('Disk/old', DISK)], policy, { targets: [id('VirtualMachine/web')] });
    expect(actionsOf(p)).toEqual(['create Network/lan', 'create Disk/root', 'create VirtualMachine/web']);
    expect(p.steps.map((s) => s.key)).toEqual([
      'create:Network/lan',
      'create:Disk/root',
      'create:VirtualMachine/web',
    ]);
    expect(p.targets).toEqual(['VirtualMachine/web']);
    expect(p.summary.delete).toBe(0);
    expect(renderPlan(p, { color: false })).toMatch(
      /^Targeted plan: only VirtualMachine\/web and what it depends on/,
    );
    // Without targets: everything, and no `targets` field.
    expect(plan(desired, [have('Disk/old', DISK)], policy).targets).toBeUndefined();
  });

  it('plans the delete of a targeted resource that only state has', () => {
    const p = plan(desired, [have('Disk/old', DISK)], policy, { targets: [id('Disk/old')] });
    expect(actionsOf(p)).toEqual(['delete Disk/old']);
  });

  it('refuses a target that is nowhere, and a delete of what a remaining resource uses', () => {
    expect(() => plan(desired, [], policy, { targets: [id('Disk/nope')] })).toThrow(
      /--target Disk\/nope: no such resource in the manifests or in state/,
    );
    const actual = [have('Disk/gone', DISK), have('VirtualMachine/old', VM, { deps: ['Disk/gone'] })];
    expect(() => plan([], actual, policy, { targets: [id('Disk/gone')] })).toThrow(PlanError);
    expect(
      actionsOf(plan([], actual, policy, { targets: [id('Disk/gone'), id('VirtualMachine/old')] })),
    ).toEqual(['delete VirtualMachine/old', 'delete Disk/gone']);
  });
});

describe('the recorded spec hash', () => {
  it('skips the diff of a spec whose hash is the applied one, and diffs any other', async () => {
    const { hashJson } = await import('../../../../src/engine/canonical.js');
    const applied = have('Disk/root', DISK);
    const same = plan([want('Disk/root', DISK)], [{ ...applied, specHash: hashJson(applied.spec) }], policy);
    expect(actionsOf(same)).toEqual(['noop Disk/root']);
    const grown = { ...DISK, size: 2 * DISK.size };
    const changed = plan(
      [want('Disk/root', grown)],
      [{ ...applied, specHash: hashJson(applied.spec) }],
      policy,
    );
    expect(actionsOf(changed)).toEqual(['update Disk/root']);
    expect(changed.actions[0]?.changes.map((c) => c.path)).toEqual([['size']]);
    // The fingerprints do not depend on whether the hash was recorded.
    expect(same.createdFrom).toEqual(plan([want('Disk/root', DISK)], [applied], policy).createdFrom);
  });
});

describe('--target and dependents', () => {
  it('refuses a targeted replace whose untargeted users would be replaced with it', () => {
    const actual = [have('Disk/root', DISK), have('VirtualMachine/web', VM, { deps: ['Disk/root'] })];
    // A format change forces the Disk's replacement, and so the VM's.
    const desired = [
      want('Disk/root', { ...DISK, format: 'qcow2' }),
      want('VirtualMachine/web', VM, ['Disk/root']),
    ];
    expect(actionsOf(plan(desired, actual, policy))).toEqual([
      'replace VirtualMachine/web',
      'replace Disk/root',
    ]);
    expect(() => plan(desired, actual, policy, { targets: [id('Disk/root')] })).toThrow(
      /--target: Disk\/root is replaced, so VirtualMachine\/web, which uses it, is replaced too: target VirtualMachine\/web as well/,
    );
    const both = plan(desired, actual, policy, { targets: [id('Disk/root'), id('VirtualMachine/web')] });
    expect(actionsOf(both).sort()).toEqual(['replace Disk/root', 'replace VirtualMachine/web']);
  });
});
