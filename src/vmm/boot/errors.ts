/**
 * Errors of the direct kernel boot path. A BootError always carries a
 * one-line message that names the file it is about (kernel or initrd path),
 * so the user sees what to fix without a stack trace.
 */
export class BootError extends Error {
  override readonly name = 'BootError';
}

/** `0x1f000`: how boot messages print guest-physical addresses and sizes. */
export { hex } from '../core/bus.js';
