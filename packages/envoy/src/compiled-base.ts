// Shared by the fast path's parts (compiled.ts, compiled-scalars.ts, compiled-wkt.ts): giving up
// (bail), the writer and body types, protobufjs' depth limit, wire types and tags, and the order in
// which the walker writes an object's keys.
import protobuf from 'protobufjs';
import { fullName } from './rules.js';

/** Thrown (never escapes the fast path's callers) when the fast path cannot vouch for the input. */
class Bail {}
const BAIL = new Bail();
/** Gives up: the caller runs the diagnostic walker instead. */
export function bail(): never {
  throw BAIL;
}
/** protobufjs' writer, written to directly. */
export type Writer = protobuf.Writer;

/** Writes a message's fields (no tag or length); `fromAny` lets an "@type" key through. */
export type BodyWriter = (json: unknown, w: Writer, depth: number, fromAny: boolean) => void;

// protobufjs' encoder refuses messages nested deeper than this (counted from the message it is
// asked to encode; an Any's value is encoded on its own).
export const DEPTH_LIMIT = protobuf.util.recursionLimit;

/** The wire type of each scalar kind. */
export const WIRE: { readonly [kind: string]: number } = {
  double: 1,
  float: 5,
  int32: 0,
  uint32: 0,
  sint32: 0,
  fixed32: 5,
  sfixed32: 5,
  int64: 0,
  uint64: 0,
  sint64: 0,
  fixed64: 1,
  sfixed64: 1,
  bool: 0,
  string: 2,
  bytes: 2,
};

/** A field's tag: its number and wire type. */
export function tagOf(id: number, wireType: number): number {
  return ((id << 3) | wireType) >>> 0;
}

/** A converter from JSON to what protobufjs writes for one scalar kind, or to an enum's number. */
export type Convert = (value: unknown) => unknown;
/** Writes one converted value (no tag). */
export type Put = (w: Writer, value: unknown) => void;

/** Tag of a well-known type's field, read from the schema rather than assumed. */
export function wellKnownTag(type: protobuf.Type, name: string): number {
  const field = type.fields[name];
  if (!field) throw new Error(`${fullName(type)} has no field ${name}`);
  field.resolve();
  const kind = field.resolvedType instanceof protobuf.Enum ? 'int32' : field.type;
  return tagOf(field.id, field.resolvedType instanceof protobuf.Type || field.map ? 2 : WIRE[kind]!);
}

/**
 * An object's keys in the order the walker's output holds them: sorted, then as a JS object orders
 * keys inserted in that order (array-index keys first, ascending).
 */
export function orderedKeys(value: { [key: string]: unknown }): string[] {
  const keys = Object.keys(value);
  if (keys.length < 2) {
    if (keys[0] === '__proto__') bail();
    return keys;
  }
  keys.sort();
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    // The walker stores map entries by assignment, where "__proto__" is no entry: its way.
    if (key === '__proto__') bail();
    const c = key.charCodeAt(0);
    if (c >= 48 && c <= 57) {
      // A key starting with a digit may be an array index: let an object order them.
      const order: { [key: string]: true } = {};
      for (const key of keys) order[key] = true;
      return Object.keys(order);
    }
  }
  return keys;
}
