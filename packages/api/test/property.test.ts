import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  ALL_KINDS,
  type ConfigObject,
  canonicalJSON,
  normalize,
  parseConfigDocuments,
  ValidationError,
  validateConfig,
} from '@meridian/api';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const examples: ConfigObject[] = ['bookinfo.yaml', 'egress.yaml'].flatMap((f) => {
  const r = parseConfigDocuments(
    readFileSync(fileURLToPath(new URL(`./testdata/${f}`, import.meta.url)), 'utf8'),
  );
  if (!r.ok) throw new Error(r.error.message);
  return r.configs;
});

/** Rebuilds a JSON value with object keys in a permuted order (seeded). */
function shuffleKeys(v: unknown, seed: number): unknown {
  if (Array.isArray(v)) return v.map((x, i) => shuffleKeys(x, seed + i + 1));
  if (typeof v !== 'object' || v === null) return v;
  const keys = Object.keys(v);
  let s = seed;
  for (let i = keys.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [keys[i], keys[j]] = [keys[j] as string, keys[i] as string];
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = shuffleKeys((v as Record<string, unknown>)[k], s + k.length);
  return out;
}

const apiVersions = ALL_KINDS.flatMap((k) => k.versions.map((v) => `${k.group}/${v}`));
const fieldNames = [
  'hosts',
  'http',
  'route',
  'destination',
  'host',
  'subset',
  'weight',
  'match',
  'uri',
  'exact',
  'prefix',
  'regex',
  'timeout',
  'retries',
  'attempts',
  'fault',
  'delay',
  'abort',
  'fixedDelay',
  'percentage',
  'value',
  'subsets',
  'name',
  'labels',
  'trafficPolicy',
  'loadBalancer',
  'simple',
  'consistentHash',
  'ports',
  'number',
  'protocol',
  'resolution',
  'endpoints',
  'address',
  'egress',
  'ingress',
  'port',
  'selector',
  'matchLabels',
  'mtls',
  'mode',
  'portLevelMtls',
  'rules',
  'from',
  'to',
  'when',
  'source',
  'operation',
  'key',
  'values',
  'action',
  'headers',
  'tcp',
  'tls',
];

/** JSON values that use the schema's field names, so random input reaches deep into validation. */
const schemaish: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.jsonValue({ maxDepth: 1 }),
    fc.constantFrom(
      'reviews',
      '*',
      '1s',
      '10ms',
      'ROUND_ROBIN',
      'STRICT',
      'DNS',
      '',
      'v1',
      100,
      0,
      -1,
      65536,
      null,
      true,
    ),
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom(...fieldNames), tie('v'), { maxKeys: 4 }),
  ),
})).v;

const configish = fc.record({
  apiVersion: fc.oneof(fc.constantFrom(...apiVersions), fc.string()),
  kind: fc.oneof(fc.constantFrom(...ALL_KINDS.map((k) => k.kind)), fc.string()),
  metadata: fc.oneof(
    fc.record({ name: fc.constantFrom('a', 'b', 'Bad'), namespace: fc.constantFrom('default', 'x') }),
    schemaish,
  ),
  spec: schemaish,
});

const stringMatch = fc.oneof(
  fc.record({ exact: fc.constantFrom('/a', '', 'GET') }),
  fc.record({ prefix: fc.constantFrom('/', '/api') }),
  fc.record({ regex: fc.constantFrom('^/v[0-9]+', '.*') }),
);
const destination = fc.record(
  {
    host: fc.constantFrom('reviews', 'ratings.default.svc.cluster.local'),
    subset: fc.constantFrom('v1', 'v2'),
    port: fc.record({ number: fc.integer({ min: 1, max: 65535 }) }),
  },
  { requiredKeys: ['host'] },
);
const routes = fc.oneof(
  destination.map((d) => [{ destination: d }]),
  fc.tuple(destination, destination, fc.integer({ min: 0, max: 100 })).map(([a, b, w]) => [
    { destination: a, weight: w },
    { destination: b, weight: 100 - w },
  ]),
);
const httpRoute = fc.record(
  {
    name: fc.constantFrom('r1', ''),
    match: fc.array(
      fc.record(
        {
          uri: stringMatch,
          headers: fc.dictionary(fc.constantFrom('x-a', 'end-user'), stringMatch, { maxKeys: 2 }),
        },
        { requiredKeys: [] },
      ),
      { maxLength: 2 },
    ),
    route: routes,
    timeout: fc.constantFrom('1s', '250ms', '1m', '1.5s'),
    retries: fc.record(
      {
        attempts: fc.integer({ min: 1, max: 5 }),
        perTryTimeout: fc.constantFrom('2s', '100ms'),
        retryOn: fc.constantFrom('5xx', 'connect-failure,503'),
      },
      { requiredKeys: ['attempts'] },
    ),
    fault: fc.record({
      abort: fc.record({
        httpStatus: fc.integer({ min: 200, max: 599 }),
        percentage: fc.record({ value: fc.constantFrom(0, 50, 100, 0.5) }),
      }),
    }),
  },
  { requiredKeys: ['route'] },
);
const specs: Record<string, fc.Arbitrary<unknown>> = {
  VirtualService: fc.record(
    {
      hosts: fc.constantFrom(
        ['reviews'],
        ['reviews', 'ratings.default.svc.cluster.local'],
        ['*.example.com'],
      ),
      http: fc.array(httpRoute, { minLength: 1, maxLength: 3 }),
      exportTo: fc.constantFrom([], ['.'], ['*']),
    },
    { requiredKeys: ['hosts', 'http'] },
  ),
  DestinationRule: fc.record(
    {
      host: fc.constantFrom('reviews', '*.example.com'),
      subsets: fc
        .uniqueArray(fc.constantFrom('v1', 'v2', 'v3'), { maxLength: 3 })
        .map((names) => names.map((name) => ({ name, labels: { version: name } }))),
      trafficPolicy: fc.record(
        {
          loadBalancer: fc.oneof(
            fc.record({ simple: fc.constantFrom('UNSPECIFIED', 'ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM') }),
            fc.record({
              consistentHash: fc.oneof(
                fc.record({ httpHeaderName: fc.constant('x-user') }),
                fc.record({ useSourceIp: fc.boolean() }),
              ),
            }),
          ),
          connectionPool: fc.record(
            {
              tcp: fc.record({ maxConnections: fc.nat(1000), connectTimeout: fc.constantFrom('30ms', '1s') }),
              http: fc.record({ maxRetries: fc.nat(5), useClientProtocol: fc.boolean() }),
            },
            { requiredKeys: ['tcp'] },
          ),
          outlierDetection: fc.record({
            consecutive5xxErrors: fc.nat(10),
            interval: fc.constantFrom('10s', '5m'),
            maxEjectionPercent: fc.nat(100),
          }),
          tls: fc.record({
            mode: fc.constantFrom('DISABLE', 'ISTIO_MUTUAL', 'SIMPLE'),
            sni: fc.constantFrom('', 'a.example.com'),
          }),
        },
        { requiredKeys: ['loadBalancer'] },
      ),
    },
    { requiredKeys: ['host'] },
  ),
  WorkloadEntry: fc.record(
    {
      address: fc.constantFrom('10.0.0.1', 'vm.example.com', '::1'),
      ports: fc.dictionary(fc.constantFrom('http', 'grpc'), fc.integer({ min: 1, max: 65535 }), {
        maxKeys: 2,
      }),
      labels: fc.dictionary(fc.constantFrom('app', 'version'), fc.constantFrom('a', 'v1', ''), {
        maxKeys: 2,
      }),
      weight: fc.integer({ min: 1, max: 100 }),
      network: fc.constantFrom('', 'n1'),
    },
    { requiredKeys: ['address'] },
  ),
  PeerAuthentication: fc.record(
    {
      selector: fc.record({ matchLabels: fc.constant({ app: 'x' }) }),
      mtls: fc.record({ mode: fc.constantFrom('UNSET', 'STRICT', 'PERMISSIVE', 'DISABLE') }),
      portLevelMtls: fc.dictionary(
        fc.constantFrom('80', '8080'),
        fc.record({ mode: fc.constantFrom('STRICT', 'DISABLE') }),
        { minKeys: 1, maxKeys: 2 },
      ),
    },
    { requiredKeys: ['selector'] },
  ),
};
const validish = fc.constantFrom(...Object.keys(specs)).chain((kind) => {
  const info = ALL_KINDS.find((k) => k.kind === kind);
  if (info === undefined) throw new Error(kind);
  return fc.record({
    apiVersion: fc.constantFrom(...info.versions.map((v) => `${info.group}/${v}`)),
    kind: fc.constant(kind),
    metadata: fc.record({
      name: fc.constantFrom('a', 'b.c'),
      namespace: fc.constantFrom('default', 'x', ''),
    }),
    spec: specs[kind] as fc.Arbitrary<unknown>,
  });
});

describe('properties', () => {
  it('the generator of plausible objects mostly yields valid ones (so the properties below are not vacuous)', () => {
    const sample = fc.sample(validish, 400);
    const valid = sample.filter((x) => validateConfig(x).ok).length;
    expect(valid).toBeGreaterThan(300);
  });

  it('validateConfig never throws on arbitrary JSON, and returns either a config or errors', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), configish), (input) => {
        const r = validateConfig(input);
        if (r.ok) {
          expect(r.config.metadata.name.length).toBeGreaterThan(0);
        } else {
          expect(r.error).toBeInstanceOf(ValidationError);
          expect(r.error.errors.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('parseConfigDocuments never throws on arbitrary text', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.constantFrom('---\n', ': :\n', '- [\n', '&a [*a]\n', '{"a":')),
        (text) => {
          const r = parseConfigDocuments(text);
          expect(typeof r.ok).toBe('boolean');
          const j = parseConfigDocuments(text, { format: 'json' });
          expect(typeof j.ok).toBe('boolean');
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a valid result is canonical: normalize is idempotent and the result re-validates to itself', () => {
    fc.assert(
      fc.property(fc.oneof(configish, validish), (input) => {
        const r = validateConfig(input);
        if (!r.ok) return;
        expect(normalize(r.config)).toEqual(r.config);
        const again = validateConfig(r.config);
        expect(again.ok && canonicalJSON(again.config)).toBe(canonicalJSON(r.config));
      }),
      { numRuns: 1500 },
    );
    for (const c of examples) {
      expect(normalize(normalize(c))).toEqual(normalize(c));
      const again = validateConfig(c);
      expect(again.ok && canonicalJSON(again.config)).toBe(canonicalJSON(c));
    }
  });

  it('key order of the input does not change the canonical bytes', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constantFrom(...examples), validish),
        fc.integer({ min: 1, max: 1_000_000 }),
        (c, seed) => {
          const base = validateConfig(c);
          if (!base.ok) return;
          const shuffled = shuffleKeys(JSON.parse(JSON.stringify(c)), seed);
          const r = validateConfig(shuffled);
          expect(r.ok && canonicalJSON(r.config)).toBe(canonicalJSON(base.config));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('determinism', () => {
  it('the same invalid object with its keys in another order gives the same error lines', () => {
    fc.assert(
      fc.property(fc.oneof(configish, validish), fc.integer({ min: 1, max: 1_000_000 }), (input, seed) => {
        const a = validateConfig(input);
        const b = validateConfig(shuffleKeys(input, seed));
        expect(b.ok).toBe(a.ok);
        if (!a.ok && !b.ok) expect(b.error.lines()).toEqual(a.error.lines());
      }),
      { numRuns: 1500 },
    );
  });
});

describe('normalize', () => {
  it('canonicalises versions, defaults, empty and zero values, but keeps oneof members and wrappers', () => {
    const r = validateConfig({
      apiVersion: 'networking.istio.io/v1alpha3',
      kind: 'DestinationRule',
      metadata: { name: 'r', labels: {} },
      spec: {
        subsets: [],
        host: 'r',
        exportTo: [],
        trafficPolicy: {
          loadBalancer: { simple: 'UNSPECIFIED', localityLbSetting: { enabled: false } },
          connectionPool: { http: { maxRetries: 0, useClientProtocol: false } },
          tls: { mode: 'DISABLE', insecureSkipVerify: false },
        },
      },
    });
    if (!r.ok) throw new Error(r.error.message);
    expect(canonicalJSON(r.config)).toBe(
      JSON.stringify({
        apiVersion: 'networking.istio.io/v1',
        kind: 'DestinationRule',
        metadata: { name: 'r', namespace: 'default' },
        spec: {
          host: 'r',
          trafficPolicy: {
            connectionPool: { http: {} },
            loadBalancer: { localityLbSetting: { enabled: false }, simple: 'UNSPECIFIED' },
            tls: { insecureSkipVerify: false },
          },
        },
      }),
    );
  });

  it('keeps an exact match on the empty string (a oneof member)', () => {
    const r = validateConfig({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'v' },
      spec: {
        hosts: ['a'],
        http: [{ match: [{ headers: { 'x-a': { exact: '' } } }], route: [{ destination: { host: 'a' } }] }],
      },
    });
    if (!r.ok) throw new Error(r.error.message);
    if (r.config.kind !== 'VirtualService') throw new Error('kind');
    expect(r.config.spec.http?.[0]?.match?.[0]?.headers).toEqual({ 'x-a': { exact: '' } });
  });
});
