/**
 * The last step of every command: flush stdout and stderr, then exit.
 *
 * Its own module so that `mvisor` (src/cli/vm-run.ts, kept free of oclif for
 * start-up time) and mvctl (src/cli/common.ts) share it.
 */

const TERMINATION: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];

/**
 * Flushes stdout and stderr, then exits the process with `code`. The work is
 * done by now (a VM's images are flushed and unlocked, state is committed): a
 * termination signal that arrives during the flush (a supervisor repeating its
 * SIGTERM) exits at once with the same code instead of killing the process by
 * the signal, which a caller would read as a crash.
 */
export async function exitProcess(code: number): Promise<never> {
  const now = (): never => process.exit(code);
  for (const sig of TERMINATION) process.on(sig, now);
  const flush = (s: NodeJS.WriteStream) => new Promise<void>((resolve) => s.write('', () => resolve()));
  await Promise.all([flush(process.stdout), flush(process.stderr)]);
  process.exit(code);
}
