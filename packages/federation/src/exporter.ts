/**
 * The exporter: runs on the elected leader replica of a cluster and publishes the cluster's exported
 * services. For every change it
 *   1. writes a ServiceRecord to the cluster's JetStream KV bucket (`meridian_fed_<mesh>_<cluster>`,
 *      key `svc.<namespace>.<hostname>`) with a compare-and-set on the key's last revision, then
 *   2. publishes the same bytes on `meridian.<mesh>.fed.<cluster>.svc.<namespace>.<hostname>`.
 * A record is published only once it is durable, so a late joiner reading the bucket never sees less
 * than a live subscriber saw. Heartbeats (`...<cluster>.hb`) carry the epoch and the contiguous seq
 * watermark, which importers use for liveness and to detect lost messages.
 *
 * Fencing: `start()` writes the epoch marker (key `meta`) and refuses to run when the bucket holds an
 * epoch >= its own; a write that finds a newer epoch on its key stops the exporter (ExporterFencedError,
 * reported to `onFenced`). A new leader must call `sync()` with the full local state: it rewrites every
 * exported service with the new epoch and writes tombstones for keys it no longer exports.
 */
import type { KV } from '@nats-io/kv';
import { Kvm, KvWatchInclude } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Meter } from '@opentelemetry/api';
import { type Logger, pino } from 'pino';
import { readServiceEntries } from './bucket-read.js';
import { sortEndpoints, stateFingerprint } from './canonical.js';
import { ExporterFencedError, FederationNatsError, FederationStateError, WireFormatError } from './errors.js';
import { federationInstruments } from './metrics.js';
import { checkId, META_KEY, parseServiceKey, Subjects, serviceKey } from './naming.js';
import { type ExportSelection, exportDecision } from './select.js';
import {
  decodeMessage,
  type EpochMarker,
  type ExportedServiceState,
  encodeMessage,
  type Heartbeat,
  PROTOCOL_VERSION,
  type ServiceRecord,
} from './wire.js';

/** Options of `FederationExporter.start`. */
export interface ExporterOptions {
  /** A connection authorized as this cluster's federation user (see `natsFederationConfig`). */
  readonly nc: NatsConnection;
  readonly mesh: string;
  readonly cluster: string;
  /** Leadership epoch, strictly greater than every earlier leader's (e.g. the election's etcd revision). */
  readonly epoch: number;
  /** Which services to export (default `{ mode: 'all' }`). */
  readonly selection?: ExportSelection;
  /** Heartbeat interval (default 2000 ms). Keep it well under the importers' grace period. */
  readonly heartbeatIntervalMs?: number;
  /** KV bucket settings used when the bucket does not exist yet. */
  readonly bucket?: {
    /** JetStream replicas (default 1; use 3 in production NATS clusters). */
    readonly replicas?: number;
    /** Versions kept per key (default 5). */
    readonly history?: number;
    /** Placement (default: the NATS cluster of the server the exporter is connected to). */
    readonly placement?: { cluster?: string; tags?: string[] };
  };
  /** Retry delay after a failed JetStream write (default 250 ms, doubling up to 5 s). */
  readonly retryDelayMs?: number;
  readonly logger?: Logger;
  readonly meter?: Meter;
}

/** Counts of one `sync()`. */
export interface SyncResult {
  /** Records written (new or changed services). */
  readonly written: number;
  /** Tombstones written (services no longer exported). */
  readonly deleted: number;
  readonly unchanged: number;
  /** Services not exported by the selection (with the reason, for debugging). */
  readonly skipped: readonly { namespace: string; hostname: string; reason: string }[];
}

/** What the exporter currently holds for one key. */
interface KeyState {
  /** Last KV revision of the key known to this exporter (0: key absent). */
  revision: number;
  /** Fingerprint of the last state written by this exporter (undefined: not written in this epoch). */
  written: string | undefined;
  /** True when the newest record in the bucket is a live (not deleted) service. */
  live: boolean;
  /** Desired state (undefined: tombstone) waiting to be written, or null: nothing pending. */
  desired: ExportedServiceState | undefined | null;
  /** The write loop for this key is running. */
  running: boolean;
  /** Resolvers of callers waiting for the key to be flushed. */
  waiters: (() => void)[];
}

/** Publishes this cluster's services to the federation. Create with `FederationExporter.start`. */
export class FederationExporter {
  readonly mesh: string;
  readonly cluster: string;
  readonly epoch: number;
  readonly #nc: NatsConnection;
  readonly #subjects: Subjects;
  readonly #kv: KV;
  readonly #selection: ExportSelection;
  readonly #log: Logger;
  readonly #instruments: ReturnType<typeof federationInstruments>;
  readonly #retryDelayMs: number;
  readonly #heartbeatIntervalMs: number;
  readonly #keys = new Map<string, KeyState>();
  readonly #inflight = new Set<number>();
  readonly #fencedListeners = new Set<(err: ExporterFencedError) => void>();
  #seq = 0;
  #heartbeat: NodeJS.Timeout | undefined;
  #epochWatch: { stop(): void } | undefined;
  #stopped = false;
  #fenced: ExporterFencedError | undefined;

  private constructor(opts: ExporterOptions, kv: KV) {
    this.mesh = opts.mesh;
    this.cluster = opts.cluster;
    this.epoch = opts.epoch;
    this.#nc = opts.nc;
    this.#subjects = new Subjects(opts.mesh);
    this.#kv = kv;
    this.#selection = opts.selection ?? { mode: 'all' };
    this.#log = (opts.logger ?? pino({ level: 'info' })).child({
      component: 'federation-exporter',
      cluster: opts.cluster,
      epoch: opts.epoch,
    });
    this.#instruments = federationInstruments(opts.meter);
    this.#retryDelayMs = opts.retryDelayMs ?? 250;
    this.#heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 2_000;
  }

  /**
   * Opens (or creates) the cluster's bucket, fences earlier epochs by writing the epoch marker, loads
   * the keys already in the bucket (so `sync` can tombstone what is no longer exported) and starts the
   * heartbeats. Throws ExporterFencedError when the bucket already holds an epoch >= `epoch`.
   */
  static async start(opts: ExporterOptions): Promise<FederationExporter> {
    checkId('mesh', opts.mesh);
    checkId('cluster', opts.cluster);
    if (!Number.isSafeInteger(opts.epoch) || opts.epoch < 1)
      throw new RangeError(`exporter epoch must be a positive safe integer, got ${opts.epoch}`);
    const subjects = new Subjects(opts.mesh);
    const bucketName = subjects.bucket(opts.cluster);
    let kv: KV;
    try {
      const b = opts.bucket ?? {};
      kv = await new Kvm(opts.nc).create(bucketName, {
        history: b.history ?? 5,
        replicas: b.replicas ?? 1,
        description: `Meridian federation state: mesh ${opts.mesh}, cluster ${opts.cluster}`,
        ...(b.placement
          ? { placement: { cluster: b.placement.cluster ?? '', tags: b.placement.tags ?? [] } }
          : {}),
      });
    } catch (err) {
      throw new FederationNatsError(`open KV bucket ${bucketName}`, opts.cluster, err);
    }
    const exporter = new FederationExporter(opts, kv);
    await exporter.#claimEpoch();
    await exporter.#loadKeys();
    exporter.#startHeartbeats();
    await exporter.#watchEpoch();
    exporter.#log.info({ bucket: bucketName, keys: exporter.#keys.size }, 'federation exporter started');
    return exporter;
  }

  /** The highest seq such that every record with seq <= it is stored and published. */
  get watermark(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const s of this.#inflight) if (s < min) min = s;
    return min === Number.POSITIVE_INFINITY ? this.#seq : min - 1;
  }

  /** Set when the exporter was fenced by a newer epoch (it has stopped). */
  get fenced(): ExporterFencedError | undefined {
    return this.#fenced;
  }

  /** Services currently exported (live keys in the bucket, as far as this exporter knows). */
  get exportedCount(): number {
    let n = 0;
    for (const k of this.#keys.values()) if (k.live) n++;
    return n;
  }

  /** Calls `listener` once if a newer epoch fences this exporter. Returns an unsubscribe function. */
  onFenced(listener: (err: ExporterFencedError) => void): () => void {
    this.#fencedListeners.add(listener);
    return () => this.#fencedListeners.delete(listener);
  }

  /**
   * Makes the exported state equal to `states` (the cluster's full local service list): services the
   * selection exports and whose content changed since this exporter last wrote them are written;
   * exported keys missing from `states` (or no longer selected) get tombstones. Resolves when every
   * resulting write is durable and published.
   */
  async sync(states: Iterable<ExportedServiceState>): Promise<SyncResult> {
    this.#assertRunning();
    const desired = new Map<string, ExportedServiceState>();
    const skipped: { namespace: string; hostname: string; reason: string }[] = [];
    const invalid = new Set<string>();
    for (const s of states) {
      const d = exportDecision(s.service, this.#selection);
      if (!d.exported) {
        skipped.push({ namespace: s.service.namespace, hostname: s.service.hostname, reason: d.reason });
        continue;
      }
      const key = serviceKey(s.service.namespace, s.service.hostname);
      try {
        this.#validate(s);
      } catch (err) {
        if (!(err instanceof WireFormatError)) throw err;
        // Bad input: rejected, and whatever was exported before for this service stays.
        invalid.add(key);
        skipped.push({ namespace: s.service.namespace, hostname: s.service.hostname, reason: err.message });
        this.#log.warn({ key, err: err.message }, 'service not exported: invalid');
        continue;
      }
      desired.set(key, s);
    }
    let written = 0;
    let deleted = 0;
    let unchanged = 0;
    const waits: Promise<void>[] = [];
    for (const [key, s] of desired) {
      const st = this.#keys.get(key);
      if (st && st.desired === null && st.written === stateFingerprint(s)) {
        unchanged++;
        continue;
      }
      written++;
      waits.push(this.#enqueue(key, s));
    }
    for (const [key, st] of this.#keys) {
      if (desired.has(key) || invalid.has(key)) continue;
      if (!st.live && st.desired === null) continue;
      if (st.desired === undefined) continue; // tombstone already pending
      deleted++;
      waits.push(this.#enqueue(key, undefined));
    }
    await Promise.all(waits);
    this.#throwIfFenced();
    if (skipped.length > 0) this.#log.debug({ skipped }, 'services not exported by the selection');
    return { written, deleted, unchanged, skipped };
  }

  /**
   * Throws WireFormatError (naming the field) unless `state` makes a valid record of this cluster:
   * DNS names, port ranges, every endpoint's `cluster` equal to this exporter's cluster, ...
   */
  #validate(state: ExportedServiceState): void {
    const { namespace, hostname } = state.service;
    const probe: ServiceRecord = {
      v: PROTOCOL_VERSION,
      kind: 'service',
      mesh: this.mesh,
      origin: this.cluster,
      epoch: this.epoch,
      seq: 1,
      namespace,
      hostname,
      deleted: false,
      service: state.service,
      endpoints: state.endpoints,
      exportedAt: '',
    };
    decodeMessage(encodeMessage(probe), `export of ${namespace}/${hostname}`);
  }

  /**
   * Exports one service (if the selection allows it; otherwise removes it). Resolves once published.
   * Throws WireFormatError for an invalid service (the previous export stays).
   */
  async upsert(state: ExportedServiceState): Promise<void> {
    this.#assertRunning();
    const key = serviceKey(state.service.namespace, state.service.hostname);
    if (!exportDecision(state.service, this.#selection).exported)
      return this.remove(state.service.namespace, state.service.hostname);
    this.#validate(state);
    const st = this.#keys.get(key);
    if (st && st.desired === null && st.written === stateFingerprint(state)) return;
    await this.#enqueue(key, state);
    this.#throwIfFenced();
  }

  /** Stops exporting one service: writes a tombstone if it is exported. Resolves once published. */
  async remove(namespace: string, hostname: string): Promise<void> {
    this.#assertRunning();
    const key = serviceKey(namespace, hostname);
    const st = this.#keys.get(key);
    if (!st || (!st.live && st.desired === null) || st.desired === undefined) return;
    await this.#enqueue(key, undefined);
    this.#throwIfFenced();
  }

  /**
   * Stops heartbeats and the write loops. The exported state stays in JetStream: importers keep it
   * (and mark it unhealthy after their grace period if no new leader takes over). Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#epochWatch?.stop();
    for (const st of this.#keys.values()) {
      for (const w of st.waiters.splice(0)) w();
    }
    this.#log.info({ seq: this.#seq }, 'federation exporter stopped');
  }

  #assertRunning(): void {
    this.#throwIfFenced();
    if (this.#stopped)
      throw new FederationStateError(`exporter of cluster ${this.cluster} (epoch ${this.epoch}) is stopped`);
  }

  #throwIfFenced(): void {
    if (this.#fenced) throw this.#fenced;
  }

  async #claimEpoch(): Promise<void> {
    const marker: EpochMarker = {
      v: PROTOCOL_VERSION,
      kind: 'epoch',
      mesh: this.mesh,
      origin: this.cluster,
      epoch: this.epoch,
      startedAt: new Date().toISOString(),
    };
    for (let attempt = 0; ; attempt++) {
      const entry = await this.#kvCall('read epoch marker', () => this.#kv.get(META_KEY));
      const revision = entry && entry.operation === 'PUT' ? entry.revision : 0;
      if (entry && entry.operation === 'PUT') {
        const prev = this.#decodeEntry(entry.value, META_KEY);
        if (prev && prev.epoch >= this.epoch)
          throw new ExporterFencedError(this.cluster, this.epoch, prev.epoch, META_KEY);
      }
      try {
        await this.#kv.put(META_KEY, encodeMessage(marker), { previousSeq: entry ? entry.revision : 0 });
        return;
      } catch (err) {
        if (!isWrongLastSequence(err) || attempt >= 10)
          throw new FederationNatsError(`write epoch marker (revision ${revision})`, this.cluster, err);
      }
    }
  }

  async #loadKeys(): Promise<void> {
    const bucket = this.#subjects.bucket(this.cluster);
    const entries = await this.#kvCall('read bucket', () => readServiceEntries(this.#nc, bucket, 30_000));
    for (const entry of entries) {
      if (!parseServiceKey(entry.key)) continue;
      const m = entry.operation === 'PUT' ? this.#decodeEntry(entry.value, entry.key) : undefined;
      this.#keys.set(entry.key, {
        revision: entry.revision,
        written: undefined,
        live: m?.kind === 'service' && !m.deleted,
        desired: null,
        running: false,
        waiters: [],
      });
    }
  }

  #decodeEntry(value: Uint8Array, key: string) {
    try {
      return decodeMessage(value, `${this.#subjects.bucket(this.cluster)}/${key}`);
    } catch (err) {
      if (err instanceof WireFormatError) {
        this.#log.warn({ key, err: err.message }, 'undecodable entry in own bucket; overwriting it');
        return undefined;
      }
      throw err;
    }
  }

  async #kvCall<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new FederationNatsError(op, this.cluster, err);
    }
  }

  /**
   * Watches the epoch marker: a newer leader's marker fences this exporter at once, even when it is
   * idle (its next write would otherwise be the first to notice).
   */
  async #watchEpoch(): Promise<void> {
    try {
      const w = await this.#kv.watch({ key: META_KEY, include: KvWatchInclude.UpdatesOnly });
      this.#epochWatch = w;
      void (async () => {
        for await (const e of w) {
          if (e.operation !== 'PUT') continue;
          const m = this.#decodeEntry(e.value, META_KEY);
          if (m && m.epoch > this.epoch)
            this.#fence(new ExporterFencedError(this.cluster, this.epoch, m.epoch, META_KEY));
        }
      })().catch((err) => this.#log.warn({ err: (err as Error).message }, 'epoch watch ended'));
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'cannot watch the epoch marker; fencing on write only');
    }
  }

  #startHeartbeats(): void {
    const beat = () => {
      if (this.#stopped || this.#nc.isClosed()) return;
      const hb: Heartbeat = {
        v: PROTOCOL_VERSION,
        kind: 'heartbeat',
        mesh: this.mesh,
        origin: this.cluster,
        epoch: this.epoch,
        seq: this.watermark,
        services: this.exportedCount,
        intervalMs: this.#heartbeatIntervalMs,
        sentAt: new Date().toISOString(),
      };
      try {
        this.#nc.publish(this.#subjects.heartbeat(this.cluster), encodeMessage(hb));
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'heartbeat publish failed');
      }
    };
    beat();
    this.#heartbeat = setInterval(beat, this.#heartbeatIntervalMs);
    this.#heartbeat.unref?.();
  }

  /** Sets the desired state of `key` and makes sure its write loop runs; resolves when flushed. */
  #enqueue(key: string, state: ExportedServiceState | undefined): Promise<void> {
    let st = this.#keys.get(key);
    if (!st) {
      st = { revision: 0, written: undefined, live: false, desired: null, running: false, waiters: [] };
      this.#keys.set(key, st);
    }
    st.desired = state;
    const done = new Promise<void>((resolve) => st.waiters.push(resolve));
    if (!st.running) void this.#runKey(key, st);
    return done;
  }

  /** Writes the newest desired state of one key until nothing is pending (one write at a time per key). */
  async #runKey(key: string, st: KeyState): Promise<void> {
    st.running = true;
    try {
      while (st.desired !== null && !this.#stopped && !this.#fenced) {
        const state = st.desired;
        st.desired = null;
        const waiters = st.waiters.splice(0);
        const seq = ++this.#seq;
        this.#inflight.add(seq);
        try {
          await this.#write(key, st, state, seq);
        } finally {
          this.#inflight.delete(seq);
        }
        for (const w of waiters) w();
      }
    } finally {
      st.running = false;
      for (const w of st.waiters.splice(0)) w();
    }
  }

  async #write(
    key: string,
    st: KeyState,
    state: ExportedServiceState | undefined,
    seq: number,
  ): Promise<void> {
    const parsed = parseServiceKey(key)!;
    const record: ServiceRecord = state
      ? {
          v: PROTOCOL_VERSION,
          kind: 'service',
          mesh: this.mesh,
          origin: this.cluster,
          epoch: this.epoch,
          seq,
          namespace: parsed.namespace,
          hostname: parsed.hostname,
          deleted: false,
          service: state.service,
          endpoints: sortEndpoints(state.endpoints),
          exportedAt: new Date().toISOString(),
        }
      : {
          v: PROTOCOL_VERSION,
          kind: 'service',
          mesh: this.mesh,
          origin: this.cluster,
          epoch: this.epoch,
          seq,
          namespace: parsed.namespace,
          hostname: parsed.hostname,
          deleted: true,
          endpoints: [],
          exportedAt: new Date().toISOString(),
        };
    const data = encodeMessage(record);
    let delay = this.#retryDelayMs;
    for (;;) {
      if (this.#stopped) return;
      try {
        st.revision = await this.#kv.put(key, data, { previousSeq: st.revision });
        break;
      } catch (err) {
        if (isWrongLastSequence(err)) {
          // Someone else wrote the key: a newer leader (fenced) or an older one (overwrite it).
          const entry = await this.#kv.get(key).catch(() => null);
          const other = entry && entry.operation === 'PUT' ? this.#decodeEntry(entry.value, key) : undefined;
          if (other && other.epoch > this.epoch) {
            this.#fence(new ExporterFencedError(this.cluster, this.epoch, other.epoch, key));
            return;
          }
          st.revision = entry ? entry.revision : 0;
          continue;
        }
        this.#log.warn(
          { key, seq, err: (err as Error).message, retryInMs: delay },
          'KV write failed; retrying',
        );
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5_000);
      }
    }
    st.written = state ? stateFingerprint(state) : undefined;
    st.live = state !== undefined;
    try {
      this.#nc.publish(this.#subjects.service(this.cluster, parsed.namespace, parsed.hostname), data);
    } catch (err) {
      // Durable in JetStream already: importers catch up through the heartbeat watermark.
      this.#log.warn({ key, seq, err: (err as Error).message }, 'publish failed after KV write');
    }
    this.#instruments.exported.add(1, { cluster: this.cluster });
  }

  #fence(err: ExporterFencedError): void {
    if (this.#fenced) return;
    this.#fenced = err;
    this.#log.error(
      { newerEpoch: err.newerEpoch, key: err.key },
      'exporter fenced by a newer epoch; stopping',
    );
    void this.stop();
    for (const l of this.#fencedListeners) l(err);
  }
}

/** JetStream "wrong last sequence" (10071): the compare-and-set of a KV update failed. */
function isWrongLastSequence(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown };
  if (e?.code === 10071) return true;
  if (typeof e?.message === 'string' && e.message.includes('wrong last sequence')) return true;
  return e?.cause !== undefined && e.cause !== err ? isWrongLastSequence(e.cause) : false;
}
