// Strict Envoy-JSON -> protobuf encoding (@meridian/envoy's encodeResource) against the floor of
// protobufjs encoding the same messages without Meridian's checks, in the same run (issue 12, item 6).
//
//   pnpm bench encode [--services 1000] [--endpoints 5000] [--rules 500] [--runs 9]
//
// Input: the full output for one sidecar that sees the whole mesh of the translate bench (buildMesh,
// about 2,000 clusters, 2,000 ClusterLoadAssignments, listeners and route configurations).
// Figures are medians of --runs, in CPU time of this process (user + system):
// - encode_all: encodeResource (strict: unknown fields, types, enum names, Any type URLs, oneofs,
//   protoc-gen-validate rules) of every resource;
// - floor: protobufjs alone, on types from the same Root: Type.fromObject + Type.encode().finish() of
//   the same messages. protobufjs' fromObject does not read proto3 JSON's special forms, so each
//   resource is first rewritten, outside the timing, into the form it reads (durations as
//   {seconds, nanos}, Struct as {fields}, wrappers as {value}, map keys in the order
//   encodeResource writes them); Any stays `{"@type", ...fields}`, which protobufjs' own Any wrapper
//   resolves and encodes (its simplest correct handling). fromObject checks nothing: unknown fields
//   are dropped, wrong types coerced.
// - encode_only: Type.encode().finish() of messages fromObject built beforehand (the wire writing
//   alone), for scale.
// - encode_all runs on fresh deep copies of the resources (made outside the timing): encodeResource
//   remembers sub-messages by object identity (the memo), so the same objects again would measure
//   the memo instead (reported apart: encode_all_same_objects);
// - re-encode after one virtual host changed (issue 12, the memo): each RouteConfiguration copied
//   with the same virtual host objects but one, replaced by a modified copy (new weights), as
//   translate hands it after a VirtualService edit; cold (a deep copy: nothing the memo knows) vs
//   shared (the copy itself, after the original was encoded): route_reencode_cold_ms and
//   route_reencode_shared_ms, target shared at least 10x cheaper, bytes equal.
// The byte-identity count compares encodeResource's bytes with the floor's for every resource (where
// they differ, whether both decode to the same message), so both sides encode the same thing.
import { cpus, loadavg } from 'node:os';
import { encodeResource, envoyRoot, type ResourceTypeUrl, TypeUrl } from '@meridian/envoy';
import { resourcesByTypeUrl, Translator } from '@meridian/translate';
import { emitResult, log, median, parseFlags, printTable, round3 } from './lib/index.js';
import { buildMesh, proxyIn } from './translate.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: unknown };

// The parts of protobufjs' reflection the floor uses (bench/ does not depend on protobufjs itself).
interface PbField {
  readonly name: string;
  readonly repeated: boolean;
  readonly map: boolean;
  readonly resolvedType: PbType | object | null;
}
interface PbType {
  readonly fullName: string;
  readonly fields: { [name: string]: PbField };
  readonly fieldsArray: PbField[];
  fromObject(object: Obj): object;
  encode(message: object): { finish(): Uint8Array };
  decode(bytes: Uint8Array): object;
  toObject(message: object, options: Obj): Obj;
}

/** Types whose proto3 JSON form is not an object of their fields. */
const SPECIAL_JSON =
  /^google\.protobuf\.(Duration|Timestamp|Struct|Value|ListValue|(Double|Float|U?Int64|U?Int32|Bool|String|Bytes)Value)$/;

const isType = (t: unknown): t is PbType => typeof t === 'object' && t !== null && 'fieldsArray' in t;
const nameOf = (t: PbType) => t.fullName.replace(/^\./, '');

function lookup(name: string): PbType {
  return envoyRoot().lookupType(name) as unknown as PbType;
}

/** Object keys in the order encodeResource writes map entries: sorted, then as a JS object holds them. */
function sortedObject(json: { [key: string]: Json }, value: (v: Json) => unknown): Obj {
  const out: Obj = {};
  for (const key of Object.keys(json).sort()) out[key] = value(json[key] ?? null);
  return out;
}

function durationForm(text: string): Obj {
  const m = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(text);
  if (!m) throw new Error(`bench: not a duration: ${text}`);
  const sign = m[1] ? -1 : 1;
  return { seconds: sign * Number(m[2]), nanos: sign * Number((m[3] ?? '').padEnd(9, '0')) };
}

function valueForm(v: Json): Obj {
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(valueForm) } };
  return { structValue: { fields: sortedObject(v, valueForm) } };
}

/** Rewrites proto3 JSON into what protobufjs' fromObject reads (no checks: the input is valid). */
function fromObjectForm(type: PbType, json: Json): unknown {
  const name = nameOf(type);
  switch (name) {
    case 'google.protobuf.Any': {
      const { '@type': url, ...rest } = json as { [key: string]: Json };
      const inner = lookup(String(url).slice(String(url).lastIndexOf('/') + 1));
      const special = SPECIAL_JSON.test(nameOf(inner));
      const body = fromObjectForm(inner, special ? (rest.value ?? null) : rest) as Obj;
      return { '@type': url, ...body };
    }
    case 'google.protobuf.Duration':
      return durationForm(json as string);
    case 'google.protobuf.Struct':
      return { fields: sortedObject(json as { [key: string]: Json }, valueForm) };
    case 'google.protobuf.Value':
      return valueForm(json);
    case 'google.protobuf.ListValue':
      return { values: (json as Json[]).map(valueForm) };
  }
  if (SPECIAL_JSON.test(name)) return { value: json }; // the wrappers (others are handled above)
  const out: Obj = {};
  const object = json as { [key: string]: Json };
  for (const key of Object.keys(object)) {
    const field =
      type.fields[key] ??
      type.fieldsArray.find((f) => f.name.replace(/_([a-z])/g, (_, c) => c.toUpperCase()) === key);
    const value = object[key];
    if (!field || value === null || value === undefined) continue;
    const single = (v: Json) => (isType(field.resolvedType) ? fromObjectForm(field.resolvedType, v) : v);
    if (field.map) out[field.name] = sortedObject(value as { [key: string]: Json }, single);
    else if (field.repeated) out[field.name] = (value as Json[]).map(single);
    else out[field.name] = single(value);
  }
  return out;
}

/** CPU time (user + system) of `fn`, in ms. */
function cpuMs(fn: () => void): number {
  const c0 = process.cpuUsage();
  fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

/**
 * A modified copy of a virtual host, as a VirtualService weight change makes it: the weights of its
 * first weighted route (or, without one, a domain more), the rest of its content equal.
 */
function editedHost(host: Json, run: number): Json {
  const copy = structuredClone(host) as Obj;
  for (const route of (copy.routes ?? []) as Obj[]) {
    const weighted = (route.route as Obj | undefined)?.weighted_clusters as Obj | undefined;
    const clusters = weighted?.clusters as Obj[] | undefined;
    if (clusters && clusters.length > 1) {
      const first = 1 + (run % 98);
      clusters[0]!.weight = first;
      clusters[1]!.weight = 100 - first;
      for (const other of clusters.slice(2)) other.weight = 0;
      return copy as Json;
    }
  }
  copy.domains = [...((copy.domains ?? []) as string[]), `edited-${run}.example`];
  return copy as Json;
}

/**
 * The "re-encode after one virtual host changed" phase: each RouteConfiguration of the sidecar,
 * copied with the same virtual host objects but one (a different one each run) replaced by a
 * modified copy, as translate hands it after a VirtualService edit. Cold: a deep copy of that (no
 * object the encoder has seen: the memo has nothing for it); shared: the copy itself, after the
 * original was encoded (as when it was first pushed). Bytes must be equal.
 */
function routeReencode(routes: readonly Json[], runs: number) {
  for (const rc of routes) encodeResource(TypeUrl.RouteConfiguration, rc);
  const cold: number[] = [];
  const shared: number[] = [];
  let differ = 0;
  let hosts = 0;
  for (let run = -1; run < runs; run++) {
    const variants: Obj[] = routes.map((rc) => {
      const list = ((rc as Obj).virtual_hosts ?? []) as Json[];
      const k = (Math.max(0, run) * 37 + 11) % Math.max(1, list.length);
      return {
        ...(rc as Obj),
        virtual_hosts: list.map((host, i) => (i === k ? editedHost(host, run + 1) : host)),
      };
    });
    hosts = variants.reduce((n: number, v) => n + (v.virtual_hosts as Json[]).length, 0);
    const fresh = structuredClone(variants);
    let coldBytes: Uint8Array[] = [];
    let sharedBytes: Uint8Array[] = [];
    const timeCold = () =>
      cpuMs(() => {
        coldBytes = fresh.map((rc) => encodeResource(TypeUrl.RouteConfiguration, rc));
      });
    const timeShared = () =>
      cpuMs(() => {
        sharedBytes = variants.map((rc) => encodeResource(TypeUrl.RouteConfiguration, rc));
      });
    // Alternate which goes first; run -1 warms the JIT and is not counted.
    let c = 0;
    let s = 0;
    if (run % 2 === 0) {
      c = timeCold();
      s = timeShared();
    } else {
      s = timeShared();
      c = timeCold();
    }
    coldBytes.forEach((b, i) => {
      if (Buffer.compare(Buffer.from(b), Buffer.from(sharedBytes[i]!)) !== 0) differ++;
    });
    if (run < 0) continue;
    cold.push(c);
    shared.push(s);
  }
  return { cold: median(cold), shared: median(shared), differ, hosts };
}

interface Group {
  readonly typeUrl: ResourceTypeUrl;
  readonly label: string;
  readonly type: PbType;
  readonly json: readonly Json[];
  readonly floorInput: readonly Obj[];
  readonly built: readonly object[];
}

export function main(args: string[]): void {
  const flags = parseFlags(
    args,
    {
      services: { type: 'integer', default: 1000, help: 'services in the mesh' },
      endpoints: { type: 'integer', default: 5000, help: 'endpoints in the mesh' },
      rules: {
        type: 'integer',
        default: 500,
        help: 'routing rules (half VirtualServices, half DestinationRules)',
      },
      runs: { type: 'integer', default: 9, help: 'repetitions; medians are reported' },
    },
    {
      bench: 'encode',
      description: "strict encodeResource of one sidecar's full output against protobufjs' own encoding",
    },
  );
  const { config, registry } = buildMesh(flags.services, flags.endpoints, flags.rules);
  const output = new Translator().translate(config, registry, proxyIn('ns1', '10.200.0.1'));

  const groups: Group[] = [];
  for (const [typeUrl, list] of resourcesByTypeUrl(output)) {
    const type = lookup(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));
    const json = list.map((r) => r.resource as Json);
    const floorInput = json.map((j) => fromObjectForm(type, j) as Obj);
    groups.push({
      typeUrl,
      label: nameOf(type).split('.').pop() ?? typeUrl,
      type,
      json,
      floorInput,
      built: floorInput.map((f) => type.fromObject(f)),
    });
  }
  const total = groups.reduce((n, g) => n + g.json.length, 0);

  // The first strict pass, cold (as the translate bench's encode_all_cpu_ms measures it): it also
  // pays for compiling per-type work on first use.
  const strictBytes = new Map<Group, Uint8Array[]>();
  const firstPass = cpuMs(() => {
    for (const g of groups)
      strictBytes.set(
        g,
        g.json.map((json) => encodeResource(g.typeUrl, json)),
      );
  });

  // Same bytes? (Where not, the same message once decoded?)
  let identical = 0;
  let decodeEqual = 0;
  let bytes = 0;
  const differing: string[] = [];
  for (const g of groups) {
    g.json.forEach((_json, i) => {
      const strict = strictBytes.get(g)![i]!;
      const floor = g.type.encode(g.type.fromObject(g.floorInput[i]!)).finish();
      bytes += strict.length;
      if (Buffer.compare(Buffer.from(strict), Buffer.from(floor)) === 0) {
        identical++;
        return;
      }
      const view = (b: Uint8Array) =>
        JSON.stringify(g.type.toObject(g.type.decode(b), { longs: String, enums: String, bytes: String }));
      if (view(strict) === view(floor)) decodeEqual++;
      else if (differing.length < 3) differing.push(`${g.label} #${i}`);
    });
  }

  const strictRuns = new Map<string, number[]>(groups.map((g) => [g.label, []]));
  const floorRuns = new Map<string, number[]>(groups.map((g) => [g.label, []]));
  const encodeOnlyRuns = new Map<string, number[]>(groups.map((g) => [g.label, []]));
  const strictAll: number[] = [];
  const strictSameAll: number[] = [];
  const floorAll: number[] = [];
  const encodeOnlyAll: number[] = [];
  let sink = 0;
  // encodeResource remembers the bytes of sub-messages by object identity (the memo), so encoding
  // the same objects again measures the memo, not the encoder: each strict run encodes fresh copies
  // (made outside the timing), as a new translation would hand it (the memo's cost included).
  const strict = (g: Group) => {
    const fresh = structuredClone(g.json);
    return cpuMs(() => {
      for (const json of fresh) sink += encodeResource(g.typeUrl, json).length;
    });
  };
  // The same objects again (as after a change that kept every object): the memo's best case.
  const strictSame = (g: Group) =>
    cpuMs(() => {
      for (const json of g.json) sink += encodeResource(g.typeUrl, json).length;
    });
  const floor = (g: Group) =>
    cpuMs(() => {
      for (const input of g.floorInput) sink += g.type.encode(g.type.fromObject(input)).finish().length;
    });
  const encodeOnly = (g: Group) =>
    cpuMs(() => {
      for (const message of g.built) sink += g.type.encode(message).finish().length;
    });
  // One untimed round warms the JIT for all three.
  for (const g of groups) {
    strict(g);
    floor(g);
    encodeOnly(g);
  }
  for (let run = 0; run < flags.runs; run++) {
    // Alternate which side goes first, so neither always runs on a heap the other just filled.
    const order = run % 2 === 0 ? ['strict', 'floor', 'encodeOnly'] : ['floor', 'encodeOnly', 'strict'];
    const sums = { strict: 0, floor: 0, encodeOnly: 0 };
    for (const side of order) {
      for (const g of groups) {
        const ms = side === 'strict' ? strict(g) : side === 'floor' ? floor(g) : encodeOnly(g);
        sums[side as keyof typeof sums] += ms;
        (side === 'strict' ? strictRuns : side === 'floor' ? floorRuns : encodeOnlyRuns)
          .get(g.label)!
          .push(ms);
      }
    }
    strictAll.push(sums.strict);
    strictSameAll.push(groups.reduce((ms, g) => ms + strictSame(g), 0));
    floorAll.push(sums.floor);
    encodeOnlyAll.push(sums.encodeOnly);
  }
  if (sink === 0) log('(nothing encoded)');

  const routeGroup = groups.find((g) => g.typeUrl === TypeUrl.RouteConfiguration);
  const reencode = routeReencode(routeGroup?.json ?? [], flags.runs);

  log(
    `input: ${groups.map((g) => `${g.json.length} ${g.label}`).join(', ')} (${total} resources, ${(bytes / 1024 / 1024).toFixed(1)} MiB encoded)`,
  );
  log(
    `byte identity: ${identical}/${total} identical to the floor's bytes, ${decodeEqual} more decode equal, ${total - identical - decodeEqual} differ${differing.length ? ` (${differing.join(', ')})` : ''}`,
  );
  const rows = groups.map((g) => {
    const s = median(strictRuns.get(g.label)!);
    const f = median(floorRuns.get(g.label)!);
    return {
      type: g.label,
      count: g.json.length,
      strict: s,
      floor: f,
      encode_only: median(encodeOnlyRuns.get(g.label)!),
      'strict/floor': `${(s / f).toFixed(2)}x`,
      'µs/resource': `${((s * 1000) / g.json.length).toFixed(1)}`,
    };
  });
  printTable(rows.map((r) => ({ ...r, count: String(r.count) })));
  const encodeAll = median(strictAll);
  const floorMs = median(floorAll);
  const ratio = encodeAll / floorMs;
  log(
    `all: strict ${encodeAll.toFixed(1)} ms, floor ${floorMs.toFixed(1)} ms, encode only ${median(encodeOnlyAll).toFixed(1)} ms (CPU, medians of ${flags.runs})`,
  );
  log(`first strict pass (cold, one run): ${firstPass.toFixed(1)} ms`);
  const sameAll = median(strictSameAll);
  log(
    `the same objects encoded again (every sub-message from the memo): ${sameAll.toFixed(1)} ms (${(encodeAll / sameAll).toFixed(1)}x less than fresh objects)`,
  );
  const reencodeRatio = reencode.cold / reencode.shared;
  log(
    `re-encode after one virtual host changed (${routeGroup?.json.length ?? 0} RouteConfigurations, ${reencode.hosts} virtual hosts, one replaced in each): cold ${reencode.cold.toFixed(2)} ms, shared sub-objects ${reencode.shared.toFixed(2)} ms -> ${reencodeRatio.toFixed(1)}x (bytes differ in ${reencode.differ})`,
  );
  log(`target: shared at least 10x cheaper than cold -> ${reencodeRatio >= 10 ? 'met' : 'NOT met'}`);
  log(
    `load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} on ${cpus().length} cores`,
  );
  log(`target: strict within 2x of the floor -> ${ratio <= 2 ? 'met' : 'NOT met'} (${ratio.toFixed(2)}x)`);
  emitResult({
    resources: total,
    encoded_bytes: bytes,
    encode_all_cpu_ms: round3(encodeAll),
    floor_cpu_ms: round3(floorMs),
    encode_over_floor: round3(ratio),
    encode_only_cpu_ms: round3(median(encodeOnlyAll)),
    encode_first_pass_cpu_ms: round3(firstPass),
    encode_all_same_objects_cpu_ms: round3(sameAll),
    route_reencode_cold_ms: round3(reencode.cold),
    route_reencode_shared_ms: round3(reencode.shared),
    route_reencode_cold_over_shared: round3(reencodeRatio),
    route_reencode_bytes_differ: reencode.differ,
    bytes_identical: identical,
    decode_equal: decodeEqual,
    differ: total - identical - decodeEqual,
    per_type: Object.fromEntries(
      rows.map((r) => [
        r.type,
        {
          count: r.count,
          encode_cpu_ms: round3(r.strict),
          floor_cpu_ms: round3(r.floor),
          encode_over_floor: round3(r.strict / r.floor),
        },
      ]),
    ),
    target_encode_over_floor: 2,
    target_route_reencode_cold_over_shared: 10,
  });
}
