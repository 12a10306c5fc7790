/**
 * Opens the disk images a VM's storage devices use before the machine is
 * built (image opening is asynchronous: qcow2 headers, backing chains,
 * locks), and closes them after the VM stopped and the devices drained
 * their requests. The images belong to this pair of functions, not to the
 * devices, so that every image is flushed and unlocked exactly once.
 */
import type { ResolvedDevice } from '../config/types.js';
import type { BlockImage } from '../../block/image.js';
import { openImage } from '../../block/open.js';
import { withIoLimits } from '../../block/throttle.js';
import { BootError } from '../boot/errors.js';

/** The images of `devices` by device name (devices without an image are absent). */
export async function openDeviceImages(devices: readonly ResolvedDevice[]): Promise<Map<string, BlockImage>> {
  const images = new Map<string, BlockImage>();
  try {
    for (const d of devices) {
      if (
        d.class !== 'virtio-block' &&
        d.class !== 'ata-disk' &&
        d.class !== 'ata-cdrom' &&
        d.class !== 'floppy'
      )
        continue;
      const img = d.image;
      if (!img) continue;
      try {
        const image = await openImage(img.path, {
          readOnly: img.readOnly || d.class === 'ata-cdrom',
          snapshot: img.snapshot,
          format: img.format,
        });
        images.set(d.name, withIoLimits(image, img.throttle));
      } catch (e) {
        throw new BootError(`devices: ${d.name}: ${img.path}: ${(e as Error).message}`);
      }
    }
  } catch (e) {
    await closeImages(images, () => undefined);
    throw e;
  }
  return images;
}

/** Flushes and closes every image; a failure is reported and the others still close. */
export async function closeImages(
  images: ReadonlyMap<string, BlockImage>,
  onError: (message: string) => void,
): Promise<void> {
  await Promise.all(
    [...images].map(async ([name, image]) => {
      try {
        await image.close();
      } catch (e) {
        onError(`${name}: closing ${image.path}: ${(e as Error).message}`);
      }
    }),
  );
}
