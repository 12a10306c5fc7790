/**
 * The device registry: one descriptor per `class:` of the VMM config schema,
 * each naming its schema definition, and the port claims the config loader
 * checks for conflicts in one place.
 */
import { describe, expect, it } from 'vitest';
import schema from '../../../../schema/vmm-config.schema.json' with { type: 'json' };
import { DEVICE_REGISTRY, claimsOf } from '../../../../src/vmm/board/registry.js';
import { parseVmmConfig } from '../../../../src/vmm/config/load.js';

type Def = { properties?: { class?: { const?: string } }; oneOf?: { $ref: string }[] };
const defs = (schema as unknown as { definitions: Record<string, Def> }).definitions;

describe('device registry', () => {
  it('has exactly one descriptor for every device class of the schema, under its own definition', () => {
    const refs = [...(defs.Device?.oneOf ?? []), ...(defs.VmmDevice?.oneOf ?? [])].map((r) =>
      r.$ref.split('/').pop()!,
    );
    const classes = refs.flatMap((name) => {
      const c = defs[name]?.properties?.class?.const;
      return c === undefined ? [] : [[c, name] as const];
    });
    expect(classes.length).toBeGreaterThanOrEqual(10);
    expect(Object.keys(DEVICE_REGISTRY).sort()).toEqual(classes.map(([c]) => c).sort());
    for (const [c, name] of classes)
      expect(DEVICE_REGISTRY[c as keyof typeof DEVICE_REGISTRY].schema.name).toBe(name);
  });

  it('claims the ports a device occupies, with the field that placed them', () => {
    expect(claimsOf({ class: 'serial-port', port: 0x2f8, irq: 3, serial: { kind: 'none' } }).ports).toEqual([
      { start: 0x2f8, end: 0x300, owner: '', field: 'port' },
    ]);
    expect(claimsOf({ class: 'isa-debug-exit', iobase: 0xf4, iosize: 4 }).ports).toEqual([
      { start: 0xf4, end: 0xf8, owner: '', field: 'iobase' },
    ]);
    expect(claimsOf({ class: 'ata-cdrom', name: 'cd', channel: 1, unit: 0 })).toEqual({});
  });

  it('the config loader finds two devices on one port range from their claims, naming both', () => {
    const text = [
      'name: clash',
      'firmware: direct',
      'kernel: /dev/null',
      'devices:',
      '  - {class: serial-port, port: 0x2f8}',
      '  - {class: isa-debug-exit, iobase: 0x2fc, iosize: 4}',
    ].join('\n');
    expect(() => parseVmmConfig(text, '/tmp/clash.yaml')).toThrow(
      /clash\.yaml:6:\d+: devices\[1\]\.iobase: port 0x2fc is already used by devices\[0\] \(serial-port\)/,
    );
  });
});
