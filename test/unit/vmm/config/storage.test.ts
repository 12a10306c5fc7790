/**
 * Storage devices in the VMM config: virtio-block, ata-disk, ata-cdrom and
 * floppy, their images (checked at their field), positions (PCI slots, IDE
 * channel/unit, floppy drives: unique, the rest assigned in device order)
 * and images shared between devices.
 */
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  parseVmmConfig,
  placeStorageDevices,
  type ResolvedDevice,
  type ResolvedVmmConfig,
} from '../../../../src/vmm/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'mvisor-storage-'));
const file = (name: string) => join(dir, name);
for (const [name, size] of [
  ['bios.bin', 128 * 1024],
  ['disk.img', 1 << 20],
  ['data.img', 1 << 20],
  ['cd.iso', 2048 * 16],
  ['fd.img', 1474560],
  ['vmlinux', 4096],
] as const) {
  writeFileSync(file(name), '');
  truncateSync(file(name), size);
}
// A qcow2 header starts with "QFI\xfb" and the version.
writeFileSync(
  file('disk.qcow2'),
  Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3, ...Array<number>(504).fill(0)]),
);
writeFileSync(file('rom.rom'), Buffer.from([0x55, 0xaa, 1, ...Array<number>(509).fill(0)]));
mkdirSync(file('a-directory'));
symlinkSync(file('disk.img'), file('disk-link.img'));
const cfg = file('vm.yaml');

const BIOS = 'name: vm\nfirmware: {bios: bios.bin}\n';
const parse = (text: string): ResolvedVmmConfig => parseVmmConfig(text, cfg);
const devicesOf = (lines: string[], head = BIOS): ResolvedDevice[] =>
  parse(`${head}devices:\n${lines.map((l) => `  - ${l}\n`).join('')}`).devices;

/** The ConfigError lines of a config with these devices (one `- ` item per line, from line 4 with BIOS). */
function problems(lines: string[], head = BIOS): string[] {
  try {
    parse(`${head}devices:\n${lines.map((l) => `  - ${l}\n`).join('')}`);
  } catch (e) {
    if (e instanceof ConfigError) return e.lines.map((l) => l.replace(`${cfg}:`, ''));
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('storage devices', () => {
  it('resolves each class with its defaults, images relative to the config', () => {
    expect(
      devicesOf([
        '{class: virtio-block, name: root, image: disk.qcow2, format: qcow2}',
        '{class: ata-disk, name: old, image: data.img, snapshot: true}',
        '{class: ata-cdrom, name: cd, image: cd.iso}',
        '{class: ata-cdrom, name: empty}',
        '{class: floppy, name: a, image: fd.img, readonly: true}',
        '{class: floppy, name: b}',
      ]),
    ).toEqual([
      {
        class: 'virtio-block',
        name: 'root',
        image: { path: file('disk.qcow2'), format: 'qcow2', readOnly: false, snapshot: false },
        serial: 'root',
        queues: 1,
        slot: 2,
      },
      {
        class: 'ata-disk',
        name: 'old',
        image: { path: file('data.img'), readOnly: false, snapshot: true },
        channel: 0,
        unit: 0,
      },
      {
        class: 'ata-cdrom',
        name: 'cd',
        image: { path: file('cd.iso'), readOnly: true, snapshot: false },
        channel: 0,
        unit: 1,
      },
      { class: 'ata-cdrom', name: 'empty', channel: 1, unit: 0 },
      {
        class: 'floppy',
        name: 'a',
        image: { path: file('fd.img'), readOnly: true, snapshot: false },
        drive: 0,
      },
      { class: 'floppy', name: 'b', drive: 1 },
    ] satisfies ResolvedDevice[]);
  });

  it('takes I/O limits on hard disks, and refuses bad ones naming the field', () => {
    const [d] = devicesOf(['{class: virtio-block, name: root, image: disk.qcow2, throttle: {iops: 200}}']);
    expect(d).toMatchObject({ image: { throttle: { iops: 200 } } });
    const [a] = devicesOf([
      '{class: ata-disk, name: old, image: data.img, throttle: {bytesPerSecond: 1048576}}',
    ]);
    expect(a).toMatchObject({ image: { throttle: { bytesPerSecond: 1048576 } } });
    const bad = problems([
      '{class: virtio-block, name: root, image: disk.qcow2, throttle: {iops: 0}}',
      '{class: ata-disk, name: old, image: data.img, throttle: {}}',
      '{class: floppy, name: a, image: fd.img, throttle: {iops: 5}}',
    ]).join('\n');
    expect(bad).toMatch(/devices\[0\]\.throttle\.iops/);
    expect(bad).toMatch(/devices\[1\]\.throttle/);
    expect(bad).toMatch(/devices\[2\]\.throttle/);
  });

  it('leaves the format out when not configured (the block layer detects it)', () => {
    const [d] = devicesOf(['{class: virtio-block, name: root, image: disk.qcow2}']);
    expect(d).toMatchObject({ image: { path: file('disk.qcow2'), readOnly: false, snapshot: false } });
    expect(d?.class === 'virtio-block' && 'format' in d.image).toBe(false);
  });

  it('works with a direct kernel boot as well as the BIOS', () => {
    const direct = 'name: vm\nkernel: vmlinux\n';
    expect(
      devicesOf(
        ['{class: virtio-block, name: root, image: disk.img}', '{class: floppy, name: a}'],
        direct,
      ).map((d) => d.class),
    ).toEqual(['virtio-block', 'floppy']);
    // The option ROM rule stays.
    expect(problems(['{class: option-rom, name: pxe, file: rom.rom}'], direct)).toEqual([
      '4:5: devices[0]: an option ROM needs firmware: bios (a direct kernel boot runs no firmware)',
    ]);
  });

  it('boots storage devices by name, empty drives included', () => {
    const c = parse(
      `${BIOS}boot: {order: [cd, root, a]}\ndevices:\n` +
        '  - {class: virtio-block, name: root, image: disk.img}\n' +
        '  - {class: ata-cdrom, name: cd}\n' +
        '  - {class: floppy, name: a}\n',
    );
    expect(c.boot.order).toEqual(['cd', 'root', 'a']);
    expect(() =>
      parse(
        `${BIOS}boot: {order: [rot]}\ndevices:\n  - {class: virtio-block, name: root, image: disk.img}\n`,
      ),
    ).toThrow('boot.order[0]: no device named "rot" (did you mean "root"?)');
  });

  it('names storage devices uniquely, with option ROMs', () => {
    expect(
      problems([
        '{class: option-rom, name: boot, file: rom.rom}',
        '{class: ata-disk, name: boot, image: disk.img}',
      ]),
    ).toEqual(['5:29: devices[1].name: device name "boot" is already used by devices[0]']);
  });
});

describe('virtio-block', () => {
  it('takes the name as serial number, cut to 20 bytes', () => {
    const long = 'a-very-long-disk-name-indeed';
    const [d] = devicesOf([`{class: virtio-block, name: ${long}, image: disk.img}`]);
    expect(d).toMatchObject({ serial: 'a-very-long-disk-nam' });
    const [e] = devicesOf([
      '{class: virtio-block, name: root, image: disk.img, serial: "SN 0001", queues: 4}',
    ]);
    expect(e).toMatchObject({ serial: 'SN 0001', queues: 4 });
  });

  it('checks serial numbers and queue counts', () => {
    expect(
      problems([
        '{class: virtio-block, name: a, image: disk.img, serial: "123456789012345678901"}',
        '{class: virtio-block, name: b, image: disk.img, serial: "sérial"}',
        '{class: virtio-block, name: c, image: disk.img, queues: 17}',
        '{class: virtio-block, name: d, image: disk.img, queues: 0}',
      ]),
    ).toEqual([
      '4:61: devices[0].serial: too long: 21 characters (at most 20)',
      '5:61: devices[1].serial: invalid serial "sérial": use printable ASCII characters (letters, digits, punctuation, spaces)',
      '6:61: devices[2].queues: must be <= 16, got 17',
      '7:61: devices[3].queues: must be >= 1, got 0',
    ]);
  });

  it('assigns PCI slots from 2 up in device order, skipping configured ones', () => {
    const slots = devicesOf([
      '{class: virtio-block, name: a, image: disk.img, readonly: true}',
      '{class: virtio-block, name: b, image: disk.img, readonly: true, slot: 2}',
      '{class: virtio-block, name: c, image: disk.img, readonly: true}',
      '{class: virtio-block, name: d, image: disk.img, readonly: true, slot: 4}',
      '{class: virtio-block, name: e, image: disk.img, readonly: true}',
    ]).map((d) => (d.class === 'virtio-block' ? d.slot : undefined));
    expect(slots).toEqual([3, 2, 5, 4, 6]);
  });

  it('refuses a slot used twice, slots outside 2..31, and a 31st disk', () => {
    expect(
      problems([
        '{class: virtio-block, name: a, image: disk.img, readonly: true, slot: 7}',
        '{class: virtio-block, name: b, image: disk.img, readonly: true, slot: 7}',
      ]),
    ).toEqual(['5:75: devices[1].slot: PCI slot 7 is already used by devices[0] (virtio-block "a")']);
    expect(problems(['{class: virtio-block, name: a, image: disk.img, slot: 1}'])).toEqual([
      '4:59: devices[0].slot: must be >= 2, got 1',
    ]);
    expect(problems(['{class: virtio-block, name: a, image: disk.img, slot: 32}'])).toEqual([
      '4:59: devices[0].slot: must be <= 31, got 32',
    ]);
    const many = Array.from(
      { length: 31 },
      (_, i) => `{class: virtio-block, name: d${i}, image: disk.img, readonly: true}`,
    );
    expect(problems(many)).toEqual(['34:5: devices[30]: no free PCI slot: slots 2..31 are all used']);
  });
});

describe('IDE positions', () => {
  const ide = (lines: string[]) =>
    devicesOf(lines).map((d) =>
      d.class === 'ata-disk' || d.class === 'ata-cdrom' ? `${d.channel}/${d.unit}` : '-',
    );

  it('fills free positions in device order after the configured ones', () => {
    expect(
      ide([
        '{class: ata-disk, name: a, image: disk.img}',
        '{class: ata-cdrom, name: b, channel: 0, unit: 0}',
        '{class: ata-disk, name: c, image: data.img, channel: 1}',
        '{class: ata-cdrom, name: d}',
      ]),
    ).toEqual(['0/1', '0/0', '1/0', '1/1']);
    // Only a unit: the first channel where it is free.
    expect(
      ide([
        '{class: ata-cdrom, name: a, unit: 1}',
        '{class: ata-cdrom, name: b, unit: 1}',
        '{class: ata-cdrom, name: c}',
      ]),
    ).toEqual(['0/1', '1/1', '0/0']);
  });

  it('refuses a position used twice, a full channel and a fifth IDE device', () => {
    expect(
      problems([
        '{class: ata-disk, name: a, image: disk.img, channel: 1, unit: 0}',
        '{class: ata-cdrom, name: b, channel: 1, unit: 0}',
      ]),
    ).toEqual([
      '5:42: devices[1].channel: IDE channel 1 unit 0 is already used by devices[0] (ata-disk "a")',
    ]);
    expect(
      problems([
        '{class: ata-cdrom, name: a, channel: 0}',
        '{class: ata-cdrom, name: b, channel: 0}',
        '{class: ata-cdrom, name: c, channel: 0}',
        '{class: ata-cdrom, name: d, unit: 0}',
        '{class: ata-cdrom, name: e, unit: 0}',
      ]),
    ).toEqual([
      '6:42: devices[2].channel: IDE channel 0 has no free unit (used by devices[0] (ata-cdrom "a"), devices[1] (ata-cdrom "b"))',
      '8:39: devices[4].unit: unit 0 is used on both IDE channels (by devices[0] (ata-cdrom "a"), devices[3] (ata-cdrom "d"))',
    ]);
    expect(
      problems([
        '{class: ata-disk, name: a, image: disk.img}',
        '{class: ata-cdrom, name: b}',
        '{class: ata-cdrom, name: c}',
        '{class: ata-cdrom, name: d}',
        '{class: ata-cdrom, name: e}',
      ]),
    ).toEqual([
      '8:5: devices[4]: no free IDE position: the controller has 4 (channel 0/1 × unit 0/1), used by ' +
        'devices[0] (ata-disk "a"), devices[1] (ata-cdrom "b"), devices[2] (ata-cdrom "c"), devices[3] (ata-cdrom "d")',
    ]);
    expect(problems(['{class: ata-cdrom, name: a, channel: 2}'])).toEqual([
      '4:42: devices[0].channel: expected one of 0, 1, got 2',
    ]);
  });

  it('claims the IDE ports always (the PIIX3 IDE function is always there), the floppy ports with a floppy', () => {
    expect(problems(['{class: debug-console, port: 0x1f0}', '{class: debug-console, port: 0x376}'])).toEqual([
      '4:34: devices[0].port: port 0x1f0 is already used by the primary IDE channel',
      '5:34: devices[1].port: port 0x376 is already used by the secondary IDE channel',
    ]);
    expect(devicesOf(['{class: debug-console, port: 0x3f2}']).map((d) => d.class)).toEqual(['debug-console']);
    expect(problems(['{class: floppy, name: a}', '{class: debug-console, port: 0x3f2}'])).toEqual([
      '5:34: devices[1].port: port 0x3f2 is already used by the floppy controller',
    ]);
  });
});

describe('floppy drives', () => {
  it('are unique, at most two, assigned in device order', () => {
    expect(
      devicesOf(['{class: floppy, name: a}', '{class: floppy, name: b, drive: 0}']).map((d) =>
        d.class === 'floppy' ? d.drive : -1,
      ),
    ).toEqual([1, 0]);
    expect(problems(['{class: floppy, name: a, drive: 1}', '{class: floppy, name: b, drive: 1}'])).toEqual([
      '5:37: devices[1].drive: floppy drive 1 is already used by devices[0] (floppy "a")',
    ]);
    expect(
      problems(['{class: floppy, name: a}', '{class: floppy, name: b}', '{class: floppy, name: c}']),
    ).toEqual([
      '6:5: devices[2]: no free floppy drive: the controller has 2 (0 and 1), used by devices[0] (floppy "a"), devices[1] (floppy "b")',
    ]);
  });
});

describe('images', () => {
  it('must exist and be readable regular files, reported at the image field', () => {
    expect(
      problems([
        '{class: virtio-block, name: a, image: nope.img}',
        '{class: ata-disk, name: b, image: a-directory}',
        '{class: ata-cdrom, name: c, image: nope.iso}',
        '{class: floppy, name: d, image: /dev/null}',
      ]),
    ).toEqual([
      `4:43: devices[0].image: ${file('nope.img')}: no such file`,
      `5:39: devices[1].image: ${file('a-directory')}: is a directory`,
      `6:40: devices[2].image: ${file('nope.iso')}: no such file`,
      '7:37: devices[3].image: /dev/null: not a regular file',
    ]);
  });

  it('must start with the qcow2 magic when the format says qcow2', () => {
    expect(problems(['{class: virtio-block, name: a, image: disk.img, format: qcow2}'])).toEqual([
      `4:43: devices[0].image: ${file('disk.img')}: not a qcow2 image (it does not start with "QFI\\xfb"; format: raw?)`,
    ]);
    // A qcow2 file read as raw is allowed (as in QEMU).
    expect(devicesOf(['{class: virtio-block, name: a, image: disk.qcow2, format: raw}'])).toHaveLength(1);
  });

  it.skipIf(process.getuid?.() === 0)('must be writable unless readonly or snapshot', () => {
    writeFileSync(file('ro.img'), Buffer.alloc(4096));
    chmodSync(file('ro.img'), 0o444);
    expect(
      problems(['{class: virtio-block, name: a, image: ro.img}', '{class: floppy, name: f, image: ro.img}']),
    ).toEqual([
      `4:43: devices[0].image: ${file('ro.img')}: cannot be written (permission denied); set readonly: true or snapshot: true to use it unwritten`,
      `5:37: devices[1].image: ${file('ro.img')}: cannot be written (permission denied); set readonly: true to use it unwritten`,
    ]);
    expect(
      devicesOf([
        '{class: virtio-block, name: a, image: ro.img, readonly: true}',
        '{class: ata-disk, name: b, image: ro.img, snapshot: true}',
        '{class: ata-cdrom, name: c, image: ro.img}',
      ]),
    ).toHaveLength(3);
  });

  it('are shared between devices only when none writes', () => {
    expect(
      devicesOf([
        '{class: virtio-block, name: a, image: disk.img, readonly: true}',
        '{class: ata-disk, name: b, image: disk.img, snapshot: true}',
        '{class: ata-cdrom, name: c, image: disk.img}',
      ]),
    ).toHaveLength(3);
    const why =
      'an image can be shared only when no device writes it (readonly: true or snapshot: true on each)';
    expect(
      problems([
        '{class: virtio-block, name: a, image: disk.img}',
        '{class: ata-disk, name: b, image: ./disk.img}',
        '{class: ata-cdrom, name: c, image: disk-link.img}',
        '{class: virtio-block, name: d, image: data.img, readonly: true}',
        '{class: floppy, name: e, image: data.img}',
      ]),
    ).toEqual([
      `5:39: devices[1].image: ${file('disk.img')} is already the image of devices[0] (virtio-block "a"); ${why}`,
      `6:40: devices[2].image: ${file('disk-link.img')} is already the image of devices[0] (virtio-block "a"); ${why}`,
      `8:37: devices[4].image: ${file('data.img')} is already the image of devices[3] (virtio-block "d"); ${why}`,
    ]);
  });
});

describe('placeStorageDevices', () => {
  it('places nothing for devices that are not storage devices', () => {
    const r = placeStorageDevices([undefined, { bus: 'pci' }, undefined, { bus: 'ide', unit: 1 }], []);
    expect(r).toEqual({
      placements: [undefined, { bus: 'pci', slot: 2 }, undefined, { bus: 'ide', channel: 0, unit: 1 }],
      problems: [],
    });
  });
});
