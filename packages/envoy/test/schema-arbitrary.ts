// Arbitraries of Envoy resources generated from Envoy's schema itself (shared by the property tests):
// any message reachable from the xDS resource types, fields picked at random, each value of its
// field's kind (or, in the wild mode, of a wrong kind, an unknown key, a null, an odd enum name), Any
// values of several types.
import { EnvoySchemaError, envoyRoot, TypeUrl } from '@meridian/envoy';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { rulesOf } from '../src/rules.js';
import { ReferenceSchemaError } from './reference-encoder.js';

export const root = envoyRoot();
const name = (t: protobuf.ReflectionObject) => t.fullName.replace(/^\./, '');

const ANY_TARGETS = [
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  'envoy.extensions.filters.http.router.v3.Router',
  'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
  'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
  'google.protobuf.Duration',
  'google.protobuf.UInt32Value',
  'google.protobuf.StringValue',
  'google.protobuf.Struct',
  'google.protobuf.Value',
  'google.protobuf.Empty',
];
const WRAPPER = /^google\.protobuf\.(Double|Float|Int64|UInt64|Int32|UInt32|Bool|String|Bytes)Value$/;
const SPECIAL =
  /^google\.protobuf\.(Duration|Timestamp|Struct|Value|ListValue|(Double|Float|Int64|UInt64|Int32|UInt32|Bool|String|Bytes)Value)$/;

/** wild: also values of the wrong kind, unknown keys, nulls and odd names; tame: right kinds only. */
export type Mode = 'tame' | 'wild';

const WRONG = fc.constantFrom<unknown>('x', '', 1.5, -1, true, {}, [], 2 ** 53 + 2, '1.5s', 'NaN', null);

function withWrong(mode: Mode, arb: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return mode === 'tame' ? arb : fc.oneof({ arbitrary: arb, weight: 6 }, { arbitrary: WRONG, weight: 1 });
}

function scalar(kind: string, mode: Mode): fc.Arbitrary<unknown> {
  let arb: fc.Arbitrary<unknown>;
  switch (kind) {
    case 'string':
      arb = fc.oneof(
        fc.string({ minLength: 1, maxLength: 6 }),
        fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }),
      );
      break;
    case 'bool':
      arb = fc.boolean();
      break;
    case 'bytes':
      arb = fc
        .tuple(fc.uint8Array({ maxLength: 6 }), fc.boolean())
        .map(([b, url]) => Buffer.from(b).toString(url ? 'base64url' : 'base64'));
      break;
    case 'double':
    case 'float':
      arb = fc.oneof(fc.double(), fc.constantFrom('NaN', 'Infinity', '-Infinity'), fc.integer());
      break;
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      arb = fc.integer();
      break;
    case 'uint32':
    case 'fixed32':
      arb = fc.oneof(fc.nat({ max: 2 ** 32 - 1 }), fc.nat({ max: 100 }));
      break;
    default: {
      const n =
        kind.startsWith('u') || kind.startsWith('fixed') ? fc.nat({ max: 2 ** 53 - 1 }) : fc.maxSafeInteger();
      arb = fc.oneof(n, n.map(String), fc.nat({ max: 1000 }));
    }
  }
  return withWrong(mode, arb);
}

function enumValue(type: protobuf.Enum, mode: Mode): fc.Arbitrary<unknown> {
  const names = Object.keys(type.values);
  const numbers = Object.values(type.values);
  const arb = fc.oneof(
    { arbitrary: fc.constantFrom(...names), weight: 4 },
    { arbitrary: fc.constantFrom(...numbers), weight: 1 },
  );
  return mode === 'tame'
    ? arb
    : fc.oneof({ arbitrary: arb, weight: 6 }, fc.constantFrom('NOPE', '0', 1.5, 'constructor'));
}

const jsonValue = fc.jsonValue({ maxDepth: 2 });

const memo = new Map<string, fc.Arbitrary<unknown>>();

/** Envoy JSON of `type` down to `depth` levels of messages. */
export function message(type: protobuf.Type, depth: number, mode: Mode): fc.Arbitrary<unknown> {
  const key = `${name(type)}|${depth}|${mode}`;
  let arb = memo.get(key);
  if (!arb) {
    arb = build(type, depth, mode);
    memo.set(key, arb);
  }
  return arb;
}

function build(type: protobuf.Type, depth: number, mode: Mode): fc.Arbitrary<unknown> {
  const full = name(type);
  switch (full) {
    case 'google.protobuf.Any':
      return any(depth, mode);
    case 'google.protobuf.Duration':
      return withWrong(
        mode,
        fc
          .tuple(
            fc.nat({ max: 100_000 }),
            fc.nat({ max: 999_999_999 }),
            fc.nat({ max: 9 }),
            fc.nat({ max: 5 }),
          )
          .map(
            ([s, n, digits, sign]) =>
              `${sign === 0 ? '-' : ''}${s}${digits === 0 ? '' : `.${String(n).padStart(9, '0').slice(0, digits)}`}s`,
          ),
      );
    case 'google.protobuf.Timestamp':
      return withWrong(
        mode,
        fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true }).map((d) => d.toISOString()),
      );
    case 'google.protobuf.Struct':
      return withWrong(mode, fc.dictionary(fc.string({ maxLength: 3 }), jsonValue, { maxKeys: 3 }));
    case 'google.protobuf.Value':
      return jsonValue;
    case 'google.protobuf.ListValue':
      return withWrong(mode, fc.array(jsonValue, { maxLength: 3 }));
  }
  if (WRAPPER.test(full)) return scalar(type.fields.value!.type, mode);
  if (depth <= 0) return fc.constant({});

  const fields = type.fieldsArray;
  // Fields whose absence breaks a rule are usually present, so tame resources are often valid.
  const needed = fields.filter((f) => {
    const rules = rulesOf(f);
    return (
      rules &&
      !rules.inOneof &&
      (rules.messageRequired || rules.string || rules.minItems || rules.durationRequired)
    );
  });
  const requiredOneofs = type.oneofsArray.filter((o) => o.options?.['(validate.required)'] === true);
  return fc
    .record({
      picked: fc.subarray(fields, { maxLength: Math.min(3, fields.length) }),
      withNeeded: fc.boolean(),
      oneofPicks: fc.array(fc.nat(), { minLength: requiredOneofs.length, maxLength: requiredOneofs.length }),
      unknown:
        mode === 'wild'
          ? fc.option(fc.constantFrom('colour', 'Name', '@type', 'constructor'))
          : fc.constant(null),
    })
    .chain(({ picked, withNeeded, oneofPicks, unknown }) => {
      let chosen = [...new Set([...(withNeeded || mode === 'tame' ? needed : []), ...picked])];
      requiredOneofs.forEach((oneof, i) => {
        const members = oneof.fieldsArray;
        if (!chosen.some((f) => members.includes(f))) chosen.push(members[oneofPicks[i]! % members.length]!);
      });
      if (mode === 'tame') {
        // At most one member per oneof.
        const seen = new Set<protobuf.OneOf>();
        chosen = chosen.filter((f) => {
          if (!f.partOf) return true;
          if (seen.has(f.partOf)) return false;
          seen.add(f.partOf);
          return true;
        });
      }
      return fc
        .tuple(...chosen.map((f) => fc.tuple(fieldKey(f, mode), field(f, depth - 1, mode))))
        .map((entries) => {
          const out: Record<string, unknown> = Object.fromEntries(entries);
          if (unknown !== null) out[unknown] = 1;
          return out;
        });
    });
}

function fieldKey(f: protobuf.Field, mode: Mode): fc.Arbitrary<string> {
  const camel = protobuf.util.camelCase(f.name);
  if (camel === f.name) return fc.constant(f.name);
  return mode === 'tame' ? fc.constantFrom(f.name, f.name, camel) : fc.constantFrom(f.name, camel);
}

function single(f: protobuf.Field, depth: number, mode: Mode): fc.Arbitrary<unknown> {
  f.resolve();
  const resolved = f.resolvedType;
  if (resolved instanceof protobuf.Type) return message(resolved, depth, mode);
  if (resolved instanceof protobuf.Enum) return enumValue(resolved, mode);
  return scalar(f.type, mode);
}

function field(f: protobuf.Field, depth: number, mode: Mode): fc.Arbitrary<unknown> {
  if (f.map) {
    const keyType = (f as unknown as protobuf.MapField).keyType;
    const key =
      keyType === 'string'
        ? fc.constantFrom('a', 'b', '10', '9', 'x.y', '')
        : fc.nat({ max: 20 }).map(String);
    const map = fc.dictionary(key, single(f, depth, mode), { maxKeys: 2 });
    return mode === 'tame' ? map : fc.oneof({ arbitrary: map, weight: 5 }, WRONG);
  }
  if (f.repeated) {
    const list = fc.array(single(f, depth, mode), { minLength: mode === 'tame' ? 1 : 0, maxLength: 2 });
    return mode === 'tame' ? list : fc.oneof({ arbitrary: list, weight: 5 }, WRONG);
  }
  return single(f, depth, mode);
}

function any(depth: number, mode: Mode): fc.Arbitrary<unknown> {
  const known = fc.constantFrom(...ANY_TARGETS).chain((target) => {
    const inner = root.lookupType(target);
    const url = `type.googleapis.com/${target}`;
    if (SPECIAL.test(target))
      return message(inner, depth - 1, mode).map((value) => ({ '@type': url, value }));
    return message(inner, depth - 1, mode).map((body) => ({ '@type': url, ...(body as object) }));
  });
  if (mode === 'tame') return known;
  return fc.oneof(
    { arbitrary: known, weight: 6 },
    fc.constantFrom({ '@type': 'type.googleapis.com/envoy.nope.v3.X' }, { value: 1 }, { '@type': 'NoSlash' }),
  );
}

/** What an encoding gave: its bytes (hex), or the kind and message of its error. */
export type Outcome = { bytes: string } | { error: string; message: string };

export function outcome(encode: () => Uint8Array): Outcome {
  try {
    return { bytes: Buffer.from(encode()).toString('hex') };
  } catch (error) {
    const e = error as Error;
    const kind =
      error instanceof EnvoySchemaError || error instanceof ReferenceSchemaError ? 'schema' : e.name;
    return { error: kind, message: e.message };
  }
}

/** The resource types the property tests generate, with the depth of messages they go to. */
export const RESOURCES: readonly [string, number][] = [
  [TypeUrl.Cluster, 4],
  [TypeUrl.ClusterLoadAssignment, 5],
  [TypeUrl.Listener, 4],
  [TypeUrl.RouteConfiguration, 5],
  [TypeUrl.Secret, 5],
];
