/**
 * ClusterLoadAssignments, after Istio's `pilot/pkg/networking/core/loadbalancer` and
 * `pilot/pkg/xds/endpoints`: endpoints grouped by locality (every locality carries `locality` and a
 * `load_balancing_weight`, the sum of its endpoints' weights, as gRPC clients require), then
 * Istio's locality load-balancing rules relative to the proxy's own locality.
 *
 * Locality rules (Istio `ApplyLocalityLoadBalancer`), only when the proxy's region is known:
 * - `distribute` (the first entry whose `from` matches the proxy's locality): every endpoint
 *   locality matching a `to` pattern (sorted, first match wins) gets `ceil(weight * own / total)`
 *   where `own` is the locality's weight and `total` the summed weight of the localities matching
 *   that pattern; localities matching no pattern are dropped.
 * - otherwise, when failover is enabled (outlier detection set and `enabled` not false):
 *   `failoverPriority` labels first split each locality by how many leading labels match the proxy
 *   (n labels -> base priority = labels.length - matched); then each locality gets
 *   `base * 5 + p` with p = 0 same region/zone/subzone, 1 same region/zone, 2 same region, 3 other
 *   region, 4 other region not named by the `failover` entry for the proxy's region; finally the
 *   priorities are renumbered 0..N without gaps (Envoy requires contiguous priorities).
 */
import type { LocalityLoadBalancerSetting } from '@meridian/api';
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import type { Endpoint, EndpointLocality, Service, ServicePort } from './types.js';
import { compareStrings, labelsMatch } from './util.js';

/** Inputs of one ClusterLoadAssignment. */
export interface LoadAssignmentInput {
  readonly clusterName: string;
  readonly service: Service;
  readonly port: ServicePort;
  readonly endpoints: readonly Endpoint[];
  /** The subset's labels; undefined for the default cluster. */
  readonly subsetLabels: Readonly<Record<string, string>> | undefined;
  readonly localityLb: LocalityLoadBalancerSetting | undefined;
  readonly failover: boolean;
  readonly proxy: Pick<ProxyInfo, 'locality' | 'labels' | 'network' | 'clusterId'>;
  /**
   * Memo of each endpoint list's prepared entries (target port, locality key, `lb_endpoints` JSON)
   * per service port: lists are immutable, so an entry is valid as long as its list lives, and the
   * default cluster and every subset cluster of a service share it. Optional; the Translator passes
   * its own.
   */
  readonly preparedCache?: PreparedCache;
}

/** One endpoint ready for a ClusterLoadAssignment of a given service port. */
interface PreparedEndpoint {
  readonly endpoint: Endpoint;
  readonly localityKey: string;
  readonly weight: number;
  readonly json: EnvoyJson;
}

/** See {@link LoadAssignmentInput.preparedCache}. */
export type PreparedCache = WeakMap<readonly Endpoint[], Map<string, readonly PreparedEndpoint[]>>;

function prepare(
  endpoints: readonly Endpoint[],
  port: ServicePort,
  cache: PreparedCache | undefined,
): readonly PreparedEndpoint[] {
  const portKey = `${port.name}\u0000${port.targetPort ?? port.port}`;
  let byPort = cache?.get(endpoints);
  const hit = byPort?.get(portKey);
  if (hit) return hit;
  const out: PreparedEndpoint[] = endpoints.map((ep) => {
    const epPort = ep.ports[port.name] ?? port.targetPort ?? port.port;
    const weight = Math.max(1, Math.floor(ep.weight || 1));
    return {
      endpoint: ep,
      // Groups sort by this key: priority 0 keys sort before `<n>\0...` keys of priority n > 0.
      localityKey: `0\u0000${localityKey(ep.locality)}`,
      weight,
      json: {
        endpoint: { address: { socket_address: { address: ep.address, port_value: epPort } } },
        health_status: ep.health,
        load_balancing_weight: weight,
      },
    };
  });
  if (cache) {
    if (!byPort) {
      byPort = new Map();
      cache.set(endpoints, byPort);
    }
    byPort.set(portKey, out);
  }
  return out;
}

interface Group {
  locality: EndpointLocality;
  key: string;
  priority: number;
  weight: number;
  lbEndpoints: EnvoyJson[];
}

function localityKey(l: EndpointLocality): string {
  return `${l.region}/${l.zone}/${l.subZone}`;
}

/** Istio `LocalityMatch`: `region`, `region/zone`, `region/zone/subzone`, each part may be `*`. */
export function localityMatches(locality: EndpointLocality, pattern: string): boolean {
  const parts = pattern.split('/');
  const values = [locality.region, locality.zone, locality.subZone];
  for (let i = 0; i < parts.length && i < 3; i++) {
    const p = parts[i] as string;
    if (p === '*') continue;
    if (p !== values[i]) return false;
  }
  return true;
}

/** Istio `LbPriority`: 0 same subzone, 1 same zone, 2 same region, 3 otherwise. */
function lbPriority(proxy: EndpointLocality, ep: EndpointLocality): number {
  if (proxy.region !== ep.region) return 3;
  if (proxy.zone !== ep.zone) return 2;
  if (proxy.subZone !== ep.subZone) return 1;
  return 0;
}

const TOPOLOGY_KEYS: Readonly<Record<string, (x: FailoverSubject) => string>> = {
  'topology.kubernetes.io/region': (x) => x.locality.region,
  'topology.kubernetes.io/zone': (x) => x.locality.zone,
  'topology.istio.io/subzone': (x) => x.locality.subZone,
  'topology.istio.io/network': (x) => x.network,
  'topology.istio.io/cluster': (x) => x.clusterId,
};

interface FailoverSubject {
  readonly locality: EndpointLocality;
  readonly labels: Readonly<Record<string, string>>;
  readonly network: string;
  readonly clusterId: string;
}

function labelValue(x: FailoverSubject, key: string): string | undefined {
  const topo = TOPOLOGY_KEYS[key];
  if (topo) return topo(x);
  return x.labels[key];
}

/** Istio `applyPriorityFailover`: labels.length minus the number of leading labels that match. */
function failoverPriorityOf(labels: readonly string[], proxy: FailoverSubject, ep: FailoverSubject): number {
  let matched = 0;
  for (const raw of labels) {
    const eq = raw.indexOf('=');
    const key = eq < 0 ? raw : raw.slice(0, eq);
    const want = eq < 0 ? labelValue(proxy, key) : raw.slice(eq + 1);
    const have = labelValue(ep, key);
    if (want === undefined || want === '' || have !== want) break;
    matched++;
  }
  return labels.length - matched;
}

/** The ClusterLoadAssignment of one cluster (see the module comment for the locality rules). */
export function buildLoadAssignment(input: LoadAssignmentInput): EnvoyJson {
  const { port, proxy } = input;
  const localityLb = input.localityLb;
  const proxyKnown = proxy.locality.region !== '';
  const failoverLabels =
    proxyKnown && input.failover && !localityLb?.distribute?.length
      ? (localityLb?.failoverPriority ?? [])
      : [];
  const groups = new Map<string, Group>();
  const prepared = prepare(input.endpoints, port, input.preparedCache);
  for (const pe of prepared) {
    const ep = pe.endpoint;
    if (input.subsetLabels && !labelsMatch(input.subsetLabels, ep.labels)) continue;
    const base = failoverLabels.length > 0 ? failoverPriorityOf(failoverLabels, proxy, ep) : 0;
    const key = base === 0 ? pe.localityKey : `${base}\u0000${pe.localityKey}`;
    let g = groups.get(key);
    if (!g) {
      g = { locality: ep.locality, key, priority: base, weight: 0, lbEndpoints: [] };
      groups.set(key, g);
    }
    g.weight += pe.weight;
    g.lbEndpoints.push(pe.json);
  }
  let list = [...groups.values()].sort((a, b) => compareStrings(a.key, b.key));

  if (proxyKnown && localityLb?.distribute?.length) {
    list = applyDistribute(list, proxy.locality, localityLb);
  } else if (proxyKnown && input.failover) {
    applyFailover(list, proxy.locality, localityLb);
  }

  const localities = new Map<string, EnvoyJson>();
  const endpoints: JsonValue[] = list.map((g) => {
    const lk = localityKey(g.locality);
    let locality = localities.get(lk);
    if (!locality) {
      locality = {};
      if (g.locality.region) locality.region = g.locality.region;
      if (g.locality.zone) locality.zone = g.locality.zone;
      if (g.locality.subZone) locality.sub_zone = g.locality.subZone;
      localities.set(lk, locality);
    }
    const out: EnvoyJson = { locality, lb_endpoints: g.lbEndpoints, load_balancing_weight: g.weight };
    if (g.priority > 0) out.priority = g.priority;
    return out;
  });
  return { cluster_name: input.clusterName, endpoints };
}

function applyDistribute(list: Group[], proxy: EndpointLocality, lb: LocalityLoadBalancerSetting): Group[] {
  for (const rule of lb.distribute ?? []) {
    if (!localityMatches(proxy, rule.from ?? '')) continue;
    const unmatched = new Set(list);
    const to = rule.to ?? {};
    for (const pattern of Object.keys(to).sort(compareStrings)) {
      const weight = to[pattern] ?? 0;
      const matched = list.filter((g) => unmatched.has(g) && localityMatches(g.locality, pattern));
      const total = matched.reduce((sum, g) => sum + g.weight, 0);
      for (const g of matched) {
        unmatched.delete(g);
        const w = Math.ceil((g.weight * weight) / total);
        if (w > 0) g.weight = w;
        else unmatched.add(g);
      }
    }
    return list.filter((g) => !unmatched.has(g));
  }
  return list;
}

function applyFailover(
  list: Group[],
  proxy: EndpointLocality,
  lb: LocalityLoadBalancerSetting | undefined,
): void {
  const failoverTo = lb?.failover?.find((f) => f.from === proxy.region)?.to;
  for (const g of list) {
    let p = lbPriority(proxy, g.locality);
    if (p === 3 && failoverTo !== undefined && g.locality.region !== failoverTo) p = 4;
    g.priority = g.priority * 5 + p;
  }
  const distinct = [...new Set(list.map((g) => g.priority))].sort((a, b) => a - b);
  const renumber = new Map(distinct.map((p, i) => [p, i]));
  for (const g of list) g.priority = renumber.get(g.priority) ?? 0;
  list.sort((a, b) => a.priority - b.priority || compareStrings(a.key, b.key));
}
