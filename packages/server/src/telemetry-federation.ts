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
 *   (convergence.ts) with its proxies' rows (at most 200: name, sync state per type, synced version,
 *   last ACK age; no address, identity or error text) and its own state (leader, locality,
 *   connected proxies, registrations, store health, version, revision; no address) every second
 *   when it changed and every 5 s otherwise, kept for 15 s; the other clusters' dashboards list
 *   those proxies (Proxies page) and replicas (Mesh page).
 *
 * Trust is federation's: the connection authenticates with `--nats-creds` (natsAuthenticator), and
 * `meridian federation nats-config` lets each cluster's user publish only on its own cluster's
 * token of these subjects, so the sending cluster is the subject's cluster token, never the body's
 * claim: a message whose body names another cluster or replica than its subject is dropped, as is
 * one that does not parse.
 */
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type {
  ProxyRow,
  RemoteProxies,
  RemoteProxyRow,
  RemoteReplica,
  ReplicaConvergence,
  ReplicaStatus,
} from './convergence.js';
import { natsAuthenticator } from './federation.js';
import type { EdgeWindow } from './service-graph.js';

const MAX_EDGES = 2000;
/** Most proxies' sync times carried in one convergence summary (the rest count, unlisted). */
const MAX_SYNC_TIMES = 20_000;
const MAX_BEHIND = 20;
/** Most proxy rows kept of one convergence summary (as convergence.ts's MAX_PROXY_ROWS). */
const MAX_PROXY_ROWS = 200;
/** Most characters of a text of a replica status block (as convergence.ts's MAX_STATUS_TEXT). */
const MAX_STATUS_TEXT = 200;
/** Most sync types of one proxy row. */
const MAX_ROW_TYPES = 16;

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

/**
 * The trust rule of every topic: the sender of a message on `subject` (`<...>.<mesh>.<cluster>.<replica>`)
 * is the subject's cluster and replica (NATS permissions bind a cluster's user to its own cluster
 * token); a body naming another cluster or replica, one of `ownCluster` (its summaries travel
 * through etcd) and a body that is not an object are refused (undefined).
 */
export function acceptPeerMessage(
  subject: string,
  body: unknown,
  ownCluster: string,
):
  | { readonly clusterId: string; readonly replicaId: string; readonly body: Record<string, unknown> }
  | undefined {
  const tokens = subject.split('.');
  if (tokens.length < 6) return undefined;
  const [clusterId, replicaId] = tokens.slice(-2) as [string, string];
  if (clusterId === ownCluster) return undefined;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const b = body as Record<string, unknown>;
  if (b.clusterId !== clusterId || b.replicaId !== replicaId) return undefined;
  return { clusterId, replicaId, body: b };
}

/** A message kept: its sender (from the subject), when it arrived and its parsed value. */
export interface Received<T> {
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
          if (m.subject.split('.').slice(-2)[0] === this.#o.clusterId) continue;
          const accepted = acceptPeerMessage(m.subject, m.json(), this.#o.clusterId);
          if (!accepted) continue;
          const { clusterId, replicaId, body } = accepted;
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

const TYPE_KEY = /^[a-z]{1,16}$/;

/** One proxy row from NATS, only its known fields, or undefined when one is off. */
function parseProxyRow(v: unknown): ProxyRow | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const r = v as Record<string, unknown>;
  const { proxy, namespace, kind, variant, types, syncedVersion, syncedAgeMs, lastAckAgeMs, pushFailed } = r;
  if (!isStr(proxy) || !isStr(namespace) || !isStr(kind) || !isStr(variant)) return undefined;
  if (types === null || typeof types !== 'object' || Array.isArray(types)) return undefined;
  const entries = Object.entries(types as Record<string, unknown>);
  if (entries.length > MAX_ROW_TYPES) return undefined;
  const states: Record<string, string> = {};
  for (const [k, state] of entries) {
    if (!TYPE_KEY.test(k) || typeof state !== 'string' || state.length > 32) return undefined;
    states[k] = state;
  }
  if (syncedVersion !== undefined && !isStr(syncedVersion)) return undefined;
  if (syncedAgeMs !== undefined && !isNum(syncedAgeMs)) return undefined;
  if (lastAckAgeMs !== undefined && !isNum(lastAckAgeMs)) return undefined;
  if (pushFailed !== undefined && typeof pushFailed !== 'boolean') return undefined;
  return {
    proxy,
    namespace,
    kind,
    variant,
    types: states,
    ...(syncedVersion !== undefined ? { syncedVersion } : {}),
    ...(syncedAgeMs !== undefined ? { syncedAgeMs } : {}),
    ...(lastAckAgeMs !== undefined ? { lastAckAgeMs } : {}),
    ...(pushFailed === true ? { pushFailed } : {}),
  };
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isText = (v: unknown): v is string => typeof v === 'string' && v.length <= MAX_STATUS_TEXT;

/** A replica status block from NATS, only its known fields, or undefined when one is off. */
export function parseReplicaStatus(v: unknown): ReplicaStatus | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const { leader, locality, connections, registrations, store, version, snapshotRevision } = v as Record<
    string,
    unknown
  >;
  if (typeof leader !== 'boolean' || !isText(locality) || !isCount(connections) || !isText(store))
    return undefined;
  if (registrations !== undefined && !isCount(registrations)) return undefined;
  if (version !== undefined && !isText(version)) return undefined;
  if (snapshotRevision !== undefined && !isCount(snapshotRevision)) return undefined;
  return {
    leader,
    locality,
    connections,
    ...(registrations !== undefined ? { registrations } : {}),
    store,
    ...(version !== undefined ? { version } : {}),
    ...(snapshotRevision !== undefined ? { snapshotRevision } : {}),
  };
}

/**
 * A convergence summary from NATS, checked field by field and capped (at most {@link MAX_BEHIND}
 * proxies behind, {@link MAX_SYNC_TIMES} sync times and {@link MAX_PROXY_ROWS} proxy rows, the
 * rows beyond counted as omitted; rows keep only their known fields); undefined when anything is
 * off, or when it lists more proxies than it counts. Its replica status block keeps only its known
 * fields ({@link parseReplicaStatus}); one that is off drops the summary.
 */
export function parseConvergenceSummary(m: Record<string, unknown>): ReplicaConvergence | undefined {
  const { replicaId, clusterId, revision, version, changedAt, proxies, synced, syncMs, behind, at } = m;
  const { proxyRows, proxyRowsOmitted, replicaStatus } = m;
  const status = replicaStatus === undefined ? undefined : parseReplicaStatus(replicaStatus);
  if (replicaStatus !== undefined && !status) return undefined;
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
  // Proxy rows: optional (a replica of an older version sends none).
  if (proxyRows !== undefined && !Array.isArray(proxyRows)) return undefined;
  if (proxyRowsOmitted !== undefined && !isNum(proxyRowsOmitted)) return undefined;
  const rowList = (proxyRows ?? []) as unknown[];
  if (rowList.length + (proxyRowsOmitted ?? 0) > proxies) return undefined;
  const rows: ProxyRow[] = [];
  for (const v of rowList.slice(0, MAX_PROXY_ROWS)) {
    const row = parseProxyRow(v);
    if (!row) return undefined;
    rows.push(row);
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
    ...(proxyRows !== undefined
      ? {
          proxyRows: rows,
          proxyRowsOmitted: (proxyRowsOmitted ?? 0) + (rowList.length - rows.length),
        }
      : {}),
    ...(status ? { replicaStatus: status } : {}),
  };
}

/** Received messages in a new array, ordered by their sender: by cluster, then by replica. */
function bySender<T>(received: readonly Received<T>[]): Received<T>[] {
  return [...received].sort((a, b) =>
    a.clusterId !== b.clusterId
      ? a.clusterId < b.clusterId
        ? -1
        : 1
      : a.replicaId < b.replicaId
        ? -1
        : a.replicaId > b.replicaId
          ? 1
          : 0,
  );
}

/**
 * The other clusters' replicas from received convergence summaries at `now` (ms), by cluster then
 * replica: each with its sender (the subject's cluster and replica), the time since its summary
 * arrived (the local clock only) and the status block it sent, if any. Pure.
 */
export function remoteReplicaStatus(
  received: readonly Received<ReplicaConvergence>[],
  now: number,
): RemoteReplica[] {
  return bySender(received).map((r) => ({
    clusterId: r.clusterId,
    replicaId: r.replicaId,
    reportedAgoMs: Math.max(0, now - r.receivedAt),
    ...(r.value.replicaStatus ? { status: r.value.replicaStatus } : {}),
  }));
}

/**
 * The other clusters' proxies from received convergence summaries at `now` (ms): each row with its
 * sender (the subject's cluster and replica) and its ages brought forward by the time since it
 * arrived (the local clock only). Pure.
 */
export function remoteProxyRows(
  received: readonly Received<ReplicaConvergence>[],
  now: number,
): RemoteProxies {
  const sorted = bySender(received);
  const proxies: RemoteProxyRow[] = [];
  const replicas: RemoteProxies['replicas'][number][] = [];
  for (const r of sorted) {
    const ago = Math.max(0, now - r.receivedAt);
    const rows = r.value.proxyRows ?? [];
    replicas.push({
      clusterId: r.clusterId,
      replicaId: r.replicaId,
      proxies: r.value.proxies,
      listed: rows.length,
      omitted: r.value.proxyRowsOmitted ?? Math.max(0, r.value.proxies - rows.length),
      reportedAgoMs: ago,
    });
    for (const row of rows)
      proxies.push({
        ...row,
        ...(row.syncedAgeMs !== undefined ? { syncedAgeMs: row.syncedAgeMs + ago } : {}),
        ...(row.lastAckAgeMs !== undefined ? { lastAckAgeMs: row.lastAckAgeMs + ago } : {}),
        clusterId: r.clusterId,
        replicaId: r.replicaId,
        reportedAgoMs: ago,
      });
  }
  return { proxies, replicas };
}

/** Settings of a {@link ConvergenceExchange}. */
export interface ConvergenceExchangeOptions extends TelemetryNatsOptions {
  /** This replica's summary now, and whether it changed since the last call (undefined: none yet). */
  readonly summary: () => { readonly summary: ReplicaConvergence; readonly changed: boolean } | undefined;
}

/** Publishes this replica's convergence summary on NATS and collects the other clusters' replicas'. */
export class ConvergenceExchange {
  readonly #x: PeerExchange<ReplicaConvergence>;

  readonly #now: () => number;

  private constructor(o: ConvergenceExchangeOptions) {
    this.#now = o.now;
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

  /** The other clusters' proxies, as the summaries received within the last 15 s list them. */
  remoteProxies(): RemoteProxies {
    return remoteProxyRows(this.#x.remote(), this.#now());
  }

  /** The other clusters' replicas and the state they report, from the summaries of the last 15 s. */
  remoteReplicas(): RemoteReplica[] {
    return remoteReplicaStatus(this.#x.remote(), this.#now());
  }

  close(): Promise<void> {
    return this.#x.close();
  }
}
