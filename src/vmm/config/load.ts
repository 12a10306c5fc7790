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
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import { firstLine, formatPath, locateNode, type RawProblem } from '../../common/yaml-schema-errors.js';
import { ConfigError, type ConfigProblem } from './errors.js';
import { rootValidator, vmmExplainer as explainer } from '../../platform/vmm-schema.js';
import type { ResolvedCharSink, ResolvedVmmConfig } from './types.js';
import { fileErrorReason, resolvePath } from './files.js';
import { normalise } from './normalise.js';

// What the loader's users import from here (the VMM, its CLI and tests).
export { ConfigError, formatProblem, type ConfigProblem } from './errors.js';
export { SIZE_PATTERN, formatSize, parseSize } from '../../platform/size.js';
export { defaultVmUuid, normaliseUuid, uuidV5 } from '../../platform/uuid.js';
export { parseCpuSpec } from '../../platform/cpu-spec.js';
export {
  VMM_CONFIG_DEFAULTS,
  VMM_VALIDATORS,
  vmmPatternMessage,
  vmmValidationSchema,
} from '../../platform/vmm-schema.js';
export * from '../../platform/rules.js';
export * from '../../platform/placement.js';
export {
  ISA_DEBUG_EXIT_DEFAULTS,
  PCI_DEVICE_SLOTS,
  PC_TESTDEV_MMIO,
  PC_TESTDEV_PORTS,
  storageControllerPorts,
} from '../../platform/pc-map.js';
export {
  BIOS_SIZE,
  DEFAULT_BIOS_PATH,
  OPTION_ROM_SIZE,
  biosImageProblem,
  diskImageProblem,
  multibootProblem,
  optionRomProblem,
} from './files.js';
export type * from './types.js';
export type { VmmConfig } from '../../generated/vmm-config.js';

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
