/**
 * Checks of meridiand's setting values (options.ts's table): etcd keyspace segments, hosts others
 * connect to, listen addresses and server URLs. Each returns why a value is not acceptable, or
 * undefined when it is.
 */
import { isIP } from 'node:net';
import { isOff } from './listen-address.js';
import { isUnspecifiedHost } from './membership.js';

/** A key segment of the etcd keyspace (`/meridian/<mesh>/<cluster>/`), as `Keyspace.of` accepts. */
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._:~@=+-]*$/;
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\*)$/;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export const segment = (value: string) =>
  SEGMENT.test(value)
    ? undefined
    : `"${value}" must start with a letter or digit and contain only letters, digits and ._:~@=+-`;

/** An RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, each <= 63. */
const DNS_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * A host others connect to and a certificate can name: an IPv4 or IPv6 address (IPv6 bare or in
 * brackets) or a DNS name; no port, scheme, wildcard, zone index or unspecified address.
 */
export function connectableHost(value: string): string | undefined {
  const bare = /^\[.*\]$/.test(value) ? value.slice(1, -1) : value;
  if (bare === '') return 'expected an IP address or a DNS name, got ""';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value))
    return `expected a host without a scheme (an IP address or a DNS name), got "${value}"`;
  if (bare.includes('%'))
    return `"${value}" has an IPv6 zone index, which a certificate cannot name: give a routable address`;
  if (isIP(bare) !== 0)
    return isUnspecifiedHost(bare)
      ? `"${value}" is the unspecified address, which no one can connect to: give this replica's own address (e.g. the pod IP)`
      : undefined;
  if (/^[^:]+:\d+$/.test(value) || /^\[.*\]:\d+$/.test(value))
    return `expected a host without a port (the ports are those of --ca-address and --xds-address), got "${value}"`;
  if (value.includes('*')) return `a wildcard cannot be connected to, got "${value}"`;
  if (!DNS_NAME.test(value))
    return `expected an IP address or a DNS name (letters, digits, "-" and "." only), got "${value}"`;
  return undefined;
}

/** `host:port` (IPv6 in brackets), port 0..65535; with `off`, also `off` or empty. */
export function listenAddress(allowOff: boolean): (value: string) => string | undefined {
  return (value) => {
    if (allowOff && isOff(value)) return undefined;
    const m = /^(?:(\[[^\]]*\])|([^:]*)):(\d+)$/.exec(value);
    const what = `expected host:port${allowOff ? ' or off' : ''}, got "${value}"`;
    if (!m) return what;
    const host = m[1] ?? m[2] ?? '';
    if (!HOST.test(host)) return what;
    if (Number(m[3]) > 65535) return `port out of range in "${value}"`;
    return undefined;
  };
}

/** A URL with one of `schemes` and a host (`host:port` alone is taken as `defaultScheme`). */
export function serverUrl(schemes: readonly string[]): (value: string) => string | undefined {
  return (value) => {
    const what = `expected ${schemes.map((s) => `${s}://host:port`).join(' or ')}, got "${value}"`;
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `${schemes[0]}://${value}`;
    let url: URL;
    try {
      url = new URL(withScheme);
    } catch {
      return what;
    }
    if (!schemes.includes(url.protocol.slice(0, -1)) || url.hostname === '') return what;
    if (url.pathname !== '/' && url.pathname !== '') return what;
    return undefined;
  };
}
