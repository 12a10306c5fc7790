/**
 * Bad inputs to `mvisor -c`: one clear line naming the problem and exit
 * code 2, before any guest runs.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { guestKit, runMvisor, runMvisorFile, tempDir } from '../helpers/mvisor.js';
import { tinyPvhElf } from '../helpers/tiny-elf.js';

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

describe('bad inputs', () => {
  it('a missing kernel file names the config line', async () => {
    const dir = tempDir();
    const r = await runMvisor({ name: 'x', kernel: join(dir, 'nope') }, { dir });
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/vm\.yaml:2:\d+: kernel: .*nope.*no such file/i);
  });

  it('a truncated vmlinux is refused with the file name', async () => {
    const dir = tempDir();
    const kernel = join(dir, 'vmlinux');
    writeFileSync(kernel, readFileSync(guestKit().kernel).subarray(0, 100_000));
    const r = await runMvisor({ name: 'x', memory: '64M', kernel }, { dir });
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toContain(kernel);
  });

  it('a truncated bzImage is refused with the file name', async () => {
    const dir = tempDir();
    const kernel = join(dir, 'bzImage');
    writeFileSync(kernel, readFileSync(guestKit().bzImage).subarray(0, 64 * 1024));
    const r = await runMvisor({ name: 'x', memory: '64M', kernel }, { dir });
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toContain(kernel);
  });

  it('a file that is no kernel at all is refused', async () => {
    const dir = tempDir();
    const kernel = join(dir, 'notes.txt');
    writeFileSync(kernel, 'hello, I am not a kernel\n'.repeat(100));
    const r = await runMvisor({ name: 'x', memory: '64M', kernel }, { dir });
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/notes\.txt: not a kernel mvisor can boot/);
  });

  it('a kernel that does not fit in RAM is refused', async () => {
    const dir = tempDir();
    const kernel = join(dir, 'vmlinux');
    copyFileSync(guestKit().kernel, kernel);
    const r = await runMvisor({ name: 'x', memory: '8M', kernel }, { dir });
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toContain(kernel);
  });

  it('bad sizes and unknown devices are config errors with file:line', async () => {
    const dir = tempDir();
    const kernel = join(dir, 'k.elf');
    writeFileSync(kernel, tinyPvhElf([0xeb, 0xfe]));
    const path = join(dir, 'vm.yaml');
    writeFileSync(path, stringify({ name: 'x', memory: '12Q', kernel }));
    let r = await runMvisorFile(path);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/vm\.yaml:2:\d+: memory: /);
    writeFileSync(path, stringify({ name: 'x', kernel, devices: [{ class: 'flux-capacitor' }] }));
    r = await runMvisorFile(path);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/vm\.yaml:4:\d+: devices\[0\]\.class: unknown device class/);
    writeFileSync(path, stringify({ name: 'x', kernel, devices: [{ class: 'debug-console', port: 0x70 }] }));
    r = await runMvisorFile(path);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/devices\[0\]\.port: port 0x70 is already used by the CMOS\/RTC/);
    writeFileSync(path, stringify({ name: 'x', kernel, cpu: 'baseline,+warpdrive' }));
    r = await runMvisorFile(path);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/warpdrive/);
  });
});
