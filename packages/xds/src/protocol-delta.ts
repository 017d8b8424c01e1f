// Incremental (Delta) xDS rules as pure functions: subscriptions as deltas, what a response must carry
// against what the client holds (memoized per pair of immutable maps, per layer for layered maps),
// and what the stream holds once it is sent. Source: Envoy's "xDS REST and gRPC protocol" page
// [§Incremental xDS]; the stream loop (connection.ts) performs the sends.
import { LayeredResourceMap } from './layered-map.js';
import {
  type AckOutcome,
  emptyWatch,
  type RequestResult,
  type WatchState,
  WILDCARD,
} from './protocol-common.js';
import { byName, lessString, mergeSorted } from './resource-order.js';
import type { EncodedResource, ResourceMap } from './types.js';

/** The fields of a DeltaDiscoveryRequest these rules read. */
export interface DeltaRequestFields {
  readonly typeUrl: string;
  readonly subscribe: readonly string[];
  readonly unsubscribe: readonly string[];
  readonly initialResourceVersions: ReadonlyMap<string, string>;
  readonly responseNonce: string;
  readonly errorDetail: { readonly code: number; readonly message: string } | undefined;
}

/** Delta watch state: the version of each resource the client holds, as far as the server knows. */
export interface DeltaWatch extends WatchState {
  readonly known: ReadonlyMap<string, string>;
  /**
   * Names the next response must answer for whatever `known` says: in `resources` when the watch
   * wants the resource and it exists, otherwise in `removed_resources`. `*` stands for every resource
   * the wildcard covers. Filled by subscriptions (a client may have forgotten what it re-subscribes to,
   * and a name that does not exist must be reported) and by unsubscriptions of names the wildcard may
   * still cover; emptied by {@link deltaSent}.
   */
  readonly pending: ReadonlySet<string>;
  /**
   * The snapshot map `known` mirrors exactly (the subscribed resources of that map, at their
   * versions), set once everything a diff from it said was sent; cleared by any subscription change.
   * From it the next diff is the shared difference of two maps ({@link deltaDiff}), not a walk of
   * every resource.
   */
  readonly knownFrom?: ResourceMap | undefined;
}

/**
 * Applies a DeltaDiscoveryRequest to the state of its type [§Incremental xDS].
 *
 * - Subscriptions are deltas and always applied, whatever the nonce: `resource_names_subscribe` adds,
 *   `resource_names_unsubscribe` removes; `*` in either turns the wildcard on or off. The first request
 *   of a type with no names subscribes to the wildcard (legacy) [§How the client specifies what
 *   resources to return]. "The server must honor changes to the subscription state even if the nonce
 *   is stale" [§Incremental xDS].
 * - Every name in `resource_names_subscribe` is answered, even one the server believes the client
 *   holds at its current version: "the server *must* still provide those resources in the response;
 *   due to implementation details hidden from the server, the client may have 'forgotten' those
 *   resources" [§Subscribing to Resources]. A name that does not exist is answered in
 *   `removed_resources`: "When a resource subscribed to by a client does not exist, the server will
 *   send a DeltaDiscoveryResponse message that contains that resource's name in the removed_resources
 *   field" [§Incremental xDS, Knowing When a Requested Resource Does Not Exist]. `*` is answered with
 *   every resource the wildcard covers.
 * - Unsubscribing a name the client subscribed to explicitly while the wildcard stays on is answered:
 *   "the server must send a response that includes the specific resource in either the
 *   removed_resources field (if it is not included in the wildcard) or in the resources field (if it
 *   *is* included in the wildcard)" [§Unsubscribing from Resources]. Any other unsubscription is not
 *   answered ("a server does not need to send any response if a request does nothing except unsubscribe
 *   from a resource"); a name no longer wanted at all is forgotten (the client drops it too), a phantom
 *   unsubscription is ignored ("it can simply ignore these phantom unsubscriptions").
 * - `initial_resource_versions` (first request of a type on a stream only) says what the client
 *   already has: resources with that version are not sent again, and those that no longer exist are
 *   sent as `removed_resources` [§Incremental xDS, "initial_resource_versions"]. On that first request
 *   only the subscribed names the client does not claim to hold are owed an answer regardless of
 *   version (so a reconnect with current versions receives no resource again).
 * - A response_nonce equal to the last sent is an ACK, or a NACK with error_detail (recorded, never
 *   answered with a resend); any other non-empty nonce is stale and its ACK part ignored.
 * - The server responds when the request is the first of its type or owes an answer (above).
 */
export function applyDeltaRequest(
  prev: DeltaWatch | undefined,
  req: DeltaRequestFields,
  now: number = Date.now(),
): RequestResult<DeltaWatch> {
  if (prev === undefined) {
    const explicit = req.subscribe.filter((n) => n !== WILDCARD);
    const wildcard =
      (req.subscribe.includes(WILDCARD) || req.subscribe.length === 0) && !req.unsubscribe.includes(WILDCARD);
    const names = new Set(explicit);
    for (const n of req.unsubscribe) names.delete(n);
    const pending = new Set<string>();
    for (const n of names) if (!req.initialResourceVersions.has(n)) pending.add(n);
    const state: DeltaWatch = {
      ...emptyWatch(req.typeUrl),
      wildcard,
      names,
      namedEver: explicit.length > 0,
      known: new Map(req.initialResourceVersions),
      pending,
    };
    return {
      state,
      ack: { kind: 'none' },
      respond: true,
      why: req.responseNonce === '' ? 'first-request' : 'reconnect',
    };
  }
  let wildcard = prev.wildcard;
  // Copied on first change only (a bare ACK keeps the set's identity, see Connection's push path).
  let changedNames: Set<string> | undefined;
  const names = {
    add: (n: string) => {
      if (prev.names.has(n) && changedNames === undefined) return;
      changedNames ??= new Set(prev.names);
      changedNames.add(n);
    },
    delete: (n: string): boolean => {
      if (!(changedNames ?? prev.names).has(n)) return false;
      changedNames ??= new Set(prev.names);
      return changedNames.delete(n);
    },
  };
  // Copied on first change only: most requests are bare ACKs.
  let pending: Set<string> | undefined;
  const owed = () => {
    pending ??= new Set(prev.pending);
    return pending;
  };
  for (const n of req.subscribe) {
    if (n === WILDCARD) wildcard = true;
    else names.add(n);
    owed().add(n);
  }
  const unsubscribed: string[] = [];
  for (const n of req.unsubscribe) {
    if (n === WILDCARD) {
      wildcard = false;
      if ((pending ?? prev.pending).has(WILDCARD)) owed().delete(WILDCARD);
    } else if (names.delete(n)) {
      unsubscribed.push(n);
    }
    // Not subscribed by name: a phantom unsubscription, ignored.
  }
  let known: Map<string, string> | undefined;
  for (const n of unsubscribed) {
    if (wildcard) {
      // Perhaps still covered by the wildcard: the client cannot tell, so it is told.
      owed().add(n);
      continue;
    }
    // The client forgets what it unsubscribed from; so does the server.
    if (prev.known.has(n)) {
      known ??= new Map(prev.known);
      known.delete(n);
    }
    if ((pending ?? prev.pending).has(n)) owed().delete(n);
  }
  const answer = req.subscribe.length > 0 || (wildcard && unsubscribed.length > 0);
  const finalNames: ReadonlySet<string> = changedNames ?? prev.names;
  const subscriptionChanged = finalNames !== prev.names || wildcard !== prev.wildcard || known !== undefined;
  let state: DeltaWatch = {
    ...prev,
    ...(subscriptionChanged ? { knownFrom: undefined } : {}),
    wildcard,
    names: finalNames,
    namedEver: prev.namedEver || finalNames.size > 0,
    known: known ?? prev.known,
    pending: pending ?? prev.pending,
  };
  let ack: AckOutcome = { kind: 'none' };
  if (req.responseNonce !== '') {
    if (req.responseNonce !== prev.nonceSent) {
      ack = { kind: 'stale', nonce: req.responseNonce };
    } else if (req.errorDetail) {
      ack = { kind: 'nack', nonce: req.responseNonce, message: req.errorDetail.message };
      state = { ...state, lastNack: { nonce: req.responseNonce, ...req.errorDetail, at: now } };
    } else {
      ack = { kind: 'ack', nonce: req.responseNonce };
      state = { ...state, nonceAcked: req.responseNonce };
    }
  }
  return { state, ack, respond: answer, why: answer ? 'subscription-changed' : 'none' };
}

/** Whether a name is one this delta watch should hold (subscribed by name or by wildcard). */
function deltaWants(watch: WatchState, name: string): boolean {
  return watch.wildcard || watch.names.has(name);
}

/** What a Delta response must carry now (see {@link deltaDiff}). */
export interface DeltaDiff {
  /** Wanted resources whose version the client does not have, plus every owed one that exists. */
  readonly upserts: EncodedResource[];
  /** Names the client holds that no longer exist or are no longer wanted: removals, sent after every
   * addition (make before break). */
  readonly removed: string[];
  /** Owed names the client does not hold and that do not exist (or are no longer covered): reported
   * in `removed_resources` with the additions, so the client knows at once [§Knowing When a Requested
   * Resource Does Not Exist]. Nothing the client uses is dropped by them, so no ordering applies. */
  readonly missing: string[];
}

/**
 * What a Delta response must carry now: every wanted resource whose version the client does not have
 * or that is owed an answer (`pending`), the names the client holds that no longer exist or are no
 * longer wanted (`removed`), and the owed names that do not exist (`missing`). Each sorted by name.
 */
export function deltaDiff(watch: DeltaWatch, available: ResourceMap | undefined): DeltaDiff {
  const from = watch.knownFrom;
  if (from !== undefined && available !== undefined && watch.pending.size === 0) {
    // `known` is exactly `from`'s subscribed resources: the diff is that of the two maps, filtered
    // by the subscription (computed once per pair of maps, shared by every stream).
    const pair = mapDiff(from, available);
    const upserts = watch.wildcard ? pair.changed : pair.changed.filter((r) => watch.names.has(r.name));
    const removed = pair.gone.filter((n) => watch.known.has(n));
    return { upserts, removed, missing: [] };
  }
  const upserts: EncodedResource[] = [];
  const removed: string[] = [];
  const missing: string[] = [];
  const owed = watch.pending.size > 0 ? watch.pending : undefined;
  if (available) {
    if (watch.wildcard) {
      const all = owed?.has(WILDCARD) === true;
      for (const r of available.values()) {
        if (all || watch.known.get(r.name) !== r.version || owed?.has(r.name)) upserts.push(r);
      }
    } else {
      for (const name of watch.names) {
        const r = available.get(name);
        if (r && (watch.known.get(name) !== r.version || owed?.has(name))) upserts.push(r);
      }
    }
  }
  for (const name of watch.known.keys()) {
    if (!available?.has(name) || !deltaWants(watch, name)) removed.push(name);
  }
  if (owed) {
    for (const name of owed) {
      if (name === WILDCARD || watch.known.has(name)) continue;
      if (!available?.has(name) || !deltaWants(watch, name)) missing.push(name);
    }
  }
  upserts.sort(byName);
  removed.sort();
  missing.sort();
  return { upserts, removed, missing };
}

/**
 * Records a Delta response as sent: the client now holds these versions and not the removed names,
 * and every owed name the response answered (and `*`) is no longer owed.
 */
/** What changed from one snapshot map to the next: new or different resources (sorted by name), and
 * names gone (sorted). Memoized per pair: every stream moving between the same maps shares it. */
function mapDiff(before: ResourceMap, after: ResourceMap): { changed: EncodedResource[]; gone: string[] } {
  let byAfter = mapDiffs.get(before);
  if (!byAfter) {
    byAfter = new WeakMap();
    mapDiffs.set(before, byAfter);
  }
  let d = byAfter.get(after);
  if (!d && before instanceof LayeredResourceMap && after instanceof LayeredResourceMap) {
    // Per layer (names never move between layers: shared outbound vs the workload's inbound), so
    // streams whose shared layer moved between the same two maps share that diff.
    const shared = mapDiff(before.base, after.base);
    const own = mapDiff(before.extra, after.extra);
    const gone = mergeSorted(shared.gone, own.gone, lessString);
    // A name that did move layers is in one layer's `gone` and still present: the plain diff below.
    if (gone.every((name) => !after.has(name))) {
      d = { changed: mergeSorted(shared.changed, own.changed), gone };
      byAfter.set(after, d);
    }
  }
  if (!d) {
    const changed: EncodedResource[] = [];
    const gone: string[] = [];
    if (before !== after) {
      for (const r of after.values()) if (before.get(r.name)?.version !== r.version) changed.push(r);
      for (const name of before.keys()) if (!after.has(name)) gone.push(name);
    }
    d = { changed: changed.sort(byName), gone: gone.sort() };
    byAfter.set(after, d);
  }
  return d;
}
const mapDiffs = new WeakMap<
  ResourceMap,
  WeakMap<ResourceMap, { changed: EncodedResource[]; gone: string[] }>
>();

export function deltaSent(
  watch: DeltaWatch,
  nonce: string,
  upserts: readonly EncodedResource[],
  removed: readonly string[],
): DeltaWatch {
  // Updated in place: the stream's state owns its map, and copying it would make every push cost
  // as much as the whole set (the previous state object is not used after this).
  const known = watch.known as Map<string, string>;
  for (const r of upserts) known.set(r.name, r.version);
  for (const n of removed) known.delete(n);
  let pending = watch.pending;
  if (pending.size > 0) {
    const left = new Set(pending);
    left.delete(WILDCARD);
    for (const r of upserts) left.delete(r.name);
    for (const n of removed) left.delete(n);
    pending = left;
  }
  return { ...watch, nonceSent: nonce, known, pending };
}
