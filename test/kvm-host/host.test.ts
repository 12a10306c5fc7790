import { describe, expect, it } from 'vitest';
import { ConsoleParser, describeOutcome, qemuArgs, runScript } from './host.js';

const feed = (p: ConsoleParser, lines: string[]) =>
  lines.map((l) => p.line(l)).filter((x) => x !== undefined);

describe('test host console', () => {
  it('passes on the command output after READY and reads the exit code', () => {
    const p = new ConsoleParser('n1');
    const out = feed(p, [
      'SeaBIOS (version 1.16)',
      '[    1.0] kvm: something',
      'MVHOST-READY n1 7.20',
      'hello\r',
      'MVHOST-EXIT n1 3',
    ]);
    expect(out).toEqual(['hello']);
    expect(p.ready).toBe(7.2);
    expect(p.finish(0, '')).toEqual({ kind: 'exited', code: 3 });
  });

  it('ignores markers with another nonce (the command cannot forge them)', () => {
    const p = new ConsoleParser('n1');
    feed(p, ['MVHOST-READY n1 1', 'MVHOST-EXIT other 0']);
    expect(p.finish(0, '').kind).toBe('qemu-failed');
  });

  it('recognises a kernel panic, also after an exit line, but not a test printing "BUG: "', () => {
    const p = new ConsoleParser('n1');
    feed(p, [
      'MVHOST-READY n1 1',
      'expect(BUG: x)',
      '[   50.1] BUG: TASK stack guard page was hit at 0000',
      '[   50.2] Kernel panic - not syncing: Fatal exception',
    ]);
    const o = p.finish(0, '');
    expect(o).toEqual({ kind: 'panic', line: '[   50.1] BUG: TASK stack guard page was hit at 0000' });
    expect(describeOutcome(o)).toMatch(/panicked: .*stack guard/);
    const q = new ConsoleParser('n1');
    feed(q, ['MVHOST-READY n1 1', 'a test prints BUG: something', 'MVHOST-EXIT n1 0']);
    expect(q.finish(0, '')).toEqual({ kind: 'exited', code: 0 });
  });

  it('a panic before READY counts without a timestamp', () => {
    const p = new ConsoleParser('n1');
    feed(p, ['Kernel panic - not syncing: VFS: Unable to mount root fs']);
    expect(p.finish(0, '').kind).toBe('panic');
  });

  it('reads module, no-kvm and mount failures', () => {
    for (const [line, kind] of [
      ['MVHOST-FAIL n1 module kvm_amd', 'module'],
      ['MVHOST-FAIL n1 no-kvm', 'no-kvm'],
      ['MVHOST-FAIL n1 mount hostroot', 'mount'],
    ] as const) {
      const p = new ConsoleParser('n1');
      feed(p, [line]);
      const o = p.finish(0, '');
      expect(o.kind).toBe(kind);
      expect(describeOutcome(o)).not.toBe('');
    }
    const p = new ConsoleParser('n1');
    feed(p, ['MVHOST-FAIL n1 module kvm_amd']);
    expect(p.finish(0, '')).toEqual({ kind: 'module', module: 'kvm_amd' });
  });

  it('QEMU ending silently is a failure with its stderr', () => {
    const p = new ConsoleParser('n1');
    expect(p.finish(1, 'qemu: could not load kernel\n')).toEqual({
      kind: 'qemu-failed',
      code: 1,
      stderr: 'qemu: could not load kernel',
    });
  });

  it('keeps the last lines of the console', () => {
    const p = new ConsoleParser('n1', 3);
    feed(p, ['a', 'b', 'c', 'd']);
    expect(p.tail).toEqual(['b', 'c', 'd']);
  });
});

describe('test host QEMU command line', () => {
  const base = { command: 'true', scratch: '/tmp/s', timeoutMs: 1000 };

  it('boots TCG with emulated SVM, the root read-only and the scratch folder read-write', () => {
    const a = qemuArgs('/img', base, 'n1');
    const joined = a.join(' ');
    expect(joined).toContain('-accel tcg,thread=multi -M pc -cpu max -smp 2 -m 4096');
    expect(joined).toContain(
      'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    );
    expect(joined).toContain('local,path=/tmp/s,mount_tag=scratch,security_model=none,multidevs=remap');
    expect(a[a.indexOf('-kernel') + 1]).toBe('/img/vmlinuz');
    const append = a[a.indexOf('-append') + 1]!;
    expect(append).toMatch(/panic=-1/);
    expect(append).toContain('mvhost.nonce=n1 mvhost.scratch=/tmp/s');
    expect(append).not.toContain('mvhost.net');
    expect(a).not.toContain('-netdev');
  });

  it('machine, devices, kernel arguments, modules and port forwards', () => {
    const a = qemuArgs(
      '/img',
      {
        ...base,
        machine: 'q35,kernel-irqchip=split',
        cpus: 1,
        memoryMiB: 2048,
        devices: ['intel-iommu,intremap=on', 'edu'],
        kernelArgs: ['intel_iommu=on'],
        modules: ['tun', 'vfio-pci'],
        forwards: [{ host: 15900, guest: 5900 }],
      },
      'n1',
    );
    const joined = a.join(' ');
    expect(joined).toContain('-M q35,kernel-irqchip=split -cpu max -smp 1 -m 2048');
    expect(joined).toContain('-device intel-iommu,intremap=on -device edu');
    expect(joined).toContain('user,id=n0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:15900-:5900');
    const append = a[a.indexOf('-append') + 1]!;
    expect(append).toContain('mvhost.modules=tun,vfio-pci mvhost.net=1 intel_iommu=on');
  });

  it('the run script changes directory, exports the environment and quotes it', () => {
    expect(runScript({ ...base, cwd: "/w'x", env: { A: "it's" }, command: 'echo $A' })).toBe(
      `cd '/w'\\''x' || exit 127\nexport A='it'\\''s'\necho $A\n`,
    );
  });
});
