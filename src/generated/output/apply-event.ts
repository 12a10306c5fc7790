/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/output/apply-event.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * One line of `mvctl apply --json` or `mvctl destroy --json`: the plan first, then a line per step as it starts and ends, then the summary. Within version 1 new fields may appear.
 */
export type ApplyEvent =
  | {
      type: 'plan';
      plan: PlanOutput;
    }
  | {
      type: 'step-start' | 'step-done' | 'step-failed' | 'step-skipped';
      resource: string;
      op: 'create' | 'delete' | 'update' | 'start' | 'stop';
      ms?: number;
      detail?: string;
      error?: string;
      reason?: string;
    }
  | {
      type: 'summary';
      ok: boolean;
      added: number;
      changed: number;
      destroyed: number;
      steps: number;
      done: number;
      failed: number;
      skipped: number;
      message: string;
      errors: {
        resource: string;
        op: string;
        error: string;
      }[];
    };

/**
 * What `mvctl plan --json` prints, and the `plan` of `mvctl apply --json`'s first line. `version` changes when a field changes meaning or goes away; new fields may appear within a version.
 */
export interface PlanOutput {
  version: 1;
  createdFrom: {
    lineage: string | null;
    stateSerial: number | null;
    actualHash: string;
    desiredHash: string;
  };
  actions: {
    id: ResourceId;
    key: string;
    action: 'create' | 'update' | 'replace' | 'delete' | 'noop' | 'start' | 'stop';
    before?: {};
    after?: {};
    changes: {
      path: (string | number)[];
      before?: unknown;
      after?: unknown;
      policy: 'in-place' | 'replace';
    }[];
    reason: string;
  }[];
  steps: {
    key: string;
    id: ResourceId;
    op: 'create' | 'delete' | 'update' | 'start' | 'stop';
    after: string[];
  }[];
  drift: {
    id: ResourceId;
    what: 'vm-process-gone' | 'disk-file-missing' | 'disk-resized';
    detail: string;
  }[];
  summary: {
    create: number;
    update: number;
    replace: number;
    delete: number;
    start: number;
    stop: number;
    noop: number;
  };
  hasChanges: boolean;
  hasDestroy: boolean;
  hasDrift: boolean;
  /**
   * Present when the plan covers only these resources (KIND/NAME) and what they depend on (`--target`).
   */
  targets?: string[];
}
export interface ResourceId {
  kind: 'Host' | 'Network' | 'Disk' | 'VfioAssignment' | 'VirtualMachine';
  name: string;
}
