/**
 * The conformance runner's pure parts: reading x86/unittests.cfg as the
 * suite's scripts do, QEMU's command line and exit statuses as x86/run and
 * runtime.bash build and read them, the equivalent mvisor config (or the
 * SKIP reason), vmexit cycles, the table and the CI verdict.
 */
import { describe, expect, it } from 'vitest';
import { cpuFeatures } from '../../src/vmm/cpu/cpuid.js';
import { mvisorPlan, mvisorVerdict, translateCpu, translateMemory, vmName } from './mvisor.js';
import {
  envFileText,
  errata,
  kernelVersion,
  qemuAcceptsOptions,
  qemuArgv,
  qemuVerdict,
  summaryLine,
  testWords,
  type ProcessOutcome,
} from './qemu.js';
import { ciOutcome, formatTable, vmexitCycles, type Row } from './report.js';
import { shellWords } from './shell-words.js';
import { KNOWN_SKIPS, QEMU_PASSES_HERE } from './skips.js';
import { parseUnittestsCfg, suiteSkipReason, timeoutSeconds, type UnitTest } from './unittests.js';

const CFG = `##############################################################################
# unittest configuration
##############################################################################

[x2apic]
file = apic.flat
smp = 2
qemu_params = -cpu qemu64,+x2apic,+tsc-deadline
arch = x86_64
timeout = 30
groups = apic

[cmpxchg8b]
file = cmpxchg8b.flat
arch = i386

[vmexit_cpuid]
file = vmexit.flat
test_args = 'cpuid'
groups = vmexit

#[init]
#file = init.flat

[kvmclock_test]
file = kvmclock_test.flat
smp = 2
test_args = "10000000 \`date +%s\`"

[multi]
file = multi.flat
extra_params = """-cpu max
  -m 2048"""
groups = a nodefault
`;

const known = new Set(Object.keys(cpuFeatures));
const test = (name: string) => {
  const t = parseUnittestsCfg(CFG).find((x) => x.name === name);
  if (!t) throw new Error(name);
  return t;
};
const outcome = (o: Partial<ProcessOutcome>): ProcessOutcome => ({
  status: 1,
  signal: null,
  timedOut: false,
  stdout: '',
  stderr: '',
  ...o,
});

describe('unittests.cfg', () => {
  it('reads sections and keys as for_each_unittest does, comments and all', () => {
    const tests = parseUnittestsCfg(CFG);
    expect(tests.map((t) => t.name)).toEqual([
      'x2apic',
      'cmpxchg8b',
      'vmexit_cpuid',
      'kvmclock_test',
      'multi',
    ]);
    expect(tests[0]).toEqual({
      name: 'x2apic',
      file: 'x86/apic.flat',
      smp: '2',
      testArgs: '',
      extraParams: '-cpu qemu64,+x2apic,+tsc-deadline',
      groups: ['apic'],
      arch: 'x86_64',
      machine: '',
      check: [],
      accel: '',
      timeout: '30',
      disabledIf: '',
    } satisfies UnitTest);
    expect(test('vmexit_cpuid')).toMatchObject({ smp: '1', testArgs: "'cpuid'", groups: ['vmexit'] });
  });

  it('joins a """-quoted multi-line extra_params', () => {
    expect(test('multi').extraParams).toBe('-cpu max\n-m 2048');
  });

  it('reads timeouts as timeout(1) does, 90 s by default', () => {
    expect(timeoutSeconds('')).toBe(90);
    expect(timeoutSeconds('30')).toBe(30);
    expect(timeoutSeconds('180s')).toBe(180);
    expect(timeoutSeconds('2m')).toBe(120);
    expect(() => timeoutSeconds('soon')).toThrow('invalid timeout');
  });

  it('skips what run_tests.sh skips: other arch, nodefault, failed checks, missing files', () => {
    const opts = { arch: 'x86_64', suiteDir: '/nonexistent', readFile: () => undefined };
    expect(suiteSkipReason(test('cmpxchg8b'), opts)).toBe('i386 only');
    expect(suiteSkipReason(test('multi'), opts)).toBe('test marked as manual run only (group nodefault)');
    const check = { ...test('x2apic'), check: ['/sys/module/kvm/parameters/enable_pmu=Y'] };
    expect(suiteSkipReason(check, opts)).toBe('/sys/module/kvm/parameters/enable_pmu not equal to Y');
    expect(suiteSkipReason(check, { ...opts, readFile: () => 'Y\n' })).toBe(
      "Test file 'x86/apic.flat' not found",
    );
  });
});

describe('shell words (the scripts eval test_args and extra_params)', () => {
  it('splits on blanks and honours quotes and backslashes', () => {
    expect(shellWords(`-append 'cpuid' -cpu "qemu64,+x2apic"  a\\ b`)).toEqual([
      '-append',
      'cpuid',
      '-cpu',
      'qemu64,+x2apic',
      'a b',
    ]);
    expect(shellWords(`"-pause_filter_test -svm_x"`)).toEqual(['-pause_filter_test -svm_x']);
    expect(shellWords(`''`)).toEqual(['']);
    expect(() => shellWords(`'open`)).toThrow('unterminated');
  });

  it('runs backticks only when allowed, splitting unquoted output', () => {
    const sub = (cmd: string) => (cmd === 'date +%s' ? '1764100000\n' : 'a b');
    expect(shellWords('"10000000 `date +%s`"', sub)).toEqual(['10000000 1764100000']);
    expect(shellWords('x`echo`y', sub)).toEqual(['xa', 'by']);
    expect(() => shellWords('`date`')).toThrow('not allowed');
  });
});

describe('QEMU as x86/run runs it', () => {
  it('builds the command line of x86/run with run_tests.sh options and the env file', () => {
    const words = testWords(test('vmexit_cpuid'));
    expect(words).toEqual(['-smp', '1', '-append', 'cpuid']);
    expect(qemuArgv('x86/vmexit.flat', words, '/tmp/env').join(' ')).toBe(
      '--no-reboot -nodefaults -global kvm-pit.lost_tick_policy=discard -device pc-testdev ' +
        '-device isa-debug-exit,iobase=0xf4,iosize=0x4 -display none -serial stdio -device pci-testdev ' +
        '-machine accel=kvm -kernel x86/vmexit.flat -smp 1 -append cpuid -initrd /tmp/env',
    );
    expect(testWords(test('x2apic'))).toEqual(['-smp', '2', '-cpu', 'qemu64,+x2apic,+tsc-deadline']);
  });

  it('tells a QEMU that starts from one that refuses the options (premature_failure)', () => {
    expect(
      qemuAcceptsOptions(
        "qemu-system-x86_64: could not load kernel '_NO_FILE_4Uhere_': No such file or directory",
      ),
    ).toBe(true);
    expect(qemuAcceptsOptions('qemu-system-x86_64: error: failed to set MSR 0x10a to 0x...')).toBe(false);
  });

  it('reads exit statuses as qemu_fixup_return_code and runtime.bash do', () => {
    const summary = 'SUMMARY: 3 tests, 1 unexpected failures';
    expect(qemuVerdict(outcome({ status: 1, stdout: `x\n${summary}\n` }))).toEqual({
      result: 'PASS',
      summary: '3 tests, 1 unexpected failures',
    });
    expect(
      qemuVerdict(outcome({ status: 1, stderr: 'qemu-system-x86_64: warning: host lacks pni\n' })).result,
    ).toBe('PASS');
    expect(qemuVerdict(outcome({ status: 1, stderr: 'qemu-system-x86_64: -device x: not found\n' }))).toEqual(
      {
        result: 'FAIL',
        reason: 'QEMU failed: qemu-system-x86_64: -device x: not found',
      },
    );
    expect(qemuVerdict(outcome({ status: 3 }))).toMatchObject({
      result: 'FAIL',
      reason: 'the test reported failures',
    });
    expect(qemuVerdict(outcome({ status: 77 }))).toMatchObject({ result: 'SKIP' });
    expect(qemuVerdict(outcome({ status: 127 }))).toMatchObject({
      result: 'FAIL',
      reason: 'the test aborted',
    });
    expect(qemuVerdict(outcome({ status: 5 }))).toMatchObject({
      result: 'FAIL',
      reason: 'the test exited with code 2',
    });
    expect(qemuVerdict(outcome({ status: 0 })).reason).toMatch(/without isa-debug-exit/);
    expect(
      qemuVerdict(outcome({ status: 0, stderr: 'qemu: terminating on signal 15 from pid 1\n' })).reason,
    ).toBe('QEMU terminated on signal 15');
    expect(qemuVerdict(outcome({ status: null, signal: 'SIGTERM', timedOut: true })).result).toBe('TIMEOUT');
  });

  it('finds the SUMMARY line among the last 5 lines only', () => {
    expect(summaryLine('SUMMARY: 1 tests\r\n')).toBe('1 tests');
    expect(summaryLine('SUMMARY: 1 tests\n1\n2\n3\n4\n5\n')).toBeUndefined();
  });

  it('writes the environment file of arch-run.bash, errata by kernel version', () => {
    expect(kernelVersion('6.1.0-26-amd64')).toEqual({
      version: 6,
      patchlevel: 1,
      sublevel: 0,
      extraversion: 26,
    });
    expect(kernelVersion('6.18.44-fc-v657')).toEqual({ version: 6, patchlevel: 18, sublevel: 44 });
    const txt = '# comment\nabc123 : 4.9 : a fix\ndef456 : 6.19 : later\n789abc : 6.18.45 : patch\n';
    expect(errata(txt, kernelVersion('6.18.44'))).toEqual([
      ['ERRATA_abc123', true],
      ['ERRATA_def456', false],
      ['ERRATA_789abc', false],
    ]);
    const env = envFileText({
      kernelRelease: '6.1.0',
      qemuVersionString: 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)',
      errataTxt: txt,
    });
    expect(env).toContain('QEMU_MAJOR=7\nQEMU_MINOR=2\nQEMU_MICRO=22\n');
    expect(env).toContain('ERRATA_abc123=y\n');
    expect(envFileText({ kernelRelease: '6.1.0' })).not.toContain('QEMU');
  });
});

describe('the equivalent mvisor run', () => {
  const plan = (t: UnitTest, hasPitLostTicks = true) =>
    mvisorPlan({
      name: t.name,
      kernel: `/suite/${t.file}`,
      words: testWords(t, () => '1764100000'),
      envFile: '/logs/env',
      cpuFeatures: known,
      hasPitLostTicks,
    });

  it('boots the .flat through SeaBIOS with the test devices of x86/run, QEMU defaults for memory and CPU', () => {
    expect(plan(test('vmexit_cpuid'))).toEqual({
      config: {
        name: 'kut-vmexit_cpuid'.replace('_', '-'),
        memory: '128M',
        vcpus: 1,
        cpu: 'baseline',
        firmware: 'bios',
        kernel: '/suite/x86/vmexit.flat',
        cmdline: 'cpuid',
        modules: [{ file: '/logs/env' }],
        serial: 'stdio',
        pitLostTicks: 'discard',
        devices: [
          { class: 'pc-testdev' },
          { class: 'isa-debug-exit', iobase: 0xf4, iosize: 4 },
          { class: 'pci-testdev' },
        ],
      },
      notes: [],
    });
    expect(plan(test('kvmclock_test'))).toMatchObject({
      config: { vcpus: 2, cmdline: '10000000 1764100000' },
    });
    expect(plan(test('x2apic'))).toMatchObject({ config: { cpu: 'baseline,+x2apic,+tsc_deadline' } });
    expect(plan(test('vmexit_cpuid'), false)).toMatchObject({
      notes: ['lost PIT ticks replayed (this mvisor has no pitLostTicks)'],
    });
  });

  it('translates -cpu and -m where mvisor has an equivalent', () => {
    expect(translateCpu('qemu64,-pcid,+invpcid', known)).toEqual({ cpu: 'baseline,-pcid,+invpcid' });
    expect(translateCpu('max', known)).toEqual({
      cpu: 'host',
      note: '-cpu max run as host (all KVM-supported features)',
    });
    expect(translateCpu('host,x2apic=off', known)).toEqual({ cpu: 'host,-x2apic' });
    expect(translateMemory('2048')).toBe('2048M');
    expect(translateMemory('4g')).toBe('4G');
    expect(translateMemory('1G,slots=2,maxmem=4G')).toBeUndefined();
  });

  it('is a SKIP naming what mvisor does not offer', () => {
    const skip = (extra: string) =>
      mvisorPlan({
        name: 't',
        kernel: '/k',
        words: shellWords(`-smp 1 ${extra}`),
        cpuFeatures: known,
        hasPitLostTicks: true,
      });
    expect(skip('-cpu IvyBridge,phys-bits=36')).toEqual({
      skip: '-cpu IvyBridge,phys-bits=36: named CPU model IvyBridge (mvisor has host and baseline)',
    });
    expect(skip('-cpu max,vendor=GenuineIntel')).toEqual({
      skip: '-cpu max,vendor=GenuineIntel: CPU property vendor=GenuineIntel (mvisor sets features only)',
    });
    expect(skip('-cpu host,hv_passthrough')).toEqual({
      skip: '-cpu host,hv_passthrough: Hyper-V enlightenment hv_passthrough (mvisor has no Hyper-V emulation)',
    });
    expect(skip('-cpu max,+vmx-mbec')).toEqual({
      skip: '-cpu max,+vmx-mbec: CPU feature or property vmx-mbec (not an mvisor CPU feature)',
    });
    expect(skip('-M q35,kernel-irqchip=split -device intel-iommu,intremap=on,eim=off')).toEqual({
      skip: '-machine q35 (mvisor has only the pc machine)',
    });
    expect(skip('-machine vmport=on')).toEqual({
      skip: '-machine vmport=on (no such machine option in mvisor)',
    });
    expect(skip('-device edu')).toEqual({ skip: '-device edu (mvisor has no such device)' });
    expect(skip('-overcommit cpu-pm=on')).toEqual({
      skip: 'QEMU option -overcommit cpu-pm=on (no mvisor equivalent)',
    });
    // Not a skip: the suite drops the PIT there only for AVIC.
    expect(skip('-machine pit=off')).toMatchObject({
      notes: ['PIT kept (mvisor has no pit=off; it only matters to AVIC)'],
    });
    expect(skip('-enable-kvm -m 2048 -cpu host')).toMatchObject({ config: { memory: '2048M', cpu: 'host' } });
  });

  it('names VMs as the config wants them', () => {
    expect(vmName('access-reduced-maxphyaddr')).toBe('kut-access-reduced-maxphyaddr');
    expect(vmName('vmexit_ipi')).toBe('kut-vmexit-ipi');
  });

  it('reads mvisor exits: its own errors first, then isa-debug-exit statuses', () => {
    expect(mvisorVerdict(outcome({ status: 1 }))).toEqual({ result: 'PASS' });
    expect(
      mvisorVerdict(outcome({ status: 3, stdout: 'SUMMARY: 2 tests, 1 unexpected failures\n' })),
    ).toEqual({
      result: 'FAIL',
      reason: 'the test reported failures',
      summary: '2 tests, 1 unexpected failures',
    });
    expect(
      mvisorVerdict(
        outcome({
          status: 3,
          stderr:
            "mvisor: warn: vcpu0: KVM could not emulate 'fwait'\n" +
            'mvisor: error: vcpu0: KVM internal error, suberror 1 (emulation failure) at RIP 0xd970\n',
        }),
      ),
    ).toEqual({
      result: 'FAIL',
      reason: 'vcpu0: KVM internal error, suberror 1 (emulation failure) at RIP 0xd970',
    });
    expect(
      mvisorVerdict(outcome({ status: 2, stderr: 'vm.yaml:5:9: kernel: not a kernel mvisor can boot\n' })),
    ).toEqual({
      result: 'FAIL',
      reason: 'mvisor refused the config: vm.yaml:5:9: kernel: not a kernel mvisor can boot',
    });
    expect(mvisorVerdict(outcome({ status: 0 })).reason).toMatch(/before isa-debug-exit/);
    expect(mvisorVerdict(outcome({ status: 77 })).result).toBe('SKIP');
    expect(mvisorVerdict(outcome({ status: null, timedOut: true })).result).toBe('TIMEOUT');
  });
});

describe('results', () => {
  const row = (name: string, q?: Row['qemu'], m?: Row['mvisor'], ratio?: number): Row => ({
    name,
    file: 'x86/x.flat',
    smp: '1',
    testArgs: '',
    extraParams: '',
    groups: [],
    timeoutS: 90,
    ...(q ? { qemu: q } : {}),
    ...(m ? { mvisor: m } : {}),
    ...(ratio !== undefined ? { ratio } : {}),
  });

  it('reads the cycles vmexit.c prints for its test', () => {
    const out = 'pci-testdev at 0x10 membar febff000 iobar c000\r\ncpuid 19700\r\n';
    expect(vmexitCycles(out, 'cpuid')).toBe(19700);
    expect(vmexitCycles('ipi 537849\n  ipi ipi 12\n', 'ipi')).toBe(537849);
    expect(vmexitCycles('inl_from_pmtimer (skipped)\n', 'inl_from_pmtimer')).toBeUndefined();
  });

  it('prints one table with every test, reasons in the notes', () => {
    const table = formatTable(
      [
        row(
          'vmexit_cpuid',
          { result: 'PASS', durationMs: 7500, cycles: 19700 },
          { result: 'PASS', durationMs: 3500, cycles: 31100 },
          1.58,
        ),
        row('cmpxchg8b', { result: 'SKIP', reason: 'i386 only' }, { result: 'SKIP', reason: 'i386 only' }),
        row(
          'intel_iommu',
          { result: 'PASS', durationMs: 4000 },
          { result: 'SKIP', reason: '-machine q35 (mvisor has only the pc machine)' },
        ),
      ],
      { qemu: true, mvisor: true },
    );
    expect(table.split('\n')).toEqual([
      'test          qemu  s    mvisor  s    cycles qemu  cycles mvisor  mvisor/qemu  notes',
      'vmexit_cpuid  PASS  7.5  PASS    3.5       19,700         31,100         1.58',
      'cmpxchg8b     SKIP       SKIP                                                  both: i386 only',
      'intel_iommu   PASS  4.0  SKIP                                                  mvisor: -machine q35 (mvisor has only the pc machine)',
    ]);
  });

  it('fails CI on a test of the subset that does not pass, unless skips.ts says why', () => {
    const rows = [
      row('smptest', undefined, { result: 'PASS' }),
      row('intel_iommu', undefined, { result: 'SKIP', reason: '-machine q35' }),
      row('realmode', undefined, { result: 'FAIL', reason: 'triple fault', log: '/l/realmode.mvisor.log' }),
      row('s3', undefined, { result: 'TIMEOUT' }),
    ];
    const ci = ciOutcome(rows, { intel_iommu: 'no q35.' });
    expect(ci.ok).toBe(false);
    expect(ci.failures).toEqual([
      'realmode: FAIL: triple fault [log: /l/realmode.mvisor.log]',
      's3: TIMEOUT',
    ]);
    expect(ciOutcome([rows[0]!, rows[1]!], { intel_iommu: 'no q35.', smptest: 'x' })).toEqual({
      ok: true,
      failures: [],
      notes: [
        'smptest passes now: remove it from test/conformance/skips.ts',
        'intel_iommu: known skip (SKIP): no q35.',
      ],
    });
  });

  it('gives every known skip a reason, and only for tests of the subset', () => {
    for (const [name, why] of Object.entries(KNOWN_SKIPS)) {
      expect(QEMU_PASSES_HERE).toContain(name);
      expect(why).toMatch(/^[A-Z].{40,}\.$/s);
    }
  });
});
