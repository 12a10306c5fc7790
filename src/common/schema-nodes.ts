/**
 * The JSON Schema nodes the loaders read (draft-07 with mvisor's
 * annotations), and how to find one by JSON pointer or classify it (unions,
 * literals, the JSON kinds it accepts).
 */

/** The part of JSON Schema (draft-07) the loaders read, with mvisor's annotations. */
export interface SchemaNode {
  $id?: string;
  $ref?: string;
  title?: string;
  description?: string;
  type?: string | readonly string[];
  enum?: readonly unknown[];
  const?: unknown;
  default?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  multipleOf?: number;
  properties?: Readonly<Record<string, SchemaNode>>;
  required?: readonly string[];
  additionalProperties?: boolean | SchemaNode;
  propertyNames?: SchemaNode;
  items?: SchemaNode;
  oneOf?: readonly SchemaNode[];
  anyOf?: readonly SchemaNode[];
  definitions?: Readonly<Record<string, SchemaNode>>;
  /** How a change to the field is applied: 'in-place' or 'replace'. */
  'x-mvisor-update'?: string;
  /** The value may grow in place, never shrink. */
  'x-mvisor-grow-only'?: boolean;
  /** What a valid value looks like (used in error messages). */
  'x-mvisor-expected'?: string;
}

export function escapePointer(seg: string): string {
  return seg.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The node at a JSON `pointer` below `root`. Throws for a pointer that names nothing (an internal error). */
export function schemaNodeAt(root: unknown, pointer: string, name: string = pointer): SchemaNode {
  let node = root;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (typeof node !== 'object' || node === null || !(seg in node)) {
      throw new Error(`internal: no schema at ${name}`);
    }
    node = (node as Record<string, unknown>)[seg];
  }
  return node as SchemaNode;
}

export function unionKey(node: SchemaNode): 'oneOf' | 'anyOf' | undefined {
  return node.oneOf ? 'oneOf' : node.anyOf ? 'anyOf' : undefined;
}

/**
 * `device` for a reference to `/definitions/Device` (the JSON pointer, or
 * the part of a URI after `#`), lower-cased for messages; else ''.
 */
export function definitionName(ref: string): string {
  const m = /^\/definitions\/([^/]+)$/.exec(ref.slice(ref.indexOf('#') + 1));
  return m?.[1] ? m[1].replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase() : '';
}

export function isLiteral(n: SchemaNode): boolean {
  return (n.enum !== undefined || n.const !== undefined) && n.properties === undefined;
}

export type JsonKind = 'null' | 'boolean' | 'integer' | 'number' | 'string' | 'array' | 'object';

export function jsonKind(v: unknown): JsonKind {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'boolean';
  return 'object';
}

export function acceptsKind(n: SchemaNode, kind: JsonKind): boolean {
  let types: readonly string[];
  if (n.type !== undefined) types = typeof n.type === 'string' ? [n.type] : n.type;
  else if (n.enum !== undefined) types = n.enum.map(jsonKind);
  else if (n.const !== undefined) types = [jsonKind(n.const)];
  else return true;
  return types.includes(kind) || (kind === 'integer' && types.includes('number'));
}
