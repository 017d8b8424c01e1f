// The strict encoder's fast path: Envoy JSON -> protobuf bytes in one pass, checked as it is written.
//
// Per message type, compiled once on first use: a table from JSON key (proto name and lowerCamelCase)
// to a field plan holding its tag, a writer closure specialised for its type, its oneof bit, whether
// its absence breaks a rule, and its compiled rules; Any type URLs resolve through a cache. Encoding
// then walks the JSON and writes with protobufjs' Writer directly: no intermediate message objects,
// no per-object reflection. The bytes are exactly those of protobufjs' own encoder on the message the
// diagnostic walker (json.ts) builds (fields in field-number order, map entries in sorted key order,
// explicitly set defaults written), which the package's tests check on generated resources.
//
// The fast path only answers "valid, here are the bytes" or "not sure": on any problem it gives up
// (throws BAIL) and the caller runs the diagnostic walker, which names every problem with its path.
// So it never has to build paths or messages, and anything it does not handle exactly (a proto2
// required field, a map key order it cannot prove, a value of a kind JSON never holds) goes the slow
// way instead of risking a different answer.
//
// This module holds the plans, the memo, ordinary messages' fields and Any; scalars are
// compiled-scalars.ts's, the other well-known types compiled-wkt.ts's, what they share
// compiled-base.ts's.
//
// Identity memo: translate hands over the same objects for what did not change, so the
// encoded bytes of list elements and map values of message type are remembered per message type by
// object (a WeakMap); writing a remembered one copies its bytes. The JSON is immutable to this
// encoder (encodeResource's doc comment says so to its callers). See writeSubMessage and
// MEMO_MIN_BYTES for what is remembered and why.
import protobuf from 'protobufjs';
import {
  type BodyWriter,
  bail,
  type Convert,
  DEPTH_LIMIT,
  orderedKeys,
  type Put,
  tagOf,
  WIRE,
  type Writer,
  wellKnownTag,
} from './compiled-base.js';
import { enumConverter, putScalar, scalarConverter } from './compiled-scalars.js';
import {
  durationBody,
  durationWriter,
  lastDuration,
  listBody,
  parseDuration,
  structBody,
  timestampBody,
  valueBody,
  wrapperBody,
} from './compiled-wkt.js';
import {
  checkCount,
  checkField,
  type Fail,
  type FieldRules,
  fullName,
  isPlainObject,
  rulesOf,
  SPECIAL_JSON,
  WRAPPERS,
} from './rules.js';

const failFast: Fail = () => bail();

type Json = { readonly [key: string]: unknown };

/** Writes one present (non-null) field value, tag included. `depth` is the containing message's. */
type FieldWriter = (value: unknown, w: Writer, depth: number) => void;
interface FieldPlan {
  readonly id: number;
  readonly write: FieldWriter;
  /** This field's oneof as one bit (0: not in a oneof). */
  readonly oneofBit: number;
  /** Whether leaving this field out breaks one of its rules. */
  readonly mustBePresent: boolean;
}

interface MessagePlan {
  readonly body: BodyWriter;
  /**
   * The identity memo of this type: JSON objects already written as this type, with their
   * bytes (the message's fields, no tag or length) and the deepest containing depth they were written
   * at. Only objects the body accepted are in it; entries die with their objects.
   */
  readonly memo: WeakMap<object, Memo>;
}

/** One memoized sub-message: its bytes and the deepest containing message depth they were accepted at. */
interface Memo {
  readonly bytes: Uint8Array;
  readonly depth: number;
}

const PACKABLE = new Set(Object.keys(WIRE).filter((k) => k !== 'string' && k !== 'bytes'));

// Per-call scratch of the field walk: the present fields of every message being written, as a stack
// (a message's entries sit between its base and the top while its fields are written).
const fieldStack: FieldPlan[] = [];
const valueStack: unknown[] = [];
let top = 0;

const plans = new WeakMap<protobuf.Type, MessagePlan>();

/** The compiled plan of a message type (compiled on first use, then shared). */
export function planOf(type: protobuf.Type): MessagePlan {
  let plan = plans.get(type);
  if (!plan) {
    // Registered before compiling its fields, so recursive types find it; fields compile lazily.
    const holder: { body: BodyWriter; memo: WeakMap<object, Memo> } = {
      body: () => bail(),
      memo: new WeakMap(),
    };
    plans.set(type, holder);
    holder.body = compileBody(type);
    plan = holder;
  }
  return plan;
}

/**
 * How encodeFast uses the identity memo (elements of lists and values of maps of messages):
 * `auto` (the default) remembers those of fields where it pays (see MEMO_MIN_BYTES), `all` every
 * one (tests, to exercise it everywhere), `off` neither reads nor fills it (the encoding the memo
 * must never change).
 */
export type MemoMode = 'off' | 'auto' | 'all';

// The current call's memo mode (scratch, set by encodeFast).
let memoMode: MemoMode = 'auto';

/**
 * `auto` looks every list element and map value up in the memo, and remembers a field's
 * sub-messages while they average at least MEMO_MIN_BYTES encoded bytes, or while at least
 * MEMO_MIN_REUSE of them were found in the memo (moving averages per field); otherwise it remembers
 * one in MEMO_SAMPLE, to notice objects that repeat. Measured on the translate bench's sidecar
 * (`pnpm bench encode`, and by mode): remembering costs a WeakMap entry, a writer of its own and a
 * copy per sub-message, so remembering every element made cold encoding of the 2,000
 * ClusterLoadAssignments about 1.5x slower (an LbEndpoint is about 30 bytes, a LocalityLbEndpoints
 * about 80, and few repeat), while virtual hosts (about 470 bytes), routes (350) and filter chains
 * (520) pay it back as soon as one is reused, and small objects translate shares within its output
 * (a route's retry host predicate, a cluster's protocol options) are found again at once: with
 * `auto`, cold encoding of the RouteConfigurations and Clusters got faster, that of the
 * ClusterLoadAssignments stayed as it was.
 */
const MEMO_MIN_BYTES = 256;
const MEMO_MIN_REUSE = 0.5;
const MEMO_SAMPLE = 64;
/** Weight of the newest value in a field's moving averages (1/16). */
const MEMO_AVERAGE_SHIFT = 1 / 16;

/** Sub-messages written from the memo and remembered in it since the process started (for tests). */
export const memoCounters = { hits: 0, stores: 0 };

/**
 * Per message field: moving averages of its sub-messages' encoded size and of how often they were
 * found in the memo, and the count that samples while the field does not remember.
 */
interface FieldSizes {
  average: number;
  reuse: number;
  tick: number;
}

/**
 * Writes one sub-message field (tag, length, fields) of `plan`'s type. An object accepted as this
 * type before, at this depth or deeper, is written from its bytes; another one is, when this field
 * remembers (see MEMO_MIN_BYTES), encoded on a writer of its own and its bytes remembered once the
 * body accepted it (a problem throws before), or else encoded in place. A length-delimited field
 * holding those bytes is exactly what the embedded message is on the wire, so the output is the
 * same either way. `depth` is the containing message's (an object accepted at depth d is accepted at
 * any depth up to d: only going deeper can fail).
 */
function writeSubMessage(
  plan: MessagePlan,
  tag: number,
  value: unknown,
  w: Writer,
  depth: number,
  sizes: FieldSizes,
): void {
  if (memoMode !== 'off' && typeof value === 'object' && value !== null) {
    const hit = plan.memo.get(value);
    if (hit !== undefined && depth <= hit.depth) {
      memoCounters.hits++;
      sizes.reuse += (1 - sizes.reuse) * MEMO_AVERAGE_SHIFT;
      sizes.average += (hit.bytes.length - sizes.average) * MEMO_AVERAGE_SHIFT;
      w.uint32(tag).bytes(hit.bytes);
      return;
    }
    sizes.reuse -= sizes.reuse * MEMO_AVERAGE_SHIFT;
    if (
      memoMode === 'all' ||
      sizes.average >= MEMO_MIN_BYTES ||
      sizes.reuse >= MEMO_MIN_REUSE ||
      ++sizes.tick % MEMO_SAMPLE === 0
    ) {
      const own = protobuf.Writer.create();
      plan.body(value, own, depth + 1, false);
      // Reached only when the body accepted the object: a problem throws past this.
      const bytes = own.finish();
      plan.memo.set(value, { bytes, depth });
      memoCounters.stores++;
      sizes.average += (bytes.length - sizes.average) * MEMO_AVERAGE_SHIFT;
      w.uint32(tag).bytes(bytes);
      return;
    }
  }
  w.uint32(tag).fork();
  plan.body(value, w, depth + 1, false);
  // After fork(), the writer's length is the sub-message's.
  sizes.average += (w.len - sizes.average) * MEMO_AVERAGE_SHIFT;
  w.ldelim();
}

/**
 * Encodes `json` as `type`, or returns undefined when it is not certainly valid (the caller then
 * runs the diagnostic walker). Bytes equal `type.encode(<the walker's message>).finish()`.
 */
export function encodeFast(
  type: protobuf.Type,
  json: unknown,
  memo: MemoMode = 'auto',
): Uint8Array | undefined {
  const saved = top;
  const savedMemo = memoMode;
  memoMode = memo;
  try {
    const w = protobuf.Writer.create();
    planOf(type).body(json, w, 0, false);
    return w.finish();
  } catch {
    // BAIL, or anything unexpected (a getter that throws, a stack overflow): let the walker decide.
    return undefined;
  } finally {
    top = saved;
    memoMode = savedMemo;
  }
}

function compileBody(type: protobuf.Type): BodyWriter {
  const name = fullName(type);
  if (name === 'google.protobuf.Any') return anyBody(type);
  if (WRAPPERS.has(name)) return wrapperBody(type);
  switch (name) {
    case 'google.protobuf.Duration':
      return durationBody(type);
    case 'google.protobuf.Timestamp':
      return timestampBody(type);
    case 'google.protobuf.Struct':
      return structBody(type);
    case 'google.protobuf.Value':
      return valueBody(type);
    case 'google.protobuf.ListValue':
      return listBody(type);
  }
  return fieldsBody(type);
}

// ---- ordinary messages ----

function fieldsBody(type: protobuf.Type): BodyWriter {
  const oneofs = type.oneofsArray;
  // Shapes this encoder does not write exactly like protobufjs go the slow way.
  const unsupported =
    oneofs.length > 30 || type.fieldsArray.some((f) => f.delimited || (!f.optional && !f.repeated && !f.map));
  if (unsupported) return () => bail();

  let byKey: Map<string, FieldPlan> | undefined;
  let requiredCount = 0;
  let requiredOneofs = 0;
  const compileFields = (): Map<string, FieldPlan> => {
    const table = new Map<string, FieldPlan>();
    const planOfField = new Map<protobuf.Field, FieldPlan>();
    for (const field of type.fieldsArray) {
      field.resolve();
      const rules = rulesOf(field);
      let mustBePresent = false;
      if (rules) checkField(rules, undefined, () => (mustBePresent = true));
      if (mustBePresent) requiredCount++;
      const oneofIndex = field.partOf ? oneofs.indexOf(field.partOf) : -1;
      planOfField.set(field, {
        id: field.id,
        write: fieldWriter(field, rules),
        oneofBit: oneofIndex < 0 ? 0 : 1 << oneofIndex,
        mustBePresent,
      });
    }
    // Keys as the walker resolves them: a proto field name first, else a lowerCamelCase name (the
    // last field wins a clash, as a Map built from the list would).
    const camel = new Map<string, FieldPlan>();
    for (const field of type.fieldsArray)
      camel.set(protobuf.util.camelCase(field.name), planOfField.get(field)!);
    for (const [key, plan] of camel) table.set(key, plan);
    for (const field of type.fieldsArray) table.set(field.name, planOfField.get(field)!);
    oneofs.forEach((oneof, index) => {
      if (oneof.options?.['(validate.required)'] === true) requiredOneofs |= 1 << index;
    });
    return table;
  };

  return (json, w, depth, fromAny) => {
    if (!isPlainObject(json)) bail();
    byKey ??= compileFields();
    const table = byKey;
    const base = top;
    let seenOneofs = 0;
    let required = 0;
    let lastId = -1;
    let ordered = true;
    // Own keys only, as the walker reads them (Object.keys).
    const keys = Object.keys(json);
    for (let k = 0; k < keys.length; k++) {
      const key = keys[k]!;
      const field = table.get(key);
      if (field === undefined) {
        if (fromAny && key === '@type') continue;
        bail();
      }
      const value = (json as Json)[key];
      if (value === null || value === undefined) continue;
      if (field.oneofBit !== 0) {
        if ((seenOneofs & field.oneofBit) !== 0) bail();
        seenOneofs |= field.oneofBit;
      }
      if (field.mustBePresent) required++;
      if (field.id <= lastId) ordered = false;
      lastId = field.id;
      fieldStack[top] = field;
      valueStack[top] = value;
      top++;
    }
    if (required !== requiredCount || (requiredOneofs & ~seenOneofs) !== 0) bail();
    const end = top;
    if (!ordered) sortById(base, end);
    for (let i = base; i < end; i++) {
      fieldStack[i]!.write(valueStack[i], w, depth);
      valueStack[i] = undefined;
    }
    top = base;
  };
}

/** Insertion sort of the stack segment by field number; the same field twice (by two names) bails. */
function sortById(from: number, to: number): void {
  for (let i = from + 1; i < to; i++) {
    const field = fieldStack[i]!;
    const value = valueStack[i];
    let j = i - 1;
    while (j >= from && fieldStack[j]!.id > field.id) {
      fieldStack[j + 1] = fieldStack[j]!;
      valueStack[j + 1] = valueStack[j];
      j--;
    }
    if (j >= from && fieldStack[j]!.id === field.id) bail();
    fieldStack[j + 1] = field;
    valueStack[j + 1] = value;
  }
}

// ---- fields ----

function fieldWriter(field: protobuf.Field, rules: FieldRules | undefined): FieldWriter {
  if (field.map) return mapWriter(field, (field as unknown as protobuf.MapField).keyType, rules);
  if (field.repeated) return repeatedWriter(field, rules);
  return singularWriter(field, rules);
}

function converterOf(field: protobuf.Field): Convert {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Enum) return enumConverter(resolved);
  return scalarConverter(field.type);
}

function putOf(field: protobuf.Field): Put {
  return putScalar(field.resolvedType instanceof protobuf.Enum ? 'int32' : field.type);
}

function singularWriter(field: protobuf.Field, rules: FieldRules | undefined): FieldWriter {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return messageFieldWriter(field, resolved, rules);
  const kind = resolved instanceof protobuf.Enum ? 'int32' : field.type;
  const tag = tagOf(field.id, WIRE[kind]!);
  const convert = converterOf(field);
  const put = putOf(field);
  if (rules) {
    return (value, w) => {
      const converted = convert(value);
      checkField(rules, converted, failFast);
      put(w.uint32(tag), converted);
    };
  }
  return (value, w) => put(w.uint32(tag), convert(value));
}

function messageFieldWriter(
  field: protobuf.Field,
  type: protobuf.Type,
  rules: FieldRules | undefined,
): FieldWriter {
  const tag = tagOf(field.id, 2);
  const name = fullName(type);
  if (rules && (rules.numeric.length > 0 || rules.duration !== undefined)) {
    // Rules on the value of a wrapper or a Duration: checked on the walker's converted form.
    if (WRAPPERS.has(name) && rules.duration === undefined) {
      const inner = type.fields.value!;
      const convert = scalarConverter(inner.type);
      const put = putScalar(inner.type);
      const innerTag = tagOf(inner.id, WIRE[inner.type]!);
      return (value, w, depth) => {
        if (depth >= DEPTH_LIMIT) bail();
        const converted = convert(value);
        checkField(rules, { value: converted }, failFast);
        put(w.uint32(tag).fork().uint32(innerTag), converted);
        w.ldelim();
      };
    }
    if (name === 'google.protobuf.Duration' && rules.numeric.length === 0) {
      const write = durationWriter(type);
      return (value, w, depth) => {
        if (depth >= DEPTH_LIMIT) bail();
        parseDuration(value);
        checkField(rules, lastDuration(), failFast);
        write(w.uint32(tag).fork());
        w.ldelim();
      };
    }
    return () => bail();
  }
  // A singular sub-message is written in place: the memo is for lists and maps of them (see
  // MEMO_MIN_BYTES).
  let plan: MessagePlan | undefined;
  return (value, w, depth) => {
    if (depth >= DEPTH_LIMIT) bail();
    plan ??= planOf(type);
    w.uint32(tag).fork();
    plan.body(value, w, depth + 1, false);
    w.ldelim();
  };
}

function repeatedWriter(field: protobuf.Field, rules: FieldRules | undefined): FieldWriter {
  const resolved = field.resolvedType;
  const count = rules ? (n: number) => checkCount(rules, n, failFast) : undefined;
  if (resolved instanceof protobuf.Type) {
    const tag = tagOf(field.id, 2);
    let plan: MessagePlan | undefined;
    const sizes: FieldSizes = { average: MEMO_MIN_BYTES, reuse: 0, tick: 0 };
    return (value, w, depth) => {
      if (!Array.isArray(value)) bail();
      count?.(value.length);
      if (value.length === 0) return;
      if (depth >= DEPTH_LIMIT) bail();
      plan ??= planOf(resolved);
      for (let i = 0; i < value.length; i++) writeSubMessage(plan, tag, value[i], w, depth, sizes);
    };
  }
  const kind = resolved instanceof protobuf.Enum ? 'int32' : field.type;
  const convert = converterOf(field);
  const put = putOf(field);
  if (field.packed && PACKABLE.has(kind)) {
    const tag = tagOf(field.id, 2);
    return (value, w) => {
      if (!Array.isArray(value)) bail();
      count?.(value.length);
      if (value.length === 0) return;
      w.uint32(tag).fork();
      for (let i = 0; i < value.length; i++) put(w, convert(value[i]));
      w.ldelim();
    };
  }
  const tag = tagOf(field.id, WIRE[kind]!);
  return (value, w) => {
    if (!Array.isArray(value)) bail();
    count?.(value.length);
    for (let i = 0; i < value.length; i++) put(w.uint32(tag), convert(value[i]));
  };
}

function mapWriter(field: protobuf.Field, keyType: string, rules: FieldRules | undefined): FieldWriter {
  const tag = tagOf(field.id, 2);
  const keyTag = tagOf(1, WIRE[keyType]!);
  const putKey = putScalar(keyType);
  const resolved = field.resolvedType;
  let writeValue: (item: unknown, w: Writer, depth: number) => void;
  if (resolved instanceof protobuf.Type) {
    let plan: MessagePlan | undefined;
    const sizes: FieldSizes = { average: MEMO_MIN_BYTES, reuse: 0, tick: 0 };
    writeValue = (item, w, depth) => {
      if (depth >= DEPTH_LIMIT) bail();
      plan ??= planOf(resolved);
      writeSubMessage(plan, 18, item, w, depth, sizes);
    };
  } else {
    const kind = resolved instanceof protobuf.Enum ? 'int32' : field.type;
    const valueTag = tagOf(2, WIRE[kind]!);
    const convert = converterOf(field);
    const put = putOf(field);
    writeValue = (item, w) => put(w.uint32(valueTag), convert(item));
  }
  return (value, w, depth) => {
    if (!isPlainObject(value)) bail();
    const keys = orderedKeys(value);
    let present = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      const item = value[key];
      if (item === null || item === undefined) continue;
      present++;
      putKey(w.uint32(tag).fork().uint32(keyTag), key);
      writeValue(item, w, depth);
      w.ldelim();
    }
    if (rules) checkCount(rules, present, failFast);
  };
}

// ---- Any ----

function anyBody(type: protobuf.Type): BodyWriter {
  const urlTag = wellKnownTag(type, 'type_url');
  const valueTag = wellKnownTag(type, 'value');
  let root: protobuf.Namespace = type;
  while (root.parent) root = root.parent;
  // The message a type URL names (the part after the last "/"), cached once found (names that
  // resolve only, so the cache is bounded by the schema).
  const targets = new Map<string, protobuf.Type>();
  const target = (url: string): protobuf.Type => {
    const name = url.slice(url.lastIndexOf('/') + 1);
    let found = targets.get(name);
    if (found === undefined) {
      try {
        found = root.lookupType(name);
      } catch {
        bail();
      }
      targets.set(name, found);
    }
    return found;
  };
  return (json, w) => {
    if (!isPlainObject(json)) bail();
    const url = json['@type'];
    if (typeof url !== 'string' || !url.includes('/')) bail();
    const inner = target(url);
    const special = SPECIAL_JSON.has(fullName(inner));
    if (inner === type) bail();
    w.uint32(urlTag).string(url).uint32(valueTag).fork();
    // The value is encoded as a message of its own: depth counts from 0 again.
    planOf(inner).body(special ? json.value : json, w, 0, !special);
    w.ldelim();
  };
}
