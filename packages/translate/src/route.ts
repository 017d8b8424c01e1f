/**
 * Envoy routes from VirtualService HTTP routes, after Istio's `pilot/pkg/networking/core/route`
 * (`TranslateRoute`, `translateRouteMatch`, `retry.ConvertPolicy`, `translateFault`).
 *
 * For proxyless gRPC clients the same translation is used with what gRPC does not implement left
 * out: redirects, direct responses, mirrors, rewrites, header edits and CORS are skipped (a route
 * with only such an action is dropped: gRPC clients accept only forwarding routes), routes that
 * match on query parameters are dropped (gRFC A28), and no default retry policy is added.
 */
import type {
  CorsPolicy,
  DestinationRuleConfig,
  HeaderOperations,
  HTTPFaultInjection,
  HTTPMatchRequest,
  HTTPRetry,
  HTTPRoute,
  StringMatch,
  VirtualServiceConfig,
} from '@meridian/api';
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import { effectivePolicy } from './cluster.js';
import type { Service, ServicePort } from './types.js';
import {
  any,
  clusterName,
  compact,
  durationNanos,
  fractionalPercent,
  GRPC_STATUS,
  labelsMatch,
  resolveHost,
  sortedKeys,
  toEnvoyDuration,
} from './util.js';

/** The name Istio gives the fault HTTP filter (HCM `http_filters` and `typed_per_filter_config`). */
export const FAULT_FILTER = 'envoy.filters.http.fault';
/** The name Istio gives the CORS HTTP filter. */
export const CORS_FILTER = 'envoy.filters.http.cors';
/** The name of the router HTTP filter, always last. */
export const ROUTER_FILTER = 'envoy.filters.http.router';

/** What route translation needs to know besides the VirtualService. */
export interface RouteContext {
  readonly proxy: ProxyInfo;
  readonly service: Service;
  readonly port: ServicePort;
  readonly grpc: boolean;
  readonly domainSuffix: string;
  /** Looks up a visible service by FQDN (for destination ports). */
  readonly serviceFor: (hostname: string) => Service | undefined;
  /** The DestinationRule that applies to a host, for consistent-hash hash policies. */
  readonly destinationRuleFor: (hostname: string) => DestinationRuleConfig | undefined;
}

/** Istio's default retry policy, used when a route sets no `retries` (Envoy sidecars only). */
function defaultRetryPolicy(): EnvoyJson {
  return DEFAULT_RETRY_POLICY;
}

/** Shared, read-only (see cluster.ts on shared output JSON). */
const DEFAULT_RETRY_POLICY: EnvoyJson = deepFreeze({
  retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
  num_retries: 2,
  retry_host_predicate: [
    {
      name: 'envoy.retry_host_predicates.previous_hosts',
      typed_config: any('envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate'),
    },
  ],
  host_selection_retry_max_attempts: 5,
  retriable_status_codes: [503],
});

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Istio `retry.ConvertPolicy`: undefined means no retry policy at all. */
export function retryPolicy(retries: HTTPRetry | undefined, grpc: boolean): EnvoyJson | undefined {
  if (!retries) return grpc ? undefined : defaultRetryPolicy();
  if (!retries.attempts || retries.attempts <= 0) return undefined;
  const policy: Record<string, JsonValue | undefined> = grpc
    ? { retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes' }
    : { ...defaultRetryPolicy() };
  policy.num_retries = retries.attempts;
  if (retries.retryOn) {
    const names: string[] = [];
    const codes: number[] = [];
    for (const token of retries.retryOn.split(',')) {
      const t = token.trim();
      if (t === '') continue;
      if (/^\d+$/.test(t)) codes.push(Number(t));
      else names.push(t);
    }
    if (codes.length > 0 && !names.includes('retriable-status-codes')) names.push('retriable-status-codes');
    policy.retry_on = names.join(',');
    policy.retriable_status_codes = codes.length > 0 ? codes : undefined;
  }
  policy.per_try_timeout = toEnvoyDuration(retries.perTryTimeout);
  if (retries.retryRemoteLocalities) {
    policy.retry_priority = {
      name: 'envoy.retry_priorities.previous_priorities',
      typed_config: any('envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig', {
        update_frequency: 2,
      }),
    };
  }
  if (retries.retryIgnorePreviousHosts === false) {
    policy.retry_host_predicate = undefined;
    policy.host_selection_retry_max_attempts = undefined;
  }
  return compact(policy);
}

/** Istio `translateFault`: the per-route HTTPFault config, or undefined when nothing applies. */
export function faultConfig(fault: HTTPFaultInjection | undefined): EnvoyJson | undefined {
  if (!fault) return undefined;
  const out: Record<string, JsonValue | undefined> = {};
  const d = fault.delay;
  if (d?.fixedDelay) {
    const percentage =
      d.percentage !== undefined
        ? fractionalPercent(d.percentage.value ?? 0)
        : d.percent !== undefined
          ? fractionalPercent(d.percent)
          : fractionalPercent(100);
    out.delay = { fixed_delay: toEnvoyDuration(d.fixedDelay) ?? '0s', percentage };
  }
  const a = fault.abort;
  if (a && (a.httpStatus !== undefined || a.grpcStatus !== undefined)) {
    // A `percentage` without value is 0% (@meridian/api's normal form drops zero values).
    const percentage = fractionalPercent(a.percentage ? (a.percentage.value ?? 0) : 100);
    if (a.httpStatus !== undefined) out.abort = { http_status: a.httpStatus, percentage };
    else {
      const code = GRPC_STATUS[a.grpcStatus ?? ''] ?? Number(a.grpcStatus);
      if (Number.isInteger(code)) out.abort = { grpc_status: code, percentage };
    }
  }
  if (out.delay === undefined && out.abort === undefined) return undefined;
  return any('envoy.extensions.filters.http.fault.v3.HTTPFault', compact(out));
}

/** Istio `translateCORSPolicy`: the per-route CorsPolicy (Envoy sidecars). */
export function corsConfig(cors: CorsPolicy | undefined): EnvoyJson | undefined {
  if (!cors) return undefined;
  const out: EnvoyJson = {};
  const origins = (cors.allowOrigins ?? []).map((m) => stringMatcher(m)).filter((m) => m !== undefined);
  if (origins.length > 0) out.allow_origin_string_match = origins;
  if (cors.allowMethods?.length) out.allow_methods = cors.allowMethods.join(',');
  if (cors.allowHeaders?.length) out.allow_headers = cors.allowHeaders.join(',');
  if (cors.exposeHeaders?.length) out.expose_headers = cors.exposeHeaders.join(',');
  const maxAge = cors.maxAge === undefined ? undefined : durationNanos(cors.maxAge);
  if (maxAge !== undefined) out.max_age = String(Math.floor(maxAge / 1e9));
  if (cors.allowCredentials !== undefined) out.allow_credentials = cors.allowCredentials;
  if (cors.unmatchedPreflights === 'FORWARD') out.forward_not_matching_preflights = true;
  else if (cors.unmatchedPreflights === 'IGNORE') out.forward_not_matching_preflights = false;
  out.filter_enabled = { default_value: { numerator: 100, denominator: 'HUNDRED' } };
  return any('envoy.extensions.filters.http.cors.v3.CorsPolicy', out);
}

function stringMatcher(m: StringMatch, ignoreCase = false): EnvoyJson | undefined {
  if (m.exact !== undefined) return compact({ exact: m.exact, ignore_case: ignoreCase || undefined });
  if (m.prefix !== undefined) return compact({ prefix: m.prefix, ignore_case: ignoreCase || undefined });
  if (m.regex !== undefined) return { safe_regex: { regex: m.regex } };
  return undefined;
}

/** Istio `translateHeaderMatch`: `{}` means "present"; `invert` for `withoutHeaders`. */
function headerMatcher(name: string, m: StringMatch, invert: boolean): EnvoyJson {
  const sm = stringMatcher(m);
  return compact({
    name,
    string_match: sm,
    present_match: sm ? undefined : true,
    invert_match: invert || undefined,
  });
}

/** The catch-all match, shared read-only. */
const MATCH_ALL: EnvoyJson = Object.freeze({ prefix: '/' });

/** Istio `translateRouteMatch` for one HTTPMatchRequest (undefined = the catch-all `/`). */
export function routeMatch(match: HTTPMatchRequest | undefined): EnvoyJson {
  const out: Record<string, JsonValue | undefined> = {};
  const uri = match?.uri;
  if (uri?.exact !== undefined) out.path = uri.exact;
  else if (uri?.prefix !== undefined) out.prefix = uri.prefix;
  else if (uri?.regex !== undefined) out.safe_regex = { regex: uri.regex };
  else out.prefix = '/';
  if (match?.ignoreUriCase) out.case_sensitive = false;
  const headers: JsonValue[] = [];
  if (match) {
    for (const name of sortedKeys(match.headers)) {
      headers.push(headerMatcher(name.toLowerCase(), match.headers?.[name] ?? {}, false));
    }
    for (const name of sortedKeys(match.withoutHeaders)) {
      headers.push(headerMatcher(name.toLowerCase(), match.withoutHeaders?.[name] ?? {}, true));
    }
    if (match.method) headers.push(headerMatcher(':method', match.method, false));
    if (match.authority) headers.push(headerMatcher(':authority', match.authority, false));
    if (match.scheme) headers.push(headerMatcher(':scheme', match.scheme, false));
  }
  if (headers.length > 0) out.headers = headers;
  const query: JsonValue[] = [];
  for (const name of sortedKeys(match?.queryParams)) {
    const m = match?.queryParams?.[name] ?? {};
    const sm = stringMatcher(m);
    query.push(compact({ name, string_match: sm, present_match: sm ? undefined : true }));
  }
  if (query.length > 0) out.query_parameters = query;
  return compact(out);
}

function headerValues(ops: HeaderOperations | undefined): {
  add: JsonValue[];
  remove: string[];
} {
  const add: JsonValue[] = [];
  for (const key of sortedKeys(ops?.set)) {
    add.push({
      header: { key, value: ops?.set?.[key] ?? '' },
      append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
    });
  }
  for (const key of sortedKeys(ops?.add)) {
    add.push({ header: { key, value: ops?.add?.[key] ?? '' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' });
  }
  return { add, remove: [...(ops?.remove ?? [])] };
}

/** Adds Istio `headers` edits to a Route or a WeightedCluster entry. */
function applyHeaders(target: Record<string, JsonValue | undefined>, headers: HTTPRoute['headers']): void {
  if (!headers) return;
  const req = headerValues(headers?.request);
  const res = headerValues(headers?.response);
  if (req.add.length > 0) target.request_headers_to_add = req.add;
  if (req.remove.length > 0) target.request_headers_to_remove = req.remove;
  if (res.add.length > 0) target.response_headers_to_add = res.add;
  if (res.remove.length > 0) target.response_headers_to_remove = res.remove;
}

/** The cluster a Destination routes to from the listener port `listenerPort`. */
export function destinationCluster(
  destination: { host?: string; subset?: string; port?: { number?: number } },
  vsNamespace: string,
  ctx: RouteContext,
): { name: string; host: string; port: number; subset: string } {
  const host = resolveHost(destination.host ?? '', vsNamespace, ctx.domainSuffix);
  let port = destination.port?.number;
  if (port === undefined) {
    const svc = ctx.serviceFor(host);
    port = svc && svc.ports.length === 1 ? (svc.ports[0] as ServicePort).port : ctx.port.port;
  }
  const subset = destination.subset ?? '';
  return { name: clusterName('outbound', port, subset, host), host, port, subset };
}

/** Istio `getHashPolicy`: the route's hash policy from the destination's DestinationRule. */
function hashPolicy(
  dest: { host: string; port: number; subset: string },
  ctx: RouteContext,
): JsonValue[] | undefined {
  const dr = ctx.destinationRuleFor(dest.host);
  if (!dr) return undefined;
  const ch = effectivePolicy(dr, dest.subset, dest.port).loadBalancer?.consistentHash;
  if (!ch) return undefined;
  if (ch.httpHeaderName) return [{ header: { header_name: ch.httpHeaderName } }];
  if (ctx.grpc) return undefined;
  if (ch.httpCookie) {
    return [
      {
        cookie: compact({
          name: ch.httpCookie.name ?? '',
          path: ch.httpCookie.path,
          ttl: toEnvoyDuration(ch.httpCookie.ttl),
        }),
      },
    ];
  }
  if (ch.useSourceIp) return [{ connection_properties: { source_ip: true } }];
  if (ch.httpQueryParameterName) return [{ query_parameter: { name: ch.httpQueryParameterName } }];
  return undefined;
}

function timeoutFields(
  out: Record<string, JsonValue | undefined>,
  timeout: string | undefined,
  grpc: boolean,
): void {
  if (timeout === undefined) {
    if (!grpc) {
      out.timeout = '0s';
      out.max_stream_duration = NO_STREAM_DURATION;
    }
    return;
  }
  const t = toEnvoyDuration(timeout) ?? '0s';
  if (!grpc) out.timeout = t;
  // Istio sets max_stream_duration for gRPC timeouts; gRPC clients read only this (gRFC A31).
  if (timeout !== undefined || !grpc)
    out.max_stream_duration = { max_stream_duration: t, grpc_timeout_header_max: t };
}

const NO_STREAM_DURATION: EnvoyJson = Object.freeze({
  max_stream_duration: '0s',
  grpc_timeout_header_max: '0s',
});

const REDIRECT_CODES: Readonly<Record<number, string>> = {
  301: 'MOVED_PERMANENTLY',
  302: 'FOUND',
  303: 'SEE_OTHER',
  307: 'TEMPORARY_REDIRECT',
  308: 'PERMANENT_REDIRECT',
};

function routeAction(http: HTTPRoute, vsNamespace: string, ctx: RouteContext): EnvoyJson | undefined {
  // One destination takes all traffic; among several, an unset weight is 0 (Istio).
  const all = http.route ?? [];
  const dests = all.length === 1 ? all : all.filter((d) => (d.weight ?? 0) > 0);
  if (dests.length === 0) return undefined;
  const out: Record<string, JsonValue | undefined> = {};
  const resolved = dests.map((d) => ({ d, c: destinationCluster(d.destination ?? {}, vsNamespace, ctx) }));
  if (resolved.length === 1) {
    out.cluster = (resolved[0] as { c: { name: string } }).c.name;
  } else {
    out.weighted_clusters = {
      clusters: resolved.map(({ d, c }) => {
        const wc: Record<string, JsonValue | undefined> = { name: c.name, weight: d.weight ?? 0 };
        if (!ctx.grpc) applyHeaders(wc, d.headers);
        return wc as EnvoyJson;
      }),
    };
  }
  timeoutFields(out, http.timeout, ctx.grpc);
  const retry = retryPolicy(http.retries, ctx.grpc);
  if (retry) out.retry_policy = retry;
  const first = resolved[0]?.c;
  if (first) {
    // Without a hash policy for the first destination there is none: the others need no look-up.
    const hp = hashPolicy(first, ctx);
    if (hp) {
      const want = JSON.stringify(hp);
      if (resolved.every(({ c }) => JSON.stringify(hashPolicy(c, ctx)) === want)) out.hash_policy = hp;
    }
  }
  if (!ctx.grpc) {
    const rw = http.rewrite;
    if (rw?.uriRegexRewrite?.match !== undefined) {
      out.regex_rewrite = {
        pattern: { regex: rw.uriRegexRewrite.match },
        substitution: rw.uriRegexRewrite.rewrite ?? '',
      };
    } else if (rw?.uri !== undefined) out.prefix_rewrite = rw.uri;
    if (rw?.authority !== undefined) out.host_rewrite_literal = rw.authority;
    const mirrors: JsonValue[] = [];
    if (http.mirror) {
      const c = destinationCluster(http.mirror, vsNamespace, ctx);
      mirrors.push(
        compact({
          cluster: c.name,
          runtime_fraction:
            http.mirrorPercentage !== undefined
              ? { default_value: fractionalPercent(http.mirrorPercentage.value ?? 0) }
              : undefined,
          trace_sampled: false,
        }),
      );
    }
    for (const m of http.mirrors ?? []) {
      const c = destinationCluster(m.destination ?? {}, vsNamespace, ctx);
      mirrors.push(
        compact({
          cluster: c.name,
          runtime_fraction:
            m.percentage !== undefined
              ? { default_value: fractionalPercent(m.percentage.value ?? 0) }
              : undefined,
          trace_sampled: false,
        }),
      );
    }
    if (mirrors.length > 0) out.request_mirror_policies = mirrors;
  }
  // Every member above is set only when defined.
  return out as EnvoyJson;
}

function redirectAction(http: HTTPRoute): EnvoyJson | undefined {
  const r = http.redirect;
  if (!r) return undefined;
  return compact({
    path_redirect: r.uri,
    host_redirect: r.authority,
    port_redirect: r.port,
    scheme_redirect: r.scheme,
    response_code: r.redirectCode !== undefined ? REDIRECT_CODES[r.redirectCode] : undefined,
  });
}

function directResponse(http: HTTPRoute): EnvoyJson | undefined {
  const d = http.directResponse;
  if (!d) return undefined;
  let body: EnvoyJson | undefined;
  if (d.body?.string !== undefined) body = { inline_string: d.body.string };
  else if (d.body?.bytes !== undefined) body = { inline_bytes: d.body.bytes };
  return compact({ status: d.status ?? 200, body });
}

function matchApplies(m: HTTPMatchRequest, ctx: RouteContext): boolean {
  if (m.port !== undefined && m.port !== ctx.port.port) return false;
  if (m.sourceLabels && !labelsMatch(m.sourceLabels, ctx.proxy.labels)) return false;
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== ctx.proxy.namespace) return false;
  if (m.gateways && m.gateways.length > 0 && !m.gateways.includes('mesh')) return false;
  if (ctx.grpc && m.queryParams && Object.keys(m.queryParams).length > 0) return false;
  return true;
}

/**
 * Envoy routes for one virtual host: the VirtualService's HTTP routes in order (one Envoy route per
 * applicable match), or Istio's `default` route to `outbound|<port>||<host>` when none applies.
 */
export function buildRoutes(vs: VirtualServiceConfig | undefined, ctx: RouteContext): EnvoyJson[] {
  const operation = `${ctx.service.hostname}:${ctx.port.port}/*`;
  if (!vs) {
    // Istio's default route, field by field in the order the general path gives them.
    const route: EnvoyJson = { cluster: clusterName('outbound', ctx.port.port, '', ctx.service.hostname) };
    if (!ctx.grpc) {
      route.timeout = '0s';
      route.max_stream_duration = NO_STREAM_DURATION;
      route.retry_policy = DEFAULT_RETRY_POLICY;
    }
    const hp = hashPolicy({ host: ctx.service.hostname, port: ctx.port.port, subset: '' }, ctx);
    if (hp) route.hash_policy = hp;
    const out: EnvoyJson = { name: 'default', match: MATCH_ALL, route };
    if (!ctx.grpc) out.decorator = { operation };
    return [out];
  }
  const vsNamespace = vs.metadata.namespace;
  const out: EnvoyJson[] = [];
  for (const http of vs.spec.http ?? []) {
    const matches = http.match && http.match.length > 0 ? http.match : [undefined];
    let action: Record<string, JsonValue | undefined> | undefined;
    if (http.redirect) {
      if (ctx.grpc) continue;
      action = { redirect: redirectAction(http) };
    } else if (http.directResponse) {
      if (ctx.grpc) continue;
      action = { direct_response: directResponse(http) };
    } else {
      const ra = routeAction(http, vsNamespace, ctx);
      if (!ra) continue;
      action = { route: ra };
    }
    const fault = faultConfig(http.fault);
    const cors = ctx.grpc ? undefined : corsConfig(http.corsPolicy);
    for (const m of matches) {
      if (m && !matchApplies(m, ctx)) continue;
      const route: Record<string, JsonValue | undefined> = {
        name: http.name !== undefined ? (m?.name ? `${http.name}.${m.name}` : http.name) : m?.name,
        match: routeMatch(m),
        ...action,
        decorator: ctx.grpc ? undefined : { operation },
      };
      if (fault || cors) {
        const perFilter: EnvoyJson = {};
        if (cors) perFilter[CORS_FILTER] = cors;
        if (fault) perFilter[FAULT_FILTER] = fault;
        route.typed_per_filter_config = perFilter;
      }
      if (!ctx.grpc) applyHeaders(route, http.headers);
      out.push(compact(route));
    }
  }
  return out;
}
