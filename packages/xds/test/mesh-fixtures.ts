// Resources for the stream-loop tests: services (`<name>.default.svc.cluster.local:80`, endpoints on
// 8080) turned into the four resource types a proxyless gRPC client asks for, named as Istio names
// them, and a publisher that installs them in an XdsServer as immutable snapshots whose unchanged
// maps are the previous snapshot's objects (as the replica's push context keeps them).
import { type EnvoyJson, type ResourceTypeUrl, TypeUrl } from '@meridian/envoy';
import {
  type ChangeEvent,
  type ProxyContext,
  ProxyTranslationError,
  ResourceCache,
  type ResourceMap,
  StaticSnapshot,
  type XdsServer,
  type XdsSnapshot,
} from '@meridian/xds';

/** A service with its endpoint IPs. */
export interface Service {
  readonly name: string;
  readonly ips: readonly string[];
}

export const svc = (name: string, ...ips: string[]): Service => ({ name, ips });
export const A = svc('a', '10.0.0.1');
export const B = svc('b', '10.0.0.2');
export const C = svc('c', '10.0.0.3');

const host = (s: Pick<Service, 'name'>) => `${s.name}.default.svc.cluster.local`;
/** Istio's outbound cluster name (also the load assignment's). */
export const clusterName = (s: Pick<Service, 'name'>) => `outbound|80||${host(s)}`;
/** The listener and route name a client dialing `xds:///<host>:80` asks for. */
export const listenerName = (s: Pick<Service, 'name'>) => `${host(s)}:80`;

const ads = { ads: {}, resource_api_version: 'V3' };

function listener(s: Service): EnvoyJson {
  return {
    name: listenerName(s),
    api_listener: {
      api_listener: {
        '@type':
          'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        stat_prefix: 'outbound',
        rds: { config_source: ads, route_config_name: listenerName(s) },
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

function route(s: Service): EnvoyJson {
  return {
    name: listenerName(s),
    virtual_hosts: [
      {
        name: host(s),
        domains: [listenerName(s), host(s)],
        routes: [{ match: { prefix: '' }, route: { cluster: clusterName(s) } }],
      },
    ],
  };
}

function cluster(s: Service): EnvoyJson {
  return {
    name: clusterName(s),
    type: 'EDS',
    eds_cluster_config: { eds_config: ads, service_name: clusterName(s) },
    connect_timeout: '1s',
  };
}

function loadAssignment(s: Service): EnvoyJson {
  return {
    cluster_name: clusterName(s),
    endpoints:
      s.ips.length === 0
        ? []
        : [
            {
              load_balancing_weight: 1,
              lb_endpoints: s.ips.map((ip) => ({
                endpoint: { address: { socket_address: { address: ip, port_value: 8080 } } },
              })),
            },
          ],
  };
}

/** A change of the endpoints of `services` (a partial EDS push). */
export function endpointsChanged(...services: Service[]): ChangeEvent {
  return {
    full: false,
    types: new Set([TypeUrl.ClusterLoadAssignment]),
    names: new Map([[TypeUrl.ClusterLoadAssignment, new Set(services.map(clusterName))]]),
    reason: ['endpoints'],
    at: performance.now(),
  };
}

export const fullChange = (reason: string): ChangeEvent => ({
  full: true,
  reason: [reason],
  at: performance.now(),
});

/**
 * Installs snapshots of services in a server. A type whose resources did not change keeps the
 * previous snapshot's map object. `failFor` makes `resources()` throw ProxyTranslationError for the
 * proxies it matches (a push context that cannot be built for them).
 */
export class Publisher {
  readonly cache = new ResourceCache();
  snapshot: StaticSnapshot | undefined;
  #v = 0;
  failFor: ((ctx: ProxyContext) => boolean) | undefined;

  constructor(readonly server: XdsServer) {}

  /** Publishes `services` (change undefined: installs without pushing, as the first snapshot). */
  publish(services: readonly Service[], change?: ChangeEvent): XdsSnapshot {
    const json: [ResourceTypeUrl, EnvoyJson[]][] = [
      [TypeUrl.Listener, services.map(listener)],
      [TypeUrl.RouteConfiguration, services.map(route)],
      [TypeUrl.Cluster, services.map(cluster)],
      [TypeUrl.ClusterLoadAssignment, services.map(loadAssignment)],
    ];
    const byType = new Map<ResourceTypeUrl, ResourceMap>();
    for (const [type, list] of json) {
      const map = this.cache.internAll(type, list);
      const old = this.snapshot?.byType.get(type);
      const same = old && old.size === map.size && [...map].every(([n, r]) => old.get(n) === r);
      byType.set(type, same ? old : map);
    }
    const version = `v${++this.#v}`;
    this.snapshot = new StaticSnapshot(version, byType);
    const snapshot = this.snapshot;
    const failing: XdsSnapshot = {
      version,
      resources: (ctx, typeUrl) => {
        if (this.failFor?.(ctx))
          throw new ProxyTranslationError(ctx.proxy.id, version, new Error('no route to build'));
        return snapshot.resources(ctx, typeUrl);
      },
    };
    this.server.update(failing, change);
    return failing;
  }
}
