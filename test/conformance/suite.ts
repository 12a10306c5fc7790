/**
 * Where kvm-unit-tests comes from: the checkout `MVISOR_KUT_DIR` names
 * (configured and built already), or the pinned tarball the project keeps
 * in `../shared/peers/` (of this repository or, for a clone, of the one
 * it was cloned from; or `MVISOR_KUT_TARBALL`), built once into
 * `~/.cache/mvisor/kvm-unit-tests-<hash>/` with `./configure && make -j2`
 * under a lock, so that two runs never build into the same directory.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export interface Suite {
  /** The suite's top directory (holds config.mak, x86/unittests.cfg and x86/*.flat). */
  dir: string;
  /** Where it came from, for the report. */
  origin: string;
}

export type SuiteLookup = { suite: Suite } | { skip: string } | { error: string };

/** The stamp a finished build leaves in the cache directory. */
const STAMP = '.mvisor-built';

const TARBALL = 'kvm-unit-tests-1da1819e.tar.gz';

/**
 * `../shared/peers/<tarball>` next to the repository, or next to the
 * repository it was cloned from when that is a local path (CI runs on a
 * fresh clone elsewhere); the first that exists, else the first.
 */
export function defaultTarball(repo: string): string {
  const candidates = [resolve(repo, '..', 'shared', 'peers', TARBALL)];
  const origin = spawnSync('git', ['-C', repo, 'config', '--get', 'remote.origin.url'], { encoding: 'utf8' });
  const url = origin.status === 0 ? origin.stdout.trim().replace(/^file:\/\//, '') : '';
  if (url.startsWith('/')) candidates.push(resolve(url, '..', 'shared', 'peers', TARBALL));
  return candidates.find((c) => existsSync(c)) ?? candidates[0]!;
}

export function cacheRoot(): string {
  return process.env.XDG_CACHE_HOME
    ? join(process.env.XDG_CACHE_HOME, 'mvisor')
    : join(homedir(), '.cache', 'mvisor');
}

/** Finds or builds the suite. `log` gets progress lines. */
export async function locateSuite(repo: string, log: (line: string) => void): Promise<SuiteLookup> {
  const env = process.env.MVISOR_KUT_DIR;
  if (env !== undefined && env !== '') {
    const dir = resolve(env);
    if (!existsSync(join(dir, 'x86', 'unittests.cfg'))) {
      return { error: `MVISOR_KUT_DIR=${env}: no x86/unittests.cfg there (a kvm-unit-tests checkout?)` };
    }
    if (!existsSync(join(dir, 'config.mak'))) {
      return { error: `MVISOR_KUT_DIR=${env} is not configured: run ./configure && make -j2 there first` };
    }
    return { suite: { dir, origin: `MVISOR_KUT_DIR=${dir}` } };
  }
  const tarball = process.env.MVISOR_KUT_TARBALL || defaultTarball(repo);
  if (!existsSync(tarball)) {
    return {
      skip:
        `kvm-unit-tests not found: neither MVISOR_KUT_DIR (a built checkout) nor the tarball ${tarball} ` +
        '(set MVISOR_KUT_TARBALL to use another one)',
    };
  }
  const hash = createHash('sha256').update(readFileSync(tarball)).digest('hex').slice(0, 16);
  const dir = join(cacheRoot(), `kvm-unit-tests-${hash}`);
  if (existsSync(join(dir, STAMP))) return { suite: { dir, origin: `${tarball} (built in ${dir})` } };
  mkdirSync(cacheRoot(), { recursive: true });
  const release = await acquireLock(`${dir}.lock`, log);
  try {
    // Another run may have built it while we waited.
    if (existsSync(join(dir, STAMP))) return { suite: { dir, origin: `${tarball} (built in ${dir})` } };
    const error = build(tarball, dir, log);
    if (error !== undefined) return { error };
    return { suite: { dir, origin: `${tarball} (built in ${dir})` } };
  } finally {
    release();
  }
}

/** Extracts the tarball into `dir` and builds it; an error message, or undefined. */
function build(tarball: string, dir: string, log: (line: string) => void): string | undefined {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  log(`building kvm-unit-tests from ${tarball} in ${dir} (./configure && make -j2)`);
  // The tarball holds kvm-unit-tests/ (and a build log); the suite is that directory.
  const steps: [string, string[], string][] = [
    ['tar', ['xzf', tarball, '-C', dir, '--strip-components=1', 'kvm-unit-tests'], dir],
    ['./configure', [], dir],
    ['make', ['-j2'], dir],
  ];
  const logFile = join(dir, 'mvisor-build.log');
  for (const [cmd, args, cwd] of steps) {
    const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
    writeFileSync(logFile, `$ ${cmd} ${args.join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}`, { flag: 'a' });
    if (r.error !== undefined || r.status !== 0) {
      const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trimEnd().split('\n').slice(-10).join('\n');
      return `${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}) in ${cwd}; see ${logFile}\n${tail}`;
    }
  }
  writeFileSync(join(dir, STAMP), `${new Date().toISOString()} ${tarball}\n`);
  return undefined;
}

/**
 * An exclusive lock file holding the owner's pid; a lock whose owner is
 * gone is taken over. Waits up to 10 minutes for a live owner.
 */
async function acquireLock(path: string, log: (line: string) => void): Promise<() => void> {
  const deadline = Date.now() + 10 * 60_000;
  let told = false;
  for (;;) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try {
          unlinkSync(path);
        } catch {
          // Already removed.
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const text = readFileSafe(path).trim();
    if (text === '' && Date.now() - mtimeMs(path) < 5000) {
      // Just created; its owner is about to write its pid.
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    const owner = Number(text);
    if (!Number.isInteger(owner) || owner <= 0 || !alive(owner)) {
      try {
        unlinkSync(path);
      } catch {
        // Someone else took it over first.
      }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`${path}: still held by process ${owner} after 10 minutes`);
    if (!told) log(`waiting for process ${owner}, which is building the suite (${path})`);
    told = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function mtimeMs(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
