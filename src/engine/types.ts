/**
 * Types shared by the engine's parts (manifests, state, planner, apply).
 * The engine never touches KVM: it reads manifests, keeps state in SQLite,
 * plans, and drives VMM child processes through their control sockets.
 */

export const API_VERSION = 'mvisor.dev/v1alpha1';

export type Kind = 'VirtualMachine' | 'Disk' | 'Network' | 'VfioAssignment' | 'Host';
export const KINDS: readonly Kind[] = ['Host', 'Network', 'Disk', 'VfioAssignment', 'VirtualMachine'];

export interface ResourceId {
  kind: Kind;
  name: string;
}

/** "VirtualMachine/web" */
function kindRank(kind: Kind): number {
  return KINDS.indexOf(kind);
}

/** Orders resources by kind (in `KINDS` order), then by name. */
export function compareIds(a: ResourceId, b: ResourceId): number {
  return kindRank(a.kind) - kindRank(b.kind) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

export function resourceKey(id: ResourceId): string {
  return `${id.kind}/${id.name}`;
}

export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

/** One resource as declared in a manifest, validated and normalised (defaults filled). */
export interface DesiredResource extends ResourceId {
  apiVersion: string;
  labels: Record<string, string>;
  /** Normalised spec: plain JSON, defaults filled, sizes in bytes, paths absolute. */
  spec: Record<string, unknown>;
  source: SourcePos;
  /** Resources this one refers to (a VM's disks, networks, host...). */
  dependsOn: ResourceId[];
}

/** How a change to a spec field is carried out (declared per field in the JSON Schemas). */
export type UpdatePolicy = 'in-place' | 'replace';

/** Returns the policy for a changed field path of a kind (e.g. ['memory']). */
export type UpdatePolicyFn = (kind: Kind, path: readonly (string | number)[]) => UpdatePolicy;
