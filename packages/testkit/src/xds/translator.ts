// A minimal translator for tests and benchmarks (the real one is @meridian/translate): ServiceEntry-like
// services with endpoints -> the resources a proxyless gRPC client needs, named as Istio names them:
// Listener `<host>:<port>` with an api_listener, RouteConfiguration of the same name, EDS Cluster
// `outbound|<port>||<host>` and its ClusterLoadAssignment.
import type { EnvoyJson, ResourceTypeUrl } from '@meridian/envoy';
import { TypeUrl } from '@meridian/envoy';
import { type ResourceCache, type ResourceMap, StaticSnapshot } from '@meridian/xds';

/** One backend of a service. */
export interface TestEndpoint {
  readonly address: string;
  readonly port: number;
  readonly region?: string;
  readonly zone?: string;
}

/** A ServiceEntry-like service. */
export interface TestService {
  /** Fully qualified host, e.g. `echo.default.svc.cluster.local`. */
  readonly host: string;
  readonly port: number;
  readonly endpoints: readonly TestEndpoint[];
  /** Extra bytes of metadata on the cluster, to size resources in benchmarks. */
  readonly padding?: number;
}

/** Istio's outbound cluster name. */
export function clusterName(svc: Pick<TestService, 'host' | 'port'>): string {
  return `outbound|${svc.port}||${svc.host}`;
}

/** The listener (and route) name a gRPC client dialing `xds:///<host>:<port>` asks for. */
export function listenerName(svc: Pick<TestService, 'host' | 'port'>): string {
  return `${svc.host}:${svc.port}`;
}

const ads = { ads: {}, resource_api_version: 'V3' };

/** The client-side Listener: an api_listener whose HttpConnectionManager fetches its route by RDS. */
export function listenerFor(svc: TestService): EnvoyJson {
  return {
    name: listenerName(svc),
    api_listener: {
      api_listener: {
        '@type':
          'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        stat_prefix: 'outbound',
        rds: { config_source: ads, route_config_name: listenerName(svc) },
        http_filters: [
          {
            name: 'envoy.filters.http.router',
            typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
          },
        ],
      },
    },
  };
}

export function routeFor(svc: TestService): EnvoyJson {
  return {
    name: listenerName(svc),
    virtual_hosts: [
      {
        name: svc.host,
        domains: [listenerName(svc), svc.host],
        routes: [{ match: { prefix: '' }, route: { cluster: clusterName(svc) } }],
      },
    ],
  };
}

export function clusterFor(svc: TestService): EnvoyJson {
  const cluster: EnvoyJson = {
    name: clusterName(svc),
    type: 'EDS',
    eds_cluster_config: { eds_config: ads, service_name: clusterName(svc) },
    lb_policy: 'ROUND_ROBIN',
    connect_timeout: '1s',
  };
  if (svc.padding) {
    cluster.metadata = { filter_metadata: { 'meridian.bench': { padding: 'x'.repeat(svc.padding) } } };
  }
  return cluster;
}

/** Endpoints grouped by locality; every locality carries a weight (grpc-js-xds requires it). */
export function loadAssignmentFor(svc: TestService): EnvoyJson {
  const byLocality = new Map<string, TestEndpoint[]>();
  for (const ep of svc.endpoints) {
    const key = `${ep.region ?? ''}/${ep.zone ?? ''}`;
    byLocality.set(key, [...(byLocality.get(key) ?? []), ep]);
  }
  return {
    cluster_name: clusterName(svc),
    endpoints: [...byLocality.entries()].sort().map(([key, eps]) => {
      const [region, zone] = key.split('/') as [string, string];
      return {
        locality: { region, zone },
        load_balancing_weight: 1,
        lb_endpoints: eps.map((ep) => ({
          endpoint: { address: { socket_address: { address: ep.address, port_value: ep.port } } },
          load_balancing_weight: 1,
        })),
      };
    }),
  };
}

/** Resources by type, in Envoy JSON. */
export type ResourcesJson = Partial<Record<ResourceTypeUrl, EnvoyJson[]>>;

/** Translates services to the four resource types. */
export function translateServices(services: readonly TestService[]): ResourcesJson {
  return {
    [TypeUrl.Listener]: services.map(listenerFor),
    [TypeUrl.RouteConfiguration]: services.map(routeFor),
    [TypeUrl.Cluster]: services.map(clusterFor),
    [TypeUrl.ClusterLoadAssignment]: services.map(loadAssignmentFor),
  };
}

/** Encodes resources through the cache into a snapshot every proxy shares. */
export function snapshotOf(cache: ResourceCache, version: string, resources: ResourcesJson): StaticSnapshot {
  const byType = new Map<ResourceTypeUrl, ResourceMap>();
  for (const [type, list] of Object.entries(resources) as [ResourceTypeUrl, EnvoyJson[]][]) {
    byType.set(type, cache.internAll(type, list));
  }
  return new StaticSnapshot(version, byType);
}

/**
 * A snapshot that reuses the maps of `previous` for types whose resources are unchanged, so streams
 * keep sharing response bodies (and the server's change filter sees exactly what changed).
 */
export function nextSnapshot(
  cache: ResourceCache,
  previous: StaticSnapshot | undefined,
  version: string,
  resources: ResourcesJson,
): StaticSnapshot {
  const next = snapshotOf(cache, version, resources);
  if (!previous) return next;
  const byType = new Map(next.byType);
  for (const [type, map] of next.byType) {
    const old = previous.byType.get(type);
    if (old && old.size === map.size && [...map].every(([n, r]) => old.get(n) === r)) byType.set(type, old);
  }
  return new StaticSnapshot(version, byType);
}
