/**
 * What the etcd store, its watches and its leases share: the narrow view of the store that watches
 * and leases are given ({@link EtcdInternals}), key-range arithmetic, quiet stream shutdown and the
 * classification of etcd3/gRPC failures as "no healthy quorum".
 */
import { isBrokenCircuitError } from 'cockatiel';
import {
  GRPCDeadlineExceededError,
  type IDuplexStream,
  type IKeyValue,
  type ILeaseKeepAliveRequest,
  type ILeaseKeepAliveResponse,
  type IWatchRequest,
  type IWatchResponse,
  isRecoverableError,
} from 'etcd3';
import type { Keyspace } from './keyspace.js';
import type { KeyValue, LeaseId, ListResult } from './types.js';

/** The exclusive end of etcd's range for every key starting with `prefix`. */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Resolves after `ms` milliseconds. */
export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Ends a stream we no longer need. `graceful`: half-close first, so the etcd3 client does not count
 * the cancellation as a failure of that member and tear down its connection. Otherwise (the stream or
 * its connection is suspect) cancel outright, which also makes the client reconnect to that member.
 */
export function quietEnd(
  stream: { on(event: 'error', fn: () => void): unknown; end(): unknown; cancel(): void },
  graceful: boolean,
) {
  stream.on('error', () => {});
  if (graceful) stream.end();
  stream.cancel();
}

/** Whether an etcd3/grpc failure means "could not reach a healthy quorum" (as opposed to a logic error). */
export function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    isRecoverableError(error) ||
    error instanceof GRPCDeadlineExceededError ||
    isBrokenCircuitError(error) ||
    /no leader|request timed out|leader changed|too many requests|not capable|connection/i.test(error.message)
  );
}

/** What a store's watches and leases need from it; kept off the public `EtcdStore` surface. */
export interface EtcdInternals {
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
