// The local xDS relay: Envoy or a proxyless gRPC client opens its ADS stream (SotW or Delta) to the
// agent on localhost; the agent keeps one upstream stream per local stream to the replica the
// selector chose and passes requests, responses, ACKs and NACKs through as bytes, unchanged.
//
// When the upstream stream fails (connection error, GOAWAY, the replica shutting down) the agent
// opens a new one on the next-ranked replica, whose channel the selector keeps warm, and resumes:
// SotW by re-sending each type's last request with the version the client holds (the server
// answers with the full state of that type); Delta with `initial_resource_versions` of everything
// the client holds, so the new replica sends only what differs (identical versions on every replica,
// content-hashed). The local stream never breaks and the client keeps its config meanwhile. When no
// replica is reachable, a (re)starting client is served the last-known-good state from disk.
import * as grpc from '@grpc/grpc-js';
import { TypeUrl } from '@meridian/envoy';
import { adsServiceDefinition } from '@meridian/xds';
import type { Logger } from 'pino';
import type { LastKnownGood } from './cache.js';
import type { AgentMetrics } from './metrics.js';
import type { ReplicaSelector } from './replicas.js';
import type { LocalSecrets } from './sds.js';
import {
  type DeltaResponseView,
  deltaRequest,
  deltaResourceBytes,
  deltaResponse,
  nodeId,
  readDeltaRequest,
  readDeltaResponse,
  readSotwRequest,
  readSotwResponse,
  type SotwResponseView,
  sotwRequest,
  sotwResponse,
} from './wire.js';

const ADS = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
/** Request metadata marking an upstream stream as relayed by an agent (the value: the agent's id). */
export const AGENT_METADATA = 'x-meridian-agent';
/** Trailer of a stream a replica shed to rebalance: the id of the replica to move to. */
export const MOVE_TO_TRAILER = 'x-meridian-move-to';
const pass = (b: Buffer) => b;
type Variant = 'sotw' | 'delta';

/** What a relay needs. */
export interface XdsRelayOptions {
  readonly selector: ReplicaSelector;
  readonly log: Logger;
  readonly metrics?: AgentMetrics;
  /** Last-known-good state on disk (optional). */
  readonly cache?: LastKnownGood;
  /** How often to retry when no replica is usable (default 500 ms). */
  readonly retryMs?: number;
  /** Secrets served by the agent itself (SDS is then never forwarded to a replica). */
  readonly secrets?: LocalSecrets;
}

/** Per-type state of a SotW local stream. */
interface SotwType {
  /** The client's last request of this type (bytes as sent). */
  lastRequest: Buffer;
  names: readonly string[];
  /** The version the client holds (its last ACK). */
  ackedVersion: string;
  /** The last response relayed, for the disk cache (replaced per response: SotW is full state). */
  lastResponse?: SotwResponseView;
}

/** Per-type state of a Delta local stream. */
interface DeltaType {
  /** Names subscribed, `*` included when the client is a wildcard subscriber. */
  readonly subscribed: Set<string>;
  /** What the client holds: name -> version (and the encoded Resource, for the disk cache). */
  readonly held: Map<string, { version: string; encoded: Uint8Array }>;
}

/** One local stream and its upstream. */
class RelayedStream {
  readonly variant: Variant;
  #node: Uint8Array | undefined;
  #id = '';
  readonly #sotw = new Map<string, SotwType>();
  readonly #delta = new Map<string, DeltaType>();
  /** Type order as the client first asked (resumes in the same order: CDS before EDS, ...). */
  readonly #order: string[] = [];
  #upstream: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
  #upstreamAddress: string | undefined;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;
  #servedFromDisk = false;
  #localNonce = 0;
  /** When the last upstream failed (performance.now()), until the next one answers. */
  #failedAt: number | undefined;
  /** Local SDS: names asked for (`*`: all), what the client was last sent (name -> version). */
  #sds: { names: Set<string>; sent: Map<string, string>; nonce: string } | undefined;

  constructor(
    private readonly relay: XdsRelay,
    private readonly local: grpc.ServerDuplexStream<Buffer, Buffer>,
    variant: Variant,
  ) {
    this.variant = variant;
    local.on('data', (bytes: Buffer) => this.#onLocalRequest(bytes));
    local.on('end', () => this.close('local stream ended'));
    local.on('error', () => this.close('local stream failed'));
    local.on('cancelled', () => this.close('local stream cancelled'));
  }

  get upstreamAddress(): string | undefined {
    return this.#upstreamAddress;
  }

  get proxyId(): string {
    return this.#id;
  }

  #onLocalRequest(bytes: Buffer): void {
    if (this.#closed) return;
    this.relay.metrics?.requests.add(1);
    if (this.relay.secrets && this.#localSds(bytes)) return;
    try {
      if (this.variant === 'sotw') this.#trackSotwRequest(bytes);
      else this.#trackDeltaRequest(bytes);
    } catch (error) {
      this.relay.log.warn({ err: error }, 'unreadable request from the local client; passed through');
    }
    if (this.#upstream) {
      this.#upstream.write(bytes);
      return;
    }
    // A new upstream stream is sent the tracked state, which already includes this request.
    this.#connect();
    if (!this.#upstream) this.#serveFromDisk();
  }

  #trackSotwRequest(bytes: Buffer): void {
    const r = readSotwRequest(bytes);
    if (r.node && !this.#node) {
      this.#node = r.node;
      this.#id = nodeId(r.node);
    }
    if (!r.typeUrl) return;
    if (!this.#order.includes(r.typeUrl)) this.#order.push(r.typeUrl);
    const prev = this.#sotw.get(r.typeUrl);
    this.#sotw.set(r.typeUrl, {
      lastRequest: bytes,
      names: r.resourceNames,
      // A NACK keeps the version the client held; an ACK moves it to the response's version.
      ackedVersion: r.nack ? (prev?.ackedVersion ?? '') : r.versionInfo,
      ...(prev?.lastResponse ? { lastResponse: prev.lastResponse } : {}),
    });
  }

  #trackDeltaRequest(bytes: Buffer): void {
    const r = readDeltaRequest(bytes);
    if (r.node && !this.#node) {
      this.#node = r.node;
      this.#id = nodeId(r.node);
    }
    if (!r.typeUrl) return;
    if (!this.#order.includes(r.typeUrl)) this.#order.push(r.typeUrl);
    let t = this.#delta.get(r.typeUrl);
    if (!t) {
      t = { subscribed: new Set(), held: new Map() };
      this.#delta.set(r.typeUrl, t);
      // The first request of a type with no names is a wildcard subscription (xDS protocol,
      // "How the client specifies what resources to return").
      if (r.subscribe.length === 0) t.subscribed.add('*');
      for (const [name, version] of r.initialResourceVersions)
        t.held.set(name, { version, encoded: new Uint8Array() });
    }
    for (const n of r.subscribe) t.subscribed.add(n);
    for (const n of r.unsubscribe) t.subscribed.delete(n);
  }

  #trackResponse(bytes: Buffer): void {
    if (this.variant === 'sotw') {
      const r = readSotwResponse(bytes);
      const t = this.#sotw.get(r.typeUrl);
      if (t) t.lastResponse = r;
    } else {
      const r = readDeltaResponse(bytes);
      let t = this.#delta.get(r.typeUrl);
      if (!t) {
        t = { subscribed: new Set(), held: new Map() };
        this.#delta.set(r.typeUrl, t);
      }
      for (const x of r.resources) t.held.set(x.name, { version: x.version, encoded: x.encoded });
      for (const n of r.removed) t.held.delete(n);
    }
  }

  /** Opens the upstream stream on `preferred` if usable, else the best usable replica; without one, retries. */
  #connect(preferred?: string): void {
    if (this.#closed || this.#upstream) return;
    const candidate =
      (preferred ? this.relay.selector.usable().find((c) => c.address === preferred) : undefined) ??
      this.relay.selector.pick();
    if (!candidate) {
      this.#scheduleRetry();
      return;
    }
    const address = candidate.address;
    const client = this.relay.selector.channel(address).client;
    const path = `/${ADS}/${this.variant === 'sotw' ? 'StreamAggregatedResources' : 'DeltaAggregatedResources'}`;
    // Marks the stream as relayed: a replica above its fair share may shed it, naming where to go.
    const metadata = new grpc.Metadata();
    metadata.set(AGENT_METADATA, this.relay.agentId);
    const call = client.makeBidiStreamRequest<Buffer, Buffer>(path, pass, pass, metadata);
    this.#upstream = call;
    this.#upstreamAddress = address;
    this.relay.selector.retain(address);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.relay.selector.release(address);
    };
    this.relay.selector.setCurrent(address);
    this.relay.metrics?.connects.add(1);
    this.relay.log.debug(
      { proxy: this.#id, replica: candidate.replica.id, address },
      'upstream stream opened',
    );
    call.on('data', (bytes: Buffer) => {
      if (this.#upstream !== call || this.#closed) return;
      this.relay.metrics?.responses.add(1);
      if (this.#failedAt !== undefined) {
        this.relay.resynced(this, performance.now() - this.#failedAt);
        this.#failedAt = undefined;
      }
      try {
        this.#trackResponse(bytes);
      } catch (error) {
        this.relay.log.warn({ err: error }, 'unreadable response from the replica; passed through');
      }
      this.#servedFromDisk = false;
      this.local.write(bytes);
      this.relay.onRelayed(this);
    });
    call.on('error', () => {});
    call.on('status', (s: grpc.StatusObject) => {
      release();
      if (this.#upstream !== call || this.#closed) return;
      const moveTo = s.metadata?.get(MOVE_TO_TRAILER)[0];
      if (moveTo !== undefined) this.#onShed(address, String(moveTo));
      else this.#onUpstreamEnded(address, `${grpc.status[s.code]}: ${s.details}`);
    });
    this.#resume(call);
  }

  /**
   * Sends what the new upstream needs to continue where the last one stopped: each type's
   * subscription and the versions the client holds. The first request carries the node.
   */
  #resume(call: grpc.ClientDuplexStream<Buffer, Buffer>): void {
    let node = this.#node;
    for (const type of this.#order) {
      if (this.variant === 'sotw') {
        const t = this.#sotw.get(type);
        if (!t) continue;
        call.write(sotwRequest({ node, typeUrl: type, resourceNames: t.names, versionInfo: t.ackedVersion }));
      } else {
        const t = this.#delta.get(type);
        if (!t) continue;
        const versions = new Map([...t.held].map(([n, v]) => [n, v.version] as const));
        call.write(
          deltaRequest({
            node,
            typeUrl: type,
            subscribe: [...t.subscribed],
            initialResourceVersions: versions,
          }),
        );
      }
      node = undefined;
    }
  }

  #onUpstreamEnded(address: string, why: string): void {
    this.#failedAt ??= performance.now();
    this.#upstream = undefined;
    this.#upstreamAddress = undefined;
    this.relay.metrics?.terminations.add(1);
    this.relay.selector.markFailed(address);
    this.relay.log.info({ proxy: this.#id, address, why }, 'upstream stream ended; failing over');
    this.#connect();
    if (!this.#upstream) this.#serveFromDisk();
  }

  /** The replica shed this stream to rebalance: resume on the replica it named (not a failure). */
  #onShed(address: string, replicaId: string): void {
    this.#failedAt ??= performance.now();
    this.#upstream = undefined;
    this.#upstreamAddress = undefined;
    this.relay.metrics?.rebalanced.add(1);
    this.relay.selector.noteShed(address);
    const target = this.relay.selector
      .usable()
      .find((c) => c.replica.id === replicaId && c.address !== address);
    this.relay.log.info(
      { proxy: this.#id, from: address, to: target?.address ?? 'next-ranked' },
      'stream shed by its replica; moving',
    );
    this.#connect(target?.address);
    if (!this.#upstream) this.#serveFromDisk();
  }

  /** Moves this stream to `address`'s replica (the selector found a nearer one). */
  moveTo(address: string): void {
    if (this.#closed || this.#upstreamAddress === address) return;
    const old = this.#upstream;
    this.#upstream = undefined;
    this.#upstreamAddress = undefined;
    old?.cancel();
    this.#connect();
  }

  #scheduleRetry(): void {
    if (this.#retry || this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      if (this.#upstream || this.#closed) return;
      void this.relay.selector.refresh().then(() => {
        this.#connect();
      });
    }, this.relay.retryMs);
    this.#retry.unref();
  }

  /**
   * No replica: answers the client from the last-known-good state on disk (once per type), with
   * local nonces; the client ACKs them, and the state is re-sent to the replica when one returns.
   */
  #serveFromDisk(): void {
    const cache = this.relay.cache;
    if (!cache || !this.#id) return;
    const saved = cache.load(this.#id, this.variant);
    if (!saved) return;
    this.relay.metrics?.servedFromDisk.add(1);
    this.relay.log.warn(
      { proxy: this.#id, savedAt: saved.savedAt },
      'no replica reachable: serving last-known-good config from disk',
    );
    for (const type of this.#order) {
      const nonce = `lkg-${++this.#localNonce}`;
      if (this.variant === 'sotw') {
        const r = saved.sotw?.[type];
        const t = this.#sotw.get(type);
        if (!r || !t || t.ackedVersion === r.versionInfo) continue;
        this.#servedFromDisk = true;
        this.local.write(sotwResponse({ ...r, nonce }));
      } else {
        const r = saved.delta?.[type];
        const t = this.#delta.get(type);
        if (!r || !t) continue;
        const missing = r.resources.filter((x) => t.held.get(x.name)?.version !== x.version);
        if (missing.length === 0) continue;
        this.#servedFromDisk = true;
        for (const x of missing) t.held.set(x.name, { version: x.version, encoded: x.encoded });
        this.local.write(
          deltaResponse({ systemVersionInfo: '', typeUrl: type, nonce, resources: missing, removed: [] }),
        );
      }
    }
  }

  /**
   * Answers a Secret request from the agent's own certificates; returns false for other types. SotW:
   * every response carries all requested secrets; Delta: only those whose version the client lacks.
   */
  #localSds(bytes: Buffer): boolean {
    if (this.variant === 'sotw') {
      const r = readSotwRequest(bytes);
      if (r.node && !this.#node) {
        this.#node = r.node;
        this.#id = nodeId(r.node);
      }
      if (r.typeUrl !== TypeUrl.Secret) return false;
      const names = new Set(r.resourceNames.length ? r.resourceNames : ['*']);
      const same = this.#sds && [...names].join() === [...this.#sds.names].join();
      this.#sds ??= { names, sent: new Map(), nonce: '' };
      this.#sds.names = names;
      // An ACK or NACK of what was just sent needs no answer; a new subscription does.
      if (same && r.responseNonce === this.#sds.nonce) return true;
      this.#pushSecrets(true);
      return true;
    }
    const r = readDeltaRequest(bytes);
    if (r.node && !this.#node) {
      this.#node = r.node;
      this.#id = nodeId(r.node);
    }
    if (r.typeUrl !== TypeUrl.Secret) return false;
    if (!this.#sds) {
      this.#sds = {
        names: new Set(r.subscribe.length ? [] : ['*']),
        sent: new Map(r.initialResourceVersions),
        nonce: '',
      };
    }
    for (const n of r.subscribe) this.#sds.names.add(n);
    for (const n of r.unsubscribe) {
      this.#sds.names.delete(n);
      this.#sds.sent.delete(n);
    }
    this.#pushSecrets(false);
    return true;
  }

  /** Sends the secrets the client asked for (all of them, or in Delta those it lacks). */
  #pushSecrets(full: boolean): void {
    const sds = this.#sds;
    const secrets = this.relay.secrets?.current();
    if (!sds || !secrets) return;
    const wanted = [...secrets.values()].filter((x) => sds.names.has('*') || sds.names.has(x.name));
    const nonce = `sds-${++this.#localNonce}`;
    if (this.variant === 'sotw') {
      if (wanted.length === 0) return;
      const version = wanted.map((x) => x.version).join('.');
      if (!full && wanted.every((x) => sds.sent.get(x.name) === x.version)) return;
      sds.nonce = nonce;
      for (const x of wanted) sds.sent.set(x.name, x.version);
      this.local.write(
        sotwResponse({
          versionInfo: version,
          typeUrl: TypeUrl.Secret,
          nonce,
          resources: wanted.map((x) => x.any),
        }),
      );
      return;
    }
    const changed = wanted.filter((x) => sds.sent.get(x.name) !== x.version);
    if (changed.length === 0) return;
    sds.nonce = nonce;
    for (const x of changed) sds.sent.set(x.name, x.version);
    this.local.write(
      deltaResponse({
        systemVersionInfo: '',
        typeUrl: TypeUrl.Secret,
        nonce,
        resources: changed.map((x) => ({
          name: x.name,
          version: x.version,
          encoded: deltaResourceBytes(x.name, x.version, x.any),
        })),
        removed: [],
      }),
    );
  }

  /** A certificate rotation: pushes the new secrets to a client that holds any. */
  secretsChanged(): void {
    if (this.#sds) this.#pushSecrets(false);
  }

  /** What to save as last-known-good: per type, what the client holds. */
  snapshot(): { sotw?: Record<string, SotwResponseView>; delta?: Record<string, DeltaResponseView> } {
    if (this.variant === 'sotw') {
      const sotw: Record<string, SotwResponseView> = {};
      for (const [type, t] of this.#sotw)
        if (t.lastResponse && t.lastResponse.versionInfo === t.ackedVersion) sotw[type] = t.lastResponse;
      return { sotw };
    }
    const delta: Record<string, DeltaResponseView> = {};
    for (const [type, t] of this.#delta)
      delta[type] = {
        systemVersionInfo: '',
        typeUrl: type,
        nonce: '',
        resources: [...t.held]
          .filter(([, v]) => v.encoded.length > 0)
          .map(([name, v]) => ({ name, version: v.version, encoded: v.encoded })),
        removed: [],
      };
    return { delta };
  }

  close(why: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#upstream?.cancel();
    this.#upstream = undefined;
    this.relay.log.debug({ proxy: this.#id, why }, 'relayed stream closed');
    this.relay.onClosed(this);
    try {
      this.local.end();
    } catch {
      // already gone
    }
  }
}

/** The agent's local ADS server. */
export class XdsRelay {
  readonly selector: ReplicaSelector;
  readonly log: Logger;
  readonly metrics: AgentMetrics | undefined;
  readonly cache: LastKnownGood | undefined;
  readonly retryMs: number;
  readonly secrets: LocalSecrets | undefined;
  /** Sent with every upstream stream (`x-meridian-agent`). */
  readonly agentId = `agent-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  readonly #streams = new Set<RelayedStream>();
  readonly #offBetter: () => void;
  readonly #offSecrets: () => void;
  #saveTimer: NodeJS.Timeout | undefined;
  readonly #dirty = new Set<RelayedStream>();

  constructor(o: XdsRelayOptions) {
    this.selector = o.selector;
    this.log = o.log;
    this.metrics = o.metrics;
    this.cache = o.cache;
    this.retryMs = o.retryMs ?? 500;
    this.secrets = o.secrets;
    this.#offSecrets =
      o.secrets?.onChange(() => {
        for (const s of this.#streams) s.secretsChanged();
      }) ?? (() => undefined);
    this.#offBetter = this.selector.onBetter((best) => {
      for (const s of this.#streams) s.moveTo(best.address);
    });
  }

  /** Mounts the ADS service (SotW and Delta) on a grpc-js server. */
  register(server: grpc.Server): void {
    server.addService(adsServiceDefinition, {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) =>
        this.#accept(call, 'sotw'),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) =>
        this.#accept(call, 'delta'),
    });
  }

  #accept(call: grpc.ServerDuplexStream<Buffer, Buffer>, variant: Variant): void {
    this.#streams.add(new RelayedStream(this, call, variant));
  }

  /** Local streams open now. */
  get streams(): ReadonlySet<{
    readonly proxyId: string;
    readonly upstreamAddress: string | undefined;
    readonly variant: Variant;
  }> {
    return this.#streams;
  }

  /** @internal a response was relayed: the disk cache is written soon after (coalesced). */
  onRelayed(stream: RelayedStream): void {
    if (!this.cache) return;
    this.#dirty.add(stream);
    if (this.#saveTimer) return;
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined;
      for (const s of this.#dirty) {
        if (s.proxyId) this.cache?.save(s.proxyId, s.variant, s.snapshot());
      }
      this.#dirty.clear();
    }, 200);
    this.#saveTimer.unref();
  }

  readonly #resyncListeners = new Set<(proxyId: string, ms: number) => void>();

  /**
   * Calls `listener` when a stream whose upstream failed gets its first response from the next
   * replica, with the time since the failure (the failover time that stream saw).
   */
  onResync(listener: (proxyId: string, ms: number) => void): () => void {
    this.#resyncListeners.add(listener);
    return () => this.#resyncListeners.delete(listener);
  }

  /** @internal */
  resynced(stream: RelayedStream, ms: number): void {
    this.metrics?.failoverSeconds.record(ms / 1000);
    for (const l of this.#resyncListeners) l(stream.proxyId, ms);
  }

  /** @internal */
  onClosed(stream: RelayedStream): void {
    this.#streams.delete(stream);
  }

  /** Ends every local stream (clients reconnect to the next agent instance). */
  close(): void {
    this.#offBetter();
    this.#offSecrets();
    clearTimeout(this.#saveTimer);
    for (const s of [...this.#dirty]) if (s.proxyId) this.cache?.save(s.proxyId, s.variant, s.snapshot());
    for (const s of [...this.#streams]) s.close('agent stopping');
  }
}
