/**
 * bench/exit: the cost of one port-I/O exit round trip through mvisor's
 * exit hand-off (vCPU thread → mailbox → JavaScript bus handler → answer)
 * against the raw C loop of ../shared/probes/kvm_exit_cost.c, in one run.
 * The guest is the probe's: 64-bit, CPL 0, `out 0x10, al` in a loop.
 *
 *   node dist/bench/exit.js [exits=20000] [rounds=3]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KvmVm } from '../src/vmm/core/kvm-vm.js';
import { StderrLogger } from '../src/vmm/core/log.js';
import { zeroRegs } from '../src/vmm/kvm/structs.js';
import { setupLongModeBoot } from '../src/vmm/boot/pagetables.js';

const here = dirname(fileURLToPath(import.meta.url));

export async function mvisorExitCost(n: number): Promise<number> {
  const vm = new KvmVm({
    cpus: 1,
    cpu: { model: 'host', features: {} },
    ram: [{ gpa: 0, size: 4 << 20 }],
    log: new StderrLogger('bench'),
  });
  const code = [0xb9, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff]; // mov ecx, n
  code.push(0xe6, 0x10); // out 0x10, al
  code.push(0xff, 0xc9, 0x75, 0xfa); // dec ecx; jnz -6
  code.push(0xe6, 0x11); // out 0x11, al: done
  code.push(0xeb, 0xfe); // jmp $
  vm.mem.write(0x100000, Uint8Array.from(code));
  const r = zeroRegs();
  r.rip = 0x100000n;
  r.rsp = 0x1ff000n;
  vm.setBootState(0, setupLongModeBoot(vm.mem), r);
  let count = 0;
  let t0 = 0n;
  vm.pio.register(
    0x10,
    1,
    { read: () => 0, write: () => void (count++ === 0 && (t0 = process.hrtime.bigint())) },
    'bench',
  );
  let t1 = 0n;
  vm.pio.register(
    0x11,
    1,
    {
      read: () => 0,
      write: () => {
        t1 = process.hrtime.bigint();
        vm.requestStop(0, 'done');
      },
    },
    'bench-done',
  );
  await vm.run();
  vm.close();
  if (count !== n) throw new Error(`expected ${n} exits, saw ${count}`);
  return Number(t1 - t0) / 1000 / (n - 1 + 1);
}

export function rawProbeExitCost(n: number): number | undefined {
  const src = resolve(here, '../../../shared/probes/kvm_exit_cost.c');
  const alt = resolve(here, '../../shared/probes/kvm_exit_cost.c');
  const file = existsSync(src) ? src : existsSync(alt) ? alt : undefined;
  if (!file) return undefined;
  const bin = join(mkdtempSync(join(tmpdir(), 'mvisor-probe-')), 'kvm_exit_cost');
  execFileSync('gcc', ['-O2', '-o', bin, file]);
  const out = execFileSync(bin, [String(n)], { encoding: 'utf8' });
  const m = /per_exit=([0-9.]+)us/.exec(out);
  return m ? Number(m[1]) : undefined;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 20000);
  const rounds = Number(process.argv[3] ?? 3);
  const rows: { raw?: number; mv: number }[] = [];
  for (let i = 0; i < rounds; i++) {
    const raw = rawProbeExitCost(n);
    const mv = await mvisorExitCost(n);
    rows.push({ raw, mv });
    console.log(
      `round ${i + 1}: raw C ${raw?.toFixed(2) ?? 'n/a'} us/exit, mvisor ${mv.toFixed(2)} us/exit` +
        (raw ? `, ratio ${(mv / raw).toFixed(2)}` : ''),
    );
  }
  const med = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const mv = med(rows.map((r) => r.mv));
  const raws = rows.map((r) => r.raw).filter((x): x is number => x !== undefined);
  const raw = raws.length ? med(raws) : undefined;
  console.log(
    `median: raw C ${raw?.toFixed(2) ?? 'n/a'} us, mvisor ${mv.toFixed(2)} us` +
      (raw ? `, mvisor/raw = ${(mv / raw).toFixed(2)}` : ''),
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
