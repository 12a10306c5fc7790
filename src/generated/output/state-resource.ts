/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/output/state-resource.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * What `mvctl state show KIND/NAME` prints: one resource as the state file records it. Versioned like the other outputs.
 */
export interface StateResourceOutput {
  version: 1;
  kind: 'VirtualMachine' | 'Disk' | 'Network' | 'VfioAssignment' | 'Host';
  name: string;
  /**
   * The normalised spec that was applied (the manifest's spec with defaults, sizes in bytes, absolute paths).
   */
  spec: {};
  specHash: string;
  dependsOn: {
    kind: 'VirtualMachine' | 'Disk' | 'Network' | 'VfioAssignment' | 'Host';
    name: string;
  }[];
  status: 'creating' | 'running' | 'stopped' | 'ready' | 'failed' | 'deleting';
  pid: number | null;
  controlSocket: string | null;
  host: string | null;
  vmmConfigPath: string | null;
  logPath: string | null;
  error: string | null;
  /**
   * Files mvctl created for it: the only ones destroy and replace delete unless deletePolicy says otherwise.
   */
  ownedFiles: string[];
  /**
   * A VM stopped by `mvctl snapshot --stop`: the snapshot file its state is in (`mvctl restore` goes on from it); null otherwise. Absent in the output of mvctl before snapshots.
   */
  savedSnapshot?: string | null;
  /**
   * A VirtualMachine's snapshots taken by `mvctl snapshot`, oldest first (absent for other kinds).
   */
  snapshots?: {
    file: string;
    takenAt: string;
    bytes: number;
    ramDataBytes: number;
    pausedMs: number;
    /**
     * The VM was stopped after it (--stop).
     */
    stoppedVm: boolean;
    /**
     * When `mvctl restore` last started the VM from it.
     */
    restoredAt: string | null;
  }[];
  /**
   * ISO 8601, UTC.
   */
  createdAt: string;
  /**
   * ISO 8601, UTC.
   */
  updatedAt: string;
}
