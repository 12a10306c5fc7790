/**
 * Configuration errors: one `ConfigProblem` per thing wrong with a config
 * file, printed one per line as `file:line:col: field.path: message` (the
 * form editors and CI annotations understand).
 */

export interface ConfigProblem {
  /** The config file as the user named it (or a flag name such as `--serial`). */
  file?: string;
  /** 1-based line and column of the offending YAML node. */
  line?: number;
  col?: number;
  /** Field path such as `devices[0].class`; empty for a problem with the whole file. */
  path?: string;
  message: string;
}

export function formatProblem(p: ConfigProblem): string {
  let where = p.file ?? '';
  if (p.file !== undefined && p.line !== undefined) {
    where += `:${p.line}`;
    if (p.col !== undefined) where += `:${p.col}`;
  }
  const parts = [where, p.path ?? ''].filter((s) => s !== '');
  return parts.length > 0 ? `${parts.join(': ')}: ${p.message}` : p.message;
}

/** One or more problems in a configuration; `message` has one line per problem. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    if (problems.length === 0) throw new Error('ConfigError needs at least one problem');
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
  /** The message, one line per problem. */
  get lines(): string[] {
    return this.problems.map(formatProblem);
  }
}
