/**
 * mvctl validate with the real bin: manifests and every file they name,
 * state untouched.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mvctl as run } from '../../helpers/mvctl.js';
import { assertBuilt, tempDir } from '../../helpers/mvisor.js';

const mvctl = (dir: string, args: string[]) => run(dir, args, { MVISOR_STATE: join(dir, 'never.db') });

const VM = (devices: string) => `apiVersion: mvisor.dev/v1alpha1
kind: VirtualMachine
metadata: {name: web}
spec:
  memory: 64M
  firmware: {kernel: vmlinux, initrd: initrd.img, cmdline: console=ttyS0}
  fwCfg:
    - {name: opt/org.example/seed, file: seed.json}
  devices:
${devices}
---
apiVersion: mvisor.dev/v1alpha1
kind: Disk
metadata: {name: data}
spec: {format: qcow2, size: 1M, backingFile: base.qcow2}
`;

describe('mvctl validate', () => {
  it('names each missing or broken file with its manifest line and field, and touches no state', () => {
    assertBuilt();
    const dir = tempDir('mvctl-validate-');
    writeFileSync(join(dir, 'initrd.img'), 'x');
    // An overlay whose backing file is missing (qemu-img -u writes it without checking).
    const q = spawnSync(
      'qemu-img',
      ['create', '-q', '-f', 'qcow2', '-u', '-b', 'gone.img', '-F', 'raw', 'base.qcow2', '1M'],
      {
        cwd: dir,
      },
    );
    expect(q.status).toBe(0);
    writeFileSync(
      join(dir, 'vm.yaml'),
      VM(
        '    - {class: floppy, name: fd, image: fd.img}\n    - {class: ata-cdrom, name: cd, image: base.qcow2}',
      ),
    );
    const r = mvctl(dir, ['validate', '-f', 'vm.yaml']);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual([
      expect.stringMatching(
        new RegExp(
          `^vm\\.yaml:6:\\d+: VirtualMachine/web: spec\\.firmware\\.kernel: ${dir}/vmlinux: no such file$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(
          `^vm\\.yaml:8:\\d+: VirtualMachine/web: spec\\.fwCfg\\[0\\]\\.file: ${dir}/seed\\.json: no such file$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(
          `^vm\\.yaml:10:\\d+: VirtualMachine/web: spec\\.devices\\[0\\]\\.image: ${dir}/fd\\.img: no such file$`,
        ),
      ),
      expect.stringMatching(/^vm\.yaml:11:\d+: VirtualMachine\/web: spec\.devices\[1\]\.image: .*gone\.img/),
      expect.stringMatching(/^vm\.yaml:\d+:\d+: Disk\/data: spec\.backingFile: .*gone\.img/),
    ]);
    expect(existsSync(join(dir, 'never.db'))).toBe(false);

    for (const f of ['vmlinux', 'seed.json', 'fd.img', 'gone.img'])
      writeFileSync(join(dir, f), Buffer.alloc(512));
    const ok = mvctl(dir, ['validate', '-f', 'vm.yaml']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe('2 resource(s) valid, and every file they name is there.\n');
    expect(existsSync(join(dir, 'never.db'))).toBe(false);
  });
});
