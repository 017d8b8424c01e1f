import { type Codec, jsonCodec } from './codec.js';
import { MalformedValueError } from './errors.js';
import type {
  DeleteOptions,
  DeleteResult,
  KeyValue,
  LeaseId,
  ListResult,
  PutOptions,
  Store,
  Watch,
  WatchBatch,
  WatchEvent,
  WatchHandler,
  WatchOptions,
  WatchStatus,
  WriteOp,
  WriteResult,
} from './types.js';

/** Options of a {@link Collection}. */
export interface CollectionOptions {
  /** Called for every value that does not decode; the value is skipped. */
  readonly onMalformed?: (error: MalformedValueError) => void;
}

/**
 * Typed values of one kind under one prefix of a store, e.g. every `VirtualService` under
 * `config/VirtualService/`. Methods take names relative to the prefix; returned `KeyValue.key`s are
 * keyspace-relative keys. A value that does not decode is reported (`onMalformed`, `malformedCount`)
 * with its key and skipped by `list`, `watch` and mirrors, so one bad value never stops a watcher;
 * `get` of that one key throws the `MalformedValueError`.
 */
export class Collection<T> {
  private malformed = 0;

  constructor(
    readonly store: Store,
    /** Keyspace-relative prefix ending in `/` (or '' for the whole keyspace). */
    readonly prefix: string,
    readonly codec: Codec<T> = jsonCodec<T>(),
    private readonly options: CollectionOptions = {},
  ) {}

  /** How many malformed values this collection has reported so far. */
  get malformedCount(): number {
    return this.malformed;
  }

  /** The keyspace-relative key of `name`. */
  key(name: string): string {
    return this.prefix + name;
  }

  /** The name of a keyspace-relative key of this collection. */
  nameOf(key: string): string {
    return key.startsWith(this.prefix) ? key.slice(this.prefix.length) : key;
  }

  /** Decodes one stored value; undefined (after reporting) when malformed. */
  decode(kv: KeyValue): KeyValue<T> | undefined {
    try {
      return { ...kv, value: this.codec.decode(kv.value) };
    } catch (cause) {
      this.reportMalformed(new MalformedValueError(kv.key, kv.modRevision, this.codec.name, { cause }));
      return undefined;
    }
  }

  private reportMalformed(error: MalformedValueError): void {
    this.malformed++;
    try {
      this.options.onMalformed?.(error);
    } catch {
      // a failing report must not stop a reader
    }
  }

  async get(name: string): Promise<KeyValue<T> | undefined> {
    const kv = await this.store.get(this.key(name));
    if (!kv) return undefined;
    try {
      return { ...kv, value: this.codec.decode(kv.value) };
    } catch (cause) {
      const error = new MalformedValueError(kv.key, kv.modRevision, this.codec.name, { cause });
      this.reportMalformed(error);
      throw error;
    }
  }

  async list(): Promise<ListResult<T>> {
    const res = await this.store.list(this.prefix);
    return { revision: res.revision, items: this.decodeAll(res.items) };
  }

  private decodeAll(items: KeyValue[]): KeyValue<T>[] {
    const out: KeyValue<T>[] = [];
    for (const kv of items) {
      const decoded = this.decode(kv);
      if (decoded) out.push(decoded);
    }
    return out;
  }

  put(name: string, value: T, options?: PutOptions): Promise<WriteResult> {
    return this.store.put(this.key(name), this.codec.encode(value), options);
  }

  delete(name: string, options?: DeleteOptions): Promise<DeleteResult> {
    return this.store.delete(this.key(name), options);
  }

  /** A put of `name` for {@link Store.txn}. */
  putOp(name: string, value: T, lease?: LeaseId): WriteOp {
    const key = this.key(name);
    const bytes = this.codec.encode(value);
    return lease === undefined ? { op: 'put', key, value: bytes } : { op: 'put', key, value: bytes, lease };
  }

  /** A delete of `name` for {@link Store.txn}. */
  deleteOp(name: string): WriteOp {
    return { op: 'delete', key: this.key(name) };
  }

  /** Watches the collection with decoded values (see {@link Store.watchPrefix}); malformed puts are skipped. */
  watch(handler: WatchHandler<T>, options?: WatchOptions): Watch {
    return this.store.watchPrefix(this.prefix, (batch) => handler(this.decodeBatch(batch)), options);
  }

  private decodeBatch(batch: WatchBatch): WatchBatch<T> {
    if (batch.kind === 'resync') return { ...batch, items: this.decodeAll(batch.items) };
    const events: WatchEvent<T>[] = [];
    for (const e of batch.events) {
      if (e.type === 'delete') {
        events.push(e);
        continue;
      }
      const kv = this.decode(e.kv);
      if (kv) events.push({ type: 'put', kv });
    }
    return { kind: 'events', revision: batch.revision, events };
  }

  /** Opens a {@link Mirror}: the last known state of this collection, kept current by a watch. */
  mirror(options?: MirrorOptions<T>): Promise<Mirror<T>> {
    return Mirror.open(this, options);
  }
}

/** Options of a {@link Mirror}. */
export interface MirrorOptions<T> {
  /** Called after each change is applied (also after a resync). */
  readonly onChange?: (mirror: Mirror<T>, batch: WatchBatch<T>) => void;
  readonly onStatus?: (status: WatchStatus, cause?: unknown) => void;
  readonly onError?: (error: unknown) => void;
}

/**
 * The read cache: the last known state of one collection, loaded with one list and kept current by
 * a watch that resumes by itself. Reads never touch the network, so they keep working (with the last
 * known state) while etcd has lost quorum or is unreachable; `connected` and `disconnectedSince`
 * tell the caller how fresh that state is. This is how a replica keeps serving last-known-good:
 * read config and endpoints from mirrors, write through the store (writes fail while quorum is lost).
 */
export class Mirror<T> {
  private readonly items = new Map<string, KeyValue<T>>();
  private watch: Watch | undefined;
  private rev = 0;
  private isConnected = true;
  private since: number | undefined;

  private constructor(
    readonly collection: Collection<T>,
    private readonly options: MirrorOptions<T>,
  ) {}

  /** Loads the collection (needs the store reachable) and starts following it. */
  static async open<T>(collection: Collection<T>, options: MirrorOptions<T> = {}): Promise<Mirror<T>> {
    const mirror = new Mirror(collection, options);
    const snapshot = await collection.list();
    for (const kv of snapshot.items) mirror.items.set(kv.key, kv);
    mirror.rev = snapshot.revision;
    mirror.watch = collection.watch((batch) => mirror.apply(batch), {
      fromRevision: snapshot.revision + 1,
      onStatus: (status, cause) => {
        mirror.isConnected = status === 'connected';
        if (status === 'connected') mirror.since = undefined;
        else mirror.since ??= Date.now();
        options.onStatus?.(status, cause);
      },
      ...(options.onError ? { onError: options.onError } : {}),
    });
    return mirror;
  }

  private apply(batch: WatchBatch<T>): void {
    if (batch.kind === 'resync') {
      this.items.clear();
      for (const kv of batch.items) this.items.set(kv.key, kv);
    } else {
      for (const e of batch.events) {
        if (e.type === 'put') this.items.set(e.kv.key, e.kv);
        else this.items.delete(e.key);
      }
    }
    this.rev = batch.revision;
    this.options.onChange?.(this, batch);
  }

  /** The revision the mirrored state is at. */
  get revision(): number {
    return this.rev;
  }

  /** Whether the watch behind the mirror is currently connected. */
  get connected(): boolean {
    return this.isConnected;
  }

  /** When the watch lost its connection (ms since epoch), or undefined while connected. */
  get disconnectedSince(): number | undefined {
    return this.since;
  }

  /** The last known value of `name`. */
  get(name: string): KeyValue<T> | undefined {
    return this.items.get(this.collection.key(name));
  }

  /** The last known values, sorted by key. */
  list(): KeyValue<T>[] {
    return [...this.items.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  get size(): number {
    return this.items.size;
  }

  /** Stops following; the last known state stays readable. */
  async close(): Promise<void> {
    await this.watch?.close();
  }
}
