/**
 * The loader's fast path (js-yaml, ./fast-yaml.ts) must read every manifest
 * exactly as the `yaml` path does: the same scalar values, the same document
 * starts, and the same loaded resources, positions included.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LineCounter, parse, parseAllDocuments } from 'yaml';
import { fastParse } from '../../../../src/engine/manifest/fast-yaml.js';
import { fieldSource, loadManifests } from '../../../../src/engine/manifest/load.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));

const SCALARS = [
  ...['~', 'null', 'Null', 'NULL', 'nULL', '', 'true', 'True', 'TRUE', 'tRue', 'false', 'False', 'FALSE'],
  ...['yes', 'no', 'on', 'off', 'y', 'n', 'Y', '0', '-0', '+5', '-12', '007', '0o17', '0O17', '0o8'],
  ...['0x1F', '0X1F', '0xg', '-0x1', '0b101', '1_000', '1e3', '1E3', '-1.5e-3', '.5', '5.', '+.5', '1.e2'],
  ...['+.inf', '-.Inf', '.INF', '.NaN', '.nan', '.NAN', 'nan', 'inf', '1:20', '2001-12-14', '0.1', '.'],
  ...['12345678901234567890', '1.0.0', '=', '<<', '64M', '0x', '0o', '-', '- a', "'q'", '"q"', '"1"'],
  ...['a b', 'console=ttyS0 root=/dev/vda', '[1, 2]', '{a: 1}', '!!str 5', '!!int "5"', '|\n  x\n'],
];

describe('fast YAML path', () => {
  it.each(SCALARS)('reads the scalar %j as yaml does', (s) => {
    const text = `v: ${s}\n`;
    let slow: { v: unknown };
    try {
      slow = parse(text) as { v: unknown };
    } catch {
      expect(fastParse(text)).toBeUndefined();
      return;
    }
    const fast = fastParse(text);
    // Tags are left to yaml (see below); every other scalar takes the fast path.
    if (s.startsWith('!')) return expect(fast).toBeUndefined();
    expect(fast).toHaveLength(1);
    // NaN as text, so that toEqual compares it; -0 and 0 stay apart.
    const shown = (v: unknown) => (Number.isNaN(v) ? 'NaN' : v);
    expect(shown((fast?.[0]?.value as { v: unknown }).v)).toEqual(shown(slow.v));
  });

  it('gives the document starts yaml gives, leaving out empty documents', () => {
    const text =
      '# head\n---\n# c\n\n  a: 1\n---\n---\n~\n--- {b: 2}\n---\n- x\n...\n---\nkind: X # y\nm:\n  n: 1\n---\n';
    const lc = new LineCounter();
    const slow = parseAllDocuments(text, { lineCounter: lc })
      .filter((d) => d.contents !== null && d.toJS() !== null)
      .map((d) => ({ value: d.toJS() as unknown, ...lc.linePos(d.contents?.range?.[0] ?? 0) }));
    expect(fastParse(text)).toEqual(slow);
  });

  it.each([
    ['a YAML 1.1 directive', '%YAML 1.1\n---\nv: 010\n'],
    ['a null key', 'labels: {~: x}\n'],
    ['a null key (null)', 'labels:\n  null: x\n'],
    ['an empty key', 'labels:\n  : x\n'],
    ['a complex key', '? [memory]\n: 1G\n'],
    ['a flow collection key', '[memory]: 1G\n'],
    ['a comment right after a quoted scalar', 'name: "web"#x\n'],
    ['a byte-order mark', '\uFEFFkind: Disk\n'],
    ['an anchor on the root', '--- &a\nkind: Disk\n'],
    ['a tag on the root', '--- !!map\nkind: Disk\n'],
  ])('leaves %s to yaml', (_what, text) => {
    expect(fastParse(text)).toBeUndefined();
  });

  it('takes the fast path for ordinary manifests', () => {
    expect(
      fastParse('kind: Disk\nmetadata: {name: d, labels: {a: b}}\nspec: {size: 1M, path: "/x#y"}\n'),
    ).toEqual([
      {
        value: {
          kind: 'Disk',
          metadata: { name: 'd', labels: { a: 'b' } },
          spec: { size: '1M', path: '/x#y' },
        },
        line: 1,
        col: 1,
      },
    ]);
  });

  it('leaves files with aliases, unknown tags or syntax errors to yaml', () => {
    expect(fastParse('a: &x 1\nb: *x\n')).toBeUndefined();
    expect(fastParse('a: !custom 1\n')).toBeUndefined();
    expect(fastParse('a: [1\n')).toBeUndefined();
    expect(fastParse('a: 1\na: 2\n')).toBeUndefined();
  });

  it('loads every example and fixture manifest as the yaml path does, positions included', () => {
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (/\.ya?ml$/.test(name) && !p.includes('/bad/') && !p.endsWith('pipeline.yml')) files.push(p);
      }
    };
    walk(join(repo, 'examples'));
    walk(join(repo, 'test/fixtures/manifests/good'));
    expect(files.length).toBeGreaterThan(3);
    let compared = 0;
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      if (text.includes('*')) continue;
      let fast;
      try {
        fast = loadManifests(['-'], { cwd: dirname(file), stdin: text });
      } catch {
        continue; // One file of a manifest set split over several files.
      }
      // The same text with a `*` in a trailing comment takes the yaml path.
      const slow = loadManifests(['-'], { cwd: dirname(file), stdin: `${text}\n# *\n` });
      compared++;
      const strip = (rs: typeof fast) =>
        rs.map((r) => ({
          ...r,
          source: { line: r.source.line, col: r.source.col },
          name: [fieldSource(r, ['metadata', 'name']).line, fieldSource(r, ['metadata', 'name']).col],
        }));
      expect(strip(fast), file).toEqual(strip(slow));
    }
    expect(compared).toBeGreaterThan(3);
  });
});
