// One ADS stream: the loop shared by State-of-the-World and Delta. It decodes requests, applies the
// protocol rules (protocol.ts), answers, pushes changes in PUSH_ORDER with removals last, and keeps the
// stream's write buffer bounded: a stream that does not drain is skipped (its pushes merged until it
// drains) and closed when it stays stuck.
import { createHash } from 'node:crypto';
import { Metadata, type ServerDuplexStream, status as Status } from '@grpc/grpc-js';
import { type EnvoyJson, NodeError, parseNode, type ResourceTypeUrl } from '@meridian/envoy';
import type { Logger } from 'pino';
import { LayeredResourceMap } from './layered-map.js';
import { shortType, type XdsMetrics } from './metrics.js';
import {
  type AckOutcome,
  applyDeltaRequest,
  applySotwRequest,
  type DeltaWatch,
  deltaDiff,
  deltaSent,
  PUSH_ORDER,
  pushRank,
  type SotwWatch,
  sortedOf,
  sotwChanged,
  sotwHeld,
  sotwPartial,
  sotwRemovals,
  sotwSent,
  sotwTarget,
  syncState,
  type WatchState,
} from './protocol.js';
import type { Pushable } from './push-queue.js';
import {
  type ChangeEvent,
  type EncodedResource,
  type ProxyContext,
  ProxyTranslationError,
  type ResourceMap,
  type XdsSnapshot,
} from './types.js';
import {
  type DeltaRequest,
  decodeDeltaRequest,
  decodeSotwRequest,
  deltaResponse,
  type SotwRequest,
  sotwResponse,
} from './wire.js';

/** The protocol variant of a stream. */
export type Variant = 'sotw' | 'delta';

/** Stream limits, resolved from XdsServerOptions. */
export interface StreamLimits {
  /** Largest request accepted, in bytes (larger ones close the stream with RESOURCE_EXHAUSTED). */
  readonly maxRequestBytes: number;
  /** Bytes written but not yet taken by HTTP/2 beyond which the stream counts as blocked. */
  readonly maxBufferedBytes: number;
  /** A stream blocked this long is closed (the proxy stopped reading). */
  readonly stuckTimeoutMs: number;
  /** A push is released from the concurrency cap after this long even if its writes are pending. */
  readonly pushReleaseMs: number;
}

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly log: Logger;
  readonly metrics: XdsMetrics;
  readonly limits: StreamLimits;
  snapshot(): XdsSnapshot | undefined;
  /** Called once the first request's node was understood. */
  identified(conn: Connection): void;
  /** Called once when the stream ends, for whatever reason. */
  closed(conn: Connection): void;
  /** Queues a push (a change that waited for this stream's writes): pushes run under one cap. */
  requeue(conn: Connection, change: ChangeEvent): void;
  /** The proxy holds (has ACKed) everything the snapshot `version` gives it; `changeAt` is when the
   * change that produced it happened (performance.now() ms), when known. */
  synced(conn: Connection, version: string, changeAt: number | undefined): void;
}

const SERVED_TYPES = new Set<string>(PUSH_ORDER);

/** A change that asks for the given types to be sent whatever their state (new subscriptions). */
function forcedTypes(types: Iterable<string>): Set<string> {
  return new Set(types);
}

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

let connectionCounter = 0;

/** Bytes of the resources of one response (istiod's `ResourceSize`, for pilot_xds_config_size_bytes). */
function resourceSize(resources: readonly EncodedResource[]): number {
  let n = 0;
  for (const r of resources) n += r.bytes.length;
  return n;
}

/** Finds grpc-js' HTTP/2 stream under a server call, to reset a stream whose peer stopped reading
 * (grpc-js has no public way to end a call whose write buffer cannot drain). */
function resetHttp2Stream(call: unknown): boolean {
  let node: unknown = call;
  for (let depth = 0; depth < 6 && node && typeof node === 'object'; depth++) {
    const rec = node as {
      stream?: { close?: (code: number) => void; destroyed?: boolean };
      call?: unknown;
      nextCall?: unknown;
    };
    if (rec.stream && typeof rec.stream.close === 'function') {
      if (!rec.stream.destroyed) rec.stream.close(8 /* NGHTTP2_CANCEL */);
      return true;
    }
    node = rec.call ?? rec.nextCall;
  }
  return false;
}

type AnyStream = ServerDuplexStream<Buffer, Buffer>;

/** Per-type bookkeeping the protocol state does not hold. */
interface TypeBook {
  lastPushAt: number | undefined;
  /** `Date.now()` of the last ACK of this type. */
  lastAckAt: number | undefined;
  /** Earliest change (performance.now()) sent on this type and not yet ACKed. */
  changeAt: number | undefined;
  /** When the current nonce was sent (performance.now()), for the push-to-ACK time. */
  sentAt: number | undefined;
  /** The highest shared-response seq this stream has received for this type (see SharedResponse). */
  sharedSeq: number;
  /**
   * The snapshot map this type was last brought up to date from, and the subscription it was for:
   * while both are the same objects, a change cannot alter what the stream should hold (maps are
   * immutable), so the push skips the type without comparing resources.
   */
  servedFrom: ResourceMap | undefined;
  servedNames: ReadonlySet<string> | undefined;
}

/** Why the last push could not be built for this stream (shown in /debug/syncz). */
export interface PushFailure {
  readonly message: string;
  readonly snapshotVersion: string;
  /** `Date.now()` of the failure. */
  readonly at: number;
}

/** One ADS stream (SotW or Delta). */
export class Connection implements Pushable {
  /** `<node id>-<n>` once identified; `pending-<n>` before. */
  id: string;
  ctx: ProxyContext | undefined;
  readonly watches = new Map<string, SotwWatch | DeltaWatch>();
  readonly books = new Map<string, TypeBook>();
  readonly connectedAt = Date.now();
  closed = false;
  readonly #n = ++connectionCounter;
  #nonce = 0;
  /** Responses written on this stream. */
  #writes = 0;
  #outstandingBytes = 0;
  #outstandingWrites = 0;
  #blocked = false;
  #lastProgressAt = 0;
  #stuckTimer: NodeJS.Timeout | undefined;
  #deferredChange: ChangeEvent | undefined;
  #deferredForced = new Set<string>();
  /** The last push that failed to build, until one succeeds. */
  pushFailure: PushFailure | undefined;
  /** The newest snapshot version whose resources this proxy has ACKed in full, and when. */
  syncedVersion: string | undefined;
  syncedAt: number | undefined;
  /** The snapshot version of the last push that wrote something, until all of it is ACKed. */
  #awaiting: { version: string; changeAt: number | undefined } | undefined;
  /** Types whose last push failed to build: reconsidered on every later push. */
  readonly #retry = new Set<string>();
  #releaseWaiters: (() => void)[] = [];

  constructor(
    readonly variant: Variant,
    readonly call: AnyStream,
    readonly host: ConnectionHost,
    readonly authenticatedIdentity: string | undefined,
  ) {
    this.id = `pending-${this.#n}`;
    call.on('data', (bytes: Buffer) => this.#guard('request', () => this.#onRequest(bytes)));
    call.on('end', () => {
      this.#finish('client closed the stream');
      call.end();
    });
    call.on('cancelled', () =>
      this.#finish('stream cancelled (client went away or a transport limit was hit)'),
    );
    call.on('error', (e: Error) => this.#finish(`stream error: ${e.message}`));
    call.on('close', () => this.#finish('stream closed'));
  }

  /** Runs stream work so that a bug ends this stream (logged, counted), never the process. */
  #guard(what: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.host.metrics.bad('internal');
      this.host.metrics.internalErrors.add(1);
      this.host.log.error(
        { conn: this.id, proxy: this.ctx?.proxy.id, err: e },
        `internal error handling ${what}`,
      );
      this.close(Status.INTERNAL, `internal error handling ${what}: ${(e as Error).message}`);
    }
  }

  get blocked(): boolean {
    return this.#blocked;
  }

  /** Bytes handed to grpc-js and not yet written to the socket. */
  get bufferedBytes(): number {
    return this.#outstandingBytes;
  }

  #nextNonce(): string {
    this.#nonce++;
    return `${this.#n.toString(36)}-${this.#nonce.toString(36)}`;
  }

  #book(type: string): TypeBook {
    let b = this.books.get(type);
    if (!b) {
      b = {
        lastPushAt: undefined,
        lastAckAt: undefined,
        changeAt: undefined,
        sentAt: undefined,
        sharedSeq: 0,
        servedFrom: undefined,
        servedNames: undefined,
      };
      this.books.set(type, b);
    }
    return b;
  }

  #onRequest(bytes: Buffer): void {
    if (this.closed) return;
    const { log, metrics, limits } = this.host;
    metrics.recordRequestSize(bytes.length);
    if (bytes.length > limits.maxRequestBytes) {
      metrics.bad('too_large');
      this.close(
        Status.RESOURCE_EXHAUSTED,
        `request of ${bytes.length} bytes exceeds the limit of ${limits.maxRequestBytes} bytes`,
      );
      return;
    }
    let req: SotwRequest | DeltaRequest;
    try {
      req = this.variant === 'sotw' ? decodeSotwRequest(bytes) : decodeDeltaRequest(bytes);
    } catch (e) {
      metrics.bad('garbage');
      const kind = this.variant === 'sotw' ? 'DiscoveryRequest' : 'DeltaDiscoveryRequest';
      this.close(Status.INVALID_ARGUMENT, `request is not a ${kind}: ${(e as Error).message}`);
      return;
    }
    if (!this.ctx) {
      let proxy: ReturnType<typeof parseNode>;
      try {
        proxy = parseNode(req.node as { [key: string]: EnvoyJson[string] } | undefined);
      } catch (e) {
        if (!(e instanceof NodeError)) throw e;
        metrics.bad('bad_node');
        this.close(Status.INVALID_ARGUMENT, e.message);
        return;
      }
      this.id = `${proxy.id}-${this.#n}`;
      this.ctx = {
        connectionId: this.id,
        proxy,
        authenticatedIdentity: this.authenticatedIdentity,
        peer: this.call.getPeer(),
      };
      this.host.identified(this);
    }
    if (!SERVED_TYPES.has(req.typeUrl)) {
      metrics.bad('unknown_type');
      log.warn(
        { conn: this.id, proxy: this.ctx?.proxy.id, typeUrl: req.typeUrl },
        `ignoring request for unknown type URL "${req.typeUrl}"`,
      );
      return;
    }
    const type = req.typeUrl;
    const result =
      this.variant === 'sotw'
        ? applySotwRequest(this.watches.get(type) as SotwWatch | undefined, req as SotwRequest)
        : applyDeltaRequest(this.watches.get(type) as DeltaWatch | undefined, req as DeltaRequest);
    this.watches.set(type, result.state);
    this.#recordAck(type, result.ack);
    if (result.respond) {
      if (this.#outstandingWrites > 0) this.#deferredForced.add(type);
      else this.#send(undefined, forcedTypes([type]));
    }
  }

  #recordAck(type: string, ack: AckOutcome): void {
    const { log, metrics } = this.host;
    const book = this.#book(type);
    switch (ack.kind) {
      case 'ack': {
        book.lastAckAt = Date.now();
        if (book.changeAt !== undefined) {
          metrics.ackTime.record((performance.now() - book.changeAt) / 1000, { type: shortType(type) });
          book.changeAt = undefined;
        }
        if (this.#awaiting && this.#allAcked()) {
          const { version, changeAt } = this.#awaiting;
          this.#awaiting = undefined;
          this.#markSynced(version, changeAt);
        }
        break;
      }
      case 'nack':
        metrics.reject(type, this.ctx?.proxy.id ?? '', this.watches.get(type)?.lastNack?.code ?? 2);
        book.changeAt = undefined;
        log.warn(
          {
            conn: this.id,
            proxy: this.ctx?.proxy.id,
            type: shortType(type),
            nonce: ack.nonce,
            revision: this.host.snapshot()?.version,
          },
          `NACK: ${ack.message}`,
        );
        break;
      case 'stale':
        metrics.expiredNonce.add(1, { type: shortType(type) });
        log.debug(
          { conn: this.id, proxy: this.ctx?.proxy.id, type: shortType(type), nonce: ack.nonce },
          'ignoring request with a stale nonce',
        );
        break;
      default:
        break;
    }
  }

  /**
   * Pushes a change. A stream whose previous writes are still pending (the proxy reads slowly or not at
   * all) is not written to: the change is merged into its deferred change and sent when the writes
   * complete, so each stream buffers at most one push. Resolves when the writes are taken by HTTP/2,
   * or after `pushReleaseMs`, so a slow stream holds a push slot for a bounded time only.
   */
  push(change: ChangeEvent): Promise<void> {
    if (this.closed || !this.ctx) return Promise.resolve();
    if (this.#outstandingWrites > 0) {
      this.#deferChange(change);
      return Promise.resolve();
    }
    this.#send(change, new Set());
    if (this.#outstandingWrites === 0 || this.#blocked) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, this.host.limits.pushReleaseMs);
      timer.unref();
      this.#releaseWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #deferChange(change: ChangeEvent): void {
    this.#deferredChange = this.#deferredChange
      ? {
          ...change,
          full: true,
          reason: [...this.#deferredChange.reason, ...change.reason],
          at: Math.min(change.at, this.#deferredChange.at),
        }
      : change;
  }

  /**
   * Sends what `change` (or a new subscription, `forced`) requires, in PUSH_ORDER: first every type's
   * additions and updates (SotW full-state types keep resources being removed), then the removals in
   * reverse order, so a proxy never points at something it has not received.
   */
  #send(change: ChangeEvent | undefined, forced: ReadonlySet<string>): void {
    const snapshot = this.host.snapshot();
    const ctx = this.ctx;
    if (!snapshot || !ctx) return;
    const started = performance.now();
    const types = [...this.watches.keys()]
      .filter(
        (t) =>
          forced.has(t) ||
          this.#retry.has(t) ||
          (change !== undefined && changeAffects(change, this.watches.get(t)!)),
      )
      .sort((a, b) => pushRank(a) - pushRank(b));
    // Everything this push sends comes from one snapshot, resolved before anything is written: if the
    // proxy's resources cannot be built, nothing is sent and it keeps its last good config.
    const availableByType = new Map<string, ResourceMap | undefined>();
    try {
      for (const type of types) availableByType.set(type, snapshot.resources(ctx, type as ResourceTypeUrl));
    } catch (error) {
      if (!(error instanceof ProxyTranslationError)) throw error;
      for (const type of types) this.#retry.add(type);
      if (this.pushFailure?.snapshotVersion !== snapshot.version) this.host.metrics.internalErrors.add(1);
      this.pushFailure = { message: error.message, snapshotVersion: snapshot.version, at: Date.now() };
      return;
    }
    this.pushFailure = undefined;
    this.#retry.clear();
    const removals: (() => void)[] = [];
    const writesBefore = this.#writes;
    for (const type of types) {
      const typeStarted = performance.now();
      const watch = this.watches.get(type)!;
      const available = availableByType.get(type);
      const isForced = forced.has(type);
      const book = this.#book(type);
      if (
        !isForced &&
        available !== undefined &&
        book.servedFrom === available &&
        book.servedNames === watch.names &&
        (this.variant === 'sotw' || (watch as DeltaWatch).pending.size === 0)
      )
        continue;
      book.servedFrom = available;
      book.servedNames = watch.names;
      if (this.variant === 'sotw') {
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
          if (partial?.length === 0) this.watches.set(type, sotwHeld(w, target, available));
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
      this.host.metrics.pushTime.record((performance.now() - typeStarted) / 1000, { type: shortType(type) });
    }
    for (const remove of removals.reverse()) remove();
    // Delta: every type brought up to date now holds exactly its map's subscribed resources.
    if (this.variant === 'delta')
      for (const type of types) {
        const available = availableByType.get(type);
        const w = this.watches.get(type) as DeltaWatch | undefined;
        if (w && available && w.pending.size === 0 && w.knownFrom !== available)
          this.watches.set(type, { ...w, knownFrom: available });
      }
    // Synced to this snapshot: at once when nothing had to be sent, else once all of it is ACKed.
    if (this.#writes > writesBefore) this.#awaiting = { version: snapshot.version, changeAt: change?.at };
    else if (change !== undefined) this.unaffectedBy(snapshot.version, change.at);
    // istiod's pilot_proxy_convergence_time: from the push's first change until all of it was sent.
    if (change && this.#writes > writesBefore)
      this.host.metrics.convergence.record((performance.now() - Math.min(change.at, started)) / 1000);
  }

  #noteMissing(type: string, w: WatchState, available: ResourceMap | undefined): void {
    if (w.wildcard) return;
    const missing = [...w.names].filter((n) => !available?.has(n));
    if (missing.length === 0) return;
    this.host.metrics.bad('unknown_resource', { type: shortType(type) });
    this.host.log.info(
      { conn: this.id, proxy: this.ctx?.proxy.id, type: shortType(type), missing: missing.slice(0, 10) },
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
    const w = this.watches.get(type) as SotwWatch;
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
    const book = this.#book(type);
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
      nonce = this.#nextNonce();
      bytes = Buffer.concat([entry.body, sotwResponse('', [], type, nonce)]);
    }
    this.watches.set(type, sotwSent(w, nonce, resources, available));
    this.#write(type, bytes, change, resourceSize(body));
  }

  #sendDelta(
    type: string,
    upserts: readonly EncodedResource[],
    removed: readonly string[],
    change: ChangeEvent | undefined,
    available: ResourceMap | undefined,
  ): void {
    const w = this.watches.get(type) as DeltaWatch;
    const book = this.#book(type);
    const system = this.host.snapshot()?.version ?? '';
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
      nonce = this.#nextNonce();
      bytes = deltaResponse(system, upserts, removed, type, nonce);
    }
    this.watches.set(type, deltaSent(w, nonce, upserts, removed));
    this.#write(type, bytes, change, resourceSize(upserts));
  }

  #write(type: string, bytes: Buffer, change: ChangeEvent | undefined, size: number): void {
    const { metrics, limits } = this.host;
    this.#writes++;
    const book = this.#book(type);
    book.lastPushAt = Date.now();
    book.sentAt = performance.now();
    if (change) book.changeAt = book.changeAt === undefined ? change.at : Math.min(book.changeAt, change.at);
    const short = shortType(type);
    metrics.pushes.add(1, { type: short });
    metrics.responseBytes.add(bytes.length, { type: short });
    metrics.configSize.record(size, { type });
    this.#outstandingBytes += bytes.length;
    if (this.#outstandingWrites++ === 0) {
      this.#lastProgressAt = performance.now();
      this.#armStuckTimer(limits.stuckTimeoutMs);
    }
    let ok = true;
    try {
      const writeAt = performance.now();
      ok = this.call.write(bytes, () => {
        metrics.sendTime.record((performance.now() - writeAt) / 1000);
        this.#written(bytes.length);
      });
    } catch (e) {
      metrics.pushes.add(1, { type: `${short}_senderr` });
      this.close(Status.INTERNAL, `write failed: ${(e as Error).message}`);
      return;
    }
    if (!ok || this.#outstandingBytes > limits.maxBufferedBytes) this.#block();
  }

  #written(length: number): void {
    this.#outstandingBytes -= length;
    this.#outstandingWrites--;
    this.#lastProgressAt = performance.now();
    if (this.#outstandingWrites === 0) {
      if (this.#stuckTimer) clearTimeout(this.#stuckTimer);
      this.#stuckTimer = undefined;
      this.#release();
      this.#blocked = false;
      this.#guard('deferred push', () => this.#flushDeferred());
    }
  }

  /** Closes the stream when its writes make no progress for `stuckTimeoutMs` (the proxy stopped
   * reading; HTTP/2 flow control holds the data). */
  #armStuckTimer(ms: number): void {
    if (this.#stuckTimer) clearTimeout(this.#stuckTimer);
    this.#stuckTimer = setTimeout(() => {
      this.#stuckTimer = undefined;
      if (this.closed || this.#outstandingWrites === 0) return;
      const limit = this.host.limits.stuckTimeoutMs;
      const idle = performance.now() - this.#lastProgressAt;
      if (idle < limit) {
        this.#armStuckTimer(limit - idle);
        return;
      }
      this.host.metrics.writeTimeout.add(1);
      this.close(
        Status.RESOURCE_EXHAUSTED,
        `proxy stopped reading: ${this.#outstandingBytes} bytes unwritten for ${Math.round(idle)} ms`,
        true,
      );
    }, ms);
    this.#stuckTimer.unref();
  }

  #release(): void {
    const waiters = this.#releaseWaiters;
    this.#releaseWaiters = [];
    for (const w of waiters) w();
  }

  #block(): void {
    if (this.#blocked) return;
    this.#blocked = true;
    this.#release();
    this.host.log.debug(
      { conn: this.id, proxy: this.ctx?.proxy.id, buffered: this.#outstandingBytes },
      'stream blocked: proxy is not reading',
    );
  }

  #flushDeferred(): void {
    const change = this.#deferredChange;
    const forced = this.#deferredForced;
    this.#deferredChange = undefined;
    this.#deferredForced = new Set();
    // Answers to requests go out at once (as istiod answers requests); a deferred push goes back
    // through the push queue, so it counts against the concurrency cap like any other.
    if (forced.size > 0) this.#send(undefined, forced);
    if (change) this.host.requeue(this, change);
  }

  /**
   * Ends the stream with a status and a logged reason. `hard` resets the HTTP/2 stream at once (for a
   * peer that stopped reading, whose trailers could never be written).
   */
  close(code: Status, reason: string, hard = false): void {
    if (this.closed) return;
    this.host.log.warn(
      { conn: this.id, proxy: this.ctx?.proxy.id, code: Status[code], peer: this.call.getPeer() },
      `closing xDS stream: ${reason}`,
    );
    const error = Object.assign(new Error(reason), { code, details: reason });
    if (hard) {
      this.#finish(reason);
      if (!resetHttp2Stream(this.call)) this.call.destroy(error);
      return;
    }
    this.call.emit('error', error);
    this.#finish(reason);
  }

  /** Ends the stream as the server drains (clients reconnect to another replica). */
  drain(): void {
    if (this.closed) return;
    this.close(Status.UNAVAILABLE, 'server is shutting down');
  }

  /** Whether the stream comes through a node agent (`x-meridian-agent` metadata), which moves on a shed. */
  get relayed(): boolean {
    return this.call.metadata.get('x-meridian-agent').length > 0;
  }

  /** Every watched type's last response ACKed (nothing sent and unanswered, no NACK outstanding). */
  #allAcked(): boolean {
    if (this.watches.size === 0) return false;
    for (const w of this.watches.values()) if (syncState(w) !== 'SYNCED') return false;
    return true;
  }

  #markSynced(version: string, changeAt: number | undefined): void {
    this.syncedVersion = version;
    this.syncedAt = Date.now();
    this.host.synced(this, version, changeAt);
  }

  /**
   * A new snapshot that does not change what this stream holds (the server did not push it): the
   * proxy is synced to it as soon as it is synced at all.
   */
  unaffectedBy(version: string, changeAt: number): void {
    if (this.#awaiting) this.#awaiting = { ...this.#awaiting, version };
    else if (this.#allAcked()) this.#markSynced(version, changeAt);
  }

  /** Whether every type this stream watches has its last response ACKed (nothing in flight). */
  get settled(): boolean {
    if (this.closed || this.watches.size === 0) return false;
    for (const w of this.watches.values()) if (syncState(w) !== 'SYNCED') return false;
    return true;
  }

  /**
   * Ends the stream to rebalance load: UNAVAILABLE with trailing metadata (for example the replica to
   * move to), so a relaying agent resumes elsewhere without counting it as a failure.
   */
  shed(reason: string, trailers: Readonly<Record<string, string>>): void {
    if (this.closed) return;
    const metadata = new Metadata();
    for (const [k, v] of Object.entries(trailers)) metadata.set(k, v);
    this.host.log.info(
      { conn: this.id, proxy: this.ctx?.proxy.id, ...trailers },
      `shedding xDS stream: ${reason}`,
    );
    this.call.emit(
      'error',
      Object.assign(new Error(reason), { code: Status.UNAVAILABLE, details: reason, metadata }),
    );
    this.#finish(reason);
  }

  #finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.#stuckTimer) clearTimeout(this.#stuckTimer);
    this.#release();
    this.host.log.debug({ conn: this.id, proxy: this.ctx?.proxy.id, reason }, 'xDS stream ended');
    this.host.closed(this);
  }
}
