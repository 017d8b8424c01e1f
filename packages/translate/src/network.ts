/**
 * Multi-network meshes (after Istio's `EndpointsByNetworkFilter`, pilot/pkg/xds/endpoints):
 * a proxy reaches an endpoint of another network through that network's east-west gateway, never
 * directly.
 *
 * Gateways: a service labeled `topology.istio.io/network: <net>` (Istio's label for a network's
 * gateway service) is a gateway of `<net>`; each of its endpoints (the registered gateway workload)
 * is one gateway address, on the port given by its label `networking.istio.io/gatewayPort` (default
 * 15443, Istio's), through the endpoint's port for that service port if it names one.
 *
 * The view of a proxy in network N (`registryForNetwork`): an endpoint whose network is empty or N
 * stays (Istio's `IsSameOrEmpty`); an endpoint of another network M is replaced by M's gateways
 * (endpoints with the same locality, labels, health and identity are aggregated: one endpoint per gateway
 * with their summed weight split evenly across the gateways, at least 1); endpoints of a network
 * without a known gateway are dropped. A proxy without a network, or a registry without gateways,
 * gets the registry unchanged. Keeping labels keeps subsets working; keeping the locality keeps
 * locality priorities across clusters.
 *
 * Structural sharing: an unaffected endpoint list keeps its identity, and rewritten lists are
 * memoized per (list, network, gateways), so the Translator's caches keep working across proxies.
 */
import { sortEndpoints } from './snapshot.js';
import type { Endpoint, RegistrySnapshot } from './types.js';

/** Istio's label of a network's gateway service (and of a workload's network). */
export const NETWORK_LABEL = 'topology.istio.io/network';
/** Istio's label of a gateway service's cross-network port. */
export const GATEWAY_PORT_LABEL = 'networking.istio.io/gatewayPort';
/** Istio's default cross-network (mTLS auto-passthrough) port of an east-west gateway. */
export const DEFAULT_GATEWAY_PORT = 15443;

/** One gateway address of a network. */
export interface NetworkGateway {
  readonly network: string;
  readonly address: string;
  readonly port: number;
  readonly clusterId: string;
}

const gatewaysMemo = new WeakMap<RegistrySnapshot, ReadonlyMap<string, readonly NetworkGateway[]>>();
const viewMemo = new WeakMap<RegistrySnapshot, Map<string, RegistrySnapshot>>();
const listMemo = new WeakMap<readonly Endpoint[], Map<string, readonly Endpoint[]>>();

/** The gateways of every network the registry knows (network -> addresses, sorted). */
export function networkGateways(registry: RegistrySnapshot): ReadonlyMap<string, readonly NetworkGateway[]> {
  const memo = gatewaysMemo.get(registry);
  if (memo) return memo;
  const out = new Map<string, NetworkGateway[]>();
  for (const s of registry.services) {
    const network = s.labels[NETWORK_LABEL];
    if (!network) continue;
    const port = Number(s.labels[GATEWAY_PORT_LABEL] ?? DEFAULT_GATEWAY_PORT);
    if (!Number.isInteger(port) || port < 1 || port > 65535) continue;
    const servicePort = s.ports.find((p) => p.port === port);
    for (const e of registry.endpoints.get(s.hostname) ?? []) {
      if (e.health !== 'HEALTHY') continue;
      const target = (servicePort && (e.ports[servicePort.name] ?? servicePort.targetPort)) ?? port;
      const list = out.get(network) ?? [];
      if (!list.some((g) => g.address === e.address && g.port === target))
        list.push({ network, address: e.address, port: target, clusterId: e.clusterId });
      out.set(network, list);
    }
  }
  for (const list of out.values())
    list.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
  gatewaysMemo.set(registry, out);
  return out;
}

function sameNetwork(proxyNetwork: string, endpointNetwork: string): boolean {
  return proxyNetwork === '' || endpointNetwork === '' || proxyNetwork === endpointNetwork;
}

/**
 * `endpoints` as seen from network `proxyNetwork` (see the module comment). A gateway endpoint
 * listens on the gateway port for every service port: `portNames` (the service's port names) and
 * the names the endpoints list. Pure, memoized.
 */
export function endpointsForNetwork(
  endpoints: readonly Endpoint[],
  proxyNetwork: string,
  gateways: ReadonlyMap<string, readonly NetworkGateway[]>,
  portNames: readonly string[] = [],
): readonly Endpoint[] {
  if (endpoints.every((e) => sameNetwork(proxyNetwork, e.network))) return endpoints;
  const remoteNetworks = [...new Set(endpoints.map((e) => e.network))].filter(
    (n) => !sameNetwork(proxyNetwork, n),
  );
  const key = JSON.stringify([
    proxyNetwork,
    portNames,
    remoteNetworks.map((n) => [n, gateways.get(n) ?? []]),
  ]);
  let byKey = listMemo.get(endpoints);
  const hit = byKey?.get(key);
  if (hit) return hit;
  const out: Endpoint[] = [];
  const groups = new Map<string, { sample: Endpoint; weight: number }>();
  for (const e of endpoints) {
    if (sameNetwork(proxyNetwork, e.network)) {
      out.push(e);
      continue;
    }
    if (!(gateways.get(e.network)?.length ?? 0)) continue; // unreachable: no gateway for its network
    const l = e.locality;
    // The identity is part of the group: the upstream SAN check needs every service account.
    const g = JSON.stringify([
      e.network,
      l.region,
      l.zone,
      l.subZone,
      e.health,
      e.labels,
      e.namespace ?? '',
      e.serviceAccount,
    ]);
    const cur = groups.get(g);
    if (cur) cur.weight += Math.max(1, e.weight);
    else groups.set(g, { sample: e, weight: Math.max(1, e.weight) });
  }
  for (const { sample, weight } of groups.values()) {
    const gws = gateways.get(sample.network)!;
    const each = Math.max(1, Math.round(weight / gws.length));
    for (const gw of gws) {
      const ports: Record<string, number> = {};
      for (const name of [...portNames, ...Object.keys(sample.ports)]) ports[name] = gw.port;
      out.push({
        address: gw.address,
        ports,
        labels: sample.labels,
        locality: sample.locality,
        network: sample.network,
        clusterId: gw.clusterId,
        health: sample.health,
        serviceAccount: sample.serviceAccount,
        ...(sample.namespace !== undefined ? { namespace: sample.namespace } : {}),
        weight: each,
      });
    }
  }
  const list = sortEndpoints(out);
  if (!byKey) {
    byKey = new Map();
    listMemo.set(endpoints, byKey);
  }
  byKey.set(key, list);
  return list;
}

/**
 * The registry as a proxy in `proxyNetwork` sees it: endpoints of other networks replaced by their
 * network's gateways (see the module comment). Returns `registry` itself when nothing changes.
 */
export function registryForNetwork(registry: RegistrySnapshot, proxyNetwork: string): RegistrySnapshot {
  if (proxyNetwork === '') return registry;
  const gateways = networkGateways(registry);
  if (gateways.size === 0) return registry; // not a multi-network mesh
  let views = viewMemo.get(registry);
  const memo = views?.get(proxyNetwork);
  if (memo) return memo;
  let changed = false;
  const endpoints = new Map<string, readonly Endpoint[]>();
  const portNames = new Map(registry.services.map((s) => [s.hostname, s.ports.map((p) => p.name)]));
  for (const [host, list] of registry.endpoints) {
    const seen = endpointsForNetwork(list, proxyNetwork, gateways, portNames.get(host));
    if (seen !== list) changed = true;
    endpoints.set(host, seen);
  }
  const view = changed
    ? Object.freeze({ revision: registry.revision, services: registry.services, endpoints })
    : registry;
  if (!views) {
    views = new Map();
    viewMemo.set(registry, views);
  }
  views.set(proxyNetwork, view);
  return view;
}
