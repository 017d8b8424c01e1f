/**
 * The replica's view of its cluster's state in etcd: every config object and every agent
 * registration, loaded with one list and kept current by one watch over the cluster's keyspace
 * (exactly-once resume; a resync replaces the state after a compaction). Changes are reported with
 * the highest mod revision among the relevant keys, so two replicas that have seen the same writes
 * report the same revision, however etcd split the events into batches.
 */
import type { ConfigObject } from '@meridian/api';
import { WORKLOADS_PREFIX, type WorkloadRegistration } from '@meridian/registry';
import type { KeyValue, Store, Watch, WatchBatch, WatchStatus } from '@meridian/store';
import type { Logger } from 'pino';
import { CONFIG_PREFIX, type LastKnownConfig } from './config-service.js';

/** What a batch of changes touched. */
export interface StateChange {
  /** Highest mod revision of a config or registration change (the snapshot stamp). */
  readonly revision: number;
  /** Config kinds that changed. */
  readonly kinds: ReadonlySet<string>;
  /** Whether agent registrations changed. */
  readonly workloads: boolean;
  /** A resync (compaction) replaced the whole state. */
  readonly resync: boolean;
}

const decoder = new TextDecoder();

function isRelevant(key: string): boolean {
  return key.startsWith(CONFIG_PREFIX) || key.startsWith(WORKLOADS_PREFIX);
}

/** The watched state of one cluster. */
export class ClusterState implements LastKnownConfig {
  readonly #configs = new Map<string, KeyValue<ConfigObject>>();
  readonly #workloads = new Map<string, WorkloadRegistration>();
  #revision = 0;
  #watch: Watch | undefined;
  #connected = false;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly onChange: (change: StateChange) => void,
    private readonly onStatus: (status: WatchStatus, cause?: unknown) => void,
  ) {}

  /** Loads the state (the store must answer) and starts following it. */
  async start(): Promise<void> {
    const { items, revision } = await this.store.list('');
    this.#load(items);
    this.#revision = Math.max(0, ...items.filter((kv) => isRelevant(kv.key)).map((kv) => kv.modRevision));
    this.#connected = true;
    this.#watch = this.store.watchPrefix('', (batch) => this.#apply(batch), {
      fromRevision: revision + 1,
      onStatus: (status, cause) => {
        this.#connected = status === 'connected';
        this.onStatus(status, cause);
      },
      onError: (error) => this.log.error({ err: error }, 'cluster state watch handler failed'),
    });
    await this.#watch.ready;
  }

  #load(items: readonly KeyValue[]): void {
    this.#configs.clear();
    this.#workloads.clear();
    for (const kv of items) this.#put(kv);
  }

  #put(kv: KeyValue): boolean {
    try {
      if (kv.key.startsWith(CONFIG_PREFIX)) {
        this.#configs.set(kv.key, { ...kv, value: JSON.parse(decoder.decode(kv.value)) as ConfigObject });
        return true;
      }
      if (kv.key.startsWith(WORKLOADS_PREFIX)) {
        this.#workloads.set(kv.key, JSON.parse(decoder.decode(kv.value)) as WorkloadRegistration);
        return true;
      }
    } catch (error) {
      this.log.error({ key: kv.key, modRevision: kv.modRevision, err: error }, 'malformed value skipped');
    }
    return false;
  }

  #apply(batch: WatchBatch): void {
    const kinds = new Set<string>();
    let workloads = false;
    let revision = this.#revision;
    const note = (key: string, rev: number) => {
      if (key.startsWith(CONFIG_PREFIX)) kinds.add(key.slice(CONFIG_PREFIX.length).split('/')[0] ?? '');
      else workloads = true;
      revision = Math.max(revision, rev);
    };
    if (batch.kind === 'resync') {
      this.log.warn(
        { revision: batch.revision, compactRevision: batch.compactRevision },
        'cluster state resync',
      );
      const before = this.#fingerprint();
      this.#load(batch.items);
      const rev = Math.max(0, ...batch.items.filter((kv) => isRelevant(kv.key)).map((kv) => kv.modRevision));
      if (this.#fingerprint() === before) return;
      this.#revision = Math.max(this.#revision, rev);
      this.onChange({
        revision: this.#revision,
        kinds: new Set([...this.#configs.values()].map((kv) => kv.value.kind)),
        workloads: true,
        resync: true,
      });
      return;
    }
    for (const e of batch.events) {
      if (e.type === 'put') {
        if (isRelevant(e.kv.key) && this.#put(e.kv)) note(e.kv.key, e.kv.modRevision);
      } else if (isRelevant(e.key)) {
        if (this.#configs.delete(e.key) || this.#workloads.delete(e.key)) note(e.key, e.modRevision);
      }
    }
    if (kinds.size === 0 && !workloads) return;
    this.#revision = revision;
    this.onChange({ revision, kinds, workloads, resync: false });
  }

  #fingerprint(): string {
    return JSON.stringify([
      [...this.#configs].map(([k, v]) => [k, v.modRevision]),
      [...this.#workloads].map(([k, v]) => [k, v]),
    ]);
  }

  /** The revision of the last relevant change seen. */
  get revision(): number {
    return this.#revision;
  }

  /** The revision the watch has delivered up to (any key). */
  get watchedRevision(): number {
    return this.#watch?.lastRevision ?? 0;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Every config object, sorted by key. */
  configs(): ConfigObject[] {
    return [...this.#configs.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, kv]) => kv.value);
  }

  /** Every agent registration, sorted by key. */
  registrations(): WorkloadRegistration[] {
    return [...this.#workloads.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, r]) => r);
  }

  get(key: string): KeyValue<ConfigObject> | undefined {
    return this.#configs.get(key);
  }

  list(prefix: string): KeyValue<ConfigObject>[] {
    return [...this.#configs.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort((a, b) => (a[0] < b[0] ? -1 : 1))
      .map(([, kv]) => kv);
  }

  async close(): Promise<void> {
    await this.#watch?.close();
  }
}
