/**
 * Runs one command inside the nested KVM test host (host.ts):
 *
 *   node dist/test/kvm-host/cli.js [options] -- COMMAND...
 *     --memory MIB       test host memory (default 4096)
 *     --cpus N           test host vCPUs (default 2)
 *     --timeout S        deadline for the whole boot (default 1800)
 *     --forward H:G      forward 127.0.0.1:H to port G inside (user-mode NIC), repeatable
 *     --module NAME      load a module from build.sh's extra list, repeatable
 *     --scratch DIR      read-write folder shared at the same path (default: a new one in $TMPDIR)
 *     --env K=V          environment for the command, repeatable (MVISOR_* and CI are passed on anyway)
 *     --cpu MODEL        QEMU CPU model of the test host (default host.ts HOST_CPU)
 *     --accel ACCEL      QEMU -accel value (default host.ts HOST_ACCEL)
 *     --kernel-arg P     an extra kernel parameter for the test host, repeatable
 *
 * Exit code: the command's; 1 with one line saying why when the test host
 * itself failed (panic, module, no /dev/kvm, time-out); 2 for bad usage.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeOutcome, runInKvmHost, type HostOptions, type PortForward } from './host.js';

function usage(msg: string): never {
  process.stderr.write(
    `kvm-host: ${msg}\nusage: node dist/test/kvm-host/cli.js [--memory MIB] [--cpus N] [--timeout S] [--forward H:G] [--module NAME] [--scratch DIR] [--env K=V] [--cpu MODEL] [--accel ACCEL] [--kernel-arg P] -- COMMAND...\n`,
  );
  process.exit(2);
}

function positive(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (!v || !Number.isInteger(n) || n <= 0)
    usage(`${flag} needs a positive whole number, not ${JSON.stringify(v)}`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const forwards: PortForward[] = [];
  const modules: string[] = [];
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && (/^MVISOR_/.test(k) || k === 'CI')) env[k] = v;
  let memoryMiB = 4096;
  let cpus = 2;
  let timeoutS = 1800;
  let scratch: string | undefined;
  let cpu: string | undefined;
  let accel: string | undefined;
  const kernelArgs: string[] = [];
  let i = 0;
  for (; i < argv.length && argv[i] !== '--'; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    if (a === '--memory') memoryMiB = positive(a, v);
    else if (a === '--cpus') cpus = positive(a, v);
    else if (a === '--timeout') timeoutS = positive(a, v);
    else if (a === '--forward') {
      const m = /^(\d+):(\d+)$/.exec(v ?? '');
      if (!m) usage(`--forward needs HOSTPORT:GUESTPORT, not ${JSON.stringify(v)}`);
      forwards.push({ host: Number(m[1]), guest: Number(m[2]) });
    } else if (a === '--module') modules.push(v ?? usage('--module needs a name'));
    else if (a === '--scratch') scratch = v ?? usage('--scratch needs a folder');
    else if (a === '--cpu') cpu = v ?? usage('--cpu needs a QEMU CPU model');
    else if (a === '--accel') accel = v ?? usage('--accel needs a QEMU -accel value');
    else if (a === '--kernel-arg') kernelArgs.push(v ?? usage('--kernel-arg needs a parameter'));
    else if (a === '--env') {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(v ?? '');
      if (!m) usage(`--env needs K=V, not ${JSON.stringify(v)}`);
      env[m[1]!] = m[2]!;
    } else usage(`unknown option ${a}`);
    i++;
  }
  const command = argv.slice(i + 1);
  if (command.length === 0) usage('no command');
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const opts: HostOptions = {
    command: command.map(q).join(' '),
    env,
    scratch: scratch ?? mkdtempSync(join(tmpdir(), 'mvisor-kvm-host-')),
    memoryMiB,
    cpus,
    modules,
    timeoutMs: timeoutS * 1000,
    onOutput: (t) => process.stdout.write(t),
  };
  if (forwards.length) opts.forwards = forwards;
  if (cpu) opts.cpu = cpu;
  if (accel) opts.accel = accel;
  if (kernelArgs.length) opts.kernelArgs = kernelArgs;
  const r = await runInKvmHost(opts);
  if (r.outcome.kind === 'exited') return r.outcome.code;
  process.stderr.write(`kvm-host: ${describeOutcome(r.outcome)}\n${r.consoleTail.slice(-15).join('\n')}\n`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`kvm-host: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
