// The xDS subscription and ACK/NACK rules shared by both protocol variants: the per-stream, per-type
// watch state, the push order and the sync state. Source: Envoy's "xDS REST and gRPC protocol" page
// (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol), sections cited as [§name].
import { TypeUrl } from '@meridian/envoy';

/** The special resource name that subscribes to every resource of a type [§How the client specifies
 * what resources to return]. */
export const WILDCARD = '*';

/** A NACK: the client rejected the response with this nonce [§ACK and NACK semantics]. */
export interface NackRecord {
  readonly nonce: string;
  readonly code: number;
  readonly message: string;
  /** `Date.now()` when it arrived. */
  readonly at: number;
}

/** Subscription and ACK state of one type on one stream (both variants). */
export interface WatchState {
  readonly typeUrl: string;
  /** Subscribed to every resource of the type. */
  readonly wildcard: boolean;
  /** Names subscribed explicitly (never contains `*`). */
  readonly names: ReadonlySet<string>;
  /** The client has sent a non-empty name list for this type at least once; from then on an empty
   * SotW list means "nothing", not the legacy wildcard. */
  readonly namedEver: boolean;
  readonly nonceSent: string | undefined;
  readonly nonceAcked: string | undefined;
  /** SotW: the version_info of the last ACK. Delta: the system version of the ACKed response. */
  readonly versionAcked: string | undefined;
  readonly lastNack: NackRecord | undefined;
}

/** What a request meant for the previously sent response. */
export type AckOutcome =
  | { readonly kind: 'none' }
  | { readonly kind: 'ack'; readonly nonce: string }
  | { readonly kind: 'nack'; readonly nonce: string; readonly message: string }
  /** A response_nonce that is not the last one sent on this stream for this type. */
  | { readonly kind: 'stale'; readonly nonce: string };

/** The result of applying one request to the state of its type. */
export interface RequestResult<S extends WatchState> {
  readonly state: S;
  readonly ack: AckOutcome;
  /** The server must send a response for this type now (it may be empty). */
  readonly respond: boolean;
  readonly why: 'first-request' | 'reconnect' | 'subscription-changed' | 'none';
}

/**
 * Full-state types in SotW: a response carries every resource of the type, and a resource missing from
 * it is deleted by the client [§Resource types, "LDS and CDS ... full state"]. For the other types a
 * missing resource means nothing, so removal is by unsubscription only.
 */
export function isFullStateType(typeUrl: string): boolean {
  return typeUrl === TypeUrl.Listener || typeUrl === TypeUrl.Cluster;
}

/**
 * The order pushes are sent in: clusters before the endpoints and listeners that use them, listeners
 * before the routes they name, secrets last [§Eventual consistency considerations: "CDS updates (if
 * any) must always be pushed first, EDS updates (if any) must arrive after CDS updates ..., LDS updates
 * must arrive after corresponding CDS/EDS updates, RDS updates related to the newly added listeners
 * must arrive after CDS/EDS/LDS updates"]. Removals are sent after every addition (make before break).
 */
export const PUSH_ORDER: readonly string[] = [
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
  TypeUrl.Secret,
];

/** Position of a type in PUSH_ORDER (unknown types last). */
export function pushRank(typeUrl: string): number {
  const i = PUSH_ORDER.indexOf(typeUrl);
  return i < 0 ? PUSH_ORDER.length : i;
}

export function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

export function emptyWatch(typeUrl: string): WatchState {
  return {
    typeUrl,
    wildcard: false,
    names: new Set(),
    namedEver: false,
    nonceSent: undefined,
    nonceAcked: undefined,
    versionAcked: undefined,
    lastNack: undefined,
  };
}

/** Sync status of one type on one stream, as `istioctl proxy-status` shows it. */
export type SyncState = 'SYNCED' | 'STALE' | 'NOT_SENT' | 'ERROR';

/** SYNCED: the last response was ACKed; STALE: sent, not yet ACKed; ERROR: the last response was
 * NACKed; NOT_SENT: nothing sent for the type yet. */
export function syncState(watch: WatchState): SyncState {
  if (watch.nonceSent === undefined) return 'NOT_SENT';
  if (watch.lastNack !== undefined && watch.lastNack.nonce === watch.nonceSent) return 'ERROR';
  if (watch.nonceAcked === watch.nonceSent) return 'SYNCED';
  return 'STALE';
}
