/**
 * The fast path of the manifest loader: js-yaml for the values of a file
 * that needs no source positions beyond where each document starts.
 *
 * Why two YAML libraries: `yaml` keeps a position for every node, which the
 * loader's error messages need, but builds that tree at about 0.25 ms per
 * small document (2.4 s of a plan of 10,000 VMs); js-yaml only builds values
 * and is about eight times faster. So every file is first read with js-yaml;
 * the loader falls back to `yaml` (./load.ts) for the whole file when js-yaml
 * fails, when the file holds anything this path does not handle the same way
 * (aliases), or when a document is not valid, so that every message and
 * position comes from one parser. Positions of fields of valid documents
 * (a refused shrink, a duplicate name) are looked up lazily, with `yaml`.
 *
 * js-yaml resolves plain scalars with the types below, which follow the YAML
 * 1.2 core schema exactly as `yaml` does (the same patterns and conversions:
 * its `schema/core/*.js`), so that both paths give the same values; a unit
 * test compares them scalar by scalar.
 */
import jsYaml from 'js-yaml';

const scalar = (tag: string, test: RegExp, construct: (s: string) => unknown) =>
  new jsYaml.Type(`tag:yaml.org,2002:${tag}`, {
    kind: 'scalar',
    resolve: (s: unknown) => typeof s === 'string' && test.test(s),
    construct: (s: string) => construct(s),
  });

const FLOAT_SPECIAL = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const FLOAT = new RegExp(
  [
    FLOAT_SPECIAL.source,
    /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/.source,
    /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/.source,
  ].join('|'),
);

/** YAML 1.2 core, as the `yaml` library resolves it (its default for `parseAllDocuments`). */
const CORE_1_2 = jsYaml.FAILSAFE_SCHEMA.extend({
  implicit: [
    scalar('null', /^(?:~|[Nn]ull|NULL)?$/, () => null),
    scalar('bool', /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/, (s) => s[0] === 't' || s[0] === 'T'),
    scalar('int', /^(?:0o[0-7]+|[-+]?[0-9]+|0x[0-9a-fA-F]+)$/, (s) =>
      s.startsWith('0o')
        ? parseInt(s.slice(2), 8)
        : s.startsWith('0x')
          ? parseInt(s.slice(2), 16)
          : parseInt(s, 10),
    ),
    // One type per tag (js-yaml keeps only the last of several with the same tag).
    scalar('float', FLOAT, (s) => {
      if (!FLOAT_SPECIAL.test(s)) return parseFloat(s);
      return s.slice(-3).toLowerCase() === 'nan' ? NaN : s[0] === '-' ? -Infinity : Infinity;
    }),
  ],
});

/**
 * What the two libraries read differently, found in the text before parsing (a false alarm, such
 * as a `*` in a string, only costs the `yaml` path's time):
 */
const NEEDS_YAML: readonly RegExp[] = [
  // An alias (`*name`): counted and bounded by the `yaml` path.
  /\*/,
  // A directive (`%YAML 1.1` makes `yaml` switch to the 1.1 schema; js-yaml does not).
  /^%/m,
  // A byte-order mark (js-yaml drops it: columns on the first line would differ).
  /^\uFEFF/,
  // An anchor or tag (`&a`, `!!map`): where a document starts may differ.
  /(?:^|[\s[{,])[&!]/m,
  // Keys that are not plain scalars: `? complex`, a collection (`[a]: 1`), or null (`~: 1`, `: 1`),
  // which `yaml` turns into '' and js-yaml into 'null'.
  /(?:^|[\s[{,])\?(?:\s|$)/m,
  /[\]}][ \t]*:(?:\s|$)/,
  /(?:^[ \t]*(?:-[ \t]+)*|[{,][ \t]*)(?:~|null|Null|NULL)?[ \t]*:(?:\s|$)/m,
  // A comment right after a quoted scalar or a flow collection (`"web"#x`): an error for `yaml`.
  /["'\]}]#/,
];

/** One document's value and where its content starts (1-based, as `yaml`'s LineCounter gives it). */
export interface FastDoc {
  value: unknown;
  line: number;
  col: number;
}

/**
 * The documents of `text` read with js-yaml, empty ones left out, or undefined when the file must
 * take the `yaml` path (aliases, or anything js-yaml rejects: the `yaml` path then names the
 * problem and its position).
 */
export function fastParse(text: string): FastDoc[] | undefined {
  if (NEEDS_YAML.some((re) => re.test(text))) return undefined;
  const starts: { line: number; col: number }[] = [];
  let values: unknown[];
  try {
    values = jsYaml.loadAll(text, undefined, {
      schema: CORE_1_2,
      listener(event, state) {
        // A document's root node opens at depth 1 (composeNode counts itself before calling).
        if (event === 'open' && (state as unknown as { depth: number }).depth === 1) {
          starts.push({ line: state.line + 1, col: state.position - state.lineStart + 1 });
        }
      },
    });
  } catch {
    return undefined;
  }
  if (starts.length !== values.length) return undefined;
  const docs: FastDoc[] = [];
  values.forEach((value, i) => {
    if (value === null || value === undefined) return;
    const at = starts[i] as { line: number; col: number };
    docs.push({ value, line: at.line, col: at.col });
  });
  return docs;
}
