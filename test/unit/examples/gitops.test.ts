/**
 * examples/gitops: the pipeline's steps, run in order as pipeline.yml runs
 * them, against a temporary state: plan (saved plan as the artifact),
 * apply of that plan, plan again (nothing to do), and a stale saved plan
 * refused.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertBuilt, repoRoot, tempDir } from '../../helpers/mvisor.js';

const steps = join(repoRoot, 'examples/gitops/steps.sh');

function step(cwd: string, state: string, args: string[]) {
  const r = spawnSync('sh', [steps, ...args], {
    cwd,
    encoding: 'utf8',
    env: {
      ...process.env,
      MVISOR_STATE: state,
      MVCTL: `${process.execPath} ${join(repoRoot, 'bin/mvctl.js')}`,
      GITHUB_OUTPUT: join(cwd, 'github-output'),
      NO_COLOR: '1',
    },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('examples/gitops', () => {
  it('plan, apply the saved plan, plan again; a saved plan made before the state moved is refused', () => {
    assertBuilt();
    const run1 = tempDir('gitops-run1-');
    const run2 = tempDir('gitops-run2-');
    const state = join(tempDir('gitops-host-'), 'state.db');

    let r = step(run1, state, ['plan']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Plan: 2 to add, 0 to change, 0 to destroy/);
    expect(r.stdout).toContain('changes: true');
    expect(readFileSync(join(run1, 'github-output'), 'utf8')).toBe('changes=true\n');
    expect(existsSync(join(run1, 'plan.json'))).toBe(true);

    // A second pipeline run plans too, before the first one applies.
    r = step(run2, state, ['plan']);
    expect(r.code, r.stderr).toBe(0);

    r = step(run1, state, ['apply', 'plan.json']);
    expect(r.code, r.stderr).toBe(0);
    const events = readFileSync(join(run1, 'apply.jsonl'), 'utf8').trim().split('\n');
    expect(JSON.parse(events[events.length - 1]!)).toMatchObject({ type: 'summary', ok: true, added: 2 });

    // The second run's plan was made from the state before that apply: refused, nothing changes.
    r = step(run2, state, ['apply', 'plan.json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the saved plan is stale/);

    r = step(run2, state, ['plan']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('changes: false');
  });
});
