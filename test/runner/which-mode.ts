/**
 * Prints where KVM work runs on this machine (mode.ts) as two lines: the
 * mode (native or nested), then why. For scripts: scripts/demo.sh.
 */
import { probeKvmFacts } from '../../src/vmm/kvm/availability.js';
import { chooseMode } from './mode.js';

const c = chooseMode(probeKvmFacts(), process.env.MVISOR_TEST_MODE);
process.stdout.write(`${c.mode}\n${c.reason}\n`);
