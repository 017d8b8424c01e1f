/**
 * Typed errors of the store. Every error carries a stable `code`, the context fields that name what
 * failed (key, endpoints, revisions) and the underlying `cause` when there is one.
 */

/** Machine-readable error codes, one per error class. */
export type StoreErrorCode =
  | 'STORE_UNAVAILABLE'
  | 'CONFLICT'
  | 'COMPACTED'
  | 'MALFORMED_VALUE'
  | 'LEASE_LOST'
  | 'LEADERSHIP_LOST'
  | 'INVALID_KEY'
  | 'STORE_CLOSED'
  | 'TXN_TOO_LARGE';

/** Base class of every error thrown or reported by `@meridian/store`. */
export abstract class StoreError extends Error {
  abstract readonly code: StoreErrorCode;
}

/**
 * The backing store could not be reached, or did not answer within the configured bound (no quorum,
 * every endpoint down). `endpoints` names what was tried. For a write, the outcome is unknown: the
 * write may or may not have been applied.
 */
export class StoreUnavailableError extends StoreError {
  override readonly name = 'StoreUnavailableError';
  readonly code = 'STORE_UNAVAILABLE';
  constructor(
    /** What was attempted, e.g. `put config/a` or `connect`. */
    readonly operation: string,
    readonly endpoints: readonly string[],
    readonly timeoutMs: number | undefined,
    options?: { cause?: unknown },
  ) {
    const bound = timeoutMs === undefined ? '' : ` within ${timeoutMs} ms`;
    const cause = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(
      `etcd unavailable at ${endpoints.join(', ')}: ${operation} did not complete${bound}${cause}`,
      options,
    );
  }
}

/**
 * A compare-and-swap failed: `key` was expected at mod revision `expected` (0 = absent) but is at
 * `actual` (0 = absent).
 */
export class ConflictError extends StoreError {
  override readonly name = 'ConflictError';
  readonly code = 'CONFLICT';
  constructor(
    readonly key: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`conflict on key "${key}": expected mod revision ${expected}, found ${actual}`);
  }
}

/** A revision that is no longer in the store's history was requested. */
export class CompactedError extends StoreError {
  override readonly name = 'CompactedError';
  readonly code = 'COMPACTED';
  constructor(
    readonly requested: number,
    readonly compactRevision: number,
  ) {
    super(`revision ${requested} has been compacted (history starts at ${compactRevision})`);
  }
}

/** A stored value could not be decoded by the codec. Reported with its key; the value is skipped. */
export class MalformedValueError extends StoreError {
  override readonly name = 'MalformedValueError';
  readonly code = 'MALFORMED_VALUE';
  constructor(
    readonly key: string,
    readonly modRevision: number,
    readonly codec: string,
    options?: { cause?: unknown },
  ) {
    const cause = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`malformed ${codec} value at key "${key}" (mod revision ${modRevision})${cause}`, options);
  }
}

/** A lease expired, was revoked elsewhere, or could not be kept alive within its TTL. */
export class LeaseLostError extends StoreError {
  override readonly name = 'LeaseLostError';
  readonly code = 'LEASE_LOST';
  constructor(
    readonly leaseId: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`lease ${leaseId} lost: ${reason}`, options);
  }
}

/** Leadership of an election was lost (lease lost, or the candidate key was removed). */
export class LeadershipLostError extends StoreError {
  override readonly name = 'LeadershipLostError';
  readonly code = 'LEADERSHIP_LOST';
  constructor(
    readonly election: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`leadership of election "${election}" lost: ${reason}`, options);
  }
}

/** A key or keyspace segment is not valid. */
export class InvalidKeyError extends StoreError {
  override readonly name = 'InvalidKeyError';
  readonly code = 'INVALID_KEY';
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`invalid key "${key}": ${reason}`);
  }
}

/** The store was closed. */
export class StoreClosedError extends StoreError {
  override readonly name = 'StoreClosedError';
  readonly code = 'STORE_CLOSED';
  constructor(readonly operation: string) {
    super(`store is closed: cannot ${operation}`);
  }
}

/**
 * The store refused a transaction for its size, not its content: more compares or operations than
 * etcd's `--max-txn-ops` (128 by default), or a request larger than `--max-request-bytes` (1.5 MiB
 * by default). Nothing was written; a smaller transaction may succeed.
 */
export class TxnTooLargeError extends StoreError {
  override readonly name = 'TxnTooLargeError';
  readonly code = 'TXN_TOO_LARGE';
  constructor(
    /** What was attempted, e.g. `txn put config/a, ...`. */
    readonly operation: string,
    /** `operations` (too many compares or operations) or `bytes` (request too large). */
    readonly limit: 'operations' | 'bytes',
    /** Operations (or bytes) in the refused request. */
    readonly size: number,
    options?: { cause?: unknown },
  ) {
    super(
      limit === 'operations'
        ? `transaction of ${size} operations refused: more than the store allows in one transaction (etcd --max-txn-ops)`
        : `request of ${size} bytes refused: larger than the store accepts (etcd --max-request-bytes)`,
      options,
    );
  }
}
