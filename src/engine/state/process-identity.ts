/**
 * Whether a process recorded earlier (a lock holder) is provably gone on
 * this machine: same boot (Linux's boot id), and no process with its PID
 * and its start time (a PID reused by another process is not the holder).
 * Read from /proc; where that is unreadable, nothing is provable.
 */
import { readFileSync } from 'node:fs';

/** This boot's id (`/proc/sys/kernel/random/boot_id`), or undefined. */
export function currentBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * A process's start time in clock ticks since boot (`/proc/PID/stat`, field
 * 22), as a string; undefined when there is no such process.
 */
export function processStartTime(pid: number): string | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself hold spaces and ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): field 22 is fields[19]. A zombie has exited.
  if (fields[0] === 'Z') return undefined;
  return fields[19];
}
