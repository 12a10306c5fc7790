/**
 * The one knob the test mode turns: every time-out (and every "finishes
 * within" bound) is multiplied by MVISOR_TIMEOUT_SCALE, which the nested
 * test host sets (test/runner/nested.ts) because JavaScript runs about 30
 * times slower there. What a test asserts never changes with the mode.
 */
export const TIMEOUT_SCALE = (() => {
  const v = Number(process.env.MVISOR_TIMEOUT_SCALE ?? '1');
  return Number.isFinite(v) && v >= 1 ? v : 1;
})();

/** `ms` scaled for this run's mode. */
export function scaled(ms: number): number {
  return Math.round(ms * TIMEOUT_SCALE);
}
