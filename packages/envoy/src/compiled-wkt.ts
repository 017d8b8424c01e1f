// Well-known types of the fast path, whose JSON is not their fields (proto3 JSON mapping): wrappers,
// Duration, Timestamp, and Struct/Value/ListValue. Any is compiled.ts's (it writes any message).
import type protobuf from 'protobufjs';
import {
  type BodyWriter,
  bail,
  DEPTH_LIMIT,
  orderedKeys,
  tagOf,
  WIRE,
  type Writer,
  wellKnownTag,
} from './compiled-base.js';
import { putScalar, scalarConverter } from './compiled-scalars.js';
import { isPlainObject } from './rules.js';

/** A wrapper (`google.protobuf.*Value`): its JSON is the bare value. */
export function wrapperBody(type: protobuf.Type): BodyWriter {
  const inner = type.fields.value!;
  const convert = scalarConverter(inner.type);
  const put = putScalar(inner.type);
  const tag = tagOf(inner.id, WIRE[inner.type]!);
  return (json, w) => put(w.uint32(tag), convert(json));
}

// The last Duration parsed (scratch, read right after parseDuration).
let durationSign = 1;
let durationSecs = 0;
let durationNanos = 0;
const DURATION = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;

/** Parses a Duration's JSON (`1.5s`) into the scratch values; bails when it is not one. */
export function parseDuration(json: unknown): void {
  const match = typeof json === 'string' ? DURATION.exec(json) : null;
  if (!match) bail();
  durationSign = match[1] ? -1 : 1;
  durationSecs = Number(match[2]);
  durationNanos = Number((match[3] ?? '').padEnd(9, '0'));
  if (durationSecs > 315_576_000_000) bail();
}

/** The last parsed Duration's fields, for its rules. */
export function lastDuration(): { seconds: number; nanos: number } {
  return { seconds: durationSign * durationSecs, nanos: durationSign * durationNanos };
}

/** Writes the last parsed Duration's fields (seconds and nanos are always both written). */
export function durationWriter(type: protobuf.Type): (w: Writer) => void {
  const secondsTag = wellKnownTag(type, 'seconds');
  const nanosTag = wellKnownTag(type, 'nanos');
  return (w) => {
    w.uint32(secondsTag).int64(durationSign * durationSecs);
    w.uint32(nanosTag).int32(durationSign * durationNanos);
  };
}

/** A Duration: its JSON is `<seconds>[.<fraction>]s`. */
export function durationBody(type: protobuf.Type): BodyWriter {
  const write = durationWriter(type);
  return (json, w) => {
    parseDuration(json);
    write(w);
  };
}

/** A Timestamp: its JSON is an RFC 3339 date. */
export function timestampBody(type: protobuf.Type): BodyWriter {
  const secondsTag = wellKnownTag(type, 'seconds');
  const nanosTag = wellKnownTag(type, 'nanos');
  return (json, w) => {
    const millis = typeof json === 'string' ? Date.parse(json) : Number.NaN;
    if (Number.isNaN(millis)) bail();
    w.uint32(secondsTag).int64(Math.floor(millis / 1000));
    w.uint32(nanosTag).int32((millis % 1000) * 1e6);
  };
}

// Struct, Value and ListValue refer to each other; protobufjs defines them (camelCase field names).
interface StructTags {
  fields: number;
  nullValue: number;
  numberValue: number;
  stringValue: number;
  boolValue: number;
  structValue: number;
  listValue: number;
  values: number;
}
let structTagsCache: StructTags | undefined;
function structTags(any: protobuf.Type): StructTags {
  if (structTagsCache) return structTagsCache;
  const struct = any.lookupType('google.protobuf.Struct');
  const value = any.lookupType('google.protobuf.Value');
  const list = any.lookupType('google.protobuf.ListValue');
  structTagsCache = {
    fields: wellKnownTag(struct, 'fields'),
    nullValue: wellKnownTag(value, 'nullValue'),
    numberValue: wellKnownTag(value, 'numberValue'),
    stringValue: wellKnownTag(value, 'stringValue'),
    boolValue: wellKnownTag(value, 'boolValue'),
    structValue: wellKnownTag(value, 'structValue'),
    listValue: wellKnownTag(value, 'listValue'),
    values: wellKnownTag(list, 'values'),
  };
  return structTagsCache;
}

function writeStructFields(t: StructTags, json: { [key: string]: unknown }, w: Writer, depth: number): void {
  if (depth >= DEPTH_LIMIT) bail();
  const keys = orderedKeys(json);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    w.uint32(t.fields).fork().uint32(10).string(key).uint32(18).fork();
    writeValue(t, json[key] ?? null, w, depth + 1);
    w.ldelim().ldelim();
  }
}

function writeValue(t: StructTags, value: unknown, w: Writer, depth: number): void {
  if (value === null) w.uint32(t.nullValue).int32(0);
  else if (typeof value === 'number') w.uint32(t.numberValue).double(value);
  else if (typeof value === 'string') w.uint32(t.stringValue).string(value);
  else if (typeof value === 'boolean') w.uint32(t.boolValue).bool(value);
  else if (Array.isArray(value)) {
    if (depth >= DEPTH_LIMIT) bail();
    w.uint32(t.listValue).fork();
    writeListValues(t, value, w, depth + 1);
    w.ldelim();
  } else if (typeof value === 'object') {
    if (depth >= DEPTH_LIMIT) bail();
    w.uint32(t.structValue).fork();
    writeStructFields(t, value as { [key: string]: unknown }, w, depth + 1);
    w.ldelim();
  } else bail();
}

function writeListValues(t: StructTags, values: readonly unknown[], w: Writer, depth: number): void {
  if (values.length > 0 && depth >= DEPTH_LIMIT) bail();
  for (let i = 0; i < values.length; i++) {
    // A hole is not null: the walker fails on it.
    if (!(i in values)) bail();
    w.uint32(t.values).fork();
    writeValue(t, values[i], w, depth + 1);
    w.ldelim();
  }
}

/** A Struct: its JSON is any object. */
export function structBody(type: protobuf.Type): BodyWriter {
  const t = structTags(type);
  return (json, w, depth) => {
    if (!isPlainObject(json)) bail();
    writeStructFields(t, json, w, depth);
  };
}

/** A Value: its JSON is any JSON value. */
export function valueBody(type: protobuf.Type): BodyWriter {
  const t = structTags(type);
  return (json, w, depth) => writeValue(t, json, w, depth);
}

/** A ListValue: its JSON is any array. */
export function listBody(type: protobuf.Type): BodyWriter {
  const t = structTags(type);
  return (json, w, depth) => {
    if (!Array.isArray(json)) bail();
    writeListValues(t, json, w, depth);
  };
}
