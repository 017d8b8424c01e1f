import { type CallOptions, InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { ConstantBackoff, handleWhen, isBrokenCircuitError, noop, retry } from 'cockatiel';
import {
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  type IDuplexStream,
  type IKeyValue,
  type ILeaseKeepAliveRequest,
  type ILeaseKeepAliveResponse,
  type IRequestOp,
  type IWatchRequest,
  type IWatchResponse,
  isRecoverableError,
} from 'etcd3';
import {
  CompactedError,
  ConflictError,
  LeaseLostError,
  StoreClosedError,
  StoreError,
  StoreUnavailableError,
  TxnTooLargeError,
} from './errors.js';
import { ensureExactInt64 } from './int64.js';
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

/** The exclusive end of etcd's range for every key starting with `prefix`. */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Ends a stream we no longer need. `graceful`: half-close first, so the etcd3 client does not count
 * the cancellation as a failure of that member and tear down its connection. Otherwise (the stream or
 * its connection is suspect) cancel outright, which also makes the client reconnect to that member.
 */
function quietEnd(
  stream: { on(event: 'error', fn: () => void): unknown; end(): unknown; cancel(): void },
  graceful: boolean,
) {
  stream.on('error', () => {});
  if (graceful) stream.end();
  stream.cancel();
}

/** Whether an etcd3/grpc failure means "could not reach a healthy quorum" (as opposed to a logic error). */
function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    isRecoverableError(error) ||
    error instanceof GRPCDeadlineExceededError ||
    isBrokenCircuitError(error) ||
    /no leader|request timed out|leader changed|too many requests|not capable|connection/i.test(error.message)
  );
}

/** What a store's watches and leases need from it; kept off the public `EtcdStore` surface. */
interface EtcdInternals {
  readonly keyspace: Keyspace;
  readonly maxWatchBackoffMs: number;
  readonly watchLivenessMs: number;
  readonly isClosed: () => boolean;
  openWatchStream(): Promise<IDuplexStream<IWatchRequest, IWatchResponse>>;
  openKeepAliveStream(): Promise<IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>>;
  toKeyValue(kv: IKeyValue): KeyValue;
  list(prefix: string): Promise<ListResult>;
  revokeLease(id: LeaseId): Promise<void>;
}

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

/**
 * One prefix watch on its own gRPC stream. It remembers the last revision it received and, whenever
 * the stream fails (member killed, member lost its leader, network), opens a new stream on any
 * member starting at that revision + 1, and drops anything at or below it: exactly once, in order.
 * A compacted start revision turns into a `resync` batch (snapshot + revision).
 */
class EtcdWatch implements Watch {
  readonly ready: Promise<number>;
  readonly ended: Promise<void>;
  reconnects = 0;
  private resolveReady!: (revision: number) => void;
  private delivery: SerialDelivery<Uint8Array>;
  /** Highest revision received and queued for the handler; resume from here + 1. */
  private received: number | undefined;
  private start = 0;
  private closed = false;
  private endStream: (() => void) | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly store: EtcdInternals,
    private readonly key: Buffer,
    private readonly prefix: string,
    handler: WatchHandler,
    private readonly options: WatchOptions,
  ) {
    this.delivery = new SerialDelivery(handler, options.onError);
    this.ready = new Promise((resolve) => {
      this.resolveReady = resolve;
    });
    if (options.fromRevision !== undefined && options.fromRevision > 0) {
      this.received = options.fromRevision - 1;
    }
    this.ended = this.run();
  }

  get lastRevision(): number {
    return Math.max(this.start, this.delivery.lastDelivered);
  }

  private async run(): Promise<void> {
    let backoff = 0;
    let connectedOnce = false;
    while (!this.closed) {
      let outcome: { error?: unknown; compactRevision?: number };
      try {
        outcome = await this.streamOnce(() => {
          backoff = 0;
          if (connectedOnce) this.reconnects++;
          connectedOnce = true;
        });
      } catch (error) {
        outcome = { error };
      }
      if (this.closed) break;
      if (outcome.compactRevision !== undefined) {
        await this.resync(outcome.compactRevision);
        continue;
      }
      this.status('disconnected', outcome.error);
      if (backoff > 0) await this.sleep(backoff);
      backoff = Math.min(Math.max(backoff * 2, 25), this.store.maxWatchBackoffMs);
    }
  }

  private lastStatus: 'connected' | 'disconnected' | undefined;

  /** Reports connection state changes (not every failed attempt). */
  private status(status: 'connected' | 'disconnected', cause?: unknown): void {
    if (status === this.lastStatus) return;
    this.lastStatus = status;
    try {
      this.options.onStatus?.(status, cause);
    } catch (error) {
      this.delivery.report(error);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Runs one stream until it fails; resolves with why it ended. */
  private async streamOnce(onCreated: () => void): Promise<{ error?: unknown; compactRevision?: number }> {
    const stream = await this.store.openWatchStream();
    if (this.closed) {
      quietEnd(stream, true);
      return {};
    }
    const livenessMs = this.store.watchLivenessMs;
    return new Promise((resolve) => {
      let done = false;
      let lastHeard = Date.now();
      // A silent stream (blackholed connection, hung member) is noticed here rather than after TCP or
      // gRPC keepalive timeouts: after half the bound without a message, ask etcd for a progress
      // notification; after the whole bound, give up on this stream and resume elsewhere.
      const liveness = setInterval(
        () => {
          const silentMs = Date.now() - lastHeard;
          if (silentMs >= livenessMs) {
            finish({ error: new Error(`watch stream silent for ${silentMs} ms`) }, false);
          } else if (silentMs >= livenessMs / 2) {
            stream.write({ progress_request: {} });
          }
        },
        Math.max(livenessMs / 4, 10),
      ).unref();
      const finish = (outcome: { error?: unknown; compactRevision?: number }, graceful = true) => {
        if (done) return;
        done = true;
        clearInterval(liveness);
        this.endStream = undefined;
        quietEnd(stream, graceful);
        resolve(outcome);
      };
      this.endStream = () => finish({});
      stream.on('error', (error: unknown) => finish({ error }, false));
      stream.on('end', () => finish({ error: new Error('watch stream ended') }));
      stream.on('data', (res: IWatchResponse) => {
        if (done) return;
        lastHeard = Date.now();
        if (Number(res.compact_revision) > 0)
          return finish({ compactRevision: Number(res.compact_revision) });
        if (res.canceled) return finish({ error: new Error(`watch canceled: ${res.cancel_reason}`) });
        if (res.created) {
          if (this.received === undefined) this.received = Number(res.header.revision);
          if (this.start === 0) {
            this.start = this.received;
            this.resolveReady(this.start);
          }
          onCreated();
          this.status('connected');
        }
        this.onEvents(res);
      });
      stream.write({
        create_request: {
          key: this.key,
          range_end: prefixEnd(this.key),
          ...(this.received === undefined ? {} : { start_revision: this.received + 1 }),
          progress_notify: true,
        },
      });
    });
  }

  private onEvents(res: IWatchResponse): void {
    if (res.events.length === 0 || this.received === undefined) return;
    const events: WatchEvent[] = [];
    let revision = this.received;
    for (const ev of res.events) {
      const rev = Number(ev.kv.mod_revision);
      // Never hand out a revision twice, whatever the server or client library replays.
      if (rev <= this.received) continue;
      revision = Math.max(revision, rev);
      if (ev.type === 'Put') {
        events.push({ type: 'put', kv: this.store.toKeyValue(ev.kv) });
      } else {
        const key = ev.kv.key.toString();
        events.push({ type: 'delete', key: this.store.keyspace.relative(key) ?? key, modRevision: rev });
      }
    }
    if (events.length === 0) return;
    this.received = revision;
    this.delivery.push({ kind: 'events', revision, events });
  }

  /** The start revision was compacted: deliver a fresh snapshot and continue after it. */
  private async resync(compactRevision: number): Promise<void> {
    let pause = 25;
    while (!this.closed) {
      try {
        const snapshot = await this.store.list(this.prefix);
        if (this.closed) return;
        this.received = snapshot.revision;
        if (this.start === 0) {
          this.start = snapshot.revision;
          this.resolveReady(snapshot.revision);
        }
        this.delivery.push({
          kind: 'resync',
          revision: snapshot.revision,
          compactRevision,
          items: snapshot.items,
        });
        return;
      } catch (error) {
        this.status('disconnected', error);
        await this.sleep(pause);
        pause = Math.min(pause * 2, this.store.maxWatchBackoffMs);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.endStream?.();
    this.wake?.();
    this.resolveReady(this.start);
    await this.delivery.close();
    await this.ended;
  }
}

/**
 * A lease kept alive over a keepalive stream, every TTL/3. It is reported lost when etcd answers
 * TTL 0 (expired or revoked) or when no keepalive sent less than a TTL ago has been acknowledged:
 * from then on etcd may already have expired it, so leadership and keys tied to it must be dropped.
 */
class EtcdLease extends LeaseBase {
  /** Before this instant the lease surely still exists on the server. */
  private validUntil: number;
  private stopped = false;
  private stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined;
  private readonly ticker: NodeJS.Timeout;
  private readonly watchdog: NodeJS.Timeout;
  private pending: number[] = [];
  private opening = false;

  constructor(
    private readonly store: EtcdInternals,
    id: LeaseId,
    ttlSeconds: number,
    grantedSentAt: number,
    private readonly forget: () => void,
  ) {
    super(id, ttlSeconds);
    this.validUntil = grantedSentAt + ttlSeconds * 1000;
    this.ticker = setInterval(() => this.tick(), Math.max((ttlSeconds * 1000) / 3, 100)).unref();
    this.watchdog = setInterval(() => {
      if (Date.now() >= this.validUntil) {
        this.markLost(new LeaseLostError(id, `no keepalive acknowledged within its TTL of ${ttlSeconds} s`));
      }
    }, 50).unref();
    this.tick();
  }

  private tick(): void {
    if (this.stopped) return;
    if (!this.stream) {
      if (!this.opening) this.openStream();
      return;
    }
    const oldest = this.pending[0];
    if (oldest !== undefined && Date.now() - oldest > (this.ttlSeconds * 1000) / 3) {
      // no answer for a third of the TTL: the member may be partitioned, try another one
      const stale = this.stream;
      this.stream = undefined;
      quietEnd(stale, false);
      this.openStream();
      return;
    }
    this.pending.push(Date.now());
    this.stream.write({ ID: this.id });
  }

  private openStream(): void {
    this.opening = true;
    this.store.openKeepAliveStream().then(
      (stream) => {
        this.opening = false;
        if (this.stopped) {
          quietEnd(stream, true);
          return;
        }
        this.stream = stream;
        this.pending = [];
        const drop = () => {
          if (this.stream === stream) this.stream = undefined;
          quietEnd(stream, false);
        };
        stream.on('error', drop);
        stream.on('end', drop);
        stream.on('data', (res: ILeaseKeepAliveResponse) => {
          if (this.stream !== stream) return;
          const sentAt = this.pending.shift() ?? Date.now();
          if (res.TTL === '0' || Number(res.TTL) <= 0) {
            this.markLost(new LeaseLostError(this.id, 'expired or revoked'));
            return;
          }
          this.validUntil = Math.max(this.validUntil, sentAt + Number(res.TTL) * 1000);
        });
        this.tick();
      },
      () => {
        this.opening = false; // retried on the next tick
      },
    );
  }

  protected stopKeepAlive(): void {
    this.stopped = true;
    this.forget();
    clearInterval(this.ticker);
    clearInterval(this.watchdog);
    const stream = this.stream;
    this.stream = undefined;
    if (stream) quietEnd(stream, true);
  }

  async revoke(): Promise<void> {
    if (this.markRevoked() && !this.store.isClosed()) await this.store.revokeLease(this.id);
  }
}
