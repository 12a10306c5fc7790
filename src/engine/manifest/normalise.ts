/**
 * Normalisation of schema-valid specs (see ./types.ts for the result shapes),
 * with the checks a JSON Schema cannot express (size ranges of size strings,
 * CPU feature conflicts, device port clashes, CIDR ranges...). Problems are
 * reported with paths from the document root (`spec.memory`).
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type {
  BiosFirmware,
  DirectKernelBoot,
  VirtualMachineSpec,
} from '../../generated/manifests/virtual-machine.js';
import type { DiskSpec } from '../../generated/manifests/disk.js';
import type { HostSpec } from '../../generated/manifests/host.js';
import type { NetworkSpec } from '../../generated/manifests/network.js';
import type { VfioAssignmentSpec } from '../../generated/manifests/vfio-assignment.js';
import type { Device, DebugSink, CharSink, IoLimits } from '../../generated/vmm-config.js';
import {
  bootOrderProblems,
  defaultVirtioBlockSerial,
  deviceNameProblems,
  directBootDeviceProblems,
  fwCfgNameProblems,
  imageSharingProblems,
  type FieldProblem,
} from '../../platform/rules.js';
import { defaultVmUuid, normaliseUuid } from '../../platform/uuid.js';
import { parseCpuSpec } from '../../platform/cpu-spec.js';
import { storageControllerPorts } from '../../platform/pc-map.js';
import {
  placeStorageDevices,
  storagePlacementRequest,
  type PlacementRequest,
} from '../../platform/placement.js';
import type { Kind } from '../types.js';
import { hex, problem, type RawProblem, type Segment } from '../../common/yaml-schema-errors.js';
import { sizeCheck } from './explain.js';
import { kindDefinition, schemaAt, specField, vmmDefinition } from './schemas.js';
import {
  LOCAL_HOST,
  MANIFEST_DEFAULTS,
  type NormalizedBoot,
  type NormalizedDevice,
  type NormalizedDiskAttachment,
  type NormalizedDiskBus,
  type NormalizedDiskSpec,
  type NormalizedIoLimits,
  type NormalizedFirmware,
  type NormalizedFwCfgItem,
  type NormalizedMachine,
  type NormalizedHostSpec,
  type NormalizedNetworkSpec,
  type NormalizedSerial,
  type NormalizedSpecs,
  type NormalizedVfioAssignmentSpec,
  type NormalizedVirtualMachineSpec,
} from './types.js';

/** Where relative paths in a manifest are resolved: the directory of its file (the cwd for stdin). */
export interface NormaliseContext {
  baseDir: string;
  problems: RawProblem[];
  /** The resource's name (a VirtualMachine's default UUID is derived from it). */
  name: string;
}

/** Resolves a path from a manifest: `~` / `~/...` is the user's home, relative paths are against `base`. */
export function resolveManifestPath(base: string, p: string): string {
  if (p === '~' || p.startsWith('~/')) return join(homedir(), p.slice(1));
  return resolve(base, p);
}

const DURATION_RE = /^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$/;

/** Parses a duration (seconds, or `30s`, `2m`, `1h30m`) to seconds; throws a RangeError. */
export function parseDuration(d: string | number): number {
  if (typeof d === 'number') {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new RangeError(`invalid duration ${d}: expected whole seconds`);
    return d;
  }
  const m = DURATION_RE.exec(d);
  if (d === '' || !m) {
    throw new RangeError(
      `invalid duration ${JSON.stringify(d)}: expected seconds or a duration such as 30s, 2m, 1h or 1m30s`,
    );
  }
  const [h, min, s] = [m[1], m[2], m[3]].map((x) => (x === undefined ? 0 : Number(x)));
  const total = (h ?? 0) * 3600 + (min ?? 0) * 60 + (s ?? 0);
  if (!Number.isSafeInteger(total)) throw new RangeError(`invalid duration ${JSON.stringify(d)}: too long`);
  return total;
}

/** `baseline,+b,-a,+b` -> `baseline,-a,+b`. Throws an Error with a one-line message. */
export function canonicalCpu(spec: string): string {
  const cpu = parseCpuSpec(spec);
  const features = Object.keys(cpu.features)
    .sort()
    .map((f) => `${cpu.features[f] ? '+' : '-'}${f}`);
  return [cpu.model, ...features].join(',');
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Normalises the (schema-valid) spec of a document of `kind`. */
export function normaliseSpec<K extends Kind>(
  kind: K,
  spec: unknown,
  ctx: NormaliseContext,
): NormalizedSpecs[K];
export function normaliseSpec(kind: Kind, spec: unknown, ctx: NormaliseContext): NormalizedSpecs[Kind] {
  switch (kind) {
    case 'VirtualMachine':
      return normaliseVirtualMachine((spec ?? {}) as VirtualMachineSpec, ctx);
    case 'Disk':
      return normaliseDisk(spec as DiskSpec, ctx);
    case 'Network':
      return normaliseNetwork((spec ?? {}) as NetworkSpec, ctx);
    case 'VfioAssignment':
      return normaliseVfioAssignment(spec as VfioAssignmentSpec);
    case 'Host':
      return normaliseHost(spec as HostSpec, ctx);
  }
}

// ---------------------------------------------------------------------------
// VirtualMachine

function normaliseVirtualMachine(
  spec: VirtualMachineSpec,
  ctx: NormaliseContext,
): NormalizedVirtualMachineSpec {
  const D = MANIFEST_DEFAULTS.VirtualMachine;
  const { problems } = ctx;
  const abs = (p: string) => resolveManifestPath(ctx.baseDir, p);

  const memory = sizeCheck(spec.memory ?? D.memory, schemaAt(vmmDefinition('MemorySize')));
  if (memory.problem !== undefined) problems.push(problem(['spec', 'memory'], memory.problem));

  let cpu: string = D.cpu;
  try {
    cpu = canonicalCpu(spec.cpu ?? D.cpu);
  } catch (e) {
    problems.push(problem(['spec', 'cpu'], message(e)));
  }

  let shutdownTimeout = 0;
  try {
    shutdownTimeout = parseDuration(spec.shutdownTimeout ?? D.shutdownTimeout);
  } catch (e) {
    problems.push(problem(['spec', 'shutdownTimeout'], message(e)));
  }

  const disks = (spec.disks ?? []).map((d, i): NormalizedDiskAttachment => {
    const first = (spec.disks ?? []).findIndex((o) => o.disk === d.disk);
    if (first < i) {
      problems.push(
        problem(
          ['spec', 'disks', i, 'disk'],
          `Disk ${JSON.stringify(d.disk)} is already attached as disks[${first}]`,
        ),
      );
    }
    const bus = d.bus ?? MANIFEST_DEFAULTS.DiskAttachment.bus;
    if (bus === 'cdrom' && d.readonly === false) {
      problems.push(
        problem(['spec', 'disks', i, 'readonly'], 'a cdrom is always read-only (remove readonly: false)'),
      );
    }
    if (d.throttle !== undefined && (bus === 'cdrom' || bus === 'floppy')) {
      problems.push(
        problem(['spec', 'disks', i, 'throttle'], `I/O limits are for bus virtio or ata, not ${bus}`),
      );
    }
    return {
      disk: d.disk,
      bus,
      readonly: bus === 'cdrom' || (d.readonly ?? MANIFEST_DEFAULTS.DiskAttachment.readonly),
      ...ioLimits(d.throttle),
    };
  });

  const devicesIn = spec.devices ?? D.devices;
  const devices = normaliseDevices(devicesIn, disks, abs, problems);
  // Attached disks are devices named after their Disk, placed before spec.devices (as apply writes them).
  const deviceNames = devicesIn.map((d) => ('name' in d ? d.name : undefined));
  for (const p of deviceNameProblems(deviceNames)) {
    problems.push(problem(['spec', 'devices', p.index, 'name'], p.message));
  }
  deviceNames.forEach((name, i) => {
    const disk = disks.findIndex((d) => d.disk === name);
    if (disk >= 0) {
      problems.push(
        problem(
          ['spec', 'devices', i, 'name'],
          `device name ${JSON.stringify(name)} is already used by the Disk attached as spec.disks[${disk}]`,
        ),
      );
    }
  });
  storageProblems(disks, devicesIn, devices, problems);

  const firmwareIn = spec.firmware ?? D.firmware;
  if (typeof firmwareIn === 'object' && 'kernel' in firmwareIn) {
    for (const p of directBootDeviceProblems(devicesIn.map((d) => d.class))) {
      problems.push(problem(['spec', 'devices', p.index], p.message));
    }
  }

  const bootIn = spec.boot ?? D.boot;
  const boot: NormalizedBoot = {
    order: [...(bootIn.order ?? D.boot.order)],
    menu: bootIn.menu ?? D.boot.menu,
    menuTimeout: bootIn.menuTimeout ?? D.boot.menuTimeout,
  };
  for (const p of bootOrderProblems(boot.order, [...disks.map((d) => d.disk), ...deviceNames])) {
    problems.push(problem(['spec', 'boot', 'order', p.index], p.message));
  }

  const fwCfgIn = spec.fwCfg ?? D.fwCfg;
  for (const p of fwCfgNameProblems(fwCfgIn.map((f) => f.name))) {
    problems.push(problem(['spec', 'fwCfg', p.index, 'name'], p.message));
  }
  const fwCfg = fwCfgIn.map((f): NormalizedFwCfgItem =>
    'file' in f ? { name: f.name, file: abs(f.file) } : { name: f.name, string: f.string },
  );

  const machineIn = spec.machine ?? D.machine;
  const machine: NormalizedMachine =
    typeof machineIn === 'object' && machineIn.debug === true ? { type: 'pc', debug: true } : 'pc';

  return {
    memory: memory.bytes ?? 0,
    vcpus: spec.vcpus ?? D.vcpus,
    cpu,
    firmware: normaliseFirmware(firmwareIn, abs, problems),
    machine,
    acpi: spec.acpi ?? D.acpi,
    // The schema checked the form.
    uuid: spec.uuid !== undefined ? normaliseUuid(spec.uuid) : defaultVmUuid(ctx.name),
    boot,
    fwCfg,
    disks,
    networks: (spec.networks ?? []).map((n) => ({ network: n.network })),
    serial: normaliseSerial(spec.serial ?? D.serial, abs),
    devices,
    host: spec.host ?? D.host,
    running: spec.running ?? D.running,
    shutdownTimeout,
  };
}

function normaliseFirmware(
  fw: 'bios' | BiosFirmware | DirectKernelBoot,
  abs: (p: string) => string,
  problems: RawProblem[],
): NormalizedFirmware {
  if (fw === 'bios') return 'bios';
  if ('bios' in fw) return { bios: { image: abs(fw.bios.image) } };
  const cmdline = fw.cmdline ?? MANIFEST_DEFAULTS.DirectKernelBoot.cmdline;
  // The schema limits characters; the kernel limits bytes.
  const max = schemaAt(kindDefinition('VirtualMachine', 'DirectKernelBoot/properties/cmdline')).maxLength;
  const bytes = Buffer.byteLength(cmdline, 'utf8');
  if (max !== undefined && bytes > max) {
    problems.push(problem(['spec', 'firmware', 'cmdline'], `too long: ${bytes} bytes (at most ${max})`));
  }
  // Fixed key order, so that equal specs serialise equally.
  const kernel = abs(fw.kernel);
  return fw.initrd === undefined ? { kernel, cmdline } : { kernel, initrd: abs(fw.initrd), cmdline };
}

function normaliseSerial(
  s: NonNullable<VirtualMachineSpec['serial']>,
  abs: (p: string) => string,
): NormalizedSerial {
  return typeof s === 'string' ? s : { file: abs(s.file) };
}

/** The VMM's position of an attached disk: virtio-blk on PCI, ata and cdrom on IDE, floppy. */
function diskPlacementRequest(bus: NormalizedDiskBus): PlacementRequest {
  return bus === 'virtio' ? { bus: 'pci' } : bus === 'floppy' ? { bus: 'floppy' } : { bus: 'ide' };
}

/**
 * Positions (PCI slots, IDE channel/unit, floppy drives) of the attached
 * disks and the storage devices, as the VMM will assign them, and images
 * of storage devices that more than one device uses.
 */
function storageProblems(
  disks: readonly NormalizedDiskAttachment[],
  devicesIn: readonly Device[],
  devices: readonly NormalizedDevice[],
  problems: RawProblem[],
): void {
  const n = disks.length;
  const labels = [
    ...disks.map((d, i) => `spec.disks[${i}] (Disk ${JSON.stringify(d.disk)})`),
    ...devicesIn.map((d, i) =>
      'name' in d
        ? `spec.devices[${i}] (${d.class} ${JSON.stringify(d.name)})`
        : `spec.devices[${i}] (${d.class})`,
    ),
  ];
  const at = (p: FieldProblem): Segment[] =>
    p.index < n
      ? ['spec', 'disks', p.index]
      : ['spec', 'devices', p.index - n, ...(p.field !== undefined ? [p.field] : [])];
  const placed = placeStorageDevices(
    [...disks.map((d) => diskPlacementRequest(d.bus)), ...devicesIn.map(storagePlacementRequest)],
    labels,
  );
  for (const p of placed.problems) problems.push(problem(at(p), p.message));
  const uses = [
    ...disks.map(() => undefined),
    ...devices.map((d) =>
      'image' in d && d.image !== undefined
        ? {
            path: d.image,
            writes: d.class !== 'ata-cdrom' && !d.readonly && !('snapshot' in d && d.snapshot),
          }
        : undefined,
    ),
  ];
  for (const p of imageSharingProblems(uses, labels)) problems.push(problem(at(p), p.message));
}

function normaliseDevices(
  devices: readonly Device[],
  disks: readonly NormalizedDiskAttachment[],
  abs: (p: string) => string,
  problems: RawProblem[],
): NormalizedDevice[] {
  // I/O port ranges in use, to catch two devices on the same ports (COM1 is always there).
  const ports: { start: number; end: number; owner: string }[] = [
    { start: 0x3f8, end: 0x400, owner: 'the COM1 serial port (spec.serial)' },
    ...storageControllerPorts({
      floppy: disks.some((d) => d.bus === 'floppy') || devices.some((d) => d.class === 'floppy'),
    }),
  ];
  const out: NormalizedDevice[] = [];
  devices.forEach((d, i) => {
    const path: Segment[] = ['spec', 'devices', i];
    const claim = (start: number, len: number) => {
      const clash = ports.find((r) => start < r.end && r.start < start + len);
      if (clash)
        problems.push(problem([...path, 'port'], `port ${hex(start)} is already used by ${clash.owner}`));
      else ports.push({ start, end: start + len, owner: `spec.devices[${i}] (${d.class})` });
    };
    if (d.class === 'serial-port') {
      claim(d.port, 8);
      const sink: CharSink = d.serial ?? 'none';
      let serial: NormalizedSerialSink = 'none';
      if (sink === 'stdio') {
        problems.push(
          problem(
            [...path, 'serial'],
            'stdio is not available to a VM run by mvctl (use none, {file: path} or {socket: path})',
          ),
        );
      } else if (typeof sink === 'string') serial = sink;
      else serial = 'file' in sink ? { file: abs(sink.file) } : { socket: abs(sink.socket) };
      out.push({ class: 'serial-port', port: d.port, irq: d.irq ?? (d.port === 0x3e8 ? 4 : 3), serial });
    } else if (d.class === 'debug-console') {
      claim(d.port, 1);
      const o: Exclude<DebugSink, 'none'> = d.output ?? 'stderr';
      out.push({
        class: 'debug-console',
        port: d.port,
        output: typeof o === 'string' ? o : { file: abs(o.file) },
      });
    } else if (d.class === 'option-rom') {
      // The image is checked by the VMM when the VM starts (as kernels are).
      out.push({ class: 'option-rom', name: d.name, file: abs(d.file) });
    } else if (d.class === 'virtio-block') {
      // Images too; fixed key order (optional fields last), so that equal specs serialise equally.
      out.push({
        class: 'virtio-block',
        name: d.name,
        image: abs(d.image),
        ...(d.format !== undefined ? { format: d.format } : {}),
        readonly: d.readonly ?? false,
        snapshot: d.snapshot ?? false,
        ...ioLimits(d.throttle),
        serial: d.serial ?? defaultVirtioBlockSerial(d.name),
        queues: d.queues ?? 1,
        ...(d.slot !== undefined ? { slot: d.slot } : {}),
      });
    } else if (d.class === 'ata-disk') {
      out.push({
        class: 'ata-disk',
        name: d.name,
        image: abs(d.image),
        ...(d.format !== undefined ? { format: d.format } : {}),
        readonly: d.readonly ?? false,
        snapshot: d.snapshot ?? false,
        ...ioLimits(d.throttle),
        ...(d.channel !== undefined ? { channel: d.channel } : {}),
        ...(d.unit !== undefined ? { unit: d.unit } : {}),
      });
    } else if (d.class === 'ata-cdrom') {
      out.push({
        class: 'ata-cdrom',
        name: d.name,
        ...(d.image !== undefined ? { image: abs(d.image) } : {}),
        ...(d.format !== undefined ? { format: d.format } : {}),
        ...(d.channel !== undefined ? { channel: d.channel } : {}),
        ...(d.unit !== undefined ? { unit: d.unit } : {}),
      });
    } else {
      out.push({
        class: 'floppy',
        name: d.name,
        ...(d.image !== undefined ? { image: abs(d.image) } : {}),
        ...(d.format !== undefined ? { format: d.format } : {}),
        readonly: d.readonly ?? false,
        ...(d.drive !== undefined ? { drive: d.drive } : {}),
      });
    }
  });
  return out;
}

type NormalizedSerialSink = 'none' | { file: string } | { socket: string };

// ---------------------------------------------------------------------------
// Disk

function normaliseDisk(spec: DiskSpec, ctx: NormaliseContext): NormalizedDiskSpec {
  const format = spec.format ?? MANIFEST_DEFAULTS.Disk.format;
  const size = sizeCheck(spec.size, specField('Disk', 'size'));
  if (size.problem !== undefined) ctx.problems.push(problem(['spec', 'size'], size.problem));
  const out: NormalizedDiskSpec = { format, size: size.bytes ?? 0 };
  if (spec.path !== undefined) out.path = resolveManifestPath(ctx.baseDir, spec.path);
  if (spec.deletePolicy !== undefined) out.deletePolicy = spec.deletePolicy;
  if (spec.backingFile !== undefined) {
    out.backingFile = resolveManifestPath(ctx.baseDir, spec.backingFile);
    if (format !== 'qcow2') {
      ctx.problems.push(
        problem(['spec', 'backingFile'], `a backing file needs format qcow2 (this disk is ${format})`),
      );
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Network

function normaliseNetwork(spec: NetworkSpec, ctx: NormaliseContext): NormalizedNetworkSpec {
  const out: NormalizedNetworkSpec = { mode: spec.mode ?? MANIFEST_DEFAULTS.Network.mode };
  if (spec.cidr !== undefined) {
    try {
      out.cidr = canonicalCidr(spec.cidr);
    } catch (e) {
      ctx.problems.push(problem(['spec', 'cidr'], message(e)));
    }
  }
  return out;
}

/** Checks an IPv4 `a.b.c.d/n` (schema-valid shape) and returns it canonical; throws an Error. */
export function canonicalCidr(cidr: string): string {
  const [addr = '', bits = ''] = cidr.split('/');
  const octets = addr.split('.').map(Number);
  const prefix = Number(bits);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o > 255)) {
    throw new Error(`invalid CIDR ${JSON.stringify(cidr)}: each address part must be 0..255`);
  }
  if (!Number.isInteger(prefix) || prefix > 32) {
    throw new Error(`invalid CIDR ${JSON.stringify(cidr)}: the prefix length must be 0..32`);
  }
  const value = octets.reduce((acc, o) => acc * 256 + o, 0);
  const size = 2 ** (32 - prefix);
  const network = value - (value % size);
  const text = [24, 16, 8, 0].map((s) => Math.floor(network / 2 ** s) % 256).join('.');
  if (network !== value) {
    throw new Error(
      `invalid CIDR ${JSON.stringify(cidr)}: host bits are set (did you mean ${text}/${prefix}?)`,
    );
  }
  return `${text}/${prefix}`;
}

// ---------------------------------------------------------------------------
// VfioAssignment

function normaliseVfioAssignment(spec: VfioAssignmentSpec): NormalizedVfioAssignmentSpec {
  const address = spec.address.toLowerCase();
  return {
    host: spec.host ?? MANIFEST_DEFAULTS.VfioAssignment.host,
    address: address.length === 7 ? `0000:${address}` : address,
    vm: spec.vm,
  };
}

// ---------------------------------------------------------------------------
// Host

function normaliseHost(spec: HostSpec, ctx: NormaliseContext): NormalizedHostSpec {
  const out: NormalizedHostSpec = { address: spec.address };
  const port = /:([0-9]+)$/.exec(spec.address.replace(/^ssh:\/\/[^/]*\]/, ''))?.[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
    ctx.problems.push(problem(['spec', 'address'], `invalid port ${port}: expected 1..65535`));
  }
  if (spec.stateDir !== undefined) {
    out.stateDir =
      spec.address === LOCAL_HOST ? resolveManifestPath(ctx.baseDir, spec.stateDir) : spec.stateDir;
  }
  return out;
}

/** `{ throttle }` with its limits in a fixed order, or nothing when there are none. */
function ioLimits(t: IoLimits | undefined): { throttle?: NormalizedIoLimits } {
  if (t === undefined) return {};
  return {
    throttle: {
      ...(t.iops !== undefined ? { iops: t.iops } : {}),
      ...(t.bytesPerSecond !== undefined ? { bytesPerSecond: t.bytesPerSecond } : {}),
    },
  };
}
