/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/manifests/host.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * A machine VMs run on. The host named local (the machine mvctl runs on) exists without a manifest.
 */
export interface HostManifest {
  /**
   * Version of the manifest format.
   */
  apiVersion: 'mvisor.dev/v1alpha1';
  kind: 'Host';
  metadata: Metadata;
  spec: HostSpec;
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
 * How to reach a host.
 */
export interface HostSpec {
  /**
   * local (this machine) or ssh://[user@]host[:port].
   */
  address: string;
  /**
   * Directory for the host's VM state (disk images, sockets, logs): an absolute path or one starting with ~/ (the home directory on that host). Default: chosen by the engine.
   */
  stateDir?: string;
}
