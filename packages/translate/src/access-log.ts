/**
 * Points Envoy sidecars' access logs at the replicas, which derive Istio's metrics and the service graph
 * from them: when the config snapshot
 * names an access-log service (`policyInputs.accessLogService`, the replicas' gRPC addresses), every
 * HTTP connection manager of the sidecar's listeners gets an `envoy.access_loggers.http_grpc` access
 * log and every tcp_proxy an `envoy.access_loggers.tcp_grpc` one, both streaming to the cluster
 * {@link ACCESS_LOG_CLUSTER} (HTTP/2, the replicas' addresses, over mTLS with the sidecar's workload
 * certificate when the addresses are the replicas' CA ports, as the rate-limit cluster). The
 * replica's receiver (`@meridian/server` telemetry-ingest.ts) derives Istio's metrics and the
 * service graph from the entries.
 *
 * - The log names say the direction (`meridian-outbound`, `meridian-inbound`); the receiver reads
 *   the reporter from the entry's upstream cluster first (`outbound|...`, `inbound|...`).
 * - HTTP loggers also log the request's `content-type` and the `grpc-status` header and trailer, so
 *   the receiver tells gRPC from HTTP and reads gRPC's status.
 * - Entries are buffered by Envoy and flushed every second (or at 16 KiB).
 * - Proxyless gRPC clients have no access logs (grpc-js-xds has no access-log support).
 *
 * Decorated listeners are cached by the listener object they decorate (per service set), so a
 * listener shared by many proxies stays one object and is encoded once.
 */
import type { EnvoyJson, JsonValue } from '@meridian/envoy';
import { replicaServiceTransportSocket } from './ratelimit.js';
import type { NamedResource, ReplicaServiceAddress } from './types.js';
import { any, mapListenerFilters, replicaServiceCluster } from './util.js';

/** The cluster sidecars reach the replicas' access-log service through. */
export const ACCESS_LOG_CLUSTER = 'meridian-accesslog';
const HTTP_GRPC = 'envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig';
const TCP_GRPC = 'envoy.extensions.access_loggers.grpc.v3.TcpGrpcAccessLogConfig';
const HCM_NAME = 'envoy.filters.network.http_connection_manager';
const TCP_PROXY_NAME = 'envoy.filters.network.tcp_proxy';

/** Where the replicas' access-log service listens (`mtls`: their CA ports, with the workload certificate). */
export type AccessLogService = readonly ReplicaServiceAddress[];

function commonConfig(logName: string): EnvoyJson {
  return {
    log_name: logName,
    grpc_service: { envoy_grpc: { cluster_name: ACCESS_LOG_CLUSTER } },
    transport_api_version: 'V3',
    buffer_flush_interval: '1s',
    buffer_size_bytes: 16384,
  };
}

/** The HTTP access log of a connection manager of `direction`. */
export function httpGrpcAccessLog(direction: 'inbound' | 'outbound'): EnvoyJson {
  return {
    name: 'envoy.access_loggers.http_grpc',
    typed_config: any(HTTP_GRPC, {
      common_config: commonConfig(`meridian-${direction}`),
      additional_request_headers_to_log: ['content-type'],
      additional_response_headers_to_log: ['grpc-status'],
      additional_response_trailers_to_log: ['grpc-status'],
    }),
  };
}

/** The TCP access log of a tcp_proxy of `direction`. */
export function tcpGrpcAccessLog(direction: 'inbound' | 'outbound'): EnvoyJson {
  return {
    name: 'envoy.access_loggers.tcp_grpc',
    typed_config: any(TCP_GRPC, { common_config: commonConfig(`meridian-${direction}`) }),
  };
}

/**
 * The access-log cluster: the replicas' addresses over HTTP/2 (STATIC for IPs, else STRICT_DNS); over
 * mesh mTLS when they are marked `mtls` (as the rate-limit cluster: the sidecar's workload
 * certificate from SDS `default`, the replica's checked against SDS `ROOTCA` and the replicas' hosts).
 */
export function accessLogCluster(service: AccessLogService): EnvoyJson {
  const cluster = replicaServiceCluster(ACCESS_LOG_CLUSTER, service);
  const tls = replicaServiceTransportSocket(service);
  return tls ? { ...cluster, transport_socket: tls } : cluster;
}

/** `filter` with an access log added when it is an HCM or a tcp_proxy. */
function decorateFilter(filter: EnvoyJson, direction: 'inbound' | 'outbound'): EnvoyJson {
  const typed = filter.typed_config as EnvoyJson | undefined;
  if (!typed) return filter;
  const log =
    filter.name === HCM_NAME
      ? httpGrpcAccessLog(direction)
      : filter.name === TCP_PROXY_NAME
        ? tcpGrpcAccessLog(direction)
        : undefined;
  if (!log) return filter;
  const existing = (typed.access_log as JsonValue[] | undefined) ?? [];
  return { ...filter, typed_config: { ...typed, access_log: [...existing, log] } };
}

/** A listener with access logs on every HCM and tcp_proxy of its filter chains. */
export function withAccessLog(listener: EnvoyJson): EnvoyJson {
  const direction = listener.traffic_direction === 'INBOUND' ? 'inbound' : 'outbound';
  return mapListenerFilters(listener, (f) => decorateFilter(f, direction));
}

const decorated = new WeakMap<EnvoyJson, { key: string; listener: EnvoyJson }>();
const parts = new WeakMap<object, { key: string; part: object }>();

const serviceKey = (service: AccessLogService) =>
  service.map((s) => `${s.mtls ? 'mtls' : 'plain'}:${s.host}:${s.port}`).join(',');

/** {@link withAccessLog} over named listeners, cached per listener object and service set. */
export function listenersWithAccessLog(
  listeners: readonly NamedResource[],
  service: AccessLogService,
): NamedResource[] {
  const key = serviceKey(service);
  return listeners.map((l) => {
    let d = decorated.get(l.resource);
    if (!d || d.key !== key) {
      d = { key, listener: withAccessLog(l.resource) };
      decorated.set(l.resource, d);
    }
    return { name: l.name, resource: d.listener };
  });
}

/**
 * A translated part (outbound or inbound) with access logs on its listeners, and, when
 * `withCluster`, the access-log cluster among its clusters. The same part object in gives the same
 * object out (while the service set is the same), so a part shared by many proxies stays shared.
 */
export function partWithAccessLog<
  P extends { readonly listeners: readonly NamedResource[]; readonly clusters: readonly NamedResource[] },
>(part: P, service: AccessLogService, withCluster: boolean): P {
  const key = `${serviceKey(service)}|${withCluster}`;
  const cached = parts.get(part);
  if (cached && cached.key === key) return cached.part as P;
  const clusters = withCluster
    ? [...part.clusters, { name: ACCESS_LOG_CLUSTER, resource: accessLogCluster(service) }].sort((a, b) =>
        a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
      )
    : part.clusters;
  const out = { ...part, listeners: listenersWithAccessLog(part.listeners, service), clusters } as P;
  parts.set(part, { key, part: out });
  return out;
}
