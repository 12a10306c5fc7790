/**
 * The nested KVM test host itself, booted for real under QEMU's TCG (no KVM
 * needed on this machine): the options a boot takes, what comes back, and
 * how each way of failing is recognised. About 15 s per boot here.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kvmHostImage, runInKvmHost } from './host.js';

const image = kvmHostImage();
const scratch = () => mkdtempSync(join(tmpdir(), 'kvm-host-test-'));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Connects to 127.0.0.1:port until something answers; resolves to what it sent. */
async function fetchFrom(port: number, deadline: number): Promise<string> {
  while (Date.now() < deadline) {
    const got = await new Promise<string | undefined>((resolve) => {
      let data = '';
      const c = connect(port, '127.0.0.1');
      c.on('data', (d) => (data += d.toString()));
      c.on('end', () => resolve(data || undefined));
      c.on('error', () => resolve(undefined));
    });
    if (got) return got;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`nothing answered on 127.0.0.1:${port}`);
}

describe('the nested KVM test host', () => {
  it('boots q35 with QEMU edu, 2 GiB, 1 vCPU, tun and a port forward; runs the command chrooted on a read-only root with /dev/kvm; its exit code and scratch files come back', async () => {
    const dir = scratch();
    const port = await freePort();
    let output = '';
    let served: Promise<string> | undefined;
    const r = await runInKvmHost({
      image,
      scratch: dir,
      cwd: '/',
      machine: 'q35',
      devices: ['edu'],
      memoryMiB: 2048,
      cpus: 1,
      modules: ['tun'],
      forwards: [{ host: port, guest: 7777 }],
      env: { GREETING: "it's here" },
      command: [
        'echo "mem_kb=$(awk \'/MemTotal/ {print $2}\' /proc/meminfo)"',
        'echo "cpus=$(nproc)"',
        '[ -c /dev/kvm ] && echo kvm=yes',
        "grep -q '^tun ' /proc/modules && echo tun=yes",
        'grep -qx 0x11e8 /sys/bus/pci/devices/*/device && echo edu=yes',
        'touch /etc/mvisor-host-test 2>/dev/null || echo root=read-only',
        `echo "$GREETING" > ${dir}/out.txt`,
        'echo serving',
        'echo served-by-the-host | busybox nc -l -p 7777',
        'exit 7',
      ].join('\n'),
      timeoutMs: 180_000,
      onOutput: (t) => {
        output += t;
        if (!served && output.includes('serving')) served = fetchFrom(port, Date.now() + 60_000);
      },
    });
    expect(r.outcome, r.consoleTail.join('\n')).toEqual({ kind: 'exited', code: 7 });
    const mem = Number(/mem_kb=(\d+)/.exec(output)?.[1]);
    expect(mem).toBeGreaterThan(1800 * 1024);
    expect(mem).toBeLessThanOrEqual(2048 * 1024);
    expect(output).toContain('cpus=1');
    expect(output).toContain('kvm=yes');
    expect(output).toContain('tun=yes');
    expect(output).toContain('edu=yes');
    expect(output).toContain('root=read-only');
    expect(await served).toBe('served-by-the-host\n');
    expect(readFileSync(join(dir, 'out.txt'), 'utf8')).toBe("it's here\n");
    expect(r.readySeconds).toBeGreaterThan(0);
  }, 240_000);

  it('a kernel panic is recognised on the console and reported with its line', async () => {
    const r = await runInKvmHost({
      image,
      scratch: scratch(),
      command: 'echo c > /proc/sysrq-trigger; sleep 60',
      timeoutMs: 120_000,
    });
    expect(r.outcome.kind).toBe('panic');
    expect(r.outcome.kind === 'panic' && r.outcome.line).toMatch(/Kernel panic|sysrq|BUG/);
    expect(r.wallMs).toBeLessThan(60_000);
  }, 180_000);

  it('a module the host lacks, and a command over its deadline, each end the boot with the reason', async () => {
    const m = await runInKvmHost({
      image,
      scratch: scratch(),
      modules: ['no-such-module'],
      command: 'true',
      timeoutMs: 120_000,
    });
    expect(m.outcome).toEqual({ kind: 'module', module: 'no-such-module (not in the test host)' });
    const t = await runInKvmHost({ image, scratch: scratch(), command: 'sleep 600', timeoutMs: 40_000 });
    expect(t.outcome).toEqual({ kind: 'timeout', phase: 'command' });
    expect(t.wallMs).toBeLessThan(60_000);
  }, 240_000);
});
