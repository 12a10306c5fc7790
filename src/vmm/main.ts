/**
 * Runs one VM in this process until it stops: the body of `mvisor -c` and
 * `mvctl vm run -c`. Exit codes: 0 the guest powered off or reset (or the
 * VM was stopped by SIGTERM/SIGINT or the console), 1 an error of the VMM
 * or KVM, 2 bad input (config, kernel, initrd), 3 the guest crashed
 * (triple fault, KVM internal error).
 */
import type { ResolvedVmmConfig } from './config/types.js';
import { ExitCode } from './core/kvm-vm.js';
import { StderrLogger, type Logger } from './core/log.js';
import { BootError } from './boot/errors.js';
import { CpuModelError } from './cpu/cpuid.js';
import { PcMachine } from './machine.js';
import type { BlockImage } from '../block/image.js';
import { closeImages, openDeviceImages } from './storage/images.js';
import { ControlServer } from './control.js';
import {
  openRestore,
  receiveRestore,
  restoreInPlace,
  RestoreLoadError,
  restoreSnapshot,
  takeSnapshot,
} from './snapshot/machine-snapshot.js';
import type { SnapshotReader } from './snapshot/snapshot-file.js';
import { RamFileError } from './snapshot/ram-file.js';
import { SnapshotFileError } from './snapshot/snapshot-file.js';
import { SnapshotError } from './snapshot/vm-snapshot.js';
import { writeFileSync } from 'node:fs';

/** Exit statistics for bench/ (env MVISOR_STATS=path). */
function writeStats(path: string, m: PcMachine, ms: number, log: Logger): void {
  const s = m.vm.stats;
  const byPort = Object.fromEntries([...s.byPort].map(([p, n]) => ['0x' + p.toString(16), n]));
  try {
    writeFileSync(
      path,
      JSON.stringify({ ms, exits: { io: s.io, mmio: s.mmio, other: s.other }, wakeups: s.wakeups, byPort }),
    );
  } catch (e) {
    log.warn(`cannot write stats to ${path}: ${(e as Error).message}`);
  }
}

export interface RunOptions {
  /** Unix socket path for the control protocol (src/vmm/control.ts). */
  controlSocket?: string;
  /**
   * The caller exits the process when runVmm returns (mvisor, `mvctl vm run`):
   * the termination handlers then stay installed to the end (a no-op on a
   * stopped VM), because once removed, a signal that a supervisor repeats
   * takes its default action and kills the process, which reads as a crash.
   */
  exitsAfter?: boolean;
  /** A snapshot file (`mvisor --restore`) to load instead of booting. */
  restore?: string;
  /** A Unix socket (`mvisor --incoming unix:PATH`) to wait on for a snapshot sent by another VMM, instead of booting. */
  incoming?: string;
}

export async function runVmm(
  config: ResolvedVmmConfig,
  log: Logger = new StderrLogger('mvisor'),
  opts: RunOptions = {},
): Promise<number> {
  let built: PcMachine | undefined;
  let images: Map<string, BlockImage> = new Map();
  let restore: SnapshotReader | undefined;
  try {
    // A snapshot's disks are checked before they are opened.
    if (opts.restore !== undefined) restore = openRestore(opts.restore);
    else if (opts.incoming !== undefined) {
      const path = opts.incoming;
      restore = await receiveRestore(path, () => log.info(`waiting for a snapshot on ${path}`));
    }
    const from = opts.restore ?? (opts.incoming !== undefined ? `unix:${opts.incoming}` : undefined);
    images = await openDeviceImages(config.devices);
    built = new PcMachine(config, {
      log,
      images,
      onConsoleQuit: () => built?.vm.stop(ExitCode.Ok, 'quit from the console'),
    });
    if (restore !== undefined && from !== undefined) {
      const r = await restoreSnapshot(built, restore, from);
      r.warnings.forEach((w) => log.warn(w));
      log.info(`restored ${config.name} from ${from} (${r.ramDataBytes} bytes of RAM data)`);
    } else built.load();
  } catch (e) {
    restore?.close();
    built?.close();
    await closeImages(images, (m) => log.error(m));
    if (e instanceof SnapshotError || e instanceof SnapshotFileError || e instanceof RamFileError) {
      log.error(`cannot restore VM ${config.name}: ${e.message}`);
      return ExitCode.BadInput;
    }
    if (e instanceof BootError || e instanceof CpuModelError) {
      log.error(e.message);
      return ExitCode.BadInput;
    }
    log.error(`cannot start VM ${config.name}: ${(e as Error).message}`);
    return ExitCode.VmmError;
  }
  const machine = built;
  machine.vm.countPorts = !!process.env.MVISOR_STATS;
  const onSignal = (sig: NodeJS.Signals) => machine.vm.stop(ExitCode.Ok, `stopped by ${sig}`);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onSignal);
  // SIGUSR2: print where every vCPU is (like QEMU's `info registers`, briefly).
  const onDump = () =>
    void machine.vm
      .describeVcpus()
      .then((lines) => lines.forEach((l) => log.info(l)))
      .catch((e: Error) => log.warn(`cannot describe vCPUs: ${e.message}`));
  process.on('SIGUSR2', onDump);
  // SIGPWR: press the ACPI power button (what `virsh shutdown` or QEMU's
  // system_powerdown do); the control socket's `powerdown` does the same.
  const onPower = () => {
    log.info('SIGPWR: pressing the ACPI power button');
    machine.pm.pressPowerButton();
  };
  process.on('SIGPWR', onPower);
  let control: ControlServer | undefined;
  const started = Date.now();
  let paused = false;
  try {
    if (opts.controlSocket) {
      control = new ControlServer(
        opts.controlSocket,
        {
          status: () => ({
            name: config.name,
            state: machine.vm.stopped
              ? 'stopping'
              : paused
                ? 'paused'
                : machine.pm.suspended
                  ? 'suspended'
                  : 'running',
            pid: process.pid,
            vcpus: config.vcpus,
            memory: config.memory,
            uuid: config.uuid,
            // The image of each storage device (what mvctl import checks against a manifest).
            images: config.devices.flatMap((d) =>
              'image' in d && d.image !== undefined ? [{ device: d.name, path: d.image.path }] : [],
            ),
            uptimeMs: Date.now() - started,
            exits: { io: machine.vm.stats.io, mmio: machine.vm.stats.mmio, other: machine.vm.stats.other },
          }),
          stop: () => machine.vm.stop(ExitCode.Ok, 'stopped through the control socket'),
          powerdown: () => {
            // Only an ACPI OS that enabled the power button event will act on it;
            // say so at once rather than let the caller wait for a shutdown.
            // In S3 the button wakes the machine, as on hardware.
            if (!machine.pm.powerButtonEnabled && !machine.pm.suspended)
              return 'the guest has not enabled the ACPI power button';
            machine.pm.pressPowerButton();
            return undefined;
          },
          pause: async () => {
            await machine.vm.pause();
            paused = true;
          },
          resume: () => {
            // Only undo this socket's own pause (S3 holds one of its own).
            if (!paused) return;
            machine.vm.resume();
            paused = false;
          },
          vcpus: () => machine.vm.describeVcpus(),
          snapshot: async (to, then) => {
            let closed = false;
            const file = 'file' in to ? to.file : `unix:${to.socket}`;
            const r = await takeSnapshot(machine, to, then, async (t) => {
              if (t === 'resume') return void (await Promise.all([...images.values()].map((i) => i.flush())));
              closed = true;
              await closeImages(images, (m) => log.error(m));
            }).catch((e: Error) => {
              // Its disks are closed: the VM cannot go on, and was to stop anyway.
              if (closed)
                setImmediate(() =>
                  machine.vm.stop(
                    ExitCode.VmmError,
                    `snapshot to ${file} failed (${e.message}); the VM stopped`,
                  ),
                );
              throw e;
            });
            log.info(
              `snapshot of ${config.name} to ${file}: paused ${r.pausedMs} ms, ${r.bytes} bytes ` +
                `(${r.ramDataBytes} of RAM data), ${r.drainedRequests} block requests drained`,
            );
            // After the answer is written (as for `stop`).
            if (then === 'stop')
              setImmediate(() => machine.vm.stop(ExitCode.Ok, `stopped after a snapshot to ${file}`));
            return r;
          },
          restore: async (file) => {
            const r = await restoreInPlace(machine, file, async () => {
              await Promise.all([...images.values()].map((i) => i.flush()));
            }).catch((e: Error) => {
              if (e instanceof RestoreLoadError)
                setImmediate(() => machine.vm.stop(ExitCode.VmmError, `${e.message}; the VM stopped`));
              throw e;
            });
            r.warnings.forEach((w) => log.warn(w));
            log.info(`${config.name} went back to ${file}: paused ${r.pausedMs} ms`);
            return { file: r.file, pausedMs: r.pausedMs, ramDataBytes: r.ramDataBytes };
          },
        },
        log,
      );
      await control.listen();
    }
    const stop = await machine.run();
    if (process.env.MVISOR_STATS) writeStats(process.env.MVISOR_STATS, machine, Date.now() - started, log);
    if (stop.code === ExitCode.Ok) log.info(`${config.name}: ${stop.reason}`);
    return stop.code;
  } finally {
    try {
      control?.close();
      // The vCPUs are stopped: let requests in flight finish, then close the
      // devices and flush and unlock the images.
      await machine.drainStorage();
      machine.close();
      await closeImages(images, (m) => log.error(m));
    } finally {
      // Only now: a second SIGTERM during that clean-up (a supervisor that repeats it) finds the
      // handler, which does nothing more on a stopped VM, instead of killing the process before
      // its images are flushed.
      if (!opts.exitsAfter) {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        process.off('SIGHUP', onSignal);
      }
      process.off('SIGUSR2', onDump);
      process.off('SIGPWR', onPower);
    }
  }
}
