// Property tests: random valid snapshots (objects validated by @meridian/api, random services,
// endpoints and proxies) never make translation throw, every resource passes Envoy's schema, the
// output is deterministic, and the incremental Translator agrees with a fresh translation.
import { type ConfigObject, validateConfig } from '@meridian/api';
import { checkResource } from '@meridian/envoy';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  createConfigSnapshot,
  createRegistrySnapshot,
  type Endpoint,
  resourcesByTypeUrl,
  type Service,
  Translator,
  translateProxy,
} from '../src/index.js';
import { endpoint, proxy } from './fixtures.js';

const NAMES = ['alpha', 'beta', 'gamma', 'delta'];
const NAMESPACES = ['default', 'team', 'istio-system'];
const LOCALITIES = [
  'us-east1/us-east1-b/',
  'us-east1/us-east1-c/',
  'europe-west1/europe-west1-b/',
  'asia-east1/a/r1',
];
const SUBSETS = ['v1', 'v2'];

const host = (name: string, ns: string) => `${name}.${ns}.svc.cluster.local`;

const portArb = fc.record({
  name: fc.constantFrom('http', 'grpc', 'tcp'),
  port: fc.constantFrom(80, 8080, 9080, 7070),
  protocol: fc.constantFrom('HTTP', 'HTTP2', 'GRPC', 'TCP'),
});

const serviceArb = fc.record({
  name: fc.constantFrom(...NAMES),
  namespace: fc.constantFrom(...NAMESPACES),
  ports: fc.uniqueArray(portArb, { minLength: 1, maxLength: 2, selector: (p) => p.port }),
  resolution: fc.constantFrom<Service['resolution']>('EDS', 'EDS', 'EDS', 'DNS', 'PASSTHROUGH'),
  exportTo: fc.constantFrom<string[]>([], ['.'], ['*'], ['team']),
  vip: fc.option(fc.constantFrom('10.96.0.1', '10.96.0.2'), { nil: undefined }),
  endpoints: fc.array(
    fc.record({
      ip: fc.integer({ min: 1, max: 250 }),
      version: fc.constantFrom(...SUBSETS),
      locality: fc.constantFrom(...LOCALITIES),
      health: fc.constantFrom<Endpoint['health']>('HEALTHY', 'HEALTHY', 'UNHEALTHY', 'DRAINING'),
      weight: fc.integer({ min: 1, max: 5 }),
    }),
    { maxLength: 4 },
  ),
});

const stringMatchArb = fc.oneof(
  fc.record({ exact: fc.constantFrom('/a', 'x', 'GET') }),
  fc.record({ prefix: fc.constantFrom('/', '/api', 'v') }),
  fc.record({ regex: fc.constantFrom('/v[0-9]+', '.*') }),
);

const destinationArb = fc.record(
  {
    host: fc.constantFrom(...NAMES),
    subset: fc.constantFrom(...SUBSETS),
    port: fc.record({ number: fc.constantFrom(80, 8080, 9080, 7070) }),
  },
  { requiredKeys: ['host'] },
);

const httpRouteArb = fc
  .record(
    {
      match: fc.array(
        fc.record(
          {
            uri: stringMatchArb,
            headers: fc.dictionary(fc.constantFrom('x-user', 'end-user'), stringMatchArb, { maxKeys: 1 }),
            queryParams: fc.dictionary(fc.constantFrom('q'), fc.record({ exact: fc.constant('1') }), {
              maxKeys: 1,
            }),
            method: fc.record({ exact: fc.constantFrom('GET', 'POST') }),
            ignoreUriCase: fc.boolean(),
          },
          { requiredKeys: [] },
        ),
        { maxLength: 2 },
      ),
      split: fc.integer({ min: 0, max: 100 }),
      destinations: fc.array(destinationArb, { minLength: 1, maxLength: 2 }),
      timeout: fc.constantFrom('1s', '250ms', '0s'),
      retries: fc.record(
        {
          attempts: fc.integer({ min: 0, max: 3 }),
          perTryTimeout: fc.constantFrom('1s', '100ms'),
          retryOn: fc.constantFrom('5xx', 'unavailable,503', 'gateway-error'),
        },
        { requiredKeys: ['attempts'] },
      ),
      fault: fc.record(
        {
          delay: fc.record({
            fixedDelay: fc.constantFrom('1s', '5ms'),
            percentage: fc.record({ value: fc.double({ min: 0, max: 100, noNaN: true }) }),
          }),
          abort: fc.oneof(
            fc.record({
              httpStatus: fc.constantFrom(500, 503),
              percentage: fc.record({ value: fc.constantFrom(0, 50, 100) }),
            }),
            fc.record({ grpcStatus: fc.constantFrom('UNAVAILABLE', 'ABORTED') }),
          ),
        },
        { requiredKeys: [] },
      ),
      redirect: fc.boolean(),
      mirror: fc.boolean(),
      headers: fc.boolean(),
    },
    { requiredKeys: ['destinations', 'split', 'redirect', 'mirror', 'headers'] },
  )
  .map((r) => {
    const out: Record<string, unknown> = {};
    if (r.match && r.match.length > 0) out.match = r.match;
    if (r.redirect) out.redirect = { uri: '/moved', redirectCode: 301 };
    else {
      const [a, b] = r.destinations;
      out.route = b
        ? [
            { destination: a, weight: r.split },
            { destination: b, weight: 100 - r.split },
          ]
        : [{ destination: a }];
      if (r.timeout) out.timeout = r.timeout;
      if (r.retries) out.retries = r.retries;
      if (r.fault && Object.keys(r.fault).length > 0) out.fault = r.fault;
      if (r.mirror) out.mirror = { host: NAMES[0] };
      if (r.headers)
        if (r.headers)
          out.corsPolicy = { allowOrigins: [{ prefix: 'https://' }], allowMethods: ['GET'], maxAge: '1h' };
      out.headers = {
        request: { set: { 'x-a': '1' }, remove: ['x-b'] },
        response: { add: { 'x-c': '2' } },
      };
    }
    return out;
  });

const trafficPolicyArb = fc.record(
  {
    loadBalancer: fc.oneof(
      fc.record({ simple: fc.constantFrom('ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'PASSTHROUGH') }),
      fc.record({
        consistentHash: fc.oneof(
          fc.record({
            httpHeaderName: fc.constant('x-user'),
            ringHash: fc.record({ minimumRingSize: fc.constant(1024) }),
          }),
          fc.record({
            httpCookie: fc.record({ name: fc.constant('c'), ttl: fc.constant('10s') }),
            maglev: fc.record({ tableSize: fc.constant(65537) }),
          }),
          fc.record({ useSourceIp: fc.constant(true) }),
          fc.record({ httpQueryParameterName: fc.constant('u') }),
        ),
      }),
      fc.record({
        localityLbSetting: fc.oneof(
          fc.record({ failover: fc.constant([{ from: 'us-east1', to: 'europe-west1' }]) }),
          fc.record({ failoverPriority: fc.constant(['topology.kubernetes.io/region', 'version']) }),
          fc.record({
            distribute: fc.constant([{ from: 'us-east1/*', to: { 'us-east1/*': 60, 'europe-west1/*': 40 } }]),
          }),
        ),
      }),
    ),
    connectionPool: fc.record(
      {
        tcp: fc.record(
          { maxConnections: fc.integer({ min: 1, max: 100 }), connectTimeout: fc.constant('1s') },
          { requiredKeys: [] },
        ),
        http: fc.record(
          {
            http2MaxRequests: fc.integer({ min: 1, max: 100 }),
            maxRequestsPerConnection: fc.integer({ min: 1, max: 10 }),
            idleTimeout: fc.constant('30s'),
            h2UpgradePolicy: fc.constantFrom('UPGRADE', 'DO_NOT_UPGRADE'),
          },
          { requiredKeys: [] },
        ),
      },
      { requiredKeys: [] },
    ),
    outlierDetection: fc.record(
      {
        consecutive5xxErrors: fc.integer({ min: 0, max: 10 }),
        consecutiveGatewayErrors: fc.integer({ min: 1, max: 5 }),
        interval: fc.constant('1s'),
        baseEjectionTime: fc.constant('30s'),
        maxEjectionPercent: fc.integer({ min: 0, max: 100 }),
        minHealthPercent: fc.integer({ min: 0, max: 100 }),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);

const configArb = fc.record({
  virtualServices: fc.array(
    fc.record({
      name: fc.constantFrom(...NAMES),
      namespace: fc.constantFrom(...NAMESPACES),
      http: fc.array(httpRouteArb, { minLength: 1, maxLength: 3 }),
      exportTo: fc.constantFrom<string[]>([], ['.']),
    }),
    { maxLength: 3 },
  ),
  destinationRules: fc.array(
    fc.record({
      name: fc.constantFrom(...NAMES),
      namespace: fc.constantFrom(...NAMESPACES),
      trafficPolicy: trafficPolicyArb,
      subsetPolicy: fc.option(trafficPolicyArb, { nil: undefined }),
    }),
    { maxLength: 3 },
  ),
  sidecar: fc.option(
    fc.constantFrom<string[]>(
      ['./*'],
      ['*/*'],
      ['team/*', 'istio-system/*'],
      [`default/${host('alpha', 'default')}`],
    ),
    { nil: undefined },
  ),
  sidecarNamespace: fc.constantFrom(...NAMESPACES),
});

/** Validated objects (invalid ones are dropped, as the admin API would reject them). */
export function configObjects(c: {
  virtualServices: { name: string; namespace: string; http: Record<string, unknown>[]; exportTo: string[] }[];
  destinationRules: {
    name: string;
    namespace: string;
    trafficPolicy: Record<string, unknown>;
    subsetPolicy?: Record<string, unknown>;
  }[];
  sidecar?: string[];
  sidecarNamespace: string;
}): ConfigObject[] {
  const raw: unknown[] = [];
  for (const vs of c.virtualServices) {
    raw.push({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: `${vs.name}-vs`, namespace: vs.namespace },
      spec: { hosts: [vs.name], http: vs.http, ...(vs.exportTo.length ? { exportTo: vs.exportTo } : {}) },
    });
  }
  for (const dr of c.destinationRules) {
    raw.push({
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: `${dr.name}-dr`, namespace: dr.namespace },
      spec: {
        host: dr.name,
        trafficPolicy: dr.trafficPolicy,
        subsets: SUBSETS.map((s) => ({
          name: s,
          labels: { version: s },
          ...(dr.subsetPolicy && s === 'v2' ? { trafficPolicy: dr.subsetPolicy } : {}),
        })),
      },
    });
  }
  if (c.sidecar) {
    raw.push({
      apiVersion: 'networking.istio.io/v1',
      kind: 'Sidecar',
      metadata: { name: 'default', namespace: c.sidecarNamespace },
      spec: { egress: [{ hosts: c.sidecar }] },
    });
  }
  const out: ConfigObject[] = [];
  const seen = new Set<string>();
  for (const r of raw) {
    const v = validateConfig(r);
    if (!v.ok) continue; // only valid objects reach translation
    const key = `${v.config.kind}/${v.config.metadata.namespace}/${v.config.metadata.name}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(v.config);
  }
  return out;
}

const inputArb = fc.record({
  services: fc.uniqueArray(serviceArb, {
    minLength: 1,
    maxLength: 6,
    selector: (s) => host(s.name, s.namespace),
  }),
  config: configArb,
  proxyNamespace: fc.constantFrom(...NAMESPACES),
  proxyLocality: fc.constantFrom(...LOCALITIES),
  grpc: fc.boolean(),
  proxyIp: fc.integer({ min: 1, max: 250 }),
});

type Input = typeof inputArb extends fc.Arbitrary<infer T> ? T : never;

function build(input: Input, reversed = false) {
  const services: Service[] = [];
  const endpoints = new Map<string, Endpoint[]>();
  for (const s of input.services) {
    const hostname = host(s.name, s.namespace);
    services.push({
      hostname,
      namespace: s.namespace,
      ports: s.ports.map((p, i) => ({ ...p, name: `${p.name}-${i}` })),
      labels: { app: s.name },
      exportTo: s.exportTo,
      resolution: s.resolution,
      ...(s.vip ? { addresses: [s.vip] } : {}),
    });
    endpoints.set(
      hostname,
      s.endpoints.map((e) =>
        endpoint(
          `10.0.0.${e.ip}`,
          Object.fromEntries(s.ports.map((p, i) => [`${p.name}-${i}`, p.port + 1])),
          { app: s.name, version: e.version },
          e.locality,
          { health: e.health, weight: e.weight },
        ),
      ),
    );
  }
  const [region = '', zone = '', subZone = ''] = input.proxyLocality.split('/');
  // `reversed` feeds the same objects in the opposite order: the output must not change.
  const objects = configObjects(input.config);
  const order = <T>(xs: T[]): T[] => (reversed ? [...xs].reverse() : xs);
  return {
    config: createConfigSnapshot(1, order(objects)),
    registry: createRegistrySnapshot(
      1,
      order(services),
      new Map(order([...endpoints.entries()]).map(([h, l]) => [h, order(l)])),
    ),
    proxy: proxy({
      ip: `10.0.0.${input.proxyIp}`,
      namespace: input.proxyNamespace,
      grpc: input.grpc,
      locality: { region, zone, sub_zone: subZone },
      labels: { app: 'client', version: 'v1' },
    }),
  };
}

describe('property: random valid snapshots', () => {
  it('the generators produce mostly valid objects (so the properties are not vacuous)', () => {
    let generated = 0;
    let valid = 0;
    for (const input of fc.sample(inputArb, { numRuns: 200, seed: 7 })) {
      const c = input.config;
      generated += c.virtualServices.length + c.destinationRules.length + (c.sidecar ? 1 : 0);
      valid += configObjects(c).length;
    }
    console.log(`valid objects: ${valid} of ${generated}`);
    expect(valid).toBeGreaterThan(generated * 0.6);
  });

  it('never throw, always pass Envoy schema checks, and are deterministic (also in input order)', () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const { config, registry, proxy: p } = build(input);
        const a = translateProxy(config, registry, p);
        for (const [typeUrl, list] of resourcesByTypeUrl(a)) {
          for (const r of list) {
            const problems = checkResource(typeUrl, r.resource);
            if (problems.length > 0) throw new Error(`${r.name}: ${JSON.stringify(problems)}`);
          }
          const names = list.map((r) => r.name);
          expect(names).toEqual([...new Set(names)].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
        }
        expect(JSON.stringify(translateProxy(config, registry, p))).toBe(JSON.stringify(a));
        const reversed = build(input, true);
        expect(JSON.stringify(translateProxy(reversed.config, reversed.registry, reversed.proxy))).toBe(
          JSON.stringify(a),
        );
      }),
      { numRuns: 150, seed: Number(process.env.FC_SEED ?? 4242) },
    );
  });

  it('an incremental Translator fed a sequence of snapshots agrees with fresh translations', () => {
    fc.assert(
      fc.property(fc.array(inputArb, { minLength: 2, maxLength: 4 }), (inputs) => {
        const t = new Translator();
        for (const input of inputs) {
          const { config, registry, proxy: p } = build(input);
          expect(JSON.stringify(t.translate(config, registry, p))).toBe(
            JSON.stringify(translateProxy(config, registry, p)),
          );
        }
      }),
      { numRuns: 40, seed: Number(process.env.FC_SEED ?? 4242) },
    );
  });
});
