/**
 * Sizes in configs: a number of bytes, or a string such as `128M`, `2G`,
 * `512MiB` (K, M, G, T are powers of 1024; an optional `i` and `B` are
 * accepted). The same pattern is in schema/vmm-config.schema.json.
 */

/** Must equal `definitions.MemorySize.pattern` in the schema (a unit test checks). */
export const SIZE_PATTERN = '^[0-9]+(K|M|G|T)i?B?$';

const SIZE_RE = new RegExp(SIZE_PATTERN);
const UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Parses a size to a number of bytes; throws a RangeError with a one-line message. */
export function parseSize(s: string | number): number {
  if (typeof s === 'number') {
    if (!Number.isSafeInteger(s) || s < 0) {
      throw new RangeError(`invalid size ${s}: expected a whole number of bytes`);
    }
    return s;
  }
  if (typeof s !== 'string') {
    throw new RangeError(
      `invalid size: expected a number of bytes or a string such as 128M, got ${typeof s}`,
    );
  }
  if (!SIZE_RE.test(s)) {
    throw new RangeError(
      `invalid size ${JSON.stringify(s)}: expected a number of bytes or a number with a K, M, G or T suffix ` +
        `(powers of 1024), e.g. 512M, 2G, 64KiB`,
    );
  }
  const digits = /^[0-9]+/.exec(s)?.[0] ?? '';
  const unit = UNITS[s[digits.length] ?? ''] ?? 1;
  const bytes = Number(digits) * unit;
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`invalid size ${JSON.stringify(s)}: too large`);
  return bytes;
}

/** Formats a byte count with the largest unit that divides it: `2 MiB`, `4100 bytes`. */
export function formatSize(bytes: number): string {
  for (const [name, unit] of [
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit} ${name}`;
  }
  return `${bytes} bytes`;
}
