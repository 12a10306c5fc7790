/**
 * `mvctl import Disk/NAME PATH`: adopts an existing image file as the Disk
 * its manifest declares, after checking that the file is what the manifest
 * says (its path, format and virtual size). The record owns no file, so
 * destroy and replace keep the image unless the manifest says
 * `deletePolicy: delete`. Afterwards a plan with the same manifest is empty.
 */
import { resolve } from 'node:path';
import { detectFormat, openImage } from '../../vmm/block/open.js';
import type { NormalizedDiskSpec } from '../manifest/types.js';
import type { StateStore } from '../state/store.js';
import { resourceKey, type DesiredResource, type ResourceId } from '../types.js';
import { ApplyError } from './apply.js';
import { diskPath } from './preflight.js';

/** The file does not match the manifest, or cannot be imported (mvctl prints it as it does an apply error). */
export class ImportError extends ApplyError {}

/** Checks `file` against the Disk's manifest and records it; returns a line for the user. */
export async function importDisk(
  store: StateStore,
  id: ResourceId,
  file: string,
  desired: readonly DesiredResource[],
  stateDir: string,
): Promise<string> {
  const key = resourceKey(id);
  const want = desired.find((d) => d.kind === id.kind && d.name === id.name);
  if (!want)
    throw new ImportError(`${key} is not in the manifests: write its manifest first, then import it`);
  if (store.get(id)) throw new ImportError(`${key} is already in state: nothing to import`);
  const spec = want.spec as NormalizedDiskSpec;
  const path = resolve(file);
  const expected = diskPath(stateDir, id.name, spec);
  const where = `${want.source.file}:${want.source.line}:${want.source.col}`;
  if (path !== expected)
    throw new ImportError(
      `${where}: ${key}: the manifest puts the disk at ${expected}, not ${path}: set spec.path to the file to import`,
    );
  let format: 'raw' | 'qcow2';
  let size: number;
  try {
    format = await detectFormat(path);
    const img = await openImage(path, { readOnly: true, format });
    size = img.size;
    await img.close();
  } catch (e) {
    throw new ImportError(`${key}: cannot import ${path}: ${(e as Error).message}`);
  }
  if (format !== spec.format)
    throw new ImportError(
      `${where}: ${key}: ${path} is a ${format} image, the manifest says format: ${spec.format}`,
    );
  if (size !== spec.size)
    throw new ImportError(
      `${where}: ${key}: ${path} is ${size} bytes (virtual size), the manifest says size: ${spec.size} bytes`,
    );
  store.transaction(() => {
    store.put({
      kind: id.kind,
      name: id.name,
      spec: { ...spec, path },
      dependsOn: want.dependsOn,
      status: 'ready',
      ownedFiles: [],
    });
    store.recordEvent({ command: 'mvctl import', id, action: 'import', outcome: 'succeeded', detail: path });
  });
  return `${key}: imported ${path} (${format}, ${size} bytes); mvctl did not create it, so destroy keeps it`;
}
