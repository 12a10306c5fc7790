/**
 * The manifests the README shows are the files of examples/vms/, byte for
 * byte, and the real bin validates them (every file they name) and plans them.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { mvctl } from '../../helpers/mvctl.js';
import { assertBuilt, repoRoot, tempDir } from '../../helpers/mvisor.js';

/** The README's YAML blocks that start with `# examples/...`, as [path, content]. */
function readmeExamples(): [string, string][] {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^```yaml\n# (examples\/\S+)\n([\s\S]*?)^```$/gm)];
  return blocks.map((m) => [m[1]!, m[2]!]);
}

it("the README's manifests are the files of examples/vms, which validate and plan", () => {
  assertBuilt();
  const shown = readmeExamples();
  expect(shown.map(([p]) => p).sort()).toEqual(['examples/vms/appliance.yaml', 'examples/vms/web.yaml']);
  for (const [path, content] of shown) expect(content, path).toBe(readFileSync(join(repoRoot, path), 'utf8'));

  // The web VM boots the guest kit's kernel from ~/.cache: a home with stand-ins (validate reads them only).
  const home = tempDir('mvctl-readme-');
  const kit = join(home, '.cache/mvisor/guest-kit');
  mkdirSync(kit, { recursive: true });
  for (const f of ['vmlinux', 'initramfs.cpio']) writeFileSync(join(kit, f), 'stand-in');
  const env = { HOME: home };

  const validate = mvctl(repoRoot, ['validate', '-f', 'examples/vms'], env);
  expect(validate.code, validate.stderr).toBe(0);
  const state = ['--state', join(home, 'state.db')];
  expect(mvctl(home, ['state', 'init', ...state], env).code).toBe(0);
  const plan = mvctl(repoRoot, ['plan', '-f', 'examples/vms', '--json', ...state], env);
  expect(plan.code, plan.stderr).toBe(0);
  const p = JSON.parse(plan.stdout) as { actions: { action: string; key: string }[] };
  expect(p.actions.map((a) => `${a.action} ${a.key}`).sort()).toEqual([
    'create Disk/appliance-root',
    'create Disk/data',
    'create Disk/seed',
    'create VirtualMachine/appliance',
    'create VirtualMachine/web',
  ]);

  // Without the backing file the Disk example points at, validate names the manifest line.
  const broken = tempDir('mvctl-readme-');
  writeFileSync(join(broken, 'web.yaml'), readFileSync(join(repoRoot, 'examples/vms/web.yaml')));
  const missing = mvctl(broken, ['validate', '-f', 'web.yaml'], env);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(
    /web\.yaml:\d+:\d+: Disk\/seed: spec\.backingFile: .*seed\.qcow2: no such file/,
  );
});
