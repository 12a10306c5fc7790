/**
 * Which disk a snapshot was taken over. Guest RAM restored over a disk that
 * changed since (written by another VM, restored from a backup, replaced)
 * corrupts the guest's filesystems, so a snapshot records each image's
 * identity and a restore refuses an image whose identity differs:
 * its size, its modification time (any write changes it) and a SHA-256 of
 * its first and last MiB (a qcow2 header and tables, a raw image's
 * partition table and backup GPT), which catches a file replaced by a copy.
 * Taken from the file on disk, after the VMM flushed (or closed) it, and
 * checked before the restoring VMM opens it.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { lazyCrypto } from '../../common/builtins.js';
import { readAll } from './ram-file.js';

const EDGE = 1 << 20;

export interface DiskIdentity {
  /** The device's name in the config. */
  device: string;
  path: string;
  size: number;
  mtimeMs: number;
  /** SHA-256 of the first and last MiB, hex. */
  edges: string;
}

/** The identity of the image file at `path` of `device`. */
export function diskIdentity(device: string, path: string): DiskIdentity {
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    const hash = lazyCrypto().createHash('sha256');
    const head = Buffer.alloc(Math.min(EDGE, st.size));
    readAll(fd, head, 0, path);
    hash.update(head);
    if (st.size > EDGE) {
      const tail = Buffer.alloc(Math.min(EDGE, st.size - EDGE));
      readAll(fd, tail, st.size - tail.length, path);
      hash.update(tail);
    }
    return { device, path, size: st.size, mtimeMs: st.mtimeMs, edges: hash.digest('hex') };
  } finally {
    closeSync(fd);
  }
}

/** Why each image no longer is the one of the snapshot (empty: all are). */
export function diskChanges(saved: readonly DiskIdentity[]): string[] {
  return saved.flatMap((d) => {
    let now: DiskIdentity;
    try {
      now = diskIdentity(d.device, d.path);
    } catch (e) {
      return [`disk ${d.device} (${d.path}): ${(e as Error).message}`];
    }
    const what =
      now.size !== d.size
        ? `its size is ${now.size} bytes, ${d.size} at the snapshot`
        : now.edges !== d.edges
          ? 'its content differs from the snapshot'
          : now.mtimeMs !== d.mtimeMs
            ? `it was modified at ${new Date(now.mtimeMs).toISOString()}, after the snapshot`
            : undefined;
    return what === undefined ? [] : [`disk ${d.device} (${d.path}) changed since the snapshot: ${what}`];
  });
}
