/**
 * The importer's merged state, without I/O: per remote cluster its epoch fence, contiguous seq
 * watermark and liveness; every record merged by `(epoch, seq)`; and the immutable view built from
 * the records that changed. The importer (importer.ts) feeds it from NATS, JetStream and the cache.
 */
import type { KV } from '@nats-io/kv';
import type {
  ImportChange,
  ImportedService,
  ImportedView,
  RemoteClusterStatus,
  ServiceRef,
} from './import-view.js';
import { serviceId } from './naming.js';
import { isNewer, type ServiceRecord } from './wire.js';

/** What the importer knows of one remote cluster. */
export interface ClusterState {
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

const EMPTY_VIEW: ImportedView = Object.freeze({
  version: 0,
  services: new Map<string, ImportedService>(),
  staleClusters: new Set<string>(),
});

/** Records, clusters and the current view of one importer; changes are collected until `flush`. */
export class ImportState {
  readonly #clusters = new Map<string, ClusterState>();
  readonly #records = new Map<string, ServiceRecord>();
  readonly #dirty = new Set<string>();
  readonly #clusterFlips = new Map<string, boolean>();
  readonly #fingerprints = new Map<string, string>();
  #view: ImportedView = EMPTY_VIEW;

  /** The current view (immutable; replaced by every `flush` that changes something). */
  get view(): ImportedView {
    return this.#view;
  }

  /** Every remote cluster known. */
  clusters(): IterableIterator<ClusterState> {
    return this.#clusters.values();
  }

  /** Every record known, tombstones included. */
  records(): IterableIterator<ServiceRecord> {
    return this.#records.values();
  }

  /** Whether a record (live or tombstone) is known for this service. */
  has(cluster: string, namespace: string, hostname: string): boolean {
    return this.#records.has(serviceId(cluster, namespace, hostname));
  }

  /** The state of `cluster`, created on first use. */
  cluster(cluster: string): ClusterState {
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
  apply(rec: ServiceRecord): boolean {
    const id = serviceId(rec.origin, rec.namespace, rec.hostname);
    const cur = this.#records.get(id);
    if (cur && !isNewer(rec, cur)) return false;
    this.#records.set(id, rec);
    this.cluster(rec.origin).ids.add(id);
    this.#dirty.add(id);
    return true;
  }

  /** Records seq `seq` of `epoch` as received and advances the contiguous watermark. */
  track(cs: ClusterState, epoch: number, seq: number): void {
    if (epoch > cs.fence) cs.fence = epoch;
    if (epoch > cs.trackEpoch) {
      cs.trackEpoch = epoch;
      cs.watermark = 0;
      cs.pending.clear();
    }
    if (epoch !== cs.trackEpoch || seq <= cs.watermark) return;
    cs.pending.add(seq);
    this.advance(cs);
  }

  /** Moves the watermark over every pending seq that is now contiguous. */
  advance(cs: ClusterState): void {
    while (cs.pending.delete(cs.watermark + 1)) cs.watermark++;
    for (const s of cs.pending) if (s <= cs.watermark) cs.pending.delete(s);
  }

  /**
   * Marks every cluster silent for more than `graceMs` at `now` as stale (its services are rebuilt
   * with unhealthy endpoints on the next flush). Returns the clusters that became stale.
   */
  expireSilent(now: number, graceMs: number): { cluster: string; silentMs: number }[] {
    const expired: { cluster: string; silentMs: number }[] = [];
    for (const cs of this.#clusters.values()) {
      if (cs.stale || cs.lastHeard === undefined) continue;
      if (now - cs.lastHeard > graceMs) {
        cs.stale = true;
        this.#clusterFlips.set(cs.cluster, true);
        for (const id of cs.ids) this.#dirty.add(id);
        expired.push({ cluster: cs.cluster, silentMs: Math.round(now - cs.lastHeard) });
      }
    }
    return expired;
  }

  /** A stale cluster whose bucket was re-read is live again. */
  markLive(cs: ClusterState): void {
    cs.stale = false;
    this.#clusterFlips.set(cs.cluster, false);
    for (const id of cs.ids) this.#dirty.add(id);
  }

  /** Turns dirty ids into a new view and the change event, if anything visible changed. */
  flush(): ImportChange | undefined {
    if (this.#dirty.size === 0 && this.#clusterFlips.size === 0) return undefined;
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
    if (changed.length === 0 && flips.length === 0) return undefined;
    const staleClusters = new Set<string>();
    for (const c of this.#clusters.values()) if (c.stale) staleClusters.add(c.cluster);
    const view: ImportedView = Object.freeze({ version: this.#view.version + 1, services, staleClusters });
    this.#view = view;
    return Object.freeze({ version: view.version, view, changed, clusters: flips });
  }

  /** Status of every remote cluster known, by name. */
  clusterStatus(now: number): RemoteClusterStatus[] {
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
