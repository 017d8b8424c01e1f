/**
 * Clusters from services and DestinationRules, after Istio's `pilot/pkg/networking/core/cluster*.go`:
 * one `outbound|<port>||<host>` cluster per service port and one `outbound|<port>|<subset>|<host>`
 * per DestinationRule subset; inbound `inbound|<port>||` clusters for the workload's own ports.
 */
import type {
  ConnectionPoolSettings,
  DestinationRuleConfig,
  LoadBalancerSettings,
  OutlierDetection,
  TrafficPolicy,
} from '@meridian/api';
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import type { Service, ServicePort, TranslateOptions, WorkloadServiceAccount } from './types.js';
import { any, clusterName, compact, durationNanos, isHttp2Protocol, toEnvoyDuration } from './util.js';

/** The traffic policy in force for one (service port, subset): Istio's `MergeTrafficPolicy`. */
export interface EffectivePolicy {
  readonly loadBalancer: LoadBalancerSettings | undefined;
  readonly connectionPool: ConnectionPoolSettings | undefined;
  readonly outlierDetection: OutlierDetection | undefined;
  readonly tls: TrafficPolicy['tls'];
}

function portLevel(policy: TrafficPolicy | undefined, port: number): EffectivePolicy {
  const base: EffectivePolicy = {
    loadBalancer: policy?.loadBalancer,
    connectionPool: policy?.connectionPool,
    outlierDetection: policy?.outlierDetection,
    tls: policy?.tls,
  };
  const pl = policy?.portLevelSettings?.find((p) => p.port?.number === port);
  if (!pl) return base;
  return {
    loadBalancer: pl.loadBalancer ?? base.loadBalancer,
    connectionPool: pl.connectionPool ?? base.connectionPool,
    outlierDetection: pl.outlierDetection ?? base.outlierDetection,
    tls: pl.tls ?? base.tls,
  };
}

const NO_POLICY: EffectivePolicy = Object.freeze({
  loadBalancer: undefined,
  connectionPool: undefined,
  outlierDetection: undefined,
  tls: undefined,
});

/** Effective policies per DestinationRule, subset and port (config objects are immutable). */
const policies = new WeakMap<DestinationRuleConfig, Map<string, Map<number, EffectivePolicy>>>();

/**
 * Istio's merge: the top-level policy (with its port-level settings for `port`), then the subset's
 * policy (with its port-level settings), each set field of the subset replacing the top-level one.
 * Memoized per DestinationRule object: the same inputs give the same (read-only) object.
 */
export function effectivePolicy(
  dr: DestinationRuleConfig | undefined,
  subset: string,
  port: number,
): EffectivePolicy {
  if (!dr) return NO_POLICY;
  let bySubset = policies.get(dr);
  if (!bySubset) {
    bySubset = new Map();
    policies.set(dr, bySubset);
  }
  let byPort = bySubset.get(subset);
  if (!byPort) {
    byPort = new Map();
    bySubset.set(subset, byPort);
  }
  let policy = byPort.get(port);
  if (!policy) {
    policy = mergePolicy(dr, subset, port);
    byPort.set(port, policy);
  }
  return policy;
}

function mergePolicy(dr: DestinationRuleConfig, subset: string, port: number): EffectivePolicy {
  const top = portLevel(dr.spec.trafficPolicy, port);
  if (subset === '') return top;
  const sub = dr.spec.subsets?.find((s) => s.name === subset)?.trafficPolicy;
  if (!sub) return top;
  const s = portLevel(sub, port);
  return {
    loadBalancer: s.loadBalancer ?? top.loadBalancer,
    connectionPool: s.connectionPool ?? top.connectionPool,
    outlierDetection: s.outlierDetection ?? top.outlierDetection,
    tls: s.tls ?? top.tls,
  };
}

const MAX_UINT32 = 4294967295;

/**
 * Output JSON is read-only: constant parts are shared between resources (fewer allocations for
 * thousands of clusters); consumers must copy before changing anything.
 */
const DEFAULT_CIRCUIT_BREAKERS: EnvoyJson = Object.freeze({
  thresholds: Object.freeze([
    Object.freeze({
      max_connections: MAX_UINT32,
      max_pending_requests: MAX_UINT32,
      max_requests: MAX_UINT32,
      max_retries: MAX_UINT32,
      track_remaining: true,
    }),
  ]) as unknown as JsonValue[],
});
const ADS_CONFIG: EnvoyJson = Object.freeze({ ads: Object.freeze({}), resource_api_version: 'V3' });

/**
 * JSON made from one config object (a connection pool, an outlier detection), shared read-only by
 * every cluster whose policy holds that object: config objects are immutable.
 */
const fromPool = new WeakMap<ConnectionPoolSettings, EnvoyJson>();
const fromOutlier = new WeakMap<OutlierDetection, { envoy?: EnvoyJson; grpc?: EnvoyJson }>();
const fromPoolHttp = new WeakMap<ConnectionPoolSettings, { h1?: EnvoyJson | null; h2?: EnvoyJson | null }>();

/** Istio's default circuit breaker thresholds, overridden by `connectionPool`. */
function circuitBreakers(pool: ConnectionPoolSettings | undefined): EnvoyJson {
  if (!pool?.tcp?.maxConnections && !pool?.http) return DEFAULT_CIRCUIT_BREAKERS;
  let out = fromPool.get(pool);
  if (!out) {
    out = poolCircuitBreakers(pool);
    fromPool.set(pool, out);
  }
  return out;
}

function poolCircuitBreakers(pool: ConnectionPoolSettings): EnvoyJson {
  const threshold = compact({
    max_connections: pool?.tcp?.maxConnections ?? MAX_UINT32,
    max_pending_requests: pool?.http?.http1MaxPendingRequests ?? MAX_UINT32,
    max_requests: pool?.http?.http2MaxRequests ?? MAX_UINT32,
    max_retries: pool?.http?.maxRetries ?? MAX_UINT32,
    track_remaining: true,
  });
  return { thresholds: [threshold] };
}

const H2_OPTIONS: EnvoyJson = Object.freeze({
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': Object.freeze(
    any('envoy.extensions.upstreams.http.v3.HttpProtocolOptions', {
      explicit_http_config: { http2_protocol_options: {} },
    }),
  ),
});

/** `typed_extension_protocol_options` for HTTP upstreams (Istio `setUpstreamProtocol`). */
function httpProtocolOptions(
  port: ServicePort,
  pool: ConnectionPoolSettings | undefined,
): EnvoyJson | undefined {
  const http2 = isHttp2Protocol(port.protocol);
  if (!pool) return http2 ? H2_OPTIONS : undefined;
  let memo = fromPoolHttp.get(pool);
  if (!memo) {
    memo = {};
    fromPoolHttp.set(pool, memo);
  }
  const hit = http2 ? memo.h2 : memo.h1;
  if (hit !== undefined) return hit ?? undefined;
  const out = poolHttpProtocolOptions(http2, pool);
  if (http2) memo.h2 = out ?? null;
  else memo.h1 = out ?? null;
  return out;
}

function poolHttpProtocolOptions(http2: boolean, pool: ConnectionPoolSettings): EnvoyJson | undefined {
  const http = pool?.http;
  const common = compact({
    idle_timeout: toEnvoyDuration(http?.idleTimeout ?? pool?.tcp?.idleTimeout),
    max_connection_duration: toEnvoyDuration(pool?.tcp?.maxConnectionDuration),
    max_requests_per_connection: http?.maxRequestsPerConnection || undefined,
  });
  const h2 = http?.h2UpgradePolicy === 'UPGRADE' || (http2 && http?.h2UpgradePolicy !== 'DO_NOT_UPGRADE');
  const useClient = http?.useClientProtocol === true;
  if (!h2 && !useClient && Object.keys(common).length === 0) return undefined;
  if (h2 && !useClient && Object.keys(common).length === 0 && !http?.maxConcurrentStreams) return H2_OPTIONS;
  const h2Options: EnvoyJson = http?.maxConcurrentStreams
    ? { max_concurrent_streams: http.maxConcurrentStreams }
    : {};
  const options = compact({
    common_http_protocol_options: Object.keys(common).length > 0 ? common : undefined,
    explicit_http_config: useClient
      ? undefined
      : h2
        ? { http2_protocol_options: h2Options }
        : { http_protocol_options: {} },
    use_downstream_protocol_config: useClient
      ? { http_protocol_options: {}, http2_protocol_options: {} }
      : undefined,
  });
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': any(
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      options,
    ),
  };
}

/**
 * Envoy `outlier_detection` from Istio's `OutlierDetection` (Istio `applyOutlierDetection`):
 * consecutive 5xx / gateway / local-origin errors, interval, base ejection time, max ejection
 * percent; success-rate ejection is always disabled (`enforcing_success_rate: 0`), as Istio does.
 *
 * gRPC clients implement only success-rate and failure-percentage ejection (gRFC A50), not the
 * consecutive-error counters, so for proxyless gRPC the same rule is also expressed as failure
 * percentage ejection: a host whose failure rate over at least `consecutive*Errors` requests in an
 * interval reaches Envoy's default threshold (85%) is ejected (Meridian's mapping, not Istio's).
 */
function outlierDetection(od: OutlierDetection, grpc: boolean): EnvoyJson {
  let memo = fromOutlier.get(od);
  if (!memo) {
    memo = {};
    fromOutlier.set(od, memo);
  }
  const hit = grpc ? memo.grpc : memo.envoy;
  if (hit) return hit;
  const out = buildOutlierDetection(od, grpc);
  if (grpc) memo.grpc = out;
  else memo.envoy = out;
  return out;
}

function buildOutlierDetection(od: OutlierDetection, grpc: boolean): EnvoyJson {
  const out: Record<string, JsonValue | undefined> = {
    interval: toEnvoyDuration(od.interval),
    base_ejection_time: toEnvoyDuration(od.baseEjectionTime),
    max_ejection_percent: od.maxEjectionPercent,
    enforcing_success_rate: 0,
  };
  const c5xx = od.consecutive5xxErrors;
  if (c5xx !== undefined) {
    if (c5xx > 0) {
      out.consecutive_5xx = c5xx;
      out.enforcing_consecutive_5xx = 100;
    } else out.enforcing_consecutive_5xx = 0;
  }
  const gw = od.consecutiveGatewayErrors;
  if (gw !== undefined && gw > 0) {
    out.consecutive_gateway_failure = gw;
    out.enforcing_consecutive_gateway_failure = 100;
  }
  if (od.splitExternalLocalOriginErrors) {
    out.split_external_local_origin_errors = true;
    if (od.consecutiveLocalOriginFailures !== undefined && od.consecutiveLocalOriginFailures > 0) {
      out.consecutive_local_origin_failure = od.consecutiveLocalOriginFailures;
      out.enforcing_consecutive_local_origin_failure = 100;
    }
  }
  if (grpc) {
    const volume = gw && gw > 0 ? gw : c5xx !== undefined && c5xx > 0 ? c5xx : 5;
    out.enforcing_failure_percentage = 100;
    // Envoy's default, written out: grpc-js leaves an unset threshold undefined and never ejects.
    out.failure_percentage_threshold = 85;
    out.failure_percentage_request_volume = volume;
    out.failure_percentage_minimum_hosts = 1;
  }
  return compact(out);
}

const LB_POLICIES = {
  ROUND_ROBIN: Object.freeze({ lb_policy: 'ROUND_ROBIN' }),
  RANDOM: Object.freeze({ lb_policy: 'RANDOM' }),
  LEAST_REQUEST: Object.freeze({ lb_policy: 'LEAST_REQUEST' }),
};

/** Sets `lb_policy` (and its config) on a cluster (see loadBalancer). */
function setLoadBalancer(
  out: Record<string, JsonValue | undefined>,
  lb: LoadBalancerSettings | undefined,
  grpc: boolean,
): void {
  const fields = loadBalancer(lb, grpc);
  for (const key in fields) out[key] = fields[key];
}

/** Envoy's `lb_policy` (and its config) for a load balancer setting (Istio `applyLoadBalancer`).
 * Read-only (the common ones are shared). */
function loadBalancer(lb: LoadBalancerSettings | undefined, grpc: boolean): EnvoyJson {
  const ch = lb?.consistentHash;
  if (ch) {
    if (ch.maglev && !grpc)
      return compact({ lb_policy: 'MAGLEV', maglev_lb_config: maglevConfig(ch.maglev.tableSize) });
    const min = ch.ringHash?.minimumRingSize ?? ch.minimumRingSize;
    return compact({
      lb_policy: 'RING_HASH',
      ring_hash_lb_config: min ? { minimum_ring_size: min } : undefined,
    });
  }
  if (grpc) return LB_POLICIES.ROUND_ROBIN;
  switch (lb?.simple) {
    case 'ROUND_ROBIN':
      return LB_POLICIES.ROUND_ROBIN;
    case 'RANDOM':
      return LB_POLICIES.RANDOM;
    default:
      // Istio's default since 1.14, and LEAST_CONN is its deprecated alias.
      return LB_POLICIES.LEAST_REQUEST;
  }
}

function maglevConfig(tableSize: number | undefined): EnvoyJson | undefined {
  return tableSize ? { table_size: tableSize } : undefined;
}

/** True when the effective policy enables locality failover (Istio needs outlier detection for it). */
export function failoverEnabled(policy: EffectivePolicy): boolean {
  return policy.outlierDetection !== undefined && policy.loadBalancer?.localityLbSetting?.enabled !== false;
}

/** Inputs of one outbound cluster. */
export interface OutboundClusterInput {
  readonly service: Service;
  readonly port: ServicePort;
  readonly subset: string;
  readonly destinationRule: DestinationRuleConfig | undefined;
  readonly proxy: ProxyInfo;
  readonly grpc: boolean;
  readonly options: TranslateOptions;
  /** The service accounts of the service's endpoints (UpstreamTlsContext.serviceAccounts); none when
   * absent. */
  readonly serviceAccounts?: readonly WorkloadServiceAccount[];
  /** The cluster's name when the caller has it (else made from service, port and subset). */
  readonly name?: string;
}

/** One outbound cluster in Istio's shape (EDS for registry services; DNS and passthrough otherwise). */
export function buildOutboundCluster(
  input: OutboundClusterInput,
  loadAssignment?: () => EnvoyJson,
): EnvoyJson {
  const { service, port, subset, grpc } = input;
  const name = input.name ?? clusterName('outbound', port.port, subset, service.hostname);
  const policy = effectivePolicy(input.destinationRule, subset, port.port);
  const out: Record<string, JsonValue | undefined> = { name };
  const passthrough = service.resolution === 'PASSTHROUGH' || policy.loadBalancer?.simple === 'PASSTHROUGH';
  if (passthrough && !grpc) {
    out.type = 'ORIGINAL_DST';
    out.lb_policy = 'CLUSTER_PROVIDED';
  } else if ((service.resolution === 'DNS' || service.resolution === 'DNS_ROUND_ROBIN') && !grpc) {
    out.type = service.resolution === 'DNS' ? 'STRICT_DNS' : 'LOGICAL_DNS';
    out.dns_lookup_family = 'V4_ONLY';
    if (loadAssignment) out.load_assignment = loadAssignment();
    setLoadBalancer(out, policy.loadBalancer, grpc);
  } else {
    out.type = 'EDS';
    out.eds_cluster_config = { service_name: name, eds_config: ADS_CONFIG };
    setLoadBalancer(out, policy.loadBalancer, grpc);
  }
  if (!grpc) out.connect_timeout = toEnvoyDuration(policy.connectionPool?.tcp?.connectTimeout) ?? '10s';
  out.circuit_breakers = circuitBreakers(policy.connectionPool);
  if (policy.outlierDetection) out.outlier_detection = outlierDetection(policy.outlierDetection, grpc);
  if (!grpc) {
    const common: Record<string, JsonValue | undefined> = {};
    if (policy.outlierDetection?.minHealthPercent !== undefined) {
      common.healthy_panic_threshold = { value: policy.outlierDetection.minHealthPercent };
    }
    if (policy.loadBalancer?.localityLbSetting?.distribute?.length) common.locality_weighted_lb_config = {};
    if (Object.keys(common).length > 0) out.common_lb_config = compact(common);
    const keepalive = policy.connectionPool?.tcp?.tcpKeepalive;
    if (keepalive) {
      out.upstream_connection_options = {
        tcp_keepalive: compact({
          keepalive_probes: keepalive.probes,
          keepalive_time: wholeSeconds(keepalive.time),
          keepalive_interval: wholeSeconds(keepalive.interval),
        }),
      };
    }
    if (isHttpLike(port)) {
      const options = httpProtocolOptions(port, policy.connectionPool);
      if (options) out.typed_extension_protocol_options = options;
    }
  }
  const tls = input.options.upstreamTls?.({
    clusterName: name,
    service,
    port,
    subset,
    serviceAccounts: input.serviceAccounts ?? [],
    tls: policy.tls as Readonly<Record<string, unknown>> | undefined,
    proxy: input.proxy,
  });
  if (tls) out.transport_socket = tls;
  // Every member above is set only when defined (no compact copy: thousands of clusters per push).
  return out as EnvoyJson;
}

function isHttpLike(port: ServicePort): boolean {
  const p = port.protocol.toUpperCase();
  return p === 'HTTP' || p === 'HTTP2' || p === 'GRPC' || p === 'GRPC-WEB';
}

/** A duration as whole seconds (TCP keepalive options are uint32 seconds). */
function wholeSeconds(text: string | undefined): number | undefined {
  const nanos = text === undefined ? undefined : durationNanos(text);
  return nanos === undefined ? undefined : Math.round(nanos / 1e9);
}

/**
 * The inbound cluster of one of the workload's own ports (Istio >= 1.10 shape): ORIGINAL_DST with
 * the passthrough source address 127.0.0.6 so the application sees traffic from the sidecar.
 */
export function buildInboundCluster(port: number, protocol: string): EnvoyJson {
  const name = clusterName('inbound', port, '', '');
  const out: Record<string, JsonValue | undefined> = {
    name,
    type: 'ORIGINAL_DST',
    lb_policy: 'CLUSTER_PROVIDED',
    connect_timeout: '10s',
    circuit_breakers: circuitBreakers(undefined),
    upstream_bind_config: { source_address: { address: '127.0.0.6', port_value: 0 } },
    cleanup_interval: '60s',
  };
  if (isHttp2Protocol(protocol)) {
    out.typed_extension_protocol_options = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': any(
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        { explicit_http_config: { http2_protocol_options: {} } },
      ),
    };
  }
  return compact(out);
}

/** Istio's fixed clusters every sidecar gets: BlackHoleCluster, PassthroughCluster, InboundPassthroughCluster. */
export function buildFixedClusters(): EnvoyJson[] {
  return [
    { name: 'BlackHoleCluster', type: 'STATIC', connect_timeout: '10s' },
    {
      name: 'InboundPassthroughCluster',
      type: 'ORIGINAL_DST',
      lb_policy: 'CLUSTER_PROVIDED',
      connect_timeout: '10s',
      upstream_bind_config: { source_address: { address: '127.0.0.6', port_value: 0 } },
      circuit_breakers: circuitBreakers(undefined),
    },
    {
      name: 'PassthroughCluster',
      type: 'ORIGINAL_DST',
      lb_policy: 'CLUSTER_PROVIDED',
      connect_timeout: '10s',
      circuit_breakers: circuitBreakers(undefined),
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': any(
          'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          { use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} } },
        ),
      },
    },
  ];
}
