/**
 * CPU specs of a VM config (`host`, `baseline,-cx16,+xsaveerptr`): parsed
 * here, with no KVM, for the VMM config loader and the manifest normaliser.
 */
import type { CpuModel, ResolvedCpu } from '../vmm/config/types.js';

/**
 * Parses a CPU spec `<model>[,+feature|-feature...]` such as
 * `baseline,-cx16,+xsaveerptr`. Throws an Error with a one-line message.
 */
export function parseCpuSpec(spec: string): ResolvedCpu {
  const [model = '', ...items] = spec.split(',');
  return { model: cpuModel(model), features: cpuFeatures(items) };
}

const CPU_MODELS: readonly CpuModel[] = ['host', 'baseline'];
const FEATURE_RE = /^[+-][a-z0-9][a-z0-9_.-]*$/;

function cpuModel(model: string): CpuModel {
  const m = CPU_MODELS.find((k) => k === model);
  if (!m) throw new Error(`unknown CPU model ${JSON.stringify(model)} (known: ${CPU_MODELS.join(', ')})`);
  return m;
}

export function cpuFeatures(items: readonly string[]): Record<string, boolean> {
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
