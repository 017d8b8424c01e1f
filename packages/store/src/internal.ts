// Pieces shared by the store implementations. Not exported from the package.
import { InvalidKeyError, type StoreError } from './errors.js';
import type { Lease, LeaseId, LeaseState, WatchBatch, WatchHandler, WriteOp } from './types.js';

/**
 * Hands batches to a watch handler one at a time, in order, awaiting a returned promise before the
 * next. A throwing handler is reported through `onError` and the watch goes on.
 */
export class SerialDelivery<V> {
  private readonly queue: WatchBatch<V>[] = [];
  private running: Promise<void> | undefined;
  private closed = false;
  /** Last revision whose batch has been handed to the handler (and awaited). */
  lastDelivered = 0;

  constructor(
    private readonly handler: WatchHandler<V>,
    private readonly onError: ((error: unknown) => void) | undefined,
  ) {}

  push(batch: WatchBatch<V>): void {
    if (this.closed) return;
    this.queue.push(batch);
    // never call the handler synchronously from push (e.g. while watchPrefix is still returning)
    if (!this.running) this.running = Promise.resolve().then(() => this.drain());
  }

  private async drain(): Promise<void> {
    while (!this.closed) {
      const batch = this.queue.shift();
      if (!batch) break;
      try {
        await this.handler(batch);
      } catch (error) {
        this.report(error);
      }
      this.lastDelivered = batch.revision;
    }
    this.running = undefined;
  }

  report(error: unknown): void {
    try {
      this.onError?.(error);
    } catch {
      // an error callback that throws must not stop the watch either
    }
  }

  /** Stops delivery; resolves when the batch in flight (if any) has been handled. */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    await this.running;
  }
}

/** Rejects a transaction that touches one key twice (etcd refuses it too). */
export function checkOps(ops: readonly WriteOp[]): void {
  const seen = new Set<string>();
  for (const op of ops) {
    if (seen.has(op.key)) throw new InvalidKeyError(op.key, 'appears twice in one transaction');
    seen.add(op.key);
  }
}

/** Rejects an empty key (the whole keyspace is a prefix, not a key). */
export function checkKey(key: string): void {
  if (key === '') throw new InvalidKeyError(key, 'a key must not be empty');
  if (key.startsWith('/')) {
    throw new InvalidKeyError(key, 'keys are relative to the keyspace and must not start with "/"');
  }
}

/** The state, loss promise and callbacks every lease implementation shares. */
export abstract class LeaseBase implements Lease {
  private innerState: LeaseState = 'alive';
  private readonly callbacks = new Set<(error: StoreError) => void>();
  private resolveLost!: (error: StoreError) => void;
  readonly lost: Promise<StoreError> = new Promise((resolve) => {
    this.resolveLost = resolve;
  });

  constructor(
    readonly id: LeaseId,
    readonly ttlSeconds: number,
  ) {}

  get state(): LeaseState {
    return this.innerState;
  }

  onLost(callback: (error: StoreError) => void): () => void {
    this.callbacks.add(callback);
    return () => this.callbacks.delete(callback);
  }

  /** Marks the lease lost once (no-op unless alive) and tells every listener. */
  protected markLost(error: StoreError): void {
    if (this.innerState !== 'alive') return;
    this.innerState = 'lost';
    this.stopKeepAlive();
    this.resolveLost(error);
    for (const cb of [...this.callbacks]) {
      try {
        cb(error);
      } catch {
        // a listener's failure must not affect the others
      }
    }
  }

  /** Marks the lease as given up by its owner (revoked or released). */
  protected markRevoked(): boolean {
    if (this.innerState !== 'alive') return false;
    this.innerState = 'revoked';
    this.stopKeepAlive();
    return true;
  }

  protected abstract stopKeepAlive(): void;
  abstract revoke(): Promise<void>;
  release(): void {
    this.markRevoked();
  }
}

/** Encodes a string as UTF-8 bytes. */
export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
