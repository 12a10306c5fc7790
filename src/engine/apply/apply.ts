/**
 * The apply engine: carries out a Plan's steps in dependency order. Each
 * step is recorded in the state file (a 'started' event and the resource
 * marked creating/deleting before anything happens on the host, the result
 * after), so a crash mid-apply leaves state that says what may exist, and
 * the next refresh and plan finish the job. A failed step fails only the
 * steps that depend on it; independent ones still run.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { createImage, resizeImage } from '../../block/create.js';
import type { VmmConfig, VmmDevice } from '../../generated/vmm-config.js';
import type { DesiredResource, ResourceId } from '../types.js';
import { resourceKey } from '../types.js';
import type { Plan, PlanStep } from '../plan/planner.js';
import type { ResourceRecord, StateStore } from '../state/store.js';
import type {
  NormalizedDiskBus,
  NormalizedDiskSpec,
  NormalizedVirtualMachineSpec,
} from '../manifest/types.js';
import { diskPath, neverOverwrites } from './preflight.js';
import { launchVm, stopVm, vmPaths, isVmmProcess, type VmPaths } from './vm-process.js';

export type ApplyEvent =
  | { type: 'step-start'; step: PlanStep }
  | { type: 'step-done'; step: PlanStep; ms: number; detail?: string }
  | { type: 'step-failed'; step: PlanStep; ms: number; error: string }
  | { type: 'step-skipped'; step: PlanStep; reason: string };

export interface ApplyOptions {
  /** The command line, for events and messages ("mvctl apply"). */
  command: string;
  /** Directory for VM runtime files and engine-created disks (default: next to the state file). */
  stateDir?: string;
  onEvent?: (e: ApplyEvent) => void;
  /** How long to wait for a launched VM to report running. */
  launchTimeoutMs?: number;
}

export interface ApplyResult {
  ok: boolean;
  done: number;
  failed: { step: PlanStep; error: string }[];
  skipped: number;
}

export class ApplyError extends Error {}

function stateDirOf(store: StateStore, opts: ApplyOptions): string {
  return opts.stateDir ?? dirname(store.path);
}

/** Carries out `plan` (the caller holds the state lock). */
export async function applyPlan(
  store: StateStore,
  plan: Plan,
  desired: readonly DesiredResource[],
  opts: ApplyOptions,
): Promise<ApplyResult> {
  const byKey = new Map(desired.map((d) => [resourceKey(d), d]));
  const failedKeys = new Set<string>();
  const result: ApplyResult = { ok: true, done: 0, failed: [], skipped: 0 };
  const stateDir = stateDirOf(store, opts);
  let batched = 0;
  try {
    for (const step of plan.steps) {
      // Steps that only write state share a commit; any other step commits what came before it
      // first, so that state says what may exist before anything happens on the host.
      if (stateOnly(step, byKey.get(resourceKey(step.id))) && batched < MAX_BATCH) {
        store.beginBatch();
        batched++;
      } else {
        store.commitBatch();
        batched = 0;
      }
      await runOne(step);
      // SQLite rolls a whole transaction back by itself on some errors (a full disk): the batch's
      // records are gone, though nothing on the host changed for them. Stop; a new plan redoes them.
      if (batched > 0 && !store.inBatch())
        throw new ApplyError(
          `the state file lost the records of the last ${batched} step(s) (SQLite rolled back after an error); ` +
            'nothing on the host changed for them: plan and apply again',
        );
    }
  } finally {
    store.commitBatch();
  }
  return result;

  async function runOne(step: PlanStep): Promise<void> {
    const blocked = step.after.find((k) => failedKeys.has(k));
    if (blocked) {
      failedKeys.add(step.key);
      result.skipped++;
      const reason = `skipped: ${blocked} failed`;
      store.recordEvent({
        command: opts.command,
        id: step.id,
        action: step.op,
        outcome: 'skipped',
        detail: reason,
      });
      opts.onEvent?.({ type: 'step-skipped', step, reason });
      return;
    }
    const t0 = Date.now();
    opts.onEvent?.({ type: 'step-start', step });
    store.recordEvent({ command: opts.command, id: step.id, action: step.op, outcome: 'started' });
    try {
      const detail = await runStep(store, step, byKey.get(resourceKey(step.id)), stateDir, opts);
      store.recordEvent({
        command: opts.command,
        id: step.id,
        action: step.op,
        outcome: 'succeeded',
        detail,
      });
      result.done++;
      opts.onEvent?.({ type: 'step-done', step, ms: Date.now() - t0, detail });
    } catch (e) {
      const error = (e as Error).message;
      failedKeys.add(step.key);
      result.ok = false;
      result.failed.push({ step, error });
      store.recordEvent({
        command: opts.command,
        id: step.id,
        action: step.op,
        outcome: 'failed',
        detail: error,
      });
      opts.onEvent?.({ type: 'step-failed', step, ms: Date.now() - t0, error });
    }
  }
}

/** Steps per shared commit (a crash loses at most this many steps' records, which a plan redoes). */
const MAX_BATCH = 1000;

/** Whether a step only writes state: nothing on the host (no process, file or device) changes. */
function stateOnly(step: PlanStep, want: DesiredResource | undefined): boolean {
  switch (step.id.kind) {
    case 'VirtualMachine':
      return (
        step.op === 'update' ||
        (step.op === 'create' &&
          (want?.spec as Partial<NormalizedVirtualMachineSpec> | undefined)?.running === false)
      );
    case 'Network':
    case 'Host':
      return true;
    default:
      return false;
  }
}

async function runStep(
  store: StateStore,
  step: PlanStep,
  want: DesiredResource | undefined,
  stateDir: string,
  opts: ApplyOptions,
): Promise<string | undefined> {
  const have = store.get(step.id);
  const needWant = (): DesiredResource => {
    if (!want) throw new ApplyError(`${resourceKey(step.id)}: not in the manifests, cannot ${step.op} it`);
    return want;
  };
  switch (step.id.kind) {
    case 'VirtualMachine':
      return vmStep(
        store,
        step,
        have,
        step.op === 'delete' || step.op === 'stop' ? want : needWant(),
        stateDir,
        opts,
      );
    case 'Disk':
      return diskStep(store, step, have, step.op === 'delete' ? want : needWant(), stateDir);
    case 'Host': {
      if (step.op === 'delete') return removeRecord(store, step.id);
      const w = needWant();
      const address = (w.spec as { address?: string }).address ?? 'local';
      if (address !== 'local') {
        throw new ApplyError(`Host/${w.name}: remote hosts (${address}) are not supported yet; only 'local'`);
      }
      store.put({ ...ids(w), spec: w.spec, dependsOn: w.dependsOn, status: 'ready', host: w.name });
      return undefined;
    }
    case 'Network': {
      if (step.op === 'delete') return removeRecord(store, step.id);
      const w = needWant();
      store.put({ ...ids(w), spec: w.spec, dependsOn: w.dependsOn, status: 'ready' });
      return 'recorded (no host set-up is needed until a VM attaches a NIC)';
    }
    case 'VfioAssignment': {
      if (step.op === 'delete') return removeRecord(store, step.id);
      const w = needWant();
      if (!existsSync('/dev/vfio'))
        throw new ApplyError(`VfioAssignment/${w.name}: this host has no /dev/vfio (no IOMMU)`);
      store.put({ ...ids(w), spec: w.spec, dependsOn: w.dependsOn, status: 'ready' });
      return undefined;
    }
  }
}

function ids(r: ResourceId): ResourceId {
  return { kind: r.kind, name: r.name };
}

function removeRecord(store: StateStore, id: ResourceId): string | undefined {
  store.remove(id);
  return undefined;
}

// ---- VirtualMachine ----

/** The image file of a Disk as applied. */
export interface DiskImage {
  path: string;
  format: 'raw' | 'qcow2';
}

/** The image of an applied (ready) Disk by name, or undefined. */
export type DiskLookup = (disk: string) => DiskImage | undefined;

/** The VMM device class of each bus a Disk can be attached on. */
const DISK_BUS_CLASS = {
  virtio: 'virtio-block',
  ata: 'ata-disk',
  floppy: 'floppy',
} as const satisfies Record<Exclude<NormalizedDiskBus, 'cdrom'>, VmmDevice['class']>;

/** The image of a Disk as the state file records it, when it is ready. */
export function diskImageInState(store: Pick<StateStore, 'get'>): DiskLookup {
  return (disk) => {
    const rec = store.get({ kind: 'Disk', name: disk });
    if (!rec || rec.status !== 'ready') return undefined;
    const spec = rec.spec as Partial<NormalizedDiskSpec>;
    return typeof spec.path === 'string' ? { path: spec.path, format: spec.format ?? 'raw' } : undefined;
  };
}

/**
 * The VMM config (schema/vmm-config.schema.json) for a VM spec. `paths` are
 * the VM's runtime files: its console socket (serial `console`) and the
 * firmware log (`machine.debug`); `disks` finds the image of each attached
 * Disk. Attached disks become storage devices named after their Disk, before
 * spec.devices (so they take the first PCI slots and IDE positions).
 */
export function vmmConfigFor(
  name: string,
  spec: NormalizedVirtualMachineSpec,
  paths: Pick<VmPaths, 'console' | 'firmwareLog'>,
  disks: DiskLookup = () => undefined,
): VmmConfig {
  const diskDevices = spec.disks.map((a): VmmDevice => {
    const image = disks(a.disk);
    if (!image) {
      throw new ApplyError(
        `VirtualMachine/${name}: Disk/${a.disk} (spec.disks) is not created yet; apply it first`,
      );
    }
    const device = { name: a.disk, image: image.path, format: image.format };
    // A CD-ROM is read-only by nature; its device has no such field.
    return a.bus === 'cdrom'
      ? { class: 'ata-cdrom', ...device }
      : {
          class: DISK_BUS_CLASS[a.bus],
          ...device,
          readonly: a.readonly,
          ...(a.throttle && a.bus !== 'floppy' ? { throttle: a.throttle } : {}),
        };
  });
  if (spec.networks.length)
    throw new ApplyError(`VirtualMachine/${name}: the VMM has no network cards yet (spec.networks)`);
  if (spec.host !== 'local')
    throw new ApplyError(`VirtualMachine/${name}: only host 'local' is supported yet`);
  const serial =
    spec.serial === 'console'
      ? { socket: paths.console }
      : spec.serial === 'none'
        ? 'none'
        : { file: spec.serial.file };
  const cfg: VmmConfig = {
    name,
    memory: spec.memory,
    vcpus: spec.vcpus,
    cpu: spec.cpu,
    machine: 'pc',
    acpi: spec.acpi,
    uuid: spec.uuid,
    boot: spec.boot,
    fwCfg: spec.fwCfg,
    serial,
    devices: [...diskDevices, ...spec.devices],
  };
  const fw = spec.firmware;
  if (fw === 'bios') cfg.firmware = 'bios';
  else if ('bios' in fw) cfg.firmware = { bios: fw.bios.image };
  else {
    cfg.firmware = 'direct';
    cfg.kernel = fw.kernel;
    if (fw.initrd !== undefined) cfg.initrd = fw.initrd;
    cfg.cmdline = fw.cmdline;
  }
  // The VMM's stderr is its log; the firmware's chatter gets a file of its own.
  if (spec.machine !== 'pc' && spec.machine.debug) cfg.debugConsole = { file: paths.firmwareLog };
  return cfg;
}

async function vmStep(
  store: StateStore,
  step: PlanStep,
  have: ResourceRecord | undefined,
  want: DesiredResource | undefined,
  stateDir: string,
  opts: ApplyOptions,
): Promise<string | undefined> {
  const id = step.id;
  const paths = vmPaths(stateDir, id.name);
  const stop = async (rec: ResourceRecord): Promise<string> => {
    const spec = rec.spec as Partial<NormalizedVirtualMachineSpec>;
    // The pid file covers a VMM whose pid never reached the state file.
    const pid = rec.pid ?? pidFromFile(paths.pidFile);
    if (!pid || !isVmmProcess(pid)) return 'not running';
    store.patch(id, { status: 'deleting' });
    const r = await stopVm(pid, rec.controlSocket ?? paths.control, spec.shutdownTimeout ?? 30);
    return r.how === 'powerdown' ? 'shut down by the guest' : `stopped (${r.how})`;
  };
  const start = async (w: DesiredResource): Promise<string> => {
    const spec = w.spec as NormalizedVirtualMachineSpec;
    const cfg = vmmConfigFor(id.name, spec, paths, diskImageInState(store));
    store.put({
      ...ids(w),
      spec: w.spec,
      dependsOn: w.dependsOn,
      status: 'creating',
      host: spec.host,
      pid: null,
    });
    let spawned: number | undefined;
    try {
      const l = await launchVm(stateDir, id.name, cfg, opts.launchTimeoutMs, (pid, p) => {
        spawned = pid;
        store.patch(id, { pid, controlSocket: p.control, vmmConfigPath: p.config, logPath: p.log });
      });
      // Read the VM back (its first "running" status): never report an update that did not happen.
      // No second request: a VMM busy booting its guest may be slow to answer one.
      const s = l.status;
      if (s.vcpus !== spec.vcpus || s.memory !== spec.memory) {
        throw new ApplyError(
          `VirtualMachine/${id.name}: the VMM runs ${String(s.vcpus)} vCPUs / ${String(s.memory)} bytes, the spec says ${spec.vcpus} / ${spec.memory}`,
        );
      }
      store.patch(id, {
        status: 'running',
        pid: l.pid,
        controlSocket: l.paths.control,
        vmmConfigPath: l.paths.config,
        logPath: l.paths.log,
        error: null,
      });
      return `running, pid ${l.pid}`;
    } catch (e) {
      // Never leave a VMM running that state does not account for.
      if (spawned && isVmmProcess(spawned)) await stopVm(spawned, paths.control, 0);
      store.patch(id, { status: 'failed', pid: null, error: (e as Error).message });
      throw e;
    }
  };
  switch (step.op) {
    case 'create': {
      const w = want!;
      const spec = w.spec as NormalizedVirtualMachineSpec;
      vmmConfigFor(id.name, spec, paths, diskImageInState(store)); // refuse unsupported specs before touching anything
      if (!spec.running) {
        store.put({
          ...ids(w),
          spec: w.spec,
          dependsOn: w.dependsOn,
          status: 'stopped',
          host: spec.host,
          pid: null,
        });
        return 'created stopped (running: false)';
      }
      return start(w);
    }
    case 'start':
      return start(want!);
    case 'stop': {
      const detail = have ? await stop(have) : 'not running';
      if (want)
        store.put({ ...ids(want), spec: want.spec, dependsOn: want.dependsOn, status: 'stopped', pid: null });
      else store.patch(id, { status: 'stopped', pid: null });
      return detail;
    }
    case 'update': {
      const w = want!;
      store.patch(id, { spec: w.spec, dependsOn: w.dependsOn });
      return 'updated in place';
    }
    case 'delete': {
      const detail = have ? await stop(have) : 'not running';
      store.remove(id);
      rmSync(paths.dir, { recursive: true, force: true });
      return detail;
    }
  }
}

function pidFromFile(path: string): number | undefined {
  try {
    const n = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

// ---- Disk ----

/** `Disk/<name>: <why>` for an image operation that failed. */
function diskError(name: string, e: unknown): ApplyError {
  return new ApplyError(`Disk/${name}: ${e instanceof Error ? e.message : String(e)}`);
}

function vmList(records: readonly ResourceRecord[]): string {
  return records.map((u) => `VirtualMachine/${u.name}`).join(', ');
}

function existingFileMessage(name: string, path: string): string {
  return (
    `Disk/${name}: ${path} already exists and mvctl did not create it; nothing was changed or recorded. ` +
    neverOverwrites(name, path)
  );
}

/**
 * Why a Disk's image file stays when the Disk is deleted (destroy, or the
 * first half of a replace), or undefined to delete it. Both the recorded
 * policy and, on a replace, the new manifest's may keep it.
 */
function keepReason(
  path: string,
  have: ResourceRecord | undefined,
  want: DesiredResource | undefined,
): string | undefined {
  const policies = [have?.spec, want?.spec].map((s) => (s as NormalizedDiskSpec | undefined)?.deletePolicy);
  if (policies.includes('keep')) return 'deletePolicy: keep';
  if (policies.includes('delete')) return undefined;
  if (!have?.ownedFiles.includes(path)) return 'mvctl did not create it; deletePolicy: delete deletes it';
  return undefined;
}

async function diskStep(
  store: StateStore,
  step: PlanStep,
  have: ResourceRecord | undefined,
  want: DesiredResource | undefined,
  stateDir: string,
): Promise<string | undefined> {
  const id = step.id;
  const users = store
    .list()
    .filter(
      (r) => r.kind === 'VirtualMachine' && r.dependsOn.some((d) => d.kind === 'Disk' && d.name === id.name),
    );
  switch (step.op) {
    case 'create': {
      const w = want!;
      const spec = w.spec as NormalizedDiskSpec;
      const path = diskPath(stateDir, id.name, spec);
      // A file mvctl did not create is never overwritten, and refusing records nothing.
      if (existsSync(path)) throw new ApplyError(existingFileMessage(id.name, path));
      mkdirSync(dirname(path), { recursive: true });
      // Recorded before the file exists: an apply killed after this point leaves
      // a 'creating' record that owns the path, so the next apply may replace it.
      store.put({
        ...ids(w),
        spec: { ...spec, path },
        dependsOn: w.dependsOn,
        status: 'creating',
        ownedFiles: [path],
      });
      try {
        await createImage(path, {
          format: spec.format,
          size: spec.size,
          ...(spec.backingFile !== undefined ? { backingFile: spec.backingFile } : {}),
        });
      } catch (e) {
        // Someone else's file appeared meanwhile (createImage opens it exclusively): not ours.
        const theirs = (e as { code?: unknown }).code === 'EEXIST';
        if (!theirs) rmSync(path, { force: true });
        store.remove(id);
        throw theirs ? new ApplyError(existingFileMessage(id.name, path)) : diskError(id.name, e);
      }
      store.patch(id, { status: 'ready' });
      return path;
    }
    case 'update': {
      const w = want!;
      const old = (have?.spec ?? {}) as NormalizedDiskSpec;
      const spec = w.spec as NormalizedDiskSpec;
      const path = old.path ?? diskPath(stateDir, id.name, spec);
      if (spec.size !== old.size) {
        // A running VMM holds the image locked (and would not see the new size until it restarts).
        const running = users.filter((u) => u.pid && isVmmProcess(u.pid));
        if (running.length) {
          throw new ApplyError(
            `Disk/${id.name}: cannot grow ${path} while ${vmList(running)} runs with it; ` +
              'stop the VM (running: false), apply, then grow the disk',
          );
        }
        try {
          await resizeImage(path, spec.size); // refuses to shrink
        } catch (e) {
          throw diskError(id.name, e);
        }
      }
      store.patch(id, { spec: { ...spec, path }, dependsOn: w.dependsOn, status: 'ready' });
      return `${path}: ${spec.size} bytes`;
    }
    case 'delete': {
      // The plan deletes (or replaces) every VM that uses the disk first; one still in state uses it.
      if (users.length) {
        throw new ApplyError(
          `Disk/${id.name}: still used by ${vmList(users)} (spec.disks); ` +
            'detach it from the VM or delete the VM first',
        );
      }
      const path = (have?.spec as NormalizedDiskSpec | undefined)?.path;
      const keep = path === undefined ? undefined : keepReason(path, have, want);
      store.patch(id, { status: 'deleting' });
      if (path !== undefined && keep === undefined) rmSync(path, { force: true });
      store.remove(id);
      return keep === undefined ? path : `kept ${path} (${keep})`;
    }
    default:
      throw new ApplyError(`Disk/${id.name}: cannot ${step.op} a disk`);
  }
}
