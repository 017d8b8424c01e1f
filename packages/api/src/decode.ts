/**
 * Structural decoding: checks a plain JSON value against a MessageSchema (types, unknown fields,
 * oneofs) and returns a cleaned copy without `null`s. Invalid fields are reported and left out of the
 * copy, so semantic checks can run on the rest with the right types.
 */
import { parseDurationNanos } from './duration.js';
import type { FieldPath, Reporter } from './path.js';
import type { FieldSchema, MessageSchema } from './schema.js';

/** Describes a JSON value's type for error messages. */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'object') return 'object';
  return typeof v;
}

/** True for a plain JSON object (not an array, not null). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function snakeToCamel(s: string): string {
  return s.includes('_') ? s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()) : s;
}

/** Decodes one message; returns undefined (with an error reported) when `value` is not an object. */
export function decodeMessage(
  value: unknown,
  schema: MessageSchema,
  path: FieldPath,
  r: Reporter,
): Record<string, unknown> | undefined {
  if (!isObject(value)) {
    r.add(path, `expected object, got ${typeName(value)}`);
    return undefined;
  }
  const out: Record<string, unknown> = {};
  const present = new Set<string>();
  for (const [written, raw] of Object.entries(value)) {
    const fieldPath = path.field(written);
    // Like protobuf's JSON decoding, accept the proto field name (`per_try_timeout`) as well as the
    // JSON name (`perTryTimeout`); the canonical form uses the JSON name.
    const name = Object.hasOwn(schema.fields, written) ? written : snakeToCamel(written);
    const field = Object.hasOwn(schema.fields, name) ? schema.fields[name] : undefined;
    if (field === undefined) {
      r.add(fieldPath, `unknown field "${written}" in ${schema.name}`);
      continue;
    }
    if (present.has(name)) {
      r.add(fieldPath, `field "${name}" is set twice (as "${written}" and its other spelling)`);
      continue;
    }
    present.add(name);
    if (raw === null || raw === undefined) continue;
    const decoded = decodeField(raw, field, fieldPath, r);
    if (decoded !== undefined) out[name] = decoded;
  }
  for (const group of schema.oneofs) {
    const set = group.filter((f) => Object.hasOwn(out, f));
    if (set.length > 1) r.add(path, `only one of ${group.join(', ')} may be set, got ${set.join(' and ')}`);
  }
  return out;
}

function decodeField(value: unknown, field: FieldSchema, path: FieldPath, r: Reporter): unknown {
  switch (field.t) {
    case 'string':
      if (typeof value === 'string') return value;
      r.add(path, `expected string, got ${typeName(value)}`);
      return undefined;
    case 'bool':
      if (typeof value === 'boolean') return value;
      r.add(path, `expected boolean, got ${typeName(value)}`);
      return undefined;
    case 'int': {
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        r.add(path, `expected integer, got ${typeof value === 'number' ? String(value) : typeName(value)}`);
        return undefined;
      }
      if (value < field.min || value > field.max) {
        r.add(path, `integer ${value} out of range ${field.min}..${field.max}`);
        return undefined;
      }
      return value;
    }
    case 'double':
      if (typeof value === 'number' && Number.isFinite(value)) return value;
      r.add(path, `expected number, got ${typeName(value)}`);
      return undefined;
    case 'duration': {
      if (typeof value !== 'string') {
        r.add(path, `expected duration string (e.g. "1.5s"), got ${typeName(value)}`);
        return undefined;
      }
      if (parseDurationNanos(value) === undefined) {
        r.add(path, `invalid duration "${value}"`);
        return undefined;
      }
      return value;
    }
    case 'enum':
      if (typeof value === 'string' && field.values.includes(value)) return value;
      r.add(
        path,
        typeof value === 'string'
          ? `invalid value "${value}", expected one of ${field.values.join(', ')}`
          : `expected string, got ${typeName(value)}`,
      );
      return undefined;
    case 'message':
      return decodeMessage(value, field.of(), path, r);
    case 'list': {
      if (!Array.isArray(value)) {
        r.add(path, `expected list, got ${typeName(value)}`);
        return undefined;
      }
      const out: unknown[] = [];
      value.forEach((item, i) => {
        const p = path.index(i);
        if (item === null || item === undefined) {
          r.add(p, 'may not be null');
          return;
        }
        const d = decodeField(item, field.of, p, r);
        // Keep positions stable: a bad element is replaced by an empty placeholder of its kind.
        out.push(d === undefined ? placeholder(field.of) : d);
      });
      return out;
    }
    case 'map': {
      if (!isObject(value)) {
        r.add(path, `expected map, got ${typeName(value)}`);
        return undefined;
      }
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        const p = path.key(k);
        if (field.uint32Keys && !/^(0|[1-9]\d{0,9})$/.test(k)) {
          r.add(p, `map key "${k}" must be an unsigned integer`);
          continue;
        }
        if (v === null || v === undefined) {
          r.add(p, 'may not be null');
          continue;
        }
        const d = decodeField(v, field.of, p, r);
        if (d !== undefined) out[k] = d;
      }
      // A map whose every entry was bad counts as unset (its errors are reported already).
      if (Object.keys(out).length === 0 && Object.keys(value).length > 0) return undefined;
      return out;
    }
  }
}

function placeholder(field: FieldSchema): unknown {
  switch (field.t) {
    case 'message':
      return {};
    case 'string':
    case 'duration':
      return '';
    case 'enum':
      return field.values[0] ?? '';
    case 'bool':
      return false;
    case 'list':
      return [];
    case 'map':
      return {};
    default:
      return 0;
  }
}
