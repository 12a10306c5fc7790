/**
 * Where `make test` runs the tests that boot guests under KVM:
 *  - native: this machine's /dev/kvm opens and runs guests on hardware
 *    virtualization, so every test runs here, as on a developer's machine;
 *  - nested: /dev/kvm does not open, or it is a KVM that emulates guest
 *    kernel code in software (kvm_pvm: no guest user space, which the tests
 *    need), so the KVM tests run inside the nested test host (test/kvm-host/).
 * `MVISOR_TEST_MODE=native|nested` overrides the choice.
 */
import { kvmProblem, type KvmFacts } from '../../src/vmm/kvm/availability.js';

export type TestMode = 'native' | 'nested';

export interface ModeChoice {
  mode: TestMode;
  /** One line for the summary: why this mode. */
  reason: string;
}

export function chooseMode(facts: KvmFacts, override?: string): ModeChoice {
  if (override === 'native' || override === 'nested')
    return { mode: override, reason: `MVISOR_TEST_MODE=${override}` };
  if (override !== undefined && override !== '')
    throw new Error(`MVISOR_TEST_MODE must be native or nested, not ${JSON.stringify(override)}`);
  const problem = kvmProblem(facts);
  if (problem) return { mode: 'nested', reason: problem.message };
  if (facts.pvm)
    return {
      mode: 'nested',
      reason: `${facts.path} is a KVM that emulates guest kernel code (kvm_pvm): guests have no user space there`,
    };
  return { mode: 'native', reason: `${facts.path} opens` };
}
