// What the strict encoder's two paths share: the proto3 JSON helpers and the subset of
// protoc-gen-validate rules Envoy enforces before accepting a resource, compiled once per field.
//
// The diagnostic walker (json.ts, every problem with its path) and the compiled encoder
// (compiled.ts, first problem only) call the same checks on the same converted values, so they
// cannot disagree on what a rule accepts.
import protobuf from 'protobufjs';

/** The message types whose proto3 JSON form is a bare value (no object of fields). */
export const WRAPPERS: ReadonlySet<string> = new Set([
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

/** Well-known types with a JSON form of their own (proto3 JSON mapping). */
export const SPECIAL_JSON: ReadonlySet<string> = new Set([
  ...WRAPPERS,
  'google.protobuf.Duration',
  'google.protobuf.Timestamp',
  'google.protobuf.Struct',
  'google.protobuf.Value',
  'google.protobuf.ListValue',
]);

/** A type's full name without protobufjs' leading dot. */
export function fullName(type: protobuf.ReflectionObject): string {
  return type.fullName.startsWith('.') ? type.fullName.slice(1) : type.fullName;
}

/** An object that is neither null nor an array (what a JSON object reads as). */
export function isPlainObject(value: unknown): value is { [key: string]: unknown } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Seconds of a converted Duration (`{seconds, nanos}`), undefined for anything else. */
export function durationSeconds(value: unknown): number | undefined {
  if (!isPlainObject(value)) return undefined;
  const seconds = Number(value.seconds ?? 0);
  const nanos = Number(value.nanos ?? 0);
  return seconds + nanos / 1e9;
}

/** Numeric bounds of one rule, converted to numbers once. */
interface Bounds {
  readonly gt: number | undefined;
  readonly gte: number | undefined;
  readonly lt: number | undefined;
  readonly lte: number | undefined;
}

/** The rules of one field that the encoder enforces, precomputed from its `(validate.rules)`. */
export interface FieldRules {
  readonly inOneof: boolean;
  readonly messageRequired: boolean;
  readonly collection: boolean;
  /** Item bounds of a repeated or map field (raw values, for the messages). */
  readonly minItems: unknown;
  readonly maxItems: unknown;
  readonly string: { readonly [rule: string]: unknown } | undefined;
  readonly numeric: readonly Bounds[];
  readonly isMessage: boolean;
  readonly duration: Bounds | undefined;
  readonly durationRequired: boolean;
}

type RawRules = { [kind: string]: { [rule: string]: unknown } };

function rawRules(field: protobuf.Field): RawRules | undefined {
  // protobufjs types parsedOptions loosely; it holds one object per option.
  const parsed = (field.parsedOptions ?? []) as unknown as readonly unknown[];
  for (const option of parsed) {
    const rules = (option as Record<string, unknown>)['(validate.rules)'];
    if (isPlainObject(rules)) return rules as RawRules;
  }
  return undefined;
}

const NUMERIC_KINDS = ['uint32', 'int32', 'uint64', 'int64', 'double', 'float'];

function bounds(raw: { [rule: string]: unknown }, toNumber: (bound: unknown) => number): Bounds {
  const at = (rule: string) => (raw[rule] === undefined ? undefined : toNumber(raw[rule]));
  return { gt: at('gt'), gte: at('gte'), lt: at('lt'), lte: at('lte') };
}

const compiled = new WeakMap<protobuf.Field, FieldRules | null>();

/** The field's rules, compiled on first use; undefined when it has none. */
export function rulesOf(field: protobuf.Field): FieldRules | undefined {
  let rules = compiled.get(field);
  if (rules === undefined) {
    rules = compile(field);
    compiled.set(field, rules);
  }
  return rules ?? undefined;
}

function compile(field: protobuf.Field): FieldRules | null {
  const raw = rawRules(field);
  if (!raw) return null;
  const items = raw.repeated ?? raw.map;
  return {
    inOneof: field.partOf !== null && field.partOf !== undefined,
    messageRequired: raw.message?.required === true,
    collection: field.repeated || field.map,
    minItems: items?.min_items,
    maxItems: items?.max_items,
    string: raw.string,
    numeric: NUMERIC_KINDS.filter((kind) => raw[kind]).map((kind) => bounds(raw[kind]!, Number)),
    isMessage: field.resolvedType instanceof protobuf.Type,
    duration: raw.duration ? bounds(raw.duration, (b) => durationSeconds(b) ?? 0) : undefined,
    durationRequired: raw.duration?.required === true,
  };
}

/** Receives each broken rule; the compiled encoder's stops at the first. */
export type Fail = (reason: string) => void;

/**
 * Checks one field's converted value (undefined when the field is absent) against its rules, as
 * protoc-gen-validate does: a oneof member that is not set is not validated (the oneof's own rule
 * covers it); scalars outside a oneof are checked at their default value; a rule on a wrapper type
 * applies to the wrapped value, and only when it is set.
 */
export function checkField(rules: FieldRules, value: unknown, fail: Fail): void {
  if (value === undefined && rules.inOneof) return;
  if (rules.messageRequired && value === undefined) {
    fail('is required');
    return;
  }
  if (rules.collection) {
    const count = Array.isArray(value) ? value.length : isPlainObject(value) ? Object.keys(value).length : 0;
    checkCount(rules, count, fail);
    return;
  }
  if (rules.string) {
    const text = typeof value === 'string' ? value : value === undefined ? '' : undefined;
    if (text !== undefined) checkString(rules.string, text, fail);
  }
  for (const b of rules.numeric) {
    let number: number | undefined;
    if (isPlainObject(value) && 'value' in value) number = Number(value.value);
    else if (value === undefined && rules.isMessage) number = undefined;
    else number = value === undefined ? 0 : Number(value);
    if (number !== undefined) checkBounds(number, b, '', fail);
  }
  if (rules.duration && value !== undefined) {
    const seconds = durationSeconds(value);
    if (seconds !== undefined) checkBounds(seconds, rules.duration, 's', fail);
  } else if (rules.durationRequired && value === undefined) {
    fail('is required');
  }
}

/** The item count rules of a repeated or map field. */
export function checkCount(rules: FieldRules, count: number, fail: Fail): void {
  if (rules.minItems !== undefined && count < Number(rules.minItems)) {
    fail(`needs at least ${rules.minItems} item(s), has ${count}`);
  }
  if (rules.maxItems !== undefined && count > Number(rules.maxItems)) {
    fail(`allows at most ${rules.maxItems} item(s), has ${count}`);
  }
}

/** Code points of `text` (what `[...text].length` counts: a lone surrogate counts as one). */
function codePoints(text: string): number {
  let count = text.length;
  for (let i = 0; i < text.length - 1; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        count--;
        i++;
      }
    }
  }
  return count;
}

function checkString(rules: { readonly [rule: string]: unknown }, text: string, fail: Fail): void {
  const { min_len, max_len, min_bytes, max_bytes } = rules;
  // Counting code points or UTF-8 bytes is only needed when the UTF-16 length does not decide:
  // code points lie in [length / 2, length], UTF-8 bytes in [length, 3 x length].
  if (min_len !== undefined) {
    const min = Number(min_len);
    if (!(Math.ceil(text.length / 2) >= min) && codePoints(text) < min) {
      fail(text === '' ? 'must not be empty' : `must be at least ${min_len} characters long`);
    }
  }
  if (max_len !== undefined) {
    const max = Number(max_len);
    if (!(text.length <= max) && codePoints(text) > max) fail(`must be at most ${max_len} characters long`);
  }
  if (min_bytes !== undefined) {
    const min = Number(min_bytes);
    if (!(text.length >= min) && Buffer.byteLength(text) < min) {
      fail(text === '' ? 'must not be empty' : `must be at least ${min_bytes} bytes long`);
    }
  }
  if (max_bytes !== undefined) {
    const max = Number(max_bytes);
    if (!(text.length * 3 <= max) && Buffer.byteLength(text) > max) {
      fail(`must be at most ${max_bytes} bytes long`);
    }
  }
}

function checkBounds(value: number, b: Bounds, unit: string, fail: Fail): void {
  if (b.gt !== undefined && !(value > b.gt)) fail(`must be greater than ${b.gt}${unit}, got ${value}${unit}`);
  if (b.gte !== undefined && !(value >= b.gte)) fail(`must be at least ${b.gte}${unit}, got ${value}${unit}`);
  if (b.lt !== undefined && !(value < b.lt)) fail(`must be less than ${b.lt}${unit}, got ${value}${unit}`);
  if (b.lte !== undefined && !(value <= b.lte)) fail(`must be at most ${b.lte}${unit}, got ${value}${unit}`);
}
