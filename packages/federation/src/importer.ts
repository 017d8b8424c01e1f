/**
 * The importer: runs on every replica and merges the services exported by the other clusters of the
 * mesh into one immutable view.
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
 *
 * This module is the NATS and JetStream side and the timers; the merged state and the view are in
 * import-state.ts, the view's types in import-view.ts, the local cache in import-cache.ts.
 */

import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Meter, ObservableResult } from '@opentelemetry/api';
import { type Logger, pino } from 'pino';
import { readServiceEntries } from './bucket-read.js';
import { FederationStateError, type RejectReason, WireFormatError } from './errors.js';
import { type ImportCache, loadImportCache, saveImportCache } from './import-cache.js';
import { type ClusterState, ImportState } from './import-state.js';
import type { ImportChange, ImportedView, RemoteClusterStatus } from './import-view.js';
import { federationInstruments } from './metrics.js';
import { checkId, META_KEY, parseServiceKey, Subjects } from './naming.js';
import {
  decodeMessage,
  type FederationMessage,
  type Heartbeat,
  isNewer,
  type ServiceRecord,
} from './wire.js';

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

type Source = 'live' | 'kv' | 'cache';

/** Imports the other clusters' services. `start()` it, read `view`, subscribe with `onChange`. */
export class FederationImporter {
  readonly mesh: string;
  readonly localCluster: string;
  readonly graceMs: number;
  readonly #opts: ImporterOptions;
  readonly #subjects: Subjects;
  readonly #log: Logger;
  readonly #instruments: ReturnType<typeof federationInstruments>;
  readonly #state = new ImportState();
  readonly #listeners = new Set<(c: ImportChange) => void>();
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
    for (const c of this.#state.clusters()) {
      if (c.lastHeard !== undefined)
        r.observe((now - c.lastHeard) / 1000, { cluster: c.cluster, importer: this.localCluster });
    }
  };
  readonly #staleCallback = (r: ObservableResult) => {
    let n = 0;
    for (const c of this.#state.clusters()) if (c.stale) n++;
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
    return this.#state.view;
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
    return this.#state.clusterStatus(performance.now());
  }

  /**
   * Loads the cache (if any) into the view, starts the liveness checks and attaches to NATS in the
   * background (when `nc` resolves). `ready()` resolves once NATS is attached and the initial JetStream
   * read is done.
   */
  async start(): Promise<void> {
    if (this.#started) throw new FederationStateError('importer already started');
    this.#started = true;
    if (this.#opts.cache)
      await loadImportCache(this.#opts.cache, this.#state, {
        mesh: this.mesh,
        localCluster: this.localCluster,
        log: this.#log,
      });
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
    if (this.#opts.cache) await saveImportCache(this.#opts.cache, this.#state, this.mesh, this.#log);
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
    for (const c of this.#state.clusters()) names.add(c.cluster);
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
        services: this.#state.view.services.size,
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
    if (m.epoch < cs.fence && !this.#state.has(m.origin, m.namespace, m.hostname))
      return this.#reject(
        m.origin,
        'fenced',
        `epoch ${m.epoch} < ${cs.fence} for an unknown service`,
        msg.subject,
      );
    this.#instruments.imported.add(1, { cluster: m.origin, importer: this.localCluster });
    this.#imported++;
    this.#heard(cs);
    this.#state.track(cs, m.epoch, m.seq);
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
        if (m.epoch < cs.fence && !this.#state.has(cluster, m.namespace, m.hostname)) {
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
        this.#state.advance(cs);
      }
      cs.synced = true;
      if (cs.lastHeard === undefined) cs.lastHeard = performance.now();
      if (wasStale && cs.stale) {
        this.#state.markLive(cs);
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
    return this.#state.cluster(cluster);
  }

  /** Merges one record (see `ImportState.apply`); a merge from NATS or JetStream schedules a flush. */
  #apply(rec: ServiceRecord, source: Source): boolean {
    if (!this.#state.apply(rec)) return false;
    if (source !== 'cache') this.#scheduleFlush();
    return true;
  }

  #checkLiveness(): void {
    for (const { cluster, silentMs } of this.#state.expireSilent(performance.now(), this.graceMs)) {
      this.#log.warn(
        { origin: cluster, silentMs, graceMs: this.graceMs },
        'remote cluster silent beyond the grace period: its endpoints are marked unhealthy',
      );
      this.#scheduleFlush();
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
    if (this.#stopped) return;
    const change = this.#state.flush();
    if (change === undefined) return;
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

  #scheduleSave(): void {
    const cache = this.#opts.cache;
    if (!cache || this.#saveTimer || this.#stopped) return;
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined;
      void saveImportCache(cache, this.#state, this.mesh, this.#log);
    }, this.#opts.cacheSaveDelayMs ?? 1_000);
    this.#saveTimer.unref?.();
  }

  /** The NATS connection the importer is attached to, if any (for diagnostics). */
  get connection(): NatsConnection | undefined {
    return this.#nc;
  }
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
