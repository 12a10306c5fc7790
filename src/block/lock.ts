/**
 * Image locking, so that two VMs (or a VM and `mvctl` resizing a disk)
 * never write one image: a writer holds an exclusive lock, a reader
 * (read-only disks, backing files, the image under a `snapshot: yes`
 * overlay) a shared one. As in QEMU, the lock belongs to the open file: it
 * goes away when the file is closed or the process dies, so there are no
 * stale locks to clean up after a crash (a `<image>.lock` sidecar file, or
 * `proper-lockfile`'s lock directories, would need a staleness guess).
 *
 * The lock is flock(2) on the image's own descriptor. Node has no flock, so:
 *  1. if the native addon exports `flock(fd, operation)` (LOCK_SH/LOCK_EX
 *     ORed with LOCK_NB, throwing an Error with code EWOULDBLOCK/EAGAIN on
 *     conflict), that is used;
 *  2. otherwise util-linux's flock(1) (in every Debian install) is run with
 *     the image's descriptor inherited as its fd 3. flock(2) locks belong to
 *     the open file description, which the child shares with us, so the lock
 *     stays held after the child exits, for as long as our descriptor is
 *     open. It costs one short child process per image open.
 *
 * Limitation: QEMU locks images with fcntl OFD byte-range locks, which do
 * not conflict with flock(2) on local file systems, so this keeps mvisor
 * processes apart but not mvisor and a QEMU using the same image.
 */
import { lazyChildProcess } from '../common/builtins.js';
import type { FileHandle } from 'node:fs/promises';
import { BlockError } from './image.js';

export type LockMode = 'shared' | 'exclusive';

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;

/** Exit code we ask flock(1) to use when the lock is held elsewhere. */
const CONFLICT_EXIT = 75;

type NativeFlock = (fd: number, operation: number) => void;

let nativeFlock: NativeFlock | null | undefined;

async function findNativeFlock(): Promise<NativeFlock | null> {
  if (nativeFlock !== undefined) return nativeFlock;
  try {
    const { loadAddon } = await import('../vmm/kvm/addon.js');
    const addon = loadAddon() as unknown as { flock?: unknown };
    nativeFlock = typeof addon.flock === 'function' ? (addon.flock as NativeFlock).bind(addon) : null;
  } catch {
    nativeFlock = null; // addon not built (unit tests, mvctl on a machine without a compiler)
  }
  return nativeFlock;
}

function lockedError(path: string, mode: LockMode): BlockError {
  const what = mode === 'exclusive' ? 'for writing' : 'for reading';
  return new BlockError(
    `cannot lock ${path} ${what}: it is in use by another process (a running VM?)`,
    'EINVAL',
  );
}

/**
 * Takes a non-blocking flock(2) lock on the image's descriptor; throws a
 * BlockError naming the image if another open file holds a conflicting one.
 * The lock is released when `fh` is closed.
 */
export async function lockImage(fh: FileHandle, path: string, mode: LockMode): Promise<void> {
  const native = await findNativeFlock();
  if (native) {
    try {
      native(fh.fd, (mode === 'exclusive' ? LOCK_EX : LOCK_SH) | LOCK_NB);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EWOULDBLOCK' || code === 'EAGAIN') throw lockedError(path, mode);
      throw new BlockError(`cannot lock ${path}: ${(err as Error).message}`, 'EIO');
    }
  }
  await flockCommand(fh.fd, path, mode);
}

function flockCommand(fd: number, path: string, mode: LockMode): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = [
      mode === 'exclusive' ? '--exclusive' : '--shared',
      '--nonblock',
      '--conflict-exit-code',
      String(CONFLICT_EXIT),
      '3',
    ];
    const child = lazyChildProcess().spawn('flock', args, { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => (stderr += s));
    child.on('error', (err) =>
      reject(new BlockError(`cannot lock ${path}: running flock(1) (util-linux): ${err.message}`, 'EIO')),
    );
    child.on('close', (code) => {
      if (code === 0) resolve();
      else if (code === CONFLICT_EXIT) reject(lockedError(path, mode));
      else reject(new BlockError(`cannot lock ${path}: flock(1) exited ${code}: ${stderr.trim()}`, 'EIO'));
    });
  });
}
