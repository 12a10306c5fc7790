/**
 * UUIDs for the SMBIOS system UUID (type 1): a configured one, normalised,
 * or one derived from the VM name, so that a VM keeps its UUID across
 * restarts (guests and licensing tools key on it) without state.
 */
// node:crypto on first use: a config with its uuid does not need it, and it costs start-up 6 ms.
import { lazyCrypto } from '../common/builtins.js';

/** 8-4-4-4-12 hex digits, either case. */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The namespace of VM-name UUIDs (fixed forever: changing it changes every VM's default UUID). */
export const VM_UUID_NAMESPACE = '186083a0-1b90-4b06-af1e-25e0bf4b815e';

/** A UUID in canonical form (lowercase). Throws an Error for anything that is not 8-4-4-4-12 hex digits. */
export function normaliseUuid(uuid: string): string {
  if (!UUID_RE.test(uuid)) {
    throw new Error(`invalid UUID ${JSON.stringify(uuid)}: expected 8-4-4-4-12 hex digits`);
  }
  return uuid.toLowerCase();
}

const NAMESPACES = new Map<string, Buffer>();

/** A name-based UUID, version 5 (SHA-1), RFC 9562 section 5.5. */
export function uuidV5(namespace: string, name: string): string {
  let ns = NAMESPACES.get(namespace);
  if (ns === undefined) {
    ns = Buffer.from(normaliseUuid(namespace).replace(/-/g, ''), 'hex');
    NAMESPACES.set(namespace, ns);
  }
  const b = lazyCrypto()
    .hash('sha1', Buffer.concat([ns, Buffer.from(name, 'utf8')]), 'buffer')
    .subarray(0, 16);
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x50; // version 5
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80; // variant 10 (RFC 9562)
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The UUID of a VM that configures none: derived from its name, the same at every start. */
export function defaultVmUuid(name: string): string {
  return uuidV5(VM_UUID_NAMESPACE, name);
}
