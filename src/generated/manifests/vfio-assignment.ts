/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/manifests/vfio-assignment.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * A host PCI device passed through to a VM with VFIO.
 */
export interface VfioAssignmentManifest {
  /**
   * Version of the manifest format.
   */
  apiVersion: 'mvisor.dev/v1alpha1';
  kind: 'VfioAssignment';
  metadata: Metadata;
  spec: VfioAssignmentSpec;
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
 * Desired state of a VFIO assignment.
 */
export interface VfioAssignmentSpec {
  /**
   * The Host the PCI device is in (the VM must run there). Default local.
   */
  host?: string;
  /**
   * PCI address of the device on the host: [domain:]bus:device.function, e.g. 0000:01:00.0.
   */
  address: string;
  /**
   * The VirtualMachine the device is assigned to.
   */
  vm: string;
}
