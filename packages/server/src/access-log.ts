/**
 * From Envoy access-log entries (`envoy.data.accesslog.v3.HTTPAccessLogEntry` and
 * `TCPAccessLogEntry`, decoded by protobufjs) to Istio's metric labels and service-graph edges.
 * Pure: the registry index and the reporter are given.
 *
 * ## What is derived, and from where
 * - **reporter**: `source` when the entry's `upstream_cluster` is an outbound cluster
 *   (`outbound|<port>|<subset>|<host>`), `destination` when it is an inbound one (`inbound|...`);
 *   otherwise from the log name the translation gives the logger (`meridian-inbound` /
 *   `meridian-outbound`); else `source`.
 * - **The reporter's own workload** (source of an outbound entry, destination of an inbound one):
 *   the workload the registry has at the node's address (node id `sidecar~<ip>~...`). Its principal
 *   is the SPIFFE id the stream proved with its client certificate (mTLS port); on an
 *   unauthenticated stream it is `unknown`, whatever the entry says.
 * - **The peer**: outbound, the workload at `upstream_remote_address` (ip:port, then ip); inbound,
 *   the workload at `downstream_remote_address` (ip). The registry (WorkloadEntries, registrations,
 *   federated endpoints) gives name (the WorkloadEntry's or registration's name, else the `app`
 *   label), namespace, cluster, `app`/`version` labels and service account. When the registry does
 *   not know the address, Istio's peer metadata in the entry's filter state (`downstream_peer` /
 *   `upstream_peer`, a `google.protobuf.Struct` with `WORKLOAD_NAME`, `NAMESPACE`, `CLUSTER_ID`,
 *   `LABELS`) names the workload; it never supplies a principal.
 * - **source_principal** of an inbound entry: the URI SAN of the downstream peer certificate
 *   (`tls_properties`), then `connection_security_policy` is `mutual_tls` (`none` without a peer
 *   certificate). Only believed on an mTLS-authenticated stream; on an unauthenticated one both are
 *   `unknown`. Outbound entries say `unknown` for `connection_security_policy` (as Istio's source
 *   reports) and for `destination_principal` (Envoy's entry carries no upstream peer certificate).
 * - **destination_service**: the host of an outbound cluster name; inbound, the service of the
 *   registry whose endpoint is the reporter's workload on the inbound port, else the request's
 *   `:authority` when it names a known service. `destination_service_name` is the first label of a
 *   `*.svc.*` host (the host itself otherwise), `destination_service_namespace` the service's.
 * - **request_protocol**: `grpc` when the request's `content-type` starts with `application/grpc` or
 *   a `grpc-status` was logged, else `http`; TCP entries `tcp`. **grpc_response_status**: the logged
 *   `grpc-status` trailer or header. **response_code**: `response.response_code`.
 *   **response_flags**: Envoy's short codes, comma-separated (`-` when none).
 * - Durations: `time_to_last_downstream_tx_byte` (request start to the last response byte), else
 *   `duration`. Sizes: headers plus body bytes of the request and of the response.
 */
import type { RegistrySnapshot } from '@meridian/translate';
import type { IstioLabelValues } from './istio-metrics.js';
import {
  type EdgeKey,
  type EdgeProtocol,
  edgeId,
  type GraphNode,
  nodeOf,
  type Observation,
  type Reporter,
} from './service-graph.js';

/** What the registry says about one workload. */
export interface WorkloadInfo {
  readonly name: string;
  readonly namespace: string;
  readonly cluster: string;
  /** '' when the workload has none. */
  readonly serviceAccount: string;
  readonly app: string;
  readonly version: string;
}

/** A service of the registry, as the labels name it. */
export interface ServiceInfo {
  readonly hostname: string;
  readonly name: string;
  readonly namespace: string;
}

const serviceInfo = (hostname: string, namespace: string): ServiceInfo => {
  const svc = hostname.indexOf('.svc.');
  return { hostname, name: svc > 0 ? hostname.slice(0, hostname.indexOf('.')) : hostname, namespace };
};

/**
 * Workloads and services of a registry snapshot by address: `ip:port` and `ip` (an `ip` shared by
 * workloads of different identities resolves only with the port).
 */
export class WorkloadIndex {
  readonly #byAddress = new Map<string, WorkloadInfo | null>();
  readonly #services = new Map<string, ServiceInfo>();
  /** `ip:port` -> the service whose endpoint it is (inbound destination service). */
  readonly #serviceAt = new Map<string, ServiceInfo | null>();

  /**
   * @param names workload names by address (`ip`): WorkloadEntry and registration names.
   */
  constructor(registry: RegistrySnapshot | undefined, names: ReadonlyMap<string, string> = new Map()) {
    if (!registry) return;
    for (const s of registry.services) this.#services.set(s.hostname, serviceInfo(s.hostname, s.namespace));
    for (const [host, endpoints] of registry.endpoints) {
      const service = this.#services.get(host);
      for (const e of endpoints) {
        const info: WorkloadInfo = {
          name: names.get(e.address) ?? e.labels.app ?? 'unknown',
          namespace: e.namespace ?? service?.namespace ?? 'unknown',
          cluster: e.clusterId || 'unknown',
          serviceAccount: e.serviceAccount,
          app: e.labels.app ?? 'unknown',
          version: e.labels.version ?? 'unknown',
        };
        this.#put(e.address, info);
        for (const port of Object.values(e.ports)) {
          this.#put(`${e.address}:${port}`, info);
          if (service) {
            const at = `${e.address}:${port}`;
            const seen = this.#serviceAt.get(at);
            this.#serviceAt.set(at, seen === undefined || seen?.hostname === host ? service : null);
          }
        }
      }
    }
  }

  #put(key: string, info: WorkloadInfo): void {
    const seen = this.#byAddress.get(key);
    if (seen === undefined) this.#byAddress.set(key, info);
    else if (
      seen !== null &&
      (seen.name !== info.name ||
        seen.namespace !== info.namespace ||
        seen.serviceAccount !== info.serviceAccount)
    )
      this.#byAddress.set(key, null);
  }

  /** The workload at `ip:port`, else at `ip` (undefined when unknown or ambiguous). */
  workload(ip: string, port?: number): WorkloadInfo | undefined {
    if (port !== undefined) {
      const w = this.#byAddress.get(`${ip}:${port}`);
      if (w) return w;
    }
    return this.#byAddress.get(ip) ?? undefined;
  }

  service(hostname: string): ServiceInfo | undefined {
    return this.#services.get(hostname);
  }

  /** The service whose endpoint listens at `ip:port`, when exactly one does. */
  serviceAt(ip: string, port: number): ServiceInfo | undefined {
    return this.#serviceAt.get(`${ip}:${port}`) ?? undefined;
  }
}

/** Who sent the entries: fixed per stream. */
export interface ReporterContext {
  /** The cluster of the replica (proxies report to their own cluster's replicas). */
  readonly cluster: string;
  readonly trustDomain: string;
  /** The identity the stream proved (mTLS); undefined: unauthenticated (plaintext). */
  readonly identity: { readonly namespace: string; readonly serviceAccount: string } | undefined;
  /** The node's address (from its Istio node id), if any. */
  readonly nodeAddress: string | undefined;
  /** The identifier's log name. */
  readonly logName: string;
}

/** An entry's contribution: Istio labels, the graph edge, and the amounts. */
export interface DerivedEntry {
  readonly protocol: EdgeProtocol;
  /**
   * The labels' values in ISTIO_HTTP_LABELS order (TCP: ISTIO_TCP_LABELS order): `head` (who talks
   * to whom, shared by a peer's entries) then `tail`; each with its key (values joined).
   */
  readonly head: IstioLabelValues;
  readonly headKey: string;
  readonly tail: IstioLabelValues;
  readonly tailKey: string;
  readonly edgeId: string;
  readonly edge: EdgeKey;
  readonly observation: Observation;
  readonly requestBytes: number;
  readonly responseBytes: number;
}

// ---- protobufjs message access (decoded messages: unset scalars are defaults, 64-bit may be Long)

type Msg = Record<string, unknown> | null | undefined;

const num = (x: unknown): number =>
  typeof x === 'number'
    ? x
    : x && typeof x === 'object' && 'toNumber' in x
      ? (x as { toNumber(): number }).toNumber()
      : Number(x ?? 0) || 0;

const str = (x: unknown): string => (typeof x === 'string' ? x : '');

function socket(addr: Msg): { ip: string; port: number } | undefined {
  const s = addr?.socket_address as Msg;
  if (!s) return undefined;
  const ip = str(s.address);
  return ip === '' ? undefined : { ip, port: num(s.port_value) };
}

function durationMs(d: Msg): number | undefined {
  if (!d) return undefined;
  return num(d.seconds) * 1000 + num(d.nanos) / 1e6;
}

/** Envoy's response flags and their short codes (Envoy's access-log format documentation). */
const FLAG_CODES: readonly (readonly [string, string])[] = [
  ['failed_local_healthcheck', 'LH'],
  ['no_healthy_upstream', 'UH'],
  ['upstream_request_timeout', 'UT'],
  ['local_reset', 'LR'],
  ['upstream_remote_reset', 'UR'],
  ['upstream_connection_failure', 'UF'],
  ['upstream_connection_termination', 'UC'],
  ['upstream_overflow', 'UO'],
  ['no_route_found', 'NR'],
  ['delay_injected', 'DI'],
  ['fault_injected', 'FI'],
  ['rate_limited', 'RL'],
  ['unauthorized_details', 'UAEX'],
  ['rate_limit_service_error', 'RLSE'],
  ['downstream_connection_termination', 'DC'],
  ['upstream_retry_limit_exceeded', 'URX'],
  ['stream_idle_timeout', 'SI'],
  ['invalid_envoy_request_headers', 'IH'],
  ['downstream_protocol_error', 'DPE'],
  ['upstream_max_stream_duration_reached', 'UMSDR'],
  ['response_from_cache_filter', 'RFCF'],
  ['no_filter_config_found', 'NFCF'],
  ['duration_timeout', 'DT'],
  ['upstream_protocol_error', 'UPE'],
  ['no_cluster_found', 'NC'],
  ['overload_manager', 'OM'],
  ['dns_resolution_failure', 'DF'],
  ['downstream_remote_reset', 'DR'],
];

function responseFlags(flags: Msg): string {
  if (!flags) return '-';
  let out = '';
  for (const [field, code] of FLAG_CODES) {
    const v = flags[field];
    if (v === true || (field === 'unauthorized_details' && v && typeof v === 'object'))
      out += out ? `,${code}` : code;
  }
  return out || '-';
}

/** Istio's peer metadata in the entry's filter state, when it is a google.protobuf.Struct. */
export type PeerMetadataDecoder = (
  any: Msg,
) => { name: string; namespace: string; cluster: string; app: string; version: string } | undefined;

/** The SPIFFE URI SAN of the downstream peer certificate, or ''. */
function peerUri(common: Msg): string {
  const tls = common?.tls_properties as Msg;
  const peerCert = tls?.peer_certificate_properties as Msg;
  for (const san of (peerCert?.subject_alt_name as Msg[] | undefined) ?? []) {
    const uri = str(san?.uri);
    if (uri.startsWith('spiffe://')) return uri;
  }
  return '';
}

/** What the entries of one peer, cluster and reporter share. */
interface Base {
  readonly labels: readonly string[];
  readonly key: string;
  readonly source: GraphNode;
  readonly destination: GraphNode;
  readonly mtls: boolean | undefined;
  readonly policy: string;
  readonly edges: Partial<Record<EdgeProtocol, { edge: EdgeKey; id: string }>>;
}

interface Side {
  workload: WorkloadInfo | undefined;
  principal: string;
}

const UNKNOWN_WORKLOAD: WorkloadInfo = {
  name: 'unknown',
  namespace: 'unknown',
  cluster: 'unknown',
  serviceAccount: '',
  app: 'unknown',
  version: 'unknown',
};

/** Derives entries for one stream: the reporter's workload is resolved once per index. */
export class EntryDeriver {
  #self: { index: WorkloadIndex; workload: WorkloadInfo | undefined } | undefined;

  constructor(
    readonly reporter: ReporterContext,
    readonly peerMetadata: PeerMetadataDecoder = () => undefined,
  ) {}

  /** The principal the reporter proved, or `unknown`. */
  get reporterPrincipal(): string {
    const id = this.reporter.identity;
    return id
      ? `spiffe://${this.reporter.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`
      : 'unknown';
  }

  /** The registry's workload at the node's address (cached per index). */
  self(index: WorkloadIndex): WorkloadInfo | undefined {
    if (this.#self?.index !== index) {
      const ip = this.reporter.nodeAddress;
      this.#self = { index, workload: ip ? index.workload(ip) : undefined };
    }
    return this.#self.workload;
  }

  #reporterOf(common: Msg, logName: string): Reporter {
    const cluster = str(common?.upstream_cluster);
    if (cluster.startsWith('outbound|')) return 'source';
    if (cluster.startsWith('inbound|')) return 'destination';
    return logName.includes('inbound') ? 'destination' : 'source';
  }

  #peer(index: WorkloadIndex, common: Msg, reporter: Reporter): WorkloadInfo | undefined {
    const addr =
      reporter === 'source'
        ? socket(common?.upstream_remote_address as Msg)
        : socket(common?.downstream_remote_address as Msg);
    const known = addr ? index.workload(addr.ip, reporter === 'source' ? addr.port : undefined) : undefined;
    if (known) return known;
    const state = common?.filter_state_objects as Record<string, Msg> | undefined;
    const claimed = state
      ? this.peerMetadata(state[reporter === 'source' ? 'upstream_peer' : 'downstream_peer'])
      : undefined;
    return claimed ? { ...claimed, serviceAccount: '' } : undefined;
  }

  #own(index: WorkloadIndex): WorkloadInfo {
    const w = this.self(index);
    const id = this.reporter.identity;
    if (w) return w;
    return id
      ? { ...UNKNOWN_WORKLOAD, namespace: id.namespace, cluster: this.reporter.cluster }
      : UNKNOWN_WORKLOAD;
  }

  #service(
    index: WorkloadIndex,
    common: Msg,
    reporter: Reporter,
    authority: string,
  ): ServiceInfo | undefined {
    const cluster = str(common?.upstream_cluster);
    const parts = cluster.split('|');
    if (reporter === 'source' && parts[0] === 'outbound' && parts[3])
      return index.service(parts[3]) ?? serviceInfo(parts[3], 'unknown');
    if (reporter === 'destination') {
      const local = socket(common?.downstream_local_address as Msg);
      const ip = this.reporter.nodeAddress ?? local?.ip;
      const port = Number(parts[1]) || local?.port;
      const at = ip && port ? index.serviceAt(ip, port) : undefined;
      if (at) return at;
    }
    if (authority) {
      const host = authority.replace(/:\d+$/, '');
      return index.service(host);
    }
    return undefined;
  }

  #sides(
    index: WorkloadIndex,
    common: Msg,
    reporter: Reporter,
  ): { src: Side; dst: Side; policy: string; mtls: boolean | undefined } {
    const own: Side = { workload: this.#own(index), principal: this.reporterPrincipal };
    const peerWorkload = this.#peer(index, common, reporter);
    if (reporter === 'source')
      return {
        src: own,
        dst: { workload: peerWorkload, principal: 'unknown' },
        policy: 'unknown',
        mtls: undefined,
      };
    // Inbound: the downstream certificate, believed only from an authenticated reporter.
    if (!this.reporter.identity)
      return {
        src: { workload: peerWorkload, principal: 'unknown' },
        dst: own,
        policy: 'unknown',
        mtls: undefined,
      };
    const principal = peerUri(common);
    // A peer the registry does not know still has the namespace its certificate proves.
    const ns = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\//.exec(principal)?.[1];
    const peer = peerWorkload ?? (ns ? { ...UNKNOWN_WORKLOAD, namespace: ns } : undefined);
    return principal
      ? { src: { workload: peer, principal }, dst: own, policy: 'mutual_tls', mtls: true }
      : { src: { workload: peerWorkload, principal: 'unknown' }, dst: own, policy: 'none', mtls: false };
  }

  #cache = new Map<string, Base>();
  #cacheIndex: WorkloadIndex | undefined;

  /**
   * {@link #base}, cached per stream by what it reads (reporter, cluster, addresses, authority, peer
   * certificate) until the index changes; entries carrying filter state are not cached.
   */
  #cachedBase(index: WorkloadIndex, common: Msg, reporter: Reporter, authority: string): Base {
    const state = common?.filter_state_objects as Record<string, unknown> | undefined;
    if (state) for (const _ in state) return this.#base(index, common, reporter, authority);
    if (this.#cacheIndex !== index) {
      this.#cache.clear();
      this.#cacheIndex = index;
    }
    const up = socket(common?.upstream_remote_address as Msg);
    const down = socket(common?.downstream_remote_address as Msg);
    const local = socket(common?.downstream_local_address as Msg);
    const key =
      reporter === 'source'
        ? `s|${str(common?.upstream_cluster)}|${up?.ip}:${up?.port}|${authority}`
        : `d|${str(common?.upstream_cluster)}|${down?.ip}|${local?.ip}:${local?.port}|${authority}|${this.reporter.identity ? peerUri(common) : ''}`;
    let base = this.#cache.get(key);
    if (!base) {
      if (this.#cache.size >= 10_000) this.#cache.clear();
      base = this.#base(index, common, reporter, authority);
      this.#cache.set(key, base);
    }
    return base;
  }

  #base(index: WorkloadIndex, common: Msg, reporter: Reporter, authority: string): Base {
    const { src, dst, policy, mtls } = this.#sides(index, common, reporter);
    const service = this.#service(index, common, reporter, authority);
    const s = src.workload ?? UNKNOWN_WORKLOAD;
    const d = dst.workload ?? UNKNOWN_WORKLOAD;
    const destinationCluster =
      d.cluster !== 'unknown' ? d.cluster : reporter === 'destination' ? this.reporter.cluster : 'unknown';
    const labels = [
      reporter,
      s.name,
      s.namespace,
      src.principal,
      s.app,
      s.version,
      s.cluster,
      d.name,
      d.namespace,
      dst.principal,
      d.app,
      d.version,
      service?.hostname ?? 'unknown',
      service?.name ?? 'unknown',
      service?.namespace ?? 'unknown',
      destinationCluster,
    ];
    const source = nodeOf(src.workload ? 'workload' : 'unknown', s.name, s.namespace, s.cluster);
    const destination = service
      ? nodeOf('service', service.name, service.namespace, destinationCluster)
      : nodeOf(dst.workload ? 'workload' : 'unknown', d.name, d.namespace, destinationCluster);
    return { labels, key: labels.join('\u0000'), source, destination, mtls, policy, edges: {} };
  }

  /** The edge of `base` for `protocol` (made once per base). */
  #edge(base: Base, protocol: EdgeProtocol, reporter: Reporter): { edge: EdgeKey; id: string } {
    let e = base.edges[protocol];
    if (!e) {
      const edge: EdgeKey = {
        source: base.source,
        destination: base.destination,
        cluster: this.reporter.cluster,
        protocol,
        reporter,
      };
      e = { edge, id: edgeId(edge) };
      base.edges[protocol] = e;
    }
    return e;
  }

  /**
   * One HTTP entry (`HTTPAccessLogEntry`), counted in the graph at `nowMs` (when it was received, not
   * its start time: a proxy's clock or a late flush does not move it out of the window).
   */
  http(index: WorkloadIndex, entry: Msg, nowMs: number): DerivedEntry {
    const common = entry?.common_properties as Msg;
    const request = entry?.request as Msg;
    const response = entry?.response as Msg;
    const reporter = this.#reporterOf(common, this.reporter.logName);
    const base = this.#cachedBase(index, common, reporter, str(request?.authority));
    const requestHeaders = request?.request_headers as Record<string, string> | undefined;
    const trailers = response?.response_trailers as Record<string, string> | undefined;
    const responseHeaders = response?.response_headers as Record<string, string> | undefined;
    const grpcStatus = trailers?.['grpc-status'] ?? responseHeaders?.['grpc-status'] ?? '';
    const contentType = requestHeaders?.['content-type'] ?? '';
    const protocol: EdgeProtocol =
      grpcStatus !== '' || contentType.startsWith('application/grpc') ? 'grpc' : 'http';
    const status = num((response?.response_code as Msg)?.value);
    const code = String(status);
    const grpc = protocol === 'grpc' ? grpcStatus : '';
    const flags = responseFlags(common?.response_flags as Msg);
    const duration =
      durationMs(common?.time_to_last_downstream_tx_byte as Msg) ?? durationMs(common?.duration as Msg) ?? 0;
    const { edge, id } = this.#edge(base, protocol, reporter);
    const error = status >= 500 || (grpc !== '' && grpc !== '0');
    return {
      protocol,
      head: base.labels,
      headKey: base.key,
      tail: [protocol, code, grpc, flags, base.policy],
      tailKey: `${protocol}|${code}|${grpc}|${flags}|${base.policy}`,
      edge,
      edgeId: id,
      observation: { atMs: nowMs, error, mtls: base.mtls, durationMs: duration },
      requestBytes: num(request?.request_headers_bytes) + num(request?.request_body_bytes),
      responseBytes: num(response?.response_headers_bytes) + num(response?.response_body_bytes),
    };
  }

  /** One TCP entry (`TCPAccessLogEntry`): bytes are `received` (request) and `sent` (response). */
  tcp(index: WorkloadIndex, entry: Msg, nowMs: number): DerivedEntry & { readonly closed: boolean } {
    const common = entry?.common_properties as Msg;
    const conn = entry?.connection_properties as Msg;
    const reporter = this.#reporterOf(common, this.reporter.logName);
    const base = this.#cachedBase(index, common, reporter, '');
    const flags = responseFlags(common?.response_flags as Msg);
    const { edge, id } = this.#edge(base, 'tcp', reporter);
    return {
      protocol: 'tcp',
      head: base.labels,
      headKey: base.key,
      tail: ['tcp', flags, base.policy],
      tailKey: `tcp|${flags}|${base.policy}`,
      edge,
      edgeId: id,
      observation: {
        atMs: nowMs,
        error: false,
        mtls: base.mtls,
        durationMs: durationMs(common?.duration as Msg) ?? 0,
      },
      requestBytes: num(conn?.received_bytes),
      responseBytes: num(conn?.sent_bytes),
      closed: common?.intermediate_log_entry !== true,
    };
  }
}
