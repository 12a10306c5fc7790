/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/output/snapshot.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * What `mvctl snapshot VM FILE --json` prints: the snapshot the VMM wrote, as the state records it. Versioned like the other outputs.
 */
export interface SnapshotOutput {
  version: 1;
  /**
   * The VirtualMachine's name.
   */
  vm: string;
  /**
   * The snapshot file, absolute.
   */
  file: string;
  /**
   * The file's apparent size: guest RAM's zero pages are holes in it.
   */
  bytes: number;
  /**
   * What the file takes on disk (its allocated blocks).
   */
  diskBytes: number;
  /**
   * Guest RAM stored as data.
   */
  ramDataBytes: number;
  /**
   * How long the guest was paused.
   */
  pausedMs: number;
  /**
   * Block requests in flight as the pause began, all completed before the state was taken.
   */
  drainedRequests: number;
  /**
   * The VM was stopped after the snapshot (--stop); `mvctl restore` goes on from the file.
   */
  stopped: boolean;
  /**
   * ISO 8601, UTC.
   */
  takenAt: string;
}
