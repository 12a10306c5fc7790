/**
 * Where storage devices (and pci-testdev) go: PCI slots, IDE positions and
 * floppy drives, given or the first free one. Shared by the VMM config loader
 * and the manifest normaliser, so that a manifest places devices exactly
 * where the VMM will.
 */
import schemaJson from '../../schema/vmm-config.schema.json' with { type: 'json' };
import type { VmmDevice } from '../generated/vmm-config.js';
import { IDE_POSITIONS, PCI_DEVICE_SLOTS } from './pc-map.js';
import type { FieldProblem } from './rules.js';

/** Where a storage device asks to be; an absent field means "the first free one". */
export type PlacementRequest =
  | { bus: 'pci'; slot?: number }
  | { bus: 'ide'; channel?: 0 | 1; unit?: 0 | 1 }
  | { bus: 'floppy'; drive?: 0 | 1 };

/** Where a storage device is. */
export type Placement =
  | { bus: 'pci'; slot: number }
  | { bus: 'ide'; channel: 0 | 1; unit: 0 | 1 }
  | { bus: 'floppy'; drive: 0 | 1 };

/** A bus a device takes a position on. */
export type Bus = PlacementRequest['bus'];

type DefinitionNode = { properties?: Record<string, unknown> & { class?: { const?: string } } };
let busByClass: Map<string, Bus> | undefined;

/**
 * The bus a device class takes a position on, from its schema definition's
 * fields: `slot` a PCI slot, `channel` and `unit` an IDE position, `drive` a
 * floppy drive; undefined for a device that has none. A new device's schema
 * alone says where it goes.
 */
export function busOf(cls: string): Bus | undefined {
  if (!busByClass) {
    busByClass = new Map();
    const defs = (schemaJson as { definitions: Record<string, DefinitionNode> }).definitions;
    for (const def of Object.values(defs)) {
      const props = def.properties;
      const c = props?.class?.const;
      if (c === undefined || props === undefined) continue;
      const bus: Bus | undefined =
        'slot' in props ? 'pci' : 'channel' in props ? 'ide' : 'drive' in props ? 'floppy' : undefined;
      if (bus) busByClass.set(c, bus);
    }
  }
  return busByClass.get(cls);
}

/**
 * What a device of the VMM config asks for, or undefined for a device that
 * has no position (see busOf): storage devices, and pci-testdev, which takes
 * a PCI slot as virtio-block devices do.
 */
export function storagePlacementRequest(d: VmmDevice): PlacementRequest | undefined {
  const f = d as { slot?: number; channel?: 0 | 1; unit?: 0 | 1; drive?: 0 | 1 };
  switch (busOf(d.class)) {
    case 'pci':
      return f.slot === undefined ? { bus: 'pci' } : { bus: 'pci', slot: f.slot };
    case 'ide':
      return { bus: 'ide', ...pick(f, 'channel'), ...pick(f, 'unit') };
    case 'floppy':
      return f.drive === undefined ? { bus: 'floppy' } : { bus: 'floppy', drive: f.drive };
    default:
      return undefined;
  }
}

/** The PCI slot a placement gave (the first device slot when it gave none: a config with problems). */
export function pciSlotOf(p: Placement | undefined): number {
  return p?.bus === 'pci' ? p.slot : PCI_DEVICE_SLOTS.first;
}

/** The IDE position a placement gave (0/0 when it gave none: a config with problems). */
export function idePositionOf(p: Placement | undefined): { channel: 0 | 1; unit: 0 | 1 } {
  return p?.bus === 'ide' ? { channel: p.channel, unit: p.unit } : { channel: 0, unit: 0 };
}

/** The floppy drive a placement gave (0 when it gave none). */
export function floppyDriveOf(p: Placement | undefined): 0 | 1 {
  return p?.bus === 'floppy' ? p.drive : 0;
}

function pick<T extends object, K extends keyof T>(o: T, k: K): Partial<Pick<T, K>> {
  return o[k] === undefined ? {} : ({ [k]: o[k] } as Pick<T, K>);
}

/**
 * Places storage devices (`requests[i]` is device i's request, undefined
 * for other devices; `labels[i]` names it in messages): positions given
 * must be unique; then devices with half a position (an IDE channel, or a
 * unit) take the first free one that fits, then the others take the first
 * free position, each in device order. virtio-block devices (and
 * pci-testdev) get PCI slots from 2 up, IDE devices the four positions channel 0/1 × unit 0/1 (0/0,
 * 0/1, 1/0, 1/1), floppies drives 0 and 1.
 */
export function placeStorageDevices(
  requests: readonly (PlacementRequest | undefined)[],
  labels: readonly string[],
): { placements: (Placement | undefined)[]; problems: FieldProblem[] } {
  const placements: (Placement | undefined)[] = requests.map(() => undefined);
  const problems: FieldProblem[] = [];
  const owners = new Map<string, number>();
  const label = (i: number | undefined) => (i === undefined ? '?' : (labels[i] ?? `devices[${i}]`));
  const ownerOf = (key: string) => label(owners.get(key));
  const free = (key: string) => !owners.has(key);
  const indexes = (pred: (r: PlacementRequest) => boolean) =>
    requests.flatMap((r, i) => (r !== undefined && pred(r) ? [i] : []));

  // PCI slots.
  const slotKey = (slot: number) => `pci:${slot}`;
  for (const i of indexes((r) => r.bus === 'pci' && r.slot !== undefined)) {
    const slot = (requests[i] as { slot: number }).slot;
    if (!free(slotKey(slot))) {
      problems.push({
        index: i,
        field: 'slot',
        message: `PCI slot ${slot} is already used by ${ownerOf(slotKey(slot))}`,
      });
      continue;
    }
    owners.set(slotKey(slot), i);
    placements[i] = { bus: 'pci', slot };
  }
  for (const i of indexes((r) => r.bus === 'pci' && r.slot === undefined)) {
    let slot: number | undefined;
    for (let s = PCI_DEVICE_SLOTS.first; s <= PCI_DEVICE_SLOTS.last && slot === undefined; s++) {
      if (free(slotKey(s))) slot = s;
    }
    if (slot === undefined) {
      problems.push({
        index: i,
        message: `no free PCI slot: slots ${PCI_DEVICE_SLOTS.first}..${PCI_DEVICE_SLOTS.last} are all used`,
      });
      continue;
    }
    owners.set(slotKey(slot), i);
    placements[i] = { bus: 'pci', slot };
  }

  // IDE positions.
  const ideKey = (channel: number, unit: number) => `ide:${channel}:${unit}`;
  const ide = (r: PlacementRequest | undefined): { channel?: 0 | 1; unit?: 0 | 1 } =>
    r?.bus === 'ide' ? r : {};
  const placeIde = (i: number, channel: 0 | 1, unit: 0 | 1) => {
    owners.set(ideKey(channel, unit), i);
    placements[i] = { bus: 'ide', channel, unit };
  };
  for (const i of indexes((r) => r.bus === 'ide' && r.channel !== undefined && r.unit !== undefined)) {
    const { channel = 0, unit = 0 } = ide(requests[i]);
    if (free(ideKey(channel, unit))) placeIde(i, channel, unit);
    else {
      problems.push({
        index: i,
        field: 'channel',
        message: `IDE channel ${channel} unit ${unit} is already used by ${ownerOf(ideKey(channel, unit))}`,
      });
    }
  }
  for (const i of indexes((r) => r.bus === 'ide' && (r.channel === undefined) !== (r.unit === undefined))) {
    const r = ide(requests[i]);
    const fits = IDE_POSITIONS.filter(
      ([c, u]) => (r.channel === undefined || r.channel === c) && (r.unit === undefined || r.unit === u),
    );
    const spot = fits.find(([c, u]) => free(ideKey(c, u)));
    if (spot) placeIde(i, spot[0], spot[1]);
    else {
      const users = fits.map(([c, u]) => ownerOf(ideKey(c, u))).join(', ');
      problems.push(
        r.channel !== undefined
          ? {
              index: i,
              field: 'channel',
              message: `IDE channel ${r.channel} has no free unit (used by ${users})`,
            }
          : { index: i, field: 'unit', message: `unit ${r.unit} is used on both IDE channels (by ${users})` },
      );
    }
  }
  for (const i of indexes((r) => r.bus === 'ide' && r.channel === undefined && r.unit === undefined)) {
    const spot = IDE_POSITIONS.find(([c, u]) => free(ideKey(c, u)));
    if (spot) placeIde(i, spot[0], spot[1]);
    else {
      const users = IDE_POSITIONS.map(([c, u]) => ownerOf(ideKey(c, u))).join(', ');
      problems.push({
        index: i,
        message: `no free IDE position: the controller has 4 (channel 0/1 × unit 0/1), used by ${users}`,
      });
    }
  }

  // Floppy drives.
  const driveKey = (drive: number) => `floppy:${drive}`;
  for (const i of indexes((r) => r.bus === 'floppy' && r.drive !== undefined)) {
    const r = requests[i];
    const drive = r?.bus === 'floppy' ? (r.drive ?? 0) : 0;
    if (!free(driveKey(drive))) {
      problems.push({
        index: i,
        field: 'drive',
        message: `floppy drive ${drive} is already used by ${ownerOf(driveKey(drive))}`,
      });
      continue;
    }
    owners.set(driveKey(drive), i);
    placements[i] = { bus: 'floppy', drive };
  }
  for (const i of indexes((r) => r.bus === 'floppy' && r.drive === undefined)) {
    const drive = ([0, 1] as const).find((d) => free(driveKey(d)));
    if (drive === undefined) {
      problems.push({
        index: i,
        message: `no free floppy drive: the controller has 2 (0 and 1), used by ${ownerOf(driveKey(0))}, ${ownerOf(driveKey(1))}`,
      });
      continue;
    }
    owners.set(driveKey(drive), i);
    placements[i] = { bus: 'floppy', drive };
  }
  return { placements, problems };
}
