// The strict encoder as it was before it was compiled per message type (commit 16f82c9,
// packages/envoy/src/json.ts, encoding part only, unchanged but for names): the reference the
// compiled encoder must agree with, byte for byte and problem for problem. Test code only.

import { envoyRoot } from '@meridian/envoy';
import protobuf from 'protobufjs';

/** A JSON value as Envoy reads its configuration (proto3 JSON mapping). */
type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
/** An Envoy resource in JSON form: proto field names as in the .proto files (snake_case, as in
 * Envoy's documentation and YAML), `google.protobuf.Any` as `{ "@type": url, ...fields }`,
 * durations as `"1.5s"`, wrappers as bare values, enums by name. */

/** One problem in an Envoy resource: where it is and why it is rejected. */
interface SchemaProblem {
  readonly path: string;
  readonly reason: string;
}

/** A resource that does not conform to Envoy's proto schema (or to its protoc-gen-validate rules). */
export class ReferenceSchemaError extends Error {
  override readonly name = 'ReferenceSchemaError';
  constructor(
    readonly typeName: string,
    readonly problems: readonly SchemaProblem[],
  ) {
    super(`${typeName}: ${problems.map((p) => `${p.path || '(root)'}: ${p.reason}`).join('; ')}`);
  }
}

type ProtoObject = { [key: string]: unknown };

const TYPE_PREFIX = 'type.googleapis.com/';
const INT32_TYPES = new Set(['int32', 'sint32', 'sfixed32']);
const UINT32_TYPES = new Set(['uint32', 'fixed32']);
const INT64_TYPES = new Set(['int64', 'sint64', 'sfixed64']);
const UINT64_TYPES = new Set(['uint64', 'fixed64']);
const WRAPPERS = new Set([
  'google.protobuf.DoubleValue',
  'google.protobuf.FloatValue',
  'google.protobuf.Int64Value',
  'google.protobuf.UInt64Value',
  'google.protobuf.Int32Value',
  'google.protobuf.UInt32Value',
  'google.protobuf.BoolValue',
  'google.protobuf.StringValue',
  'google.protobuf.BytesValue',
]);
const SPECIAL_JSON = new Set([
  ...WRAPPERS,
  'google.protobuf.Duration',
  'google.protobuf.Timestamp',
  'google.protobuf.Struct',
  'google.protobuf.Value',
  'google.protobuf.ListValue',
]);

function fullName(type: protobuf.ReflectionObject): string {
  return type.fullName.startsWith('.') ? type.fullName.slice(1) : type.fullName;
}

function isPlainObject(value: unknown): value is { [key: string]: JsonValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

/** protoc-gen-validate rules of a field, as protobufjs parses them. */
type Rules = { [kind: string]: { [rule: string]: unknown } };

function fieldRules(field: protobuf.Field): Rules | undefined {
  // protobufjs types parsedOptions loosely; it holds one object per option.
  const parsed = (field.parsedOptions ?? []) as unknown as readonly unknown[];
  for (const option of parsed) {
    const rules = (option as Record<string, unknown>)['(validate.rules)'];
    if (isPlainObject(rules)) return rules as Rules;
  }
  return undefined;
}

function oneofRequired(oneof: protobuf.OneOf): boolean {
  return oneof.options?.['(validate.required)'] === true;
}

function durationSeconds(value: unknown): number | undefined {
  if (!isPlainObject(value)) return undefined;
  const seconds = Number(value.seconds ?? 0);
  const nanos = Number(value.nanos ?? 0);
  return seconds + nanos / 1e9;
}

class Converter {
  readonly problems: SchemaProblem[] = [];
  constructor(private readonly root: protobuf.Root) {}

  fail(path: string, reason: string): undefined {
    this.problems.push({ path, reason });
    return undefined;
  }

  lookup(name: string): protobuf.Type | undefined {
    try {
      return this.root.lookupType(name);
    } catch {
      return undefined;
    }
  }

  /** Converts one message from Envoy JSON to the object protobufjs encodes. */
  message(type: protobuf.Type, json: unknown, path: string): ProtoObject | undefined {
    const name = fullName(type);
    if (name === 'google.protobuf.Any') return this.any(json, path);
    if (SPECIAL_JSON.has(name)) return this.wellKnown(type, name, json, path);
    if (!isPlainObject(json)) return this.fail(path, `expected an object for ${name}, got ${describe(json)}`);
    const out: ProtoObject = {};
    const camel = camelIndex(type);
    for (const key of Object.keys(json).sort()) {
      const field = type.fields[key] ?? camel.get(key);
      if (!field) {
        this.fail(join(path, key), `unknown field "${key}" in ${name}`);
        continue;
      }
      const value = json[key];
      if (value === null || value === undefined) continue;
      const converted = this.field(field, value, join(path, field.name));
      if (converted !== undefined) out[field.name] = converted;
    }
    this.checkOneofs(type, out, path);
    this.checkRules(type, out, path);
    return out;
  }

  checkOneofs(type: protobuf.Type, out: ProtoObject, path: string): void {
    for (const oneof of type.oneofsArray) {
      const set = oneof.oneof.filter((fieldName) => out[fieldName] !== undefined);
      if (set.length > 1) {
        this.fail(
          path,
          `fields ${set.map((f) => `"${f}"`).join(' and ')} are all set, but belong to oneof "${oneof.name}"`,
        );
      } else if (set.length === 0 && oneofRequired(oneof)) {
        this.fail(path, `one of ${oneof.oneof.map((f) => `"${f}"`).join(', ')} is required`);
      }
    }
  }

  /** A subset of protoc-gen-validate, the rules Envoy enforces before accepting a resource. */
  checkRules(type: protobuf.Type, out: ProtoObject, path: string): void {
    for (const field of type.fieldsArray) {
      const rules = fieldRules(field);
      if (!rules) continue;
      const at = join(path, field.name);
      const value = out[field.name];
      const inOneof = field.partOf !== null && field.partOf !== undefined;
      // A oneof member that is not set is not validated (the oneof's own rule covers it).
      if (value === undefined && inOneof) continue;
      if (rules.message?.required === true && value === undefined) {
        this.fail(at, 'is required');
        continue;
      }
      if (field.repeated || field.map) {
        const count = Array.isArray(value)
          ? value.length
          : isPlainObject(value)
            ? Object.keys(value).length
            : 0;
        const bounds = rules.repeated ?? rules.map;
        if (bounds?.min_items !== undefined && count < Number(bounds.min_items)) {
          this.fail(at, `needs at least ${bounds.min_items} item(s), has ${count}`);
        }
        if (bounds?.max_items !== undefined && count > Number(bounds.max_items)) {
          this.fail(at, `allows at most ${bounds.max_items} item(s), has ${count}`);
        }
        continue;
      }
      // Scalars outside a oneof are checked at their default value, as protoc-gen-validate does.
      if (rules.string) {
        const text = typeof value === 'string' ? value : value === undefined ? '' : undefined;
        if (text !== undefined) {
          const { min_len, max_len, min_bytes, max_bytes } = rules.string;
          if (min_len !== undefined && [...text].length < Number(min_len)) {
            this.fail(at, text === '' ? 'must not be empty' : `must be at least ${min_len} characters long`);
          }
          if (max_len !== undefined && [...text].length > Number(max_len)) {
            this.fail(at, `must be at most ${max_len} characters long`);
          }
          if (min_bytes !== undefined && Buffer.byteLength(text) < Number(min_bytes)) {
            this.fail(at, text === '' ? 'must not be empty' : `must be at least ${min_bytes} bytes long`);
          }
          if (max_bytes !== undefined && Buffer.byteLength(text) > Number(max_bytes)) {
            this.fail(at, `must be at most ${max_bytes} bytes long`);
          }
        }
      }
      for (const kind of ['uint32', 'int32', 'uint64', 'int64', 'double', 'float']) {
        const bounds = rules[kind];
        if (!bounds) continue;
        // A rule on a wrapper type applies to the wrapped value, and only when it is set.
        let number: number | undefined;
        if (isPlainObject(value) && 'value' in value) number = Number(value.value);
        else if (value === undefined && field.resolvedType instanceof protobuf.Type) number = undefined;
        else number = value === undefined ? 0 : Number(value);
        if (number !== undefined) this.checkBounds(at, number, bounds);
      }
      if (rules.duration && value !== undefined) {
        const seconds = durationSeconds(value);
        if (seconds !== undefined)
          this.checkBounds(at, seconds, rules.duration, (b) => durationSeconds(b) ?? 0, 's');
      } else if (rules.duration?.required === true && value === undefined) {
        this.fail(at, 'is required');
      }
    }
  }

  checkBounds(
    at: string,
    value: number,
    bounds: { [rule: string]: unknown },
    toNumber: (bound: unknown) => number = Number,
    unit = '',
  ): void {
    const show = (bound: unknown) => `${toNumber(bound)}${unit}`;
    if (bounds.gt !== undefined && !(value > toNumber(bounds.gt)))
      this.fail(at, `must be greater than ${show(bounds.gt)}, got ${value}${unit}`);
    if (bounds.gte !== undefined && !(value >= toNumber(bounds.gte)))
      this.fail(at, `must be at least ${show(bounds.gte)}, got ${value}${unit}`);
    if (bounds.lt !== undefined && !(value < toNumber(bounds.lt)))
      this.fail(at, `must be less than ${show(bounds.lt)}, got ${value}${unit}`);
    if (bounds.lte !== undefined && !(value <= toNumber(bounds.lte)))
      this.fail(at, `must be at most ${show(bounds.lte)}, got ${value}${unit}`);
  }

  field(field: protobuf.Field, value: JsonValue, path: string): unknown {
    if (field.map) {
      if (!isPlainObject(value)) return this.fail(path, `expected an object (map), got ${describe(value)}`);
      const out: ProtoObject = {};
      for (const key of Object.keys(value).sort()) {
        const item = value[key];
        if (item === null || item === undefined) continue;
        const converted = this.single(field, item, join(path, key));
        if (converted !== undefined) out[key] = converted;
      }
      return out;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) return this.fail(path, `expected an array, got ${describe(value)}`);
      const out: unknown[] = [];
      value.forEach((item, index) => {
        const converted = this.single(field, item, join(path, index));
        if (converted !== undefined) out.push(converted);
      });
      return out;
    }
    return this.single(field, value, path);
  }

  single(field: protobuf.Field, value: JsonValue, path: string): unknown {
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Type) return this.message(resolved, value, path);
    if (resolved instanceof protobuf.Enum) return this.enumValue(resolved, value, path);
    return this.scalar(field.type, value, path);
  }

  enumValue(type: protobuf.Enum, value: JsonValue, path: string): number | undefined {
    if (typeof value === 'string') {
      const number = type.values[value];
      if (number === undefined) {
        return this.fail(
          path,
          `unknown value "${value}" for enum ${fullName(type)}; expected one of ${Object.keys(type.values).join(', ')}`,
        );
      }
      return number;
    }
    if (typeof value === 'number' && Number.isInteger(value)) return value;
    return this.fail(path, `expected an enum name of ${fullName(type)}, got ${describe(value)}`);
  }

  scalar(kind: string, value: JsonValue, path: string): unknown {
    switch (kind) {
      case 'string':
        return typeof value === 'string'
          ? value
          : this.fail(path, `expected a string, got ${describe(value)}`);
      case 'bool':
        return typeof value === 'boolean'
          ? value
          : this.fail(path, `expected a boolean, got ${describe(value)}`);
      case 'bytes':
        if (typeof value !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) {
          return this.fail(path, `expected base64 bytes, got ${describe(value)}`);
        }
        return Buffer.from(value, 'base64');
      case 'double':
      case 'float':
        if (typeof value === 'number') return value;
        if (value === 'NaN' || value === 'Infinity' || value === '-Infinity') return Number(value);
        return this.fail(path, `expected a number, got ${describe(value)}`);
    }
    const integer = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
    if (typeof integer !== 'number' || !Number.isInteger(integer)) {
      return this.fail(path, `expected an integer (${kind}), got ${describe(value)}`);
    }
    if (INT32_TYPES.has(kind) && (integer < -(2 ** 31) || integer >= 2 ** 31))
      return this.fail(path, `${integer} is out of range for ${kind}`);
    if (UINT32_TYPES.has(kind) && (integer < 0 || integer >= 2 ** 32))
      return this.fail(path, `${integer} is out of range for ${kind}`);
    if ((INT64_TYPES.has(kind) || UINT64_TYPES.has(kind)) && !Number.isSafeInteger(integer)) {
      return this.fail(path, `${value} is beyond the integers this encoder represents exactly (2^53)`);
    }
    if (UINT64_TYPES.has(kind) && integer < 0)
      return this.fail(path, `${integer} is out of range for ${kind}`);
    return integer;
  }

  any(json: unknown, path: string): ProtoObject | undefined {
    if (!isPlainObject(json))
      return this.fail(
        path,
        `expected an object with "@type" for google.protobuf.Any, got ${describe(json)}`,
      );
    const url = json['@type'];
    if (typeof url !== 'string' || !url.includes('/'))
      return this.fail(join(path, '@type'), 'is required: a type URL such as type.googleapis.com/<message>');
    const inner = this.lookup(url.slice(url.lastIndexOf('/') + 1));
    if (!inner) return this.fail(join(path, '@type'), `unknown type "${url}"`);
    let body: unknown;
    if (SPECIAL_JSON.has(fullName(inner))) {
      body = json.value;
    } else {
      const { '@type': _ignored, ...rest } = json;
      body = rest;
    }
    const before = this.problems.length;
    const converted = this.message(inner, body, path);
    if (converted === undefined || this.problems.length > before) return undefined;
    return { type_url: url, value: inner.encode(converted).finish() };
  }

  wellKnown(type: protobuf.Type, name: string, json: unknown, path: string): ProtoObject | undefined {
    if (WRAPPERS.has(name)) {
      const inner = this.scalar(type.fields.value!.type, json as JsonValue, path);
      return inner === undefined ? undefined : { value: inner };
    }
    switch (name) {
      case 'google.protobuf.Duration': {
        const match = typeof json === 'string' ? /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(json) : null;
        if (!match) return this.fail(path, `expected a duration such as "1.5s", got ${describe(json)}`);
        const sign = match[1] ? -1 : 1;
        const seconds = Number(match[2]);
        const nanos = Number((match[3] ?? '').padEnd(9, '0'));
        if (seconds > 315_576_000_000) return this.fail(path, 'duration is out of range');
        return { seconds: sign * seconds, nanos: sign * nanos };
      }
      case 'google.protobuf.Timestamp': {
        const millis = typeof json === 'string' ? Date.parse(json) : Number.NaN;
        if (Number.isNaN(millis))
          return this.fail(path, `expected an RFC 3339 timestamp, got ${describe(json)}`);
        return { seconds: Math.floor(millis / 1000), nanos: (millis % 1000) * 1e6 };
      }
      case 'google.protobuf.Struct':
        if (!isPlainObject(json))
          return this.fail(path, `expected an object (Struct), got ${describe(json)}`);
        return {
          fields: Object.fromEntries(
            Object.keys(json)
              .sort()
              .map((key) => [key, structValue(json[key] ?? null)]),
          ),
        };
      case 'google.protobuf.ListValue':
        if (!Array.isArray(json))
          return this.fail(path, `expected an array (ListValue), got ${describe(json)}`);
        return { values: json.map(structValue) };
      default:
        return structValue(json as JsonValue);
    }
  }
}

// protobufjs defines google.protobuf.Value itself, with camelCase field names.
function structValue(value: JsonValue): ProtoObject {
  if (value === null) return { nullValue: 0 };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(structValue) } };
  return {
    structValue: {
      fields: Object.fromEntries(
        Object.keys(value)
          .sort()
          .map((k) => [k, structValue(value[k] ?? null)]),
      ),
    },
  };
}

const camelIndexes = new WeakMap<protobuf.Type, Map<string, protobuf.Field>>();
function camelIndex(type: protobuf.Type): Map<string, protobuf.Field> {
  let index = camelIndexes.get(type);
  if (!index) {
    index = new Map(type.fieldsArray.map((field) => [protobuf.util.camelCase(field.name), field]));
    camelIndexes.set(type, index);
  }
  return index;
}

function sortProblems(problems: SchemaProblem[]): SchemaProblem[] {
  return [...problems].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function resolveType(typeNameOrUrl: string): protobuf.Type {
  const name = typeNameOrUrl.startsWith(TYPE_PREFIX)
    ? typeNameOrUrl.slice(TYPE_PREFIX.length)
    : typeNameOrUrl;
  try {
    return envoyRoot().lookupType(name);
  } catch {
    throw new ReferenceSchemaError(name, [{ path: '', reason: `unknown message type "${name}"` }]);
  }
}

/** Every schema problem of a resource (empty when Envoy's schema accepts it). */
export function referenceCheckResource(typeNameOrUrl: string, json: unknown): SchemaProblem[] {
  const type = resolveType(typeNameOrUrl);
  const converter = new Converter(envoyRoot());
  converter.message(type, json, '');
  return sortProblems(converter.problems);
}

/**
 * Encodes a resource given in Envoy JSON to protobuf bytes with Envoy's own schema. Unknown fields,
 * wrong types, unknown enum names, two members of one oneof and broken protoc-gen-validate rules are
 * rejected with an EnvoySchemaError naming every bad field. Map keys are sorted, so equal resources
 * always give equal bytes.
 */
export function referenceEncodeResource(typeNameOrUrl: string, json: unknown): Uint8Array {
  const type = resolveType(typeNameOrUrl);
  const converter = new Converter(envoyRoot());
  const message = converter.message(type, json, '');
  if (converter.problems.length > 0 || message === undefined) {
    throw new ReferenceSchemaError(fullName(type), sortProblems(converter.problems));
  }
  return type.encode(message).finish();
}
