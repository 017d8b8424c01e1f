/**
 * Telemetry from the proxies: the replica serves Envoy's access-log service
 * (`envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`, HTTP and TCP entries) and metrics
 * service (`envoy.service.metrics.v3.MetricsService/StreamMetrics`) on its xDS gRPC servers, and
 * turns access-log entries into Istio's standard metrics (istio-metrics.ts, on `/metrics`) and the
 * service graph (service-graph.ts, on `/debug/graph`).
 *
 * ## Who may send
 * - On the CA's mTLS port the stream's client certificate is the reporter's workload identity: the
 *   entries describe traffic of that identity's workload (the reporter side of every label is taken
 *   from it, never from the entry), the node's address must not be another identity's workload, and
 *   the downstream peer certificate of inbound entries is believed (mTLS edges, source principal).
 * - On the plaintext xDS port (or TLS without a client certificate) entries are accepted only with
 *   `--telemetry-plaintext on`; the reporter is then unauthenticated: its principal, the peer
 *   principal and `connection_security_policy` are `unknown`, so a plaintext sender can add traffic
 *   to the graph but never claim mTLS or another identity (SECURITY.md).
 *
 * ## Refusals
 * A message larger than {@link TelemetryIngestOptions.maxMessageBytes}, with more entries than
 * {@link TelemetryIngestOptions.maxEntriesPerMessage}, that does not decode, or whose stream's first
 * message has no identifier, ends the stream with an error naming what is wrong; nothing of that
 * message is recorded (entries are derived first, recorded after).
 *
 * ## Across the cluster, and across clusters
 * Every 2 s a replica publishes its edges' window summaries under `telemetry/graph/<replica id>`
 * (its own lease, as `convergence/`); any replica answers `/debug/graph` by merging its own current
 * windows with the others' summaries. Where federation links clusters over NATS, the other
 * clusters' replicas' windows come from NATS (telemetry-federation.ts) and are merged too. The
 * `istio_*` series are per replica (each exports what its streams reported; Prometheus sums across
 * replicas, as it sums across istio proxies).
 *
 * The messages' decoders are telemetry-wire.ts's; the entries' labels and edges access-log.ts's.
 */
import * as grpc from '@grpc/grpc-js';
import { identityFromPeerCertificate } from '@meridian/ca';
import { lookupMessage } from '@meridian/envoy';
import { Collection, type Lease, type Mirror, type Store } from '@meridian/store';
import type { RegistrySnapshot } from '@meridian/translate';
import { type Meter, metrics } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { EntryDeriver, WorkloadIndex } from './access-log.js';
import { AuthzDryRunMetrics, dryRunVerdicts } from './authz-dry-run.js';
import { IstioMetrics } from './istio-metrics.js';
import { buildGraph, EdgeStore, type EdgeWindow, mergeWindows, type ServiceGraph } from './service-graph.js';
import { GraphExchange } from './telemetry-federation.js';
import { accessLogType, type Msg, peerMetadata, streamMetricsDecoder } from './telemetry-wire.js';

/** Keyspace-relative prefix of the replicas' published edge windows. */
export const TELEMETRY_GRAPH_PREFIX = 'telemetry/graph/';
const ACCESS_LOG_PATH = '/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs';
const METRICS_PATH = '/envoy.service.metrics.v3.MetricsService/StreamMetrics';
/** The most edges a replica publishes (the busiest). */
const MAX_PUBLISHED_EDGES = 5000;

/** Settings of a {@link TelemetryIngest}. */
export interface TelemetryIngestOptions {
  readonly clusterId: string;
  readonly replicaId: string;
  readonly trustDomain: string;
  /** Accept unauthenticated reporters (plaintext port, TLS without client certificate). */
  readonly plaintext: boolean;
  readonly log: Logger;
  /** Window of the graph in seconds (default 60). */
  readonly windowSeconds?: number;
  /** Largest message accepted (default 1 MiB; Envoy flushes at 16 KiB by default). */
  readonly maxMessageBytes?: number;
  /** Most entries in one message (default 10,000). */
  readonly maxEntriesPerMessage?: number;
  /** Most `istio_*` series kept (default 20,000). */
  readonly maxSeries?: number;
  /** Federation's NATS (`--nats-url`, `--nats-creds`): the graph across clusters (telemetry-federation.ts). */
  readonly natsUrls?: readonly string[];
  readonly natsCreds?: string;
  readonly meshId?: string;
  /** Wall clock (ms); tests and the bench may move it. */
  readonly now?: () => number;
  readonly meter?: Meter;
}

/** A refused message: the gRPC code and a message naming the field. */
export class TelemetryRefusedError extends Error {
  override readonly name = 'TelemetryRefusedError';
  constructor(
    readonly code: grpc.status,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** What one replica publishes. */
interface PublishedGraph {
  readonly replicaId: string;
  readonly clusterId: string;
  readonly at: string;
  readonly edges: readonly EdgeWindow[];
}

/** One reporting stream's state. */
interface StreamState {
  readonly identity: { namespace: string; serviceAccount: string } | undefined;
  deriver?: EntryDeriver;
  done: boolean;
}

const str = (x: unknown): string => (typeof x === 'string' ? x : '');

/**
 * Workload names by address: each WorkloadEntry's name (its `spec.address`) and each registration's
 * name; an address named twice keeps the first name in this order.
 */
export function workloadNames(
  objects: readonly {
    readonly kind: string;
    readonly metadata: { readonly name: string };
    readonly spec?: unknown;
  }[],
  registrations: readonly { readonly name: string; readonly address: string }[],
): Map<string, string> {
  const names = new Map<string, string>();
  for (const o of objects) {
    const address =
      o.kind === 'WorkloadEntry' ? str((o.spec as { address?: unknown } | undefined)?.address) : '';
    if (address && !names.has(address)) names.set(address, o.metadata.name);
  }
  for (const r of registrations) if (!names.has(r.address)) names.set(r.address, r.name);
  return names;
}

/** The access-log and metrics receivers of one replica, with its Istio metrics and graph. */
export class TelemetryIngest {
  readonly istio: IstioMetrics;
  /** What dry-run AuthorizationPolicies would have denied, from the entries' RBAC metadata. */
  readonly dryRun = new AuthzDryRunMetrics();
  readonly edges: EdgeStore;
  readonly windowSeconds: number;
  readonly #o: TelemetryIngestOptions;
  readonly #now: () => number;
  readonly #maxBytes: number;
  readonly #maxEntries: number;
  #index = new WorkloadIndex(undefined);
  #registry: RegistrySnapshot | undefined;
  #names: ReadonlyMap<string, string> = new Map();
  #indexStale = false;
  #store: Store | undefined;
  #mirror: Mirror<PublishedGraph> | undefined;
  #exchange: GraphExchange | undefined;
  #lease: Lease | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #entries;
  readonly #refused;
  /** Per reporting node: the last metrics message (time, families). */
  readonly #envoyMetrics = new Map<string, { at: number; families: number }>();

  constructor(options: TelemetryIngestOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.windowSeconds = options.windowSeconds ?? 60;
    this.#maxBytes = options.maxMessageBytes ?? 1024 * 1024;
    this.#maxEntries = options.maxEntriesPerMessage ?? 10_000;
    this.istio = new IstioMetrics(options.maxSeries);
    this.edges = new EdgeStore(this.windowSeconds);
    const meter = options.meter ?? metrics.getMeter('@meridian/server');
    this.#entries = meter.createCounter('meridian_telemetry_entries', {
      description: 'Access-log entries accepted from the proxies, by protocol (http, grpc, tcp).',
    });
    const dropped = meter.createObservableCounter('meridian_telemetry_dropped', {
      description: 'Observations not kept because a cap was reached (istio_* series, graph edges).',
    });
    dropped.addCallback((r) => {
      r.observe(this.istio.dropped, { what: 'series' });
      r.observe(this.edges.dropped, { what: 'edges' });
    });
    this.#refused = meter.createCounter('meridian_telemetry_refused', {
      description:
        'Telemetry messages refused (oversized, undecodable, no identifier, unauthenticated, identity).',
    });
  }

  /**
   * The registry the entries are resolved against, and the workload names by address
   * (WorkloadEntries' and registrations' names). The index is rebuilt lazily, at the next entry.
   */
  setRegistry(registry: RegistrySnapshot | undefined, names: ReadonlyMap<string, string>): void {
    if (registry === this.#registry && names === this.#names) return;
    this.#registry = registry;
    this.#names = names;
    this.#indexStale = true;
  }

  #currentIndex(): WorkloadIndex {
    if (this.#indexStale) {
      this.#index = new WorkloadIndex(this.#registry, this.#names);
      this.#indexStale = false;
    }
    return this.#index;
  }

  /** Starts publishing this replica's edges and reading the cluster's (under its own lease). */
  async attach(store: Store): Promise<void> {
    this.#store = store;
    this.#mirror = await new Collection<PublishedGraph>(store, TELEMETRY_GRAPH_PREFIX).mirror();
    this.#schedule();
    const o = this.#o;
    if ((o.natsUrls?.length ?? 0) > 0 && !this.#stopped)
      this.#exchange = GraphExchange.start({
        natsUrls: o.natsUrls ?? [],
        natsCreds: o.natsCreds ?? '',
        meshId: o.meshId ?? 'default',
        clusterId: o.clusterId,
        replicaId: o.replicaId,
        windowSeconds: this.windowSeconds,
        windows: () => this.edges.windows(this.#now()),
        now: this.#now,
        log: o.log,
      });
  }

  /** Registers the access-log and metrics services on a gRPC server; `secure`: the mTLS port. */
  register(server: grpc.Server, secure: boolean): void {
    const raw = (b: Buffer) => b;
    const empty = () => Buffer.alloc(0);
    const method = (path: string) => ({
      path,
      requestStream: true,
      responseStream: false,
      requestSerialize: raw,
      requestDeserialize: raw,
      responseSerialize: empty,
      responseDeserialize: () => ({}),
    });
    server.addService({ StreamAccessLogs: method(ACCESS_LOG_PATH) } as unknown as grpc.ServiceDefinition, {
      StreamAccessLogs: this.#handler(secure, (s, b) => this.ingestAccessLogs(s, b)),
    });
    server.addService({ StreamMetrics: method(METRICS_PATH) } as unknown as grpc.ServiceDefinition, {
      StreamMetrics: this.#handler(secure, (s, b) => this.ingestMetrics(s, b)),
    });
  }

  #handler(
    secure: boolean,
    ingest: (stream: StreamState, message: Buffer) => void,
  ): grpc.handleClientStreamingCall<Buffer, Buffer> {
    return (call, callback) => {
      let stream: StreamState;
      const fail = (error: unknown) => {
        const e =
          error instanceof TelemetryRefusedError
            ? error
            : new TelemetryRefusedError(grpc.status.INTERNAL, 'internal', (error as Error).message);
        this.#refused.add(1, { reason: e.reason });
        this.#o.log.debug({ reason: e.reason, err: e.message }, 'telemetry stream refused');
        if (stream) stream.done = true;
        callback({ code: e.code, details: e.message });
        call.removeAllListeners('data');
        call.on('data', () => undefined);
      };
      try {
        stream = { identity: this.#authenticate(call, secure), done: false };
      } catch (error) {
        stream = { identity: undefined, done: true };
        fail(error);
        return;
      }
      call.on('data', (message: Buffer) => {
        if (stream.done) return;
        try {
          ingest(stream, message);
        } catch (error) {
          fail(error);
        }
      });
      call.on('end', () => {
        if (stream.done) return;
        stream.done = true;
        callback(null, Buffer.alloc(0));
      });
      call.on('error', () => {
        stream.done = true;
      });
    };
  }

  /** The identity of an mTLS reporter, undefined for an accepted unauthenticated one. */
  #authenticate(
    call: grpc.ServerReadableStream<Buffer, Buffer>,
    secure: boolean,
  ): { namespace: string; serviceAccount: string } | undefined {
    const peer = secure ? call.getAuthContext?.()?.sslPeerCertificate : undefined;
    if (peer?.raw) {
      let id: ReturnType<typeof identityFromPeerCertificate>;
      try {
        id = identityFromPeerCertificate(peer.raw, new Date(this.#now()));
      } catch (error) {
        throw new TelemetryRefusedError(
          grpc.status.UNAUTHENTICATED,
          'unauthenticated',
          `client certificate: ${(error as Error).message}`,
        );
      }
      if (id.trustDomain !== this.#o.trustDomain)
        throw new TelemetryRefusedError(
          grpc.status.UNAUTHENTICATED,
          'unauthenticated',
          `client certificate of trust domain "${id.trustDomain}", not "${this.#o.trustDomain}"`,
        );
      return { namespace: id.namespace, serviceAccount: id.serviceAccount };
    }
    if (!this.#o.plaintext)
      throw new TelemetryRefusedError(
        grpc.status.UNAUTHENTICATED,
        'unauthenticated',
        'telemetry needs the workload certificate (mTLS port); unauthenticated reporters are off (--telemetry-plaintext)',
      );
    return undefined;
  }

  /** A new stream's state (the bench drives {@link ingestAccessLogs} without gRPC). */
  openStream(identity?: { namespace: string; serviceAccount: string }): StreamState {
    return { identity, done: false };
  }

  /** Decodes one `StreamAccessLogsMessage` and records its entries; throws TelemetryRefusedError. */
  ingestAccessLogs(stream: StreamState, message: Uint8Array): void {
    if (message.length > this.#maxBytes)
      throw new TelemetryRefusedError(
        grpc.status.RESOURCE_EXHAUSTED,
        'oversized',
        `StreamAccessLogsMessage of ${message.length} bytes exceeds the limit of ${this.#maxBytes}`,
      );
    let m: Msg;
    try {
      m = accessLogType().decode(message) as unknown as Msg;
    } catch (error) {
      throw new TelemetryRefusedError(
        grpc.status.INVALID_ARGUMENT,
        'undecodable',
        `StreamAccessLogsMessage does not decode: ${(error as Error).message}`,
      );
    }
    const index = this.#currentIndex();
    if (!stream.deriver) stream.deriver = this.#deriver(stream, m?.identifier as Msg, index);
    const http = ((m?.http_logs as Msg)?.log_entry as Msg[] | undefined) ?? [];
    const tcp = ((m?.tcp_logs as Msg)?.log_entry as Msg[] | undefined) ?? [];
    const count = http.length + tcp.length;
    if (count > this.#maxEntries)
      throw new TelemetryRefusedError(
        grpc.status.RESOURCE_EXHAUSTED,
        'too_many_entries',
        `log_entries: ${count} entries exceed the limit of ${this.#maxEntries} per message`,
      );
    const now = this.#now();
    const d = stream.deriver;
    // Derived first, recorded after: a message that fails part-way records nothing.
    const derivedHttp = http.map((e) => d.http(index, e, now));
    const derivedTcp = tcp.map((e) => d.tcp(index, e, now));
    const verdicts = [...http, ...tcp].map((e) => dryRunVerdicts(e?.common_properties as Msg));
    for (const e of derivedHttp) {
      this.istio.recordRequest(
        e.head,
        e.tail,
        e.observation.durationMs,
        e.requestBytes,
        e.responseBytes,
        e.headKey,
        e.tailKey,
      );
      this.edges.observe(e.edgeId, e.edge, e.observation);
    }
    for (const e of derivedTcp) {
      this.istio.recordConnection(
        e.head,
        e.tail,
        e.responseBytes,
        e.requestBytes,
        e.closed ? 1 : 0,
        e.closed ? 1 : 0,
        e.headKey,
        e.tailKey,
      );
      if (e.closed) this.edges.observe(e.edgeId, e.edge, e.observation);
    }
    if (verdicts.some((v) => v.length > 0)) {
      const self = d.self(index);
      const reporter = {
        namespace: self?.namespace ?? stream.identity?.namespace ?? 'unknown',
        workload: self?.name ?? 'unknown',
      };
      for (const v of verdicts) this.dryRun.record(reporter, v);
    }
    if (derivedHttp.length > 0) this.#entries.add(derivedHttp.length, { protocol: 'http' });
    if (derivedTcp.length > 0) this.#entries.add(derivedTcp.length, { protocol: 'tcp' });
  }

  /** The stream's deriver from its first message's identifier (node, log name), identity checked. */
  #deriver(stream: StreamState, identifier: Msg, index: WorkloadIndex): EntryDeriver {
    const node = identifier?.node as Msg;
    const nodeId = str(node?.id);
    if (!identifier || nodeId === '')
      throw new TelemetryRefusedError(
        grpc.status.INVALID_ARGUMENT,
        'no_identifier',
        'identifier.node.id: the first message of a stream must identify the proxy',
      );
    const parts = nodeId.split('~');
    const nodeAddress = parts.length === 4 && parts[1] ? parts[1] : undefined;
    const deriver = new EntryDeriver(
      {
        cluster: this.#o.clusterId,
        trustDomain: this.#o.trustDomain,
        identity: stream.identity,
        nodeAddress,
        logName: str(identifier.log_name),
      },
      peerMetadata,
    );
    const id = stream.identity;
    const self = deriver.self(index);
    if (
      id &&
      self &&
      self.serviceAccount !== '' &&
      (self.namespace !== id.namespace || self.serviceAccount !== id.serviceAccount)
    )
      throw new TelemetryRefusedError(
        grpc.status.PERMISSION_DENIED,
        'identity',
        `identifier.node.id: ${nodeAddress} is the address of workload ${self.namespace}/${self.name} (service account ${self.serviceAccount}), not of the caller ${deriver.reporterPrincipal}`,
      );
    return deriver;
  }

  /** Decodes one `StreamMetricsMessage` (Envoy's stats); kept as a per-proxy summary. */
  ingestMetrics(stream: StreamState, message: Uint8Array): void {
    if (message.length > this.#maxBytes * 4)
      throw new TelemetryRefusedError(
        grpc.status.RESOURCE_EXHAUSTED,
        'oversized',
        `StreamMetricsMessage of ${message.length} bytes exceeds the limit of ${this.#maxBytes * 4}`,
      );
    let m: Msg;
    try {
      m = streamMetricsDecoder()(Buffer.from(message.buffer, message.byteOffset, message.byteLength));
    } catch (error) {
      throw new TelemetryRefusedError(
        grpc.status.INVALID_ARGUMENT,
        'undecodable',
        `StreamMetricsMessage does not decode: ${(error as Error).message}`,
      );
    }
    if (!stream.deriver) {
      const nodeBytes = (m?.identifier as Msg)?.node as Uint8Array | undefined;
      const nodeType = lookupMessage('envoy.config.core.v3.Node');
      let node: Msg;
      try {
        node = nodeBytes && nodeType ? (nodeType.decode(nodeBytes) as unknown as Msg) : undefined;
      } catch (error) {
        throw new TelemetryRefusedError(
          grpc.status.INVALID_ARGUMENT,
          'undecodable',
          `identifier.node: ${(error as Error).message}`,
        );
      }
      stream.deriver = this.#deriver(
        stream,
        node ? { node, log_name: 'metrics' } : undefined,
        this.#currentIndex(),
      );
    }
    const families = ((m?.envoy_metrics as unknown[]) ?? []).length;
    const key = stream.deriver.reporter.nodeAddress ?? 'unknown';
    if (this.#envoyMetrics.size < 10_000 || this.#envoyMetrics.has(key))
      this.#envoyMetrics.set(key, { at: this.#now(), families });
  }

  /** Per reporting node address: when its last stats arrived and how many metric families. */
  envoyMetricsStatus(): Record<string, { at: string; families: number }> {
    const out: Record<string, { at: string; families: number }> = {};
    for (const [k, v] of this.#envoyMetrics)
      out[k] = { at: new Date(v.at).toISOString(), families: v.families };
    return out;
  }

  /** The cluster's graph: this replica's windows now, merged with the other replicas' summaries. */
  graph(): ServiceGraph {
    const now = this.#now();
    const own = this.edges.windows(now);
    const others = (this.#mirror?.list() ?? [])
      .map((kv) => kv.value)
      .filter((g) => g.replicaId !== this.#o.replicaId && now - Date.parse(g.at) < this.windowSeconds * 1000);
    const remote = this.#exchange?.remote() ?? [];
    return buildGraph(mergeWindows([own, ...others.map((g) => g.edges), ...remote]), now, this.windowSeconds);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#publish().finally(() => this.#schedule()), 2000);
    this.#timer.unref();
  }

  #publishedEmpty = false;

  async #publish(): Promise<void> {
    const store = this.#store;
    if (!store) return;
    const edges = this.edges
      .windows(this.#now())
      .sort((a, b) => b.requests - a.requests)
      .slice(0, MAX_PUBLISHED_EDGES);
    if (edges.length === 0 && this.#publishedEmpty) return;
    try {
      this.#lease ??= await store.grantLease(15);
      const body: PublishedGraph = {
        replicaId: this.#o.replicaId,
        clusterId: this.#o.clusterId,
        at: new Date(this.#now()).toISOString(),
        edges,
      };
      await store.put(
        `${TELEMETRY_GRAPH_PREFIX}${this.#o.replicaId}`,
        new TextEncoder().encode(JSON.stringify(body)),
        {
          lease: this.#lease.id,
        },
      );
      this.#publishedEmpty = edges.length === 0;
    } catch (error) {
      this.#lease = undefined;
      this.#o.log.debug({ err: error }, 'could not publish the service graph');
    }
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#exchange?.close();
    await this.#mirror?.close();
    await this.#lease?.revoke().catch(() => this.#lease?.release());
  }
}
