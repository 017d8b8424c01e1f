/**
 * Small pure helpers shared by the generators: Istio host rules, names, durations and percentages
 * in Envoy JSON form.
 */
import { parseDurationNanos } from '@meridian/api';
import type { EnvoyJson, JsonValue } from '@meridian/envoy';

/** `type.googleapis.com/<name>`: the `@type` of an Any. */
export function typeUrl(messageName: string): string {
  return `type.googleapis.com/${messageName}`;
}

/** An Any in Envoy JSON: `{ "@type": url, ...fields }`. */
export function any(messageName: string, fields: EnvoyJson = {}): EnvoyJson {
  return { '@type': typeUrl(messageName), ...fields };
}

/**
 * Istio's `ResolveShortnameToFQDN`: a name without dots (`reviews`) is completed with the config's
 * namespace (`reviews.<ns>.svc.<suffix>`); a name with dots or a wildcard is kept as written.
 */
export function resolveHost(host: string, namespace: string, domainSuffix: string): string {
  if (host === '*' || host.includes('.')) return host;
  if (host.startsWith('*')) return host;
  return `${host}.${namespace}.svc.${domainSuffix}`;
}

/** Istio host matching: `*` matches everything, `*.example.com` any name ending in `.example.com`. */
export function hostMatches(pattern: string, hostname: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*')) return hostname.endsWith(pattern.slice(1));
  return pattern === hostname;
}

/** How specific a host pattern is, for "most specific wins" rules: exact hosts before wildcards. */
export function hostSpecificity(pattern: string): number {
  if (pattern === '*') return 0;
  if (pattern.startsWith('*')) return pattern.length;
  return 1_000_000 + pattern.length;
}

/**
 * Istio `exportTo` visibility: empty or `*` is everyone; `.` is the object's own namespace; `~` is
 * nobody; anything else names a namespace.
 */
export function isExportedTo(
  exportTo: readonly string[] | undefined,
  ownNamespace: string,
  to: string,
): boolean {
  if (!exportTo || exportTo.length === 0) return true;
  for (const e of exportTo) {
    if (e === '*') return true;
    if (e === '.' && ownNamespace === to) return true;
    if (e === to) return true;
  }
  return false;
}

/** Istio's cluster name: `<direction>|<port>|<subset>|<host>`. */
export function clusterName(
  direction: 'outbound' | 'inbound',
  port: number,
  subset: string,
  host: string,
): string {
  return `${direction}|${port}|${subset}|${host}`;
}

/** True when every label of `selector` is present with the same value in `labels`. */
export function labelsMatch(
  selector: Readonly<Record<string, string>> | undefined,
  labels: Readonly<Record<string, string>>,
): boolean {
  if (!selector) return true;
  for (const key of Object.keys(selector)) if (labels[key] !== selector[key]) return false;
  return true;
}

/**
 * A duration string (Go `time.ParseDuration` syntax, parsed by `@meridian/api`'s
 * `parseDurationNanos`, the one parser of durations) in nanoseconds; undefined when malformed or
 * negative (Envoy's timeouts and intervals are never negative).
 */
export function durationNanos(text: string): number | undefined {
  const ns = parseDurationNanos(text);
  if (ns === undefined || ns < 0) return undefined;
  return ns === 0 ? 0 : ns; // `-0s` parses to -0
}

/** A duration in Envoy JSON (`"1.500s"`): 0, 3, 6 or 9 fractional digits as proto3 JSON prints them. */
export function envoyDuration(nanos: number): string {
  const seconds = Math.floor(nanos / 1e9);
  const frac = nanos - seconds * 1e9;
  if (frac === 0) return `${seconds}s`;
  if (frac % 1e6 === 0) return `${seconds}.${String(frac / 1e6).padStart(3, '0')}s`;
  if (frac % 1e3 === 0) return `${seconds}.${String(frac / 1e3).padStart(6, '0')}s`;
  return `${seconds}.${String(frac).padStart(9, '0')}s`;
}

/** Converts an Istio duration string to Envoy JSON, or undefined when absent or malformed. */
export function toEnvoyDuration(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const n = durationNanos(text);
  return n === undefined ? undefined : envoyDuration(n);
}

/** Istio `translatePercentToFractionalPercent`: a 0..100 double as parts per million. */
export function fractionalPercent(percent: number): EnvoyJson {
  const clamped = Math.min(100, Math.max(0, percent));
  return { numerator: Math.round(clamped * 10000), denominator: 'MILLION' };
}

/** gRPC status code names (as Istio's `grpcStatus` takes them) to numbers. */
export const GRPC_STATUS: Readonly<Record<string, number>> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/** Compares strings by UTF-16 code units (deterministic, locale-free). */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Sorted own keys of a record (deterministic iteration). */
export function sortedKeys(record: Readonly<Record<string, unknown>> | undefined): string[] {
  return record ? Object.keys(record).sort(compareStrings) : [];
}

/** Drops `undefined` members so the JSON holds only fields that are set. */
export function compact(fields: Record<string, JsonValue | undefined>): EnvoyJson {
  const out: EnvoyJson = {};
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/** Istio protocol names handled by the HTTP connection manager. */
const HTTP_PROTOCOLS = new Set(['HTTP', 'HTTP2', 'GRPC', 'GRPC-WEB', 'HTTP_PROXY']);

/** True for ports Istio serves through an HTTP connection manager (RDS); others get tcp_proxy. */
export function isHttpProtocol(protocol: string): boolean {
  return HTTP_PROTOCOLS.has(protocol.toUpperCase());
}

/** True for ports whose upstream speaks HTTP/2 (Istio: HTTP2, GRPC, GRPC-WEB). */
export function isHttp2Protocol(protocol: string): boolean {
  const p = protocol.toUpperCase();
  return p === 'HTTP2' || p === 'GRPC' || p === 'GRPC-WEB';
}

/**
 * A cluster of the replicas' own gRPC services (rate limits, access logs): HTTP/2 to the given
 * addresses in order, STATIC when every host is an IP, else STRICT_DNS.
 */
export function replicaServiceCluster(
  name: string,
  addresses: readonly { readonly host: string; readonly port: number }[],
): EnvoyJson {
  const ip = (h: string) => /^[\d.]+$/.test(h) || h.includes(':');
  return {
    name,
    type: addresses.every((a) => ip(a.host)) ? 'STATIC' : 'STRICT_DNS',
    connect_timeout: '1s',
    lb_policy: 'ROUND_ROBIN',
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': any(
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        { explicit_http_config: { http2_protocol_options: {} } },
      ),
    },
    load_assignment: {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: addresses.map((a) => ({
            endpoint: { address: { socket_address: { address: a.host, port_value: a.port } } },
          })),
        },
      ],
    },
  };
}

/** `listener` with `fn` applied to each network filter of each of its filter chains (as is without chains). */
export function mapListenerFilters(listener: EnvoyJson, fn: (filter: EnvoyJson) => EnvoyJson): EnvoyJson {
  const chains = listener.filter_chains as EnvoyJson[] | undefined;
  if (!chains) return listener;
  return {
    ...listener,
    filter_chains: chains.map((c) => ({
      ...c,
      filters: ((c.filters as EnvoyJson[] | undefined) ?? []).map(fn),
    })),
  };
}
