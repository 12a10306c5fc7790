import { mkdtempSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  ManifestError,
  STDIN_NAME,
  canonicalCidr,
  canonicalCpu,
  fieldSource,
  formatManifestProblem,
  loadManifests,
  parseDuration,
  resourceProblem,
  specOf,
  type NormalizedVirtualMachineSpec,
} from '../../../../src/engine/manifest/load.js';
import { defaultVmUuid } from '../../../../src/vmm/config/load.js';
import { resourceKey, type DesiredResource } from '../../../../src/engine/types.js';

const fixtures = fileURLToPath(new URL('../../../fixtures/manifests/', import.meta.url));
const fx = (...p: string[]) => join(fixtures, ...p);

/** Loads with paths relative to the fixture directory (so messages name `bad/x.yaml`). */
function load(inputs: string[], stdin?: string): DesiredResource[] {
  return loadManifests(inputs, { cwd: fixtures, ...(stdin !== undefined ? { stdin } : {}) });
}

/** The ManifestError lines thrown by loading `inputs`. */
function problems(inputs: string[], stdin?: string): string[] {
  try {
    load(inputs, stdin);
  } catch (e) {
    if (e instanceof ManifestError) {
      expect(e.message).toBe(e.lines.join('\n'));
      return e.lines;
    }
    throw e;
  }
  throw new Error('expected a ManifestError');
}

const byKey = (rs: DesiredResource[]) => new Map(rs.map((r) => [resourceKey(r), r]));

const HEADER = 'apiVersion: mvisor.dev/v1alpha1\n';

describe('loadManifests: good manifests', () => {
  it('loads a directory (*.yaml and *.yml, sorted) and a file, documents in order', () => {
    const rs = load(['good/cluster', 'good/minimal.yaml']);
    expect(rs.map(resourceKey)).toEqual([
      'Host/gpu1',
      'Network/lan',
      'Network/bridge',
      'Disk/root',
      'Disk/data',
      'VirtualMachine/web',
      'VirtualMachine/gpu-box',
      'VfioAssignment/gpu-box-gpu',
      'VirtualMachine/tiny',
    ]);
    expect(rs.every((r) => r.apiVersion === 'mvisor.dev/v1alpha1')).toBe(true);
  });

  it('normalises every field of a full VirtualMachine', () => {
    const web = byKey(load(['good/cluster'])).get('VirtualMachine/web');
    expect(web).toEqual({
      kind: 'VirtualMachine',
      name: 'web',
      apiVersion: 'mvisor.dev/v1alpha1',
      labels: { app: 'web' },
      spec: {
        memory: 512 * 2 ** 20,
        vcpus: 2,
        cpu: 'baseline,-cx16,+xsaveerptr',
        firmware: {
          kernel: fx('good', 'kernels', 'vmlinux'),
          initrd: fx('good', 'kernels', 'initramfs.cpio'),
          cmdline: 'console=ttyS0 panic=-1',
        },
        machine: { type: 'pc', debug: true },
        acpi: false,
        uuid: '0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70',
        boot: { order: [], menu: true, menuTimeout: 2500 },
        fwCfg: [
          { name: 'opt/org.example/seed', file: fx('good', 'cluster', 'seed.json') },
          { name: 'opt/org.example/role', string: 'web' },
        ],
        disks: [
          { disk: 'root', bus: 'virtio', readonly: false },
          { disk: 'data', bus: 'ata', readonly: true },
        ],
        networks: [{ network: 'lan' }, { network: 'bridge' }],
        serial: { file: fx('good', 'cluster', 'logs', 'web-console.log') },
        devices: [
          { class: 'serial-port', port: 0x2f8, irq: 3, serial: { socket: '/run/mvisor/web-com2.sock' } },
          { class: 'debug-console', port: 0x80, output: 'stderr' },
        ],
        host: 'local',
        running: false,
        shutdownTimeout: 120,
      } satisfies NormalizedVirtualMachineSpec,
      source: { file: 'good/cluster/20-vms.yml', line: 1, col: 1 },
      dependsOn: [
        { kind: 'Disk', name: 'root' },
        { kind: 'Disk', name: 'data' },
        { kind: 'Network', name: 'lan' },
        { kind: 'Network', name: 'bridge' },
      ],
    } satisfies DesiredResource);
  });

  it('fills every default of a minimal VirtualMachine', () => {
    const [tiny] = load(['good/minimal.yaml']);
    expect(tiny?.spec).toEqual({
      memory: 128 * 2 ** 20,
      vcpus: 1,
      cpu: 'host',
      firmware: 'bios',
      machine: 'pc',
      acpi: true,
      uuid: defaultVmUuid('tiny'),
      boot: { order: [], menu: false, menuTimeout: 0 },
      fwCfg: [],
      disks: [],
      networks: [],
      serial: 'console',
      devices: [],
      host: 'local',
      running: true,
      shutdownTimeout: 30,
    } satisfies NormalizedVirtualMachineSpec);
    expect(tiny?.labels).toEqual({});
    // The implicit local host is not a resource, so it is not a dependency either.
    expect(tiny?.dependsOn).toEqual([]);
    expect(tiny?.source).toEqual({ file: 'good/minimal.yaml', line: 2, col: 1 });
  });

  it('normalises Disk, Network, Host and VfioAssignment specs', () => {
    const rs = byKey(load(['good/cluster']));
    expect(rs.get('Disk/root')?.spec).toEqual({
      format: 'qcow2',
      size: 10 * 2 ** 30,
      backingFile: fx('good', 'images', 'debian-12.qcow2'),
    });
    // No `path` key at all: the engine chooses one.
    expect(Object.keys(rs.get('Disk/root')?.spec ?? {})).toEqual(['format', 'size', 'backingFile']);
    expect(rs.get('Disk/data')).toMatchObject({
      labels: { 'app.example.com/tier': 'db', backup: 'daily' },
      spec: { format: 'raw', size: 2 ** 30, path: join(homedir(), 'vm/data.img') },
      source: { file: 'good/cluster/10-disks.yaml', line: 11, col: 1 },
    });
    expect(rs.get('Network/lan')?.spec).toEqual({ mode: 'user', cidr: '10.0.2.0/24' });
    expect(rs.get('Network/bridge')?.spec).toEqual({ mode: 'tap' });
    // An ssh host's ~ is the home directory over there: kept as is.
    expect(rs.get('Host/gpu1')?.spec).toEqual({
      address: 'ssh://root@gpu1.example.net:2222',
      stateDir: '~/mvisor',
    });
    expect(rs.get('Host/gpu1')?.labels).toEqual({ rack: 'r12' });
    expect(rs.get('VfioAssignment/gpu-box-gpu')).toMatchObject({
      spec: { host: 'gpu1', address: '0000:01:00.0', vm: 'gpu-box' },
      dependsOn: [
        { kind: 'VirtualMachine', name: 'gpu-box' },
        { kind: 'Host', name: 'gpu1' },
      ],
    });
    expect(rs.get('VirtualMachine/gpu-box')?.dependsOn).toEqual([{ kind: 'Host', name: 'gpu1' }]);
    expect(rs.get('VirtualMachine/gpu-box')?.spec).toMatchObject({
      firmware: { bios: { image: fx('good', 'firmware', 'bios.bin') } },
      boot: { order: ['installer', 'pxe'], menu: false, menuTimeout: 0 },
      devices: [
        { class: 'option-rom', name: 'pxe', file: fx('good', 'roms', 'pxe.rom') },
        { class: 'ata-cdrom', name: 'installer', image: fx('good', 'images', 'debian-12.iso') },
      ],
    });
  });

  it('is deterministic: the same manifests give deep-equal (and JSON-equal) resources', () => {
    const a = load(['good/cluster', 'good/minimal.yaml']);
    const b = load(['good/cluster', 'good/minimal.yaml']);
    expect(b).toEqual(a);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
  });

  it('gives equal specs for equivalent spellings (no spurious diffs)', () => {
    const vm = (name: string, spec: string) =>
      `${HEADER}kind: VirtualMachine\nmetadata: {name: ${name}}\nspec: ${spec}\n---\n`;
    const [a, b, c] = load(
      ['-'],
      vm('a', '{}') +
        vm(
          'b',
          '{memory: 128MiB, vcpus: 1, cpu: host, firmware: bios, serial: console, shutdownTimeout: 30, ' +
            `uuid: ${defaultVmUuid('a').toUpperCase()}, machine: {type: pc, debug: false}, acpi: true}`,
        ) +
        vm(
          'c',
          '{memory: 134217728, host: local, running: true, shutdownTimeout: 0m30s, machine: pc, disks: [], devices: [], ' +
            `uuid: ${defaultVmUuid('a')}, boot: {order: [], menu: false}, fwCfg: []}`,
        ),
    );
    expect(b?.spec).toEqual(a?.spec);
    expect(c?.spec).toEqual(a?.spec);
    expect(JSON.stringify(c?.spec)).toBe(JSON.stringify(a?.spec));

    const [x, y] = load(
      ['-'],
      vm('x', '{cpu: "baseline,+xsaveerptr,-cx16,+xsaveerptr"}') +
        vm('y', `{cpu: "baseline,-cx16,+xsaveerptr", uuid: ${defaultVmUuid('x')}}`),
    );
    expect(x?.spec.cpu).toBe('baseline,-cx16,+xsaveerptr');
    expect(y?.spec).toEqual(x?.spec);
  });

  it('normalising a normalised spec changes nothing', () => {
    const first = load(['good/cluster', 'good/minimal.yaml']);
    // Write each resource back as a manifest (specs are JSON, and JSON is YAML).
    const text = first
      .map((r) =>
        JSON.stringify({
          apiVersion: r.apiVersion,
          kind: r.kind,
          metadata: { name: r.name, labels: r.labels },
          spec: r.spec,
        }),
      )
      .join('\n---\n');
    const again = load(['-'], text);
    expect(again.map((r) => [r.kind, r.name, r.labels, r.spec, r.dependsOn])).toEqual(
      first.map((r) => [r.kind, r.name, r.labels, r.spec, r.dependsOn]),
    );
  });

  it("reads '-' from the stdin text, relative paths against cwd", () => {
    const rs = load(
      ['-'],
      `${HEADER}kind: Disk\nmetadata:\n  name: scratch\nspec:\n  size: 64M\n  path: disks/scratch.img\n`,
    );
    expect(rs).toEqual([
      {
        kind: 'Disk',
        name: 'scratch',
        apiVersion: 'mvisor.dev/v1alpha1',
        labels: {},
        spec: { format: 'raw', size: 64 * 2 ** 20, path: fx('disks', 'scratch.img') },
        source: { file: STDIN_NAME, line: 1, col: 1 },
        dependsOn: [],
      },
    ]);
  });

  it('resolves references across files and stdin', () => {
    const rs = load(
      ['good/cluster', '-'],
      `${HEADER}kind: VirtualMachine\nmetadata: {name: db}\nspec: {disks: [{disk: data, readonly: true}]}\n`,
    );
    expect(byKey(rs).get('VirtualMachine/db')?.dependsOn).toEqual([{ kind: 'Disk', name: 'data' }]);
  });

  it('accepts an explicit Host named local, which then is a dependency', () => {
    const rs = load(
      ['-'],
      `${HEADER}kind: Host\nmetadata: {name: local}\nspec: {address: local, stateDir: ~/state}\n---\n` +
        `${HEADER}kind: VirtualMachine\nmetadata: {name: vm}\n`,
    );
    expect(rs[0]?.spec).toEqual({ address: 'local', stateDir: join(homedir(), 'state') });
    expect(rs[1]?.dependsOn).toEqual([{ kind: 'Host', name: 'local' }]);
  });

  it('reads a file named twice once, and skips empty documents', () => {
    expect(load(['good/minimal.yaml', fx('good', 'minimal.yaml')]).length).toBe(1);
    expect(load(['-'], '---\n# nothing\n---\n')).toEqual([]);
    expect(load([])).toEqual([]);
  });

  it('gives source positions of fields, and problems in the same form', () => {
    const data = byKey(load(['good/cluster'])).get('Disk/data');
    if (!data) throw new Error('no Disk/data');
    expect(fieldSource(data, ['size'])).toEqual({ file: 'good/cluster/10-disks.yaml', line: 19, col: 9 });
    expect(fieldSource(data, ['metadata', 'labels', 'backup'])).toEqual({
      file: 'good/cluster/10-disks.yaml',
      line: 16,
      col: 13,
    });
    expect(
      formatManifestProblem(resourceProblem(data, ['size'], 'cannot shrink a disk from 2 GiB to 1 GiB')),
    ).toBe('good/cluster/10-disks.yaml:19:9: Disk/data: spec.size: cannot shrink a disk from 2 GiB to 1 GiB');
    // A copy (e.g. read back from state) falls back to the document's position.
    expect(fieldSource({ ...data }, ['size'])).toEqual(data.source);
  });

  it('types specs by kind', () => {
    const web = byKey(load(['good/cluster'])).get('VirtualMachine/web');
    if (web?.kind !== 'VirtualMachine') throw new Error('no VM');
    const spec = specOf(web as DesiredResource & { kind: 'VirtualMachine' });
    expect(spec.disks.map((d) => d.disk)).toEqual(['root', 'data']);
  });
});

describe('loadManifests: bad manifests', () => {
  it('unknown fields, at any depth', () => {
    expect(problems(['bad/unknown-field.yaml'])).toEqual([
      'bad/unknown-field.yaml:7:3: VirtualMachine/web: spec.vcpu: unknown field (did you mean "vcpus"?)',
      'bad/unknown-field.yaml:10:7: VirtualMachine/web: spec.disks[0].redonly: unknown field (did you mean "readonly"?)',
      'bad/unknown-field.yaml:16:3: Disk/data: metadata.annotations: unknown field (known fields: name, labels)',
    ]);
  });

  it('a wrong apiVersion or kind', () => {
    expect(problems(['bad/bad-api-version.yaml'])).toEqual([
      'bad/bad-api-version.yaml:1:13: Network/lan: apiVersion: expected "mvisor.dev/v1alpha1", got "mvisor.dev/v1"',
      'bad/bad-api-version.yaml:7:7: Volume/data: kind: expected one of "VirtualMachine", "Disk", "Network", ' +
        '"VfioAssignment", "Host", got "Volume"',
    ]);
  });

  it('bad sizes and durations (a size string out of range is found even beside other problems)', () => {
    expect(problems(['bad/bad-size.yaml'])).toEqual([
      'bad/bad-size.yaml:6:9: Disk/data: spec.size: invalid size "10 GB": expected a number of bytes or a number ' +
        'with a K, M, G or T suffix (powers of 1024), e.g. 512M, 2G, 64KiB',
      'bad/bad-size.yaml:13:11: VirtualMachine/web: spec.memory: 1M is too small (minimum 2 MiB)',
      'bad/bad-size.yaml:14:20: VirtualMachine/web: spec.shutdownTimeout: invalid value "30 seconds": ' +
        'expected a number of seconds or a duration such as 30s, 2m, 1h or 1m30s',
    ]);
  });

  it('references to missing resources', () => {
    expect(problems(['bad/missing-ref.yaml'])).toEqual([
      'bad/missing-ref.yaml:15:13: VirtualMachine/web: spec.disks[1].disk: no Disk named "data" (did you mean "date"?)',
      'bad/missing-ref.yaml:17:16: VirtualMachine/web: spec.networks[0].network: no Network named "lan"',
      'bad/missing-ref.yaml:18:9: VirtualMachine/web: spec.host: no Host named "gpu1"',
      'bad/missing-ref.yaml:26:7: VfioAssignment/gpu: spec.vm: no VirtualMachine named "db"',
    ]);
  });

  it('duplicate names within a kind, naming both positions', () => {
    expect(problems(['bad/duplicate-name.yaml'])).toEqual([
      'bad/duplicate-name.yaml:17:9: Disk/data: metadata.name: duplicate Disk named "data" ' +
        '(first defined at bad/duplicate-name.yaml:4:9)',
    ]);
  });

  it('YAML syntax errors, in every document', () => {
    expect(problems(['bad/yaml-syntax.yaml'])).toEqual([
      'bad/yaml-syntax.yaml:6:11: Nested mappings are not allowed in compact mappings',
      'bad/yaml-syntax.yaml:6:11: Implicit keys need to be on a single line',
      'bad/yaml-syntax.yaml:13:3: Map keys must be unique',
    ]);
  });

  it('wrong types, unions and device classes', () => {
    expect(problems(['bad/wrong-type.yaml'])).toEqual([
      'bad/wrong-type.yaml:6:14: VirtualMachine/web: metadata.labels.version: expected a string, got 2',
      'bad/wrong-type.yaml:8:10: VirtualMachine/web: spec.vcpus: expected an integer, got "two"',
      'bad/wrong-type.yaml:9:12: VirtualMachine/web: spec.running: expected a boolean, got "yes"',
      'bad/wrong-type.yaml:10:10: VirtualMachine/web: spec.disks: expected a list, got "data"',
      'bad/wrong-type.yaml:11:13: VirtualMachine/web: spec.firmware: expected "bios", {bios: ...} or {kernel: ...}, got "uefi"',
      'bad/wrong-type.yaml:12:11: VirtualMachine/web: spec.serial.file: missing required field',
      'bad/wrong-type.yaml:12:13: VirtualMachine/web: spec.serial.socket: unknown field (known fields: file)',
      'bad/wrong-type.yaml:17:14: VirtualMachine/web: spec.devices[1].class: unknown device class "sound-card" ' +
        '(known: serial-port, debug-console, option-rom, virtio-block, ata-disk, ata-cdrom, floppy)',
    ]);
  });

  it('collects the problems of all files before throwing, in input order', () => {
    expect(
      problems(['bad/yaml-syntax.yaml', 'bad/nope.yaml', 'bad/wrong-type.yaml', 'bad/missing-ref.yaml']),
    ).toEqual([
      'bad/yaml-syntax.yaml:6:11: Nested mappings are not allowed in compact mappings',
      'bad/yaml-syntax.yaml:6:11: Implicit keys need to be on a single line',
      'bad/yaml-syntax.yaml:13:3: Map keys must be unique',
      'bad/nope.yaml: cannot read: no such file or directory',
      'bad/wrong-type.yaml:6:14: VirtualMachine/web: metadata.labels.version: expected a string, got 2',
      'bad/wrong-type.yaml:8:10: VirtualMachine/web: spec.vcpus: expected an integer, got "two"',
      'bad/wrong-type.yaml:9:12: VirtualMachine/web: spec.running: expected a boolean, got "yes"',
      'bad/wrong-type.yaml:10:10: VirtualMachine/web: spec.disks: expected a list, got "data"',
      'bad/wrong-type.yaml:11:13: VirtualMachine/web: spec.firmware: expected "bios", {bios: ...} or {kernel: ...}, got "uefi"',
      'bad/wrong-type.yaml:12:11: VirtualMachine/web: spec.serial.file: missing required field',
      'bad/wrong-type.yaml:12:13: VirtualMachine/web: spec.serial.socket: unknown field (known fields: file)',
      'bad/wrong-type.yaml:17:14: VirtualMachine/web: spec.devices[1].class: unknown device class "sound-card" ' +
        '(known: serial-port, debug-console, option-rom, virtio-block, ata-disk, ata-cdrom, floppy)',
      'bad/missing-ref.yaml:11:9: VirtualMachine/web: metadata.name: duplicate VirtualMachine named "web" ' +
        '(first defined at bad/wrong-type.yaml:4:9)',
      'bad/missing-ref.yaml:26:7: VfioAssignment/gpu: spec.vm: no VirtualMachine named "db"',
    ]);
  });

  it('keeps the parts of each problem', () => {
    try {
      load(['bad/missing-ref.yaml']);
      expect.unreachable();
    } catch (e) {
      if (!(e instanceof ManifestError)) throw e;
      expect(e.problems[0]).toEqual({
        file: 'bad/missing-ref.yaml',
        line: 15,
        col: 13,
        resource: 'VirtualMachine/web',
        path: 'spec.disks[1].disk',
        message: 'no Disk named "data" (did you mean "date"?)',
      });
    }
  });

  it('inputs that are not manifests', () => {
    const empty = mkdtempSync(join(tmpdir(), 'mvisor-manifests-'));
    writeFileSync(join(empty, 'notes.txt'), 'hello\n');
    expect(problems([empty])).toEqual([
      `${empty}: no manifests in this directory (no *.yaml or *.yml files)`,
    ]);
    expect(problems(['-'], '- a list\n')).toEqual([
      '<stdin>:1:1: expected a manifest (a mapping with apiVersion, kind, metadata and spec), got a list',
    ]);
    expect(problems(['-', '-'], '')).toEqual(["<stdin>: '-' (stdin) is given more than once"]);
    expect(problems(['good/cluster/README.txt'])).toEqual([
      'good/cluster/README.txt:1:1: apiVersion: missing required field',
      'good/cluster/README.txt:1:1: kind: missing required field',
      'good/cluster/README.txt:1:1: metadata: missing required field',
      'good/cluster/README.txt:1:1: not a manifest: unknown field (known fields: apiVersion, kind, metadata, spec)',
    ]);
  });

  it('a VFIO assignment must be on the host its VM runs on', () => {
    expect(
      problems(
        ['-'],
        `${HEADER}kind: Host\nmetadata: {name: far}\nspec: {address: "ssh://far"}\n---\n` +
          `${HEADER}kind: VirtualMachine\nmetadata: {name: vm}\n---\n` +
          `${HEADER}kind: VfioAssignment\nmetadata: {name: a}\nspec:\n  address: 0000:01:00.0\n  vm: vm\n  host: far\n`,
      ),
    ).toEqual([
      '<stdin>:16:9: VfioAssignment/a: spec.host: VirtualMachine "vm" runs on host "local", not "far"',
    ]);
  });

  it('checks what the schema cannot: CPU features, ports, CIDRs, backing files, hosts, PCI devices', () => {
    const doc = (kind: string, name: string, spec: string) =>
      `${HEADER}kind: ${kind}\nmetadata: {name: ${name}}\nspec: ${spec}\n---\n`;
    expect(
      problems(
        ['-'],
        doc(
          'VirtualMachine',
          'vm',
          '{cpu: "host,+avx,-avx", shutdownTimeout: 1h, disks: [{disk: d}, {disk: d}], devices: [' +
            '{class: serial-port, port: 0x2f8, serial: stdio}, {class: debug-console, port: 0x2f9}]}',
        ) + // lines 1-4
          doc('Network', 'n', '{cidr: 10.0.2.1/24}') + // 6-9
          doc('Disk', 'd', '{size: 1G, backingFile: base.img}') + // 11-14
          doc('Host', 'local', '{address: "ssh://me@elsewhere"}') + // 16-19
          doc('Host', 'far', '{address: "ssh://far:70000"}') + // 21-24
          doc('VfioAssignment', 'a', '{address: "0000:01:00.0", vm: vm, host: far}') + // 26-29
          doc('VfioAssignment', 'b', '{address: "01:00.0", vm: vm}') + // 31-34
          doc('VfioAssignment', 'c', '{address: "0000:01:00.0", vm: vm}'), // 36-39
      ),
    ).toEqual([
      '<stdin>:4:13: VirtualMachine/vm: spec.cpu: CPU feature "avx" is both added and removed',
      '<stdin>:4:78: VirtualMachine/vm: spec.disks[1].disk: Disk "d" is already attached as disks[0]',
      '<stdin>:4:135: VirtualMachine/vm: spec.devices[0].serial: stdio is not available to a VM run by mvctl ' +
        '(use none, {file: path} or {socket: path})',
      '<stdin>:4:172: VirtualMachine/vm: spec.devices[1].port: port 0x2f9 is already used by spec.devices[0] (serial-port)',
      '<stdin>:9:14: Network/n: spec.cidr: invalid CIDR "10.0.2.1/24": host bits are set (did you mean 10.0.2.0/24?)',
      '<stdin>:14:31: Disk/d: spec.backingFile: a backing file needs format qcow2 (this disk is raw)',
      '<stdin>:19:17: Host/local: spec.address: the host named local is this machine: its address must be local',
      '<stdin>:24:17: Host/far: spec.address: invalid port 70000: expected 1..65535',
      '<stdin>:39:17: VfioAssignment/c: spec.address: PCI device 0000:01:00.0 on host "local" is already assigned ' +
        'by VfioAssignment/b',
    ]);
  });
});

describe('loadManifests: firmware boot fields', () => {
  const vm = (lines: string[]) =>
    `${HEADER}kind: VirtualMachine\nmetadata: {name: vm}\nspec:\n${lines.map((l) => `  ${l}\n`).join('')}`;

  it('normalises machine, firmware image, boot, fw_cfg and option ROMs', () => {
    const [r] = load(
      ['-'],
      vm([
        'machine: {type: pc, debug: false}',
        'firmware: {bios: {image: fw/bios.bin}}',
        'boot: {order: [pxe]}',
        'fwCfg: [{name: opt/a, file: a.json}]',
        'devices: [{class: option-rom, name: pxe, file: ~/roms/pxe.rom}]',
      ]),
    );
    const spec = r ? specOf(r as DesiredResource & { kind: 'VirtualMachine' }) : undefined;
    expect(spec).toMatchObject({
      machine: 'pc',
      firmware: { bios: { image: fx('fw', 'bios.bin') } },
      acpi: true,
      uuid: defaultVmUuid('vm'),
      boot: { order: ['pxe'], menu: false, menuTimeout: 0 },
      fwCfg: [{ name: 'opt/a', file: fx('a.json') }],
      devices: [{ class: 'option-rom', name: 'pxe', file: join(homedir(), 'roms/pxe.rom') }],
    });
  });

  it('reports bad values at their line and column', () => {
    expect(
      problems(
        ['-'],
        vm([
          'uuid: not-a-uuid', // 5
          'fwCfg: [{name: etc/x, string: y}]', // 6
          'machine: {type: q35}', // 7
          'firmware: {bios: {path: x}}', // 8
          'boot: {menuTimeout: -1}', // 9
        ]),
      ),
    ).toEqual([
      '<stdin>:5:9: VirtualMachine/vm: spec.uuid: invalid UUID "not-a-uuid": expected 8-4-4-4-12 hex digits, e.g. 0b4f2f2e-7d1c-4b5a-9f3e-2a6c8d1e5f70',
      '<stdin>:6:18: VirtualMachine/vm: spec.fwCfg[0].name: invalid fw_cfg name "etc/x": user files must be named opt/..., e.g. opt/org.example/config',
      '<stdin>:7:19: VirtualMachine/vm: spec.machine.type: expected "pc" (the only supported value), got "q35"',
      '<stdin>:8:20: VirtualMachine/vm: spec.firmware.bios.image: missing required field',
      '<stdin>:8:21: VirtualMachine/vm: spec.firmware.bios.path: unknown field (known fields: image)',
      '<stdin>:9:23: VirtualMachine/vm: spec.boot.menuTimeout: must be >= 0, got -1',
    ]);
  });

  it('checks boot order names, device names and fw_cfg names', () => {
    expect(
      problems(
        ['-'],
        vm([
          'boot: {order: [pxe, cd, pxe]}', // 5
          'fwCfg:', // 6
          '  - {name: opt/a, string: x}', // 7
          '  - {name: opt/a, string: y}', // 8
          'devices:', // 9
          '  - {class: option-rom, name: pxe, file: a.rom}', // 10
          '  - {class: option-rom, name: pxe, file: b.rom}', // 11
        ]),
      ),
    ).toEqual([
      '<stdin>:5:23: VirtualMachine/vm: spec.boot.order[1]: no device named "cd" (named devices: pxe)',
      '<stdin>:5:27: VirtualMachine/vm: spec.boot.order[2]: "pxe" is already listed at boot.order[0]',
      '<stdin>:8:14: VirtualMachine/vm: spec.fwCfg[1].name: fw_cfg name "opt/a" is already used by fwCfg[0]',
      '<stdin>:11:33: VirtualMachine/vm: spec.devices[1].name: device name "pxe" is already used by devices[0]',
    ]);
  });
  it('refuses option ROMs in a VM that boots its kernel directly, at each ROM', () => {
    const why = 'an option ROM needs firmware: bios (a direct kernel boot runs no firmware)';
    const devices = [
      'devices:', // 6
      '  - {class: debug-console, port: 0x402}', // 7
      '  - {class: option-rom, name: pxe, file: a.rom}', // 8
      '  - class: option-rom', // 9
      '    name: disk', // 10
      '    file: b.rom', // 11
    ];
    expect(problems(['-'], vm(['firmware: {kernel: /boot/vmlinux}', ...devices]))).toEqual([
      `<stdin>:8:7: VirtualMachine/vm: spec.devices[1]: ${why}`,
      `<stdin>:9:7: VirtualMachine/vm: spec.devices[2]: ${why}`,
    ]);
    // The BIOS (the default, or an image) runs them.
    for (const firmware of ['firmware: bios', 'firmware: {bios: {image: bios.bin}}', 'acpi: true']) {
      const [r] = load(['-'], vm([firmware, ...devices]));
      expect(r?.spec, firmware).toMatchObject({
        devices: [{ class: 'debug-console' }, { class: 'option-rom' }, { class: 'option-rom' }],
      });
    }
  });
});

describe('loadManifests: disks and storage devices', () => {
  const disk = (name: string, more = '') =>
    `---\n${HEADER}kind: Disk\nmetadata: {name: ${name}}\nspec: {size: 1G${more}}\n`;
  const vm = (name: string, lines: string[]) =>
    `---\n${HEADER}kind: VirtualMachine\nmetadata: {name: ${name}}\nspec:\n${lines.map((l) => `  ${l}\n`).join('')}`;
  const DISKS = ['root', 'data', 'cd', 'fd', 'e'].map((n) => disk(n)).join('');
  const vmSpec = (text: string) => {
    const r = load(['-'], text).find((x) => x.kind === 'VirtualMachine');
    return r?.spec as NormalizedVirtualMachineSpec;
  };

  it('attaches disks on virtio by default, a cdrom always read-only, and boots them by Disk name', () => {
    const spec = vmSpec(
      vm('web', [
        'boot: {order: [cd, root]}',
        'disks:',
        '  - {disk: root}',
        '  - {disk: data, bus: ata, readonly: true}',
        '  - {disk: cd, bus: cdrom}',
        '  - {disk: fd, bus: floppy}',
      ]) + DISKS,
    );
    expect(spec.disks).toEqual([
      { disk: 'root', bus: 'virtio', readonly: false },
      { disk: 'data', bus: 'ata', readonly: true },
      { disk: 'cd', bus: 'cdrom', readonly: true },
      { disk: 'fd', bus: 'floppy', readonly: false },
    ]);
    expect(spec.boot.order).toEqual(['cd', 'root']);
  });

  it('normalises storage devices of spec.devices with their defaults and absolute images', () => {
    const spec = vmSpec(
      vm('web', [
        'devices:',
        '  - {class: virtio-block, name: scratch, image: img/scratch.qcow2, format: qcow2, snapshot: true}',
        '  - {class: ata-disk, name: old, image: img/old.img, unit: 1}',
        '  - {class: ata-cdrom, name: installer, image: ~/isos/debian.iso}',
        '  - {class: ata-cdrom, name: empty}',
        '  - {class: floppy, name: a, image: img/a.img, drive: 1}',
      ]),
    );
    expect(spec.devices).toEqual([
      {
        class: 'virtio-block',
        name: 'scratch',
        image: fx('img', 'scratch.qcow2'),
        format: 'qcow2',
        readonly: false,
        snapshot: true,
        serial: 'scratch',
        queues: 1,
      },
      {
        class: 'ata-disk',
        name: 'old',
        image: fx('img', 'old.img'),
        readonly: false,
        snapshot: false,
        unit: 1,
      },
      { class: 'ata-cdrom', name: 'installer', image: join(homedir(), 'isos/debian.iso') },
      { class: 'ata-cdrom', name: 'empty' },
      { class: 'floppy', name: 'a', image: fx('img', 'a.img'), readonly: false, drive: 1 },
    ]);
  });

  it('takes I/O limits on virtio and ata attachments, not on a cdrom', () => {
    const text =
      vm('web', [
        'disks:', // 6
        '  - {disk: root, throttle: {bytesPerSecond: 1048576, iops: 100}}', // 7
        '  - {disk: cd, bus: cdrom, throttle: {iops: 10}}', // 8
      ]) + DISKS;
    expect(problems(['-'], text)).toEqual([
      '<stdin>:8:40: VirtualMachine/web: spec.disks[1].throttle: I/O limits are for bus virtio or ata, not cdrom',
    ]);
    const rs = load(
      ['-'],
      vm('web', ['disks:', '  - {disk: root, throttle: {bytesPerSecond: 1048576, iops: 100}}']) + DISKS,
    );
    const spec = byKey(rs).get('VirtualMachine/web')?.spec as { disks: unknown[] };
    // Fixed key order: equal limits serialise equally whatever the manifest's order.
    expect(JSON.stringify(spec.disks[0])).toBe(
      '{"disk":"root","bus":"virtio","readonly":false,"throttle":{"iops":100,"bytesPerSecond":1048576}}',
    );
  });

  it('checks attachments: a writable cdrom, boot names, names shared with devices, positions', () => {
    expect(
      problems(
        ['-'],
        vm('web', [
          'boot: {order: [root, rot]}', // 6
          'disks:', // 7
          '  - {disk: root, bus: ata}', // 8
          '  - {disk: cd, bus: cdrom, readonly: false}', // 9
          '  - {disk: data, bus: ata}', // 10
          '  - {disk: e, bus: ata}', // 11
          'devices:', // 12
          '  - {class: ata-cdrom, name: root}', // 13
          '  - {class: floppy, name: a, drive: 1}', // 14
          '  - {class: floppy, name: b, drive: 1}', // 15
        ]) + DISKS,
      ),
    ).toEqual([
      '<stdin>:6:24: VirtualMachine/web: spec.boot.order[1]: no device named "rot" (did you mean "root"?)',
      '<stdin>:9:40: VirtualMachine/web: spec.disks[1].readonly: a cdrom is always read-only (remove readonly: false)',
      '<stdin>:13:7: VirtualMachine/web: spec.devices[0]: no free IDE position: the controller has 4 (channel 0/1 × unit 0/1), used by ' +
        'spec.disks[0] (Disk "root"), spec.disks[1] (Disk "cd"), spec.disks[2] (Disk "data"), spec.disks[3] (Disk "e")',
      '<stdin>:13:32: VirtualMachine/web: spec.devices[0].name: device name "root" is already used by the Disk attached as spec.disks[0]',
      '<stdin>:15:39: VirtualMachine/web: spec.devices[2].drive: floppy drive 1 is already used by spec.devices[1] (floppy "a")',
    ]);
  });

  it('claims the ports of the IDE channels, and of the floppy controller with a floppy attached', () => {
    const devices = [
      'devices:',
      '  - {class: debug-console, port: 0x170}',
      '  - {class: debug-console, port: 0x3f4}',
    ];
    expect(problems(['-'], vm('web', devices))).toEqual([
      '<stdin>:7:36: VirtualMachine/web: spec.devices[0].port: port 0x170 is already used by the secondary IDE channel',
    ]);
    expect(problems(['-'], vm('web', ['disks: [{disk: fd, bus: floppy}]', ...devices]) + DISKS)).toEqual([
      '<stdin>:8:36: VirtualMachine/web: spec.devices[0].port: port 0x170 is already used by the secondary IDE channel',
      '<stdin>:9:36: VirtualMachine/web: spec.devices[1].port: port 0x3f4 is already used by the floppy controller',
    ]);
  });

  it('refuses a Disk that one VM writes and another attaches, and two Disks on one file', () => {
    const text =
      vm('a', ['disks: [{disk: root}, {disk: data, readonly: true}]']) + // line 6
      vm('b', ['disks: [{disk: data, readonly: true}]']) + // 12
      vm('c', ['disks: [{disk: root, readonly: true}]']) + // 18
      disk('root') +
      disk('data', ', path: /var/lib/d.img') + // 28
      disk('copy', ', path: /var/lib/d.img'); // 33
    expect(problems(['-'], text)).toEqual([
      '<stdin>:18:18: VirtualMachine/c: spec.disks[0].disk: Disk "root" is also attached by VirtualMachine/a, ' +
        'and VirtualMachine/a writes it; a Disk can be shared only when every VM attaches it read-only (readonly: true)',
      '<stdin>:33:24: Disk/copy: spec.path: /var/lib/d.img is already the file of Disk/data',
    ]);
    // Read-only everywhere: shared.
    expect(
      load(
        ['-'],
        vm('a', ['disks: [{disk: data, readonly: true}]']) +
          vm('b', ['disks: [{disk: data, readonly: true}]']) +
          disk('data'),
      ),
    ).toHaveLength(3);
  });
});

describe('helpers', () => {
  it('parseDuration', () => {
    expect(parseDuration('30s')).toBe(30);
    expect(parseDuration('2m')).toBe(120);
    expect(parseDuration('1h1m1s')).toBe(3661);
    expect(parseDuration(45)).toBe(45);
    expect(() => parseDuration('')).toThrow(/invalid duration/);
    expect(() => parseDuration('1d')).toThrow(/invalid duration/);
  });

  it('canonicalCpu and canonicalCidr', () => {
    expect(canonicalCpu('host')).toBe('host');
    expect(canonicalCpu('baseline,+b,-a,+b')).toBe('baseline,-a,+b');
    expect(() => canonicalCpu('weird')).toThrow(/unknown CPU model/);
    expect(canonicalCidr('10.0.2.0/24')).toBe('10.0.2.0/24');
    expect(canonicalCidr('010.0.2.0/24')).toBe('10.0.2.0/24');
    expect(() => canonicalCidr('10.0.256.0/24')).toThrow(/0\.\.255/);
    expect(() => canonicalCidr('10.0.0.0/33')).toThrow(/0\.\.32/);
  });
});
