/**
 * Explains validation errors of manifests (`field.path: message`) with the
 * explainer the VMM config loader uses too (src/common/yaml-schema-errors.ts),
 * across the several manifest schemas (references are schema URIs, see
 * ./schemas.ts). Also checks the ranges of size strings, which the schemas
 * cannot express.
 */
import { createSchemaErrorExplainer } from '../../common/yaml-schema-errors.js';
import { SIZE_PATTERN, formatSize, parseSize } from '../../platform/size.js';
import { parseCpuSpec } from '../../platform/cpu-spec.js';
import { vmmPatternMessage } from '../../platform/vmm-schema.js';
import { childUri, deref, schemaAt, specField, validatorAt } from './schemas.js';

const CPU_PATTERN = specField('VirtualMachine', 'cpu').pattern;

const explainer = createSchemaErrorExplainer(
  { schemaAt, deref, child: childUri, validatorAt },
  {
    sizes: { pattern: SIZE_PATTERN, parse: parseSize, format: formatSize, example: '10G' },
    patternMessage: (pattern, data) => {
      if (pattern === CPU_PATTERN && typeof data === 'string') {
        try {
          parseCpuSpec(data);
        } catch (err) {
          return err instanceof Error ? err.message : String(err);
        }
      }
      // Device names, UUIDs, fw_cfg names: the shapes VirtualMachine shares with the VMM config.
      return vmmPatternMessage(pattern, data);
    },
  },
);

/** Problems of `data` (found at `base`) against the schema at a URI; [] if it is valid. */
export const explain = explainer.explain;

/** Parses a size and checks it against a size schema's minimum, maximum and multipleOf. */
export const sizeCheck = explainer.sizeCheck;

/** Range checks of the size strings in `data` (see `SchemaErrorExplainer.checkSizeStrings`). */
export const checkSizeStrings = explainer.checkSizeStrings;
