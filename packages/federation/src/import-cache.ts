/**
 * The importer's local cache: the last imported state kept across restarts (backed by etcd in a
 * replica, by memory in tests), so a replica that starts while NATS is unreachable serves it.
 */
import type { Logger } from 'pino';
import type { ImportState } from './import-state.js';
import { decodeMessage, encodeMessage, type FederationMessage, type ServiceRecord } from './wire.js';

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

/**
 * Loads `cache` into `state`: every valid service record of this mesh from another cluster, and the
 * epoch fences. The grace period of each cluster found starts now. A cache that cannot be read, or is
 * for another version or mesh, is logged and ignored: the importer then starts empty.
 */
export async function loadImportCache(
  cache: ImportCache,
  state: ImportState,
  opts: { readonly mesh: string; readonly localCluster: string; readonly log: Logger },
): Promise<void> {
  const { mesh, localCluster, log } = opts;
  let snap: ImportCacheSnapshot | undefined;
  try {
    snap = await cache.load();
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'could not load the import cache; starting empty');
    return;
  }
  if (!snap) return;
  if (snap.v !== 1 || snap.mesh !== mesh) {
    log.warn({ v: snap.v, mesh: snap.mesh }, 'import cache is for another version or mesh; ignored');
    return;
  }
  const now = performance.now();
  let n = 0;
  for (const r of snap.records) {
    let m: FederationMessage;
    try {
      m = decodeMessage(encodeMessage(r), 'cache');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'invalid record in the import cache; skipped');
      continue;
    }
    if (m.kind !== 'service' || m.mesh !== mesh || m.origin === localCluster) continue;
    const cs = state.cluster(m.origin);
    cs.lastHeard ??= now; // the grace period starts now
    if (state.apply(m)) n++;
  }
  for (const [c, epoch] of Object.entries(snap.epochs)) {
    if (c === localCluster) continue;
    const cs = state.cluster(c);
    if (Number.isSafeInteger(epoch) && epoch > cs.fence) cs.fence = epoch;
  }
  log.info({ records: n, savedAt: snap.savedAt }, 'import cache loaded');
}

/** Saves every record of `state` (tombstones included) and each cluster's fence; failures are logged. */
export async function saveImportCache(
  cache: ImportCache,
  state: ImportState,
  mesh: string,
  log: Logger,
): Promise<void> {
  const epochs: Record<string, number> = {};
  for (const c of state.clusters()) epochs[c.cluster] = c.fence;
  try {
    await cache.save({
      v: 1,
      mesh,
      savedAt: new Date().toISOString(),
      records: [...state.records()],
      epochs,
    });
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'could not save the import cache');
  }
}
