/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/manifests/network.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * A network VMs attach network interfaces to.
 */
export interface NetworkManifest {
  /**
   * Version of the manifest format.
   */
  apiVersion: 'mvisor.dev/v1alpha1';
  kind: 'Network';
  metadata: Metadata;
  spec?: NetworkSpec;
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
/**
 * Desired state of a network.
 */
export interface NetworkSpec {
  /**
   * user: user-mode NAT in the VMM process (no privileges needed); tap: a TAP device on the host. Default user.
   */
  mode?: 'user' | 'tap';
  /**
   * IPv4 subnet of the network, such as 10.0.2.0/24 (optional).
   */
  cidr?: string;
}
