/**
 * Convergence to the ACK, cluster-wide: how long a config revision takes to be *held* by every
 * proxy (istiod stops its clock when it has sent; Meridian stops it at the proxy's ACK).
 *
 * Each replica follows its own proxies (xds' `onProxySynced`: a proxy has ACKed everything the
 * current push context gives it, or was not affected by the change) and publishes a summary of the
 * current revision under `convergence/<replica id>` (its own lease, at most once a second): how many
 * proxies it serves, how many hold the revision, each synced proxy's time from the change, and the
 * proxies that do not hold it yet. Any replica answers `/debug/convergence` by merging its cluster's
 * summaries (pure: {@link mergeConvergence}).
 *
 * Across clusters (where federation links them over NATS), each replica also publishes its summary
 * on NATS and keeps the other clusters' replicas' (telemetry-federation.ts, {@link
 * ConvergenceExchange}), so `/debug/convergence` answers for the mesh too
 * ({@link mergeMeshConvergence}): each cluster against its own newest revision (revisions are per
 * cluster: each has its own etcd), and the mesh's totals.
 */
import { Collection, type Lease, type Mirror, type Store } from '@meridian/store';
import type { ProxySyncStatus, XdsServer } from '@meridian/xds';
import type { Logger } from 'pino';
import { ConvergenceExchange } from './telemetry-federation.js';

/** Keyspace-relative prefix of the replicas' convergence summaries. */
export const CONVERGENCE_PREFIX = 'convergence/';

/** The most proxies named as behind in a summary and in a report. */
const MAX_BEHIND = 20;
/** The most proxy rows one replica shares with the other clusters (the rest are counted). */
export const MAX_PROXY_ROWS = 200;

/**
 * One proxy as a replica shares it with the other clusters (for their dashboards' Proxies page):
 * what `/debug/syncz` says of it, without addresses, identities, nonces or error texts.
 */
export interface ProxyRow {
  /** istioctl's name (`<pod>.<namespace>` or the node id). */
  readonly proxy: string;
  readonly namespace: string;
  readonly kind: string;
  readonly variant: string;
  /** Per type (`cds`, `lds`, `eds`, `rds`, ...): its sync state (SYNCED, STALE, ERROR, NOT SENT). */
  readonly types: Readonly<Record<string, string>>;
  /** The newest version it has ACKed in full, and how long ago it reached it (ms, at `at`). */
  readonly syncedVersion?: string;
  readonly syncedAgeMs?: number;
  /** Milliseconds since its last ACK of any type, at `at`; absent before its first. */
  readonly lastAckAgeMs?: number;
  /** Its resources could not be built from the current snapshot (it keeps its last good config). */
  readonly pushFailed?: boolean;
}

/** The most characters of a text of a replica's status block (locality, store health, version). */
export const MAX_STATUS_TEXT = 200;

/**
 * A replica's own state as it shares it with the other clusters (their dashboards' Mesh page): what
 * its `/debug/replica` says of its leadership, locality, load and store, no address.
 */
export interface ReplicaStatus {
  /** It leads its cluster (`isLeader`). */
  readonly leader: boolean;
  /** `region/zone/subzone` ('' when none). */
  readonly locality: string;
  /** Connected proxies (its load). */
  readonly connections: number;
  /** Active workload registrations. */
  readonly registrations?: number;
  /** Its store health as `/readyz` words it (`ok`, `degraded: ...`). */
  readonly store: string;
  /** meridiand's version. */
  readonly version?: string;
  /** The etcd revision of its current push context. */
  readonly snapshotRevision?: number;
}

const statusText = (v: unknown): string | undefined =>
  typeof v === 'string' ? v.slice(0, MAX_STATUS_TEXT) : undefined;
const statusCount = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;

/**
 * The status block of a replica's `/debug/replica` answer: only leadership, locality, connected
 * proxies, registrations, store health, version and push-context revision (texts cut to
 * {@link MAX_STATUS_TEXT}); undefined when it is not an object.
 */
export function replicaStatus(info: unknown): ReplicaStatus | undefined {
  if (info === null || typeof info !== 'object' || Array.isArray(info)) return undefined;
  const i = info as Record<string, unknown>;
  const registrations = statusCount(i.registrations);
  const version = statusText(i.version);
  const snapshotRevision = statusCount(i.snapshotRevision);
  return {
    leader: i.isLeader === true,
    locality: statusText(i.locality) ?? '',
    connections: statusCount(i.connections) ?? 0,
    ...(registrations !== undefined ? { registrations } : {}),
    store: statusText(i.store) ?? 'unknown',
    ...(version !== undefined ? { version } : {}),
    ...(snapshotRevision !== undefined ? { snapshotRevision } : {}),
  };
}

/** Rows of a replica's proxies, the first {@link MAX_PROXY_ROWS}: see {@link proxyRows}. */
export interface ProxyRows {
  readonly rows: readonly ProxyRow[];
  /** Proxies not listed (beyond the bound). */
  readonly omitted: number;
}

/**
 * The rows a replica shares of its proxies: those that do not hold `version` or have a type in
 * ERROR or a failed push first, then the others, each part by name; at most `max`, the rest counted.
 */
export function proxyRows(
  status: readonly ProxySyncStatus[],
  version: string,
  max = MAX_PROXY_ROWS,
): ProxyRows {
  const troubled = (s: ProxySyncStatus) =>
    s.syncedVersion !== version ||
    s.pushError !== undefined ||
    Object.values(s.types).some((t) => t.state === 'ERROR');
  const sorted = [...status].sort((a, b) => {
    const ta = troubled(a);
    if (ta !== troubled(b)) return ta ? -1 : 1;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
  const rows = sorted.slice(0, Math.max(0, max)).map((s): ProxyRow => {
    const acks = Object.values(s.types)
      .map((t) => t.lastAckAgeMs)
      .filter((a): a is number => a !== undefined);
    return {
      proxy: s.name,
      namespace: s.namespace,
      kind: s.kind,
      variant: s.variant,
      types: Object.fromEntries(Object.entries(s.types).map(([k, t]) => [k, t.state])),
      ...(s.syncedVersion !== undefined ? { syncedVersion: s.syncedVersion } : {}),
      ...(s.syncedAgeMs !== undefined ? { syncedAgeMs: s.syncedAgeMs } : {}),
      ...(acks.length > 0 ? { lastAckAgeMs: Math.min(...acks) } : {}),
      ...(s.pushError ? { pushFailed: true } : {}),
    };
  });
  return { rows, omitted: sorted.length - rows.length };
}

/** One replica's proxies against its current config revision. */
export interface ReplicaConvergence {
  readonly replicaId: string;
  readonly clusterId: string;
  /** The etcd revision of the current push context. */
  readonly revision: number;
  /** The push context's version (`<revision>` or `<revision>.<n>` for rebuilds at one revision). */
  readonly version: string;
  /** When the replica first saw the change (ISO time). */
  readonly changedAt: string;
  readonly proxies: number;
  readonly synced: number;
  /** Per synced proxy, milliseconds from the change to its sync, ascending. */
  readonly syncMs: readonly number[];
  /** Proxies that do not hold the revision yet (at most 20): name, and the version they hold. */
  readonly behind: readonly { readonly proxy: string; readonly holds: string | undefined }[];
  /** When the summary was written (ISO time). */
  readonly at: string;
  /**
   * Only in the summary shared over NATS (not in etcd: within a cluster the dashboard asks each
   * member): its proxies' rows ({@link proxyRows}), ages as of sending.
   */
  readonly proxyRows?: readonly ProxyRow[];
  /** Proxies not in `proxyRows` (beyond {@link MAX_PROXY_ROWS}). */
  readonly proxyRowsOmitted?: number;
  /** Only in the summary shared over NATS: the replica's own state ({@link replicaStatus}). */
  readonly replicaStatus?: ReplicaStatus;
}

/** The cluster's view of its newest revision (the answer of `/debug/convergence`). */
export interface ConvergenceReport {
  readonly revision: number | undefined;
  readonly proxies: number;
  readonly synced: number;
  /** synced / proxies, 0..1 (1 with no proxy). */
  readonly fraction: number;
  /** Milliseconds from the change until 50% / 99% / all proxies held it; absent until reached. */
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  readonly allMs?: number;
  /** Replicas not yet on that revision (their summaries count toward the previous one). */
  readonly replicasBehind: readonly { readonly replicaId: string; readonly revision: number }[];
  readonly behind: readonly { readonly proxy: string; readonly replicaId: string; readonly holds?: string }[];
  /** One line for a person. */
  readonly summary: string;
}

/** Merges replica summaries into the cluster's view of its newest revision. Pure. */
export function mergeConvergence(entries: readonly ReplicaConvergence[]): ConvergenceReport {
  if (entries.length === 0)
    return {
      revision: undefined,
      proxies: 0,
      synced: 0,
      fraction: 1,
      replicasBehind: [],
      behind: [],
      summary: 'no replica has published convergence yet',
    };
  const revision = Math.max(...entries.map((e) => e.revision));
  const current = entries.filter((e) => e.revision === revision);
  const replicasBehind = entries
    .filter((e) => e.revision !== revision)
    .map((e) => ({ replicaId: e.replicaId, revision: e.revision }));
  let proxies = 0;
  let synced = 0;
  const times: number[] = [];
  const behind: { proxy: string; replicaId: string; holds?: string }[] = [];
  for (const e of current) {
    proxies += e.proxies;
    synced += e.synced;
    times.push(...e.syncMs);
    for (const b of e.behind)
      if (behind.length < MAX_BEHIND)
        behind.push({ proxy: b.proxy, replicaId: e.replicaId, ...(b.holds ? { holds: b.holds } : {}) });
  }
  // Proxies of replicas still on an older revision have not reached this one either.
  for (const e of entries) if (e.revision !== revision) proxies += e.proxies;
  times.sort((a, b) => a - b);
  const at = (q: number): number | undefined => {
    const need = Math.max(1, Math.ceil(q * proxies));
    return times.length >= need ? times[need - 1] : undefined;
  };
  const fraction = proxies === 0 ? 1 : synced / proxies;
  const p50Ms = at(0.5);
  const p99Ms = at(0.99);
  const allMs = proxies > 0 && synced >= proxies ? times[times.length - 1] : undefined;
  const pct = (fraction * 100).toFixed(fraction === 1 ? 0 : 1);
  const summary =
    proxies === 0
      ? `revision ${revision}: no proxies connected`
      : `revision ${revision} reached ${pct}% of ${proxies} proxies${
          p99Ms !== undefined ? `; 99% after ${(p99Ms / 1000).toFixed(2)} s` : ''
        }${synced < proxies ? `; ${proxies - synced} have not` : ''}`;
  return {
    revision,
    proxies,
    synced,
    fraction,
    ...(p50Ms !== undefined ? { p50Ms } : {}),
    ...(p99Ms !== undefined ? { p99Ms } : {}),
    ...(allMs !== undefined ? { allMs } : {}),
    replicasBehind,
    behind,
    summary,
  };
}

/** One cluster's part of a {@link MeshConvergenceReport}. */
export interface ClusterConvergence extends ConvergenceReport {
  readonly clusterId: string;
  /** How many replicas' summaries the cluster's report merges. */
  readonly replicas: number;
}

/** The mesh's view: every cluster against its own newest revision. */
export interface MeshConvergenceReport {
  /** Per cluster, by cluster id. */
  readonly clusters: readonly ClusterConvergence[];
  readonly proxies: number;
  /** Proxies holding their cluster's newest revision. */
  readonly synced: number;
  readonly fraction: number;
  /**
   * Milliseconds, over the mesh's proxies, from their cluster's change to their ACK, until 50% /
   * 99% of the mesh's proxies held their cluster's newest revision; absent until reached.
   */
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  /** Proxies behind, across clusters (at most 20). */
  readonly behind: readonly {
    readonly proxy: string;
    readonly clusterId: string;
    readonly replicaId: string;
    readonly holds?: string;
  }[];
  readonly summary: string;
}

/** Merges replica summaries of any clusters into the mesh's view (each cluster merged on its own). Pure. */
export function mergeMeshConvergence(entries: readonly ReplicaConvergence[]): MeshConvergenceReport {
  const byCluster = new Map<string, ReplicaConvergence[]>();
  for (const e of entries) {
    const list = byCluster.get(e.clusterId);
    if (list) list.push(e);
    else byCluster.set(e.clusterId, [e]);
  }
  const clusters: ClusterConvergence[] = [...byCluster.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([clusterId, list]) => ({ clusterId, replicas: list.length, ...mergeConvergence(list) }));
  let proxies = 0;
  let synced = 0;
  const times: number[] = [];
  const behind: MeshConvergenceReport['behind'][number][] = [];
  for (const c of clusters) {
    proxies += c.proxies;
    synced += c.synced;
    for (const b of c.behind) if (behind.length < MAX_BEHIND) behind.push({ ...b, clusterId: c.clusterId });
  }
  for (const [clusterId, list] of byCluster) {
    const revision = clusters.find((c) => c.clusterId === clusterId)?.revision;
    for (const e of list) if (e.revision === revision) times.push(...e.syncMs);
  }
  times.sort((a, b) => a - b);
  const at = (q: number): number | undefined => {
    const need = Math.max(1, Math.ceil(q * proxies));
    return proxies > 0 && times.length >= need ? times[need - 1] : undefined;
  };
  const p50Ms = at(0.5);
  const p99Ms = at(0.99);
  const fraction = proxies === 0 ? 1 : synced / proxies;
  const pct = (fraction * 100).toFixed(fraction === 1 ? 0 : 1);
  const summary =
    clusters.length === 0
      ? 'no replica has published convergence yet'
      : `${clusters.length} cluster${clusters.length === 1 ? '' : 's'}: ${pct}% of ${proxies} proxies hold their cluster's newest revision${
          p99Ms !== undefined ? `; 99% after ${(p99Ms / 1000).toFixed(2)} s` : ''
        }${synced < proxies ? `; ${proxies - synced} have not` : ''} (${clusters
          .map((c) => `${c.clusterId}: ${c.summary}`)
          .join('; ')})`;
  return {
    clusters,
    proxies,
    synced,
    fraction,
    ...(p50Ms !== undefined ? { p50Ms } : {}),
    ...(p99Ms !== undefined ? { p99Ms } : {}),
    behind,
    summary,
  };
}

/** A proxy of another cluster, as its replica's summary received over NATS lists it. */
export interface RemoteProxyRow extends ProxyRow {
  /** The sending cluster and replica, from the NATS subject (never the body's claim). */
  readonly clusterId: string;
  readonly replicaId: string;
  /** Milliseconds since the summary was received (its ages are brought forward by as much). */
  readonly reportedAgoMs: number;
}

/** The other clusters' proxies known from their replicas' summaries. */
export interface RemoteProxies {
  /** By cluster, then replica, in each replica's order (troubled first, then by name). */
  readonly proxies: readonly RemoteProxyRow[];
  /** Per reporting replica: its proxies, how many its summary lists and how many it leaves out. */
  readonly replicas: readonly {
    readonly clusterId: string;
    readonly replicaId: string;
    readonly proxies: number;
    readonly listed: number;
    readonly omitted: number;
    readonly reportedAgoMs: number;
  }[];
}

/** A replica of another cluster, as its summary received over NATS reports it. */
export interface RemoteReplica {
  /** From the NATS subject (never the body's claim). */
  readonly clusterId: string;
  readonly replicaId: string;
  /** Milliseconds since the summary was received. */
  readonly reportedAgoMs: number;
  /** Absent when the replica sends none (an older version). */
  readonly status?: ReplicaStatus;
}

/** Where a tracker shares its summary with the other clusters (federation's NATS). */
export interface ConvergenceFederation {
  readonly natsUrls: readonly string[];
  readonly natsCreds: string;
  readonly meshId: string;
  /** The replica's `/debug/replica` answer now: its status block ({@link replicaStatus}) is shared. */
  readonly status?: () => unknown;
}

/** Follows this replica's proxies and publishes its summary; reads the cluster's. */
export class ConvergenceTracker {
  #revision = 0;
  #version = '';
  #changedAt = Date.now();
  /** Milliseconds from the change to each proxy's sync, for the current version. */
  #syncMs: number[] = [];
  #dirty = true;
  #lease: Lease | undefined;
  #exchange: ConvergenceExchange | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #off: () => void;

  private constructor(
    private readonly store: Store,
    private readonly xds: XdsServer,
    private readonly replicaId: string,
    private readonly clusterId: string,
    private readonly entries: Mirror<ReplicaConvergence>,
    private readonly log: Logger,
  ) {
    this.#off = xds.onProxySynced((_conn, version) => {
      if (version !== this.#version) return;
      this.#syncMs.push(Math.max(0, Date.now() - this.#changedAt));
      this.#dirty = true;
    });
  }

  /**
   * Starts following `xds`'s proxies; with `federation` (NATS URLs given), also shares the summary
   * with the other clusters.
   */
  static async open(
    store: Store,
    xds: XdsServer,
    ids: { replicaId: string; clusterId: string },
    log: Logger,
    federation?: ConvergenceFederation,
  ): Promise<ConvergenceTracker> {
    const entries = await new Collection<ReplicaConvergence>(store, CONVERGENCE_PREFIX).mirror();
    const t = new ConvergenceTracker(store, xds, ids.replicaId, ids.clusterId, entries, log);
    if (federation && federation.natsUrls.length > 0) {
      let sent = '';
      const { status: statusOf, ...nats } = federation;
      t.#exchange = ConvergenceExchange.start({
        ...nats,
        ...ids,
        now: Date.now,
        log,
        summary: () => {
          if (t.#version === '') return undefined;
          const status = t.xds.syncStatus();
          const { rows, omitted } = proxyRows(status, t.#version);
          const own = statusOf ? replicaStatus(statusOf()) : undefined;
          const summary: ReplicaConvergence = {
            ...t.#summaryOf(status),
            proxyRows: rows,
            proxyRowsOmitted: omitted,
            ...(own ? { replicaStatus: own } : {}),
          };
          // Changed: anything but the time and the ages (those are sent at least every 5 s).
          const key = JSON.stringify({
            ...summary,
            at: '',
            proxyRows: rows.map((r) => ({ ...r, syncedAgeMs: undefined, lastAckAgeMs: undefined })),
          });
          const changed = key !== sent;
          sent = key;
          return { summary, changed };
        },
      });
    }
    t.#schedule();
    return t;
  }

  /** A new push context: `changedAt` is when its change was first seen (wall clock ms). */
  pushed(revision: number, version: string, changedAt: number): void {
    if (version === this.#version) return;
    this.#revision = revision;
    this.#version = version;
    this.#changedAt = changedAt;
    this.#syncMs = [];
    this.#dirty = true;
  }

  /** This replica's summary now. */
  summary(): ReplicaConvergence {
    return this.#summaryOf(this.xds.syncStatus());
  }

  #summaryOf(status: readonly ProxySyncStatus[]): ReplicaConvergence {
    const behind = status
      .filter((s) => s.syncedVersion !== this.#version)
      .slice(0, MAX_BEHIND)
      .map((s) => ({ proxy: s.name, holds: s.syncedVersion }));
    const synced = status.length - status.filter((s) => s.syncedVersion !== this.#version).length;
    return {
      replicaId: this.replicaId,
      clusterId: this.clusterId,
      revision: this.#revision,
      version: this.#version,
      changedAt: new Date(this.#changedAt).toISOString(),
      proxies: status.length,
      synced,
      syncMs: [...this.#syncMs].sort((a, b) => a - b).slice(0, synced),
      behind,
      at: new Date().toISOString(),
    };
  }

  /** The cluster's view: every replica's published summary, this one's current. */
  report(): ConvergenceReport {
    const others = this.entries
      .list()
      .map((kv) => kv.value)
      .filter((e) => e.replicaId !== this.replicaId);
    return mergeConvergence([...others, this.summary()]);
  }

  /**
   * The mesh's view: this cluster's summaries (etcd, this replica's current) and the other
   * clusters' replicas' received over NATS in the last 15 s (only this cluster without federation).
   */
  meshReport(): MeshConvergenceReport {
    const local = this.entries
      .list()
      .map((kv) => kv.value)
      .filter((e) => e.replicaId !== this.replicaId);
    const remote = (this.#exchange?.remote() ?? []).filter((e) => e.clusterId !== this.clusterId);
    return mergeMeshConvergence([...local, this.summary(), ...remote]);
  }

  /**
   * The other clusters' replicas' proxies, as their summaries received over NATS in the last 15 s
   * list them (ages brought forward to now); none without federation.
   */
  remoteProxies(): RemoteProxies {
    return this.#exchange?.remoteProxies() ?? { proxies: [], replicas: [] };
  }

  /**
   * The other clusters' replicas with the state they report (leader, locality, load, store), as
   * their summaries received over NATS in the last 15 s carry it; none without federation.
   */
  remoteReplicas(): RemoteReplica[] {
    return this.#exchange?.remoteReplicas() ?? [];
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#publish().finally(() => this.#schedule()), 1000);
    this.#timer.unref();
  }

  #publishedAt = 0;

  async #publish(): Promise<void> {
    // When something changed, and at least every 10 s (the entry's lease is 15 s).
    if (this.#version === '' || (!this.#dirty && Date.now() - this.#publishedAt < 10_000)) return;
    this.#dirty = false;
    try {
      this.#lease ??= await this.store.grantLease(15);
      await this.store.put(
        `${CONVERGENCE_PREFIX}${this.replicaId}`,
        new TextEncoder().encode(JSON.stringify(this.summary())),
        { lease: this.#lease.id },
      );
      this.#publishedAt = Date.now();
    } catch (error) {
      this.#dirty = true;
      this.#lease = undefined;
      this.log.debug({ err: error }, 'could not publish convergence');
    }
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#off();
    await this.#exchange?.close();
    await this.entries.close();
    await this.#lease?.revoke().catch(() => this.#lease?.release());
  }
}
