/**
 * Rate-limited logging for the VMM. A guest can hammer any register, so
 * every complaint about guest behaviour goes through `RateLimitedLog`: the
 * first few of each kind are printed, then one line per interval says how
 * many were suppressed. Plain stderr lines (no logging library): the VMM's
 * stderr is captured per VM by the engine, and tests read it.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

const levelRank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export class StderrLogger implements Logger {
  constructor(
    private readonly prefix = 'mvisor',
    private readonly min: LogLevel = (process.env.MVISOR_LOG as LogLevel) in levelRank
      ? (process.env.MVISOR_LOG as LogLevel)
      : 'info',
  ) {}
  private out(level: LogLevel, msg: string): void {
    if (levelRank[level] < levelRank[this.min]) return;
    process.stderr.write(`${this.prefix}: ${level === 'info' ? '' : level + ': '}${msg}\n`);
  }
  debug(msg: string): void {
    this.out('debug', msg);
  }
  info(msg: string): void {
    this.out('info', msg);
  }
  warn(msg: string): void {
    this.out('warn', msg);
  }
  error(msg: string): void {
    this.out('error', msg);
  }
}

/** A logger that keeps lines in memory (tests). */
export class MemoryLogger implements Logger {
  readonly lines: string[] = [];
  debug(msg: string): void {
    this.lines.push(`debug: ${msg}`);
  }
  info(msg: string): void {
    this.lines.push(`info: ${msg}`);
  }
  warn(msg: string): void {
    this.lines.push(`warn: ${msg}`);
  }
  error(msg: string): void {
    this.lines.push(`error: ${msg}`);
  }
}

/**
 * Logs at most `burst` messages per key, then at most one summary per
 * `intervalMs` ("... N more suppressed").
 */
export class RateLimitedLog {
  private readonly counts = new Map<string, { n: number; suppressed: number; last: number }>();
  constructor(
    private readonly log: Logger,
    private readonly burst = 5,
    private readonly intervalMs = 10_000,
  ) {}

  warn(key: string, msg: () => string): void {
    let c = this.counts.get(key);
    if (!c) {
      c = { n: 0, suppressed: 0, last: 0 };
      this.counts.set(key, c);
    }
    c.n++;
    if (c.n <= this.burst) {
      this.log.warn(msg());
      if (c.n === this.burst) c.last = Date.now();
      return;
    }
    c.suppressed++;
    const now = Date.now();
    if (now - c.last >= this.intervalMs) {
      this.log.warn(`${msg()} (${c.suppressed} similar messages suppressed)`);
      c.suppressed = 0;
      c.last = now;
    }
  }
}
