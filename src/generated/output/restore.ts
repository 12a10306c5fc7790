/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/output/restore.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * What `mvctl restore VM FILE --json` prints: the VM started from the snapshot and running. Versioned like the other outputs.
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
}
