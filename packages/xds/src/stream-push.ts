// The push of one ADS stream: which watched types a change (or a new subscription) touches, their
// resources resolved from ONE snapshot before anything is written (a proxy whose resources cannot be
// built gets nothing and keeps its last good config), then the responses in PUSH_ORDER (CDS, EDS, LDS,
// RDS) with removals last, in reverse order. It also owns the response bodies and nonces streams
// share: the same set from the same snapshot map is encoded once, and a stream takes the shared
// response (nonce and all) when it may, else the same body with a nonce of its own.
import { createHash } from 'node:crypto';
import type { ResourceTypeUrl } from '@meridian/envoy';
import type { Logger } from 'pino';
import { LayeredResourceMap } from './layered-map.js';
import { shortType, type XdsMetrics } from './metrics.js';
import {
  type DeltaWatch,
  deltaDiff,
  deltaSent,
  pushRank,
  type SotwWatch,
  sortedOf,
  sotwChanged,
  sotwHeld,
  sotwPartial,
  sotwRemovals,
  sotwSent,
  sotwTarget,
  type WatchState,
} from './protocol.js';
import type { StreamState, TypeBook, Variant } from './stream-state.js';
import type { StreamWriter } from './stream-writer.js';
import {
  type ChangeEvent,
  type EncodedResource,
  type ProxyContext,
  ProxyTranslationError,
  type ResourceMap,
  type XdsSnapshot,
} from './types.js';
import { deltaResponse, sotwResponse } from './wire.js';

/** Whether a change can affect what a watch should hold (the push pipeline's filter). */
export function changeAffects(change: ChangeEvent, watch: WatchState): boolean {
  if (change.full) return true;
  const type = watch.typeUrl as ResourceTypeUrl;
  if (!change.types?.has(type)) return false;
  const names = change.names?.get(type);
  if (names === undefined || watch.wildcard) return true;
  for (const n of names) if (watch.names.has(n)) return true;
  return false;
}

/**
 * A whole response shared by streams, with its nonce. A nonce identifies one response on its stream
 * and must never repeat there [§Basic Protocol Overview: "the nonce is valid only in the context of an
 * individual xDS stream"]; across streams it may. Shared nonces are `s<seq>` / `d<seq>` from one
 * process-wide counter, so `seq` orders them: a stream takes a shared response only when its `seq`
 * is above the highest it has taken for that type ({@link TypeBook.sharedSeq}). Per type the seqs a
 * stream receives then strictly increase, and entries are keyed by type (never shared across types),
 * so no nonce repeats on a stream; a stream that cannot take the shared response (it got it before, or a newer
 * one) gets the same body stamped with a nonce of its own (`<stream>-<n>`, another namespace).
 * Fan-out keeps sharing: after a change every stream takes entries created after its last ones.
 */
interface SharedResponse {
  readonly seq: number;
  readonly nonce: string;
  readonly bytes: Buffer;
}
let sharedSeq = 0;

/**
 * SotW responses shared by streams that get the same set of the same snapshot: the body (version
 * field + resource frames) and, once built, the whole response with a shared nonce, so streams that
 * can take it cost no copy of their own.
 */
interface SotwEntry {
  readonly version: string;
  readonly body: Buffer;
  shared: SharedResponse | undefined;
}
const sotwBodies = new WeakMap<readonly EncodedResource[], SotwEntry>();
/** Delta responses shared by streams that get the same diff from the same snapshot map. */
const deltaShared = new WeakMap<ResourceMap, Map<string, SharedResponse>>();

function sotwVersion(resources: readonly EncodedResource[]): string {
  const h = createHash('sha256');
  for (const r of resources) h.update(r.name).update('\0').update(r.version).update('\n');
  return h.digest('hex').slice(0, 16);
}

/** The body carrying `resources`, versioned by `held`: what the client holds once it takes them. */
function sotwBody(resources: readonly EncodedResource[], held = resources): SotwEntry {
  const version = sotwVersion(held);
  return { version, body: sotwResponse(version, resources, '', ''), shared: undefined };
}

/** SotW versions of sorted map contents, by map (a layered map's from its layers'). */
const mapVersions = new WeakMap<ResourceMap, string>();

/** The version of `sortedOf(map)`, without hashing a shared layer again for every proxy. */
function layeredVersion(map: ResourceMap): string {
  let v = mapVersions.get(map);
  if (v === undefined) {
    if (map instanceof LayeredResourceMap) {
      v = createHash('sha256')
        .update(layeredVersion(map.base))
        .update('\n')
        .update(layeredVersion(map.extra))
        .digest('hex')
        .slice(0, 16);
    } else {
      v = sotwVersion(sortedOf(map));
    }
    mapVersions.set(map, v);
  }
  return v;
}

/** Bytes of the resources of one response (istiod's `ResourceSize`, for pilot_xds_config_size_bytes). */
function resourceSize(resources: readonly EncodedResource[]): number {
  let n = 0;
  for (const r of resources) n += r.bytes.length;
  return n;
}

/** What a push needs of its server. */
export interface PushHost {
  readonly log: Logger;
  readonly metrics: XdsMetrics;
  snapshot(): XdsSnapshot | undefined;
}

/** What a push needs of its stream (a Connection). */
export interface PushTarget {
  readonly variant: Variant;
  /** For logs. */
  readonly id: string;
  readonly ctx: ProxyContext | undefined;
  readonly host: PushHost;
}

/** Builds and sends one stream's pushes over its state and its write side. */
export class StreamPush {
  constructor(
    private readonly stream: PushTarget,
    private readonly state: StreamState,
    private readonly writer: StreamWriter,
  ) {}

  /**
   * Sends what `change` (or a new subscription, `forced`) requires, in PUSH_ORDER: first every type's
   * additions and updates (SotW full-state types keep resources being removed), then the removals in
   * reverse order, so a proxy never points at something it has not received.
   */
  send(change: ChangeEvent | undefined, forced: ReadonlySet<string>): void {
    const { host, variant } = this.stream;
    const { watches } = this.state;
    const snapshot = host.snapshot();
    const ctx = this.stream.ctx;
    if (!snapshot || !ctx) return;
    const started = performance.now();
    const types = [...watches.keys()]
      .filter(
        (t) =>
          forced.has(t) ||
          this.state.retry.has(t) ||
          (change !== undefined && changeAffects(change, watches.get(t)!)),
      )
      .sort((a, b) => pushRank(a) - pushRank(b));
    // Everything this push sends comes from one snapshot, resolved before anything is written: if the
    // proxy's resources cannot be built, nothing is sent and it keeps its last good config.
    const availableByType = new Map<string, ResourceMap | undefined>();
    try {
      for (const type of types) availableByType.set(type, snapshot.resources(ctx, type as ResourceTypeUrl));
    } catch (error) {
      if (!(error instanceof ProxyTranslationError)) throw error;
      for (const type of types) this.state.retry.add(type);
      if (this.state.pushFailure?.snapshotVersion !== snapshot.version) host.metrics.internalErrors.add(1);
      this.state.pushFailure = { message: error.message, snapshotVersion: snapshot.version, at: Date.now() };
      return;
    }
    this.state.pushFailure = undefined;
    this.state.retry.clear();
    const removals: (() => void)[] = [];
    const writesBefore = this.state.writes;
    for (const type of types) {
      const typeStarted = performance.now();
      const watch = watches.get(type)!;
      const available = availableByType.get(type);
      const isForced = forced.has(type);
      const book = this.state.book(type);
      if (
        !isForced &&
        available !== undefined &&
        book.servedFrom === available &&
        book.servedNames === watch.names &&
        (variant === 'sotw' || (watch as DeltaWatch).pending.size === 0)
      )
        continue;
      book.servedFrom = available;
      book.servedNames = watch.names;
      if (variant === 'sotw') {
        const w = watch as SotwWatch;
        const target = sotwTarget(w, available);
        if (!isForced && !sotwChanged(w, target)) continue;
        this.#noteMissing(type, w, available);
        const removed = sotwRemovals(w, target);
        if (removed.length > 0) {
          // Make before break: first the new set plus what is being removed, the bare set last.
          const keep = [...target, ...removed].sort((a, b) => (a.name < b.name ? -1 : 1));
          if (sotwChanged(w, keep)) this.#sendSotw(type, keep, undefined, change);
          removals.push(() => this.#sendSotw(type, target, available, change));
        } else {
          // A change (not a request: that gets the whole set) sends only what the client lacks.
          const partial = !isForced && change !== undefined ? sotwPartial(w, target) : undefined;
          if (partial?.length === 0) watches.set(type, sotwHeld(w, target, available));
          else this.#sendSotw(type, target, available, change, partial);
        }
      } else {
        const w = watch as DeltaWatch;
        // `missing`: owed names that do not exist, reported at once with the additions.
        const { upserts, removed, missing } = deltaDiff(w, available);
        if (upserts.length > 0 || missing.length > 0 || (isForced && removed.length === 0))
          this.#sendDelta(type, upserts, missing, change, available);
        if (removed.length > 0) removals.push(() => this.#sendDelta(type, [], removed, change, available));
      }
      host.metrics.pushTime.record((performance.now() - typeStarted) / 1000, { type: shortType(type) });
    }
    for (const remove of removals.reverse()) remove();
    // Delta: every type brought up to date now holds exactly its map's subscribed resources.
    if (variant === 'delta')
      for (const type of types) {
        const available = availableByType.get(type);
        const w = watches.get(type) as DeltaWatch | undefined;
        if (w && available && w.pending.size === 0 && w.knownFrom !== available)
          watches.set(type, { ...w, knownFrom: available });
      }
    // Synced to this snapshot: at once when nothing had to be sent, else once all of it is ACKed.
    if (this.state.writes > writesBefore) this.state.awaitAcks(snapshot.version, change?.at);
    else if (change !== undefined) this.state.unaffectedBy(snapshot.version, change.at);
    // istiod's pilot_proxy_convergence_time: from the push's first change until all of it was sent.
    if (change && this.state.writes > writesBefore)
      host.metrics.convergence.record((performance.now() - Math.min(change.at, started)) / 1000);
  }

  #noteMissing(type: string, w: WatchState, available: ResourceMap | undefined): void {
    if (w.wildcard) return;
    const missing = [...w.names].filter((n) => !available?.has(n));
    if (missing.length === 0) return;
    const { log, metrics } = this.stream.host;
    metrics.bad('unknown_resource', { type: shortType(type) });
    log.info(
      {
        conn: this.stream.id,
        proxy: this.stream.ctx?.proxy.id,
        type: shortType(type),
        missing: missing.slice(0, 10),
      },
      `subscribed resources do not exist: ${missing.slice(0, 10).join(', ')}`,
    );
  }

  /**
   * Sends `resources` (or, with `partial`, only those: the client keeps the rest) and records that the
   * client now holds `resources`.
   */
  #sendSotw(
    type: string,
    resources: readonly EncodedResource[],
    available: ResourceMap | undefined,
    change: ChangeEvent | undefined,
    partial?: readonly EncodedResource[],
  ): void {
    const w = this.state.watches.get(type) as SotwWatch;
    const body = partial ?? resources;
    // A layered map is one proxy's (its workload's own resources on a shared layer): its body is
    // built for this write and not kept, so a sidecar does not hold a copy of the shared clusters.
    const perProxy = available instanceof LayeredResourceMap;
    let entry: SotwEntry | undefined;
    if (perProxy) {
      const version = resources === sortedOf(available) ? layeredVersion(available) : sotwVersion(resources);
      entry = { version, body: sotwResponse(version, body, '', ''), shared: undefined };
    } else if (available) {
      // `body` is sotwTarget's list (or sotwPartial's), shared by streams with the same map and
      // subscription; the list belongs to one map of one type, so an entry never crosses types.
      entry = sotwBodies.get(body);
      if (!entry) {
        entry = sotwBody(body, resources);
        sotwBodies.set(body, entry);
      }
    } else {
      entry = sotwBody(body, resources);
    }
    const book = this.state.book(type);
    let nonce: string;
    let bytes: Buffer;
    if (available && !perProxy && !entry.shared) {
      // First stream for this body: the shared response, with a seq newer than any this stream has.
      const seq = ++sharedSeq;
      nonce = `s${seq.toString(36)}`;
      entry.shared = { seq, nonce, bytes: Buffer.concat([entry.body, sotwResponse('', [], type, nonce)]) };
    }
    const shared = entry.shared;
    if (shared && shared.seq > book.sharedSeq) {
      ({ nonce, bytes } = shared);
      book.sharedSeq = shared.seq;
    } else {
      // This stream had this response (or a newer shared one) before: same body, a nonce of its own.
      nonce = this.state.nextNonce();
      bytes = Buffer.concat([entry.body, sotwResponse('', [], type, nonce)]);
    }
    this.state.watches.set(type, sotwSent(w, nonce, resources, available));
    this.#write(type, bytes, change, resourceSize(body));
  }

  #sendDelta(
    type: string,
    upserts: readonly EncodedResource[],
    removed: readonly string[],
    change: ChangeEvent | undefined,
    available: ResourceMap | undefined,
  ): void {
    const w = this.state.watches.get(type) as DeltaWatch;
    const book = this.state.book(type);
    const system = this.stream.host.snapshot()?.version ?? '';
    let nonce: string;
    let bytes: Buffer;
    // Streams in the same state get the same diff: share its bytes (and nonce) like SotW bodies.
    let perMap = available ? deltaShared.get(available) : undefined;
    if (available && !perMap) {
      perMap = new Map();
      deltaShared.set(available, perMap);
    }
    const key = `${type}\n${system}\n${upserts.map((r) => `${r.name}@${r.version}`).join(',')}\n${removed.join(',')}`;
    let shared = perMap?.get(key);
    // Bounded: streams in unusual states (odd reconnect versions, lone subscriptions) do not grow it.
    if (!shared && perMap && perMap.size < 64) {
      const seq = ++sharedSeq;
      const sharedNonce = `d${seq.toString(36)}`;
      shared = { seq, nonce: sharedNonce, bytes: deltaResponse(system, upserts, removed, type, sharedNonce) };
      perMap.set(key, shared);
    }
    if (shared && shared.seq > book.sharedSeq) {
      ({ nonce, bytes } = shared);
      book.sharedSeq = shared.seq;
    } else {
      // Not shareable, or this stream had it (or a newer shared one) before: a nonce of its own.
      nonce = this.state.nextNonce();
      bytes = deltaResponse(system, upserts, removed, type, nonce);
    }
    this.state.watches.set(type, deltaSent(w, nonce, upserts, removed));
    this.#write(type, bytes, change, resourceSize(upserts));
  }

  /** Records the response (per-type times, counters) and hands it to the write side. */
  #write(type: string, bytes: Buffer, change: ChangeEvent | undefined, size: number): void {
    const { metrics } = this.stream.host;
    this.state.writes++;
    const book = this.state.book(type);
    book.lastPushAt = Date.now();
    book.sentAt = performance.now();
    if (change) book.changeAt = book.changeAt === undefined ? change.at : Math.min(book.changeAt, change.at);
    const short = shortType(type);
    metrics.pushes.add(1, { type: short });
    metrics.responseBytes.add(bytes.length, { type: short });
    metrics.configSize.record(size, { type });
    this.writer.write(bytes, short);
  }
}
