/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/output/show.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * What `mvctl show --json` prints: every managed resource as refreshed against the host. `version` changes when a field changes meaning or goes away; new fields may appear within a version.
 */
export interface ShowOutput {
  version: 1;
  resources: {
    /**
     * KIND/NAME
     */
    resource: string;
    status: 'creating' | 'running' | 'stopped' | 'ready' | 'failed' | 'deleting';
    /**
     * The VMM process of a running VM.
     */
    pid: number | null;
    /**
     * What changed outside mvctl, one sentence each.
     */
    drift: string[];
    /**
     * The VMM's log file.
     */
    log: string | null;
    /**
     * The whole reason of the last failure (status failed).
     */
    error: string | null;
  }[];
}
