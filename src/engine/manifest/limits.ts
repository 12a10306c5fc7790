/**
 * Bounds on what mvctl reads as a manifest, checked before the YAML parser
 * sees a byte: a file's size, binary or non-UTF-8 content, and nesting depth
 * (the yaml library runs out of memory on some ten thousand nested flow
 * collections, and expands aliases into a copy each). Each check gives one
 * message for the file; memory stays bounded by the size limit.
 */
import { closeSync, openSync, readSync } from 'node:fs';

export const MANIFEST_LIMITS = {
  /** Bytes per manifest file (10,000 VMs take about 3 MB). */
  maxBytes: 16 * 1024 * 1024,
  /** Nested flow collections ([ and {). */
  maxFlowDepth: 64,
  /** Leading spaces of a line (block nesting). */
  maxIndent: 512,
  /** Aliases resolved per document (yaml's own default). */
  maxAliases: 100,
} as const;

export type TextCheck = { text: string } | { problem: string; line?: number; col?: number };

const MiB = 1024 * 1024;
const sizeText = (n: number) => (n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : `${n} bytes`);

export function tooLarge(bytes: number): string {
  return `${sizeText(bytes)} is over the ${sizeText(MANIFEST_LIMITS.maxBytes)} limit for a manifest file`;
}

/** Reads at most maxBytes + 1 bytes of a file descriptor (stdin): never more into memory. */
export function readBounded(fd: number): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  const chunk = Buffer.alloc(64 * 1024);
  for (;;) {
    let n: number;
    try {
      n = readSync(fd, chunk, 0, chunk.length, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      if ((e as NodeJS.ErrnoException).code === 'EOF') break;
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(chunk.subarray(0, n)));
    total += n;
    if (total > MANIFEST_LIMITS.maxBytes) break;
  }
  return Buffer.concat(chunks);
}

/** Reads a file of at most maxBytes (the caller checked its size). */
export function readFileBounded(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    return readBounded(fd);
  } finally {
    closeSync(fd);
  }
}

/** Where byte `offset` of `buf` is, as a 1-based line and column (columns in bytes). */
function position(buf: Buffer, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = buf.indexOf(10); i !== -1 && i < offset; i = buf.indexOf(10, i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, col: offset - start + 1 };
}

/** The manifest text of `buf`, or the one problem that keeps it from being parsed. */
export function checkManifestBytes(buf: Buffer): TextCheck {
  if (buf.length > MANIFEST_LIMITS.maxBytes) return { problem: tooLarge(buf.length) };
  const nul = buf.indexOf(0);
  if (nul !== -1) return { problem: 'a binary file (a zero byte), not YAML text', ...position(buf, nul) };
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    return { problem: 'not UTF-8 text', ...position(buf, firstInvalidUtf8(buf)) };
  }
  const depth = nestingProblem(text);
  return depth ?? { text };
}

/** The offset of the first byte that does not start a well-formed UTF-8 sequence (RFC 3629). */
function firstInvalidUtf8(buf: Buffer): number {
  for (let i = 0; i < buf.length;) {
    const b = buf[i]!;
    const n =
      b < 0x80 ? 1 : b >= 0xc2 && b < 0xe0 ? 2 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xf0 && b < 0xf5 ? 4 : 0;
    if (n === 0 || i + n > buf.length) return i;
    for (let k = 1; k < n; k++) if ((buf[i + k]! & 0xc0) !== 0x80) return i;
    i += n;
  }
  return buf.length;
}

/**
 * Flow nesting ([ and { outside quotes and comments) and indentation beyond
 * the limits, with the position where it first goes too deep.
 */
function nestingProblem(text: string): { problem: string; line: number; col: number } | undefined {
  let depth = 0;
  let line = 1;
  let lineStart = 0;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n') {
      line++;
      lineStart = i + 1;
      if (quote === "'") continue; // single-quoted scalars may span lines
      let indent = 0;
      while (text[i + 1 + indent] === ' ') indent++;
      if (indent > MANIFEST_LIMITS.maxIndent)
        return {
          problem: `indented ${indent} columns, more than the ${MANIFEST_LIMITS.maxIndent} a manifest may nest`,
          line,
          col: 1,
        };
      continue;
    }
    if (quote !== undefined) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    // A quote opens a quoted scalar only where a scalar starts (not in `it's`).
    if ((c === '"' || c === "'") && (i === lineStart || ' \t[{,:-'.includes(text[i - 1] ?? ' '))) quote = c;
    else if (c === '#' && (i === lineStart || text[i - 1] === ' ' || text[i - 1] === '\t')) {
      const end = text.indexOf('\n', i);
      i = (end === -1 ? text.length : end) - 1;
    } else if (c === '[' || c === '{') {
      if (++depth > MANIFEST_LIMITS.maxFlowDepth)
        return {
          problem: `more than ${MANIFEST_LIMITS.maxFlowDepth} nested [ ] or { } collections`,
          line,
          col: i - lineStart + 1,
        };
    } else if ((c === ']' || c === '}') && depth > 0) depth--;
  }
  return undefined;
}
