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
import { compareStrings } from './util.js';

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
   * Memo of each endpoint list's prepared entries (target port, `lb_endpoints` JSON, grouped by
   * locality) per service port: lists are immutable, so an entry is valid as long as its list lives,
   * and the default cluster and every subset cluster of a service share it. Optional; the Translator
   * passes its own.
   */
  readonly preparedCache?: PreparedCache;
}

/**
 * The endpoints of one locality of a list, ready for any ClusterLoadAssignment of a service port.
 * Its JSON (`locality`, `lb_endpoints`, and the whole entry at priority 0) is shared, read-only, by
 * every load assignment that takes the locality whole (see cluster.ts on shared output JSON).
 */
interface PreparedGroup {
  /** `region/zone/subZone`; groups sort by it. */
  readonly key: string;
  /** The first endpoint's locality. */
  readonly locality: EndpointLocality;
  readonly localityJson: EnvoyJson;
  /** The members, in list order, and their `lb_endpoints` entries. */
  readonly endpoints: readonly Endpoint[];
  readonly lbEndpoints: JsonValue[];
  /** The sum of the members' `load_balancing_weight`. */
  readonly weight: number;
  /** `{ locality, lb_endpoints, load_balancing_weight }` of the whole group at priority 0. */
  readonly whole: EnvoyJson;
}

/** An endpoint list prepared for one service port: its locality groups, sorted by key. */
interface Prepared {
  readonly groups: readonly PreparedGroup[];
  /** Every group whole, at priority 0: the `endpoints` of a load assignment without rules. */
  readonly whole: JsonValue[];
}

interface PreparedForPort {
  readonly name: string;
  readonly target: number;
  readonly prepared: Prepared;
}

/** See {@link LoadAssignmentInput.preparedCache}. */
export type PreparedCache = WeakMap<readonly Endpoint[], PreparedForPort[]>;

function localityJson(l: EndpointLocality): EnvoyJson {
  const out: EnvoyJson = {};
  if (l.region) out.region = l.region;
  if (l.zone) out.zone = l.zone;
  if (l.subZone) out.sub_zone = l.subZone;
  return out;
}

function prepare(
  endpoints: readonly Endpoint[],
  port: ServicePort,
  cache: PreparedCache | undefined,
): Prepared {
  const target = port.targetPort ?? port.port;
  const byPort = cache?.get(endpoints);
  if (byPort) {
    for (const p of byPort) if (p.name === port.name && p.target === target) return p.prepared;
  }
  // Pass 1: each endpoint's group by locality key (localities are few: a linear search by value,
  // the key only for a locality not seen yet).
  const firsts: Endpoint[] = [];
  const keys: string[] = [];
  const counts: number[] = [];
  const groupOf = new Array<number>(endpoints.length);
  for (let i = 0; i < endpoints.length; i++) {
    const l = (endpoints[i] as Endpoint).locality;
    let g = 0;
    while (g < firsts.length && !sameLocality((firsts[g] as Endpoint).locality, l)) g++;
    if (g === firsts.length) {
      const key = localityKey(l);
      g = keys.indexOf(key);
      if (g < 0) {
        g = firsts.length;
        firsts.push(endpoints[i] as Endpoint);
        keys.push(key);
        counts.push(0);
      }
    }
    groupOf[i] = g;
    counts[g] = (counts[g] as number) + 1;
  }
  // Pass 2: the members and their entries, in list order, in arrays of their final size.
  const members = counts.map((n) => new Array<Endpoint>(n));
  const entries = counts.map((n) => new Array<JsonValue>(n));
  const weights = counts.map(() => 0);
  const filled = counts.map(() => 0);
  for (let i = 0; i < endpoints.length; i++) {
    const ep = endpoints[i] as Endpoint;
    const g = groupOf[i] as number;
    const at = filled[g] as number;
    filled[g] = at + 1;
    const weight = Math.max(1, Math.floor(ep.weight || 1));
    weights[g] = (weights[g] as number) + weight;
    (members[g] as Endpoint[])[at] = ep;
    (entries[g] as JsonValue[])[at] = {
      endpoint: {
        address: { socket_address: { address: ep.address, port_value: ep.ports[port.name] ?? target } },
      },
      health_status: ep.health,
      load_balancing_weight: weight,
    };
  }
  const groups: PreparedGroup[] = firsts.map((first, g) => {
    const locality = localityJson(first.locality);
    const lbEndpoints = entries[g] as JsonValue[];
    const weight = weights[g] as number;
    return {
      key: keys[g] as string,
      locality: first.locality,
      localityJson: locality,
      endpoints: members[g] as Endpoint[],
      lbEndpoints,
      weight,
      whole: { locality, lb_endpoints: lbEndpoints, load_balancing_weight: weight },
    };
  });
  // Few groups, usually in order already: an insertion sort (stable, no allocation).
  for (let i = 1; i < groups.length; i++) {
    const g = groups[i]!;
    let j = i;
    while (j > 0 && compareStrings(groups[j - 1]!.key, g.key) > 0) {
      groups[j] = groups[j - 1]!;
      j--;
    }
    groups[j] = g;
  }
  const prepared: Prepared = { groups, whole: groups.map((g) => g.whole) };
  if (cache) {
    const entry = { name: port.name, target, prepared };
    if (byPort) byPort.push(entry);
    else cache.set(endpoints, [entry]);
  }
  return prepared;
}

interface Group {
  locality: EndpointLocality;
  localityJson: EnvoyJson;
  key: string;
  priority: number;
  weight: number;
  lbEndpoints: JsonValue[];
  /** The prepared group when this is all of it (its shared JSON applies at priority 0). */
  whole: PreparedGroup | undefined;
}

function localityKey(l: EndpointLocality): string {
  return `${l.region}/${l.zone}/${l.subZone}`;
}

function sameLocality(a: EndpointLocality, b: EndpointLocality): boolean {
  return a === b || (a.region === b.region && a.zone === b.zone && a.subZone === b.subZone);
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

function isEmpty(labels: Readonly<Record<string, string>> | undefined): boolean {
  for (const _ in labels) return false;
  return true;
}

/** The subset selector as (key, value) pairs, read once per load assignment. */
function selectorEntries(selector: Readonly<Record<string, string>>): string[] {
  const out: string[] = [];
  for (const key of Object.keys(selector)) out.push(key, selector[key] as string);
  return out;
}

function selected(entries: readonly string[], labels: Readonly<Record<string, string>>): boolean {
  for (let i = 0; i < entries.length; i += 2)
    if (labels[entries[i] as string] !== entries[i + 1]) return false;
  return true;
}

/**
 * The locality groups of a load assignment before Istio's locality rules, sorted by key: groups of
 * the prepared list (the subset's members of each; whole groups keep their shared JSON), or with
 * `failoverPriority` labels each locality split by the proxy-relative base priority.
 */
function groupsOf(
  prepared: Prepared,
  input: LoadAssignmentInput,
  failoverLabels: readonly string[],
): Group[] {
  const subset = isEmpty(input.subsetLabels) ? undefined : selectorEntries(input.subsetLabels ?? {});
  const out: Group[] = [];
  for (const pg of prepared.groups) {
    if (failoverLabels.length === 0 && !subset) {
      out.push({
        locality: pg.locality,
        localityJson: pg.localityJson,
        key: pg.key,
        priority: 0,
        weight: pg.weight,
        lbEndpoints: pg.lbEndpoints,
        whole: pg,
      });
      continue;
    }
    // Members of this locality that the subset selects, split by base priority (0 without labels).
    let split: Group[] | undefined;
    let only: Group | undefined;
    for (let i = 0; i < pg.endpoints.length; i++) {
      const ep = pg.endpoints[i] as Endpoint;
      if (subset && !selected(subset, ep.labels)) continue;
      const base = failoverLabels.length > 0 ? failoverPriorityOf(failoverLabels, input.proxy, ep) : 0;
      let g = only?.priority === base ? only : split?.find((x) => x.priority === base);
      if (!g) {
        // The first member's locality, as a group made endpoint by endpoint would have it.
        g = {
          locality: ep.locality,
          localityJson: sameLocality(ep.locality, pg.locality) ? pg.localityJson : localityJson(ep.locality),
          key: pg.key,
          priority: base,
          weight: 0,
          lbEndpoints: [],
          whole: undefined,
        };
        if (!only) only = g;
        else {
          split ??= [only];
          split.push(g);
        }
      }
      const entry = pg.lbEndpoints[i] as EnvoyJson;
      g.weight += entry.load_balancing_weight as number;
      g.lbEndpoints.push(entry);
    }
    if (split) {
      split.sort((a, b) => a.priority - b.priority);
      out.push(...split);
    } else if (only) {
      if (only.priority === 0 && only.lbEndpoints.length === pg.endpoints.length) {
        only.lbEndpoints = pg.lbEndpoints;
        only.whole = pg;
      }
      out.push(only);
    }
  }
  // Groups sort by (base priority, locality key): base 0 first, then each base in key order.
  if (failoverLabels.length > 0) out.sort((a, b) => a.priority - b.priority || compareStrings(a.key, b.key));
  return out;
}

/** The ClusterLoadAssignment of one cluster (see the module comment for the locality rules). */
export function buildLoadAssignment(input: LoadAssignmentInput): EnvoyJson {
  const { port, proxy } = input;
  const localityLb = input.localityLb;
  const proxyKnown = proxy.locality.region !== '';
  const distribute = proxyKnown && (localityLb?.distribute?.length ?? 0) > 0;
  const failover = proxyKnown && input.failover && !distribute;
  const failoverLabels = failover ? (localityLb?.failoverPriority ?? []) : [];
  const prepared = prepare(input.endpoints, port, input.preparedCache);
  const plain = !distribute && !failover && isEmpty(input.subsetLabels);
  // Nothing to select or reorder: the list's shared entries as they are.
  if (plain) return { cluster_name: input.clusterName, endpoints: prepared.whole };

  let list = groupsOf(prepared, input, failoverLabels);
  if (distribute && localityLb) {
    list = applyDistribute(list, proxy.locality, localityLb);
    // Weights were rewritten: no group keeps its shared entry.
    for (const g of list) g.whole = undefined;
  } else if (failover) {
    list = applyFailover(list, proxy.locality, localityLb);
  }
  const endpoints: JsonValue[] = list.map((g) => {
    if (g.whole && g.priority === 0) return g.whole.whole;
    const out: EnvoyJson = {
      locality: g.localityJson,
      lb_endpoints: g.lbEndpoints,
      load_balancing_weight: g.weight,
    };
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
): Group[] {
  const failoverTo = lb?.failover?.find((f) => f.from === proxy.region)?.to;
  for (const g of list) {
    let p = lbPriority(proxy, g.locality);
    if (p === 3 && failoverTo !== undefined && g.locality.region !== failoverTo) p = 4;
    g.priority = g.priority * 5 + p;
  }
  // Ordered by priority keeping the key order within one (a stable insertion sort: localities are
  // few), then renumbered 0..N without gaps.
  for (let i = 1; i < list.length; i++) {
    const g = list[i]!;
    let j = i;
    while (j > 0 && list[j - 1]!.priority > g.priority) {
      list[j] = list[j - 1]!;
      j--;
    }
    list[j] = g;
  }
  let next = -1;
  let last = -1;
  for (const g of list) {
    if (g.priority !== last) {
      last = g.priority;
      next++;
    }
    g.priority = next;
  }
  return list;
}
