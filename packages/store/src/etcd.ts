/**
 * The etcd implementation of the store: reads, writes, transactions and lease grants, each bounded
 * by a deadline and retried on another member. Watches live in etcd-watch.ts, leases in
 * etcd-lease.ts, what they share in etcd-shared.ts.
 */
import { type CallOptions, InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { ConstantBackoff, handleWhen, noop, retry } from 'cockatiel';
import { Etcd3, EtcdLeaseInvalidError, type IKeyValue, type IRequestOp, isRecoverableError } from 'etcd3';
import {
  CompactedError,
  ConflictError,
  LeaseLostError,
  StoreClosedError,
  StoreError,
  StoreUnavailableError,
  TxnTooLargeError,
} from './errors.js';
import { EtcdLease } from './etcd-lease.js';
import { delay, type EtcdInternals, isUnavailable, prefixEnd } from './etcd-shared.js';
import { EtcdWatch } from './etcd-watch.js';
import { ensureExactInt64 } from './int64.js';
import { checkKey, checkOps } from './internal.js';
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
  WatchHandler,
  WatchOptions,
  WriteOp,
  WriteResult,
} from './types.js';

/** Options of {@link EtcdStore.connect}. */
export interface EtcdStoreOptions {
  /** Client URLs of the etcd members, e.g. `http://127.0.0.1:2379`. */
  readonly endpoints: readonly string[];
  /** Every key is relative to this keyspace. */
  readonly keyspace: Keyspace;
  /** Bound on the first round trip at start-up (default 5000 ms). */
  readonly connectTimeoutMs?: number;
  /**
   * Bound on every read and write (default 5000 ms). A write that does not commit within it (no
   * quorum, every member down) fails with `StoreUnavailableError`; its outcome is then unknown.
   */
  readonly requestTimeoutMs?: number;
  /** Longest pause between watch reconnect attempts (default 250 ms; the first retry is immediate). */
  readonly maxWatchBackoffMs?: number;
  /**
   * Longest wait for one write attempt before it is abandoned and retried on another member, within
   * `requestTimeoutMs` (default 1000 ms). Shortens the write outage when the etcd leader dies.
   */
  readonly writeAttemptTimeoutMs?: number;
  /**
   * A watch stream that has said nothing for this long (a progress request is sent after half of it)
   * is considered dead and resumed on another member (default 5000 ms).
   */
  readonly watchLivenessMs?: number;
}

/**
 * Makes etcd refuse a call on a member that has no leader (etcd's `hasleader` metadata) instead of
 * hanging until the request times out; the client then moves to another member. On a watch stream
 * it makes a member without a leader cancel the stream, so the watch resumes on a healthy member.
 */
const requireLeader: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('hasleader', 'true');
      next(metadata, listener);
    },
  });

/**
 * The etcd implementation of {@link Store} (etcd3 client, etcd 3.4+). Every call is bounded by
 * `requestTimeoutMs`; watches and lease keepalives re-establish themselves on another member after a
 * failure. Create one with {@link EtcdStore.connect}.
 */
export class EtcdStore implements Store {
  readonly keyspace: Keyspace;
  /** The endpoints this store talks to, as given. */
  readonly endpoints: readonly string[];
  private readonly client: Etcd3;
  private readonly requestTimeoutMs: number;
  private readonly writeAttemptTimeoutMs: number;
  private readonly internals: EtcdInternals;
  private closed = false;
  private readonly watches = new Set<EtcdWatch>();
  private readonly leases = new Set<EtcdLease>();

  private constructor(options: EtcdStoreOptions) {
    this.keyspace = options.keyspace;
    this.endpoints = [...options.endpoints];
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5000;
    this.internals = {
      keyspace: this.keyspace,
      maxWatchBackoffMs: options.maxWatchBackoffMs ?? 250,
      watchLivenessMs: options.watchLivenessMs ?? 5000,
      isClosed: () => this.closed,
      openWatchStream: () => this.client.watchClient.watch({ interceptors: [requireLeader] }),
      openKeepAliveStream: () => this.client.leaseClient.leaseKeepAlive({ interceptors: [requireLeader] }),
      toKeyValue: (kv) => this.toKeyValue(kv),
      list: (prefix) => this.list(prefix),
      revokeLease: (id) => this.revokeLease(id),
    };
    this.writeAttemptTimeoutMs = options.writeAttemptTimeoutMs ?? 1000;
    ensureExactInt64();
    this.client = new Etcd3({
      hosts: [...options.endpoints],
      faultHandling: {
        // No per-host circuit breaker: a killed member refuses connections at once, and a breaker
        // would also count our own stream cancellations as failures.
        host: () => noop,
        global: retry(handleWhen(isRecoverableError), {
          maxAttempts: options.endpoints.length,
          backoff: new ConstantBackoff(25),
        }),
      },
      grpcOptions: {
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
        // large prefixes (a whole config kind) come back in one range response
        'grpc.max_receive_message_length': 256 * 1024 * 1024,
      },
    });
  }

  /**
   * A store whose etcd may not be reachable yet: nothing is checked, calls fail with
   * `StoreUnavailableError` until a member answers, and watches and leases keep retrying (as after a
   * failure). For a process that must serve what it knows while etcd is down (meridiand restarted
   * during an outage); otherwise use {@link EtcdStore.connect}.
   */
  static open(options: EtcdStoreOptions): EtcdStore {
    if (options.endpoints.length === 0) throw new StoreUnavailableError('connect', [], undefined);
    return new EtcdStore(options);
  }

  /**
   * Connects and checks that the cluster answers a linearizable read, retrying (etcd may be starting
   * alongside) for at most `connectTimeoutMs`. Otherwise throws one `StoreUnavailableError` naming
   * the endpoints and the last failure; never hangs.
   */
  static async connect(options: EtcdStoreOptions): Promise<EtcdStore> {
    if (options.endpoints.length === 0) throw new StoreUnavailableError('connect', [], undefined);
    const store = new EtcdStore(options);
    const timeoutMs = options.connectTimeoutMs ?? 5000;
    try {
      await store.read(
        'connect',
        (o) => store.client.kv.range({ key: Buffer.from(store.keyspace.root), limit: 1, keys_only: true }, o),
        timeoutMs,
      );
      return store;
    } catch (error) {
      await store.close();
      if (error instanceof StoreUnavailableError) throw error;
      throw new StoreUnavailableError('connect', store.endpoints, timeoutMs, { cause: error });
    }
  }

  /** Runs one etcd call bounded by `timeoutMs`, turning failures into store errors. */
  private async call<T>(
    operation: string,
    timeoutMs: number,
    fn: (options: CallOptions) => Promise<T>,
  ): Promise<T> {
    if (this.closed) throw new StoreClosedError(operation);
    const deadline = new Date(Date.now() + timeoutMs);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new StoreUnavailableError(operation, this.endpoints, timeoutMs)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([fn({ deadline, interceptors: [requireLeader] }), timeout]);
    } catch (error) {
      if (error instanceof StoreError) throw error;
      if (isUnavailable(error)) {
        throw new StoreUnavailableError(operation, this.endpoints, timeoutMs, { cause: error });
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A read retried on transient failures until `budgetMs` (default `requestTimeoutMs`) has passed. */
  private async read<T>(
    operation: string,
    fn: (options: CallOptions) => Promise<T>,
    budgetMs = this.requestTimeoutMs,
  ): Promise<T> {
    const until = Date.now() + budgetMs;
    let pause = 25;
    let lastCause: unknown;
    for (;;) {
      const left = until - Date.now();
      try {
        return await this.call(operation, Math.max(left, 1), fn);
      } catch (error) {
        if (!(error instanceof StoreUnavailableError)) throw error;
        lastCause = error.cause ?? lastCause;
        if (until - Date.now() <= pause) {
          throw new StoreUnavailableError(operation, this.endpoints, budgetMs, { cause: lastCause });
        }
        await delay(pause);
        pause = Math.min(pause * 2, 250);
      }
    }
  }

  private abs(key: string): Buffer {
    return Buffer.from(this.keyspace.absolute(key));
  }

  /** Converts an etcd key-value (absolute key) into a store one. */
  private toKeyValue(kv: IKeyValue): KeyValue {
    const key = kv.key.toString();
    return {
      key: this.keyspace.relative(key) ?? key,
      value: new Uint8Array(kv.value),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
      version: Number(kv.version),
      lease: String(kv.lease) === '0' || !kv.lease ? undefined : String(kv.lease),
    };
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    const res = await this.read(`get ${key}`, (o) => this.client.kv.range({ key: this.abs(key) }, o));
    const kv = res.kvs[0];
    return kv ? this.toKeyValue(kv) : undefined;
  }

  async list(prefix: string): Promise<ListResult> {
    const start = this.abs(prefix);
    const res = await this.read(`list ${prefix}`, (o) =>
      this.client.kv.range(
        { key: start, range_end: prefixEnd(start), sort_target: 'Key', sort_order: 'Ascend' },
        o,
      ),
    );
    return { items: res.kvs.map((kv) => this.toKeyValue(kv)), revision: Number(res.header.revision) };
  }

  async put(key: string, value: Uint8Array, options: PutOptions = {}): Promise<WriteResult> {
    checkKey(key);
    const op: WriteOp =
      options.lease === undefined
        ? { op: 'put', key, value }
        : { op: 'put', key, value, lease: options.lease };
    if (options.expectModRevision !== undefined) {
      return this.txn({ expect: [{ key, modRevision: options.expectModRevision }], ops: [op] });
    }
    const res = await this.write(`put ${key}`, [op], (o) =>
      this.client.kv.put({ key: this.abs(key), value: Buffer.from(value), lease: options.lease ?? 0 }, o),
    );
    return { revision: Number(res.header.revision) };
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<DeleteResult> {
    checkKey(key);
    if (options.expectModRevision !== undefined) {
      const res = await this.txnRaw(
        `delete ${key}`,
        [{ key, modRevision: options.expectModRevision }],
        [{ op: 'delete', key }],
      );
      return { revision: res.revision, deleted: res.deleted };
    }
    const res = await this.write(`delete ${key}`, [], (o) =>
      this.client.kv.deleteRange({ key: this.abs(key) }, o),
    );
    return { revision: Number(res.header.revision), deleted: Number(res.deleted) };
  }

  async deletePrefix(prefix: string): Promise<DeleteResult> {
    const start = this.abs(prefix);
    const res = await this.write(`deletePrefix ${prefix}`, [], (o) =>
      this.client.kv.deleteRange({ key: start, range_end: prefixEnd(start) }, o),
    );
    return { revision: Number(res.header.revision), deleted: Number(res.deleted) };
  }

  async txn(request: { expect?: readonly Expectation[]; ops: readonly WriteOp[] }): Promise<WriteResult> {
    const res = await this.txnRaw(
      `txn ${request.ops.map((op) => `${op.op} ${op.key}`).join(', ')}`,
      request.expect ?? [],
      request.ops,
    );
    return { revision: res.revision };
  }

  private async txnRaw(
    operation: string,
    expect: readonly Expectation[],
    ops: readonly WriteOp[],
  ): Promise<{ revision: number; deleted: number }> {
    for (const op of ops) checkKey(op.key);
    checkOps(ops);
    const success: IRequestOp[] = ops.map((op) =>
      op.op === 'put'
        ? { request_put: { key: this.abs(op.key), value: Buffer.from(op.value), lease: op.lease ?? 0 } }
        : { request_delete_range: { key: this.abs(op.key) } },
    );
    const bytes = ops.reduce((n, op) => n + op.key.length + (op.op === 'put' ? op.value.length : 0), 0);
    const res = await this.write(
      operation,
      ops,
      async (o) => {
        const r = await this.client.kv
          .txn(
            {
              compare: expect.map((x) => ({
                key: this.abs(x.key),
                target: 'Mod',
                result: 'Equal',
                mod_revision: x.modRevision,
              })),
              success,
              failure: expect.map((x) => ({ request_range: { key: this.abs(x.key), keys_only: true } })),
            },
            o,
          )
          .catch((error: unknown) => {
            // etcd refuses by size before looking at the content: --max-txn-ops, --max-request-bytes.
            const message = error instanceof Error ? error.message : '';
            if (/too many operations in txn request/i.test(message))
              throw new TxnTooLargeError(operation, 'operations', Math.max(ops.length, expect.length), {
                cause: error,
              });
            if (/request is too large/i.test(message))
              throw new TxnTooLargeError(operation, 'bytes', bytes, { cause: error });
            throw error;
          });
        if (!r.succeeded) {
          const actuals = r.responses.map((x) => Number(x.response_range?.kvs[0]?.mod_revision ?? 0));
          const i = Math.max(
            expect.findIndex((x, n) => actuals[n] !== x.modRevision),
            0,
          );
          throw new ConflictError(expect[i]!.key, expect[i]!.modRevision, actuals[i] ?? 0);
        }
        return r;
      },
      expect.length > 0,
    );
    const deleted = res.responses.reduce((n, r) => n + Number(r.response_delete_range?.deleted ?? 0), 0);
    return { revision: Number(res.header.revision), deleted };
  }

  /**
   * A write, bounded by `requestTimeoutMs` in total. An attempt that gets no answer within
   * `writeAttemptTimeoutMs` (typically a follower whose leader just died, which would otherwise hold
   * the request until etcd's own timeout) is abandoned and retried on any member. Retrying a plain
   * put or delete is safe (same outcome). For a compare-and-swap, a conflict seen after an abandoned
   * attempt may be that attempt's own success, so it is reported as `StoreUnavailableError`
   * (outcome unknown) with the conflict as cause, never as a plain `ConflictError`.
   */
  private async write<T>(
    operation: string,
    ops: readonly WriteOp[],
    fn: (options: CallOptions) => Promise<T>,
    conditional = false,
  ): Promise<T> {
    const until = Date.now() + this.requestTimeoutMs;
    let uncertain = false;
    let lastError: unknown;
    for (;;) {
      const left = until - Date.now();
      if (left <= 0) {
        throw new StoreUnavailableError(operation, this.endpoints, this.requestTimeoutMs, {
          cause: lastError instanceof StoreUnavailableError ? lastError.cause : lastError,
        });
      }
      try {
        return await this.call(operation, Math.min(left, this.writeAttemptTimeoutMs), fn);
      } catch (error) {
        if (error instanceof EtcdLeaseInvalidError) {
          const lease = ops.find((op) => op.op === 'put' && op.lease !== undefined);
          throw new LeaseLostError(lease?.op === 'put' ? (lease.lease ?? '?') : '?', 'not found', {
            cause: error,
          });
        }
        if (error instanceof ConflictError && uncertain && conditional) {
          throw new StoreUnavailableError(operation, this.endpoints, this.requestTimeoutMs, { cause: error });
        }
        if (!(error instanceof StoreUnavailableError)) throw error;
        uncertain = true;
        lastError = error;
        await delay(Math.min(25, Math.max(until - Date.now(), 0)));
      }
    }
  }

  async revision(): Promise<number> {
    const res = await this.read('revision', (o) =>
      this.client.kv.range({ key: Buffer.from(this.keyspace.root), limit: 1, keys_only: true }, o),
    );
    return Number(res.header.revision);
  }

  watchPrefix(prefix: string, handler: WatchHandler, options: WatchOptions = {}): Watch {
    if (this.closed) throw new StoreClosedError('watchPrefix');
    const watch = new EtcdWatch(this.internals, this.abs(prefix), prefix, handler, options);
    this.watches.add(watch);
    watch.ended.then(() => this.watches.delete(watch));
    return watch;
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
      throw new RangeError(`lease TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`);
    }
    const sentAt = Date.now();
    // retried like a write: an abandoned grant only leaves a lease nobody keeps alive, which expires
    const res = await this.write(`grant lease (TTL ${ttlSeconds} s)`, [], (o) =>
      this.client.leaseClient.leaseGrant({ TTL: ttlSeconds }, o),
    );
    if (typeof res.ID !== 'string') {
      throw new TypeError(`etcd3 decoded lease id ${res.ID} as ${typeof res.ID}: int64 values are not exact`);
    }
    const lease: EtcdLease = new EtcdLease(this.internals, res.ID, Number(res.TTL), sentAt, () =>
      this.leases.delete(lease),
    );
    this.leases.add(lease);
    return lease;
  }

  async revokeLease(id: LeaseId): Promise<void> {
    try {
      await this.write(`revoke lease ${id}`, [], (o) => this.client.leaseClient.leaseRevoke({ ID: id }, o));
    } catch (error) {
      if (!(error instanceof LeaseLostError)) throw error; // already gone: revoking is idempotent
    }
  }

  async compact(revision: number): Promise<void> {
    try {
      await this.call(`compact ${revision}`, this.requestTimeoutMs, (o) =>
        this.client.kv.compact({ revision, physical: true }, o),
      );
    } catch (error) {
      if (error instanceof Error && /compacted/.test(error.message)) {
        throw new CompactedError(revision, revision);
      }
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.watches].map((w) => w.close()));
    for (const lease of [...this.leases]) lease.release();
    this.closed = true;
    this.client.close();
  }
}
