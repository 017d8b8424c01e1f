// The xDS load generator: N simulated proxies (SotW or Delta) that behave like Envoy on the wire:
// subscribe, ACK what they accept, NACK when told to, stop reading, reconnect with their versions. Each
// reports the time from a change (LoadGenerator.mark) to its first response of a type, which it ACKs
// at once (so it is also the change -> ACK time).
import { Client, type ClientDuplexStream, credentials } from '@grpc/grpc-js';
import { encodeResource, type JsonValue } from '@meridian/envoy';
import {
  type DeltaResponseView,
  deltaRequestBytes,
  readDeltaResponse,
  readSotwResponse,
  resourceName,
  type SotwResponseView,
  sotwRequestBytes,
} from './wire.js';

const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const CLUSTER = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const pass = (b: Buffer): Buffer => b;

/** One type a simulated proxy watches: by wildcard (`names` undefined) or by names. */
export interface Subscription {
  readonly typeUrl: string;
  readonly names?: readonly string[];
}

/** How one simulated proxy identifies itself and what it watches. */
export interface SimulatedProxyOptions {
  /** Node id; default `sidecar~10.0.<i>~proxy-<i>.<ns>~<ns>.svc.cluster.local`. */
  readonly nodeId: string;
  readonly metadata?: { [key: string]: JsonValue };
  readonly variant: 'sotw' | 'delta';
  /** Types in the order they are first requested (Envoy: CDS, EDS, LDS, RDS). */
  readonly subscriptions: readonly Subscription[];
  /** Keep every response in `responses` (protocol tests). */
  readonly record?: boolean;
  /** Neither subscribe on connect nor ACK: the test drives the stream with `send` (default false). */
  readonly manual?: boolean;
}

/** What a proxy holds of one type. */
export interface ProxyTypeState {
  nonce: string;
  versionInfo: string;
  /** Delta: resource name -> version as sent. SotW: resource name -> size in bytes. */
  resources: Map<string, string>;
  responses: number;
  resourceBytes: number;
  acks: number;
  nacks: number;
}

/** A simulated Envoy on one ADS stream. */
export class SimulatedProxy {
  readonly state = new Map<string, ProxyTypeState>();
  /** Time (ms after the mark) of the first response per type since the last mark. */
  readonly sinceMark = new Map<string, number>();
  #markAt: number | undefined;
  #call: ClientDuplexStream<Buffer, Buffer> | undefined;
  #node: Uint8Array;
  #nodeSent = false;
  /** Types whose responses are NACKed (with this message). */
  readonly nackTypes = new Map<string, string>();
  /** Status of the stream's end, if it ended. */
  ended: { code: number; details: string } | undefined;
  totalResourceBytes = 0;
  /** Every response, when `record` is set. */
  readonly responses: (SotwResponseView | DeltaResponseView)[] = [];
  /** The encoded node, for hand-written requests. */
  get node(): Uint8Array {
    return this.#node;
  }

  constructor(readonly options: SimulatedProxyOptions) {
    this.#node = encodeResource('envoy.config.core.v3.Node', {
      id: options.nodeId,
      metadata: options.metadata ?? {},
    });
  }

  /** Opens the stream on `client` and sends the subscriptions. `withVersions`: Delta
   * `initial_resource_versions` from what the proxy holds (a reconnect). */
  connect(client: Client, withVersions = false): void {
    const path = `${ADS}/${this.options.variant === 'sotw' ? 'StreamAggregatedResources' : 'DeltaAggregatedResources'}`;
    const call = client.makeBidiStreamRequest<Buffer, Buffer>(path, pass, pass);
    this.#call = call;
    this.#nodeSent = false;
    this.ended = undefined;
    call.on('data', (bytes: Buffer) => this.#onResponse(bytes));
    call.on('status', (s: { code: number; details: string }) => {
      if (this.#call === call) this.ended = { code: s.code, details: s.details };
    });
    call.on('error', () => {});
    const initial = new Map<string, ProxyTypeState>(withVersions ? this.state : []);
    if (!withVersions) this.state.clear();
    if (this.options.manual) return;
    for (const sub of this.options.subscriptions) {
      if (this.options.variant === 'sotw') {
        const prev = initial.get(sub.typeUrl);
        this.#write(
          sotwRequestBytes({
            node: this.#nodeOnce(),
            typeUrl: sub.typeUrl,
            resourceNames: sub.names ?? [],
            versionInfo: prev?.versionInfo,
            responseNonce: prev?.nonce,
          }),
        );
      } else {
        const prev = initial.get(sub.typeUrl);
        this.#write(
          deltaRequestBytes({
            node: this.#nodeOnce(),
            typeUrl: sub.typeUrl,
            subscribe: sub.names ?? [],
            initialResourceVersions: withVersions ? prev?.resources : undefined,
          }),
        );
      }
    }
  }

  #nodeOnce(): Uint8Array | undefined {
    if (this.#nodeSent) return undefined;
    this.#nodeSent = true;
    return this.#node;
  }

  #write(bytes: Buffer): void {
    if (this.#call && !this.#call.writableEnded) this.#call.write(bytes);
  }

  #typeState(type: string): ProxyTypeState {
    let s = this.state.get(type);
    if (!s) {
      s = {
        nonce: '',
        versionInfo: '',
        resources: new Map(),
        responses: 0,
        resourceBytes: 0,
        acks: 0,
        nacks: 0,
      };
      this.state.set(type, s);
    }
    return s;
  }

  #onResponse(bytes: Buffer): void {
    const view = this.options.variant === 'sotw' ? readSotwResponse(bytes) : readDeltaResponse(bytes);
    if (this.options.record) this.responses.push(view);
    if (this.options.manual) return;
    if (this.options.variant === 'sotw') this.#onSotw(view as SotwResponseView);
    else this.#onDelta(view as DeltaResponseView);
  }

  /** Called when a type is first received after a mark (the generator counts them). */
  onMarked: ((type: string) => void) | undefined;

  #recordMark(type: string): void {
    if (this.#markAt !== undefined && !this.sinceMark.has(type)) {
      this.sinceMark.set(type, performance.now() - this.#markAt);
      this.onMarked?.(type);
    }
  }

  #onSotw(r: SotwResponseView): void {
    const s = this.#typeState(r.typeUrl);
    s.responses++;
    s.resourceBytes += r.resourceBytes;
    this.totalResourceBytes += r.resourceBytes;
    const nack = this.nackTypes.get(r.typeUrl);
    const sub = this.options.subscriptions.find((x) => x.typeUrl === r.typeUrl);
    if (nack !== undefined) {
      s.nacks++;
      s.nonce = r.nonce;
      this.#write(
        sotwRequestBytes({
          typeUrl: r.typeUrl,
          resourceNames: sub?.names ?? [],
          versionInfo: s.versionInfo,
          responseNonce: r.nonce,
          error: { code: 3, message: nack },
        }),
      );
      return;
    }
    s.nonce = r.nonce;
    s.versionInfo = r.versionInfo;
    // SotW carries no per-resource version; keep each resource's size (cheap at 10,000 proxies).
    // Listener and Cluster responses are the whole state; a response of another type updates the
    // resources it carries and leaves the rest held, as Envoy does.
    const wholeState = r.typeUrl === LISTENER || r.typeUrl === CLUSTER;
    const held = wholeState ? new Map<string, string>() : s.resources;
    for (const v of r.resources) held.set(resourceName(v), String(v.length));
    s.resources = held;
    s.acks++;
    this.#write(
      sotwRequestBytes({
        typeUrl: r.typeUrl,
        resourceNames: sub?.names ?? [],
        versionInfo: r.versionInfo,
        responseNonce: r.nonce,
      }),
    );
    this.#recordMark(r.typeUrl);
  }

  #onDelta(r: DeltaResponseView): void {
    const s = this.#typeState(r.typeUrl);
    s.responses++;
    s.resourceBytes += r.resourceBytes;
    this.totalResourceBytes += r.resourceBytes;
    const nack = this.nackTypes.get(r.typeUrl);
    if (nack !== undefined) {
      s.nacks++;
      this.#write(
        deltaRequestBytes({ typeUrl: r.typeUrl, responseNonce: r.nonce, error: { code: 3, message: nack } }),
      );
      return;
    }
    for (const res of r.resources) s.resources.set(res.name, res.version);
    for (const name of r.removed) s.resources.delete(name);
    s.nonce = r.nonce;
    s.versionInfo = r.systemVersionInfo;
    s.acks++;
    this.#write(deltaRequestBytes({ typeUrl: r.typeUrl, responseNonce: r.nonce }));
    this.#recordMark(r.typeUrl);
  }

  /** Starts timing: the next response of each type records its delay from now. */
  mark(at: number): void {
    this.#markAt = at;
    this.sinceMark.clear();
  }

  /** Stops reading responses (HTTP/2 flow control then stops the server's writes). */
  stopReading(): void {
    this.#call?.pause();
  }

  resumeReading(): void {
    this.#call?.resume();
  }

  /** Sends a raw request on the stream (protocol tests). */
  send(bytes: Buffer): void {
    this.#write(bytes);
  }

  /** Closes the stream (the proxy keeps what it holds, for a reconnect). */
  disconnect(): void {
    const call = this.#call;
    this.#call = undefined;
    if (call) {
      call.removeAllListeners('data');
      call.cancel();
    }
  }
}

/** Load generator settings. */
export interface LoadGeneratorOptions {
  /** `host:port` of the ADS server. */
  readonly address: string;
  readonly proxies: number;
  /** Options of proxy `i`. */
  readonly proxy: (i: number) => SimulatedProxyOptions;
  /** ADS streams per HTTP/2 connection (each connection is its own channel). Default 50. */
  readonly streamsPerConnection?: number;
  /** Proxies given a connection of their own (for example one that will stop reading). */
  readonly isolated?: ReadonlySet<number>;
  /** HTTP/2 receive window of each connection and stream, in bytes. Default 16 MiB (Envoy's own
   * defaults are larger still); a small window makes a proxy that stops reading block sooner. */
  readonly flowControlWindow?: number;
  /** The window of isolated proxies' connections (default: flowControlWindow). */
  readonly isolatedFlowControlWindow?: number;
}

/** N simulated proxies over a few HTTP/2 connections. */
export class LoadGenerator {
  readonly proxies: SimulatedProxy[] = [];
  readonly #clients: Client[] = [];
  readonly #clientOf = new Map<SimulatedProxy, Client>();
  readonly #marked = new Map<string, number>();

  constructor(readonly options: LoadGeneratorOptions) {
    const per = options.streamsPerConnection ?? 50;
    let shared: Client | undefined;
    let onShared = 0;
    for (let i = 0; i < options.proxies; i++) {
      const proxy = new SimulatedProxy(options.proxy(i));
      let client: Client;
      if (options.isolated?.has(i)) client = this.#newClient(options.isolatedFlowControlWindow);
      else {
        if (!shared || onShared >= per) {
          shared = this.#newClient();
          onShared = 0;
        }
        onShared++;
        client = shared;
      }
      proxy.onMarked = (type) => this.#marked.set(type, (this.#marked.get(type) ?? 0) + 1);
      this.proxies.push(proxy);
      this.#clientOf.set(proxy, client);
    }
  }

  #newClient(window = this.options.flowControlWindow ?? 16 * 1024 * 1024): Client {
    const c = new Client(this.options.address, credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': -1,
      'grpc.keepalive_time_ms': 60_000,
      'grpc-node.flow_control_window': window,
    });
    this.#clients.push(c);
    return c;
  }

  /** Connects every proxy (optionally with their versions: a Delta reconnect). */
  connect(withVersions = false): void {
    for (const p of this.proxies) p.connect(this.#clientOf.get(p)!, withVersions);
  }

  /** Reconnects one proxy. */
  reconnect(proxy: SimulatedProxy, withVersions = true): void {
    proxy.disconnect();
    proxy.connect(this.#clientOf.get(proxy)!, withVersions);
  }

  /** Starts timing a change on every proxy; returns the mark time. */
  mark(): number {
    const at = performance.now();
    this.#marked.clear();
    for (const p of this.proxies) p.mark(at);
    return at;
  }

  /** How many proxies received `typeUrl` since the last mark (O(1), for polling at scale). */
  markedCount(typeUrl: string): number {
    return this.#marked.get(typeUrl) ?? 0;
  }

  /** Polls until `done` holds or `timeoutMs` passes; resolves to whether it held. */
  async waitFor(done: () => boolean, timeoutMs: number, pollMs = 5): Promise<boolean> {
    const until = performance.now() + timeoutMs;
    while (!done()) {
      if (performance.now() > until) return false;
      await new Promise((r) => setTimeout(r, pollMs));
    }
    return true;
  }

  /** Delays (ms after the mark) of the proxies that received `typeUrl` since the mark. */
  latencies(typeUrl: string, which: readonly SimulatedProxy[] = this.proxies): number[] {
    const out: number[] = [];
    for (const p of which) {
      const t = p.sinceMark.get(typeUrl);
      if (t !== undefined) out.push(t);
    }
    return out;
  }

  /** Disconnects every proxy and closes every channel. */
  close(): void {
    for (const p of this.proxies) p.disconnect();
    for (const c of this.#clients) c.close();
  }
}

/** The p-th percentile (0..100) of values (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}
