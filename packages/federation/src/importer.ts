/**
 * The importer: runs on every replica and merges the services exported by the other clusters of the
 * mesh into one immutable view (issue 7, items 2-4).
 *
 * Sources, merged by `(epoch, seq)` per (cluster, service): a record replaces the current one only when
 * its pair is greater, so duplicates and out-of-order deliveries never win.
 * - live: a subscription on `meridian.<mesh>.fed.*.>` (service records and heartbeats);
 * - JetStream: each cluster's KV bucket, read in full on start, when a cluster is first seen, when a
 *   heartbeat shows a gap (its contiguous seq watermark is ahead of what arrived) and when a stale
 *   cluster comes back;
 * - the local cache (`ImportCache`), loaded before NATS is reachable.
 *
 * Trust: a message is rejected and counted (`meridian_federation_messages_rejected`) when it is
 * malformed, has another protocol version, names another mesh, or its origin / namespace / hostname
 * differ from its subject (or KV bucket and key). NATS permissions stop a cluster from publishing on
 * another's subjects in the first place (see `natsFederationConfig`).
 *
 * Liveness: a cluster silent for `graceMs` is marked stale: its endpoints stay in the view with health
 * UNHEALTHY. When it is heard again, its bucket is re-read and replaces the stale copy. A silence
 * shorter than the grace period changes nothing and emits no event.
 */

import { jetstreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { Kvm } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Meter, ObservableResult } from '@opentelemetry/api';
import { type Logger, pino } from 'pino';
import { readServiceEntries } from './bucket-read.js';
import { FederationStateError, type RejectReason, WireFormatError } from './errors.js';
import { federationInstruments } from './metrics.js';
import { checkId, META_KEY, parseServiceKey, Subjects, serviceId } from './naming.js';
import {
  decodeMessage,
  encodeMessage,
  type FederatedEndpoint,
  type FederatedService,
  type FederationMessage,
  type Heartbeat,
  isNewer,
  type ServiceRecord,
} from './wire.js';

/** A service imported from another cluster, as the registry sees it. Frozen. */
export interface ImportedService {
  /** Origin cluster. */
  readonly cluster: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly service: FederatedService;
  /** The origin's endpoints; all with health UNHEALTHY while the cluster is stale. */
  readonly endpoints: readonly FederatedEndpoint[];
  /** The origin cluster has been silent for longer than the grace period. */
  readonly stale: boolean;
  /** `(epoch, seq)` of the record that last changed this entry's content. */
  readonly epoch: number;
  readonly seq: number;
}

/** An immutable snapshot of everything imported; a new object for every change. */
export interface ImportedView {
  /** Increments with every change event (starts at 0, the empty view). */
  readonly version: number;
  /** By `serviceId(cluster, namespace, hostname)`. */
  readonly services: ReadonlyMap<string, ImportedService>;
  /** Remote clusters currently stale. */
  readonly staleClusters: ReadonlySet<string>;
}

/** A reference to one imported service. */
export interface ServiceRef {
  readonly cluster: string;
  readonly namespace: string;
  readonly hostname: string;
}

/** Emitted when the view changes: which services changed (added, updated, removed or health-flipped). */
export interface ImportChange {
  readonly version: number;
  readonly view: ImportedView;
  readonly changed: readonly ServiceRef[];
  /** Clusters that became stale or live again in this change. */
  readonly clusters: readonly { cluster: string; stale: boolean }[];
}

/** Health and progress of one remote cluster (for health endpoints and debugging; not part of the view). */
export interface RemoteClusterStatus {
  readonly cluster: string;
  /** Newest epoch seen from the cluster (records older than this for unknown keys are refused). */
  readonly epoch: number;
  /** Contiguous seq watermark received in `epoch`. */
  readonly watermark: number;
  readonly stale: boolean;
  /** Milliseconds since the cluster was last heard from; undefined if never. */
  readonly heardAgoMs: number | undefined;
  /** Its bucket has been read at least once since the importer attached. */
  readonly synced: boolean;
  /** Live (not deleted) services imported from it. */
  readonly services: number;
}

/** What the importer persists in its local cache (version 1). */
export interface ImportCacheSnapshot {
  readonly v: 1;
  readonly mesh: string;
  readonly savedAt: string;
  /** Every record known, tombstones included (so a stale message cannot resurrect a deleted service). */
  readonly records: readonly ServiceRecord[];
  /** Newest epoch seen per cluster. */
  readonly epochs: Readonly<Record<string, number>>;
}

/**
 * Where an importer keeps its last imported state across restarts, so a replica that starts while
 * NATS is unreachable serves it. The replica backs it with etcd; `memoryImportCache` serves tests.
 */
export interface ImportCache {
  load(): Promise<ImportCacheSnapshot | undefined>;
  save(snapshot: ImportCacheSnapshot): Promise<void>;
}

/** An ImportCache in memory (tests; sharing state between importers of one process). */
export function memoryImportCache(): ImportCache & { readonly saved: ImportCacheSnapshot | undefined } {
  let saved: ImportCacheSnapshot | undefined;
  return {
    get saved() {
      return saved;
    },
    async load() {
      return saved === undefined ? undefined : structuredClone(saved);
    },
    async save(s) {
      saved = structuredClone(s);
    },
  };
}

/** Options of `FederationImporter`. */
export interface ImporterOptions {
  readonly mesh: string;
  /** This replica's cluster: its own records are ignored. */
  readonly localCluster: string;
  /**
   * The NATS connection, or a promise of it (e.g. `connect({ waitOnFirstConnect: true })`): the importer
   * serves its cache until it resolves.
   */
  readonly nc?: NatsConnection | Promise<NatsConnection>;
  /** Silence after which a cluster's endpoints are marked unhealthy (default 30 000 ms). */
  readonly graceMs?: number;
  /** How often staleness is checked (default min(1000, graceMs / 4) ms). */
  readonly livenessCheckMs?: number;
  /** Remote clusters to read at start even if not discovered yet (others are found via JetStream and heartbeats). */
  readonly clusters?: readonly string[];
  readonly cache?: ImportCache;
  /** Bound on one full read of a remote bucket (default 10 000 ms); a read that times out is retried. */
  readonly readTimeoutMs?: number;
  /** Delay before saving the cache after a change (default 1000 ms). */
  readonly cacheSaveDelayMs?: number;
  readonly logger?: Logger;
  readonly meter?: Meter;
}

interface ClusterState {
  readonly cluster: string;
  fence: number;
  trackEpoch: number;
  watermark: number;
  readonly pending: Set<number>;
  lastHeard: number | undefined;
  stale: boolean;
  synced: boolean;
  /** The running read (and the re-reads requested meanwhile), if any. */
  resyncing: Promise<void> | undefined;
  /** Another read was requested while one ran (with the newest heartbeat target, if any). */
  again: boolean;
  againTarget: { epoch: number; seq: number } | undefined;
  kv: KV | undefined;
  readonly ids: Set<string>;
}

type Source = 'live' | 'kv' | 'cache';

const EMPTY_VIEW: ImportedView = Object.freeze({
  version: 0,
  services: new Map<string, ImportedService>(),
  staleClusters: new Set<string>(),
});

/** Imports the other clusters' services. `start()` it, read `view`, subscribe with `onChange`. */
export class FederationImporter {
  readonly mesh: string;
  readonly localCluster: string;
  readonly graceMs: number;
  readonly #opts: ImporterOptions;
  readonly #subjects: Subjects;
  readonly #log: Logger;
  readonly #instruments: ReturnType<typeof federationInstruments>;
  readonly #clusters = new Map<string, ClusterState>();
  readonly #records = new Map<string, ServiceRecord>();
  readonly #dirty = new Set<string>();
  readonly #clusterFlips = new Map<string, boolean>();
  readonly #listeners = new Set<(c: ImportChange) => void>();
  readonly #fingerprints = new Map<string, string>();
  #view: ImportedView = EMPTY_VIEW;
  #imported = 0;
  readonly #rejected = new Map<RejectReason, number>();
  #flushScheduled = false;
  #nc: NatsConnection | undefined;
  #sub: Subscription | undefined;
  #kvm: Kvm | undefined;
  #liveness: NodeJS.Timeout | undefined;
  #saveTimer: NodeJS.Timeout | undefined;
  #started = false;
  #stopped = false;
  #ready: Promise<void> | undefined;
  readonly #gaugeCallback = (r: ObservableResult) => {
    const now = performance.now();
    for (const c of this.#clusters.values()) {
      if (c.lastHeard !== undefined)
        r.observe((now - c.lastHeard) / 1000, { cluster: c.cluster, importer: this.localCluster });
    }
  };
  readonly #staleCallback = (r: ObservableResult) => {
    let n = 0;
    for (const c of this.#clusters.values()) if (c.stale) n++;
    r.observe(n, { importer: this.localCluster });
  };

  constructor(opts: ImporterOptions) {
    checkId('mesh', opts.mesh);
    checkId('cluster', opts.localCluster);
    for (const c of opts.clusters ?? []) checkId('cluster', c);
    this.mesh = opts.mesh;
    this.localCluster = opts.localCluster;
    this.graceMs = opts.graceMs ?? 30_000;
    if (!(this.graceMs > 0)) throw new RangeError(`importer graceMs must be > 0, got ${opts.graceMs}`);
    this.#opts = opts;
    this.#subjects = new Subjects(opts.mesh);
    this.#log = (opts.logger ?? pino({ level: 'info' })).child({
      component: 'federation-importer',
      cluster: opts.localCluster,
    });
    this.#instruments = federationInstruments(opts.meter);
  }

  /** The current imported view (immutable; replaced on every change). */
  get view(): ImportedView {
    return this.#view;
  }

  /** Calls `listener` after every change of the view. Returns an unsubscribe function. */
  onChange(listener: (change: ImportChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Counts since start (the same as the metrics, without a MeterProvider): accepted live messages and rejections by reason. */
  stats(): { imported: number; rejected: Partial<Record<RejectReason, number>> } {
    return { imported: this.#imported, rejected: Object.fromEntries(this.#rejected) };
  }

  /** Status of every remote cluster known. */
  clusterStatus(): RemoteClusterStatus[] {
    const now = performance.now();
    return [...this.#clusters.values()]
      .map((c) => ({
        cluster: c.cluster,
        epoch: c.fence,
        watermark: c.watermark,
        stale: c.stale,
        heardAgoMs: c.lastHeard === undefined ? undefined : Math.round(now - c.lastHeard),
        synced: c.synced,
        services: [...c.ids].filter((id) => this.#records.get(id)?.deleted === false).length,
      }))
      .sort((a, b) => a.cluster.localeCompare(b.cluster));
  }

  /**
   * Loads the cache (if any) into the view, starts the liveness checks and attaches to NATS in the
   * background (when `nc` resolves). `ready()` resolves once NATS is attached and the initial JetStream
   * read is done.
   */
  async start(): Promise<void> {
    if (this.#started) throw new FederationStateError('importer already started');
    this.#started = true;
    if (this.#opts.cache) await this.#loadCache(this.#opts.cache);
    this.#flush();
    const every = this.#opts.livenessCheckMs ?? Math.min(1_000, Math.max(10, this.graceMs / 4));
    this.#liveness = setInterval(() => this.#checkLiveness(), every);
    this.#liveness.unref?.();
    this.#instruments.heartbeatAge.addCallback(this.#gaugeCallback);
    this.#instruments.clustersStale.addCallback(this.#staleCallback);
    const nc = this.#opts.nc;
    this.#ready = nc === undefined ? Promise.resolve() : Promise.resolve(nc).then((c) => this.#attach(c));
    this.#ready.catch((err) => this.#log.error({ err: (err as Error).message }, 'attach to NATS failed'));
  }

  /** Resolves when attached to NATS and the first read of every known cluster's bucket is done. */
  ready(): Promise<void> {
    if (!this.#ready) return Promise.reject(new FederationStateError('importer not started'));
    return this.#ready;
  }

  /** Unsubscribes, stops timers and saves the cache. The view stays readable. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#liveness) clearInterval(this.#liveness);
    if (this.#saveTimer) clearTimeout(this.#saveTimer);
    this.#instruments.heartbeatAge.removeCallback(this.#gaugeCallback);
    this.#instruments.clustersStale.removeCallback(this.#staleCallback);
    try {
      this.#sub?.unsubscribe();
    } catch {
      // connection already closed
    }
    if (this.#opts.cache) await this.#saveCache(this.#opts.cache);
  }

  // ---- NATS ------------------------------------------------------------------------------------

  async #attach(nc: NatsConnection): Promise<void> {
    if (this.#stopped) return;
    this.#nc = nc;
    this.#kvm = new Kvm(nc);
    // Subscribe first, then read JetStream: nothing published in between is missed.
    this.#sub = nc.subscribe(this.#subjects.all, {
      callback: (err, msg) => {
        if (err) this.#subError(err);
        else this.#onMsg(msg);
      },
    });
    await nc.flush();
    const t0 = performance.now();
    const names = new Set<string>(this.#opts.clusters ?? []);
    for (const c of this.#clusters.keys()) names.add(c);
    try {
      const jsm = await jetstreamManager(nc);
      const prefix = `KV_${this.#subjects.bucket('')}`;
      for await (const stream of jsm.streams.names()) {
        if (!stream.startsWith(prefix)) continue;
        const c = this.#subjects.clusterOfBucket(stream.slice(3));
        if (c) names.add(c);
      }
    } catch (err) {
      this.#log.warn(
        { err: (err as Error).message },
        'could not list federation buckets; relying on heartbeats',
      );
    }
    names.delete(this.localCluster);
    const listedMs = Math.round(performance.now() - t0);
    await Promise.all([...names].map((c) => this.#resync(c, 'start', undefined)));
    this.#flush(); // the view reflects the initial read when ready() resolves
    this.#log.info(
      {
        clusters: [...names],
        services: this.#view.services.size,
        listedMs,
        ms: Math.round(performance.now() - t0),
      },
      'federation importer attached',
    );
  }

  #subError(err: Error): void {
    this.#log.warn({ err: err.message }, 'federation subscription error');
  }

  /** Counts and logs a rejected message; returns false (`return this.#reject(...)` in handlers). */
  #reject(cluster: string, reason: RejectReason, detail: string, subject: string): false {
    this.#instruments.rejected.add(1, { cluster, reason, importer: this.localCluster });
    this.#rejected.set(reason, (this.#rejected.get(reason) ?? 0) + 1);
    this.#log.warn({ origin: cluster, reason, subject, detail }, 'federation message rejected');
    return false;
  }

  /** Handles one live message; true when it was accepted. */
  #onMsg(msg: Msg): boolean {
    if (this.#stopped) return false;
    const parsed = this.#subjects.parse(msg.subject);
    if (!parsed) return this.#reject('unknown', 'malformed', 'not a federation subject', msg.subject);
    if (parsed.cluster === this.localCluster) return false;
    let m: FederationMessage;
    try {
      m = decodeMessage(msg.data, msg.subject);
    } catch (err) {
      if (err instanceof WireFormatError)
        return this.#reject(parsed.cluster, err.reason, err.message, msg.subject);
      throw err;
    }
    if (m.mesh !== this.mesh)
      return this.#reject(parsed.cluster, 'wrong_mesh', `mesh ${JSON.stringify(m.mesh)}`, msg.subject);
    if (m.origin !== parsed.cluster)
      return this.#reject(
        parsed.cluster,
        'origin_mismatch',
        `claimed origin ${JSON.stringify(m.origin)}`,
        msg.subject,
      );
    if (parsed.kind === 'heartbeat') {
      if (m.kind !== 'heartbeat')
        return this.#reject(parsed.cluster, 'malformed', `a ${m.kind} on a heartbeat subject`, msg.subject);
      return this.#onHeartbeat(m);
    }
    if (m.kind !== 'service')
      return this.#reject(parsed.cluster, 'malformed', `a ${m.kind} on a service subject`, msg.subject);
    if (m.namespace !== parsed.namespace || m.hostname !== parsed.hostname)
      return this.#reject(
        parsed.cluster,
        'origin_mismatch',
        `record for ${m.namespace}/${m.hostname}`,
        msg.subject,
      );
    const cs = this.#cluster(m.origin);
    if (m.epoch < cs.fence && !this.#records.has(serviceId(m.origin, m.namespace, m.hostname)))
      return this.#reject(
        m.origin,
        'fenced',
        `epoch ${m.epoch} < ${cs.fence} for an unknown service`,
        msg.subject,
      );
    this.#instruments.imported.add(1, { cluster: m.origin, importer: this.localCluster });
    this.#imported++;
    this.#heard(cs);
    this.#track(cs, m.epoch, m.seq);
    this.#apply(m, 'live');
    if (!cs.synced && !cs.resyncing) void this.#resync(cs.cluster, 'discover', undefined);
    return true;
  }

  #onHeartbeat(hb: Heartbeat): boolean {
    const cs = this.#cluster(hb.origin);
    if (hb.epoch < cs.fence)
      return this.#reject(
        hb.origin,
        'fenced',
        `heartbeat epoch ${hb.epoch} < ${cs.fence}`,
        this.#subjects.heartbeat(hb.origin),
      );
    this.#instruments.imported.add(1, { cluster: hb.origin, importer: this.localCluster });
    this.#imported++;
    cs.fence = hb.epoch;
    this.#heard(cs);
    if (cs.stale) return true; // #heard started the re-read
    if (!cs.synced) {
      // A read already running covers this heartbeat; a gap left over shows in the next one.
      if (!cs.resyncing) void this.#resync(cs.cluster, 'discover', { epoch: hb.epoch, seq: hb.seq });
    } else if (hb.epoch > cs.trackEpoch || hb.seq > cs.watermark)
      void this.#resync(cs.cluster, 'gap', { epoch: hb.epoch, seq: hb.seq });
    return true;
  }

  #heard(cs: ClusterState): void {
    cs.lastHeard = performance.now();
    if (cs.stale && !cs.resyncing) void this.#resync(cs.cluster, 'return', undefined);
  }

  /** Records seq `seq` of `epoch` as received and advances the contiguous watermark. */
  #track(cs: ClusterState, epoch: number, seq: number): void {
    if (epoch > cs.fence) cs.fence = epoch;
    if (epoch > cs.trackEpoch) {
      cs.trackEpoch = epoch;
      cs.watermark = 0;
      cs.pending.clear();
    }
    if (epoch !== cs.trackEpoch || seq <= cs.watermark) return;
    cs.pending.add(seq);
    this.#advance(cs);
  }

  #advance(cs: ClusterState): void {
    while (cs.pending.delete(cs.watermark + 1)) cs.watermark++;
    for (const s of cs.pending) if (s <= cs.watermark) cs.pending.delete(s);
  }

  /**
   * Reads the whole bucket of `cluster` and merges it. One read at a time per cluster; a request
   * arriving meanwhile schedules one more read after it.
   */
  #resync(cluster: string, why: string, target: { epoch: number; seq: number } | undefined): Promise<void> {
    const cs = this.#cluster(cluster);
    if (cs.resyncing) {
      // The running read started after the subscription: it covers everything stored before it began.
      // Only a heartbeat that reports more than that (a target) needs one more read after it.
      if (target) {
        cs.again = true;
        if (!cs.againTarget || isNewer(target, cs.againTarget)) cs.againTarget = target;
      }
      return cs.resyncing;
    }
    if (!this.#kvm || this.#stopped) return Promise.resolve();
    const run = async () => {
      let w = why;
      let t = target;
      for (;;) {
        await this.#readBucket(cs, w, t);
        if (!cs.again || this.#stopped) return;
        w = 'again';
        t = cs.againTarget;
        cs.again = false;
        cs.againTarget = undefined;
      }
    };
    cs.resyncing = run().finally(() => {
      cs.resyncing = undefined;
    });
    return cs.resyncing;
  }

  /** One full read of a cluster's bucket (errors are logged: the next trigger retries). */
  async #readBucket(
    cs: ClusterState,
    why: string,
    target: { epoch: number; seq: number } | undefined,
  ): Promise<void> {
    const cluster = cs.cluster;
    const wasStale = cs.stale;
    const t0 = performance.now();
    this.#instruments.resyncs.add(1, { cluster, trigger: why, importer: this.localCluster });
    try {
      const bucket = this.#subjects.bucket(cluster);
      const where = (key: string) => `${bucket}/${key}`;
      const timeoutMs = this.#opts.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
      // One deadline for the whole read: right after a gateway link returns, a JetStream API request
      // or the consumer can stall; the next heartbeat retries a read that gave up.
      const { meta, entries } = await withDeadline(
        (async () => {
          const kv = cs.kv ?? (await this.#kvm!.open(bucket, { bindOnly: true }));
          cs.kv = kv;
          return {
            meta: await kv.get(META_KEY),
            entries: await readServiceEntries(this.#nc!, bucket, timeoutMs),
          };
        })(),
        timeoutMs,
        `reading bucket ${bucket}`,
      );
      if (meta && meta.operation === 'PUT') {
        const m = this.#decodeKv(cluster, meta.value, where(META_KEY));
        if (m && m.kind === 'epoch') {
          if (m.epoch > cs.fence) cs.fence = m.epoch;
          if (m.epoch > cs.trackEpoch) {
            cs.trackEpoch = m.epoch;
            cs.watermark = 0;
            cs.pending.clear();
          }
        } else if (m)
          this.#reject(cluster, 'malformed', `a ${m.kind} under key ${META_KEY}`, where(META_KEY));
      }
      let maxSeq = 0;
      for (const e of entries) {
        if (e.operation !== 'PUT') continue;
        const key = parseServiceKey(e.key);
        const m = this.#decodeKv(cluster, e.value, where(e.key));
        if (!m || !key) continue;
        if (m.kind !== 'service') {
          this.#reject(cluster, 'malformed', `a ${m.kind} under a service key`, where(e.key));
          continue;
        }
        if (m.namespace !== key.namespace || m.hostname !== key.hostname) {
          this.#reject(cluster, 'origin_mismatch', `record for ${m.namespace}/${m.hostname}`, where(e.key));
          continue;
        }
        if (m.epoch < cs.fence && !this.#records.has(serviceId(cluster, m.namespace, m.hostname))) {
          this.#reject(
            cluster,
            'fenced',
            `epoch ${m.epoch} < ${cs.fence} for an unknown service`,
            where(e.key),
          );
          continue;
        }
        if (m.epoch === cs.trackEpoch && m.seq > maxSeq) maxSeq = m.seq;
        this.#apply(m, 'kv');
      }
      // Everything stored before the read is now merged: seqs up to these are covered.
      let covered = maxSeq;
      if (target && target.epoch === cs.trackEpoch) covered = Math.max(covered, target.seq);
      if (covered > cs.watermark) {
        cs.watermark = covered;
        this.#advance(cs);
      }
      cs.synced = true;
      if (cs.lastHeard === undefined) cs.lastHeard = performance.now();
      if (wasStale && cs.stale) {
        cs.stale = false;
        this.#clusterFlips.set(cluster, false);
        for (const id of cs.ids) this.#dirty.add(id);
        this.#log.info({ origin: cluster }, 'remote cluster is back; state re-read from JetStream');
      }
      this.#scheduleFlush();
      this.#log.debug(
        {
          origin: cluster,
          why,
          keys: entries.length,
          watermark: cs.watermark,
          ms: Math.round(performance.now() - t0),
        },
        'resynced from JetStream',
      );
    } catch (err) {
      if (this.#stopped) return;
      this.#log.warn(
        { origin: cluster, why, err: (err as Error).message },
        'reading remote bucket failed; will retry',
      );
    }
  }

  #decodeKv(cluster: string, value: Uint8Array, where: string): FederationMessage | undefined {
    let m: FederationMessage;
    try {
      m = decodeMessage(value, where);
    } catch (err) {
      if (err instanceof WireFormatError) {
        this.#reject(cluster, err.reason, err.message, where);
        return undefined;
      }
      throw err;
    }
    if (m.mesh !== this.mesh) {
      this.#reject(cluster, 'wrong_mesh', `mesh ${JSON.stringify(m.mesh)}`, where);
      return undefined;
    }
    if (m.origin !== cluster) {
      this.#reject(cluster, 'origin_mismatch', `claimed origin ${JSON.stringify(m.origin)}`, where);
      return undefined;
    }
    return m;
  }

  // ---- state -----------------------------------------------------------------------------------

  #cluster(cluster: string): ClusterState {
    let cs = this.#clusters.get(cluster);
    if (!cs) {
      cs = {
        cluster,
        fence: 0,
        trackEpoch: 0,
        watermark: 0,
        pending: new Set(),
        lastHeard: undefined,
        stale: false,
        synced: false,
        resyncing: undefined,
        again: false,
        againTarget: undefined,
        kv: undefined,
        ids: new Set(),
      };
      this.#clusters.set(cluster, cs);
    }
    return cs;
  }

  /** Merges one record: it replaces the current one only if its (epoch, seq) is greater. */
  #apply(rec: ServiceRecord, source: Source): boolean {
    const id = serviceId(rec.origin, rec.namespace, rec.hostname);
    const cur = this.#records.get(id);
    if (cur && !isNewer(rec, cur)) return false;
    this.#records.set(id, rec);
    this.#cluster(rec.origin).ids.add(id);
    this.#dirty.add(id);
    if (source !== 'cache') this.#scheduleFlush();
    return true;
  }

  #checkLiveness(): void {
    const now = performance.now();
    for (const cs of this.#clusters.values()) {
      if (cs.stale || cs.lastHeard === undefined) continue;
      if (now - cs.lastHeard > this.graceMs) {
        cs.stale = true;
        this.#clusterFlips.set(cs.cluster, true);
        for (const id of cs.ids) this.#dirty.add(id);
        this.#log.warn(
          { origin: cs.cluster, silentMs: Math.round(now - cs.lastHeard), graceMs: this.graceMs },
          'remote cluster silent beyond the grace period: its endpoints are marked unhealthy',
        );
        this.#scheduleFlush();
      }
    }
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  /** Turns dirty ids into a new view and one change event, if anything visible changed. */
  #flush(): void {
    if (this.#stopped || (this.#dirty.size === 0 && this.#clusterFlips.size === 0)) return;
    const services = new Map(this.#view.services);
    const changed: ServiceRef[] = [];
    for (const id of this.#dirty) {
      const rec = this.#records.get(id)!;
      const stale = this.#clusters.get(rec.origin)?.stale ?? false;
      // Decoded records are canonical (fixed field order, sorted maps, endpoints sorted by the
      // exporter), so plain JSON compares content: a new leader re-exporting the same state changes nothing.
      const fp =
        rec.deleted || !rec.service
          ? undefined
          : `${stale ? 'S' : 'L'}${JSON.stringify([rec.service, rec.endpoints])}`;
      if (fp === this.#fingerprints.get(id)) continue;
      if (fp === undefined) {
        this.#fingerprints.delete(id);
        services.delete(id);
      } else {
        this.#fingerprints.set(id, fp);
        services.set(id, freezeService(rec, stale));
      }
      changed.push({ cluster: rec.origin, namespace: rec.namespace, hostname: rec.hostname });
    }
    this.#dirty.clear();
    const flips = [...this.#clusterFlips].map(([cluster, stale]) => ({ cluster, stale }));
    this.#clusterFlips.clear();
    if (changed.length === 0 && flips.length === 0) return;
    const staleClusters = new Set<string>();
    for (const c of this.#clusters.values()) if (c.stale) staleClusters.add(c.cluster);
    const view: ImportedView = Object.freeze({ version: this.#view.version + 1, services, staleClusters });
    this.#view = view;
    const change: ImportChange = Object.freeze({ version: view.version, view, changed, clusters: flips });
    for (const l of this.#listeners) {
      try {
        l(change);
      } catch (err) {
        this.#log.error({ err: (err as Error).message }, 'import change listener threw');
      }
    }
    this.#scheduleSave();
  }

  // ---- cache -----------------------------------------------------------------------------------

  async #loadCache(cache: ImportCache): Promise<void> {
    let snap: ImportCacheSnapshot | undefined;
    try {
      snap = await cache.load();
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'could not load the import cache; starting empty');
      return;
    }
    if (!snap) return;
    if (snap.v !== 1 || snap.mesh !== this.mesh) {
      this.#log.warn({ v: snap.v, mesh: snap.mesh }, 'import cache is for another version or mesh; ignored');
      return;
    }
    const now = performance.now();
    let n = 0;
    for (const r of snap.records) {
      let m: FederationMessage;
      try {
        m = decodeMessage(encodeMessage(r), 'cache');
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'invalid record in the import cache; skipped');
        continue;
      }
      if (m.kind !== 'service' || m.mesh !== this.mesh || m.origin === this.localCluster) continue;
      const cs = this.#cluster(m.origin);
      cs.lastHeard ??= now; // the grace period starts now
      if (this.#apply(m, 'cache')) n++;
    }
    for (const [c, epoch] of Object.entries(snap.epochs)) {
      if (c === this.localCluster) continue;
      const cs = this.#cluster(c);
      if (Number.isSafeInteger(epoch) && epoch > cs.fence) cs.fence = epoch;
    }
    this.#log.info({ records: n, savedAt: snap.savedAt }, 'import cache loaded');
  }

  #scheduleSave(): void {
    const cache = this.#opts.cache;
    if (!cache || this.#saveTimer || this.#stopped) return;
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined;
      void this.#saveCache(cache);
    }, this.#opts.cacheSaveDelayMs ?? 1_000);
    this.#saveTimer.unref?.();
  }

  async #saveCache(cache: ImportCache): Promise<void> {
    const epochs: Record<string, number> = {};
    for (const c of this.#clusters.values()) epochs[c.cluster] = c.fence;
    try {
      await cache.save({
        v: 1,
        mesh: this.mesh,
        savedAt: new Date().toISOString(),
        records: [...this.#records.values()],
        epochs,
      });
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'could not save the import cache');
    }
  }

  /** The NATS connection the importer is attached to, if any (for diagnostics). */
  get connection(): NatsConnection | undefined {
    return this.#nc;
  }
}

function freezeService(rec: ServiceRecord, stale: boolean): ImportedService {
  const endpoints = rec.endpoints.map((e) =>
    Object.freeze(stale ? { ...e, health: 'UNHEALTHY' as const } : { ...e }),
  );
  return Object.freeze({
    cluster: rec.origin,
    namespace: rec.namespace,
    hostname: rec.hostname,
    service: rec.service!,
    endpoints: Object.freeze(endpoints),
    stale,
    epoch: rec.epoch,
    seq: rec.seq,
  });
}

const DEFAULT_READ_TIMEOUT_MS = 10_000;

/** `work`, or a rejection naming `what` once `ms` have passed (the work itself is left to finish). */
async function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
