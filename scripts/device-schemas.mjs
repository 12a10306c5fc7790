/**
 * The device part of schema/vmm-config.schema.json, from the device
 * descriptors (src/vmm/board/registry.ts): each descriptor's
 * `schema.definition` under its `schema.name`, and the two unions that list
 * them, `Device` (what a VirtualMachine manifest may have) and `VmmDevice`
 * (`Device` and the classes only a VMM config may have). Used by
 * scripts/gen-types.mjs, so that a new device is one file plus one registry
 * line, then `npm run gen:types`.
 *
 * The descriptors are TypeScript: esbuild bundles the registry (no type
 * check; tsc does that) into one ES module under node_modules/.cache, which
 * is then imported. Its modules only define things at load: nothing runs.
 */
import { build } from 'esbuild';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';
import { pathToFileURL } from 'node:url';

/** The registry's descriptors' schemas, in registry order: {class, name, manifest, definition}. */
export async function deviceSchemas(repoRoot) {
  const dir = join(repoRoot, 'node_modules', '.cache', 'mvisor-gen');
  mkdirSync(dir, { recursive: true });
  const outfile = join(dir, `device-registry-${process.pid}-${Date.now()}.mjs`);
  await build({
    entryPoints: [join(repoRoot, 'src/vmm/board/registry.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    external: ['*.node'],
    logLevel: 'error',
  });
  const { DEVICE_REGISTRY } = await import(pathToFileURL(outfile).href);
  const { rm } = await import('node:fs/promises');
  await rm(outfile, { force: true });
  return Object.entries(DEVICE_REGISTRY).map(([cls, d]) => {
    const definition = d.schema.definition;
    if (d.class !== cls || definition?.properties?.class?.const !== cls) {
      throw new Error(`device registry: ${cls}: its descriptor's class and schema class must both be ${cls}`);
    }
    return { class: cls, name: d.schema.name, manifest: d.schema.manifest, definition };
  });
}

const ref = (name) => ({ $ref: `#/definitions/${name}` });

/**
 * `schema` with its device definitions replaced by `devices`' (the old ones
 * are those its `Device` and `VmmDevice` unions list); they go at the end, in
 * registry order.
 */
export function withDeviceSchemas(schema, devices) {
  const defs = schema.definitions ?? {};
  const old = new Set(['Device', 'VmmDevice']);
  for (const u of ['Device', 'VmmDevice'])
    for (const b of defs[u]?.oneOf ?? []) old.add(String(b.$ref).replace('#/definitions/', ''));
  const kept = Object.fromEntries(Object.entries(defs).filter(([name]) => !old.has(name)));
  const manifest = devices.filter((d) => d.manifest);
  const vmmOnly = devices.filter((d) => !d.manifest);
  const list = (ds) => ds.map((d) => d.class).join(', ');
  return {
    ...schema,
    definitions: {
      ...kept,
      VmmDevice: {
        $comment:
          'Written by scripts/gen-types.mjs (npm run gen:types) from the device descriptors, like the definitions that follow: edit those in the device files.',
        description: `A device of the VMM config, chosen by its class: a Device, or one that only a VMM config can have (${list(vmmOnly)}).`,
        oneOf: [ref('Device'), ...vmmOnly.map((d) => ref(d.name))],
      },
      Device: {
        description: `An extra device, chosen by its class: ${list(manifest)}.`,
        oneOf: manifest.map((d) => ref(d.name)),
      },
      ...Object.fromEntries(devices.map((d) => [d.name, d.definition])),
    },
  };
}
