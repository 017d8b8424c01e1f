import {
  ServerCredentials as Credentials,
  type handleBidiStreamingCall,
  Server,
  type ServerCredentials,
  type ServerDuplexStream,
  type ServiceDefinition,
  status as Status,
} from '@grpc/grpc-js';
import type { ResourceTypeUrl } from '@meridian/envoy';
import pino, { type Logger } from 'pino';
import {
  Connection,
  type ConnectionHost,
  changeAffects,
  type StreamLimits,
  type Variant,
} from './connection.js';
import { XdsMetrics } from './metrics.js';
import { type DebounceOptions, Debouncer, PushQueue } from './push-queue.js';
import {
  connectionConfigDump,
  connectionCurrentConfig,
  connectionStatus,
  type DumpedResource,
  debugHandler,
  type ProxySyncStatus,
  proxyName,
} from './status.js';
import {
  type ChangeEvent,
  type ProxyContext,
  ProxyTranslationError,
  type ResourceMap,
  type XdsSnapshot,
} from './types.js';

const ADS = 'envoy.service.discovery.v3.AggregatedDiscoveryService';

/** The proxy's Istio version (node metadata `ISTIO_VERSION`), the `version` label of `pilot_xds`. */
function istioVersionOf(conn: Connection): string {
  const v = conn.ctx?.proxy.metadata.ISTIO_VERSION;
  return typeof v === 'string' ? v : '';
}
const passThrough = (b: Buffer): Buffer => b;

/**
 * The ADS service with pass-through (de)serializers: requests reach the stream loop as bytes (decoded
 * there, so garbage is a logged, counted error and not a grpc-js INTERNAL), responses are written as
 * bytes already framed from the resource cache.
 */
export const adsServiceDefinition: ServiceDefinition = {
  StreamAggregatedResources: {
    path: `/${ADS}/StreamAggregatedResources`,
    requestStream: true,
    responseStream: true,
    requestSerialize: passThrough,
    requestDeserialize: passThrough,
    responseSerialize: passThrough,
    responseDeserialize: passThrough,
  },
  DeltaAggregatedResources: {
    path: `/${ADS}/DeltaAggregatedResources`,
    requestStream: true,
    responseStream: true,
    requestSerialize: passThrough,
    requestDeserialize: passThrough,
    responseSerialize: passThrough,
    responseDeserialize: passThrough,
  },
};

/** Settings of an XdsServer; every field has a default. */
export interface XdsServerOptions {
  /** Default: {@link xdsLogger} at level `info` (the replica passes its own, at its `--log-level`). */
  readonly logger?: Logger;
  /** Change debouncing (default 100 ms quiet, 1 s max). */
  readonly debounce?: DebounceOptions;
  /** Pushes in flight at once (istiod's PILOT_PUSH_THROTTLE). Default 100. */
  readonly pushConcurrency?: number;
  /** Largest request accepted by the stream loop. Default 4 MiB. */
  readonly maxRequestBytes?: number;
  /** grpc-js' own message limits (receive: larger messages are cut by grpc-js before the loop sees
   * them; send). Default 16 MiB receive, 64 MiB send. */
  readonly maxReceiveMessageBytes?: number;
  readonly maxSendMessageBytes?: number;
  /** Per-stream write buffer bound. Default 4 MiB. */
  readonly maxBufferedBytes?: number;
  /** A stream that cannot drain its buffer for this long is closed. Default 30 s. */
  readonly stuckTimeoutMs?: number;
  /** HTTP/2 keepalive pings. Default every 30 s, 10 s timeout. */
  readonly keepaliveTimeMs?: number;
  readonly keepaliveTimeoutMs?: number;
  /** Streams accepted per HTTP/2 connection. Default 1000. */
  readonly maxConcurrentStreams?: number;
}

/** The identity the TLS peer certificate proves: its first `URI:spiffe://` SAN. */
export function identityOf(call: ServerDuplexStream<Buffer, Buffer>): string | undefined {
  const cert = call.getAuthContext().sslPeerCertificate;
  const san = cert?.subjectaltname;
  if (!san) return undefined;
  for (const part of san.split(',')) {
    const p = part.trim();
    if (p.startsWith('URI:spiffe://')) return p.slice(4);
  }
  return undefined;
}

/**
 * The Aggregated Discovery Service: SotW and Delta streams over one snapshot, pushed through
 * debounce -> per-proxy filter -> merge queue with a concurrency cap.
 *
 * Wiring (the replica): `const xds = new XdsServer(opts); xds.register(grpcServer)` (or `listen()`),
 * then `xds.update(snapshot, change)` whenever translation produced a new snapshot; mount
 * `xds.debugHandler()` on the admin HTTP server; `await xds.drain()` on shutdown.
 */
export class XdsServer {
  readonly log: Logger;
  readonly metrics = new XdsMetrics();
  readonly #connections = new Set<Connection>();
  readonly #queue: PushQueue<Connection>;
  readonly #debouncer: Debouncer;
  readonly #limits: StreamLimits;
  readonly #options: XdsServerOptions;
  #snapshot: XdsSnapshot | undefined;
  readonly #syncedListeners = new Set<(conn: Connection, version: string) => void>();
  #grpc: Server | undefined;
  #draining = false;
  readonly #host: ConnectionHost;

  constructor(options: XdsServerOptions = {}) {
    this.#options = options;
    this.log = options.logger ?? xdsLogger();
    this.#limits = {
      maxRequestBytes: options.maxRequestBytes ?? 4 * 1024 * 1024,
      maxBufferedBytes: options.maxBufferedBytes ?? 4 * 1024 * 1024,
      stuckTimeoutMs: options.stuckTimeoutMs ?? 30_000,
      pushReleaseMs: 250,
    };
    this.#queue = new PushQueue<Connection>(
      options.pushConcurrency ?? 100,
      (conn, error) => {
        this.metrics.internalErrors.add(1);
        this.log.error({ conn: conn.id, proxy: conn.ctx?.proxy.id, err: error }, 'push failed');
      },
      // As istiod's push loop (pilot/pkg/xds/discovery.go): queue time and triggers per dequeued push.
      (_conn, change, waitedMs) => {
        this.metrics.queueTime.record(waitedMs / 1000);
        this.metrics.trigger(change.reason);
      },
    );
    this.#debouncer = new Debouncer(options.debounce ?? {}, (change, merged) => this.#fire(change, merged));
    this.metrics.ackedSource = () => {
      const c = this.convergence();
      return c.version === undefined ? undefined : { revision: c.version, acked: c.synced };
    };
    this.#host = {
      log: this.log,
      metrics: this.metrics,
      limits: this.#limits,
      snapshot: () => this.#snapshot,
      identified: (conn) => {
        this.metrics.recordClient(istioVersionOf(conn), 1);
        this.log.info(
          {
            conn: conn.id,
            proxy: conn.ctx?.proxy.id,
            variant: conn.variant,
            identity: conn.authenticatedIdentity,
            revision: this.#snapshot?.version,
          },
          'proxy connected',
        );
      },
      synced: (conn, version, changeAt) => {
        if (changeAt !== undefined)
          this.metrics.convergedTime.record(Math.max(0, performance.now() - changeAt) / 1000);
        for (const listener of this.#syncedListeners) listener(conn, version);
      },
      requeue: (conn, change) => {
        if (!conn.closed) this.#queue.enqueue(conn, change);
      },
      closed: (conn) => {
        this.#connections.delete(conn);
        this.#queue.remove(conn);
        if (conn.ctx) this.metrics.recordClient(istioVersionOf(conn), -1);
      },
    };
  }

  /**
   * Calls `listener` each time a proxy has ACKed everything a snapshot version gives it (or was not
   * affected by it). Returns a function that removes the listener.
   */
  onProxySynced(listener: (conn: Connection, version: string) => void): () => void {
    this.#syncedListeners.add(listener);
    return () => this.#syncedListeners.delete(listener);
  }

  /** Identified proxies, and how many of them hold everything the current snapshot gives them. */
  convergence(): { version: string | undefined; proxies: number; synced: number } {
    const version = this.#snapshot?.version;
    let proxies = 0;
    let synced = 0;
    for (const c of this.#connections) {
      if (!c.ctx) continue;
      proxies++;
      if (version !== undefined && c.syncedVersion === version) synced++;
    }
    return { version, proxies, synced };
  }

  /** The current snapshot. */
  get snapshot(): XdsSnapshot | undefined {
    return this.#snapshot;
  }

  /** Connected streams (identified or not). */
  /** Streams relayed by node agents (those a rebalance may move). */
  get relayedCount(): number {
    let n = 0;
    for (const c of this.#connections) if (c.relayed) n++;
    return n;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /**
   * Installs a new snapshot and schedules a push of `change` (debounced). New subscriptions are served
   * from the new snapshot at once; existing streams get it when the debounced change fires, if the
   * change can affect what they watch. Pass `change` undefined for the initial snapshot.
   */
  update(snapshot: XdsSnapshot, change?: ChangeEvent): void {
    this.#snapshot = snapshot;
    if (change) this.#debouncer.enqueue(change);
  }

  /** Pushes the pending debounced change now (tests, shutdown). */
  flush(): void {
    this.#debouncer.flush();
  }

  /** Pushes queued or in flight (debug output, benchmarks). */
  get queuedPushes(): number {
    return this.#queue.size;
  }

  /** Resolves when no push is queued or in flight. */
  idle(): Promise<void> {
    return this.#queue.idle();
  }

  #fire(change: ChangeEvent, merged: number): void {
    this.metrics.debounceTime.record(Math.max(0, performance.now() - change.at) / 1000);
    let queued = 0;
    for (const conn of this.#connections) {
      if (!conn.ctx) continue;
      // A stream whose last push failed to build is retried on every new change.
      let affected = conn.pushFailure !== undefined;
      for (const w of conn.watches.values()) {
        if (affected) break;
        if (changeAffects(change, w)) {
          affected = true;
          break;
        }
      }
      if (!affected) {
        if (this.#snapshot) conn.unaffectedBy(this.#snapshot.version, change.at);
        continue;
      }
      this.#queue.enqueue(conn, change);
      queued++;
    }
    this.log.debug(
      { merged, queued, full: change.full, reason: change.reason, revision: this.#snapshot?.version },
      'push',
    );
  }

  #stream(variant: Variant): handleBidiStreamingCall<Buffer, Buffer> {
    return (call) => {
      if (this.#draining) {
        call.emit('error', Object.assign(new Error('server is shutting down'), { code: Status.UNAVAILABLE }));
        return;
      }
      const conn = new Connection(variant, call, this.#host, identityOf(call));
      this.#connections.add(conn);
    };
  }

  /** The channel options the ADS needs (keepalive, message sizes, streams per connection). */
  grpcServerOptions(): Record<string, number> {
    const o = this.#options;
    return {
      'grpc.keepalive_time_ms': o.keepaliveTimeMs ?? 30_000,
      'grpc.keepalive_timeout_ms': o.keepaliveTimeoutMs ?? 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
      'grpc.max_receive_message_length': o.maxReceiveMessageBytes ?? 16 * 1024 * 1024,
      'grpc.max_send_message_length': o.maxSendMessageBytes ?? 64 * 1024 * 1024,
      'grpc.max_concurrent_streams': o.maxConcurrentStreams ?? 1000,
    };
  }

  /** Adds the ADS service to a grpc-js server created with `grpcServerOptions()`. */
  register(server: Server): void {
    server.addService(adsServiceDefinition, {
      StreamAggregatedResources: this.#stream('sotw'),
      DeltaAggregatedResources: this.#stream('delta'),
    });
  }

  /** Starts an own grpc-js server on `host:port` (port 0 picks one); resolves to the bound port. */
  async listen(
    host = '127.0.0.1',
    port = 0,
    credentials: ServerCredentials = Credentials.createInsecure(),
  ): Promise<number> {
    const server = new Server(this.grpcServerOptions());
    this.register(server);
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${host}:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.#grpc = server;
    this.log.info({ address: `${host}:${bound}` }, 'xDS server listening');
    return bound;
  }

  /**
   * Graceful drain: stop accepting streams (GOAWAY), end every stream with UNAVAILABLE so proxies
   * reconnect elsewhere, wait for them to end, and force the server down after `timeoutMs`.
   */
  async drain(timeoutMs = 5000): Promise<void> {
    this.#draining = true;
    this.#debouncer.stop();
    const server = this.#grpc;
    const shutdown = server
      ? new Promise<void>((resolve) => server.tryShutdown(() => resolve()))
      : Promise.resolve();
    for (const conn of [...this.#connections]) conn.drain();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      shutdown.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut && server) {
      this.log.warn({ timeoutMs }, 'drain timed out; forcing the xDS server down');
      server.forceShutdown();
    }
    this.#grpc = undefined;
  }

  /** Stops at once (tests). */
  close(): void {
    this.#draining = true;
    this.#debouncer.stop();
    this.#grpc?.forceShutdown();
    this.#grpc = undefined;
  }

  /**
   * Ends up to `count` streams relayed by a node agent whose every type is ACKed (nothing in flight),
   * chosen at random, with UNAVAILABLE and `trailers` (e.g. the replica to move to). Streams of proxies
   * connected directly are never shed: nothing would tell them where to go. Returns how many were shed.
   */
  shed(
    count: number,
    reason: string,
    trailers: Readonly<Record<string, string>>,
    random: () => number = Math.random,
  ): number {
    const settled = [...this.#connections].filter((c) => c.relayed && c.settled);
    for (let i = settled.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [settled[i], settled[j]] = [settled[j]!, settled[i]!];
    }
    const chosen = settled.slice(0, Math.max(0, count));
    for (const c of chosen) c.shed(reason, trailers);
    return chosen.length;
  }

  /** Every identified proxy's sync status. */
  syncStatus(): ProxySyncStatus[] {
    const now = Date.now();
    const out: ProxySyncStatus[] = [];
    for (const conn of this.#connections) {
      const s = connectionStatus(conn, now);
      if (s) out.push(s);
    }
    return out.sort((a, b) => (a.connectionId < b.connectionId ? -1 : 1));
  }

  /**
   * What was sent to the proxy with this node id (or istioctl name `<pod>.<namespace>`), per
   * connection id; undefined if not connected.
   */
  configDump(proxyId: string): Record<string, Record<string, DumpedResource[]>> | undefined {
    let out: Record<string, Record<string, DumpedResource[]>> | undefined;
    for (const conn of this.#connectionsOf(proxyId)) {
      const ctx = conn.ctx!;
      out ??= {};
      out[conn.id] = connectionConfigDump(conn, (type: ResourceTypeUrl) => this.#resourcesOrNone(ctx, type));
    }
    return out;
  }

  /**
   * What the current snapshot holds for the subscriptions of the proxy with this node id (or name),
   * per connection id; undefined if not connected.
   */
  currentConfig(proxyId: string): Record<string, Record<string, DumpedResource[]>> | undefined {
    let out: Record<string, Record<string, DumpedResource[]>> | undefined;
    for (const conn of this.#connectionsOf(proxyId)) {
      const ctx = conn.ctx!;
      out ??= {};
      out[conn.id] = connectionCurrentConfig(conn, (type: ResourceTypeUrl) =>
        this.#resourcesOrNone(ctx, type),
      );
    }
    return out;
  }

  /** The current snapshot's resources for a debug view; none when they cannot be built (the
   * failure is in /debug/syncz). */
  #resourcesOrNone(ctx: ProxyContext, type: ResourceTypeUrl): ResourceMap | undefined {
    try {
      return this.#snapshot?.resources(ctx, type);
    } catch (error) {
      if (error instanceof ProxyTranslationError) return undefined;
      throw error;
    }
  }

  /** Identified connections of the proxy with this node id or istioctl name. */
  *#connectionsOf(proxyId: string): Iterable<Connection> {
    for (const conn of this.#connections) {
      const p = conn.ctx?.proxy;
      if (p && (p.id === proxyId || proxyName(p.id, p.workloadName, p.namespace) === proxyId)) yield conn;
    }
  }

  /** The `/debug/syncz` and `/debug/config_dump` handler for the replica's admin server. */
  debugHandler(): ReturnType<typeof debugHandler> {
    return debugHandler(this);
  }
}

/**
 * A pino logger for the xDS server at `level` (default `info`; the level is the caller's setting, this
 * package reads no environment); `write` captures the JSON lines (tests assert on them).
 */
export function xdsLogger(options: { level?: string; write?: (line: string) => void } = {}): Logger {
  const level = options.level ?? 'info';
  const write = options.write;
  return write ? pino({ name: 'xds', level }, { write }) : pino({ name: 'xds', level });
}
