/**
 * Test helpers that run the real `mvisor` binary (dist/ build) as a child
 * process with a VMM config written to a temporary directory.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const mvisorBin = join(repoRoot, 'bin/mvisor.js');

/** Kernel options that let the guest-kit kernel run where KVM emulates guest kernel code. */
export const EMULATED_KVM_CMDLINE =
  'noxsave nosmap nopti mitigations=off clearcpuid=rdrand,rdseed,smap,fsgsbase,invpcid,pcid,avx,avx2,fma,f16c,' +
  'movbe,aes,pclmulqdq,sse4_1,sse4_2,popcnt,rdpid,clflushopt,clwb,bmi1,bmi2,adx,sha_ni,umip,erms,fsrm,rdtscp';

/** The CPU model the tests use: portable, and bootable on nested KVM. */
export const TEST_CPU = 'baseline,-cx16,+xsaveerptr';

export function hasKvm(): boolean {
  return existsSync('/dev/kvm');
}

/** True where /dev/kvm emulates guest kernel code in software (no user space in guests). */
export function kvmIsEmulated(): boolean {
  return existsSync('/sys/module/kvm_pvm');
}

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
