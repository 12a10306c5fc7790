/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/manifests/common.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * Version of the manifest format.
 */
export type ApiVersion = 'mvisor.dev/v1alpha1';
/**
 * Kind of resource.
 */
export type Kind = 'VirtualMachine' | 'Disk' | 'Network' | 'VfioAssignment' | 'Host';

/**
 * The envelope every mvisor manifest document shares: apiVersion, kind, metadata and a kind-specific spec. Each kind has its own schema (virtual-machine, disk, network, vfio-assignment, host) built from the definitions here.
 */
export interface ManifestEnvelope {
  apiVersion: ApiVersion;
  kind: Kind;
  metadata: Metadata;
  /**
   * The kind-specific desired state (checked against the kind's schema).
   */
  spec?: {};
}
/**
 * Name and labels of a resource.
 */
export interface Metadata {
  /**
   * A resource name (a DNS label): 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit. Unique per kind.
   */
  name: string;
  labels?: Labels;
}
/**
 * Free-form key/value labels (keys: an optional DNS-style prefix and '/', then 1-63 letters, digits, '-', '_' or '.').
 */
export interface Labels {
  [k: string]: string | undefined;
}
