/**
 * RateLimit (`policy.meridian.io/v1alpha1`) -> Envoy's local and global rate-limit filters on a
 * workload's inbound HTTP chains.
 *
 * - **Local** (`envoy.filters.http.local_ratelimit`): a token bucket per proxy. A workload-wide
 *   limit (no `paths`) is the filter's own bucket; a limit on `paths` is a per-route bucket on a
 *   route matching those paths (it then replaces the workload-wide bucket there). With several
 *   workload-wide local limits, the one with the lowest rate is used and a warning says so.
 * - **Global** (`envoy.filters.http.ratelimit`): each limit of a RateLimit becomes a route
 *   `rate_limits` entry whose descriptor is `meridian_limit=<ns>/<name>/<i>` followed by the entry of
 *   its key: `source_principal` (the peer certificate's URI SAN, via a CEL descriptor; absent on
 *   plaintext connections, which then share one counter), `header` (a request header; a request
 *   without it is not counted), or `path`. The replicas answer `ShouldRateLimit` for domain
 *   {@link RATE_LIMIT_DOMAIN}, looking the limit up by `meridian_limit`, so the proxy never carries
 *   the numbers. Workload-wide limits go on every inbound route; path limits on their routes.
 * - Routes: for each RateLimit with `paths` (in namespace/name order), one route per path before
 *   Istio's `default` route. The first route a request matches decides which path limits apply.
 * - The service cluster ({@link RATE_LIMIT_CLUSTER}): when the replicas' addresses are marked `mtls`
 *   (the replicas' CA port), the proxy calls them with its workload certificate (SDS `default`), so
 *   the replica knows who asks, and accepts only a certificate signed by the mesh root that names
 *   one of the replicas' hosts ({@link replicaServiceTransportSocket}).
 */
import type { GlobalLimit, LocalRateLimit, RateLimitConfig, StringMatch } from '@meridian/api';
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import { SDS_DEFAULT_SECRET, SDS_ROOT_SECRET, sdsSecret } from './mtls.js';
import type { ReplicaServiceAddress } from './types.js';
import {
  any,
  compareStrings,
  durationNanos,
  labelsMatch,
  replicaServiceCluster,
  toEnvoyDuration,
} from './util.js';

export const LOCAL_RATE_LIMIT_FILTER = 'envoy.filters.http.local_ratelimit';
export const RATE_LIMIT_FILTER = 'envoy.filters.http.ratelimit';
/** The cluster proxies reach the replicas' rate-limit service through. */
export const RATE_LIMIT_CLUSTER = 'meridian-ratelimit';
/** The rate-limit domain of every Meridian global limit. */
export const RATE_LIMIT_DOMAIN = 'meridian';
/** The descriptor entry naming the limit: `<namespace>/<name>/<index in spec.global.limits>`. */
export const LIMIT_DESCRIPTOR_KEY = 'meridian_limit';
const LOCAL_RL = 'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit';
const GLOBAL_RL = 'envoy.extensions.filters.http.ratelimit.v3.RateLimit';
const EXPR = 'envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor';

/** The RateLimits that apply to `proxy`: root namespace and own namespace, selector matching. */
export function selectRateLimits(
  limits: readonly RateLimitConfig[],
  proxy: Pick<ProxyInfo, 'namespace' | 'labels'>,
  rootNamespace: string,
): RateLimitConfig[] {
  return limits.filter((l) => {
    const ns = l.metadata.namespace;
    if (ns !== rootNamespace && ns !== proxy.namespace) return false;
    const sel = l.spec.selector?.matchLabels;
    return !sel || Object.keys(sel).length === 0 || labelsMatch(sel, proxy.labels);
  });
}

/** What a route of the inbound route configuration carries: extra routes before `default`. */
export interface RateLimitRoutes {
  /** Routes inserted before Istio's `default` route: name, match, and what they carry. */
  readonly routes: readonly RouteDecoration[];
  /** What the `default` route carries (workload-wide global limits). */
  readonly defaultRoute: RouteDecoration | undefined;
}

/** Route fields added by rate limits (merged into a route forwarding to the inbound cluster). */
export interface RouteDecoration {
  readonly name: string;
  readonly match: EnvoyJson;
  /** `RouteAction.rate_limits`. */
  readonly rateLimits: readonly EnvoyJson[];
  /** `typed_per_filter_config` (the path's local bucket). */
  readonly perFilterConfig?: EnvoyJson;
}

/** The rate-limit filters of one workload's inbound HTTP chains and their route decorations. */
export interface RateLimitFilters {
  readonly filters: readonly EnvoyJson[];
  readonly routes: RateLimitRoutes;
  /** The rate-limit cluster, when global limits are enforced. */
  readonly cluster: EnvoyJson | undefined;
  readonly warnings: readonly string[];
}

const NONE: RateLimitFilters = Object.freeze({
  filters: [],
  routes: { routes: [], defaultRoute: undefined },
  cluster: undefined,
  warnings: [],
});

function statusCode(code: number | undefined): EnvoyJson {
  return { code: code ?? 429 };
}

function localConfig(local: LocalRateLimit, statPrefix: string): EnvoyJson {
  const interval = local.fillInterval ?? '1s';
  const headers = Object.keys(local.responseHeaders ?? {}).sort(compareStrings);
  return any(LOCAL_RL, {
    stat_prefix: statPrefix,
    status: statusCode(local.statusCode),
    token_bucket: {
      max_tokens: local.maxTokens ?? 1,
      tokens_per_fill: local.tokensPerFill ?? local.maxTokens ?? 1,
      fill_interval: toEnvoyDuration(interval) ?? '1s',
    },
    filter_enabled: {
      runtime_key: 'local_rate_limit_enabled',
      default_value: { numerator: 100, denominator: 'HUNDRED' },
    },
    filter_enforced: {
      runtime_key: 'local_rate_limit_enforced',
      default_value: { numerator: 100, denominator: 'HUNDRED' },
    },
    ...(headers.length > 0
      ? {
          response_headers_to_add: headers.map((k) => ({
            header: { key: k, value: local.responseHeaders?.[k] ?? '' },
            append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
          })),
        }
      : {}),
  });
}

/** Tokens per second of a bucket (to pick the strictest workload-wide one). */
function rate(local: LocalRateLimit): number {
  const ns = durationNanos(local.fillInterval ?? '1s') ?? 1e9;
  return (local.tokensPerFill ?? local.maxTokens ?? 1) / (ns / 1e9);
}

/** The route `rate_limits` entry of one global limit. */
function globalAction(rl: RateLimitConfig, index: number, limit: GlobalLimit): EnvoyJson {
  const id = `${rl.metadata.namespace}/${rl.metadata.name}/${index}`;
  const actions: JsonValue[] = [
    { generic_key: { descriptor_key: LIMIT_DESCRIPTOR_KEY, descriptor_value: id } },
  ];
  switch (limit.key ?? 'NONE') {
    case 'SOURCE_PRINCIPAL':
      actions.push({
        extension: {
          name: 'envoy.rate_limit_descriptors.expr',
          typed_config: any(EXPR, {
            descriptor_key: 'source_principal',
            text: 'connection.uri_san_peer_certificate',
            skip_if_error: true,
          }),
        },
      });
      break;
    case 'HEADER':
      actions.push({ request_headers: { header_name: limit.header ?? '', descriptor_key: 'header' } });
      break;
    case 'PATH':
      actions.push({ request_headers: { header_name: ':path', descriptor_key: 'path' } });
      break;
    default:
      break;
  }
  return { actions };
}

function globalActions(rl: RateLimitConfig): EnvoyJson[] {
  return (rl.spec.global?.limits ?? []).map((l, i) => globalAction(rl, i, l));
}

function pathMatch(m: StringMatch): EnvoyJson {
  if (m.exact !== undefined) return { path: m.exact };
  if (m.prefix !== undefined) return { prefix: m.prefix };
  return { safe_regex: { regex: m.regex ?? '' } };
}

/**
 * The rate-limit filters for the RateLimits that apply to one workload (`selectRateLimits`).
 * `service`: the replicas' addresses (PolicyInputs.rateLimitService); without them global limits
 * are left out with a warning.
 */
export function buildRateLimitFilters(
  limits: readonly RateLimitConfig[],
  service: readonly ReplicaServiceAddress[] | undefined,
): RateLimitFilters {
  if (limits.length === 0) return NONE;
  const warnings: string[] = [];
  const wide = limits.filter((l) => (l.spec.paths ?? []).length === 0);
  const scoped = limits.filter((l) => (l.spec.paths ?? []).length > 0);
  const anyGlobal = limits.some((l) => (l.spec.global?.limits ?? []).length > 0);
  const globalOn = anyGlobal && (service ?? []).length > 0;
  if (anyGlobal && !globalOn)
    warnings.push(
      `RateLimit ${limits
        .filter((l) => l.spec.global)
        .map((l) => `${l.metadata.namespace}/${l.metadata.name}`)
        .join(', ')}: no rate-limit service address is known: global limits are not enforced`,
    );

  const wideLocals = wide.filter((l) => l.spec.local !== undefined);
  let wideLocal: RateLimitConfig | undefined;
  for (const l of wideLocals)
    if (wideLocal === undefined || rate(l.spec.local!) < rate(wideLocal.spec.local!)) wideLocal = l;
  if (wideLocals.length > 1)
    warnings.push(
      `RateLimit: ${wideLocals.length} workload-wide local limits select this workload; the lowest rate, ${wideLocal!.metadata.namespace}/${wideLocal!.metadata.name}, is enforced`,
    );
  const wideGlobal = globalOn ? wide.flatMap(globalActions) : [];

  const routes: RouteDecoration[] = [];
  for (const rl of scoped) {
    const local = rl.spec.local;
    (rl.spec.paths ?? []).forEach((m, i) => {
      routes.push({
        name: `ratelimit[${rl.metadata.namespace}/${rl.metadata.name}]-path[${i}]`,
        match: pathMatch(m),
        rateLimits: globalOn ? [...globalActions(rl), ...wideGlobal] : [],
        ...(local !== undefined
          ? { perFilterConfig: { [LOCAL_RATE_LIMIT_FILTER]: localConfig(local, 'http_local_rate_limiter') } }
          : {}),
      });
    });
  }

  const filters: EnvoyJson[] = [];
  if (limits.some((l) => l.spec.local !== undefined)) {
    filters.push({
      name: LOCAL_RATE_LIMIT_FILTER,
      typed_config:
        wideLocal !== undefined
          ? localConfig(wideLocal.spec.local!, 'http_local_rate_limiter')
          : // No workload-wide bucket: the filter is off except on routes with their own bucket.
            any(LOCAL_RL, { stat_prefix: 'http_local_rate_limiter' }),
    });
  }
  if (globalOn) {
    const globals = limits.filter((l) => (l.spec.global?.limits ?? []).length > 0);
    const first = globals[0]!.spec.global!;
    const deny = globals.some((l) => l.spec.global?.failureModeDeny === true);
    const timeouts = globals.map((l) => durationNanos(l.spec.global?.timeout ?? '100ms') ?? 1e8);
    const codes = new Set(globals.map((l) => l.spec.global?.statusCode ?? 429));
    if (codes.size > 1)
      warnings.push(
        `RateLimit: global limits of this workload ask for different status codes; ${first.statusCode ?? 429} is used`,
      );
    filters.push({
      name: RATE_LIMIT_FILTER,
      typed_config: any(GLOBAL_RL, {
        domain: RATE_LIMIT_DOMAIN,
        stat_prefix: 'meridian_global',
        ...(deny ? { failure_mode_deny: true } : {}),
        timeout: toEnvoyDuration(`${Math.max(...timeouts) / 1e6}ms`) ?? '0.100s',
        rate_limit_service: {
          grpc_service: { envoy_grpc: { cluster_name: RATE_LIMIT_CLUSTER } },
          transport_api_version: 'V3',
        },
        rate_limited_status: statusCode(first.statusCode),
        enable_x_ratelimit_headers: 'DRAFT_VERSION_03',
      }),
    });
  }
  return {
    filters,
    routes: {
      routes,
      defaultRoute:
        wideGlobal.length > 0
          ? { name: 'default', match: { prefix: '/' }, rateLimits: wideGlobal }
          : undefined,
    },
    cluster: globalOn ? rateLimitCluster(service ?? []) : undefined,
    warnings,
  };
}

/**
 * The cluster of the replicas' rate-limit service (gRPC: HTTP/2), endpoints in the given order;
 * over mesh mTLS when any address is marked `mtls` ({@link replicaServiceTransportSocket}).
 */
export function rateLimitCluster(service: readonly ReplicaServiceAddress[]): EnvoyJson {
  const cluster = replicaServiceCluster(RATE_LIMIT_CLUSTER, service);
  const tls = replicaServiceTransportSocket(service);
  return tls ? { ...cluster, transport_socket: tls } : cluster;
}

const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

/**
 * The upstream `transport_socket` of a cluster of the replicas' own gRPC services, undefined when no
 * address is marked `mtls` (plaintext, the `--rate-limit-plaintext` development mode). With any
 * marked, the whole cluster is mTLS (a plaintext endpoint then fails its handshake rather than
 * receive a call unauthenticated):
 * - the proxy's certificate is its workload certificate (SDS `default`): the replica authorises the
 *   call by that SPIFFE identity;
 * - the replica's certificate must chain to the mesh root (SDS `ROOTCA`) and carry one of the
 *   replicas' hosts as a DNS or IP SAN (typed matchers, sorted, de-duplicated). Replicas' serving
 *   certificates carry their hosts; workload certificates carry only their SPIFFE URI, so a
 *   workload cannot pose as a replica.
 * - ALPN `h2` (gRPC).
 */
export function replicaServiceTransportSocket(
  addresses: readonly ReplicaServiceAddress[],
): EnvoyJson | undefined {
  if (!addresses.some((a) => a.mtls)) return undefined;
  const hosts = [...new Set(addresses.map((a) => a.host))].sort(compareStrings);
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': UPSTREAM_TLS,
      common_tls_context: {
        tls_certificate_sds_secret_configs: [sdsSecret(SDS_DEFAULT_SECRET)],
        combined_validation_context: {
          default_validation_context: {
            match_typed_subject_alt_names: hosts.map((h) => ({
              san_type: /^[\d.]+$/.test(h) || h.includes(':') ? 'IP_ADDRESS' : 'DNS',
              matcher: { exact: h },
            })),
          },
          validation_context_sds_secret_config: sdsSecret(SDS_ROOT_SECRET),
        },
        alpn_protocols: ['h2'],
      },
    },
  };
}

/** The warning for a proxyless gRPC server selected by RateLimits (grpc-js-xds has no rate-limit filter). */
export function grpcRateLimitWarnings(limits: readonly RateLimitConfig[]): string[] {
  return limits.map(
    (l) =>
      `RateLimit ${l.metadata.namespace}/${l.metadata.name} (grpc): proxyless gRPC servers have no rate-limit filter: not enforced`,
  );
}
