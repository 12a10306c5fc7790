import { describe, expect, it } from 'vitest';
import { chooseMode } from './mode.js';
import {
  byFile,
  mergeReports,
  parseJsonl,
  vitestJsonFromLines,
  type ResultLine,
  type VitestJson,
} from './results.js';
import { CONFORMANCE, needsKvm, planShards } from './shards.js';
import { failedTryMs, labelled, shardScript, unfinished } from './nested.js';

describe('test mode', () => {
  it('native where /dev/kvm opens on hardware virtualization', () => {
    expect(chooseMode({ path: '/dev/kvm', pvm: false })).toEqual({
      mode: 'native',
      reason: '/dev/kvm opens',
    });
  });

  it('nested where /dev/kvm is absent, not permitted, or a KVM that emulates guest kernel code', () => {
    const absent = chooseMode({ path: '/dev/kvm', openError: 'ENOENT', pvm: true });
    expect(absent.mode).toBe('nested');
    expect(absent.reason).toMatch(/PVM/);
    expect(chooseMode({ path: '/dev/kvm', openError: 'EACCES', pvm: false }).mode).toBe('nested');
    const pvm = chooseMode({ path: '/dev/kvm', pvm: true });
    expect(pvm.mode).toBe('nested');
    expect(pvm.reason).toMatch(/emulates guest kernel code/);
  });

  it('MVISOR_TEST_MODE overrides the choice; anything else is an error', () => {
    expect(chooseMode({ path: '/dev/kvm', pvm: false }, 'nested').mode).toBe('nested');
    expect(chooseMode({ path: '/dev/kvm', openError: 'ENOENT', pvm: false }, 'native').mode).toBe('native');
    expect(chooseMode({ path: '/dev/kvm', pvm: false }, '').mode).toBe('native');
    expect(() => chooseMode({ path: '/dev/kvm', pvm: false }, 'tcg')).toThrow(/native or nested/);
  });
});

describe('shards', () => {
  it('the failed tries of retried tests are counted apart from the budget, each at the average try', () => {
    const t = (durationMs: number, retries?: number): ResultLine => ({
      file: 'f',
      name: 'n',
      state: 'passed',
      durationMs,
      ...(retries ? { retries } : {}),
    });
    const files = [
      { file: 'a', tests: [t(300_000, 2), t(50_000)], done: true, errors: [], durationMs: 350_000 },
      { file: 'b', tests: [t(40_000, 1)], done: true, errors: [], durationMs: 40_000 },
    ];
    expect(failedTryMs(files)).toBe(200_000 + 20_000);
  });

  it('KVM tests are the integration tests', () => {
    expect(needsKvm('test/integration/linux-boot.test.ts')).toBe(true);
    expect(needsKvm('test/unit/vmm/pci/msi.test.ts')).toBe(false);
    expect(needsKvm('test/kvm-host/host.test.ts')).toBe(false);
  });

  it('packs items first-fit decreasing under the budget, overhead counted, deterministically', () => {
    const items = [
      { id: 'a', seconds: 300 },
      { id: 'b', seconds: 250 },
      { id: 'c', seconds: 200 },
      { id: CONFORMANCE, seconds: 260 },
      { id: 'd', seconds: 100 },
      { id: 'huge', seconds: 900 },
    ];
    const shards = planShards(items, { maxSeconds: 600, overheadSeconds: 60 });
    for (const s of shards) if (s.items.length > 1) expect(s.seconds).toBeLessThanOrEqual(600);
    expect(shards.map((s) => s.items.map((i) => i.id))).toEqual([
      ['huge'],
      ['a', 'c'],
      ['b', CONFORMANCE],
      ['d'],
    ]);
    expect(shards.flatMap((s) => s.items).length).toBe(items.length);
    expect(planShards([...items].reverse(), { maxSeconds: 600, overheadSeconds: 60 })).toEqual(shards);
  });

  it('a shard runs vitest on its files in one fork and kvm-unit-tests with the scaled time-outs', () => {
    const script = shardScript('/s', [
      { id: 'test/integration/a.test.ts', seconds: 1 },
      { id: CONFORMANCE, seconds: 1, only: ['s3', 'setjmp'] },
    ]);
    expect(script).toMatch(
      /^\(node node_modules\/vitest\/vitest\.mjs run --configLoader runner --no-isolate --maxWorkers 1 --retry 2 .*'test\/integration\/a\.test\.ts' \|\| echo "\$\?" >> '\/s\/failed'\) 2>&1 \| cat$/m,
    );
    expect(script).toMatch(
      /^\(node dist\/test\/conformance\/run\.js --ci --jobs 2 --timeout-scale 2 --retries 2 --results-jsonl '\/s\/conformance\.jsonl'.* --only 's3,setjmp' \|\| echo .*\| cat$/m,
    );
    expect(script.trim().split('\n').pop()).toBe("[ ! -s '/s/failed' ]");
    expect(labelled('a\nb\n', 's1')).toBe('[s1] a\n[s1] b\n');
  });

  it('after a panic, what is unfinished: files without their end line, kvm-unit-tests not reported', () => {
    const lines = parseJsonl<ResultLine>(
      [
        '{"file":"a","name":"t1","state":"passed","durationMs":1}',
        '{"file":"a","state":"passed","durationMs":9,"fileDone":true}',
        '{"file":"b","name":"t1","state":"passed","durationMs":1}',
        '{"file":"b","name":"t2","sta', // torn by the panic
      ].join('\n'),
    );
    const files = byFile(lines);
    const shard = {
      seconds: 0,
      items: [
        { id: 'a', seconds: 1 },
        { id: 'b', seconds: 1 },
        { id: 'c', seconds: 1 },
        { id: CONFORMANCE, seconds: 1 },
      ],
    };
    const kut = [{ test: 's3', result: 'PASS', ok: true, durationMs: 1 }];
    expect(unfinished(shard, files, kut, ['s3', 'setjmp'])).toEqual([
      { id: 'b', seconds: 1 },
      { id: 'c', seconds: 1 },
      { id: CONFORMANCE, seconds: 1, only: ['setjmp'] },
    ]);
  });
});

describe('merged results', () => {
  it('nested files join the native report in vitest JSON shape; an unfinished file fails', () => {
    const native: VitestJson = {
      numTotalTests: 2,
      numPassedTests: 1,
      numFailedTests: 0,
      numPendingTests: 1,
      numTodoTests: 0,
      success: true,
      testResults: [
        {
          name: '/r/test/unit/x.test.ts',
          status: 'passed',
          assertionResults: [
            { fullName: 'x a', status: 'passed', failureMessages: [] },
            { fullName: 'x b', status: 'skipped', failureMessages: [] },
          ],
        },
      ],
    };
    const files = byFile([
      { file: 'test/integration/k.test.ts', name: 'k > boots', state: 'passed', durationMs: 5 },
      { file: 'test/integration/k.test.ts', state: 'passed', durationMs: 5, fileDone: true },
      {
        file: 'test/integration/m.test.ts',
        name: 'm > fails',
        state: 'failed',
        durationMs: 5,
        errors: ['boom'],
      },
    ]);
    const nested = vitestJsonFromLines([...files.values()], '/r');
    expect(nested[0]!.assertionResults[0]).toMatchObject({
      fullName: 'k > boots',
      title: 'boots',
      status: 'passed',
    });
    expect(nested[1]!.status).toBe('failed');
    expect(nested[1]!.message).toMatch(/did not finish/);
    const m = mergeReports(native, nested);
    expect([m.numPassedTests, m.numFailedTests, m.numPendingTests, m.numTotalTests]).toEqual([2, 1, 1, 4]);
    expect(m.success).toBe(false);
    expect(m.testResults.map((f) => f.name)).toEqual([
      '/r/test/unit/x.test.ts',
      '/r/test/integration/k.test.ts',
      '/r/test/integration/m.test.ts',
    ]);
    const ok = mergeReports(native, vitestJsonFromLines([files.get('test/integration/k.test.ts')!], '/r'));
    expect(ok.success).toBe(true);
  });
});
