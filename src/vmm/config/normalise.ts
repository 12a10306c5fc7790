/**
 * Normalisation of a schema-valid VMM config into a ResolvedVmmConfig:
 * sizes in bytes, absolute paths, defaults filled, devices placed, and the
 * checks a schema cannot express (port clashes, files, image sharing).
 */
import { dirname } from 'node:path';
import type { ImageFields, ResolveContext } from '../board/board.js';
import { claimsOf, descriptorOf } from '../board/registry.js';
import type { CharSink, DebugSink, VmmConfig, VmmDevice } from '../../generated/vmm-config.js';
import { formatPath, hex, problem, type RawProblem } from '../../common/yaml-schema-errors.js';
import { cpuFeatures, parseCpuSpec } from '../../platform/cpu-spec.js';
import {
  COM1_PORTS,
  DEBUG_CONSOLE_PORTS,
  PC_FIXED_PORTS,
  storageControllerPorts,
  type PortRange,
} from '../../platform/pc-map.js';
import { placeStorageDevices, storagePlacementRequest } from '../../platform/placement.js';
import {
  bootOrderProblems,
  deviceNameProblems,
  directBootDeviceProblems,
  fwCfgNameProblems,
  imageSharingProblems,
  type FieldProblem,
} from '../../platform/rules.js';
import { defaultVmUuid, normaliseUuid } from '../../platform/uuid.js';
import { VMM_CONFIG_DEFAULTS, schemaAt, vmmExplainer as explainer } from '../../platform/vmm-schema.js';
import {
  DEFAULT_BIOS_PATH,
  biosImageProblem,
  diskImageProblem,
  multibootProblem,
  resolvePath,
  unreadable,
} from './files.js';
import type {
  ResolvedBoot,
  ResolvedCharSink,
  ResolvedCpu,
  ResolvedDebugSink,
  ResolvedDevice,
  ResolvedFirmware,
  ResolvedFwCfgFile,
  ResolvedImage,
  ResolvedVmmConfig,
} from './types.js';

/** How a device appears in messages about other devices: `devices[2] (ata-disk "root")`. */
function deviceLabel(d: VmmDevice, i: number): string {
  return 'name' in d ? `devices[${i}] (${d.class} ${JSON.stringify(d.name)})` : `devices[${i}] (${d.class})`;
}

export function normalise(config: VmmConfig, configPath: string, problems: RawProblem[]): ResolvedVmmConfig {
  const baseDir = dirname(configPath);
  const abs = (p: string) => resolvePath(baseDir, p);

  const memory = explainer.sizeCheck(
    config.memory ?? VMM_CONFIG_DEFAULTS.memory,
    schemaAt('/definitions/MemorySize'),
  );
  if (memory.problem !== undefined) problems.push(problem(['memory'], memory.problem));

  let cpu: ResolvedCpu = { model: 'host', features: {} };
  const cpuIn = config.cpu ?? VMM_CONFIG_DEFAULTS.cpu;
  if (typeof cpuIn === 'string') {
    try {
      cpu = parseCpuSpec(cpuIn);
    } catch (e) {
      problems.push(problem(['cpu'], e instanceof Error ? e.message : String(e)));
    }
  } else {
    const list = cpuIn.features ?? [];
    try {
      cpu = { model: cpuIn.model, features: cpuFeatures(list) };
    } catch (e) {
      problems.push(problem(['cpu', 'features'], e instanceof Error ? e.message : String(e)));
    }
  }

  // Firmware: direct when a kernel is given, else the default BIOS.
  const firmwareIn = config.firmware ?? (config.kernel !== undefined ? 'direct' : 'bios');
  let firmware: ResolvedFirmware;
  if (firmwareIn === 'direct') {
    firmware = { kind: 'direct' };
  } else if (firmwareIn === 'bios') {
    firmware = { kind: 'bios', path: DEFAULT_BIOS_PATH };
    const why = biosImageProblem(DEFAULT_BIOS_PATH);
    if (why !== undefined) {
      problems.push(
        problem(
          ['firmware'],
          `${why} (the default BIOS image: install Debian's seabios package, or set firmware: {bios: PATH})`,
        ),
      );
    }
  } else {
    firmware = { kind: 'bios', path: abs(firmwareIn.bios) };
    const why = biosImageProblem(firmware.path);
    if (why !== undefined) problems.push(problem(['firmware', 'bios'], why));
  }

  let kernel: string | undefined;
  let initrd: string | undefined;
  let modules: ResolvedVmmConfig['modules'];
  if (firmware.kind === 'direct') {
    if (config.kernel === undefined) {
      problems.push(
        problem(['kernel'], 'required for direct kernel boot (or use firmware: bios)', ['firmware']),
      );
    } else {
      kernel = abs(config.kernel);
      const kernelProblem = unreadable(kernel);
      if (kernelProblem) problems.push(problem(['kernel'], `${kernel}: ${kernelProblem}`));
    }
    if (config.initrd !== undefined) {
      initrd = abs(config.initrd);
      const initrdProblem = unreadable(initrd);
      if (initrdProblem) problems.push(problem(['initrd'], `${initrd}: ${initrdProblem}`));
    }
    if (config.modules !== undefined) {
      modules = config.modules.map((m, i) => {
        const path = abs(m.file);
        const why = unreadable(path);
        if (why !== undefined) problems.push(problem(['modules', i, 'file'], `${path}: ${why}`));
        return { path, cmdline: m.cmdline ?? '' };
      });
      const why =
        kernel !== undefined && unreadable(kernel) === undefined ? multibootProblem(kernel) : undefined;
      if (why !== undefined) problems.push(problem(['modules'], why));
      if (initrd !== undefined) {
        problems.push(
          problem(
            ['modules'],
            'a multiboot kernel takes its files as modules; remove initrd (or list it here)',
          ),
        );
      }
    }
  } else if (config.kernel !== undefined) {
    // firmware: bios with a kernel: SeaBIOS boots it through mvisor's
    // multiboot option ROM (QEMU's -kernel); only multiboot kernels.
    kernel = abs(config.kernel);
    const kernelProblem = unreadable(kernel);
    if (kernelProblem) problems.push(problem(['kernel'], `${kernel}: ${kernelProblem}`));
    else if (multibootProblem(kernel) !== undefined) {
      problems.push(
        problem(
          ['kernel'],
          `${kernel}: with firmware bios the kernel must be a multiboot kernel (magic 0x1badb002 in its first 8 KiB); boot a Linux kernel with firmware: direct`,
        ),
      );
    }
    if (config.initrd !== undefined) {
      problems.push(
        problem(['initrd'], 'a multiboot kernel takes its files as modules; list it under modules instead'),
      );
    }
    modules = config.modules?.map((m, i) => {
      const path = abs(m.file);
      const why = unreadable(path);
      if (why !== undefined) problems.push(problem(['modules', i, 'file'], `${path}: ${why}`));
      return { path, cmdline: m.cmdline ?? '' };
    });
  } else {
    const which =
      config.firmware === undefined ? 'firmware bios (the default without a kernel)' : 'firmware bios';
    for (const field of ['initrd', 'modules', 'cmdline'] as const) {
      if (config[field] !== undefined) {
        problems.push(problem([field], `not used with ${which} and no kernel; remove it, or give a kernel`));
      }
    }
  }

  const cmdline = config.cmdline ?? VMM_CONFIG_DEFAULTS.cmdline;
  const maxCmdline = schemaAt('/properties/cmdline').maxLength ?? Infinity;
  const cmdlineBytes = Buffer.byteLength(cmdline, 'utf8');
  if (cmdlineBytes > maxCmdline) {
    problems.push(problem(['cmdline'], `too long: ${cmdlineBytes} bytes (at most ${maxCmdline})`));
  }

  const charSink = (s: CharSink): ResolvedCharSink => {
    if (typeof s === 'string') return { kind: s };
    return 'file' in s ? { kind: 'file', path: abs(s.file) } : { kind: 'socket', path: abs(s.socket) };
  };
  const debugSink = (s: DebugSink): ResolvedDebugSink => {
    if (typeof s === 'string') return { kind: s };
    return { kind: 'file', path: abs(s.file) };
  };

  // `machine: {type: pc, debug: true}` sends the firmware's debug port to stderr, unless debugConsole says otherwise.
  const machineIn = config.machine ?? VMM_CONFIG_DEFAULTS.machine;
  const machineDebug = typeof machineIn === 'object' && machineIn.debug === true;
  const serial = charSink(config.serial ?? VMM_CONFIG_DEFAULTS.serial);
  const debugConsole = debugSink(
    config.debugConsole ?? (machineDebug ? 'stderr' : VMM_CONFIG_DEFAULTS.debugConsole),
  );

  // I/O port ranges in use, to catch two devices on the same ports.
  const ports: PortRange[] = [...PC_FIXED_PORTS, COM1_PORTS];
  if (debugConsole.kind !== 'none') ports.push(DEBUG_CONSOLE_PORTS);
  const stdioUsers: string[] = serial.kind === 'stdio' ? ['serial'] : [];

  const devices: ResolvedDevice[] = [];
  const devicesIn = config.devices ?? [];
  const labels = devicesIn.map(deviceLabel);
  const fieldProblem = (p: FieldProblem) =>
    problems.push(problem(['devices', p.index, ...(p.field !== undefined ? [p.field] : [])], p.message));

  // Storage: controllers' ports, positions, images.
  ports.push(...storageControllerPorts({ floppy: devicesIn.some((d) => d.class === 'floppy') }));
  const placed = placeStorageDevices(devicesIn.map(storagePlacementRequest), labels);
  placed.problems.forEach(fieldProblem);
  devicesIn.forEach((d, i) => {
    const descriptor = descriptorOf(d.class);
    if (!descriptor) throw new Error(`no descriptor for device class ${d.class}`); // the schema allows none
    const ctx: ResolveContext = {
      problem: (field, message) =>
        problems.push(problem(['devices', i, ...(field !== undefined ? [field] : [])], message)),
      abs,
      placement: placed.placements[i],
      image(img: ImageFields, alwaysReadOnly = false): ResolvedImage {
        const readOnly = alwaysReadOnly || (img.readonly ?? false);
        const snapshot = !alwaysReadOnly && (img.snapshot ?? false);
        const out: ResolvedImage = { path: abs(img.image), readOnly, snapshot };
        if (img.format !== undefined) out.format = img.format;
        if (img.throttle !== undefined) out.throttle = { ...img.throttle };
        const why = diskImageProblem(out.path, {
          writable: !readOnly && !snapshot,
          ...(img.format !== undefined ? { format: img.format } : {}),
          hint:
            img.snapshot === undefined && d.class !== 'floppy'
              ? 'set readonly: true or snapshot: true to use it unwritten'
              : 'set readonly: true to use it unwritten',
        });
        if (why !== undefined) problems.push(problem(['devices', i, 'image'], why));
        return out;
      },
      charSink(s, field) {
        const sink = charSink(s);
        if (sink.kind === 'stdio') {
          if (stdioUsers.length > 0)
            problems.push(problem(['devices', i, field], `stdio is already used by ${stdioUsers[0]}`));
          stdioUsers.push(formatPath(['devices', i, field]));
        }
        return sink;
      },
      debugSink,
      firmware,
    };
    devices.push(descriptor.resolve(d, ctx) as ResolvedDevice);
  });

  // The ports each device claims (its descriptor says which), against the fixed
  // map and each other: the one place where port conflicts are found.
  devices.forEach((d, i) => {
    const label = `${formatPath(['devices', i])} (${d.class})`;
    for (const r of claimsOf(d).ports ?? []) {
      if (r.end > 0x10000) continue; // beyond the last port: reported above
      const clash = ports.find((p) => r.start < p.end && p.start < r.end);
      if (clash) {
        const at = Math.max(r.start, clash.start);
        problems.push(problem(['devices', i, r.field], `port ${hex(at)} is already used by ${clash.owner}`));
      } else ports.push({ start: r.start, end: r.end, owner: label });
    }
  });

  const uses = devices.map((d) =>
    'image' in d && d.image !== undefined
      ? { path: d.image.path, writes: !d.image.readOnly && !d.image.snapshot }
      : undefined,
  );
  imageSharingProblems(uses, labels).forEach(fieldProblem);

  if (firmware.kind === 'direct') {
    for (const p of directBootDeviceProblems(devicesIn.map((d) => d.class))) {
      problems.push(problem(['devices', p.index], p.message));
    }
  }

  const names = devicesIn.map((d) => ('name' in d ? d.name : undefined));
  for (const p of deviceNameProblems(names)) problems.push(problem(['devices', p.index, 'name'], p.message));

  const bootIn = config.boot ?? {};
  const boot: ResolvedBoot = {
    order: [...(bootIn.order ?? VMM_CONFIG_DEFAULTS.boot.order)],
    menu: bootIn.menu ?? VMM_CONFIG_DEFAULTS.boot.menu,
    menuTimeoutMs: bootIn.menuTimeout ?? VMM_CONFIG_DEFAULTS.boot.menuTimeout,
  };
  for (const p of bootOrderProblems(boot.order, names)) {
    problems.push(problem(['boot', 'order', p.index], p.message));
  }

  const fwCfgIn = config.fwCfg ?? [];
  for (const p of fwCfgNameProblems(fwCfgIn.map((f) => f.name))) {
    problems.push(problem(['fwCfg', p.index, 'name'], p.message));
  }
  const fwCfgFiles = fwCfgIn.map((item, i): ResolvedFwCfgFile => {
    if (!('file' in item)) return { name: item.name, text: item.string };
    const path = abs(item.file);
    const why = unreadable(path);
    if (why !== undefined) problems.push(problem(['fwCfg', i, 'file'], `${path}: ${why}`));
    return { name: item.name, path };
  });

  const resolved: ResolvedVmmConfig = {
    name: config.name,
    configPath,
    memory: memory.bytes ?? 0,
    vcpus: config.vcpus ?? VMM_CONFIG_DEFAULTS.vcpus,
    cpu,
    machine: 'pc',
    firmware,
    acpi: config.acpi ?? VMM_CONFIG_DEFAULTS.acpi,
    uuid: config.uuid !== undefined ? normaliseUuid(config.uuid) : defaultVmUuid(config.name),
    boot,
    fwCfgFiles,
    cmdline,
    serial,
    debugConsole,
    onReset: config.onReset ?? VMM_CONFIG_DEFAULTS.onReset,
    onTripleFault: config.onTripleFault ?? VMM_CONFIG_DEFAULTS.onTripleFault,
    pitLostTicks: config.pitLostTicks ?? 'delay',
    devices,
  };
  if (kernel !== undefined) resolved.kernel = kernel;
  if (modules !== undefined) resolved.modules = modules;
  if (initrd !== undefined) resolved.initrd = initrd;
  return resolved;
}
