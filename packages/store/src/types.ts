import type { StoreError } from './errors.js';
import type { Keyspace } from './keyspace.js';

/**
 * A stored key with its value and revisions. Keys are relative to the store's {@link Keyspace}.
 * Revisions follow etcd: the store revision increases by one per committed write (a transaction
 * is one revision); `createRevision` is the revision that created the key, `modRevision` the last
 * one that changed it, `version` counts changes since creation.
 */
export interface KeyValue<V = Uint8Array> {
  readonly key: string;
  readonly value: V;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** Lease the key is attached to, if any. */
  readonly lease: LeaseId | undefined;
}

/** A lease id (etcd's int64, as a decimal string). */
export type LeaseId = string;

/** A snapshot of a prefix at one store revision. */
export interface ListResult<V = Uint8Array> {
  readonly items: KeyValue<V>[];
  /** The store revision the snapshot was read at. */
  readonly revision: number;
}

/**
 * A compare in a transaction: `key` must be at mod revision `modRevision`; 0 means the key must not
 * exist (create-if-absent).
 */
export interface Expectation {
  readonly key: string;
  readonly modRevision: number;
}

/** One write inside a transaction. */
export type WriteOp =
  | { readonly op: 'put'; readonly key: string; readonly value: Uint8Array; readonly lease?: LeaseId }
  | { readonly op: 'delete'; readonly key: string };

/** Options of a single put. */
export interface PutOptions {
  /** Attach the key to this lease: it is deleted when the lease expires or is revoked. */
  readonly lease?: LeaseId;
  /** Compare-and-swap: fail with `ConflictError` unless the key is at this mod revision (0 = absent). */
  readonly expectModRevision?: number;
}

/** Options of a single delete. */
export interface DeleteOptions {
  /** Compare-and-swap: fail with `ConflictError` unless the key is at this mod revision. */
  readonly expectModRevision?: number;
}

/** Result of a write: the store revision it was committed at. */
export interface WriteResult {
  readonly revision: number;
}

/** Result of a delete. */
export interface DeleteResult extends WriteResult {
  /** Number of keys deleted (0 when the key did not exist; `revision` is then the current one). */
  readonly deleted: number;
}

/** A change delivered by a watch. Keys are relative to the keyspace. */
export type WatchEvent<V = Uint8Array> =
  | { readonly type: 'put'; readonly kv: KeyValue<V> }
  | { readonly type: 'delete'; readonly key: string; readonly modRevision: number };

/**
 * What a watch handler receives.
 * - `events`: every change of one or more consecutive revisions, in revision order, each exactly once.
 * - `resync`: the requested start revision was compacted, so the changes in between are gone.
 *   `items` is a fresh snapshot of the whole prefix at `revision`; replace local state with it.
 *   Events continue from `revision + 1`. Never a silent gap.
 */
export type WatchBatch<V = Uint8Array> =
  | { readonly kind: 'events'; readonly revision: number; readonly events: WatchEvent<V>[] }
  | {
      readonly kind: 'resync';
      readonly revision: number;
      readonly compactRevision: number;
      readonly items: KeyValue<V>[];
    };

/**
 * Called for each batch, one at a time in order; a returned promise is awaited before the next batch
 * (back-pressure). A throw is reported through `onError` and does not stop the watch.
 */
export type WatchHandler<V = Uint8Array> = (batch: WatchBatch<V>) => void | Promise<void>;

/** Connection state of a watch, reported through `onStatus`. */
export type WatchStatus = 'connected' | 'disconnected';

/** Options of {@link Store.watchPrefix}. */
export interface WatchOptions {
  /**
   * First revision to deliver. Omitted: changes after the current revision. A compacted revision
   * yields a `resync` batch first.
   */
  readonly fromRevision?: number;
  /** Connection state changes (the watch reconnects by itself). */
  readonly onStatus?: (status: WatchStatus, cause?: unknown) => void;
  /** Errors that do not stop the watch (handler threw, malformed value in a typed watch). */
  readonly onError?: (error: unknown) => void;
}

/** A running watch. */
export interface Watch {
  /** Resolves once the watch is established, with the revision after which changes are delivered. */
  readonly ready: Promise<number>;
  /** The last revision whose changes have all been handed to the handler. */
  readonly lastRevision: number;
  /** Number of times the watch re-established itself after a failure. */
  readonly reconnects: number;
  /** Stops the watch; no batch is delivered after it resolves. Safe to call twice. */
  close(): Promise<void>;
}

/** The state of a lease. */
export type LeaseState = 'alive' | 'lost' | 'revoked';

/**
 * A lease, kept alive by the store until revoked or lost. `lost` is reported when the store says the
 * lease is gone, or when no keepalive was acknowledged for a whole TTL (the lease may then have
 * expired on the server, so anything that depends on it must be treated as gone).
 */
export interface Lease {
  readonly id: LeaseId;
  readonly ttlSeconds: number;
  readonly state: LeaseState;
  /** Resolves (never rejects) when the lease is lost; stays pending if it is revoked by its owner. */
  readonly lost: Promise<StoreError>;
  /** Registers a loss callback; returns a function that unregisters it. */
  onLost(callback: (error: StoreError) => void): () => void;
  /** Revokes the lease: its keys are deleted. Safe to call twice. */
  revoke(): Promise<void>;
  /** Stops keepalives without revoking (the lease expires after its TTL), like a crashed process. */
  release(): void;
}

/**
 * Typed access to one keyspace of the consensus store. All keys are relative to `keyspace`, so two
 * meshes or clusters share one etcd without seeing each other's keys. Implemented by `EtcdStore` and
 * `MemoryStore`, both held to one contract suite.
 */
export interface Store {
  /** The keyspace every key is relative to. */
  readonly keyspace: Keyspace;
  /** Reads one key (linearizable). */
  get(key: string): Promise<KeyValue | undefined>;
  /** Reads every key under `prefix` ('' = the whole keyspace), sorted by key, at one revision. */
  list(prefix: string): Promise<ListResult>;
  /** Writes one key; with `expectModRevision`, a compare-and-swap that throws `ConflictError`. */
  put(key: string, value: Uint8Array, options?: PutOptions): Promise<WriteResult>;
  /** Deletes one key. */
  delete(key: string, options?: DeleteOptions): Promise<DeleteResult>;
  /** Deletes every key under `prefix` in one revision. */
  deletePrefix(prefix: string): Promise<DeleteResult>;
  /**
   * All-or-nothing transaction: if every expectation holds, applies `ops` at one revision; otherwise
   * applies nothing and throws `ConflictError` naming the first key that did not match.
   */
  txn(request: {
    readonly expect?: readonly Expectation[];
    readonly ops: readonly WriteOp[];
  }): Promise<WriteResult>;
  /** The current store revision. */
  revision(): Promise<number>;
  /**
   * Watches every key under `prefix`. Delivers every change exactly once, in order, across
   * reconnects and member failures; a compacted start revision yields a `resync` batch.
   */
  watchPrefix(prefix: string, handler: WatchHandler, options?: WatchOptions): Watch;
  /** Grants a lease with a TTL in whole seconds (at least 1) and keeps it alive. */
  grantLease(ttlSeconds: number): Promise<Lease>;
  /** Revokes a lease by id (any holder's): its keys are deleted and its holder sees it lost. */
  revokeLease(id: LeaseId): Promise<void>;
  /** Discards history before `revision` (watches from older revisions then resync). */
  compact(revision: number): Promise<void>;
  /** Releases connections, watches and lease keepalives (leases are not revoked). Safe to call twice. */
  close(): Promise<void>;
}
