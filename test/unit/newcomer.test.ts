/**
 * A newcomer's path: a clear message on a Node.js that is too old, `make
 * install` putting mvctl and mvisor on PATH, and a build that leaves the
 * addon alone when native/ did not change.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertBuilt, repoRoot, tempDir } from './../helpers/mvisor.js';

describe('newcomer path', () => {
  it('the bins refuse a Node.js older than 20.12 with one clear line', () => {
    for (const [version, ok] of [
      ['18.19.0', false],
      ['20.11.1', false],
      ['20.12.0', true],
      ['22.1.0', true],
    ] as const) {
      const fake = `Object.defineProperty(process, 'versions', { value: { ...process.versions, node: '${version}' } });
        Object.defineProperty(process, 'version', { value: 'v${version}' });
        await import(${JSON.stringify(join(repoRoot, 'bin/node-check.js'))});`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', fake], { encoding: 'utf8' });
      if (ok) expect(r.status, `${version}: ${r.stderr}`).toBe(0);
      else {
        expect(r.status, version).toBe(1);
        expect(r.stderr).toBe(
          `mvisor needs Node.js 20.12 or newer; this is v${version} (README.md, "The two commands", says how to get it)\n`,
        );
      }
    }
  });

  it('make install links mvctl and mvisor into PREFIX/bin, and they run', () => {
    assertBuilt();
    const prefix = tempDir('mvisor-install-');
    // -o build: the tree is built already (make test builds it); only the install recipe runs.
    const make = spawnSync('make', ['-s', '-o', 'build', 'install', `PREFIX=${prefix}`], {
      cwd: repoRoot,
      encoding: 'utf8',
    });
    expect(make.status, make.stderr).toBe(0);
    for (const bin of ['mvctl', 'mvisor']) {
      const r = spawnSync(join(prefix, 'bin', bin), ['--version'], { encoding: 'utf8' });
      expect(r.status, `${bin}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/^mvisor\/\d+\.\d+\.\d+/);
    }
  });

  it('the addon is up to date for make unless a file of native/ changed', () => {
    assertBuilt();
    const addon = 'build/Release/mvisor_kvm.node';
    const q = (...args: string[]) => spawnSync('make', ['-q', ...args, addon], { cwd: repoRoot }).status;
    expect(q()).toBe(0);
    const source = readdirSync(join(repoRoot, 'native')).find((f) => f.endsWith('.cc'));
    expect(source).toBeDefined();
    // -W: as if the file had just been modified.
    expect(q('-W', `native/${source}`)).toBe(1);
  });
});
