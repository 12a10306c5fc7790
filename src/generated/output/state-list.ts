/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/output/state-list.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * What `mvctl state list --json` prints: the resources recorded in the state file, without a refresh. Versioned like the other outputs.
 */
export interface StateListOutput {
  version: 1;
  resources: {
    kind: 'VirtualMachine' | 'Disk' | 'Network' | 'VfioAssignment' | 'Host';
    name: string;
    status: 'creating' | 'running' | 'stopped' | 'ready' | 'failed' | 'deleting';
  }[];
}
