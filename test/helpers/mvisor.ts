/**
 * Test helpers that run the real `mvisor` binary (dist/ build) as a child
 * process with a VMM config written to a temporary directory.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const mvisorBin = join(repoRoot, 'bin/mvisor.js');

/** The CPU model the tests use: portable across hosts. */
export const TEST_CPU = 'baseline';

export function assertBuilt(): void {
  if (
    !existsSync(join(repoRoot, 'dist/src/vmm/main.js')) ||
    !existsSync(join(repoRoot, 'build/Release/mvisor_kvm.node'))
  ) {
    throw new Error('mvisor is not built: run `make build` (or npm run build) first');
  }
}

export interface GuestKit {
  kernel: string;
  bzImage: string;
  initramfs: string;
}

let kit: GuestKit | undefined;
/** The guest-kit kernel and initramfs (built and cached by guests/build.sh). */
export function guestKit(): GuestKit {
  if (kit) return kit;
  const out = execFileSync(join(repoRoot, 'guests/build.sh'), {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const env = Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => l.split('=') as [string, string]),
  );
  kit = { kernel: env.MVISOR_KERNEL!, bzImage: env.MVISOR_BZIMAGE!, initramfs: env.MVISOR_INITRAMFS! };
  return kit;
}

/**
 * The guest-kit initramfs with a second archive appended that holds
 * `/test.sh` (and `files`, paths relative to /): the kit's init runs it in
 * its busybox user space and prints "mvinit: test.sh exit=N". No rebuild of
 * the kit per test; Linux unpacks concatenated archives in order.
 */
export function initramfsWithTest(
  script: string,
  opts: { files?: Record<string, string | Uint8Array>; dir?: string } = {},
): string {
  const dir = opts.dir ?? tempDir();
  const root = mkdtempSync(join(dir, 'test-cpio-'));
  writeFileSync(join(root, 'test.sh'), script, { mode: 0o755 });
  for (const [rel, data] of Object.entries(opts.files ?? {})) {
    const path = join(root, rel);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, data);
  }
  const list = execFileSync('find', ['.', '-mindepth', '1'], { cwd: root, encoding: 'utf8' });
  const archive = execFileSync('cpio', ['--quiet', '-o', '-H', 'newc', '--owner=0:0'], {
    cwd: root,
    input: list,
  });
  const out = join(dir, 'initramfs-test.cpio');
  writeFileSync(out, Buffer.concat([readFileSync(guestKit().initramfs), archive]));
  return out;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Serial lines with the host time (ms) at which each arrived. */
  lines: { at: number; text: string }[];
  ms: number;
  dir: string;
}

export function tempDir(prefix = 'mvisor-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes `config` as vm.yaml and runs `mvisor -c` on it (serial on stdout). */
export interface RunOptions {
  timeoutMs?: number;
  onLine?: (line: string) => void;
  dir?: string;
  /** Extra command-line arguments for mvisor. */
  args?: string[];
}

export function runMvisor(config: Record<string, unknown>, opts: RunOptions = {}): Promise<RunResult> {
  assertBuilt();
  const dir = opts.dir ?? tempDir();
  const path = join(dir, 'vm.yaml');
  writeFileSync(path, stringify(config));
  return runMvisorFile(path, opts);
}

export function runMvisorFile(path: string, opts: RunOptions = {}): Promise<RunResult> {
  const t0 = Date.now();
  const child = spawn(process.execPath, [mvisorBin, '-c', path, ...(opts.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  const lines: { at: number; text: string }[] = [];
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    stdout += d;
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) {
      const text = p.replace(/\r$/, '');
      lines.push({ at: Date.now(), text });
      opts.onLine?.(text);
    }
  });
  child.stderr.on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  return new Promise((resolvePromise) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (partial) lines.push({ at: Date.now(), text: partial });
      resolvePromise({ code, signal, stdout, stderr, lines, ms: Date.now() - t0, dir: dirname(path) });
    });
  });
}
