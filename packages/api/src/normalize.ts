/**
 * The canonical form of a config object: what translation consumes and what content hashes are taken
 * of. Same meaning, same bytes:
 * - `apiVersion` is the kind's canonical `group/v1`, `metadata.namespace` defaults to `default`;
 * - empty lists and maps are dropped (protobuf: empty repeated/map == unset), as are `null`s;
 * - scalar fields without presence at their zero value (`0`, `""`, `false`, first enum value) are
 *   dropped (protobuf: zero == unset), except members of a oneof and wrapper fields
 *   (`BoolValue`, `UInt32Value`, ...) whose zero value means something;
 * - object keys are sorted (code-point order) at every level; list order is kept (it is meaningful).
 */
import { isObject } from './decode.js';
import { ConfigKind, type ConfigObject, type ObjectMeta } from './kinds.js';
import type { FieldSchema, MessageSchema } from './schema.js';
import { SPEC_SCHEMAS } from './spec-schemas.js';

function isZero(field: FieldSchema, v: unknown): boolean {
  switch (field.t) {
    case 'string':
    case 'duration':
      return v === '';
    case 'bool':
      return !field.presence && v === false;
    case 'int':
    case 'double':
      return !field.presence && v === 0;
    case 'enum':
      return v === field.values[0];
    default:
      return false;
  }
}

function normValue(field: FieldSchema, v: unknown): unknown {
  switch (field.t) {
    case 'message':
      return isObject(v) ? normMessage(field.of(), v) : v;
    case 'list':
      return Array.isArray(v) ? v.map((x) => normValue(field.of, x)) : v;
    case 'map': {
      if (!isObject(v)) return v;
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) {
        if (v[k] !== null && v[k] !== undefined) out[k] = normValue(field.of, v[k]);
      }
      return out;
    }
    default:
      return v;
  }
}

function normMessage(schema: MessageSchema, v: Record<string, unknown>): Record<string, unknown> {
  const oneofMembers = new Set(schema.oneofs.flat());
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).sort()) {
    const raw = v[k];
    const field = schema.fields[k];
    if (raw === null || raw === undefined) continue;
    if (field === undefined) {
      out[k] = sortDeep(raw);
      continue;
    }
    const n = normValue(field, raw);
    if (
      (field.t === 'list' && Array.isArray(n) && n.length === 0) ||
      (field.t === 'map' && isObject(n) && Object.keys(n).length === 0)
    ) {
      continue;
    }
    if (!oneofMembers.has(k) && isZero(field, n)) continue;
    out[k] = n;
  }
  return out;
}

/** Sorts object keys recursively; used for values outside any schema. */
export function sortDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortDeep);
  if (!isObject(v)) return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).sort()) if (v[k] !== undefined && v[k] !== null) out[k] = sortDeep(v[k]);
  return out;
}

function normMeta(m: ObjectMeta): ObjectMeta {
  const out = sortDeep({ ...m, namespace: m.namespace || 'default' }) as Record<string, unknown>;
  for (const k of ['labels', 'annotations'] as const) {
    const v = out[k];
    if (isObject(v) && Object.keys(v).length === 0) delete out[k];
  }
  for (const k of ['resourceVersion', 'uid', 'creationTimestamp'] as const) if (out[k] === '') delete out[k];
  return out as unknown as ObjectMeta;
}

/**
 * Returns the canonical form of a config object (see the module comment). Idempotent:
 * `normalize(normalize(x))` deep-equals `normalize(x)`, and `JSON.stringify` of the result is stable.
 * Does not validate; pass objects that `validateConfig` accepted.
 */
export function normalize<C extends ConfigObject>(obj: C): C {
  const info = ConfigKind[obj.kind];
  const schema = SPEC_SCHEMAS[obj.kind];
  const spec = isObject(obj.spec) ? normMessage(schema, obj.spec as Record<string, unknown>) : {};
  return {
    apiVersion: info.apiVersion,
    kind: obj.kind,
    metadata: normMeta(obj.metadata),
    spec,
  } as unknown as C;
}

/** `JSON.stringify` of the canonical form: identical config gives identical bytes. */
export function canonicalJSON(obj: ConfigObject): string {
  return JSON.stringify(normalize(obj));
}
