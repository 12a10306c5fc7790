/**
 * The VMM control socket (src/vmm/control.ts) against a real mvisor child
 * process running a guest that spins.
 */
import { writeFileSync, existsSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts.js';
import { tinyPvhElf, x86 } from '../helpers/tiny-elf.js';
import { runMvisor, tempDir } from '../helpers/mvisor.js';

/** User + system CPU time of a process, in seconds (/proc/PID/stat fields 14 and 15). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function waitFor(path: string, ms = scaled(10_000)): Promise<void> {
  const t = Date.now();
  while (!existsSync(path)) {
    if (Date.now() - t > ms) throw new Error(`${path} did not appear`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sends requests on one connection; resolves with one parsed response per request. */
function talk(path: string, reqs: object[]): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    const out: Record<string, unknown>[] = [];
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(reqs.map((r) => JSON.stringify(r)).join('\n') + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        out.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
        buf = buf.slice(nl + 1);
        if (out.length === reqs.length) {
          sock.end();
          resolve(out);
        }
      }
    });
    sock.on('error', reject);
  });
}

describe('control socket', () => {
  it('reports status, pauses, resumes, lists vCPUs, rejects junk, and stops the VM with exit code 0', async () => {
    const dir = tempDir();
    const kernel = join(dir, 'spin.elf');
    writeFileSync(kernel, tinyPvhElf([...x86.print('spinning\n'), ...x86.hang]));
    const ctl = join(dir, 'ctl.sock');
    let sawOutput!: () => void;
    const spinning = new Promise<void>((r) => (sawOutput = r));
    const run = runMvisor(
      { name: 'spin', memory: '16M', vcpus: 2, kernel },
      {
        dir,
        args: ['--control', ctl],
        timeoutMs: scaled(30_000),
        onLine: (l) => l === 'spinning' && sawOutput(),
      },
    );
    await spinning;
    await waitFor(ctl);
    const [status, bad, unknown, pause, vcpus, stillPaused, resume, running] = await talk(ctl, [
      { id: 1, cmd: 'status' },
      { cmd: 42 },
      { cmd: 'explode' },
      { cmd: 'pause' },
      { cmd: 'vcpus' },
      { cmd: 'status' },
      { cmd: 'resume' },
      { cmd: 'status' },
    ]);
    // A paused VM costs no CPU: neither its vCPU threads nor the JS thread spin.
    const pid = status!.pid as number;
    await talk(ctl, [{ cmd: 'pause' }]);
    const cpuBefore = cpuSeconds(pid);
    await new Promise((r) => setTimeout(r, 1000));
    const cpuWhilePaused = cpuSeconds(pid) - cpuBefore;
    await talk(ctl, [{ cmd: 'resume' }]);
    expect(cpuWhilePaused).toBeLessThan(0.2);
    // Listing vCPUs of a paused VM leaves it paused.
    expect(stillPaused).toMatchObject({ ok: true, state: 'paused' });
    expect(running).toMatchObject({ ok: true, state: 'running' });
    expect(status).toMatchObject({ id: 1, ok: true, name: 'spin', state: 'running', vcpus: 2 });
    expect(bad).toMatchObject({ ok: false });
    expect(unknown!.error).toMatch(/unknown command "explode"/);
    expect(pause).toMatchObject({ ok: true });
    expect(vcpus!.vcpus).toHaveLength(2);
    expect((vcpus!.vcpus as string[])[0]).toMatch(/^vcpu0: RIP 0x1000[0-9a-f]{2} 32-bit protected mode/);
    expect((vcpus!.vcpus as string[])[1]).toMatch(/vcpu1: .*mp-state uninitialized/);
    expect(resume).toMatchObject({ ok: true });
    const [stop] = await talk(ctl, [{ cmd: 'stop' }]);
    expect(stop).toMatchObject({ ok: true });
    const r = await run;
    expect(r.stdout).toContain('spinning');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('stopped through the control socket');
    expect(existsSync(ctl)).toBe(false);
  });

  it('powerdown presses the ACPI power button: an ACPI guest powers off (S5) and mvisor exits 0', async () => {
    const dir = tempDir();
    const kernel = join(dir, 'acpi.elf');
    writeFileSync(kernel, tinyPvhElf([...x86.print('listening\n'), ...x86.acpiPowerButtonToS5, ...x86.hang]));
    const ctl = join(dir, 'ctl.sock');
    let ready!: () => void;
    const listening = new Promise<void>((r) => (ready = r));
    const run = runMvisor(
      { name: 'acpi', memory: '16M', kernel },
      {
        dir,
        args: ['--control', ctl],
        timeoutMs: scaled(30_000),
        onLine: (l) => l === 'listening' && ready(),
      },
    );
    await listening;
    await waitFor(ctl);
    await new Promise((r) => setTimeout(r, 200)); // let it enable PWRBTN_EN
    const [res] = await talk(ctl, [{ cmd: 'powerdown' }]);
    expect(res).toMatchObject({ ok: true });
    const r = await run;
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('guest powered off (ACPI S5 (soft off))');
  });

  it('powerdown is refused at once when no ACPI OS listens', async () => {
    const dir = tempDir();
    const kernel = join(dir, 'spin.elf');
    writeFileSync(kernel, tinyPvhElf([...x86.print('spinning\n'), ...x86.hang]));
    const ctl = join(dir, 'ctl.sock');
    const run = runMvisor(
      { name: 'deaf', memory: '16M', kernel },
      { dir, args: ['--control', ctl], timeoutMs: scaled(30_000) },
    );
    await waitFor(ctl);
    const [res, stop] = await talk(ctl, [{ cmd: 'powerdown' }, { cmd: 'stop' }]);
    expect(res!.error).toMatch(/has not enabled the ACPI power button/);
    expect(stop).toMatchObject({ ok: true });
    expect((await run).code).toBe(0);
  });
});
