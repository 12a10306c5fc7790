/**
 * Canonical JSON and hashes of it. Specs are compared and fingerprinted by
 * content, never by key order: `{a: 1, b: 2}` and `{b: 2, a: 1}` hash alike.
 */

import { hash } from 'node:crypto';

/** JSON with object keys sorted at every level; `undefined` members are dropped as JSON.stringify does. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      out[key] = sortKeys((value as Record<string, unknown>)[key]);
    }
    return out;
  }
  return value;
}

/** `sha256:<hex>` of the canonical JSON of a value. */
export function hashJson(value: unknown): string {
  // One-shot hash(): for small inputs, about twice as fast as createHash().update().digest().
  return 'sha256:' + hash('sha256', canonicalJson(value), 'hex');
}
