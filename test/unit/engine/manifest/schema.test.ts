import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  isGrowOnly,
  MANIFEST_DEFAULTS,
  updatePolicy,
  updateRule,
} from '../../../../src/engine/manifest/load.js';
import { kindDefinition, schemaAt, specField, specUri } from '../../../../src/engine/manifest/schemas.js';
import { API_VERSION, KINDS } from '../../../../src/engine/types.js';
import { outputPathFor, repoRoot, schemaFiles } from '../../../../scripts/gen-types.mjs';

describe('updatePolicy (x-mvisor-update in the schemas)', () => {
  it('answers for top-level spec fields', () => {
    expect(updatePolicy('VirtualMachine', ['memory'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['vcpus'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['running'])).toBe('in-place');
    expect(updatePolicy('VirtualMachine', ['shutdownTimeout'])).toBe('in-place');
    for (const field of ['machine', 'firmware', 'acpi', 'uuid', 'boot', 'fwCfg']) {
      expect(updatePolicy('VirtualMachine', [field]), field).toBe('replace');
    }
    expect(updatePolicy('Disk', ['size'])).toBe('in-place');
    expect(updatePolicy('Disk', ['format'])).toBe('replace');
    expect(updatePolicy('Network', ['mode'])).toBe('replace');
    expect(updatePolicy('VfioAssignment', ['address'])).toBe('replace');
    expect(updatePolicy('Host', ['address'])).toBe('in-place');
    expect(updatePolicy('Host', ['stateDir'])).toBe('in-place');
  });

  it('nested paths inherit the annotation of their field, through unions and $refs', () => {
    expect(updatePolicy('VirtualMachine', ['devices', 0, 'serial', 'socket'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['devices', 1, 'output'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['devices', '0', 'port'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['firmware', 'kernel'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['firmware', 'cmdline'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['disks', 1, 'readonly'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['serial', 'file'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['firmware', 'bios', 'image'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['machine', 'debug'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['boot', 'order', 0])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['boot', 'menuTimeout'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['fwCfg', 0, 'string'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['devices', 2, 'file'])).toBe('replace');
  });

  it('metadata: labels change in place, a new name is a new resource', () => {
    expect(updatePolicy('VirtualMachine', ['labels'])).toBe('in-place');
    expect(updatePolicy('Disk', ['labels', 'app'])).toBe('in-place');
    expect(updatePolicy('Disk', ['metadata', 'labels', 'app'])).toBe('in-place');
    expect(updatePolicy('Disk', ['metadata', 'name'])).toBe('replace');
  });

  it("unknown paths are 'replace'", () => {
    expect(updateRule('VirtualMachine', ['nope'])).toEqual({
      policy: 'replace',
      growOnly: false,
      known: false,
    });
    expect(updatePolicy('VirtualMachine', ['running', 'deeper'])).toBe('replace');
    expect(updatePolicy('VirtualMachine', ['devices', 0, 'nope'])).toBe('replace');
    expect(updatePolicy('Disk', [])).toBe('replace');
  });

  it('grow-only fields', () => {
    expect(updateRule('Disk', ['size'])).toEqual({ policy: 'in-place', growOnly: true, known: true });
    expect(isGrowOnly('Disk', ['size'])).toBe(true);
    expect(isGrowOnly('VirtualMachine', ['memory'])).toBe(false);
  });

  it('every spec field of every kind declares its policy', () => {
    for (const kind of KINDS) {
      const props = schemaAt(specUri(kind)).properties ?? {};
      expect(Object.keys(props).length, kind).toBeGreaterThan(0);
      for (const [field, node] of Object.entries(props)) {
        expect(['in-place', 'replace'], `${kind} spec.${field}`).toContain(node['x-mvisor-update']);
        expect(updateRule(kind, [field]).known).toBe(true);
      }
      // Paths starting with these address metadata, so no spec may have such a field.
      expect(Object.keys(props)).not.toContain('metadata');
      expect(Object.keys(props)).not.toContain('labels');
    }
  });
});

describe('manifest schemas', () => {
  it('share the apiVersion with the engine types', () => {
    const common = JSON.parse(
      readFileSync(join(repoRoot, 'schema/manifests/common.schema.json'), 'utf8'),
    ) as {
      definitions: { ApiVersion: { const: string }; Kind: { enum: string[] } };
    };
    expect(common.definitions.ApiVersion.const).toBe(API_VERSION);
    expect([...common.definitions.Kind.enum].sort()).toEqual([...KINDS].sort());
  });

  it('have one schema per kind plus the common one', () => {
    expect(readdirSync(join(repoRoot, 'schema/manifests')).sort()).toEqual([
      'common.schema.json',
      'disk.schema.json',
      'host.schema.json',
      'network.schema.json',
      'vfio-assignment.schema.json',
      'virtual-machine.schema.json',
    ]);
  });

  it('have generated types in src/generated/manifests (checked by the generated-types test)', async () => {
    const files = (await schemaFiles()).map((f) => relative(repoRoot, f));
    expect(files).toContain('schema/manifests/virtual-machine.schema.json');
    expect(files).toContain('schema/vmm-config.schema.json');
    expect(relative(repoRoot, outputPathFor(join(repoRoot, 'schema/manifests/disk.schema.json')))).toBe(
      'src/generated/manifests/disk.ts',
    );
    expect(relative(repoRoot, outputPathFor(join(repoRoot, 'schema/vmm-config.schema.json')))).toBe(
      'src/generated/vmm-config.ts',
    );
  });

  it('agree with MANIFEST_DEFAULTS on the defaults', () => {
    const vmDefaults: Record<string, unknown> = {};
    for (const field of Object.keys(MANIFEST_DEFAULTS.VirtualMachine)) {
      const props = schemaAt(specUri('VirtualMachine')).properties ?? {};
      // The default is on the field or on the definition it refers to.
      vmDefaults[field] = props[field]?.default ?? specField('VirtualMachine', field).default;
    }
    expect(vmDefaults).toEqual(MANIFEST_DEFAULTS.VirtualMachine);
    expect(schemaAt(kindDefinition('VirtualMachine', 'DirectKernelBoot/properties/cmdline')).default).toBe(
      MANIFEST_DEFAULTS.DirectKernelBoot.cmdline,
    );
    expect(schemaAt(kindDefinition('VirtualMachine', 'DiskAttachment/properties/readonly')).default).toBe(
      MANIFEST_DEFAULTS.DiskAttachment.readonly,
    );
    expect(specField('Disk', 'format').default).toBe(MANIFEST_DEFAULTS.Disk.format);
    expect(specField('Network', 'mode').default).toBe(MANIFEST_DEFAULTS.Network.mode);
    const vfioHost = schemaAt(specUri('VfioAssignment')).properties?.host?.default;
    expect(vfioHost).toBe(MANIFEST_DEFAULTS.VfioAssignment.host);
  });
});
