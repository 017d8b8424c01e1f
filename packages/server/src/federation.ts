/**
 * Federation in the replica: `@meridian/federation` wired into meridiand.
 *
 * - Every replica runs an importer: the other clusters' services and endpoints (tagged with their
 *   cluster, network and locality) become a registry source after the local one, so proxies get the
 *   remote endpoints of local services (failover) and services only other clusters define. The
 *   importer's state is cached in this cluster's etcd (`federation/import-cache`), so a replica that
 *   starts while NATS is unreachable serves the last imported state.
 * - The elected leader runs the exporter for its term, with the term's fencing token (the election
 *   candidate's etcd create revision) as the epoch: a later leader always has a larger epoch. It is fed
 *   with the local source only (never imported endpoints) and re-synced on every local change; it
 *   stops when the term ends, when the replica stops, or when a newer epoch fences it.
 * - Without NATS URLs nothing here runs: the replica is single-cluster.
 */
import { readFileSync } from 'node:fs';
import {
  ExporterFencedError,
  type ExportSelection,
  FederationExporter,
  FederationImporter,
  type ImportCache,
  type ImportCacheSnapshot,
  localExportStates,
  type RemoteClusterStatus,
} from '@meridian/federation';
import { FederatedSource, type LocalSource } from '@meridian/registry';
import type { Leadership, Store } from '@meridian/store';
import {
  type Authenticator,
  connect,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { ServerConfigError } from './errors.js';
import type { ServerOptions } from './options.js';

/** Keyspace-relative etcd key of the importer's cache (shared by the cluster's replicas). */
export const IMPORT_CACHE_KEY = 'federation/import-cache';
/** Bound on the cached state (etcd's default request limit is 1.5 MiB). */
const MAX_CACHE_BYTES = 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The importer's {@link ImportCache} in this cluster's etcd. */
export function etcdImportCache(store: Store, log: Logger): ImportCache {
  return {
    async load() {
      try {
        const kv = await store.get(IMPORT_CACHE_KEY);
        if (!kv) return undefined;
        return JSON.parse(decoder.decode(kv.value)) as ImportCacheSnapshot;
      } catch (error) {
        log.warn({ err: error }, 'federation: cannot load the import cache from etcd; starting empty');
        return undefined;
      }
    },
    async save(snapshot) {
      const bytes = encoder.encode(JSON.stringify(snapshot));
      if (bytes.length > MAX_CACHE_BYTES) {
        log.warn({ bytes: bytes.length }, 'federation: import cache too large for etcd; not saved');
        return;
      }
      try {
        await store.put(IMPORT_CACHE_KEY, bytes);
      } catch (error) {
        log.warn({ err: error }, 'federation: cannot save the import cache to etcd');
      }
    },
  };
}

/** The export selection of `--federation-export`. */
export function exportSelection(value: string): ExportSelection {
  if (value === 'all') return { mode: 'all' };
  if (value === 'marked') return { mode: 'marked' };
  throw new ServerConfigError('--federation-export', `expected "all" or "marked", got "${value}"`);
}

/**
 * The NATS authenticator of `--nats-creds`: a `.creds` file (user JWT + seed) or an nkey seed file
 * (`meridian federation nats-config` writes `<cluster>.nk`). Undefined without a file.
 */
export function natsAuthenticator(file: string): Authenticator | undefined {
  if (!file) return undefined;
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new ServerConfigError('--nats-creds', `cannot read ${file}: ${(error as Error).message}`);
  }
  const text = decoder.decode(bytes).trim();
  if (text.includes('BEGIN NATS USER JWT')) return credsAuthenticator(bytes);
  if (/^SU[A-Z2-7]+$/.test(text)) return nkeyAuthenticator(encoder.encode(text));
  throw new ServerConfigError('--nats-creds', `${file} is neither a NATS .creds file nor an nkey user seed`);
}

/** What `/debug/federation` shows. */
export interface FederationStatus {
  readonly cluster: string;
  readonly natsConnected: boolean;
  readonly exporting: boolean;
  readonly epoch: number | undefined;
  readonly exportedServices: number;
  readonly syncs: number;
  readonly importedServices: number;
  readonly remoteClusters: readonly RemoteClusterStatus[];
  readonly imported: number;
  readonly rejected: Readonly<Record<string, number>>;
}

/** Inputs of {@link ReplicaFederation.start}. */
export interface ReplicaFederationOptions {
  readonly options: ServerOptions;
  readonly store: Store;
  readonly local: LocalSource;
  readonly log: Logger;
  /** Adds the imported view as a registry source (Replica.addRegistrySource). */
  readonly addSource: (source: FederatedSource) => void;
  /** Subscribes to the terms this replica leads (ReplicaElection.onLeadership). */
  readonly onLeadership: (listener: (leadership: Leadership) => void) => () => void;
  /** Heartbeat interval of the exporter (default the library's, 2 s). */
  readonly heartbeatIntervalMs?: number;
}

/** The federation part of one replica. */
export class ReplicaFederation {
  readonly importer: FederationImporter;
  readonly source = new FederatedSource();
  readonly #opts: ReplicaFederationOptions;
  readonly #log: Logger;
  readonly #nc: Promise<NatsConnection>;
  readonly #selection: ExportSelection;
  #conn: NatsConnection | undefined;
  #exporter: FederationExporter | undefined;
  #epoch: number | undefined;
  #syncs = 0;
  #stopped = false;
  readonly #offs: (() => void)[] = [];
  readonly #terms = new Set<Promise<void>>();
  readonly #wakers = new Set<() => void>();

  private constructor(opts: ReplicaFederationOptions) {
    const o = opts.options;
    this.#opts = opts;
    this.#log = opts.log;
    this.#selection = exportSelection(o.federationExport);
    const authenticator = natsAuthenticator(o.natsCreds);
    this.#nc = connect({
      servers: [...o.natsUrls],
      name: `meridiand ${o.clusterId}/${o.replicaId}`,
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      ...(authenticator ? { authenticator } : {}),
    });
    this.#nc.then(
      (nc) => {
        this.#conn = nc;
        if (this.#stopped) void nc.close();
        else this.#log.info({ server: nc.getServer() }, 'federation: connected to NATS');
      },
      (error) => this.#log.error({ err: error }, 'federation: NATS connection failed'),
    );
    this.importer = new FederationImporter({
      nc: this.#nc,
      mesh: o.meshId,
      localCluster: o.clusterId,
      graceMs: o.federationGraceSeconds * 1000,
      cache: etcdImportCache(opts.store, opts.log),
      logger: opts.log,
    });
  }

  /**
   * Starts the importer (serving the etcd cache at once; NATS attaches in the background), adds the
   * imported view to the registry and exports during every term this replica leads.
   */
  static async start(opts: ReplicaFederationOptions): Promise<ReplicaFederation> {
    const f = new ReplicaFederation(opts);
    f.#offs.push(f.importer.onChange((c) => f.source.update(c.view)));
    await f.importer.start();
    f.source.update(f.importer.view);
    opts.addSource(f.source);
    f.#offs.push(opts.onLeadership((leadership) => f.#runTerm(leadership)));
    return f;
  }

  #runTerm(leadership: Leadership): void {
    const term = this.#term(leadership).catch((error) =>
      this.#log.error({ err: error }, 'federation: exporter term failed'),
    );
    this.#terms.add(term);
    void term.finally(() => this.#terms.delete(term));
  }

  /** One term of leadership: start the exporter (retrying while NATS is away), sync on every change. */
  async #term(leadership: Leadership): Promise<void> {
    const epoch = leadership.candidate.createRevision;
    const active = () => leadership.isLeader && !this.#stopped;
    let ended = false;
    void leadership.lost.then(() => {
      ended = true;
    });
    const nc = await this.#nc;
    let exporter: FederationExporter | undefined;
    for (let attempt = 0; active() && !ended; attempt++) {
      try {
        exporter = await FederationExporter.start({
          nc,
          mesh: this.#opts.options.meshId,
          cluster: this.#opts.options.clusterId,
          epoch,
          selection: this.#selection,
          logger: this.#log,
          ...(this.#opts.heartbeatIntervalMs ? { heartbeatIntervalMs: this.#opts.heartbeatIntervalMs } : {}),
        });
        break;
      } catch (error) {
        if (error instanceof ExporterFencedError) {
          this.#log.warn({ err: error, epoch }, 'federation: a newer leader already exports; not exporting');
          return;
        }
        this.#log.warn({ err: error, epoch, attempt }, 'federation: exporter start failed; retrying');
        await sleep(Math.min(200 * 2 ** attempt, 2000));
      }
    }
    if (!exporter) return;
    if (!active() || ended) {
      await exporter.stop();
      return;
    }
    this.#exporter = exporter;
    this.#epoch = epoch;
    let dirty = true;
    let wake: (() => void) | undefined;
    const kick = () => {
      dirty = true;
      wake?.();
    };
    this.#wakers.add(kick);
    const offLocal = this.#opts.local.onChange(kick);
    const offFenced = exporter.onFenced((err) => {
      this.#log.warn({ err, epoch }, 'federation: exporter fenced by a newer leader');
      kick();
    });
    void leadership.lost.then(kick);
    try {
      while (active() && !ended && !exporter.fenced) {
        if (!dirty) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
          continue;
        }
        dirty = false;
        const view = this.#opts.local.view();
        try {
          const result = await exporter.sync(
            localExportStates(this.#opts.options.clusterId, view.services, view.endpoints),
          );
          this.#syncs++;
          if (result.written || result.deleted)
            this.#log.debug(
              { epoch, written: result.written, deleted: result.deleted },
              'federation: exported',
            );
        } catch (error) {
          if (exporter.fenced) break;
          this.#log.warn({ err: error, epoch }, 'federation: export failed; retrying');
          dirty = true;
          await sleep(500);
        }
      }
    } finally {
      this.#wakers.delete(kick);
      offLocal();
      offFenced();
      if (this.#exporter === exporter) {
        this.#exporter = undefined;
        this.#epoch = undefined;
      }
      await exporter.stop().catch(() => undefined);
      this.#log.info({ epoch }, 'federation: exporter stopped (term ended)');
    }
  }

  /** What `/debug/federation` shows. */
  status(): FederationStatus {
    const stats = this.importer.stats();
    return {
      cluster: this.#opts.options.clusterId,
      natsConnected: this.#conn !== undefined && !this.#conn.isClosed(),
      exporting: this.#exporter !== undefined,
      epoch: this.#epoch,
      exportedServices: this.#exporter?.exportedCount ?? 0,
      syncs: this.#syncs,
      importedServices: this.importer.view.services.size,
      remoteClusters: this.importer.clusterStatus(),
      imported: stats.imported,
      rejected: stats.rejected,
    };
  }

  /** Stops exporting and importing (saving the cache) and closes the NATS connection. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const off of this.#offs.splice(0)) off();
    for (const wake of [...this.#wakers]) wake();
    await this.#exporter?.stop().catch(() => undefined);
    // A term still waiting for NATS to come up is abandoned (its exporter never started).
    await Promise.race([Promise.all([...this.#terms]), sleep(2000)]);
    await this.importer.stop().catch((error) => this.#log.warn({ err: error }, 'federation: importer stop'));
    await this.#conn?.close().catch(() => undefined);
  }
}
