/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/output/restore.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * What `mvctl restore VM FILE --json` prints: the VM started from the snapshot (or, when it was running, taken back to it in place) and running. Versioned like the other outputs.
 */
export interface RestoreOutput {
  version: 1;
  /**
   * The VirtualMachine's name.
   */
  vm: string;
  /**
   * The snapshot file it was restored from, absolute.
   */
  file: string;
  /**
   * The VMM process now running the VM.
   */
  pid: number;
  /**
   * The VM was running and went back to the snapshot in its own VMM process.
   */
  inPlace: boolean;
  /**
   * inPlace: how long the VM was paused, in ms.
   */
  pausedMs?: number;
}
