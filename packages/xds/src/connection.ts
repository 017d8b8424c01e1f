// One ADS stream: the loop shared by State-of-the-World and Delta. It owns the stream's lifecycle
// (grpc-js events, close, drain, shed) and its requests: decodes them, identifies the node, applies the
// protocol rules (protocol.ts) and records ACKs and NACKs, answers new subscriptions, and takes pushes
// from the push queue, deferring them while the stream's writes are pending. What it holds per type
// lives in stream-state.ts, how a push is built and sent in stream-push.ts, the write side with its
// bounded buffer in stream-writer.ts.
import { Metadata, type ServerDuplexStream, status as Status } from '@grpc/grpc-js';
import { type EnvoyJson, NodeError, parseNode } from '@meridian/envoy';
import type { Logger } from 'pino';
import { shortType, type XdsMetrics } from './metrics.js';
import {
  type AckOutcome,
  applyDeltaRequest,
  applySotwRequest,
  type DeltaWatch,
  PUSH_ORDER,
  type SotwWatch,
} from './protocol.js';
import type { Pushable } from './push-queue.js';
import { StreamPush } from './stream-push.js';
import { type PushFailure, StreamState, type TypeBook, type Variant } from './stream-state.js';
import { StreamWriter } from './stream-writer.js';
import type { ChangeEvent, ProxyContext, XdsSnapshot } from './types.js';
import { type DeltaRequest, decodeDeltaRequest, decodeSotwRequest, type SotwRequest } from './wire.js';

// The server imports the stream's types and its change filter from here.
export { changeAffects } from './stream-push.js';
export type { PushFailure, Variant } from './stream-state.js';

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

let connectionCounter = 0;

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

/** One ADS stream (SotW or Delta). */
export class Connection implements Pushable {
  /** `<node id>-<n>` once identified; `pending-<n>` before. */
  id: string;
  ctx: ProxyContext | undefined;
  readonly watches: Map<string, SotwWatch | DeltaWatch>;
  readonly books: Map<string, TypeBook>;
  readonly connectedAt = Date.now();
  closed = false;
  readonly #n = ++connectionCounter;
  readonly #state: StreamState;
  readonly #writer: StreamWriter;
  readonly #push: StreamPush;
  #deferredChange: ChangeEvent | undefined;
  #deferredForced = new Set<string>();

  constructor(
    readonly variant: Variant,
    readonly call: AnyStream,
    readonly host: ConnectionHost,
    readonly authenticatedIdentity: string | undefined,
  ) {
    this.id = `pending-${this.#n}`;
    this.#state = new StreamState(this.#n, (version, changeAt) => this.host.synced(this, version, changeAt));
    this.watches = this.#state.watches;
    this.books = this.#state.books;
    this.#writer = new StreamWriter(call, {
      log: host.log,
      metrics: host.metrics,
      limits: host.limits,
      isClosed: () => this.closed,
      logFields: () => ({ conn: this.id, proxy: this.ctx?.proxy.id }),
      drained: () => this.#guard('deferred push', () => this.#flushDeferred()),
      writeFailed: (e) => this.close(Status.INTERNAL, `write failed: ${e.message}`),
      stuck: (reason) => this.close(Status.RESOURCE_EXHAUSTED, reason, true),
    });
    this.#push = new StreamPush(this, this.#state, this.#writer);
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
    return this.#writer.blocked;
  }

  /** Bytes handed to grpc-js and not yet written to the socket. */
  get bufferedBytes(): number {
    return this.#writer.bufferedBytes;
  }

  /** The last push that failed to build, until one succeeds. */
  get pushFailure(): PushFailure | undefined {
    return this.#state.pushFailure;
  }

  /** The newest snapshot version whose resources this proxy has ACKed in full, and when. */
  get syncedVersion(): string | undefined {
    return this.#state.syncedVersion;
  }

  get syncedAt(): number | undefined {
    return this.#state.syncedAt;
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
      if (this.#writer.pending) this.#deferredForced.add(type);
      else this.#push.send(undefined, forcedTypes([type]));
    }
  }

  #recordAck(type: string, ack: AckOutcome): void {
    const { log, metrics } = this.host;
    const book = this.#state.book(type);
    switch (ack.kind) {
      case 'ack': {
        book.lastAckAt = Date.now();
        if (book.changeAt !== undefined) {
          metrics.ackTime.record((performance.now() - book.changeAt) / 1000, { type: shortType(type) });
          book.changeAt = undefined;
        }
        this.#state.acked();
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
    if (this.#writer.pending) {
      this.#deferChange(change);
      return Promise.resolve();
    }
    this.#push.send(change, new Set());
    return this.#writer.released(this.host.limits.pushReleaseMs);
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

  #flushDeferred(): void {
    const change = this.#deferredChange;
    const forced = this.#deferredForced;
    this.#deferredChange = undefined;
    this.#deferredForced = new Set();
    // Answers to requests go out at once (as istiod answers requests); a deferred push goes back
    // through the push queue, so it counts against the concurrency cap like any other.
    if (forced.size > 0) this.#push.send(undefined, forced);
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

  /**
   * A new snapshot that does not change what this stream holds (the server did not push it): the
   * proxy is synced to it as soon as it is synced at all.
   */
  unaffectedBy(version: string, changeAt: number): void {
    this.#state.unaffectedBy(version, changeAt);
  }

  /** Whether every type this stream watches has its last response ACKed (nothing in flight). */
  get settled(): boolean {
    return !this.closed && this.#state.allAcked();
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
    this.#writer.stop();
    this.host.log.debug({ conn: this.id, proxy: this.ctx?.proxy.id, reason }, 'xDS stream ended');
    this.host.closed(this);
  }
}
