/**
 * Telemetry across clusters: where federation links clusters over NATS (`--nats-url`),
 * every replica publishes a small summary of its own on
 * `meridian.telemetry.<topic>.<mesh>.<cluster>.<replica>` and keeps the latest one of every other
 * cluster's replicas (dropped once older than a bound), so a replica's debug views answer for the
 * mesh. Within a cluster the same summaries travel through etcd; NATS messages of the replica's own
 * cluster are ignored. Two topics:
 *
 * - `graph` ({@link GraphExchange}): the replica's service-graph edge windows every 2 s (at most the
 *   busiest {@link MAX_EDGES} edges), kept for one window;
 * - `convergence` ({@link ConvergenceExchange}): the replica's convergence summary
 *   (convergence.ts) every second when it changed and every 5 s otherwise, kept for 15 s.
 *
 * Trust is federation's: the connection authenticates with `--nats-creds` (natsAuthenticator), and
 * `meridian federation nats-config` lets each cluster's user publish only on its own cluster's
 * token of these subjects, so the sending cluster is the subject's cluster token, never the body's
 * claim: a message whose body names another cluster or replica than its subject is dropped, as is
 * one that does not parse.
 */
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { ReplicaConvergence } from './convergence.js';
import { natsAuthenticator } from './federation.js';
import type { EdgeWindow } from './service-graph.js';

const MAX_EDGES = 2000;
/** Most proxies' sync times carried in one convergence summary (the rest count, unlisted). */
const MAX_SYNC_TIMES = 20_000;
const MAX_BEHIND = 20;

/** Where and as whom a replica reaches the mesh's NATS. */
export interface TelemetryNatsOptions {
  readonly natsUrls: readonly string[];
  readonly natsCreds: string;
  readonly meshId: string;
  readonly clusterId: string;
  readonly replicaId: string;
  readonly now: () => number;
  readonly log: Logger;
}

/** The subject one replica publishes `topic` on (`*` wildcards for a subscription). */
export function telemetrySubject(topic: string, mesh: string, cluster = '*', replica = '*'): string {
  return `meridian.telemetry.${topic}.${mesh}.${cluster}.${replica}`;
}

interface Received<T> {
  readonly clusterId: string;
  readonly replicaId: string;
  /** Local receive time (ms): expiry does not depend on the sender's clock. */
  readonly receivedAt: number;
  readonly value: T;
}

/**
 * One topic's exchange: publishes `payload()` (with this replica's `clusterId` and `replicaId`) and keeps
 * the other clusters' replicas' latest `parse`d messages.
 */
class PeerExchange<T> {
  readonly #o: TelemetryNatsOptions;
  readonly #topic: string;
  readonly #remote = new Map<string, Received<T>>();
  #nc: NatsConnection | undefined;
  #sub: Subscription | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(
    o: TelemetryNatsOptions,
    topic: string,
    private readonly tickMs: number,
    /** The message to publish at this tick, or undefined for none. */
    private readonly payload: () => object | undefined,
    /** The message's value, or undefined to drop it (it does not parse). */
    private readonly parse: (message: Record<string, unknown>) => T | undefined,
    private readonly maxAgeMs: number,
  ) {
    this.#o = o;
    this.#topic = topic;
    const authenticator = natsAuthenticator(o.natsCreds);
    connect({
      servers: [...o.natsUrls],
      name: `meridiand telemetry ${topic} ${o.clusterId}/${o.replicaId}`,
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      ...(authenticator ? { authenticator } : {}),
    }).then(
      (nc) => {
        if (this.#stopped) {
          void nc.close();
          return;
        }
        this.#nc = nc;
        this.#subscribe(nc);
        this.#schedule();
      },
      (error: unknown) =>
        o.log.warn(
          { err: error, topic },
          'telemetry: NATS not reachable; this view stays within the cluster',
        ),
    );
  }

  #subscribe(nc: NatsConnection): void {
    const sub = nc.subscribe(telemetrySubject(this.#topic, this.#o.meshId));
    this.#sub = sub;
    void (async () => {
      for await (const m of sub) {
        try {
          // <...>.<mesh>.<cluster>.<replica>: NATS permissions bind the cluster token to the sender.
          const tokens = m.subject.split('.');
          const [clusterId, replicaId] = tokens.slice(-2) as [string, string];
          if (clusterId === this.#o.clusterId) continue;
          const body = m.json() as Record<string, unknown>;
          if (body === null || typeof body !== 'object') continue;
          if (body.clusterId !== clusterId || body.replicaId !== replicaId) continue;
          const value = this.parse(body);
          if (value === undefined) continue;
          this.#remote.set(`${clusterId}/${replicaId}`, {
            clusterId,
            replicaId,
            receivedAt: this.#o.now(),
            value,
          });
        } catch {
          // not a message of this topic: dropped
        }
      }
    })();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#publish();
      this.#schedule();
    }, this.tickMs);
    this.#timer.unref();
  }

  #publish(): void {
    const nc = this.#nc;
    if (!nc || nc.isClosed()) return;
    let body: object | undefined;
    try {
      body = this.payload();
    } catch (error) {
      this.#o.log.debug({ err: error, topic: this.#topic }, 'telemetry: could not build a NATS message');
      return;
    }
    if (!body) return;
    const o = this.#o;
    try {
      nc.publish(
        telemetrySubject(this.#topic, o.meshId, o.clusterId, o.replicaId),
        JSON.stringify({ ...body, clusterId: o.clusterId, replicaId: o.replicaId }),
      );
    } catch (error) {
      o.log.debug({ err: error, topic: this.#topic }, 'telemetry: could not publish on NATS');
    }
  }

  /** The other clusters' replicas' latest values, received within the bound. */
  remote(): Received<T>[] {
    const now = this.#o.now();
    const out: Received<T>[] = [];
    for (const [k, r] of this.#remote) {
      if (now - r.receivedAt > this.maxAgeMs) this.#remote.delete(k);
      else out.push(r);
    }
    return out;
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#sub?.unsubscribe();
    await this.#nc?.close().catch(() => undefined);
  }
}

/** Settings of a {@link GraphExchange}. */
export interface GraphExchangeOptions extends TelemetryNatsOptions {
  readonly windowSeconds: number;
  /** This replica's windows now. */
  readonly windows: () => EdgeWindow[];
}

/** Publishes this replica's edge windows on NATS and collects the other clusters'. */
export class GraphExchange {
  readonly #x: PeerExchange<readonly EdgeWindow[]>;

  private constructor(o: GraphExchangeOptions) {
    this.#x = new PeerExchange<readonly EdgeWindow[]>(
      o,
      'graph',
      2000,
      () => ({
        at: o.now(),
        edges: o
          .windows()
          .sort((a, b) => b.requests - a.requests)
          .slice(0, MAX_EDGES),
      }),
      (m) => (Array.isArray(m.edges) ? (m.edges.slice(0, MAX_EDGES) as EdgeWindow[]) : undefined),
      o.windowSeconds * 1000,
    );
  }

  /** Connects (in the background, retrying) and starts publishing. */
  static start(o: GraphExchangeOptions): GraphExchange {
    return new GraphExchange(o);
  }

  /** The other clusters' replicas' windows, received within the last window. */
  remote(): (readonly EdgeWindow[])[] {
    return this.#x.remote().map((r) => r.value);
  }

  close(): Promise<void> {
    return this.#x.close();
  }
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isStr = (v: unknown): v is string => typeof v === 'string' && v.length <= 512;

/**
 * A convergence summary from NATS, checked field by field and capped (at most {@link MAX_BEHIND}
 * proxies behind and {@link MAX_SYNC_TIMES} sync times); undefined when anything is off.
 */
export function parseConvergenceSummary(m: Record<string, unknown>): ReplicaConvergence | undefined {
  const { replicaId, clusterId, revision, version, changedAt, proxies, synced, syncMs, behind, at } = m;
  if (!isStr(replicaId) || !isStr(clusterId) || !isStr(version) || !isStr(changedAt) || !isStr(at))
    return undefined;
  if (!isNum(revision) || !isNum(proxies) || !isNum(synced) || synced > proxies) return undefined;
  if (!Array.isArray(syncMs) || !syncMs.every(isNum)) return undefined;
  if (!Array.isArray(behind)) return undefined;
  const list: { proxy: string; holds: string | undefined }[] = [];
  for (const b of behind.slice(0, MAX_BEHIND)) {
    const e = b as { proxy?: unknown; holds?: unknown } | null;
    if (!e || !isStr(e.proxy) || (e.holds !== undefined && !isStr(e.holds))) return undefined;
    list.push({ proxy: e.proxy, holds: e.holds });
  }
  return {
    replicaId,
    clusterId,
    revision,
    version,
    changedAt,
    proxies,
    synced,
    syncMs: (syncMs as number[]).slice(0, Math.min(MAX_SYNC_TIMES, synced)),
    behind: list,
    at,
  };
}

/** Settings of a {@link ConvergenceExchange}. */
export interface ConvergenceExchangeOptions extends TelemetryNatsOptions {
  /** This replica's summary now, and whether it changed since the last call (undefined: none yet). */
  readonly summary: () => { readonly summary: ReplicaConvergence; readonly changed: boolean } | undefined;
}

/** Publishes this replica's convergence summary on NATS and collects the other clusters' replicas'. */
export class ConvergenceExchange {
  readonly #x: PeerExchange<ReplicaConvergence>;

  private constructor(o: ConvergenceExchangeOptions) {
    let sentAt = Number.NEGATIVE_INFINITY;
    this.#x = new PeerExchange<ReplicaConvergence>(
      o,
      'convergence',
      1000,
      () => {
        const s = o.summary();
        if (!s || (!s.changed && o.now() - sentAt < 5000)) return undefined;
        sentAt = o.now();
        return s.summary;
      },
      parseConvergenceSummary,
      15_000,
    );
  }

  /** Connects (in the background, retrying) and starts publishing. */
  static start(o: ConvergenceExchangeOptions): ConvergenceExchange {
    return new ConvergenceExchange(o);
  }

  /** The other clusters' replicas' summaries received within the last 15 s. */
  remote(): ReplicaConvergence[] {
    return this.#x.remote().map((r) => r.value);
  }

  close(): Promise<void> {
    return this.#x.close();
  }
}
