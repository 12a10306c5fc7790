/**
 * Every example validates, and applying an example then planning again shows
 * no changes (no spurious diffs from defaults).
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { loadManifests } from '../../src/engine/manifest/load.js';
import { isGrowOnly, updatePolicy } from '../../src/engine/manifest/schemas.js';
import { plan } from '../../src/engine/plan/planner.js';
import type { ActualResource } from '../../src/engine/state/refresh.js';
import { parseVmmConfig } from '../../src/vmm/config/load.js';
import { readFileSync } from 'node:fs';
import { repoRoot } from '../helpers/mvisor.js';

describe('examples', () => {
  it('the demo manifests plan a create, and nothing once applied', () => {
    const desired = loadManifests([join(repoRoot, 'examples/demo')]);
    expect(desired.map((d) => `${d.kind}/${d.name}`)).toEqual(['VirtualMachine/demo']);
    const first = plan(desired, [], updatePolicy, { growOnly: isGrowOnly });
    expect(first.summary.create).toBe(1);
    const applied: ActualResource[] = desired.map((d) => ({
      kind: d.kind,
      name: d.name,
      spec: JSON.parse(JSON.stringify(d.spec)) as Record<string, unknown>,
      dependsOn: d.dependsOn,
      status: 'running',
      pid: 1,
      drift: [],
    }));
    const again = plan(loadManifests([join(repoRoot, 'examples/demo')]), applied, updatePolicy, {
      growOnly: isGrowOnly,
    });
    expect(again.hasChanges).toBe(false);
  });

  it('the low-level VMM config example parses (kernel paths aside)', () => {
    const path = join(repoRoot, 'examples/vmm/demo.yaml');
    try {
      const c = parseVmmConfig(readFileSync(path, 'utf8'), path);
      expect(c.vcpus).toBe(2);
    } catch (e) {
      // Only a missing guest-kit kernel (not built here) may fail it.
      expect((e as Error).message).toMatch(/kernel: .*no such file|initrd: .*no such file/i);
    }
  });
});
