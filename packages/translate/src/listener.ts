/**
 * Listeners, after Istio's `pilot/pkg/networking/core/listener*.go` (Envoy sidecars) and
 * `pilot/pkg/networking/grpcgen/lds.go` (proxyless gRPC).
 */
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import { buildJwtFilter, grpcJwtWarnings, selectRequestAuthentications } from './jwt.js';
import {
  buildRateLimitFilters,
  grpcRateLimitWarnings,
  type RateLimitRoutes,
  type RouteDecoration,
  selectRateLimits,
} from './ratelimit.js';
import { CORS_FILTER, FAULT_FILTER, ROUTER_FILTER } from './route.js';
import type { ConfigSnapshot } from './types.js';
import { any } from './util.js';

const HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const TCP_PROXY = 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

/** The fault filter (empty: the per-route `typed_per_filter_config` carries the faults). */
export function faultFilter(): EnvoyJson {
  return { name: FAULT_FILTER, typed_config: any('envoy.extensions.filters.http.fault.v3.HTTPFault') };
}

/** The CORS filter (empty: routes carry their CorsPolicy in `typed_per_filter_config`). */
export function corsFilter(): EnvoyJson {
  return { name: CORS_FILTER, typed_config: any('envoy.extensions.filters.http.cors.v3.Cors') };
}

/** The router filter, last in every filter chain. */
export function routerFilter(): EnvoyJson {
  return { name: ROUTER_FILTER, typed_config: any('envoy.extensions.filters.http.router.v3.Router') };
}

function ads(): EnvoyJson {
  return { ads: {}, resource_api_version: 'V3' };
}

/** An HTTP connection manager fetching `routeName` over RDS (Istio's outbound HCM). */
export function rdsConnectionManager(statPrefix: string, routeName: string): EnvoyJson {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: any(HCM, {
      stat_prefix: statPrefix,
      rds: { config_source: ads(), route_config_name: routeName },
      http_filters: [corsFilter(), faultFilter(), routerFilter()],
      use_remote_address: false,
      normalize_path: true,
      stream_idle_timeout: '0s',
      upgrade_configs: [{ upgrade_type: 'websocket' }],
    }),
  };
}

/** A tcp_proxy to one cluster or to weighted clusters. */
export function tcpProxy(
  statPrefix: string,
  target: string | readonly { name: string; weight: number }[],
): EnvoyJson {
  const routing: EnvoyJson =
    typeof target === 'string'
      ? { cluster: target }
      : { weighted_clusters: { clusters: target.map((t) => ({ name: t.name, weight: t.weight })) } };
  return {
    name: 'envoy.filters.network.tcp_proxy',
    typed_config: any(TCP_PROXY, { stat_prefix: statPrefix, ...routing }),
  };
}

/** Istio's outbound HTTP listener `0.0.0.0_<port>` (bind_to_port false: reached via virtualOutbound). */
export function outboundHttpListener(port: number): EnvoyJson {
  const name = `0.0.0.0_${port}`;
  return {
    name,
    address: { socket_address: { address: '0.0.0.0', port_value: port } },
    bind_to_port: false,
    traffic_direction: 'OUTBOUND',
    filter_chains: [{ filters: [rdsConnectionManager(`outbound_${name}`, String(port))] }],
  };
}

/** Istio's outbound TCP listener `<address>_<port>` forwarding to the service's cluster(s). */
export function outboundTcpListener(
  address: string,
  port: number,
  target: string | readonly { name: string; weight: number }[],
  statPrefix: string,
): EnvoyJson {
  return {
    name: `${address}_${port}`,
    address: { socket_address: { address, port_value: port } },
    bind_to_port: false,
    traffic_direction: 'OUTBOUND',
    filter_chains: [{ filters: [tcpProxy(statPrefix, target)] }],
  };
}

const ORIGINAL_DST_FILTER: EnvoyJson = {
  name: 'envoy.filters.listener.original_dst',
  typed_config: any('envoy.extensions.filters.listener.original_dst.v3.OriginalDst'),
};

/** Istio's `virtualOutbound` (15001): original-destination dispatch, unknown traffic passes or is blocked. */
export function virtualOutboundListener(allowAny: boolean): EnvoyJson {
  const cluster = allowAny ? 'PassthroughCluster' : 'BlackHoleCluster';
  return {
    name: 'virtualOutbound',
    address: { socket_address: { address: '0.0.0.0', port_value: 15001 } },
    use_original_dst: true,
    traffic_direction: 'OUTBOUND',
    listener_filters: [ORIGINAL_DST_FILTER],
    filter_chains: [{ name: `virtualOutbound-catchall-tcp`, filters: [tcpProxy(cluster, cluster)] }],
  };
}

/** One inbound port of the workload. */
export interface InboundPort {
  readonly port: number;
  readonly http: boolean;
}

/**
 * Istio's `virtualInbound` (15006): one filter chain per workload port (matched on
 * destination_port) forwarding to `inbound|<port>||`, and a catch-all to InboundPassthroughCluster.
 */
export function virtualInboundListener(
  ports: readonly InboundPort[],
  secure: InboundChains = (_port, chain) => [chain],
  authz: InboundAuthz = NO_AUTHZ,
): EnvoyJson {
  const chains: EnvoyJson[] = ports.flatMap((p) => {
    const cluster = `inbound|${p.port}||`;
    const filter = p.http
      ? {
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: any(HCM, {
            stat_prefix: cluster,
            route_config: {
              name: cluster,
              validate_clusters: false,
              virtual_hosts: [
                {
                  name: `inbound|http|${p.port}`,
                  domains: ['*'],
                  routes: inboundRoutes(p.port, cluster, authz.routes),
                },
              ],
            },
            http_filters: [...authz.http, routerFilter()],
            use_remote_address: false,
            normalize_path: true,
          }),
        }
      : tcpProxy(cluster, cluster);
    return secure(p.port, {
      name: cluster,
      filter_chain_match: { destination_port: p.port },
      filters: p.http ? [filter] : [...authz.tcp, filter],
    });
  });
  chains.push({
    name: 'virtualInbound-catchall-tcp',
    filters: [...authz.tcp, tcpProxy('InboundPassthroughCluster', 'InboundPassthroughCluster')],
  });
  // Chains told apart by transport protocol (PERMISSIVE mTLS) need the TLS inspector.
  const inspect = chains.some(
    (c) => (c.filter_chain_match as EnvoyJson | undefined)?.transport_protocol !== undefined,
  );
  return {
    name: 'virtualInbound',
    address: { socket_address: { address: '0.0.0.0', port_value: 15006 } },
    traffic_direction: 'INBOUND',
    listener_filters: inspect ? [ORIGINAL_DST_FILTER, TLS_INSPECTOR_FILTER] : [ORIGINAL_DST_FILTER],
    filter_chains: chains,
  };
}

/**
 * The policy filters of a workload's inbound chains: HTTP filters (jwt_authn, RBAC, rate limits, in
 * that order, before the router) and network filters (RBAC), and the routes rate limits on paths add.
 */
export interface InboundAuthz {
  readonly http: readonly EnvoyJson[];
  readonly tcp: readonly EnvoyJson[];
  /** Routes before `default` and fields of `default` (rate limits, ratelimit.ts); none when absent. */
  readonly routes?: RateLimitRoutes;
}

function forward(cluster: string, decoration: RouteDecoration | undefined): EnvoyJson {
  return {
    cluster,
    timeout: '0s',
    max_stream_duration: { max_stream_duration: '0s', grpc_timeout_header_max: '0s' },
    ...(decoration && decoration.rateLimits.length > 0 ? { rate_limits: [...decoration.rateLimits] } : {}),
  };
}

/** The inbound routes of a port: rate-limited paths first, then Istio's `default` route. */
function inboundRoutes(port: number, cluster: string, routes: RateLimitRoutes | undefined): EnvoyJson[] {
  const decorator = { operation: `:${port}/*` };
  return [
    ...(routes?.routes ?? []).map((r) => ({
      name: r.name,
      match: r.match,
      route: forward(cluster, r),
      decorator,
      ...(r.perFilterConfig ? { typed_per_filter_config: r.perFilterConfig } : {}),
    })),
    { name: 'default', match: { prefix: '/' }, route: forward(cluster, routes?.defaultRoute), decorator },
  ];
}

/** What RequestAuthentication and RateLimit add to one workload's inbound HTTP chains. */
export interface InboundHttpPolicy {
  /** Filters before RBAC (jwt_authn: RBAC reads its payload metadata). */
  readonly beforeAuthz: readonly EnvoyJson[];
  /** Filters after RBAC (rate limits: a denied request uses no token). */
  readonly afterAuthz: readonly EnvoyJson[];
  readonly routes: RateLimitRoutes | undefined;
  /** Clusters the filters need (the rate-limit service). */
  readonly clusters: readonly EnvoyJson[];
  /** What the workload's policies ask that is not enforced (gRPC servers, unfetched JWKS...). */
  readonly warnings: readonly string[];
}

/**
 * The RequestAuthentication and RateLimit filters of one workload (jwt.ts, ratelimit.ts), from the
 * config snapshot and what the replica resolved for it (`config.policyInputs`). Proxyless gRPC
 * servers support neither: they get warnings only.
 */
export function inboundHttpPolicy(
  config: ConfigSnapshot,
  proxy: Pick<ProxyInfo, 'namespace' | 'labels'>,
  rootNamespace: string,
  grpc: boolean,
): InboundHttpPolicy {
  const authn = selectRequestAuthentications(config.requestAuthentications ?? [], proxy, rootNamespace);
  const limits = selectRateLimits(config.rateLimits ?? [], proxy, rootNamespace);
  if (grpc)
    return {
      beforeAuthz: [],
      afterAuthz: [],
      routes: undefined,
      clusters: [],
      warnings: [...grpcJwtWarnings(authn), ...grpcRateLimitWarnings(limits)],
    };
  const jwt = buildJwtFilter(authn, config.policyInputs?.jwks);
  const rl = buildRateLimitFilters(limits, config.policyInputs?.rateLimitService);
  return {
    beforeAuthz: jwt.filter ? [jwt.filter] : [],
    afterAuthz: rl.filters,
    routes: rl.routes.routes.length > 0 || rl.routes.defaultRoute ? rl.routes : undefined,
    clusters: rl.cluster ? [rl.cluster] : [],
    warnings: [...jwt.warnings, ...rl.warnings],
  };
}

const NO_AUTHZ: InboundAuthz = { http: [], tcp: [] };

/** Turns a workload port's plaintext filter chain into the chains its inbound TLS policy needs. */
export type InboundChains = (port: number, chain: EnvoyJson) => readonly EnvoyJson[];

const TLS_INSPECTOR_FILTER: EnvoyJson = {
  name: 'envoy.filters.listener.tls_inspector',
  typed_config: any('envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector'),
};

/** A proxyless gRPC client listener `host:port`: api_listener HCM over RDS with fault and router filters. */
export function grpcClientListener(name: string): EnvoyJson {
  return {
    name,
    api_listener: {
      api_listener: any(HCM, {
        stat_prefix: name,
        rds: { config_source: ads(), route_config_name: name },
        http_filters: [faultFilter(), routerFilter()],
      }),
    },
  };
}

/** Istio's server listener name prefix for proxyless gRPC (`server_listener_resource_name_template`). */
export const GRPC_SERVER_LISTENER_PREFIX = 'xds.istio.io/grpc/lds/inbound/';

/**
 * A proxyless gRPC server listener `xds.istio.io/grpc/lds/inbound/<host>:<port>`: its address must
 * equal the address the server binds; one filter chain whose route only marks requests as
 * non-forwarding (gRPC servers accept only `non_forwarding_action` routes), with the workload's
 * RBAC filters (`authzFilters`, gRFC A41) before the router.
 */
export function grpcServerListener(
  host: string,
  port: number,
  secure: InboundChains = (_port, chain) => [chain],
  authzFilters: readonly EnvoyJson[] = [],
): EnvoyJson {
  const display = host.includes(':') ? `[${host}]` : host;
  const routeName = `inbound|${port}||`;
  return {
    name: `${GRPC_SERVER_LISTENER_PREFIX}${display}:${port}`,
    address: { socket_address: { address: host, port_value: port } },
    filter_chains: secure(port, {
      name: routeName,
      filters: [
        {
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: any(HCM, {
            stat_prefix: routeName,
            route_config: {
              name: routeName,
              virtual_hosts: [
                {
                  name: `inbound|http|${port}`,
                  domains: ['*'],
                  routes: [
                    {
                      match: { prefix: '/' },
                      non_forwarding_action: {},
                      decorator: { operation: `:${port}/*` },
                    },
                  ],
                },
              ],
            },
            http_filters: [...authzFilters, routerFilter()],
          }),
        },
      ],
    }) as JsonValue[],
  };
}
