import protobuf from 'protobufjs';
import { encodeFast, type MemoMode } from './compiled.js';
import { checkField, fullName, rulesOf, SPECIAL_JSON, WRAPPERS } from './rules.js';
import { envoyRoot } from './schema.js';

/** A JSON value as Envoy reads its configuration (proto3 JSON mapping). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
/** An Envoy resource in JSON form: proto field names as in the .proto files (snake_case, as in
 * Envoy's documentation and YAML), `google.protobuf.Any` as `{ "@type": url, ...fields }`,
 * durations as `"1.5s"`, wrappers as bare values, enums by name. */
export type EnvoyJson = { [key: string]: JsonValue };

/** One problem in an Envoy resource: where it is and why it is rejected. */
export interface SchemaProblem {
  readonly path: string;
  readonly reason: string;
}

/** A resource that does not conform to Envoy's proto schema (or to its protoc-gen-validate rules). */
export class EnvoySchemaError extends Error {
  override readonly name = 'EnvoySchemaError';
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

function oneofRequired(oneof: protobuf.OneOf): boolean {
  return oneof.options?.['(validate.required)'] === true;
}

/**
 * The diagnostic walker: converts Envoy JSON into the object protobufjs encodes, collecting every
 * problem with its path. encodeResource runs it only when the compiled encoder (compiled.ts) does not
 * vouch for a resource, to name what is wrong; its output defines the bytes the compiled encoder
 * must write.
 */
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

  /** A subset of protoc-gen-validate, the rules Envoy enforces before accepting a resource
   * (rules.ts, shared with the compiled encoder). */
  checkRules(type: protobuf.Type, out: ProtoObject, path: string): void {
    for (const field of type.fieldsArray) {
      const rules = rulesOf(field);
      if (!rules) continue;
      const at = join(path, field.name);
      checkField(rules, out[field.name], (reason) => this.fail(at, reason));
    }
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

const resolved = new Map<string, protobuf.Type>();

function resolveType(typeNameOrUrl: string): protobuf.Type {
  const known = resolved.get(typeNameOrUrl);
  if (known) return known;
  const name = typeNameOrUrl.startsWith(TYPE_PREFIX)
    ? typeNameOrUrl.slice(TYPE_PREFIX.length)
    : typeNameOrUrl;
  let type: protobuf.Type;
  try {
    type = envoyRoot().lookupType(name);
  } catch {
    throw new EnvoySchemaError(name, [{ path: '', reason: `unknown message type "${name}"` }]);
  }
  // Only names that resolve are kept, so the cache is bounded by the schema.
  resolved.set(typeNameOrUrl, type);
  return type;
}

/** Runs the diagnostic walker over a resource: its protobufjs message and every problem. */
function convert(
  type: protobuf.Type,
  json: unknown,
): { message: ProtoObject | undefined; problems: SchemaProblem[] } {
  const converter = new Converter(envoyRoot());
  const message = converter.message(type, json, '');
  return { message, problems: sortProblems(converter.problems) };
}

/** Every schema problem of a resource (empty when Envoy's schema accepts it). */
export function checkResource(typeNameOrUrl: string, json: unknown): SchemaProblem[] {
  const type = resolveType(typeNameOrUrl);
  if (encodeFast(type, json) !== undefined) return [];
  return convert(type, json).problems;
}

/**
 * Encodes a resource given in Envoy JSON to protobuf bytes with Envoy's own schema. Unknown fields,
 * wrong types, unknown enum names, two members of one oneof and broken protoc-gen-validate rules are
 * rejected with an EnvoySchemaError naming every bad field. Map keys are sorted, so equal resources
 * always give equal bytes.
 *
 * The work is done by an encoder compiled once per message type (compiled.ts); a resource it does not
 * accept goes through the diagnostic walker, which names every problem (or, for the rare shapes the
 * compiled encoder leaves to it, encodes the resource itself).
 *
 * **The JSON given is treated as immutable** (here and by checkResource). The encoder remembers, per message type and by object
 * identity, the bytes of the sub-messages it accepted in lists and maps (large ones: virtual hosts,
 * routes, filter chains; see compiled.ts), so a resource whose sub-objects are the same objects as
 * in an earlier call copies their bytes instead of encoding them again (a new
 * RouteConfiguration that keeps 1,249 of its 1,250 virtual host objects encodes one of them). Mutating an object, or
 * anything reachable from it, after it was given to `encodeResource` is not allowed: a later call
 * could write the bytes of what it was. Build a new object for a new value (translate does).
 * Entries live as long as their objects (a WeakMap); the bytes are the same with or without them.
 */
export function encodeResource(typeNameOrUrl: string, json: unknown): Uint8Array {
  const type = resolveType(typeNameOrUrl);
  const fast = encodeFast(type, json);
  if (fast !== undefined) return fast;
  return encodeChecked(type, json);
}

/** The diagnostic walker's encoding (what the compiled encoder's bytes must equal). */
function encodeChecked(type: protobuf.Type, json: unknown): Uint8Array {
  const { message, problems } = convert(type, json);
  if (problems.length > 0 || message === undefined) throw new EnvoySchemaError(fullName(type), problems);
  return type.encode(message).finish();
}

/**
 * For tests: encodeResource with the identity memo used as `memo` says (`off`: neither read nor
 * filled, the encoding the memo must never change; `all`: for every message field). Not exported
 * from the package.
 */
export function encodeResourceWith(typeNameOrUrl: string, json: unknown, memo: MemoMode): Uint8Array {
  const type = resolveType(typeNameOrUrl);
  const fast = encodeFast(type, json, memo);
  if (fast !== undefined) return fast;
  return encodeChecked(type, json);
}

/**
 * For tests: the diagnostic walker's bytes and the compiled encoder's (undefined where it leaves the
 * resource to the walker), so they can be compared on any input. Not exported from the package.
 */
export function encodeBothWays(
  typeNameOrUrl: string,
  json: unknown,
): { readonly checked: Uint8Array | EnvoySchemaError; readonly compiled: Uint8Array | undefined } {
  const type = resolveType(typeNameOrUrl);
  let checked: Uint8Array | EnvoySchemaError;
  try {
    checked = encodeChecked(type, json);
  } catch (error) {
    if (!(error instanceof EnvoySchemaError)) throw error;
    checked = error;
  }
  return { checked, compiled: encodeFast(type, json, 'off') };
}

/** Decodes protobuf bytes into Envoy JSON (the inverse of encodeResource, with proto3 JSON rules:
 * 64-bit integers as strings, defaults omitted, Any expanded when its type is known). */
export function decodeResource(typeNameOrUrl: string, bytes: Uint8Array): EnvoyJson {
  const type = resolveType(typeNameOrUrl);
  return messageToJson(type, type.decode(bytes) as unknown as ProtoObject) as EnvoyJson;
}

function messageToJson(type: protobuf.Type, message: ProtoObject): JsonValue {
  const name = fullName(type);
  if (name === 'google.protobuf.Any') {
    const url = String(message.type_url ?? '');
    const inner = (() => {
      try {
        return envoyRoot().lookupType(url.slice(url.lastIndexOf('/') + 1));
      } catch {
        return undefined;
      }
    })();
    const value = message.value as Uint8Array | undefined;
    if (!inner) return { '@type': url, value: Buffer.from(value ?? []).toString('base64') };
    const body = messageToJson(inner, inner.decode(value ?? new Uint8Array()) as unknown as ProtoObject);
    return SPECIAL_JSON.has(fullName(inner))
      ? { '@type': url, value: body }
      : { '@type': url, ...(body as EnvoyJson) };
  }
  if (WRAPPERS.has(name))
    return scalarToJson(type.fields.value!.type, message.value ?? defaultScalar(type.fields.value!.type));
  switch (name) {
    case 'google.protobuf.Duration': {
      const seconds = Number(message.seconds ?? 0);
      const nanos = Number(message.nanos ?? 0);
      const negative = seconds < 0 || nanos < 0;
      const fraction =
        Math.abs(nanos) === 0 ? '' : `.${String(Math.abs(nanos)).padStart(9, '0').replace(/0+$/, '')}`;
      return `${negative ? '-' : ''}${Math.abs(seconds)}${fraction}s`;
    }
    case 'google.protobuf.Timestamp':
      return new Date(Number(message.seconds ?? 0) * 1000 + Number(message.nanos ?? 0) / 1e6).toISOString();
    case 'google.protobuf.Struct':
      return structToJson(message);
    case 'google.protobuf.Value':
      return valueToJson(message);
    case 'google.protobuf.ListValue':
      return ((message.values as ProtoObject[] | undefined) ?? []).map(valueToJson);
  }
  const out: EnvoyJson = {};
  for (const field of type.fieldsArray) {
    if (!Object.hasOwn(message, field.name)) continue;
    const value = message[field.name];
    if (value === null || value === undefined) continue;
    const convert = (item: unknown): JsonValue => {
      const resolved = field.resolvedType;
      if (resolved instanceof protobuf.Type) return messageToJson(resolved, item as ProtoObject);
      if (resolved instanceof protobuf.Enum) return resolved.valuesById[item as number] ?? (item as number);
      return scalarToJson(field.type, item);
    };
    if (field.map) {
      const entries = Object.entries(value as ProtoObject);
      if (entries.length === 0) continue;
      out[field.name] = Object.fromEntries(
        entries.sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, convert(v)]),
      );
    } else if (field.repeated) {
      const items = value as unknown[];
      if (items.length === 0) continue;
      out[field.name] = items.map(convert);
    } else {
      out[field.name] = convert(value);
    }
  }
  return out;
}

function defaultScalar(kind: string): unknown {
  if (kind === 'string') return '';
  if (kind === 'bool') return false;
  if (kind === 'bytes') return new Uint8Array();
  return 0;
}

function scalarToJson(kind: string, value: unknown): JsonValue {
  if (kind === 'bytes') return Buffer.from(value as Uint8Array).toString('base64');
  if (INT64_TYPES.has(kind) || UINT64_TYPES.has(kind)) return String(value);
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value as JsonValue;
}

function structToJson(message: ProtoObject): JsonValue {
  const fields = (message.fields as { [key: string]: ProtoObject } | undefined) ?? {};
  return Object.fromEntries(
    Object.keys(fields)
      .sort()
      .map((key) => [key, valueToJson(fields[key]!)]),
  );
}

function valueToJson(value: ProtoObject): JsonValue {
  switch (value.kind) {
    case 'structValue':
      return structToJson(value.structValue as ProtoObject);
    case 'listValue':
      return (((value.listValue as ProtoObject).values as ProtoObject[] | undefined) ?? []).map(valueToJson);
    case 'stringValue':
      return value.stringValue as string;
    case 'numberValue':
      return value.numberValue as number;
    case 'boolValue':
      return value.boolValue as boolean;
    default:
      return null;
  }
}
