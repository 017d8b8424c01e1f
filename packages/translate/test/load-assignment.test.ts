// buildLoadAssignment groups each endpoint list once per service port (shared, read-only JSON) and
// selects, renumbers and orders groups per cluster. This checks it against a plain restatement of the
// rules (one group per (base priority, locality) built endpoint by endpoint, sorted by key, then
// Istio's distribute or failover) on random lists, with and without the shared memo, so sharing
// never changes a byte.
import type { LocalityLoadBalancerSetting } from '@meridian/api';
import type { EnvoyJson, JsonValue } from '@meridian/envoy';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildLoadAssignment, type Endpoint, localityMatches, type Service } from '../src/index.js';

type Input = Parameters<typeof buildLoadAssignment>[0];
type Locality = Endpoint['locality'];

interface RefGroup {
  locality: Locality;
  key: string;
  priority: number;
  weight: number;
  lbEndpoints: JsonValue[];
}

const lk = (l: Locality) => `${l.region}/${l.zone}/${l.subZone}`;
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function labelValue(
  x: { locality: Locality; labels: Readonly<Record<string, string>>; network: string; clusterId: string },
  key: string,
): string | undefined {
  switch (key) {
    case 'topology.kubernetes.io/region':
      return x.locality.region;
    case 'topology.kubernetes.io/zone':
      return x.locality.zone;
    case 'topology.istio.io/subzone':
      return x.locality.subZone;
    case 'topology.istio.io/network':
      return x.network;
    case 'topology.istio.io/cluster':
      return x.clusterId;
    default:
      return x.labels[key];
  }
}

/** The rules restated without any sharing (see endpoint.ts's module comment). */
function reference(input: Input): EnvoyJson {
  const { port, proxy } = input;
  const lb = input.localityLb;
  const known = proxy.locality.region !== '';
  const labels = known && input.failover && !lb?.distribute?.length ? (lb?.failoverPriority ?? []) : [];
  const groups = new Map<string, RefGroup>();
  for (const ep of input.endpoints) {
    const sel = input.subsetLabels ?? {};
    if (Object.keys(sel).some((k) => ep.labels[k] !== sel[k])) continue;
    let matched = 0;
    for (const raw of labels) {
      const eq = raw.indexOf('=');
      const key = eq < 0 ? raw : raw.slice(0, eq);
      const want = eq < 0 ? labelValue(proxy, key) : raw.slice(eq + 1);
      if (want === undefined || want === '' || labelValue(ep, key) !== want) break;
      matched++;
    }
    const base = labels.length - matched;
    const key = `${base}\u0000${lk(ep.locality)}`;
    let g = groups.get(key);
    if (!g) {
      g = { locality: ep.locality, key, priority: base, weight: 0, lbEndpoints: [] };
      groups.set(key, g);
    }
    const weight = Math.max(1, Math.floor(ep.weight || 1));
    g.weight += weight;
    g.lbEndpoints.push({
      endpoint: {
        address: {
          socket_address: {
            address: ep.address,
            port_value: ep.ports[port.name] ?? port.targetPort ?? port.port,
          },
        },
      },
      health_status: ep.health,
      load_balancing_weight: weight,
    });
  }
  let list = [...groups.values()].sort((a, b) => cmp(a.key, b.key));
  if (known && lb?.distribute?.length) {
    for (const rule of lb.distribute) {
      if (!localityMatches(proxy.locality, rule.from ?? '')) continue;
      const unmatched = new Set(list);
      const to = rule.to ?? {};
      for (const pattern of Object.keys(to).sort(cmp)) {
        const matched = list.filter((g) => unmatched.has(g) && localityMatches(g.locality, pattern));
        const total = matched.reduce((s, g) => s + g.weight, 0);
        for (const g of matched) {
          unmatched.delete(g);
          const w = Math.ceil((g.weight * (to[pattern] ?? 0)) / total);
          if (w > 0) g.weight = w;
          else unmatched.add(g);
        }
      }
      list = list.filter((g) => !unmatched.has(g));
      break;
    }
  } else if (known && input.failover) {
    const failoverTo = lb?.failover?.find((f) => f.from === proxy.locality.region)?.to;
    for (const g of list) {
      const l = g.locality;
      const here = proxy.locality;
      let p = here.region !== l.region ? 3 : here.zone !== l.zone ? 2 : here.subZone !== l.subZone ? 1 : 0;
      if (p === 3 && failoverTo !== undefined && l.region !== failoverTo) p = 4;
      g.priority = g.priority * 5 + p;
    }
    const distinct = [...new Set(list.map((g) => g.priority))].sort((a, b) => a - b);
    for (const g of list) g.priority = distinct.indexOf(g.priority);
    list.sort((a, b) => a.priority - b.priority || cmp(a.key, b.key));
  }
  return {
    cluster_name: input.clusterName,
    endpoints: list.map((g) => {
      const locality: EnvoyJson = {};
      if (g.locality.region) locality.region = g.locality.region;
      if (g.locality.zone) locality.zone = g.locality.zone;
      if (g.locality.subZone) locality.sub_zone = g.locality.subZone;
      const out: EnvoyJson = { locality, lb_endpoints: g.lbEndpoints, load_balancing_weight: g.weight };
      if (g.priority > 0) out.priority = g.priority;
      return out;
    }),
  };
}

const LOCALITIES: Locality[] = [
  { region: 'us-east1', zone: 'us-east1-b', subZone: '' },
  { region: 'us-east1', zone: 'us-east1-b', subZone: 'rack1' },
  { region: 'us-east1', zone: 'us-east1-c', subZone: '' },
  { region: 'europe-west1', zone: 'europe-west1-b', subZone: '' },
  { region: 'asia-east1', zone: 'a', subZone: 'r1' },
  { region: '', zone: '', subZone: '' },
];

const endpointArb = fc.record({
  n: fc.nat(200),
  locality: fc.constantFrom(...LOCALITIES),
  version: fc.constantFrom('v1', 'v2'),
  tier: fc.constantFrom('gold', 'silver'),
  weight: fc.constantFrom(0, 1, 3),
  port: fc.option(fc.constantFrom(8080, 9090), { nil: undefined }),
  health: fc.constantFrom('HEALTHY' as const, 'UNHEALTHY' as const),
});

const localityLbArb: fc.Arbitrary<LocalityLoadBalancerSetting | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.record({
    failover: fc.constant([{ from: 'us-east1', to: 'europe-west1' }]) as fc.Arbitrary<
      LocalityLoadBalancerSetting['failover']
    >,
  }),
  fc.record({
    failoverPriority: fc.subarray(
      ['tier', 'topology.kubernetes.io/zone', 'version=v2', 'topology.istio.io/network'],
      {
        minLength: 1,
      },
    ),
  }),
  fc.record({
    distribute: fc.constant([
      { from: 'us-east1/*', to: { 'us-east1/us-east1-b/*': 70, 'europe-west1/*': 20, 'asia-east1/*': 10 } },
    ]) as fc.Arbitrary<LocalityLoadBalancerSetting['distribute']>,
  }),
);

const service: Service = {
  hostname: 'svc.ns.svc.cluster.local',
  namespace: 'ns',
  ports: [{ name: 'http', port: 80, protocol: 'HTTP' }],
  labels: {},
  exportTo: [],
  resolution: 'EDS',
};

describe('buildLoadAssignment', () => {
  it('agrees with the rules restated endpoint by endpoint, with and without the shared memo', () => {
    fc.assert(
      fc.property(
        fc.array(endpointArb, { maxLength: 30 }),
        fc.constantFrom<Record<string, string> | undefined>(
          undefined,
          {},
          { version: 'v1' },
          { version: 'v2', tier: 'gold' },
        ),
        localityLbArb,
        fc.boolean(),
        fc.constantFrom(...LOCALITIES),
        fc.constantFrom('gold', 'silver'),
        (specs, subsetLabels, localityLb, failover, here, tier) => {
          const endpoints: Endpoint[] = specs.map((s, i) => ({
            address: `10.0.${s.n}.${i}`,
            ports: (s.port === undefined ? {} : { http: s.port }) as Record<string, number>,
            labels: { version: s.version, tier: s.tier },
            locality: { ...s.locality },
            network: i % 2 === 0 ? 'net1' : 'net2',
            clusterId: 'c1',
            health: s.health,
            serviceAccount: '',
            weight: s.weight,
          }));
          const base: Input = {
            clusterName: 'outbound|80|v1|svc.ns.svc.cluster.local',
            service,
            port: service.ports[0] as Input['port'],
            endpoints,
            subsetLabels,
            localityLb,
            failover,
            proxy: { locality: here, labels: { tier }, network: 'net1', clusterId: 'c1' },
          };
          const want = JSON.stringify(reference(base));
          expect(JSON.stringify(buildLoadAssignment(base))).toBe(want);
          // The memo shared with another cluster of the same list (the default one) first.
          const preparedCache = new WeakMap();
          buildLoadAssignment({ ...base, subsetLabels: undefined, localityLb: undefined, preparedCache });
          expect(JSON.stringify(buildLoadAssignment({ ...base, preparedCache }))).toBe(want);
          expect(JSON.stringify(buildLoadAssignment({ ...base, preparedCache }))).toBe(want);
        },
      ),
      { numRuns: 400 },
    );
  });
});
