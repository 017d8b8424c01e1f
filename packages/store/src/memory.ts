import {
  CompactedError,
  ConflictError,
  LeaseLostError,
  StoreClosedError,
  TxnTooLargeError,
} from './errors.js';
import { checkKey, checkOps, LeaseBase, SerialDelivery } from './internal.js';
import type { Keyspace } from './keyspace.js';
import type {
  DeleteOptions,
  DeleteResult,
  Expectation,
  KeyValue,
  Lease,
  LeaseId,
  ListResult,
  PutOptions,
  Store,
  Watch,
  WatchEvent,
  WatchHandler,
  WatchOptions,
  WriteOp,
  WriteResult,
} from './types.js';

interface Entry {
  value: Uint8Array;
  createRevision: number;
  modRevision: number;
  version: number;
  lease: LeaseId | undefined;
}

type RawEvent = { type: 'put'; key: string; entry: Entry } | { type: 'delete'; key: string };

interface HistoryItem {
  revision: number;
  events: RawEvent[];
}

interface LeaseRecord {
  ttlSeconds: number;
  keys: Set<string>;
  timer: NodeJS.Timeout;
  onGone: Set<(reason: string) => void>;
}

type Listener = (revision: number, events: RawEvent[]) => void;

/**
 * The shared state behind one or more {@link MemoryStore}s: one revision counter, history, leases.
 * Several stores with different keyspaces over one backend behave like meshes sharing one etcd.
 */
export class MemoryBackend {
  revision = 1;
  compactRevision = 0;
  readonly kvs = new Map<string, Entry>();
  private history: HistoryItem[] = [];
  readonly leases = new Map<LeaseId, LeaseRecord>();
  private readonly listeners = new Set<Listener>();
  private nextLease = 0x1000;

  private toKv(key: string, e: Entry, keyspace: Keyspace): KeyValue {
    return {
      key: keyspace.relative(key) ?? key,
      value: e.value,
      createRevision: e.createRevision,
      modRevision: e.modRevision,
      version: e.version,
      lease: e.lease,
    };
  }

  range(prefix: string, keyspace: Keyspace): KeyValue[] {
    const out: KeyValue[] = [];
    for (const [key, e] of this.kvs) if (key.startsWith(prefix)) out.push(this.toKv(key, e, keyspace));
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  get(key: string, keyspace: Keyspace): KeyValue | undefined {
    const e = this.kvs.get(key);
    return e ? this.toKv(key, e, keyspace) : undefined;
  }

  /** Applies `ops` at one new revision if every expectation holds (keys absolute). */
  commit(expect: readonly Expectation[], ops: readonly WriteOp[], keyspace: Keyspace): number {
    for (const x of expect) {
      const actual = this.kvs.get(keyspace.absolute(x.key))?.modRevision ?? 0;
      if (actual !== x.modRevision) throw new ConflictError(x.key, x.modRevision, actual);
    }
    for (const op of ops) {
      if (op.op === 'put' && op.lease !== undefined && !this.leases.has(op.lease)) {
        throw new LeaseLostError(op.lease, 'not found');
      }
    }
    const events: RawEvent[] = [];
    const revision = this.revision + 1;
    for (const op of ops) {
      const key = keyspace.absolute(op.key);
      const prev = this.kvs.get(key);
      if (op.op === 'put') {
        if (prev?.lease !== undefined) this.leases.get(prev.lease)?.keys.delete(key);
        const entry: Entry = {
          value: op.value,
          createRevision: prev?.createRevision ?? revision,
          modRevision: revision,
          version: (prev?.version ?? 0) + 1,
          lease: op.lease,
        };
        this.kvs.set(key, entry);
        if (op.lease !== undefined) this.leases.get(op.lease)?.keys.add(key);
        events.push({ type: 'put', key, entry });
      } else if (prev) {
        this.kvs.delete(key);
        if (prev.lease !== undefined) this.leases.get(prev.lease)?.keys.delete(key);
        events.push({ type: 'delete', key });
      }
    }
    if (events.length === 0) return this.revision;
    this.publish(revision, events);
    return revision;
  }

  deleteAbsolutePrefix(prefix: string): { revision: number; deleted: number } {
    const keys = [...this.kvs.keys()].filter((k) => k.startsWith(prefix));
    return this.deleteAbsolute(keys);
  }

  private deleteAbsolute(keys: string[]): { revision: number; deleted: number } {
    if (keys.length === 0) return { revision: this.revision, deleted: 0 };
    const revision = this.revision + 1;
    const events: RawEvent[] = [];
    for (const key of keys.sort()) {
      const prev = this.kvs.get(key);
      if (!prev) continue;
      this.kvs.delete(key);
      if (prev.lease !== undefined) this.leases.get(prev.lease)?.keys.delete(key);
      events.push({ type: 'delete', key });
    }
    this.publish(revision, events);
    return { revision, deleted: events.length };
  }

  private publish(revision: number, events: RawEvent[]): void {
    this.revision = revision;
    this.history.push({ revision, events });
    for (const l of [...this.listeners]) l(revision, events);
  }

  /** History items at or after `from`, or undefined when `from` is compacted. */
  historyFrom(from: number): HistoryItem[] | undefined {
    if (from < this.compactRevision) return undefined;
    return this.history.filter((h) => h.revision >= from);
  }

  listen(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  compact(revision: number): void {
    if (revision <= this.compactRevision) throw new CompactedError(revision, this.compactRevision);
    this.compactRevision = Math.min(revision, this.revision);
    this.history = this.history.filter((h) => h.revision >= this.compactRevision);
  }

  grantLease(ttlSeconds: number): LeaseId {
    const id = String(this.nextLease++);
    const record: LeaseRecord = {
      ttlSeconds,
      keys: new Set(),
      timer: setTimeout(() => this.endLease(id, 'expired or revoked'), ttlSeconds * 1000).unref(),
      onGone: new Set(),
    };
    this.leases.set(id, record);
    return id;
  }

  /** Refreshes a lease's TTL; false when it no longer exists. */
  keepAlive(id: LeaseId): boolean {
    const record = this.leases.get(id);
    if (!record) return false;
    record.timer.refresh();
    return true;
  }

  /** Deletes the lease and its keys at one revision (expiry or revoke). */
  endLease(id: LeaseId, reason: string): boolean {
    const record = this.leases.get(id);
    if (!record) return false;
    clearTimeout(record.timer);
    this.leases.delete(id);
    this.deleteAbsolute([...record.keys]);
    for (const cb of [...record.onGone]) cb(reason);
    return true;
  }

  close(): void {
    for (const [, record] of this.leases) clearTimeout(record.timer);
  }
}

class MemoryLease extends LeaseBase {
  private readonly interval: NodeJS.Timeout;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly backend: MemoryBackend,
    id: LeaseId,
    ttlSeconds: number,
    private readonly forget: () => void,
  ) {
    super(id, ttlSeconds);
    const record = backend.leases.get(id)!;
    const onGone = (reason: string) => this.markLost(new LeaseLostError(id, reason));
    record.onGone.add(onGone);
    this.unsubscribe = () => record.onGone.delete(onGone);
    this.interval = setInterval(
      () => {
        if (!backend.keepAlive(id)) this.markLost(new LeaseLostError(id, 'not found'));
      },
      (ttlSeconds * 1000) / 3,
    ).unref();
  }

  protected stopKeepAlive(): void {
    this.forget();
    clearInterval(this.interval);
    this.unsubscribe();
  }

  async revoke(): Promise<void> {
    if (this.markRevoked()) this.backend.endLease(this.id, 'expired or revoked');
  }
}

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  keyspace: Keyspace;
  /** Share a backend between stores (different keyspaces, one revision counter). */
  backend?: MemoryBackend;
  /** Most compares, and most operations, in one transaction (etcd's `--max-txn-ops`, default 128). */
  maxTxnOps?: number;
}

/**
 * An in-memory {@link Store} with etcd's semantics (revisions, history, compaction, leases), for unit
 * tests of pure logic. Held to the same contract suite as `EtcdStore`.
 */
export class MemoryStore implements Store {
  readonly keyspace: Keyspace;
  /** The shared state; exposed so tests can share it between stores. */
  readonly backend: MemoryBackend;
  private closed = false;
  private readonly watches = new Set<Watch>();
  private readonly leases = new Set<Lease>();
  private readonly maxTxnOps: number;

  constructor(options: MemoryStoreOptions) {
    this.keyspace = options.keyspace;
    this.backend = options.backend ?? new MemoryBackend();
    this.maxTxnOps = options.maxTxnOps ?? 128;
  }

  private check(operation: string): void {
    if (this.closed) throw new StoreClosedError(operation);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.check(`get ${key}`);
    checkKey(key);
    return this.backend.get(this.keyspace.absolute(key), this.keyspace);
  }

  async list(prefix: string): Promise<ListResult> {
    this.check(`list ${prefix}`);
    return {
      items: this.backend.range(this.keyspace.absolute(prefix), this.keyspace),
      revision: this.backend.revision,
    };
  }

  async put(key: string, value: Uint8Array, options: PutOptions = {}): Promise<WriteResult> {
    this.check(`put ${key}`);
    checkKey(key);
    const expect =
      options.expectModRevision === undefined ? [] : [{ key, modRevision: options.expectModRevision }];
    const op: WriteOp =
      options.lease === undefined
        ? { op: 'put', key, value }
        : { op: 'put', key, value, lease: options.lease };
    return this.txn({ expect, ops: [op] });
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<DeleteResult> {
    this.check(`delete ${key}`);
    checkKey(key);
    const expect =
      options.expectModRevision === undefined ? [] : [{ key, modRevision: options.expectModRevision }];
    const existed = this.backend.kvs.has(this.keyspace.absolute(key));
    const revision = this.backend.commit(expect, [{ op: 'delete', key }], this.keyspace);
    return { revision, deleted: existed ? 1 : 0 };
  }

  async deletePrefix(prefix: string): Promise<DeleteResult> {
    this.check(`deletePrefix ${prefix}`);
    return this.backend.deleteAbsolutePrefix(this.keyspace.absolute(prefix));
  }

  async txn(request: { expect?: readonly Expectation[]; ops: readonly WriteOp[] }): Promise<WriteResult> {
    this.check('txn');
    for (const op of request.ops) checkKey(op.key);
    checkOps(request.ops);
    const size = Math.max(request.ops.length, request.expect?.length ?? 0);
    if (size > this.maxTxnOps) throw new TxnTooLargeError('txn', 'operations', size);
    return { revision: this.backend.commit(request.expect ?? [], request.ops, this.keyspace) };
  }

  async revision(): Promise<number> {
    this.check('revision');
    return this.backend.revision;
  }

  watchPrefix(prefix: string, handler: WatchHandler, options: WatchOptions = {}): Watch {
    this.check('watchPrefix');
    const abs = this.keyspace.absolute(prefix);
    const delivery = new SerialDelivery(handler, options.onError);
    const toEvents = (events: RawEvent[]): WatchEvent[] =>
      events
        .filter((e) => e.key.startsWith(abs))
        .map((e) => {
          const key = this.keyspace.relative(e.key) ?? e.key;
          if (e.type === 'delete') return { type: 'delete', key, modRevision: 0 };
          return {
            type: 'put',
            kv: {
              key,
              value: e.entry.value,
              createRevision: e.entry.createRevision,
              modRevision: e.entry.modRevision,
              version: e.entry.version,
              lease: e.entry.lease,
            },
          };
        });
    const deliver = (revision: number, raw: RawEvent[]) => {
      const events = toEvents(raw).map((e) => (e.type === 'delete' ? { ...e, modRevision: revision } : e));
      if (events.length > 0) delivery.push({ kind: 'events', revision, events });
    };

    let start = this.backend.revision;
    if (options.fromRevision !== undefined && options.fromRevision > 0) {
      const history = this.backend.historyFrom(options.fromRevision);
      if (history === undefined) {
        delivery.push({
          kind: 'resync',
          revision: this.backend.revision,
          compactRevision: this.backend.compactRevision,
          items: this.backend.range(abs, this.keyspace),
        });
      } else {
        for (const h of history) deliver(h.revision, h.events);
        start = Math.min(options.fromRevision - 1, this.backend.revision);
      }
    }
    const unlisten = this.backend.listen(deliver);
    options.onStatus?.('connected');
    let closed = false;
    const watch: Watch = {
      ready: Promise.resolve(start),
      get lastRevision() {
        return Math.max(start, delivery.lastDelivered);
      },
      reconnects: 0,
      close: async () => {
        if (closed) return;
        closed = true;
        unlisten();
        this.watches.delete(watch);
        await delivery.close();
      },
    };
    this.watches.add(watch);
    return watch;
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    this.check('grantLease');
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
      throw new RangeError(`lease TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`);
    }
    const lease: MemoryLease = new MemoryLease(
      this.backend,
      this.backend.grantLease(ttlSeconds),
      ttlSeconds,
      () => this.leases.delete(lease),
    );
    this.leases.add(lease);
    return lease;
  }

  async revokeLease(id: LeaseId): Promise<void> {
    this.check('revokeLease');
    this.backend.endLease(id, 'expired or revoked');
  }

  async compact(revision: number): Promise<void> {
    this.check('compact');
    this.backend.compact(revision);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const lease of [...this.leases]) lease.release();
    await Promise.all([...this.watches].map((w) => w.close()));
  }
}
