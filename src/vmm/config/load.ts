/**
 * Loads the low-level VMM config file (`mvisor -c vm.yaml`): YAML with
 * source positions, validated against schema/vmm-config.schema.json (the
 * single source of truth for its shape), then normalised into a plain
 * `ResolvedVmmConfig` (sizes in bytes, absolute paths, defaults filled).
 *
 * Every problem becomes one line `file:line:col: field.path: message` of a
 * `ConfigError`; schema errors are explained (and located in the YAML) by
 * src/common/yaml-schema-errors.ts, which the manifest loader uses too.
 */
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  statSync,
} from 'node:fs';
import { PC_FIXED_PORTS, type PortRange } from '../pc-ports.js';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Ajv, ValidateFunction } from 'ajv';
import { LineCounter, parseDocument } from 'yaml';
import schemaJson from '../../../schema/vmm-config.schema.json' with { type: 'json' };
import {
  EXPLAIN_AJV_OPTIONS,
  closest,
  createSchemaErrorExplainer,
  describeValue,
  escapePointer,
  firstLine,
  formatPath,
  hex,
  isRecord,
  locateNode,
  problem,
  schemaNodeAt,
  type RawProblem,
  type SchemaNode,
  type Segment,
} from '../../common/yaml-schema-errors.js';
import type {
  AtaCdromDevice,
  AtaDiskDevice,
  CharSink,
  DebugConsoleDevice,
  DebugSink,
  FloppyDevice,
  IsaDebugExitDevice,
  OptionRomDevice,
  PciTestdevDevice,
  SerialPortDevice,
  VirtioBlockDevice,
  VmmConfig,
  VmmDevice,
} from '../../generated/vmm-config.js';
import { loadAjv, precompiledValidator, type ValidatorSet } from '../../common/precompiled-validators.js';
import { ConfigError, type ConfigProblem } from './errors.js';
import { SIZE_PATTERN, formatSize, parseSize } from './size.js';
import type {
  CpuModel,
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
import { defaultVmUuid, normaliseUuid } from './uuid.js';

export { ConfigError, formatProblem, type ConfigProblem } from './errors.js';
export { SIZE_PATTERN, formatSize, parseSize } from './size.js';
export { defaultVmUuid, normaliseUuid, uuidV5 } from './uuid.js';
export type * from './types.js';
export type { VmmConfig } from '../../generated/vmm-config.js';

/**
 * Defaults for optional fields (the schema's `default` annotations say the
 * same; a unit test checks they agree).
 */
export const VMM_CONFIG_DEFAULTS = {
  memory: '128M',
  vcpus: 1,
  cpu: 'host',
  machine: 'pc',
  acpi: true,
  boot: { order: [], menu: false, menuTimeout: 0 },
  fwCfg: [],
  cmdline: '',
  serial: 'stdio',
  debugConsole: 'none',
  onReset: 'exit',
  onTripleFault: 'stop',
  devices: [],
} as const satisfies Partial<VmmConfig>;

/**
 * The BIOS image `firmware: bios` boots: SeaBIOS as Debian's `seabios`
 * package installs it (the 256 KiB build, with the PCI, ACPI and SMBIOS
 * support the 128 KiB one lacks).
 */
export const DEFAULT_BIOS_PATH = '/usr/share/seabios/bios-256k.bin';

/** BIOS image sizes: a multiple of 64 KiB, 64 KiB .. 16 MiB (the flash window below 4 GiB). */
export const BIOS_SIZE = { min: 64 * 1024, max: 16 * 1024 * 1024, align: 64 * 1024 } as const;

/** Legacy option ROM sizes: 512 bytes .. 128 KiB (the 0xC0000-0xDFFFF expansion area is shared). */
export const OPTION_ROM_SIZE = { min: 512, max: 128 * 1024 } as const;

/** fw_cfg file names are 56 bytes with the terminating NUL (FWCfgFile.name in QEMU's fw_cfg.h). */
export const FW_CFG_NAME_MAX_BYTES = 55;

/** Reads, validates and normalises a VMM config file. Throws `ConfigError`. */
export function loadVmmConfig(path: string): ResolvedVmmConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError([{ file: path, message: `cannot read config file: ${fileErrorReason(e)}` }]);
  }
  return parseVmmConfig(text, path);
}

/**
 * Validates and normalises config text. `path` names the file in messages;
 * relative paths in the config are resolved against its directory.
 */
export function parseVmmConfig(text: string, path: string): ResolvedVmmConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (line: number, col: number) => ({ file: path, line, col });

  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((err) => {
        const pos = lineCounter.linePos(err.pos[0]);
        const message =
          err.code === 'MULTIPLE_DOCS'
            ? "a config file holds one YAML document ('---' starts another)"
            : firstLine(err.message);
        return { ...at(pos.line, pos.col), message };
      }),
    );
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    throw new ConfigError([{ ...at(1, 1), message: e instanceof Error ? e.message : String(e) }]);
  }

  const toProblem = (p: RawProblem): ConfigProblem => {
    const pos = locateNode(doc, lineCounter, p.at, p.atKey);
    return { ...at(pos.line, pos.col), path: formatPath(p.path), message: p.message };
  };

  const validate = rootValidator();
  if (!validate(data))
    throw new ConfigError(sortProblems(dedupe(explainer.explain('', data).map(toProblem))));

  const problems: RawProblem[] = [];
  const resolved = normalise(data, resolvePath(path), problems);
  if (problems.length > 0) throw new ConfigError(sortProblems(dedupe(problems.map(toProblem))));
  return resolved;
}

/**
 * Parses a `--serial` override: `stdio`, `none`, `file:PATH` or
 * `socket:PATH` (relative paths against `baseDir`). Throws `ConfigError`.
 */
/** Resolves a path from a config: `~/` is the user's home, relative paths are against `base`. */
function resolvePath(base: string, p?: string): string {
  if (p === undefined) return resolve(base);
  if (p === '~' || p.startsWith('~/')) return join(homedir(), p.slice(1));
  return resolve(base, p);
}

export function parseCharSinkSpec(spec: string, baseDir: string = process.cwd()): ResolvedCharSink {
  if (spec === 'stdio' || spec === 'none') return { kind: spec };
  const m = /^(file|socket):(.+)$/.exec(spec);
  if (m?.[1] === 'file' || m?.[1] === 'socket') return { kind: m[1], path: resolvePath(baseDir, m[2] ?? '') };
  throw new ConfigError([
    {
      file: '--serial',
      message: `invalid value ${JSON.stringify(spec)}: expected stdio, none, file:PATH or socket:PATH`,
    },
  ]);
}

/**
 * Parses a CPU spec `<model>[,+feature|-feature...]` such as
 * `baseline,-cx16,+xsaveerptr`. Throws an Error with a one-line message.
 */
export function parseCpuSpec(spec: string): ResolvedCpu {
  const [model = '', ...items] = spec.split(',');
  return { model: cpuModel(model), features: cpuFeatures(items) };
}

// ---------------------------------------------------------------------------
// Schema access

/**
 * The schema as the loader validates with. In the file, `VmmDevice` (what
 * `devices` holds) is a union of `Device` (the classes VirtualMachine
 * manifests share) and the test devices; here `Device` is widened to one
 * flat union of every class a VMM config can have, and `devices` holds it,
 * so that a wrong `class`, or a wrong field of a known class, is explained
 * as before ("unknown device class ... (known: ...)"). The two schemas
 * accept the same documents: the classes are distinct constants.
 */
const SCHEMA: SchemaNode = vmmValidationSchema(schemaJson);
const SCHEMA_ID = SCHEMA.$id ?? 'vmm-config';

export function vmmValidationSchema(schema: SchemaNode): SchemaNode {
  const copy = structuredClone(schema) as SchemaNode & {
    definitions: Record<string, SchemaNode>;
    properties: Record<string, SchemaNode>;
  };
  const defs = copy.definitions;
  const flat = (defs.VmmDevice?.oneOf ?? []).flatMap((b) =>
    b.$ref === '#/definitions/Device' ? (defs.Device?.oneOf ?? []) : [b],
  );
  defs.Device = { ...defs.Device, oneOf: flat };
  copy.properties.devices = { ...copy.properties.devices, items: { $ref: '#/definitions/Device' } };
  return copy;
}

/** The schema node at a JSON pointer ('' is the root). */
function schemaAt(pointer: string): SchemaNode {
  return schemaNodeAt(SCHEMA, pointer);
}

/** Follows `$ref`s (local ones only: `#/definitions/...`) to the pointer of the real schema. */
function deref(pointer: string): string {
  for (let i = 0; i < 32; i++) {
    const ref = schemaAt(pointer).$ref;
    if (ref === undefined) return pointer;
    if (!ref.startsWith('#')) throw new Error(`internal: non-local $ref ${ref}`);
    pointer = ref.slice(1);
  }
  throw new Error(`internal: $ref loop at ${pointer}`);
}

/** The pointer of a node below the one at `pointer` (`childPointer(p, 'properties', 'memory')`). */
function childPointer(pointer: string, ...segs: readonly Segment[]): string {
  return pointer + segs.map((s) => `/${escapePointer(String(s))}`).join('');
}

/** The VMM config schema as a validator set (compiled at build time: precompiled-validators.ts). */
export const VMM_VALIDATORS: ValidatorSet = {
  name: 'vmm-config',
  schemas: [SCHEMA],
  vocabulary: [],
  options: EXPLAIN_AJV_OPTIONS,
};

let ajv: Ajv | undefined;
const validators = new Map<string, ValidateFunction>();

function getAjv(): Ajv {
  if (!ajv) {
    ajv = new (loadAjv())(EXPLAIN_AJV_OPTIONS);
    ajv.addSchema(SCHEMA, SCHEMA_ID);
  }
  return ajv;
}

function rootValidator(): ValidateFunction<VmmConfig> {
  const v =
    (precompiledValidator(VMM_VALIDATORS, SCHEMA_ID) as ValidateFunction<VmmConfig> | undefined) ??
    getAjv().getSchema<VmmConfig>(SCHEMA_ID);
  if (!v) throw new Error('internal: VMM config schema did not compile');
  return v;
}

/** A validator for the sub-schema at `pointer` (compiled once). */
function validatorAt(pointer: string): ValidateFunction {
  let v = validators.get(pointer);
  if (!v) {
    const key = `${SCHEMA_ID}#${pointer}`;
    v =
      pointer === ''
        ? rootValidator()
        : (precompiledValidator(VMM_VALIDATORS, key) ?? getAjv().getSchema(key));
    if (!v) throw new Error(`internal: cannot compile schema at ${pointer}`);
    validators.set(pointer, v);
  }
  return v;
}

// ---------------------------------------------------------------------------
// Explaining validation errors

/**
 * The message for a string that does not match a pattern of the VMM config
 * schema, or undefined for the generic one. The manifest loader uses it too
 * (VirtualMachine specs reuse the VMM's device, boot and fw_cfg shapes).
 */
export function vmmPatternMessage(pattern: string, data: unknown): string | undefined {
  if (pattern === schemaAt('/definitions/CpuSpec').pattern && typeof data === 'string') {
    try {
      parseCpuSpec(data);
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }
  const text = describeValue(data);
  if (pattern === schemaAt('/definitions/CpuObject/properties/features/items').pattern) {
    return `invalid CPU feature ${text}: expected +name or -name`;
  }
  if (
    pattern === schemaAt('/properties/name').pattern ||
    pattern === schemaAt('/definitions/DeviceName').pattern
  ) {
    return `invalid name ${text}: use 1-63 lowercase letters, digits or '-', starting with a letter or digit`;
  }
  if (pattern === schemaAt('/definitions/Uuid').pattern) {
    return `invalid UUID ${text}: expected 8-4-4-4-12 hex digits, e.g. 0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70`;
  }
  if (pattern === schemaAt('/definitions/VirtioBlockDevice/properties/serial').pattern) {
    return `invalid serial ${text}: use printable ASCII characters (letters, digits, punctuation, spaces)`;
  }
  if (pattern === schemaAt('/definitions/FwCfgName').pattern) {
    return `invalid fw_cfg name ${text}: user files must be named opt/..., e.g. opt/org.example/config`;
  }
  return undefined;
}

const explainer = createSchemaErrorExplainer(
  { schemaAt, deref, child: childPointer, validatorAt },
  {
    sizes: { pattern: SIZE_PATTERN, parse: parseSize, format: formatSize, example: '128M' },
    patternMessage: vmmPatternMessage,
    emptyDocument: 'the config is empty (expected a mapping with at least a name)',
  },
);

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.line}:${p.col}:${p.path}:${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return [...problems].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0));
}

// ---------------------------------------------------------------------------
// Normalisation (on schema-valid data)

const CPU_MODELS: readonly CpuModel[] = ['host', 'baseline'];
const FEATURE_RE = /^[+-][a-z0-9][a-z0-9_.-]*$/;

function cpuModel(model: string): CpuModel {
  const m = CPU_MODELS.find((k) => k === model);
  if (!m) throw new Error(`unknown CPU model ${JSON.stringify(model)} (known: ${CPU_MODELS.join(', ')})`);
  return m;
}

function cpuFeatures(items: readonly string[]): Record<string, boolean> {
  const features: Record<string, boolean> = {};
  for (const item of items) {
    if (!FEATURE_RE.test(item)) {
      throw new Error(`invalid CPU feature ${JSON.stringify(item)}: expected +name or -name`);
    }
    const name = item.slice(1);
    const on = item[0] === '+';
    if (name in features && features[name] !== on) {
      throw new Error(`CPU feature ${JSON.stringify(name)} is both added and removed`);
    }
    features[name] = on;
  }
  return features;
}

function fileErrorReason(e: unknown): string {
  const code = isRecord(e) ? e.code : undefined;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return e instanceof Error ? e.message : String(e);
}

/** Why a file cannot be read, or undefined if it can. */
function unreadable(path: string): string | undefined {
  try {
    const st = statSync(path);
    if (st.isDirectory()) return 'is a directory';
    if (!st.isFile()) return 'not a regular file';
    accessSync(path, fsConstants.R_OK);
    return undefined;
  } catch (e) {
    return fileErrorReason(e);
  }
}

/** The size of a readable regular file, or why it cannot be read. */
function readableFile(path: string): { size: number; problem?: undefined } | { problem: string } {
  const why = unreadable(path);
  return why !== undefined ? { problem: `${path}: ${why}` } : { size: statSync(path).size };
}

/** The first `n` bytes of a file (fewer if it is shorter). */
function readHead(path: string, n: number): Buffer {
  const buf = Buffer.alloc(n);
  const fd = openSync(path, 'r');
  try {
    return buf.subarray(0, readSync(fd, buf, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

/** Why `path` is not a usable BIOS image, or undefined. */
export function biosImageProblem(path: string): string | undefined {
  const f = readableFile(path);
  if (f.problem !== undefined) return f.problem;
  const { min, max, align } = BIOS_SIZE;
  if (f.size < min || f.size > max || f.size % align !== 0) {
    return `${path}: ${f.size} bytes is not a BIOS image size (a multiple of 64 KiB, 64 KiB .. 16 MiB)`;
  }
  return undefined;
}

/** Why `path` is not a usable legacy option ROM, or undefined. */
export function optionRomProblem(path: string): string | undefined {
  const f = readableFile(path);
  if (f.problem !== undefined) return f.problem;
  if (f.size < OPTION_ROM_SIZE.min)
    return `${path}: ${f.size} bytes is too small for an option ROM (at least 512)`;
  if (f.size > OPTION_ROM_SIZE.max)
    return `${path}: ${f.size} bytes is too large for an option ROM (at most 128 KiB)`;
  let head: Buffer;
  try {
    head = readHead(path, 2);
  } catch (e) {
    return `${path}: ${fileErrorReason(e)}`;
  }
  // PCI Firmware Specification 3.0, 5.1.1: every expansion ROM image starts with 0x55 0xAA.
  if (head[0] !== 0x55 || head[1] !== 0xaa) {
    return `${path}: not an option ROM (it does not start with the signature 0x55 0xAA)`;
  }
  return undefined;
}

/** A problem with the item at `index` of a list (boot order, fw_cfg files, devices). */
export interface ListProblem {
  index: number;
  message: string;
}

/**
 * Problems of device names (`names[i]` is the name of device i, undefined
 * for a device without one): each name is used once.
 */
export function deviceNameProblems(names: readonly (string | undefined)[]): ListProblem[] {
  const out: ListProblem[] = [];
  names.forEach((name, i) => {
    if (name === undefined) return;
    const first = names.indexOf(name);
    if (first < i) {
      out.push({
        index: i,
        message: `device name ${JSON.stringify(name)} is already used by devices[${first}]`,
      });
    }
  });
  return out;
}

/** What an option ROM device of a directly booted VM is told. */
export const OPTION_ROM_NEEDS_BIOS =
  'an option ROM needs firmware: bios (a direct kernel boot runs no firmware)';

/**
 * Problems of devices (`classes[i]` is the class of device i) in a VM that
 * boots its kernel directly: an option ROM is run by the firmware, and
 * there is none.
 */
export function directBootDeviceProblems(classes: readonly string[]): ListProblem[] {
  return classes.flatMap((c, index) =>
    c === 'option-rom' ? [{ index, message: OPTION_ROM_NEEDS_BIOS }] : [],
  );
}

/** Problems of a boot order: each entry names a device (of `deviceNames`), once. */
export function bootOrderProblems(
  order: readonly string[],
  deviceNames: readonly (string | undefined)[],
): ListProblem[] {
  const named = [...new Set(deviceNames.filter((n) => n !== undefined))];
  const out: ListProblem[] = [];
  order.forEach((name, i) => {
    const first = order.indexOf(name);
    if (first < i) {
      out.push({ index: i, message: `${JSON.stringify(name)} is already listed at boot.order[${first}]` });
    } else if (!named.includes(name)) {
      const guess = closest(name, named);
      out.push({
        index: i,
        message:
          `no device named ${JSON.stringify(name)} ` +
          (guess !== undefined
            ? `(did you mean ${JSON.stringify(guess)}?)`
            : named.length > 0
              ? `(named devices: ${named.join(', ')})`
              : '(no device has a name; option-rom and storage devices do)'),
      });
    }
  });
  return out;
}

/** Problems of fw_cfg file names (schema-valid: `opt/...`): at most 55 bytes, each used once. */
export function fwCfgNameProblems(names: readonly string[]): ListProblem[] {
  const out: ListProblem[] = [];
  names.forEach((name, i) => {
    const bytes = Buffer.byteLength(name, 'utf8');
    const first = names.indexOf(name);
    if (bytes > FW_CFG_NAME_MAX_BYTES) {
      out.push({ index: i, message: `too long: ${bytes} bytes (at most ${FW_CFG_NAME_MAX_BYTES})` });
    } else if (first < i) {
      out.push({
        index: i,
        message: `fw_cfg name ${JSON.stringify(name)} is already used by fwCfg[${first}]`,
      });
    }
  });
  return out;
}

// ---------------------------------------------------------------------------
// Storage devices

/** Device classes that take a disk image. */
export const STORAGE_DEVICE_CLASSES = ['virtio-block', 'ata-disk', 'ata-cdrom', 'floppy'] as const;
export type StorageDeviceClass = (typeof STORAGE_DEVICE_CLASSES)[number];

export function isStorageDeviceClass(c: string): c is StorageDeviceClass {
  return (STORAGE_DEVICE_CLASSES as readonly string[]).includes(c);
}

/** PCI slots on bus 0 for devices: 0 is the i440FX host bridge, 1 the PIIX3 (ISA bridge, IDE, PM). */
export const PCI_DEVICE_SLOTS = { first: 2, last: 31 } as const;

/** A virtio-blk serial number is at most 20 bytes (VIRTIO_BLK_ID_BYTES, virtio 1.2 5.2.6). */
export const VIRTIO_BLK_SERIAL_MAX_BYTES = 20;

/** The serial number of a virtio-block device without one: its name, cut to 20 bytes (names are ASCII). */
export function defaultVirtioBlockSerial(name: string): string {
  return name.slice(0, VIRTIO_BLK_SERIAL_MAX_BYTES);
}

/** The IDE positions (channel, unit), in the order unassigned devices take them. */
const IDE_POSITIONS: readonly (readonly [0 | 1, 0 | 1])[] = [
  [0, 0],
  [0, 1],
  [1, 0],
  [1, 1],
];

/** Where a storage device asks to be; an absent field means "the first free one". */
export type PlacementRequest =
  | { bus: 'pci'; slot?: number }
  | { bus: 'ide'; channel?: 0 | 1; unit?: 0 | 1 }
  | { bus: 'floppy'; drive?: 0 | 1 };

/** Where a storage device is. */
export type Placement =
  | { bus: 'pci'; slot: number }
  | { bus: 'ide'; channel: 0 | 1; unit: 0 | 1 }
  | { bus: 'floppy'; drive: 0 | 1 };

/** A problem of the item at `index`, about its `field` (absent: the item as a whole). */
export interface FieldProblem extends ListProblem {
  field?: string;
}

/**
 * What a device of the VMM config asks for, or undefined for a device that
 * has no position: storage devices, and pci-testdev, which takes a PCI slot
 * as virtio-block devices do.
 */
export function storagePlacementRequest(d: VmmDevice): PlacementRequest | undefined {
  switch (d.class) {
    case 'virtio-block':
    case 'pci-testdev':
      return d.slot === undefined ? { bus: 'pci' } : { bus: 'pci', slot: d.slot };
    case 'ata-disk':
    case 'ata-cdrom':
      return { bus: 'ide', ...pick(d, 'channel'), ...pick(d, 'unit') };
    case 'floppy':
      return d.drive === undefined ? { bus: 'floppy' } : { bus: 'floppy', drive: d.drive };
    default:
      return undefined;
  }
}

function pick<T extends object, K extends keyof T>(o: T, k: K): Partial<Pick<T, K>> {
  return o[k] === undefined ? {} : ({ [k]: o[k] } as Pick<T, K>);
}

/**
 * Places storage devices (`requests[i]` is device i's request, undefined
 * for other devices; `labels[i]` names it in messages): positions given
 * must be unique; then devices with half a position (an IDE channel, or a
 * unit) take the first free one that fits, then the others take the first
 * free position, each in device order. virtio-block devices (and
 * pci-testdev) get PCI slots from 2 up, IDE devices the four positions channel 0/1 × unit 0/1 (0/0,
 * 0/1, 1/0, 1/1), floppies drives 0 and 1.
 */
export function placeStorageDevices(
  requests: readonly (PlacementRequest | undefined)[],
  labels: readonly string[],
): { placements: (Placement | undefined)[]; problems: FieldProblem[] } {
  const placements: (Placement | undefined)[] = requests.map(() => undefined);
  const problems: FieldProblem[] = [];
  const owners = new Map<string, number>();
  const label = (i: number | undefined) => (i === undefined ? '?' : (labels[i] ?? `devices[${i}]`));
  const ownerOf = (key: string) => label(owners.get(key));
  const free = (key: string) => !owners.has(key);
  const indexes = (pred: (r: PlacementRequest) => boolean) =>
    requests.flatMap((r, i) => (r !== undefined && pred(r) ? [i] : []));

  // PCI slots.
  const slotKey = (slot: number) => `pci:${slot}`;
  for (const i of indexes((r) => r.bus === 'pci' && r.slot !== undefined)) {
    const slot = (requests[i] as { slot: number }).slot;
    if (!free(slotKey(slot))) {
      problems.push({
        index: i,
        field: 'slot',
        message: `PCI slot ${slot} is already used by ${ownerOf(slotKey(slot))}`,
      });
      continue;
    }
    owners.set(slotKey(slot), i);
    placements[i] = { bus: 'pci', slot };
  }
  for (const i of indexes((r) => r.bus === 'pci' && r.slot === undefined)) {
    let slot: number | undefined;
    for (let s = PCI_DEVICE_SLOTS.first; s <= PCI_DEVICE_SLOTS.last && slot === undefined; s++) {
      if (free(slotKey(s))) slot = s;
    }
    if (slot === undefined) {
      problems.push({
        index: i,
        message: `no free PCI slot: slots ${PCI_DEVICE_SLOTS.first}..${PCI_DEVICE_SLOTS.last} are all used`,
      });
      continue;
    }
    owners.set(slotKey(slot), i);
    placements[i] = { bus: 'pci', slot };
  }

  // IDE positions.
  const ideKey = (channel: number, unit: number) => `ide:${channel}:${unit}`;
  const ide = (r: PlacementRequest | undefined): { channel?: 0 | 1; unit?: 0 | 1 } =>
    r?.bus === 'ide' ? r : {};
  const placeIde = (i: number, channel: 0 | 1, unit: 0 | 1) => {
    owners.set(ideKey(channel, unit), i);
    placements[i] = { bus: 'ide', channel, unit };
  };
  for (const i of indexes((r) => r.bus === 'ide' && r.channel !== undefined && r.unit !== undefined)) {
    const { channel = 0, unit = 0 } = ide(requests[i]);
    if (free(ideKey(channel, unit))) placeIde(i, channel, unit);
    else {
      problems.push({
        index: i,
        field: 'channel',
        message: `IDE channel ${channel} unit ${unit} is already used by ${ownerOf(ideKey(channel, unit))}`,
      });
    }
  }
  for (const i of indexes((r) => r.bus === 'ide' && (r.channel === undefined) !== (r.unit === undefined))) {
    const r = ide(requests[i]);
    const fits = IDE_POSITIONS.filter(
      ([c, u]) => (r.channel === undefined || r.channel === c) && (r.unit === undefined || r.unit === u),
    );
    const spot = fits.find(([c, u]) => free(ideKey(c, u)));
    if (spot) placeIde(i, spot[0], spot[1]);
    else {
      const users = fits.map(([c, u]) => ownerOf(ideKey(c, u))).join(', ');
      problems.push(
        r.channel !== undefined
          ? {
              index: i,
              field: 'channel',
              message: `IDE channel ${r.channel} has no free unit (used by ${users})`,
            }
          : { index: i, field: 'unit', message: `unit ${r.unit} is used on both IDE channels (by ${users})` },
      );
    }
  }
  for (const i of indexes((r) => r.bus === 'ide' && r.channel === undefined && r.unit === undefined)) {
    const spot = IDE_POSITIONS.find(([c, u]) => free(ideKey(c, u)));
    if (spot) placeIde(i, spot[0], spot[1]);
    else {
      const users = IDE_POSITIONS.map(([c, u]) => ownerOf(ideKey(c, u))).join(', ');
      problems.push({
        index: i,
        message: `no free IDE position: the controller has 4 (channel 0/1 × unit 0/1), used by ${users}`,
      });
    }
  }

  // Floppy drives.
  const driveKey = (drive: number) => `floppy:${drive}`;
  for (const i of indexes((r) => r.bus === 'floppy' && r.drive !== undefined)) {
    const r = requests[i];
    const drive = r?.bus === 'floppy' ? (r.drive ?? 0) : 0;
    if (!free(driveKey(drive))) {
      problems.push({
        index: i,
        field: 'drive',
        message: `floppy drive ${drive} is already used by ${ownerOf(driveKey(drive))}`,
      });
      continue;
    }
    owners.set(driveKey(drive), i);
    placements[i] = { bus: 'floppy', drive };
  }
  for (const i of indexes((r) => r.bus === 'floppy' && r.drive === undefined)) {
    const drive = ([0, 1] as const).find((d) => free(driveKey(d)));
    if (drive === undefined) {
      problems.push({
        index: i,
        message: `no free floppy drive: the controller has 2 (0 and 1), used by ${ownerOf(driveKey(0))}, ${ownerOf(driveKey(1))}`,
      });
      continue;
    }
    owners.set(driveKey(drive), i);
    placements[i] = { bus: 'floppy', drive };
  }
  return { placements, problems };
}

/** The qcow2 magic "QFI\xfb" (QEMU docs/interop/qcow2.txt, header bytes 0-3). */
const QCOW2_MAGIC = 0x514649fb;

/**
 * Why `path` cannot be the image of a storage device, or undefined: it must
 * be a readable regular file, writable when the device writes it (`hint`
 * says how not to), and start with the qcow2 magic when `format` is qcow2.
 */
export function diskImageProblem(
  path: string,
  opts: { writable: boolean; format?: 'raw' | 'qcow2'; hint?: string },
): string | undefined {
  const why = unreadable(path);
  if (why !== undefined) return `${path}: ${why}`;
  if (opts.writable) {
    try {
      accessSync(path, fsConstants.W_OK);
    } catch (e) {
      return `${path}: cannot be written (${fileErrorReason(e)})${opts.hint !== undefined ? `; ${opts.hint}` : ''}`;
    }
  }
  if (opts.format === 'qcow2') {
    let head: Buffer;
    try {
      head = readHead(path, 4);
    } catch (e) {
      return `${path}: ${fileErrorReason(e)}`;
    }
    if (head.length < 4 || head.readUInt32BE(0) !== QCOW2_MAGIC) {
      return `${path}: not a qcow2 image (it does not start with "QFI\\xfb"; format: raw?)`;
    }
  }
  return undefined;
}

/** A device's use of an image file: `writes` unless read-only or a snapshot. */
export interface ImageUse {
  path: string;
  writes: boolean;
}

/**
 * Problems of images used by more than one device (`uses[i]` for device i,
 * undefined when it has no image): an image a device writes is used by no
 * other device (a writer locks its image exclusively; two writers would
 * corrupt it, a reader would see it change underneath).
 */
export function imageSharingProblems(
  uses: readonly (ImageUse | undefined)[],
  labels: readonly string[],
): FieldProblem[] {
  const keyOf = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  const keys = uses.map((u) => (u === undefined ? undefined : keyOf(u.path)));
  const out: FieldProblem[] = [];
  uses.forEach((u, j) => {
    if (u === undefined) return;
    const i = uses.findIndex(
      (v, k) => k < j && v !== undefined && keys[k] === keys[j] && (v.writes || u.writes),
    );
    if (i < 0) return;
    out.push({
      index: j,
      field: 'image',
      message:
        `${u.path} is already the image of ${labels[i] ?? `devices[${i}]`}; an image can be shared ` +
        'only when no device writes it (readonly: true or snapshot: true on each)',
    });
  });
  return out;
}

/** How a device appears in messages about other devices: `devices[2] (ata-disk "root")`. */
function deviceLabel(d: VmmDevice, i: number): string {
  return 'name' in d ? `devices[${i}] (${d.class} ${JSON.stringify(d.name)})` : `devices[${i}] (${d.class})`;
}

/**
 * The I/O ports of the storage controllers: the PIIX3 IDE channels (the
 * IDE function is always there, as on QEMU's pc) and, when a floppy drive
 * is configured, the floppy controller (the ISA DMA controller it uses is
 * in PC_FIXED_PORTS).
 */
export function storageControllerPorts(uses: { floppy: boolean }): PortRange[] {
  return [...IDE_PORTS, ...(uses.floppy ? FLOPPY_PORTS : [])];
}

/** isa-debug-exit's defaults, as QEMU's (hw/misc/debugexit.c). */
export const ISA_DEBUG_EXIT_DEFAULTS = { iobase: 0x501, iosize: 2 } as const;

/**
 * The I/O ports of QEMU's pc-testdev (hw/misc/pc-testdev.c): a 32-bit
 * scratch register at 0xe0, the page flush port at 0xe4, the byte-wise
 * scratch register at 0xe8, and one port per ISA IRQ line from 0x2000.
 */
export const PC_TESTDEV_PORTS: readonly PortRange[] = [
  { start: 0xe0, end: 0xec, owner: 'pc-testdev' },
  { start: 0x2000, end: 0x2018, owner: 'pc-testdev' },
];

/** pc-testdev's test memory (64 KiB at 0xff000000, QEMU's IOMEM_LEN). */
export const PC_TESTDEV_MMIO = { start: 0xff00_0000, end: 0xff01_0000 } as const;

/** Multiboot 0.6.96 §3.1.1: the header is 32-bit aligned within the first 8192 bytes of the image. */
const MULTIBOOT_MAGIC = 0x1badb002;
const MULTIBOOT_SEARCH = 8192;

/** Why `path` (a readable file) is not a multiboot kernel that can take modules, or undefined. */
export function multibootProblem(path: string): string | undefined {
  let head: Buffer;
  try {
    head = readHead(path, MULTIBOOT_SEARCH);
  } catch (e) {
    return `${path}: ${fileErrorReason(e)}`;
  }
  for (let off = 0; off + 12 <= head.length; off += 4) {
    if (head.readUInt32LE(off) !== MULTIBOOT_MAGIC) continue;
    // magic + flags + checksum is 0 (mod 2^32).
    if (((MULTIBOOT_MAGIC + head.readUInt32LE(off + 4) + head.readUInt32LE(off + 8)) | 0) === 0)
      return undefined;
  }
  return `modules need a multiboot kernel, and ${path} has no multiboot header (magic 0x1badb002 in its first 8 KiB)`;
}

const IDE_PORTS: readonly PortRange[] = [
  { start: 0x1f0, end: 0x1f8, owner: 'the primary IDE channel' },
  { start: 0x3f6, end: 0x3f7, owner: 'the primary IDE channel' },
  { start: 0x170, end: 0x178, owner: 'the secondary IDE channel' },
  { start: 0x376, end: 0x377, owner: 'the secondary IDE channel' },
];
const FLOPPY_PORTS: readonly PortRange[] = [
  { start: 0x3f0, end: 0x3f6, owner: 'the floppy controller' },
  { start: 0x3f7, end: 0x3f8, owner: 'the floppy controller' },
];

function normalise(config: VmmConfig, configPath: string, problems: RawProblem[]): ResolvedVmmConfig {
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
  const ports: PortRange[] = [
    ...PC_FIXED_PORTS,
    { start: 0x3f8, end: 0x400, owner: 'the COM1 serial port (serial)' },
  ];
  if (debugConsole.kind !== 'none') ports.push({ start: 0x402, end: 0x403, owner: 'debugConsole' });
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
  const image = (
    i: number,
    d: { image: string; format?: 'raw' | 'qcow2'; readonly?: boolean; snapshot?: boolean },
    alwaysReadOnly = false,
  ): ResolvedImage => {
    const readOnly = alwaysReadOnly || (d.readonly ?? false);
    const snapshot = !alwaysReadOnly && (d.snapshot ?? false);
    const out: ResolvedImage = { path: abs(d.image), readOnly, snapshot };
    if (d.format !== undefined) out.format = d.format;
    const why = diskImageProblem(out.path, {
      writable: !readOnly && !snapshot,
      ...(d.format !== undefined ? { format: d.format } : {}),
      hint:
        d.snapshot === undefined && devicesIn[i]?.class !== 'floppy'
          ? 'set readonly: true or snapshot: true to use it unwritten'
          : 'set readonly: true to use it unwritten',
    });
    if (why !== undefined) problems.push(problem(['devices', i, 'image'], why));
    return out;
  };
  const ide = (i: number) => {
    const p = placed.placements[i];
    return p?.bus === 'ide'
      ? { channel: p.channel, unit: p.unit }
      : { channel: 0 as const, unit: 0 as const };
  };

  devicesIn.forEach((d, i) => {
    const path: Segment[] = ['devices', i];
    const label = `${formatPath(path)} (${d.class})`;
    const claim = (start: number, len: number, field = 'port') => {
      const clash = ports.find((r) => start < r.end && r.start < start + len);
      if (clash) {
        const at = Math.max(start, clash.start);
        problems.push(problem([...path, field], `port ${hex(at)} is already used by ${clash.owner}`));
      } else ports.push({ start, end: start + len, owner: label });
    };
    if (d.class === 'serial-port') {
      const dev = d satisfies SerialPortDevice;
      const sink = charSink(dev.serial ?? 'none');
      if (sink.kind === 'stdio') {
        if (stdioUsers.length > 0) {
          problems.push(problem([...path, 'serial'], `stdio is already used by ${stdioUsers[0]}`));
        }
        stdioUsers.push(formatPath([...path, 'serial']));
      }
      claim(dev.port, 8);
      devices.push({
        class: 'serial-port',
        port: dev.port,
        irq: dev.irq ?? (dev.port === 0x3e8 ? 4 : 3),
        serial: sink,
      });
    } else if (d.class === 'debug-console') {
      const dev = d satisfies DebugConsoleDevice;
      claim(dev.port, 1);
      devices.push({ class: 'debug-console', port: dev.port, output: debugSink(dev.output ?? 'stderr') });
    } else if (d.class === 'option-rom') {
      const dev = d satisfies OptionRomDevice;
      const file = abs(dev.file);
      const why = optionRomProblem(file);
      if (why !== undefined) problems.push(problem([...path, 'file'], why));
      devices.push({ class: 'option-rom', name: dev.name, file });
    } else if (d.class === 'virtio-block') {
      const dev = d satisfies VirtioBlockDevice;
      const p = placed.placements[i];
      devices.push({
        class: 'virtio-block',
        name: dev.name,
        image: image(i, dev),
        serial: dev.serial ?? defaultVirtioBlockSerial(dev.name),
        queues: dev.queues ?? 1,
        slot: p?.bus === 'pci' ? p.slot : PCI_DEVICE_SLOTS.first,
      });
    } else if (d.class === 'isa-debug-exit') {
      const dev = d satisfies IsaDebugExitDevice;
      const iobase = dev.iobase ?? ISA_DEBUG_EXIT_DEFAULTS.iobase;
      const iosize = dev.iosize ?? ISA_DEBUG_EXIT_DEFAULTS.iosize;
      if (iobase + iosize > 0x10000) {
        problems.push(
          problem([...path, 'iobase'], `ports ${hex(iobase)}+${iosize} go beyond the last I/O port 0xffff`),
        );
      } else claim(iobase, iosize, 'iobase');
      devices.push({ class: 'isa-debug-exit', iobase, iosize });
    } else if (d.class === 'pc-testdev') {
      for (const r of PC_TESTDEV_PORTS) claim(r.start, r.end - r.start, 'class');
      if (firmware.kind === 'bios') {
        const bios = readableFile(firmware.path);
        const biosStart = bios.problem === undefined ? 2 ** 32 - bios.size : 2 ** 32;
        if (biosStart < PC_TESTDEV_MMIO.end) {
          problems.push(
            problem(
              [...path, 'class'],
              `its test memory ${hex(PC_TESTDEV_MMIO.start)}-${hex(PC_TESTDEV_MMIO.end - 1)} overlaps the ` +
                `BIOS image mapped from ${hex(biosStart)} (use a BIOS image of at most ${formatSize(2 ** 32 - PC_TESTDEV_MMIO.end)})`,
            ),
          );
        }
      }
      devices.push({ class: 'pc-testdev' });
    } else if (d.class === 'pci-testdev') {
      d satisfies PciTestdevDevice;
      const p = placed.placements[i];
      devices.push({ class: 'pci-testdev', slot: p?.bus === 'pci' ? p.slot : PCI_DEVICE_SLOTS.first });
    } else if (d.class === 'ata-disk') {
      const dev = d satisfies AtaDiskDevice;
      devices.push({ class: 'ata-disk', name: dev.name, image: image(i, dev), ...ide(i) });
    } else if (d.class === 'ata-cdrom') {
      const dev = d satisfies AtaCdromDevice;
      const image_ = dev.image !== undefined ? { image: image(i, { ...dev, image: dev.image }, true) } : {};
      devices.push({ class: 'ata-cdrom', name: dev.name, ...image_, ...ide(i) });
    } else {
      const dev = d satisfies FloppyDevice;
      const p = placed.placements[i];
      const image_ = dev.image !== undefined ? { image: image(i, { ...dev, image: dev.image }) } : {};
      devices.push({ class: 'floppy', name: dev.name, ...image_, drive: p?.bus === 'floppy' ? p.drive : 0 });
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
