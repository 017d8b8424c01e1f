/**
 * The replica's view of its cluster's state in etcd: every config object and every agent
 * registration, loaded with one list and kept current by one watch per prefix it owns (`config`,
 * which holds `config/`, `config-staging/` and `config-commit`, and `workloads/`): the other keys of
 * the cluster's keyspace (replica membership, leader status, load, convergence, rate-limit windows,
 * telemetry, the import cache) change often and are never sent to it (exactly-once resume; a resync
 * replaces that prefix's state after a compaction). Changes are reported with
 * the highest resourceVersion among the relevant keys, so two replicas that have seen the same writes
 * report the same revision, however etcd split the events into batches.
 *
 * Config objects are the *visible* config of config-commit.ts: `config/` overlaid by the staged
 * objects of the apply `config-commit` names. A large apply therefore appears here in one batch, at
 * the revision of its commit, and its fold into `config/` afterwards changes nothing visible (no
 * change is reported for it).
 */
import type { ConfigObject } from '@meridian/api';
import { WORKLOADS_PREFIX, type WorkloadRegistration } from '@meridian/registry';
import type { KeyValue, Store, Watch, WatchBatch, WatchStatus } from '@meridian/store';
import type { Logger } from 'pino';
import {
  COMMIT_KEY,
  CONFIG_PREFIX,
  type CommitState,
  type Entry,
  entryKeyValue,
  foldedEntry,
  parseCommit,
  parseStagingKey,
  STAGING_PREFIX,
  stagedEntry,
  visibleEntry,
} from './config-commit.js';
import type { LastKnownConfig } from './config-service.js';
import type { SnapshotState } from './disk-snapshot.js';

/** What a batch of changes touched. */
export interface StateChange {
  /** Highest resourceVersion (mod revision) of a config or registration change (the snapshot stamp). */
  readonly revision: number;
  /** Config kinds that changed. */
  readonly kinds: ReadonlySet<string>;
  /** Config objects that changed (added, updated or deleted), as `kind/namespace/name`; every
   * visible object after a resync. */
  readonly configs: ReadonlySet<string>;
  /** Whether agent registrations changed. */
  readonly workloads: boolean;
  /** A resync (compaction) replaced the whole state. */
  readonly resync: boolean;
}

const decoder = new TextDecoder();

function isWorkload(key: string): boolean {
  return key.startsWith(WORKLOADS_PREFIX);
}

/** The prefixes ClusterState watches: `config` covers `config/`, `config-staging/` and `config-commit`. */
const PARTS = { config: 'config', workloads: WORKLOADS_PREFIX } as const;
type Part = keyof typeof PARTS;
const PART_NAMES = Object.keys(PARTS) as Part[];

/** The watched state of one cluster. */
export class ClusterState implements LastKnownConfig {
  /** The visible config (mod revision = resourceVersion), what snapshots and reads use. */
  readonly #configs = new Map<string, KeyValue<ConfigObject>>();
  /** The canonical text of each visible object (to tell a real change from a fold). */
  readonly #texts = new Map<string, string>();
  /** `config/` as stored. */
  readonly #folded = new Map<string, Entry>();
  /** `config-staging/<applyId>/`: applyId -> config key -> entry. */
  readonly #staged = new Map<string, Map<string, Entry>>();
  #commit: CommitState = { applyId: null, revision: 0 };
  readonly #workloads = new Map<string, KeyValue<WorkloadRegistration>>();
  #revision = 0;
  readonly #watches = new Map<Part, Watch>();
  /** Connection state of each watch; the state is connected when every watch is. */
  readonly #watchConnected = new Map<Part, boolean>();
  #connected = false;
  /** The revision each part was loaded at (its list, or a snapshot from disk). */
  readonly #fromRevision = new Map<Part, number>();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly onChange: (change: StateChange) => void,
    private readonly onStatus: (status: WatchStatus, cause?: unknown) => void,
  ) {}

  /** Loads the state (the store must answer) and starts following it. */
  async start(): Promise<void> {
    const lists = await Promise.all(PART_NAMES.map((part) => this.store.list(PARTS[part])));
    this.#load([]);
    PART_NAMES.forEach((part, i) => {
      this.#loadPart(part, lists[i]!.items);
      this.#fromRevision.set(part, lists[i]!.revision);
    });
    this.#revision = this.#currentRevision();
    this.#connected = true;
    for (const part of PART_NAMES) this.#follow(part, this.#fromRevision.get(part)! + 1);
    await Promise.all([...this.#watches.values()].map((w) => w.ready));
  }

  /** Starts the watch of one part from `fromRevision`. */
  #follow(part: Part, fromRevision: number): void {
    this.#watchConnected.set(part, true);
    const watch = this.store.watchPrefix(PARTS[part], (batch) => this.#apply(part, batch), {
      fromRevision,
      onStatus: (status, cause) => {
        this.#watchConnected.set(part, status === 'connected');
        const connected = [...this.#watchConnected.values()].every(Boolean);
        if (connected === this.#connected) return;
        this.#connected = connected;
        this.onStatus(connected ? 'connected' : 'disconnected', cause);
      },
      onError: (error) => this.log.error({ err: error, part }, 'cluster state watch handler failed'),
    });
    this.#watches.set(part, watch);
  }

  /**
   * Starts from a snapshot read from disk while etcd is unreachable: the state is what the snapshot
   * holds, and the watch resumes after the revision it was taken at, so when etcd answers again the
   * changes made meanwhile arrive as ordinary events (or one resync, if they were compacted).
   */
  startFrom(snapshot: SnapshotState): void {
    this.#load([]);
    for (const [key, version, value] of snapshot.configs) {
      const text = JSON.stringify(value);
      this.#folded.set(key, { value, text, carried: version, version, modRevision: version });
      this.#refresh(key);
    }
    for (const [key, modRevision, value] of snapshot.registrations)
      this.#workloads.set(key, {
        key,
        value,
        modRevision,
        createRevision: modRevision,
        version: 1,
        lease: undefined,
      });
    this.#revision = snapshot.revision;
    for (const part of PART_NAMES) {
      this.#fromRevision.set(part, snapshot.watchedRevision);
      this.#follow(part, snapshot.watchedRevision + 1);
    }
  }

  /** The state to save on disk (config objects as visible, with their resourceVersions). */
  snapshotState(): SnapshotState {
    return {
      revision: this.#revision,
      watchedRevision: this.watchedRevision,
      configs: [...this.#configs.entries()]
        .sort((a, b) => (a[0] < b[0] ? -1 : 1))
        .map(([key, kv]) => [key, kv.modRevision, kv.value] as const),
      registrations: [...this.#workloads.entries()]
        .sort((a, b) => (a[0] < b[0] ? -1 : 1))
        .map(([key, kv]) => [key, kv.modRevision, kv.value] as const),
    };
  }

  /** The highest resourceVersion of what is visible (the revision a fresh replica starts at). */
  #currentRevision(): number {
    let max = 0;
    for (const kv of this.#configs.values()) max = Math.max(max, kv.modRevision);
    for (const kv of this.#workloads.values()) max = Math.max(max, kv.modRevision);
    return max;
  }

  #load(items: readonly KeyValue[]): void {
    this.#loadPart('config', items);
    this.#loadPart('workloads', items);
  }

  /** Replaces one part's state with `items` (keys of other parts are ignored). */
  #loadPart(part: Part, items: readonly KeyValue[]): void {
    const mine = items.filter((kv) => kv.key.startsWith(PARTS[part]));
    if (part === 'workloads') {
      this.#workloads.clear();
      for (const kv of mine) this.#put(kv);
      return;
    }
    this.#configs.clear();
    this.#texts.clear();
    this.#folded.clear();
    this.#staged.clear();
    this.#commit = { applyId: null, revision: 0 };
    const keys = new Set<string>();
    for (const kv of mine) {
      const key = this.#put(kv);
      if (key) keys.add(key);
    }
    for (const key of keys) this.#refresh(key);
  }

  /** Records a put; returns the config key whose visible object it may change, if any. */
  #put(kv: KeyValue): string | undefined {
    try {
      if (kv.key.startsWith(CONFIG_PREFIX)) {
        this.#folded.set(kv.key, foldedEntry(kv));
        return kv.key;
      }
      if (kv.key.startsWith(STAGING_PREFIX)) {
        const at = parseStagingKey(kv.key);
        if (!at) return undefined;
        const staged = this.#staged.get(at.applyId) ?? new Map<string, Entry>();
        this.#staged.set(at.applyId, staged);
        staged.set(at.configKey, stagedEntry(kv));
        return at.applyId === this.#commit.applyId ? at.configKey : undefined;
      }
      if (kv.key === COMMIT_KEY) {
        this.#commit = parseCommit(kv);
        return undefined;
      }
      if (isWorkload(kv.key)) {
        this.#workloads.set(kv.key, {
          ...kv,
          value: JSON.parse(decoder.decode(kv.value)) as WorkloadRegistration,
        });
      }
    } catch (error) {
      this.log.error({ key: kv.key, modRevision: kv.modRevision, err: error }, 'malformed value skipped');
    }
    return undefined;
  }

  /** Recomputes the visible object of one config key; true when it changed. */
  #refresh(key: string): boolean {
    const staged = this.#commit.applyId === null ? undefined : this.#staged.get(this.#commit.applyId);
    const entry = visibleEntry(this.#folded.get(key), staged?.get(key), this.#commit);
    const before = this.#configs.get(key);
    if (!entry) {
      if (!before) return false;
      this.#configs.delete(key);
      this.#texts.delete(key);
      return true;
    }
    if (before && before.modRevision === entry.version && this.#texts.get(key) === entry.text) return false;
    this.#configs.set(key, entryKeyValue(key, entry));
    this.#texts.set(key, entry.text);
    return true;
  }

  #apply(part: Part, batch: WatchBatch): void {
    const kinds = new Set<string>();
    let workloads = false;
    let revision = this.#revision;
    if (batch.kind === 'resync') {
      this.log.warn(
        { part, revision: batch.revision, compactRevision: batch.compactRevision },
        'cluster state resync',
      );
      const before = this.#fingerprint();
      this.#loadPart(part, batch.items);
      if (this.#fingerprint() === before) return;
      this.#revision = Math.max(this.#revision, this.#currentRevision());
      this.onChange({
        revision: this.#revision,
        kinds: new Set([...this.#configs.values()].map((kv) => kv.value.kind)),
        configs: new Set([...this.#configs.keys()].map((k) => k.slice(CONFIG_PREFIX.length))),
        workloads: true,
        resync: true,
      });
      return;
    }
    // Config keys whose visible object may have changed, with the revision of the event.
    const touched = new Map<string, number>();
    const stagedKeys = (applyId: string | null) =>
      applyId === null ? [] : [...(this.#staged.get(applyId)?.keys() ?? [])];
    for (const e of batch.events) {
      const key = e.type === 'put' ? e.kv.key : e.key;
      const rev = e.type === 'put' ? e.kv.modRevision : e.modRevision;
      if (key === COMMIT_KEY) {
        const before = this.#commit.applyId;
        this.#commit = e.type === 'put' ? parseCommit(e.kv) : { applyId: null, revision: rev };
        for (const k of [...stagedKeys(before), ...stagedKeys(this.#commit.applyId)]) touched.set(k, rev);
      } else if (e.type === 'put') {
        const k = this.#put(e.kv);
        if (k) touched.set(k, rev);
        else if (isWorkload(key) && this.#workloads.has(key)) {
          workloads = true;
          revision = Math.max(revision, rev);
        }
      } else if (key.startsWith(CONFIG_PREFIX)) {
        if (this.#folded.delete(key)) touched.set(key, rev);
      } else if (key.startsWith(STAGING_PREFIX)) {
        const at = parseStagingKey(key);
        const staged = at && this.#staged.get(at.applyId);
        if (at && staged?.delete(at.configKey)) {
          if (staged.size === 0) this.#staged.delete(at.applyId);
          if (at.applyId === this.#commit.applyId) touched.set(at.configKey, rev);
        }
      } else if (isWorkload(key) && this.#workloads.delete(key)) {
        workloads = true;
        revision = Math.max(revision, rev);
      }
    }
    const configs = new Set<string>();
    for (const [key, rev] of touched) {
      if (!this.#refresh(key)) continue;
      configs.add(key.slice(CONFIG_PREFIX.length));
      kinds.add(key.slice(CONFIG_PREFIX.length).split('/')[0] ?? '');
      revision = Math.max(revision, this.#configs.get(key)?.modRevision ?? rev);
    }
    if (kinds.size === 0 && !workloads) return;
    this.#revision = revision;
    this.onChange({ revision, kinds, configs, workloads, resync: false });
  }

  #fingerprint(): string {
    return JSON.stringify([
      [...this.#configs].map(([k, v]) => [k, v.modRevision]),
      [...this.#workloads].map(([k, v]) => [k, v.modRevision, v.value]),
    ]);
  }

  /** The revision of the last relevant change seen. */
  get revision(): number {
    return this.#revision;
  }

  /**
   * The revision the state is known up to (every part: loaded, then as its watch delivered). A restart
   * resumes every watch after it, so a part ahead of it sees some events again, which changes nothing.
   */
  get watchedRevision(): number {
    let known = Number.POSITIVE_INFINITY;
    for (const part of PART_NAMES)
      known = Math.min(
        known,
        Math.max(this.#fromRevision.get(part) ?? 0, this.#watches.get(part)?.lastRevision ?? 0),
      );
    return Number.isFinite(known) ? known : 0;
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
    return [...this.#workloads.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, kv]) => kv.value);
  }

  /** The applies staged but not named by `config-commit` (in progress, or abandoned). */
  unnamedStagedApplies(): string[] {
    return [...this.#staged.keys()].filter((id) => id !== this.#commit.applyId);
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
    await Promise.all([...this.#watches.values()].map((w) => w.close()));
  }
}
