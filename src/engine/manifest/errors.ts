/**
 * Manifest errors: one `ManifestProblem` per thing wrong with the manifests,
 * printed one per line as `file:line:col: Kind/name: spec.path: message`
 * (the form editors and CI annotations understand).
 */

export interface ManifestProblem {
  /** The manifest file as the user named it (`<stdin>` for `-`). */
  file: string;
  /** 1-based line and column of the offending YAML node (absent for a problem with a whole file). */
  line?: number;
  col?: number;
  /** `Kind/name` of the document (`?` for a part that is missing or invalid); absent outside documents. */
  resource?: string;
  /** Field path from the document root, such as `spec.disks[0].disk`; absent for a whole document. */
  path?: string;
  message: string;
}

export function formatManifestProblem(p: ManifestProblem): string {
  let where = p.file;
  if (p.line !== undefined) {
    where += `:${p.line}`;
    if (p.col !== undefined) where += `:${p.col}`;
  }
  const parts = [where, p.resource ?? '', p.path ?? ''].filter((s) => s !== '');
  return `${parts.join(': ')}: ${p.message}`;
}

/** One or more problems in a set of manifests; `message` has one line per problem. */
export class ManifestError extends Error {
  readonly problems: readonly ManifestProblem[];
  constructor(problems: readonly ManifestProblem[]) {
    if (problems.length === 0) throw new Error('ManifestError needs at least one problem');
    super(problems.map(formatManifestProblem).join('\n'));
    this.name = 'ManifestError';
    this.problems = problems;
  }
  /** The message, one line per problem. */
  get lines(): string[] {
    return this.problems.map(formatManifestProblem);
  }
}
