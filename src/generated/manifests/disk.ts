/* eslint-disable */
/**
 * GENERATED FILE - DO NOT EDIT.
 * Generated from schema/manifests/disk.schema.json by scripts/gen-types.mjs (npm run gen:types).
 * Edit the schema and regenerate instead.
 */

/**
 * A disk image that VMs attach.
 */
export interface DiskManifest {
  /**
   * Version of the manifest format.
   */
  apiVersion: 'mvisor.dev/v1alpha1';
  kind: 'Disk';
  metadata: Metadata;
  spec: DiskSpec;
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
 * Desired state of a disk image.
 */
export interface DiskSpec {
  /**
   * Image format. Default raw.
   */
  format?: 'raw' | 'qcow2';
  /**
   * Virtual size of the disk: a number of bytes (a multiple of 512), or a size string such as 10G. A disk can grow in place but never shrink.
   */
  size: number | string;
  /**
   * Where the image file is. Default: chosen by the engine, under the host's state directory.
   */
  path?: string;
  /**
   * A base image the disk starts as a copy-on-write overlay of (qcow2 only).
   */
  backingFile?: string;
  /**
   * What destroy, and a replace, do with the image file. created (the default): delete it only if mvctl created it, keep a file that was there before (imported); delete: delete it either way; keep: never delete it. A kept file is named in the output.
   */
  deletePolicy?: 'created' | 'delete' | 'keep';
}
