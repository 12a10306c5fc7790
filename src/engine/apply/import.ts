/**
 * `mvctl import KIND/NAME ID`: adopts what exists as the resource its
 * manifest declares, after checking that it is what the manifest says.
 *
 * - `Disk/NAME PATH`: an image file (its path, format and virtual size).
 *   The record owns no file, so destroy and replace keep the image unless
 *   the manifest says `deletePolicy: delete`.
 * - `VirtualMachine/NAME SOCKET`: a running mvisor VMM, by its control
 *   socket (`mvisor -c vm.yaml --control SOCKET`): its name, vCPUs, memory
 *   and SMBIOS UUID must be the manifest's. It is managed from then on
 *   (stopped through that socket by a replace or destroy).
 *
 * Afterwards a plan with the same manifest is empty.
 */
import { resolve } from 'node:path';
import { detectFormat, openImage } from '../../block/open.js';
import type { NormalizedDiskSpec, NormalizedVirtualMachineSpec } from '../manifest/types.js';
import type { StateStore } from '../state/store.js';
import { resourceKey, type DesiredResource, type ResourceId } from '../types.js';
import { ApplyError, diskImageInState } from './apply.js';
import { ControlError, controlRequest } from './control-client.js';
import type { ControlResponse } from '../../platform/control-protocol.js';
import { diskPath } from './preflight.js';
import { isVmmProcess } from './vm-process.js';

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
  const want = importable(store, id, desired);
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

/** The manifest of `id`, which must not be in state yet. */
function importable(store: StateStore, id: ResourceId, desired: readonly DesiredResource[]): DesiredResource {
  const key = resourceKey(id);
  const want = desired.find((d) => d.kind === id.kind && d.name === id.name);
  if (!want)
    throw new ImportError(`${key} is not in the manifests: write its manifest first, then import it`);
  if (store.get(id)) throw new ImportError(`${key} is already in state: nothing to import`);
  return want;
}

/** Checks the VMM at `socket` against the VM's manifest and records it as running; returns a line for the user. */
export async function importVm(
  store: StateStore,
  id: ResourceId,
  socket: string,
  desired: readonly DesiredResource[],
): Promise<string> {
  const key = resourceKey(id);
  const want = importable(store, id, desired);
  const spec = want.spec as NormalizedVirtualMachineSpec;
  const where = `${want.source.file}:${want.source.line}:${want.source.col}`;
  const path = resolve(socket);
  let answer: ControlResponse<'status'>;
  try {
    answer = await controlRequest(path, 'status');
  } catch (e) {
    const why = e instanceof ControlError ? e.message : String(e);
    throw new ImportError(`${key}: cannot import: no mvisor VMM answers on its control socket (${why})`);
  }
  if (!answer.ok)
    throw new ImportError(
      `${key}: ${path} did not answer a status (${answer.error}): not an mvisor control socket`,
    );
  const status = answer;
  const pid = status.pid;
  if (!isVmmProcess(pid))
    throw new ImportError(`${key}: process ${pid} behind ${path} is not an mvisor VMM with a control socket`);
  if (status.state !== 'running')
    throw new ImportError(`${key}: the VMM at ${path} is ${status.state}, not running: import a running VM`);
  const differences = [
    ['name', status.name, id.name, 'metadata.name'],
    ['vCPUs', status.vcpus, spec.vcpus, 'spec.vcpus'],
    ['memory (bytes)', status.memory, spec.memory, 'spec.memory'],
    ['SMBIOS UUID', status.uuid, spec.uuid, 'spec.uuid'],
  ].filter(([, have, wantValue]) => have !== wantValue);
  if (differences.length > 0)
    throw new ImportError(
      differences
        .map(
          ([what, have, wantValue, field]) =>
            `${where}: ${key}: the VMM at ${path} runs ${String(what)} ${JSON.stringify(have)}, ` +
            `the manifest says ${String(field)}: ${JSON.stringify(wantValue)}`,
        )
        .join('\n'),
    );
  if (!spec.running)
    throw new ImportError(`${where}: ${key}: the VM runs, but the manifest says running: false`);
  // Its images: each attached Disk's file (as recorded in state) and each storage device's.
  const diskImage = diskImageInState(store);
  const expected: string[] = [];
  for (const a of spec.disks) {
    const image = diskImage(a.disk);
    if (!image)
      throw new ImportError(
        `${where}: ${key}: Disk/${a.disk} (spec.disks) is not in state: apply or import it first`,
      );
    expected.push(`${a.disk}=${image.path}`);
  }
  for (const d of spec.devices)
    if ('image' in d && d.image !== undefined) expected.push(`${d.name}=${d.image}`);
  const running = status.images.map((i) => `${i.device}=${i.path}`);
  const fmt = (list: string[]) => (list.length ? [...list].sort().join(', ') : 'none');
  if (fmt(running) !== fmt(expected))
    throw new ImportError(
      `${where}: ${key}: the VMM at ${path} runs the images ${fmt(running)}; the manifest gives ${fmt(expected)}`,
    );
  if (spec.host !== 'local')
    throw new ImportError(
      `${where}: ${key}: the VMM runs on this machine, the manifest says host: ${spec.host}`,
    );
  store.transaction(() => {
    store.put({
      kind: id.kind,
      name: id.name,
      spec: want.spec,
      dependsOn: want.dependsOn,
      status: 'running',
      pid,
      controlSocket: path,
      host: spec.host,
      ownedFiles: [],
    });
    store.recordEvent({ command: 'mvctl import', id, action: 'import', outcome: 'succeeded', detail: path });
  });
  return `${key}: imported the running VMM (pid ${pid}, control socket ${path}); mvctl manages it from now on`;
}
