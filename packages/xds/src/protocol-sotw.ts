// State-of-the-World rules as pure functions: what a SotW request means for the type's state, which
// resources a response carries (the whole state for Listener and Cluster; only what the client lacks
// after a change for the other types), and what the stream holds once it is sent. Source: Envoy's
// "xDS REST and gRPC protocol" page, sections cited as [§name]; the stream loop (connection.ts)
// performs the sends.

import {
  type AckOutcome,
  emptyWatch,
  isFullStateType,
  type RequestResult,
  sameSet,
  type WatchState,
  WILDCARD,
} from './protocol-common.js';
import { byName, sortedIfMade, sortedOf } from './resource-order.js';
import type { EncodedResource, ResourceMap } from './types.js';

/** The fields of a SotW request these rules read. */
export interface SotwRequestFields {
  readonly typeUrl: string;
  readonly resourceNames: readonly string[];
  readonly responseNonce: string;
  readonly versionInfo: string;
  readonly errorDetail: { readonly code: number; readonly message: string } | undefined;
}

/** SotW watch state: what the last response for the type held. */
export interface SotwWatch extends WatchState {
  /** The resources of the last response sent (SotW responses carry the full subscribed set). */
  readonly sent: ReadonlyMap<string, EncodedResource>;
  /** The list that response carried (so an unchanged target is recognised by identity). */
  readonly sentList?: readonly EncodedResource[];
}

/**
 * Applies a SotW DiscoveryRequest to the state of its type.
 *
 * - Subscription [§How the client specifies what resources to return]: `*` subscribes to everything;
 *   an empty list is the legacy wildcard only while the client has never named resources of this type;
 *   otherwise the request's list replaces the subscribed set.
 * - First request for the type on this stream, or a request with an empty response_nonce: respond
 *   with the current state. A non-empty nonce the stream has no state for is a client that reconnected
 *   from another server: respond too (Istio `ShouldRespond`).
 * - A response_nonce other than the last one sent is stale: ignored entirely, the client will send a
 *   request for the newest response [§ACK and NACK semantics, "the management server should ignore
 *   requests with stale nonces"].
 * - error_detail with the current nonce is a NACK: recorded; the server answers only if the request
 *   also changed the subscription, never by resending the rejected resources.
 * - Otherwise an ACK; the server answers only when the subscribed set changed.
 */
export function applySotwRequest(
  prev: SotwWatch | undefined,
  req: SotwRequestFields,
  now: number = Date.now(),
): RequestResult<SotwWatch> {
  const base: SotwWatch = prev ?? { ...emptyWatch(req.typeUrl), sent: new Map() };
  const explicit = req.resourceNames.filter((n) => n !== WILDCARD);
  const namedEver = base.namedEver || explicit.length > 0;
  const wildcard = req.resourceNames.includes(WILDCARD) || (req.resourceNames.length === 0 && !namedEver);
  const requested = new Set(explicit);
  const sameNames = sameSet(requested, base.names);
  // The same set keeps its identity, so the push path can tell "nothing changed" by identity.
  const names = sameNames ? base.names : internNames(requested);
  const subscriptionChanged = wildcard !== base.wildcard || !sameNames;
  const subscribed: SotwWatch = { ...base, wildcard, names, namedEver };

  if (prev === undefined || prev.nonceSent === undefined) {
    const nack: AckOutcome = req.errorDetail
      ? { kind: 'nack', nonce: req.responseNonce, message: req.errorDetail.message }
      : { kind: 'none' };
    const state = req.errorDetail
      ? { ...subscribed, lastNack: { nonce: req.responseNonce, ...req.errorDetail, at: now } }
      : subscribed;
    return { state, ack: nack, respond: true, why: req.responseNonce === '' ? 'first-request' : 'reconnect' };
  }
  if (req.responseNonce === '') {
    return { state: subscribed, ack: { kind: 'none' }, respond: true, why: 'first-request' };
  }
  if (req.responseNonce !== prev.nonceSent) {
    return { state: prev, ack: { kind: 'stale', nonce: req.responseNonce }, respond: false, why: 'none' };
  }
  if (req.errorDetail) {
    const state: SotwWatch = {
      ...subscribed,
      lastNack: { nonce: req.responseNonce, ...req.errorDetail, at: now },
    };
    return {
      state,
      ack: { kind: 'nack', nonce: req.responseNonce, message: req.errorDetail.message },
      respond: subscriptionChanged,
      why: subscriptionChanged ? 'subscription-changed' : 'none',
    };
  }
  const state: SotwWatch = { ...subscribed, nonceAcked: req.responseNonce, versionAcked: req.versionInfo };
  return {
    state,
    ack: { kind: 'ack', nonce: req.responseNonce },
    respond: subscriptionChanged,
    why: subscriptionChanged ? 'subscription-changed' : 'none',
  };
}

/** The resources a SotW response for this watch carries now, sorted by name. Treat as read-only:
 * for a wildcard watch it is shared by every stream. */
export function sotwTarget(watch: WatchState, available: ResourceMap | undefined): EncodedResource[] {
  if (!available) return [];
  if (watch.wildcard) return sortedOf(available);
  // Streams with the same subscription share the names set (internNames) and so this list.
  let byNames = namedTargets.get(available);
  if (!byNames) {
    byNames = new WeakMap();
    namedTargets.set(available, byNames);
  }
  let out = byNames.get(watch.names);
  if (!out) {
    out = [];
    for (const name of watch.names) {
      const r = available.get(name);
      if (r) out.push(r);
    }
    out.sort(byName);
    byNames.set(watch.names, out);
  }
  return out;
}

/** Named SotW targets per map and subscription (both immutable; see sotwTarget). */
const namedTargets = new WeakMap<ResourceMap, WeakMap<ReadonlySet<string>, EncodedResource[]>>();

/** Subscribed-name sets by content, so streams that subscribe to the same names share one set. */
const internedNames = new Map<string, ReadonlySet<string>>();
const MAX_INTERNED_NAME_SETS = 4096;

/** The shared set equal to `names` (O(n log n), paid only when a subscription changes). */
function internNames(names: Set<string>): ReadonlySet<string> {
  if (names.size === 0) return names;
  const key = [...names].sort().join('\n');
  const found = internedNames.get(key);
  if (found) return found;
  if (internedNames.size >= MAX_INTERNED_NAME_SETS) internedNames.clear();
  internedNames.set(key, names);
  return names;
}

/** True when `target` differs from what the watch last sent (names or versions). */
export function sotwChanged(watch: SotwWatch, target: readonly EncodedResource[]): boolean {
  if (target === watch.sentList || target === sortedIfMade(watch.sent)) return false;
  if (target.length !== watch.sent.size) return true;
  for (const r of target) if (watch.sent.get(r.name)?.version !== r.version) return true;
  return false;
}

/** Names a full-state SotW type would drop by sending `target` (sent before, absent now). */
export function sotwRemovals(watch: SotwWatch, target: readonly EncodedResource[]): EncodedResource[] {
  if (!isFullStateType(watch.typeUrl)) return [];
  const keep = new Set(target.map((r) => r.name));
  return [...watch.sent.values()].filter((r) => !keep.has(r.name));
}

/** Partial responses by (list last sent, list due now): streams with the same two share one list. */
const partials = new WeakMap<
  readonly EncodedResource[],
  WeakMap<readonly EncodedResource[], readonly EncodedResource[]>
>();

/**
 * For a type whose SotW responses need not carry the full state (every type but Listener and Cluster
 * [§Grouping Resources into Responses]), the resources of `target` the client does not hold at their
 * version: after one service's endpoints change, its load assignment alone is sent, not all of them
 * (istiod's partial EDS push; envoyproxy/envoy#13009). A client keeps the resources a response leaves
 * out. Undefined when the whole target is due (a full-state type, or nothing sent yet); possibly empty
 * (only names dropped, which a partial-state type never signals).
 */
export function sotwPartial(
  watch: SotwWatch,
  target: readonly EncodedResource[],
): readonly EncodedResource[] | undefined {
  const last = watch.sentList;
  if (isFullStateType(watch.typeUrl) || !last || last.length === 0) return undefined;
  let byTarget = partials.get(last);
  if (!byTarget) {
    byTarget = new WeakMap();
    partials.set(last, byTarget);
  }
  let out = byTarget.get(target);
  if (!out) {
    out = target.filter((r) => watch.sent.get(r.name)?.version !== r.version);
    byTarget.set(target, out);
  }
  return out.length < target.length ? out : undefined;
}

/** Records that the client holds `held` without a response (see {@link sotwPartial}: nothing new). */
export function sotwHeld(watch: SotwWatch, held: readonly EncodedResource[], from?: ResourceMap): SotwWatch {
  const map = from && from.size === held.length ? from : new Map(held.map((r) => [r.name, r]));
  return { ...watch, sent: map, sentList: held };
}

/** Records a SotW response as sent. `from`: the map `sent` is the whole of (shared, not copied). */
export function sotwSent(
  watch: SotwWatch,
  nonce: string,
  sent: readonly EncodedResource[],
  from?: ResourceMap,
): SotwWatch {
  const map = from && from.size === sent.length ? from : new Map(sent.map((r) => [r.name, r]));
  return { ...watch, nonceSent: nonce, sent: map, sentList: sent };
}
