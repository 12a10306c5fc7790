/**
 * The CI subset: the tests Debian's QEMU 7.2 passes on the build machines
 * (../shared/peers/README.md, measured 2026-11-25 with
 * `TIMEOUT=60s ./run_tests.sh -j 2`), which mvisor is held to; and the
 * known exceptions, each with the reason mvisor cannot run it. `--ci`
 * fails on any other test of the subset that does not pass under mvisor.
 */

/** What QEMU passes here, in the suite's order. */
export const QEMU_PASSES_HERE: readonly string[] = [
  'smptest',
  'smptest3',
  'vmexit_cpuid',
  'vmexit_mov_from_cr8',
  'vmexit_mov_to_cr8',
  'vmexit_inl_pmtimer',
  'vmexit_ipi',
  'vmexit_ipi_halt',
  'vmexit_ple_round_robin',
  'vmexit_tscdeadline',
  'vmexit_tscdeadline_immed',
  'vmexit_cr4_pge',
  'vmexit_cr0_wp',
  'idt_test',
  'realmode',
  's3',
  'setjmp',
  'rmap_chain',
  'intel_iommu',
];

/** Tests of the subset mvisor is not expected to pass, and why (one or two sentences each). */
export const KNOWN_SKIPS: Readonly<Record<string, string>> = {
  intel_iommu:
    "It runs on QEMU's q35 machine with an emulated Intel VT-d IOMMU (-M q35,kernel-irqchip=split " +
    '-device intel-iommu,intremap=on,eim=off) and QEMU\'s "edu" PCI device to DMA through it; mvisor ' +
    'builds only the i440FX pc machine and has neither an IOMMU nor the edu device.',
};
