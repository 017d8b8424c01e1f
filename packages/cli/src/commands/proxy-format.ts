// Pure formatting for `meridian proxy-status` and `meridian proxy-config`: istioctl's tables
// (istio/istio istioctl/pkg/writer/pilot/status.go and istioctl/pkg/writer/envoy/configdump/*.go),
// computed from the replicas' `/debug/syncz` and `/debug/config_dump` answers.
import { X509Certificate } from 'node:crypto';
import { unifiedDiff } from '../diff.js';

/** A JSON object as the replicas send it (Envoy JSON: proto field names, enums as names). */
export type Json = { readonly [key: string]: unknown };

/** One type's sync status in `/debug/syncz` (xds `TypeSyncStatus`). */
export interface TypeSync {
  readonly state: 'NOT_SENT' | 'SYNCED' | 'STALE' | 'ERROR';
  readonly lastPushAgeMs?: number;
  readonly lastAckAgeMs?: number;
  readonly error?: string;
}

/** One proxy in `/debug/syncz` (xds `ProxySyncStatus`), the fields used here. */
export interface ProxySync {
  readonly proxyId: string;
  readonly name?: string;
  readonly istioVersion?: string;
  readonly connectionId: string;
  readonly namespace: string;
  readonly clusterId: string;
  readonly types: Readonly<Record<string, TypeSync>>;
}

/** A proxy's status as seen by one replica. */
export interface ReplicaProxySync {
  readonly replica: string;
  readonly status: ProxySync;
}

/** One resource of a config dump. */
export interface DumpedResource {
  readonly name: string;
  readonly version: string;
  readonly resource: Json | undefined;
}

/** A config dump: connection id -> short type -> resources. */
export type ConfigDump = Readonly<Record<string, Readonly<Record<string, readonly DumpedResource[]>>>>;

/**
 * Kubernetes' `duration.HumanDuration` (k8s.io/apimachinery/pkg/util/duration), which istioctl uses
 * for the age in `SYNCED (5m2s)`.
 */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const dy = Math.floor(hours / 24) % 365;
    const y = Math.floor(hours / 24 / 365);
    return dy === 0 ? `${y}y` : `${y}y${dy}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

/** A table as Go's tabwriter prints istioctl's (min width 0, padding 5, spaces), lines trimmed. */
export function tabwrite(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) for (let i = 0; i < r.length; i++) widths[i] = Math.max(widths[i] ?? 0, r[i]!.length);
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 5)))
      .join('')
      .trimEnd(),
  );
}

/** istioctl's cell of one type: `SYNCED (3s)`, `STALE (1m2s)`, `ERROR (3s)`, `NOT SENT`, `IGNORED`. */
export function typeCell(t: TypeSync | undefined): string {
  if (!t) return 'IGNORED';
  if (t.state === 'NOT_SENT') return 'NOT SENT';
  return t.lastPushAgeMs === undefined ? t.state : `${t.state} (${humanDuration(t.lastPushAgeMs)})`;
}

/** Time since the proxy's latest ACK of any type (`never` when it has ACKed nothing on this stream). */
export function lastAckCell(s: ProxySync): string {
  const ages = Object.values(s.types)
    .map((t) => t.lastAckAgeMs)
    .filter((a): a is number => a !== undefined);
  return ages.length === 0 ? 'never' : humanDuration(Math.min(...ages));
}

/** istioctl's core columns in its order, then any other type the proxies hold (SDS). */
const CORE_TYPES = ['cds', 'lds', 'eds', 'rds'];

/**
 * The `meridian proxy-status` table: istioctl's columns (NAME, CLUSTER, CDS, LDS, EDS, RDS, then
 * other types such as SDS when any proxy watches them, ISTIOD (the replica), VERSION) plus LAST ACK,
 * rows sorted by name, then replica.
 */
export function statusTable(rows: readonly ReplicaProxySync[]): string[] {
  const extra = [...new Set(rows.flatMap((r) => Object.keys(r.status.types)))]
    .filter((t) => !CORE_TYPES.includes(t))
    .sort();
  const types = [...CORE_TYPES, ...extra];
  const sorted = [...rows].sort(
    (a, b) =>
      cmp(displayName(a.status), displayName(b.status)) ||
      cmp(a.replica, b.replica) ||
      cmp(a.status.connectionId, b.status.connectionId),
  );
  return tabwrite([
    ['NAME', 'CLUSTER', ...types.map((t) => t.toUpperCase()), 'ISTIOD', 'VERSION', 'LAST ACK'],
    ...sorted.map(({ replica, status: s }) => [
      displayName(s),
      s.clusterId,
      ...types.map((t) => typeCell(s.types[t])),
      replica,
      s.istioVersion ?? '',
      lastAckCell(s),
    ]),
  ]);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** istioctl's proxy name (`<pod>.<namespace>`), or the node id. */
export function displayName(s: ProxySync): string {
  return s.name ?? s.proxyId;
}

/** Whether `query` names this proxy: its node id or its `<pod>.<namespace>` name. */
export function matchesProxy(s: ProxySync, query: string): boolean {
  return s.proxyId === query || s.name === query;
}

const TYPE_TITLES: readonly [string, string][] = [
  ['cds', 'Clusters'],
  ['lds', 'Listeners'],
  ['rds', 'Routes'],
  ['eds', 'Endpoints'],
  ['sds', 'Secrets'],
];

/** A type's resources as the diff compares them: the list sorted by name, in indented JSON. */
function dumpText(list: readonly DumpedResource[] | undefined): string {
  const items = [...(list ?? [])]
    .sort((a, b) => cmp(a.name, b.name))
    .map((r) => r.resource ?? { name: r.name, version: r.version, resource: '(no longer held)' });
  return JSON.stringify(items, null, 4);
}

/**
 * `meridian proxy-status <proxy>`: per type the proxy watches, whether what the replica sent it
 * matches what the replica's current snapshot holds for it (istioctl's "Clusters Match" /
 * "Clusters Don't Match" and a unified diff, current first, as istioctl puts istiod first); a type
 * whose last response the proxy NACKed or has not ACKed yet says so.
 */
export function syncDiff(
  replica: string,
  status: ProxySync,
  sent: Readonly<Record<string, readonly DumpedResource[]>>,
  current: Readonly<Record<string, readonly DumpedResource[]>>,
): string[] {
  const out: string[] = [];
  for (const [type, title] of TYPE_TITLES) {
    const t = status.types[type];
    if (!t) continue;
    const diff = unifiedDiff(
      `Replica ${replica} ${title} (current)`,
      `Proxy ${displayName(status)} ${title} (sent)`,
      dumpText(current[type]),
      dumpText(sent[type]),
    );
    const note =
      t.state === 'ERROR'
        ? ` (the proxy NACKed the last response: ${t.error ?? 'no message'}; it keeps what it had before)`
        : t.state === 'STALE'
          ? ' (sent, not ACKed yet)'
          : t.state === 'NOT_SENT'
            ? ' (nothing sent yet)'
            : '';
    if (diff === '') out.push(`${title} Match${note}`);
    else out.push(`${title} Don't Match${note}`, diff.trimEnd());
  }
  return out;
}

// ---- proxy-config tables (istioctl/pkg/writer/envoy/configdump) ----

function obj(v: unknown): Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {};
}
function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
function str(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

/** istioctl's DESTINATION RULE / VIRTUAL SERVICE cell: `name.namespace` from Istio's config metadata. */
function describeManagement(metadata: unknown): string {
  const path = str(obj(obj(obj(metadata).filter_metadata).istio).config);
  if (!path) return '';
  if (path.startsWith('/apis/networking.istio.io/')) {
    const pieces = path.split('/');
    return pieces.length === 8 ? `${pieces[7]}.${pieces[5]}` : '';
  }
  return '<unknown>';
}

/** `istioctl proxy-config cluster`: SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE. */
export function clusterTable(resources: readonly Json[]): string[] {
  const rows = resources.map((c) => {
    const name = str(c.name);
    const parts = name.split('|');
    const type = str(c.type) || (c.eds_cluster_config ? 'EDS' : c.cluster_type ? 'CLUSTER_TYPE' : 'STATIC');
    if (parts.length > 3) {
      const [direction, port, subset, fqdn] = parts as [string, string, string, string];
      return {
        key: [fqdn, subset, port.padStart(6, '0'), direction],
        cells: [fqdn, port, subset || '-', direction, type, describeManagement(c.metadata)],
      };
    }
    return { key: [name, '', '', ''], cells: [name, '-', '-', '-', type, describeManagement(c.metadata)] };
  });
  rows.sort((a, b) => cmp(a.key.join('\0'), b.key.join('\0')));
  return tabwrite([
    ['SERVICE FQDN', 'PORT', 'SUBSET', 'DIRECTION', 'TYPE', 'DESTINATION RULE'],
    ...rows.map((r) => r.cells),
  ]);
}

function listenerAddress(l: Json): { address: string; port: number } {
  const sock = obj(obj(l.address).socket_address);
  return { address: str(sock.address), port: Number(sock.port_value ?? 0) };
}

const HTTP_FILTER = 'envoy.filters.network.http_connection_manager';
const TCP_FILTER = 'envoy.filters.network.tcp_proxy';

function filterChains(l: Json): Json[] {
  const chains = arr(l.filter_chains).map(obj);
  if (l.default_filter_chain) chains.push(obj(l.default_filter_chain));
  return chains;
}

function describeMatch(match: Json): string {
  const conds: string[] = [];
  if (str(match.prefix)) conds.push(`${str(match.prefix)}*`);
  if (str(match.path_separated_prefix)) conds.push(`PathPrefix:${str(match.path_separated_prefix)}`);
  if (str(match.path)) conds.push(str(match.path));
  const regex = str(obj(match.safe_regex).regex);
  if (regex) conds.push(`regex ${regex}`);
  return conds.join(' ');
}

function describeRouteConfig(route: Json): string {
  const hosts = arr(route.virtual_hosts).map(obj);
  if (hosts.length === 1) {
    const vh = hosts[0]!;
    const routes = arr(vh.routes).map(obj);
    const domains = arr(vh.domains);
    const cluster = str(obj(routes[0]?.route).cluster);
    if (
      domains.length === 1 &&
      domains[0] === '*' &&
      routes.length === 1 &&
      str(obj(routes[0]!.match).prefix) === '/' &&
      cluster
    )
      return cluster.includes('Cluster') ? cluster : `Cluster: ${cluster}`;
  }
  const described = hosts.map((vh) => {
    const domains = arr(vh.domains).map(str);
    const routes = arr(vh.routes)
      .map((r) => describeMatch(obj(obj(r).match)))
      .join(', ');
    return domains.length === 1 && domains[0] === '*' ? routes : `${domains.join('/')} ${routes}`;
  });
  return `Inline Route: ${described.join('; ')}`;
}

/** istioctl's DESTINATION of a filter chain (`getFilterType`). */
function filterDestination(filters: readonly unknown[]): string {
  for (const f of filters.map(obj)) {
    const typed = obj(f.typed_config);
    if (str(f.name) === HTTP_FILTER) {
      if (typed.route_config) return describeRouteConfig(obj(typed.route_config));
      const rds = str(obj(typed.rds).route_config_name);
      return rds ? `Route: ${rds}` : 'HTTP';
    }
    if (str(f.name) === TCP_FILTER) {
      const cluster = str(typed.cluster);
      if (cluster !== 'BlackHoleCluster')
        return cluster.includes('Cluster') ? cluster : `Cluster: ${cluster}`;
    }
  }
  return 'Non-HTTP/Non-TCP';
}

const PROTOCOL_DESCRIPTIONS: readonly [string, readonly string[]][] = [
  ['App: HTTP TLS', ['http/1.0', 'http/1.1', 'h2c', 'istio-http/1.0', 'istio-http/1.1', 'istio-h2']],
  ['App: Istio HTTP Plain', ['istio', 'istio-http/1.0', 'istio-http/1.1', 'istio-h2']],
  ['App: TCP TLS', ['istio-peer-exchange', 'istio']],
  ['App: HTTP', ['http/1.0', 'http/1.1', 'h2c']],
];

/** istioctl's MATCH of a filter chain (`getMatches`). */
function chainMatch(match: Json): string {
  const descrs: string[] = [];
  const sni = arr(match.server_names).map(str);
  if (sni.length > 0) descrs.push(`SNI: ${sni.join(',')}`);
  if (str(match.transport_protocol)) descrs.push(`Trans: ${str(match.transport_protocol)}`);
  const alpn = arr(match.application_protocols).map(str);
  if (alpn.length > 0) {
    const known = PROTOCOL_DESCRIPTIONS.find(
      ([, p]) => p.length === alpn.length && p.every((x, i) => x === alpn[i]),
    );
    descrs.push(known ? known[0] : `App: ${alpn.join(',')}`);
  }
  const port = match.destination_port !== undefined ? `:${str(match.destination_port)}` : '';
  const prefixes = arr(match.prefix_ranges).map(
    (p) => `${str(obj(p).address_prefix)}/${str(obj(p).prefix_len)}`,
  );
  if (prefixes.length > 0) descrs.push(`Addr: ${prefixes.join(',')}${port}`);
  else if (port) descrs.push(`Addr: *${port}`);
  return descrs.length > 0 ? descrs.join('; ') : 'ALL';
}

/** `istioctl proxy-config listener`: ADDRESSES, PORT, MATCH, DESTINATION, one row per filter chain. */
export function listenerTable(resources: readonly Json[]): string[] {
  const sorted = [...resources].sort((a, b) => {
    const x = listenerAddress(a);
    const y = listenerAddress(b);
    return x.port - y.port || cmp(x.address, y.address) || cmp(str(a.name), str(b.name));
  });
  const rows: string[][] = [];
  for (const l of sorted) {
    const { address, port } = listenerAddress(l);
    const addresses = [
      address,
      ...arr(l.additional_addresses).map((a) => str(obj(obj(obj(a).address).socket_address).address)),
    ].join(',');
    const chains = filterChains(l)
      .map((c) => ({
        match: chainMatch(obj(c.filter_chain_match)),
        destination: filterDestination(arr(c.filters)),
      }))
      .sort((a, b) => cmp(b.destination, a.destination));
    for (const c of chains) rows.push([addresses, String(port), c.match, c.destination]);
    if (chains.length === 0) rows.push([addresses, String(port), 'ALL', 'Non-HTTP/Non-TCP']);
  }
  return tabwrite([['ADDRESSES', 'PORT', 'MATCH', 'DESTINATION'], ...rows]);
}

/** istioctl's DOMAINS cell: one domain, or the shortest forms without port, at most 2 and a count. */
function describeDomains(domains: readonly string[]): string {
  if (domains.length === 0) return '';
  if (domains.length === 1) return domains[0]!;
  const withoutPort = domains.filter((d) => !d.includes(':') || (d.split(':').length > 3 && d.endsWith(']')));
  const unique = new Set(withoutPort);
  const shortened = withoutPort.filter((h) => {
    const full = h.endsWith('.svc.cluster.local') ? h.slice(0, -'.svc.cluster.local'.length) : h;
    const partial = h.endsWith('.svc') ? h.slice(0, -'.svc'.length) : h;
    return !((full !== h && unique.has(full)) || (partial !== h && unique.has(partial)));
  });
  return shortened.length > 2
    ? `${shortened.slice(0, 2).join(', ')} + ${shortened.length - 2} more...`
    : shortened.join(', ');
}

/** `istioctl proxy-config route`: NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE. */
export function routeTable(resources: readonly Json[]): string[] {
  const rows: string[][] = [];
  for (const r of [...resources].sort((a, b) => cmp(str(a.name), str(b.name)))) {
    for (const vh of arr(r.virtual_hosts).map(obj)) {
      const routes = arr(vh.routes).map(obj);
      const domains = describeDomains(arr(vh.domains).map(str));
      for (const route of routes) {
        // istioctl skips passthrough routes (to PassthroughCluster).
        if (str(obj(route.route).cluster) === 'PassthroughCluster') continue;
        rows.push([
          str(r.name),
          str(vh.name),
          domains,
          describeMatch(obj(route.match)),
          describeManagement(route.metadata),
        ]);
      }
      if (routes.length === 0) rows.push([str(r.name), str(vh.name), domains, '/*', '404']);
    }
  }
  return tabwrite([['NAME', 'VHOST NAME', 'DOMAINS', 'MATCH', 'VIRTUAL SERVICE'], ...rows]);
}

/** `istioctl proxy-config endpoint`: NAME (address:port), STATUS, LOCALITY, CLUSTER. */
export function endpointTable(resources: readonly Json[]): string[] {
  const rows: string[][] = [];
  for (const cla of [...resources].sort((a, b) => cmp(str(a.cluster_name), str(b.cluster_name)))) {
    for (const group of arr(cla.endpoints).map(obj)) {
      const loc = obj(group.locality);
      const locality = [str(loc.region), str(loc.zone), str(loc.sub_zone)].filter((x) => x).join('/');
      for (const ep of arr(group.lb_endpoints).map(obj)) {
        const sock = obj(obj(obj(ep.endpoint).address).socket_address);
        rows.push([
          `${str(sock.address)}:${str(sock.port_value)}`,
          str(ep.health_status) || 'UNKNOWN',
          locality,
          str(cla.cluster_name),
        ]);
      }
    }
  }
  return tabwrite([['NAME', 'STATUS', 'LOCALITY', 'CLUSTER'], ...rows]);
}

/** PEM or base64 bytes of an Envoy DataSource (`inline_bytes` / `inline_string`). */
function dataSource(v: unknown): string | undefined {
  const d = obj(v);
  if (typeof d.inline_string === 'string') return d.inline_string;
  if (typeof d.inline_bytes === 'string') return Buffer.from(d.inline_bytes, 'base64').toString('utf8');
  return undefined;
}

function firstCertificate(pem: string | undefined): X509Certificate | undefined {
  const m = pem ? /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem) : null;
  if (!m) return undefined;
  try {
    return new X509Certificate(m[0]);
  } catch {
    return undefined;
  }
}

/** Go's RFC 3339 rendering of a certificate date (istioctl prints `time.Time` in UTC). */
function rfc3339(date: string): string {
  return new Date(date).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * `istioctl proxy-config secret`: RESOURCE NAME, TYPE (`Cert Chain` or `CA`), STATUS, VALID CERT,
 * SERIAL NUMBER, NOT AFTER, NOT BEFORE, read from the certificates (keys are redacted).
 */
export function secretTable(resources: readonly Json[], now = new Date()): string[] {
  const rows: string[][] = [];
  for (const s of [...resources].sort((a, b) => cmp(str(a.name), str(b.name)))) {
    const chain = dataSource(obj(s.tls_certificate).certificate_chain);
    const ca = dataSource(obj(s.validation_context).trusted_ca);
    const entries: [string, string | undefined][] = [];
    if (chain !== undefined) entries.push(['Cert Chain', chain]);
    if (ca !== undefined) entries.push(['CA', ca]);
    for (const [type, pem] of entries) {
      const cert = firstCertificate(pem);
      const valid = cert ? new Date(cert.validFrom) <= now && now <= new Date(cert.validTo) : false;
      rows.push([
        str(s.name),
        type,
        'ACTIVE',
        String(valid),
        cert ? BigInt(`0x${cert.serialNumber}`).toString(16) : '',
        cert ? rfc3339(cert.validTo) : '',
        cert ? rfc3339(cert.validFrom) : '',
      ]);
    }
  }
  return tabwrite([
    ['RESOURCE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE'],
    ...rows,
  ]);
}
