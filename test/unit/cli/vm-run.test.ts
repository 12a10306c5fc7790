import { describe, expect, it } from 'vitest';
import { parseMvisorArgs } from '../../../src/cli/vm-run.js';

describe('mvisor argument parsing (no oclif on the start-up path)', () => {
  it('reads -c, --config, --serial, --control and --log-level, in both spellings', () => {
    expect(parseMvisorArgs(['-c', 'vm.yaml'])).toEqual({ config: 'vm.yaml' });
    expect(
      parseMvisorArgs([
        '--config=vm.yaml',
        '--serial',
        'file:x.log',
        '--control=/run/c.sock',
        '--log-level',
        'warn',
      ]),
    ).toEqual({ config: 'vm.yaml', serial: 'file:x.log', control: '/run/c.sock', logLevel: 'warn' });
  });

  it('leaves help, version, mistakes and missing -c to oclif (undefined)', () => {
    for (const argv of [
      [],
      ['--help'],
      ['--version'],
      ['-c', 'vm.yaml', '--bogus'],
      ['-c'],
      ['-c', 'a', 'extra'],
      ['-c', 'a', '--log-level', 'loud'],
    ])
      expect(parseMvisorArgs(argv)).toBeUndefined();
  });
});
