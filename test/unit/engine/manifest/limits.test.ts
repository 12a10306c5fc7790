/**
 * Bad input costs bounded time and memory and gives one clear line naming
 * the file: huge, binary and non-UTF-8 files, alias bombs, deep nesting.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManifestError, loadManifests } from '../../../../src/engine/manifest/load.js';
import { MANIFEST_LIMITS } from '../../../../src/engine/manifest/limits.js';
import { assertBuilt, repoRoot } from '../../../helpers/mvisor.js';

const dir = mkdtempSync(join(tmpdir(), 'mvisor-limits-'));
const DISK = 'apiVersion: mvisor.dev/v1alpha1\nkind: Disk\nmetadata: {name: d}\n';

function problemsOf(name: string, content: string | Buffer): string[] {
  const file = join(dir, name);
  writeFileSync(file, content);
  try {
    loadManifests([name], { cwd: dir });
  } catch (e) {
    if (e instanceof ManifestError) return e.lines;
    throw e;
  }
  return [];
}

describe('manifest input limits', () => {
  it('a file over the size limit is refused from its size, unread', () => {
    const file = join(dir, 'huge.yaml');
    writeFileSync(file, '');
    truncateSync(file, 50 * 1024 * 1024);
    let lines: string[] = [];
    try {
      loadManifests(['huge.yaml'], { cwd: dir });
    } catch (e) {
      lines = (e as ManifestError).lines;
    }
    expect(lines).toEqual(['huge.yaml: 50.0 MiB is over the 16.0 MiB limit for a manifest file']);
  });

  it('binary and non-UTF-8 files: one line each, with where', () => {
    expect(problemsOf('bin.yaml', Buffer.from([...Buffer.from('kind: x\nab'), 0, 1, 2]))).toEqual([
      'bin.yaml:2:3: a binary file (a zero byte), not YAML text',
    ]);
    expect(problemsOf('latin1.yaml', Buffer.from([...Buffer.from('a: '), 0xe9, 0x74, 0xe9]))).toEqual([
      'latin1.yaml:1:4: not UTF-8 text',
    ]);
  });

  it('an alias bomb stops at the alias limit; deep flow nesting and indentation are refused before parsing', () => {
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++)
      levels.push(
        `b${i}: &b${i} [${Array(10)
          .fill(i === 1 ? '*a' : `*b${i - 1}`)
          .join(', ')}]`,
      );
    const bomb = problemsOf('bomb.yaml', levels.join('\n') + '\n');
    expect(bomb).toHaveLength(1);
    expect(bomb[0]).toMatch(/^bomb\.yaml:1:1: .*alias/i);
    expect(problemsOf('deep.yaml', `${DISK}spec: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`)).toEqual([
      `deep.yaml:4:${7 + MANIFEST_LIMITS.maxFlowDepth}: more than ${MANIFEST_LIMITS.maxFlowDepth} nested [ ] or { } collections`,
    ]);
    expect(problemsOf('indent.yaml', `${DISK}spec:\n${' '.repeat(600)}size: 1M\n`)).toEqual([
      `indent.yaml:5:1: indented 600 columns, more than the ${MANIFEST_LIMITS.maxIndent} a manifest may nest`,
    ]);
    // Brackets in quoted strings and comments, and an apostrophe in a plain scalar, are not nesting.
    const fine = `${DISK}# ${'['.repeat(200)}\nspec: {size: 1M, path: "${'['.repeat(200)}.img"} # it's fine\n`;
    expect(problemsOf('fine.yaml', fine)).toEqual([]);
  });

  it('a 12 MB binary file given to the real mvctl: exit 1, one short line on stderr, bounded memory', () => {
    assertBuilt();
    const file = join(dir, 'blob.bin');
    writeFileSync(file, Buffer.alloc(12 * 1024 * 1024, 0xff)); // under the size limit, so it is read
    // Peak memory of the real process, written when it exits.
    const rssFile = join(dir, 'rss');
    const preload = join(dir, 'rss.cjs');
    writeFileSync(
      preload,
      `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(rssFile)}, String(process.resourceUsage().maxRSS)));`,
    );
    const r = spawnSync(
      process.execPath,
      [
        '--require',
        preload,
        join(repoRoot, 'bin/mvctl.js'),
        'plan',
        '-f',
        file,
        '--state',
        join(dir, 'st.db'),
      ],
      { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } },
    );
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`${file}:1:1: not UTF-8 text`);
    expect(Number(readFileSync(rssFile, 'utf8')) / 1024).toBeLessThan(200); // MiB
  });
});
