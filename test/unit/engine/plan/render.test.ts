import { describe, expect, it } from 'vitest';
import { parsePlan, plan } from '../../../../src/engine/plan/planner.js';
import { planExitCode, renderPlan, renderPlanJson } from '../../../../src/engine/plan/render.js';
import { DISK, have, policy, VM, want } from './fixtures.js';

function mixedPlan() {
  return plan(
    [
      want('Network/lan', { bridge: 'br0' }),
      want('Disk/data', { ...DISK, path: '/var/lib/mvisor/data.img' }),
      want('Disk/root', { ...DISK, size: 2 * DISK.size }),
      want('VirtualMachine/db', { ...VM, memory: 268435456 }, ['Disk/data']),
      want('VirtualMachine/web', VM, ['Disk/root', 'Network/lan']),
      want('VirtualMachine/batch', { ...VM, running: false }),
    ],
    [
      have('Disk/root', DISK),
      have('Disk/data', { ...DISK, path: '/var/lib/mvisor/data.img' }),
      have('VirtualMachine/db', VM, { deps: ['Disk/data'] }),
      {
        ...have('VirtualMachine/web', VM, { deps: ['Disk/root'], drift: ['vm-process-gone'] }),
        status: 'stopped',
        pid: null,
      },
      have('VirtualMachine/batch', VM),
      have('VirtualMachine/old', VM),
    ],
    policy,
  );
}

describe('renderPlan', () => {
  it('shows drift first, then each action with its marker and field diffs, then the count', () => {
    expect(renderPlan(mixedPlan(), { color: false })).toMatchInlineSnapshot(`
      "Changes outside mvctl (drift):

        ! VirtualMachine/web: VMM process 1000 is gone

      Actions are shown with these symbols:
        + create
        ~ update in place
      -/+ destroy and then create again
        - destroy
       || stop

      mvctl will perform the following actions:

        # VirtualMachine/old will be destroyed (not in the configuration)
        - VirtualMachine/old
            - memory: 134217728
            - running: true
            - shutdownTimeout: "30s"
            - vcpus: 1

        # VirtualMachine/db must be replaced (memory forces replacement)
      -/+ VirtualMachine/db
            ~ memory: 134217728 -> 268435456 (forces replacement)

        # VirtualMachine/batch will be stopped (running: false)
       || VirtualMachine/batch
            ~ running: true -> false

        # Network/lan will be created
        + Network/lan
            + bridge: "br0"

        # Disk/root will be updated in place (size changes in place)
        ~ Disk/root
            ~ size: 1073741824 -> 2147483648

        # VirtualMachine/web will be created again (drift: VMM process 1000 is gone)
        + VirtualMachine/web

      Plan: 3 to add, 2 to change, 2 to destroy.
      "
    `);
  });

  it('says so when nothing changes', () => {
    const p = plan([want('VirtualMachine/web', VM)], [have('VirtualMachine/web', VM)], policy);
    expect(renderPlan(p, { color: false })).toMatchInlineSnapshot(`
      "No changes. Your VMs match the configuration.
      "
    `);
  });

  it('shows a create with every field', () => {
    const p = plan([want('Disk/root', { ...DISK, labels: { tier: 'a' }, extra: [] })], [], policy);
    expect(renderPlan(p, { color: false })).toMatchInlineSnapshot(`
      "Actions are shown with these symbols:
        + create

      mvctl will perform the following actions:

        # Disk/root will be created
        + Disk/root
            + extra: []
            + format: "raw"
            + labels.tier: "a"
            + path: "/var/lib/mvisor/d.img"
            + size: 1073741824

      Plan: 1 to add, 0 to change, 0 to destroy.
      "
    `);
  });

  it("shows a disk's creation, growth and deletion", () => {
    const p = plan(
      [
        want('Disk/new', { format: 'qcow2', size: DISK.size, backingFile: '/img/base.qcow2' }),
        want('Disk/root', { ...DISK, size: 2 * DISK.size }),
      ],
      [have('Disk/root', DISK), have('Disk/old', { ...DISK, path: '/var/lib/mvisor/old.img' })],
      policy,
    );
    expect(renderPlan(p, { color: false })).toMatchInlineSnapshot(`
      "Actions are shown with these symbols:
        + create
        ~ update in place
        - destroy

      mvctl will perform the following actions:

        # Disk/old will be destroyed (not in the configuration)
        - Disk/old
            - format: "raw"
            - path: "/var/lib/mvisor/old.img"
            - size: 1073741824

        # Disk/new will be created
        + Disk/new
            + backingFile: "/img/base.qcow2"
            + format: "qcow2"
            + size: 1073741824

        # Disk/root will be updated in place (size changes in place)
        ~ Disk/root
            ~ size: 1073741824 -> 2147483648

      Plan: 1 to add, 1 to change, 1 to destroy.
      "
    `);
  });

  it('colours only when asked', () => {
    const p = mixedPlan();
    expect(renderPlan(p)).toContain('\u001b[');
    expect(renderPlan(p, { color: true })).toContain('\u001b[32m+\u001b[0m');
    expect(renderPlan(p, { color: false })).not.toContain('\u001b');
  });
});

describe('renderPlanJson', () => {
  it('is the plan value with its flags, and parses back', () => {
    const p = mixedPlan();
    const json = JSON.parse(renderPlanJson(p)) as Record<string, unknown>;
    expect(json).toMatchObject({ version: 1, hasChanges: true, hasDestroy: true, hasDrift: true });
    expect(parsePlan(json)).toEqual(p);
  });
});

describe('planExitCode', () => {
  it('is 2 with detailedExitCode when there are changes, else 0', () => {
    const changed = mixedPlan();
    const same = plan([want('Disk/d', DISK)], [have('Disk/d', DISK)], policy);
    expect(planExitCode(changed)).toBe(0);
    expect(planExitCode(changed, { detailedExitCode: true })).toBe(2);
    expect(planExitCode(same, { detailedExitCode: true })).toBe(0);
  });
});
