/**
 * `mvctl validate`: the files loaded manifests name, checked without
 * touching state: kernels, initrds, BIOS images, fw_cfg files and option
 * ROMs must be readable files; images of storage devices and a Disk's
 * backing file must open as images, their whole backing chain included.
 * Each problem names the manifest's file, line and field.
 */
import { constants, accessSync, statSync } from 'node:fs';
import { openImage } from '../../block/open.js';
import type { DesiredResource } from '../types.js';
import type { ManifestProblem } from './errors.js';
import { resourceProblem } from './load.js';
import type { NormalizedDiskSpec, NormalizedVirtualMachineSpec } from './types.js';

type Path = (string | number)[];

function readableFile(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return `${path}: not a file`;
    accessSync(path, constants.R_OK);
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return `${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'not readable' : (e as Error).message}`;
  }
}

async function openableImage(path: string, format: 'raw' | 'qcow2' | undefined): Promise<string | undefined> {
  const missing = readableFile(path);
  if (missing !== undefined) return missing;
  try {
    const img = await openImage(path, { readOnly: true, ...(format ? { format } : {}) });
    await img.close();
    return undefined;
  } catch (e) {
    const message = (e as Error).message;
    // A running VM holding the image is not a problem of the manifest.
    return /in use by another process/.test(message) ? undefined : message;
  }
}

/** Every problem with the files `desired` names; [] when they are all there. */
export async function checkNamedFiles(desired: readonly DesiredResource[]): Promise<ManifestProblem[]> {
  const problems: ManifestProblem[] = [];
  for (const r of desired) {
    const files: [Path, string][] = [];
    const images: [Path, string, 'raw' | 'qcow2' | undefined][] = [];
    if (r.kind === 'VirtualMachine') {
      const spec = r.spec as NormalizedVirtualMachineSpec;
      const fw = spec.firmware;
      if (typeof fw === 'object' && 'kernel' in fw) {
        files.push([['firmware', 'kernel'], fw.kernel]);
        if (fw.initrd !== undefined) files.push([['firmware', 'initrd'], fw.initrd]);
      } else if (typeof fw === 'object') files.push([['firmware', 'bios', 'image'], fw.bios.image]);
      spec.fwCfg.forEach((item, i) => {
        if ('file' in item) files.push([['fwCfg', i, 'file'], item.file]);
      });
      spec.devices.forEach((d, i) => {
        if (d.class === 'option-rom') files.push([['devices', i, 'file'], d.file]);
        else if ('image' in d && d.image !== undefined)
          images.push([['devices', i, 'image'], d.image, d.format]);
      });
    } else if (r.kind === 'Disk') {
      const spec = r.spec as NormalizedDiskSpec;
      if (spec.backingFile !== undefined) images.push([['backingFile'], spec.backingFile, undefined]);
    }
    for (const [path, file] of files) {
      const why = readableFile(file);
      if (why !== undefined) problems.push(resourceProblem(r, path, why));
    }
    for (const [path, file, format] of images) {
      const why = await openableImage(file, format);
      if (why !== undefined) problems.push(resourceProblem(r, path, why));
    }
  }
  return problems;
}
