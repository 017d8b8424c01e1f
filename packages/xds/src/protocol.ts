// The xDS subscription and ACK/NACK rules, as pure functions over a small per-stream, per-type state.
// Source: Envoy's "xDS REST and gRPC protocol" page
// (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol), sections cited as [§name].
// The stream loop (connection.ts) calls these and performs the sends they ask for; nothing here does
// I/O, so every rule is unit-tested in test/protocol.test.ts.
import { TypeUrl } from '@meridian/envoy';
import { LayeredResourceMap } from './layered-map.js';
import type { EncodedResource, ResourceMap } from './types.js';

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

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

function emptyWatch(typeUrl: string): WatchState {
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

const byName = (a: EncodedResource, b: EncodedResource) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
/** Sorted contents of a map, memoized by the map's identity (maps are immutable snapshots). */
const sortedMaps = new WeakMap<ResourceMap, EncodedResource[]>();

/** The contents of `map` sorted by name (a layered map: its layers' sorted lists merged). */
export function sortedOf(map: ResourceMap): EncodedResource[] {
  let sorted = sortedMaps.get(map);
  if (!sorted) {
    sorted =
      map instanceof LayeredResourceMap
        ? mergeSorted(sortedOf(map.base), sortedOf(map.extra))
        : [...map.values()].sort(byName);
    sortedMaps.set(map, sorted);
  }
  return sorted;
}

function mergeSorted<T>(
  a: readonly T[],
  b: readonly T[],
  less: (x: T, y: T) => boolean = lessByName as never,
): T[] {
  const out: T[] = new Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = less(b[j]!, a[i]!) ? b[j++]! : a[i++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}
const lessByName = (x: EncodedResource, y: EncodedResource) => x.name < y.name;
const lessString = (x: string, y: string) => x < y;

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
  if (target === watch.sentList || target === sortedMaps.get(watch.sent)) return false;
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
