/**
 * Reusable checks ported from Istio's pkg/config/validation (agent/validation.go, validation.go,
 * pkg/config/labels). Each returns an error message, or undefined when the value is valid; messages
 * follow Istio's wording where Istio has one.
 */
import { isIP } from 'node:net';
import { parseDurationNanos } from './duration.js';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const WILDCARD_DNS1123_LABEL = /^(\*|\*?[a-z0-9]([-a-z0-9]*[a-z0-9])?)$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** DNS-1123 label: lower-case alphanumerics and `-`, at most 63 characters (Istio `IsDNS1123Label`). */
export function isDNS1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}

/** DNS-1123 subdomain: dot-separated labels, at most 253 characters (Kubernetes object names). */
export function isDNS1123Subdomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && s.split('.').every(isDNS1123Label);
}

function isWildcardDNS1123Label(s: string): boolean {
  return s.length <= 63 && WILDCARD_DNS1123_LABEL.test(s);
}

function checkDNS1123Preconditions(name: string): string | undefined {
  if (name.length > 255) return `domain name "${name}" too long (max 255)`;
  if (name.length === 0) return 'empty domain name not allowed';
  return undefined;
}

function validateDNS1123Labels(domain: string, full = domain): string | undefined {
  const parts = domain.split('.');
  const tld = parts[parts.length - 1] ?? '';
  if (/^[-+]?\d+$/.test(tld))
    return `domain name "${full}" invalid (top level domain "${tld}" cannot be all-numeric)`;
  for (let i = 0; i < parts.length; i++) {
    const label = parts[i] ?? '';
    // The last label may be empty, for unambiguous names like `istio.io.`.
    if (i === parts.length - 1 && label === '') return undefined;
    if (!isDNS1123Label(label)) return `domain name "${full}" invalid (label "${label}" invalid)`;
  }
  return undefined;
}

/** A fully-qualified domain name or short name, no wildcard (Istio `ValidateFQDN`). */
export function validateFQDN(fqdn: string): string | undefined {
  return checkDNS1123Preconditions(fqdn) ?? validateDNS1123Labels(fqdn);
}

/**
 * A domain with an optional wildcard first label: `reviews`, `reviews.default.svc.cluster.local`,
 * `*.example.com`, `*` (Istio `ValidateWildcardDomain`).
 */
export function validateWildcardDomain(domain: string): string | undefined {
  const pre = checkDNS1123Preconditions(domain);
  if (pre !== undefined) return pre;
  const dot = domain.indexOf('.');
  const first = dot < 0 ? domain : domain.slice(0, dot);
  if (!isWildcardDNS1123Label(first)) return `domain name "${domain}" invalid (label "${first}" invalid)`;
  if (dot >= 0) return validateDNS1123Labels(domain.slice(dot + 1), domain);
  return undefined;
}

/** An IPv4 or IPv6 address. */
export function isIPAddress(s: string): boolean {
  return isIP(s) !== 0;
}

/** An IP address or CIDR block (Istio `ValidateIPSubnet`). */
export function validateIPSubnet(subnet: string): string | undefined {
  const parts = subnet.split('/');
  if (parts.length === 2) {
    const [ip, bits] = parts as [string, string];
    const family = isIP(ip);
    const max = family === 4 ? 32 : 128;
    if (family === 0 || !/^\d{1,3}$/.test(bits) || Number(bits) > max)
      return `${subnet} is not a valid CIDR block`;
    return undefined;
  }
  return isIPAddress(subnet) ? undefined : `${subnet} is not a valid IP`;
}

/** A port number 1..65535 (Istio `ValidatePort`). */
export function validatePort(port: number): string | undefined {
  return port >= 1 && port <= 65535 ? undefined : `port number ${port} must be in the range 1..65535`;
}

/** A port name: DNS-1123 label (Istio `ValidatePortName`). */
export function validatePortName(name: string): string | undefined {
  return isDNS1123Label(name) ? undefined : `invalid port name: ${name}`;
}

/** Istio's known protocol names (case-insensitive), as `protocol.Parse` accepts them. */
const PROTOCOLS = new Set([
  'tcp',
  'udp',
  'grpc',
  'grpc-web',
  'http',
  'http_proxy',
  'http2',
  'https',
  'tls',
  'mongo',
  'redis',
  'mysql',
  'thrift',
]);

/** A port protocol Istio knows; empty means protocol sniffing (Istio `ValidateProtocol`). */
export function validateProtocol(protocol: string): string | undefined {
  if (protocol === '' || PROTOCOLS.has(protocol.toLowerCase())) return undefined;
  return `unsupported protocol: ${protocol}`;
}

/** True when a protocol is HTTP-family (HTTP, HTTP2, GRPC, GRPC-WEB, HTTP_PROXY). */
export function isHTTPProtocol(protocol: string): boolean {
  return ['http', 'http2', 'grpc', 'grpc-web', 'http_proxy'].includes(protocol.toLowerCase());
}

/** True when a protocol is TLS-family (HTTPS, TLS). */
export function isTLSProtocol(protocol: string): boolean {
  return ['https', 'tls'].includes(protocol.toLowerCase());
}

/** A Kubernetes label key: optional DNS-1123 subdomain prefix and `/`, then a qualified name. */
export function validateLabelKey(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  const nameOk = name.length > 0 && name.length <= 63 && QUALIFIED_NAME.test(name);
  const prefixOk = prefix === undefined || isDNS1123Subdomain(prefix);
  return nameOk && prefixOk ? undefined : `invalid label key: "${key}"`;
}

/** A Kubernetes label value: empty, or at most 63 alphanumerics, `-`, `_`, `.` starting and ending alphanumeric. */
export function validateLabelValue(value: string): string | undefined {
  return value.length <= 63 && LABEL_VALUE.test(value) ? undefined : `invalid label value: "${value}"`;
}

/**
 * A duration Istio accepts for timeouts and intervals: at least 1ms, millisecond precision
 * (Istio `agent.ValidateDuration`).
 */
export function validateDuration(text: string): string | undefined {
  const ns = parseDurationNanos(text);
  if (ns === undefined) return `invalid duration "${text}"`;
  if (ns < 1e6) return 'duration must be greater than 1ms';
  if (ns % 1e6 !== 0) return 'only durations to ms precision are supported';
  return undefined;
}

/** An integer percentage 0..100 (Istio `ValidatePercent`). */
export function validatePercent(v: number): string | undefined {
  return v < 0 || v > 100 ? `percentage ${v} is not in range 0..100` : undefined;
}

/** A fractional percentage: 0, or in [0.0001, 100] (Istio `validatePercentage`). */
export function validatePercentage(v: number): string | undefined {
  if (v < 0 || v > 100 || (v > 0 && v < 0.0001))
    return `percentage ${v} is neither 0.0, nor in range [0.0001, 100.0]`;
  return undefined;
}

/** An RE2-style regular expression, approximated by JavaScript's syntax with the `u` flag. */
export function validateRegex(re: string, where: string): string | undefined {
  if (re === '') return `"${where}": regex string match should not be empty`;
  if (re.length > 1024) return `"${where}": regex is too large, max length allowed is 1024`;
  const suffix = 'Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)';
  // RE2 (what Envoy runs) has no lookaround and no backreferences; JavaScript would accept them.
  if (/\(\?<?[=!]/.test(re)) return `"${where}": lookaround is not supported; ${suffix}`;
  if (/(^|[^\\])(\\\\)*\\[1-9]/.test(re)) return `"${where}": backreferences are not supported; ${suffix}`;
  // Translate RE2-only syntax to its JavaScript equivalent before the syntax check.
  const js = re
    .replace(/\(\?P</g, '(?<')
    .replace(/\(\?[imsU-]+\)/g, '')
    .replace(/\(\?[imsU-]+:/g, '(?:')
    .replace(/\\[Az]/g, '')
    .replace(/\\[pP][A-Z]/g, '.')
    .replace(/\[\[:[a-z]+:\]\]/g, '[a]')
    .replace(/\[:[a-z]+:\]/g, 'a');
  try {
    new RegExp(js);
    return undefined;
  } catch (e) {
    const reason = e instanceof Error ? e.message.replace(js, re) : String(e);
    return `"${where}": ${reason}; ${suffix}`;
  }
}

/** An absolute Unix socket path or abstract socket `@name` (Istio `ValidateUnixAddress`). */
export function validateUnixAddress(addr: string): string | undefined {
  if (addr.length === 0) return 'unix address must not be empty';
  if (addr.startsWith('@')) return undefined;
  if (!addr.startsWith('/') || addr.endsWith('/')) return `${addr} is not an absolute path to a file`;
  return undefined;
}

/** Does wildcard-aware host `a` match host `b` either way (Istio `host.Name.Matches`)? */
export function hostsMatch(a: string, b: string): boolean {
  if (a === b) return true;
  const aw = a.startsWith('*');
  const bw = b.startsWith('*');
  if (aw && b.endsWith(a.slice(1))) return true;
  if (bw && a.endsWith(b.slice(1))) return true;
  return false;
}

/** Is host `a` contained in host `b` (Istio `host.Name.SubsetOf`)? */
export function hostSubsetOf(a: string, b: string): boolean {
  if (b === '*') return true;
  if (b.startsWith('*'))
    return a.endsWith(b.slice(1)) || (a.startsWith('*') && a.slice(1).endsWith(b.slice(1)));
  return a === b;
}

/** gRPC status names Istio accepts for fault aborts (`grpc.SupportedGRPCStatus`). */
export const GRPC_STATUS_NAMES: ReadonlySet<string> = new Set([
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
]);

/** Envoy `x-envoy-retry-on` / `x-envoy-retry-grpc-on` policies Istio accepts in `retryOn`. */
export const RETRY_ON_POLICIES: ReadonlySet<string> = new Set([
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'envoy-ratelimited',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'http3-post-connect-failure',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
]);

/** HTTP methods accepted in CORS `allowMethods`. */
export const HTTP_METHODS: ReadonlySet<string> = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
]);
