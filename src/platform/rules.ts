/**
 * Rules of a VM's device list that the VMM config loader and the manifest
 * normaliser share (names, boot order, fw_cfg names, image sharing, storage
 * classes), as plain functions over plain data: no KVM, no YAML.
 */
import { realpathSync } from 'node:fs';
import { closest } from '../common/yaml-schema-errors.js';

/** fw_cfg file names are 56 bytes with the terminating NUL (FWCfgFile.name in QEMU's fw_cfg.h). */
export const FW_CFG_NAME_MAX_BYTES = 55;

/** A problem with the item at `index` of a list (boot order, fw_cfg files, devices). */
export interface ListProblem {
  index: number;
  message: string;
}

/**
 * Problems of device names (`names[i]` is the name of device i, undefined
 * for a device without one): each name is used once.
 */
export function deviceNameProblems(names: readonly (string | undefined)[]): ListProblem[] {
  const out: ListProblem[] = [];
  names.forEach((name, i) => {
    if (name === undefined) return;
    const first = names.indexOf(name);
    if (first < i) {
      out.push({
        index: i,
        message: `device name ${JSON.stringify(name)} is already used by devices[${first}]`,
      });
    }
  });
  return out;
}

/** What an option ROM device of a directly booted VM is told. */
export const OPTION_ROM_NEEDS_BIOS =
  'an option ROM needs firmware: bios (a direct kernel boot runs no firmware)';

/**
 * Problems of devices (`classes[i]` is the class of device i) in a VM that
 * boots its kernel directly: an option ROM is run by the firmware, and
 * there is none.
 */
export function directBootDeviceProblems(classes: readonly string[]): ListProblem[] {
  return classes.flatMap((c, index) =>
    c === 'option-rom' ? [{ index, message: OPTION_ROM_NEEDS_BIOS }] : [],
  );
}

/** Problems of a boot order: each entry names a device (of `deviceNames`), once. */
export function bootOrderProblems(
  order: readonly string[],
  deviceNames: readonly (string | undefined)[],
): ListProblem[] {
  const named = [...new Set(deviceNames.filter((n) => n !== undefined))];
  const out: ListProblem[] = [];
  order.forEach((name, i) => {
    const first = order.indexOf(name);
    if (first < i) {
      out.push({ index: i, message: `${JSON.stringify(name)} is already listed at boot.order[${first}]` });
    } else if (!named.includes(name)) {
      const guess = closest(name, named);
      out.push({
        index: i,
        message:
          `no device named ${JSON.stringify(name)} ` +
          (guess !== undefined
            ? `(did you mean ${JSON.stringify(guess)}?)`
            : named.length > 0
              ? `(named devices: ${named.join(', ')})`
              : '(no device has a name; option-rom and storage devices do)'),
      });
    }
  });
  return out;
}

/** Problems of fw_cfg file names (schema-valid: `opt/...`): at most 55 bytes, each used once. */
export function fwCfgNameProblems(names: readonly string[]): ListProblem[] {
  const out: ListProblem[] = [];
  names.forEach((name, i) => {
    const bytes = Buffer.byteLength(name, 'utf8');
    const first = names.indexOf(name);
    if (bytes > FW_CFG_NAME_MAX_BYTES) {
      out.push({ index: i, message: `too long: ${bytes} bytes (at most ${FW_CFG_NAME_MAX_BYTES})` });
    } else if (first < i) {
      out.push({
        index: i,
        message: `fw_cfg name ${JSON.stringify(name)} is already used by fwCfg[${first}]`,
      });
    }
  });
  return out;
}

/** Device classes that take a disk image. */
export const STORAGE_DEVICE_CLASSES = ['virtio-block', 'ata-disk', 'ata-cdrom', 'floppy'] as const;
export type StorageDeviceClass = (typeof STORAGE_DEVICE_CLASSES)[number];

export function isStorageDeviceClass(c: string): c is StorageDeviceClass {
  return (STORAGE_DEVICE_CLASSES as readonly string[]).includes(c);
}

/** A virtio-blk serial number is at most 20 bytes (VIRTIO_BLK_ID_BYTES, virtio 1.2 5.2.6). */
export const VIRTIO_BLK_SERIAL_MAX_BYTES = 20;

/** The serial number of a virtio-block device without one: its name, cut to 20 bytes (names are ASCII). */
export function defaultVirtioBlockSerial(name: string): string {
  return name.slice(0, VIRTIO_BLK_SERIAL_MAX_BYTES);
}

/** A problem of the item at `index`, about its `field` (absent: the item as a whole). */
export interface FieldProblem extends ListProblem {
  field?: string;
}

/** A device's use of an image file: `writes` unless read-only or a snapshot. */
export interface ImageUse {
  path: string;
  writes: boolean;
}

/**
 * Problems of images used by more than one device (`uses[i]` for device i,
 * undefined when it has no image): an image a device writes is used by no
 * other device (a writer locks its image exclusively; two writers would
 * corrupt it, a reader would see it change underneath).
 */
export function imageSharingProblems(
  uses: readonly (ImageUse | undefined)[],
  labels: readonly string[],
): FieldProblem[] {
  const keyOf = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  const keys = uses.map((u) => (u === undefined ? undefined : keyOf(u.path)));
  const out: FieldProblem[] = [];
  uses.forEach((u, j) => {
    if (u === undefined) return;
    const i = uses.findIndex(
      (v, k) => k < j && v !== undefined && keys[k] === keys[j] && (v.writes || u.writes),
    );
    if (i < 0) return;
    out.push({
      index: j,
      field: 'image',
      message:
        `${u.path} is already the image of ${labels[i] ?? `devices[${i}]`}; an image can be shared ` +
        'only when no device writes it (readonly: true or snapshot: true on each)',
    });
  });
  return out;
}
