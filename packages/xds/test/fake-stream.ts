// An in-memory ADS stream for driving the real XdsServer and Connection without gRPC or a network: the
// server side implements what the stream loop uses of grpc-js' ServerDuplexStream (it emits 'data',
// 'end' and 'cancelled', and turns an 'error' the server emits into the stream's status; write with a
// completion callback and a false return under backpressure; end, destroy, getPeer, metadata,
// getAuthContext), the client side sends requests built from Envoy's protos and reads every response
// decoded the same way.
//
// Every response is checked as it is written, against the rules a client relies on: it decodes as the
// stream's response message (a DeltaDiscoveryResponse of Resource entries on a Delta stream), its type
// URL is one this stream requested, a SotW response carries a version_info, and its nonce is non-empty,
// never seen on the stream, and follows the server's scheme (stream-push.ts): shared responses carry
// `s<seq>` (SotW) or `d<seq>` (Delta) with seq strictly increasing per type on one stream (the
// guarantee that keeps them from repeating; across types a stream may take an older shared response),
// the stream's own responses `<stream>-<n>` with one stream prefix and n strictly increasing. A broken
// rule marks the running test failed at that write (expect.soft: the test goes on, as Go's t.Errorf
// does) and is kept in `violations`; `assertClean()` (called by every request and read helper, and by
// FakeAds.assertClean for an afterEach) throws the first one, its stack showing the write.
import { EventEmitter } from 'node:events';
import {
  Metadata,
  type Server,
  type ServerDuplexStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { decodeResource, type EnvoyJson, encodeResource, type JsonValue, TypeUrl } from '@meridian/envoy';
import type { XdsServer } from '@meridian/xds';
import { expect } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

/** A response as the client reads it (both variants). */
export interface Response {
  readonly typeUrl: string;
  readonly nonce: string;
  /** SotW version_info or Delta system_version_info. */
  readonly version: string;
  /** Names of the resources carried, in order. */
  readonly names: readonly string[];
  /** The resources carried, decoded (Delta: the Resource's inner resource). */
  readonly resources: readonly EnvoyJson[];
  /** Delta: name -> version of the resources carried. */
  readonly versions: ReadonlyMap<string, string>;
  /** Delta only. */
  readonly removed: readonly string[];
  /** Encoded size of the resources carried. */
  readonly resourceBytes: number;
}

/** How the server ended the stream: the status it sent (or, `hard`, a reset without trailers). */
export interface StreamEnd {
  readonly code: number;
  readonly details: string;
  readonly metadata: Metadata | undefined;
  readonly hard: boolean;
}

export interface FakeStreamOptions {
  readonly variant: 'sotw' | 'delta';
  readonly nodeId: string;
  /** Node metadata (Struct). */
  readonly nodeMetadata?: { [key: string]: JsonValue };
  /** gRPC request metadata (e.g. `x-meridian-agent`). */
  readonly grpcMetadata?: Readonly<Record<string, string>>;
  readonly peer?: string;
  /** Writes the client may leave untaken before `write` returns false (Node's objectMode default). */
  readonly highWaterMark?: number;
  /** Behave like Envoy: ACK every response at once (NACK those of `nackTypes`). Default false. */
  readonly autoAck?: boolean;
  /** 'fail' (default): a broken rule fails the running test; 'record': only kept in `violations`
   * (tests of the checks themselves). */
  readonly onViolation?: 'fail' | 'record';
}

/** A broken protocol rule, made at the write that broke it (its stack shows the server's frames). */
export class ProtocolViolation extends Error {
  override readonly name = 'ProtocolViolation';
}

/** Listener and Cluster responses carry the whole state; for other types a SotW client keeps what a
 * response leaves out [xDS protocol: Grouping Resources into Responses]. */
const FULL_STATE = new Set<string>([TypeUrl.Listener, TypeUrl.Cluster]);

function nameOf(json: EnvoyJson): string {
  return String(json.name ?? json.cluster_name ?? '');
}

/** One ADS stream: the server's side of the call and a client that checks every response. */
export class FakeStream extends EventEmitter {
  // ---- The server's side: what grpc-js' ServerDuplexStream gives the stream loop. ----
  readonly metadata = new Metadata();
  cancelled = false;

  // ---- The client's side. ----
  readonly responses: Response[] = [];
  readonly violations: ProtocolViolation[] = [];
  /** Set once the server ended the stream. */
  ended: StreamEnd | undefined;
  /** Types whose responses the client NACKs (with this message), when `autoAck` is set. */
  readonly nackTypes = new Map<string, string>();
  /** What the client holds per type: name -> version (Delta; '' on SotW, whose responses carry none). */
  readonly held = new Map<string, Map<string, string>>();
  /** Responses per type the client ACKed / NACKed (autoAck). */
  readonly acks = new Map<string, number>();
  readonly nacks = new Map<string, number>();

  readonly #requested = new Set<string>();
  /** SotW: the names last requested per type (an ACK repeats them). */
  readonly #names = new Map<string, readonly string[]>();
  /** SotW: the version last accepted per type (a NACK carries it). */
  readonly #accepted = new Map<string, string>();
  readonly #nonces = new Set<string>();
  readonly #sharedSeq = new Map<string, number>();
  #ownPrefix: string | undefined;
  #ownSeq = 0;
  #nodeSent = false;
  #read = 0;
  #paused = false;
  #held: (() => void)[] = [];
  #waiters: (() => void)[] = [];

  constructor(readonly options: FakeStreamOptions) {
    super();
    for (const [k, v] of Object.entries(options.grpcMetadata ?? {})) this.metadata.set(k, v);
    // grpc-js turns an 'error' emitted on the call into the stream's status.
    this.on('error', (e: Error & { code?: number; details?: string; metadata?: Metadata }) => {
      this.ended ??= {
        code: e.code ?? 2,
        details: e.details ?? e.message,
        metadata: e.metadata,
        hard: false,
      };
      this.#wake();
    });
  }

  get variant(): 'sotw' | 'delta' {
    return this.options.variant;
  }

  getPeer(): string {
    return this.options.peer ?? 'ipv4:127.0.0.1:50000';
  }

  /** Plaintext: no peer certificate, so no authenticated identity. */
  getAuthContext(): ReturnType<ServerDuplexStream<Buffer, Buffer>['getAuthContext']> {
    return {};
  }

  /** A response from the server: checked, recorded, taken at once unless the client stopped reading. */
  write(bytes: Buffer, callback?: () => void): boolean {
    this.#check(bytes);
    const done = () => callback?.();
    if (this.#paused) {
      this.#held.push(done);
      return this.#held.length < (this.options.highWaterMark ?? 16);
    }
    setImmediate(done);
    return true;
  }

  /** The server ended its side (the answer to the client's end). */
  end(): void {
    this.ended ??= { code: 0, details: '', metadata: undefined, hard: false };
    this.#wake();
  }

  /** The server reset the stream (no status reaches the client). */
  destroy(error?: Error & { code?: number; details?: string }): this {
    this.ended ??= {
      code: error?.code ?? 1,
      details: error?.details ?? error?.message ?? '',
      metadata: undefined,
      hard: true,
    };
    this.#wake();
    return this;
  }

  /** The stream as the server's handler receives it. Only the members above are used by the stream
   * loop (connection.ts) and the server (server.ts): the rest of grpc-js' call type is not needed. */
  asServerCall(): ServerDuplexStream<Buffer, Buffer> {
    return this as unknown as ServerDuplexStream<Buffer, Buffer>;
  }

  // ---- Requests ----

  #node(): EnvoyJson | undefined {
    if (this.#nodeSent) return undefined;
    this.#nodeSent = true;
    return { id: this.options.nodeId, metadata: this.options.nodeMetadata ?? {} };
  }

  /** Sends raw request bytes (the server handles them before this returns). */
  send(bytes: Uint8Array): void {
    this.emit('data', Buffer.from(bytes));
    this.assertClean();
  }

  /** A DiscoveryRequest: a subscription, an ACK of `ack`, or (with `error`) a NACK of it. */
  sotw(
    typeUrl: string,
    names: readonly string[],
    o: { ack?: Response; version?: string; nonce?: string; error?: string } = {},
  ): void {
    this.#requested.add(typeUrl);
    this.#names.set(typeUrl, names);
    const req: EnvoyJson = { type_url: typeUrl, resource_names: [...names] };
    const node = this.#node();
    if (node) req.node = node;
    const nonce = o.nonce ?? o.ack?.nonce;
    // A NACK carries the version last accepted [xDS protocol: ACK and NACK semantics].
    const version = o.version ?? (o.error ? this.#accepted.get(typeUrl) : o.ack?.version);
    if (o.ack && !o.error) this.#accepted.set(typeUrl, o.ack.version);
    if (nonce !== undefined) req.response_nonce = nonce;
    if (version !== undefined) req.version_info = version;
    if (o.error) req.error_detail = { code: 3, message: o.error };
    this.send(encodeResource('envoy.service.discovery.v3.DiscoveryRequest', req));
  }

  /** A DeltaDiscoveryRequest: (un)subscriptions, an ACK of `ack` (with `error`: a NACK), or both. */
  delta(
    typeUrl: string,
    o: {
      subscribe?: readonly string[];
      unsubscribe?: readonly string[];
      initial?: ReadonlyMap<string, string>;
      ack?: Response;
      nonce?: string;
      error?: string;
    } = {},
  ): void {
    this.#requested.add(typeUrl);
    const req: EnvoyJson = {
      type_url: typeUrl,
      resource_names_subscribe: [...(o.subscribe ?? [])],
      resource_names_unsubscribe: [...(o.unsubscribe ?? [])],
    };
    const node = this.#node();
    if (node) req.node = node;
    if (o.initial) req.initial_resource_versions = Object.fromEntries(o.initial);
    const nonce = o.nonce ?? o.ack?.nonce;
    if (nonce !== undefined) req.response_nonce = nonce;
    if (o.error) req.error_detail = { code: 3, message: o.error };
    this.send(encodeResource('envoy.service.discovery.v3.DeltaDiscoveryRequest', req));
  }

  /** Subscribes to each type in turn (Envoy's order: CDS, EDS, LDS, RDS); no names = wildcard. */
  subscribe(subs: readonly { readonly typeUrl: string; readonly names?: readonly string[] }[]): void {
    for (const s of subs) {
      if (this.variant === 'sotw') this.sotw(s.typeUrl, s.names ?? []);
      else this.delta(s.typeUrl, { subscribe: s.names ?? [] });
    }
  }

  /** The client closes its side (grpc-js: 'end'). */
  endFromClient(): void {
    this.emit('end');
  }

  /** The client goes away (grpc-js: 'cancelled'). */
  cancel(): void {
    this.cancelled = true;
    this.emit('cancelled');
  }

  /** Stops taking writes: their callbacks wait, and `write` returns false past the high-water mark. */
  stopReading(): void {
    this.#paused = true;
  }

  resumeReading(): void {
    this.#paused = false;
    const held = this.#held;
    this.#held = [];
    for (const done of held) setImmediate(done);
  }

  // ---- Reading ----

  /** Responses not yet taken with `next()`. */
  get unread(): readonly Response[] {
    return this.responses.slice(this.#read);
  }

  /** The next response not yet read; waits up to `timeoutMs`. */
  async next(timeoutMs = 2000): Promise<Response> {
    const end = Date.now() + timeoutMs;
    while (this.responses.length <= this.#read) {
      this.assertClean();
      const left = end - Date.now();
      if (left <= 0) throw new Error(`${this.options.nodeId}: no response within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.assertClean();
    return this.responses[this.#read++]!;
  }

  /** Waits until `done` holds (checked after every response and stream end), up to `timeoutMs`. */
  async until(what: string, done: () => boolean, timeoutMs = 2000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!done()) {
      this.assertClean();
      if (Date.now() > end) throw new Error(`${this.options.nodeId}: not within ${timeoutMs} ms: ${what}`);
      await sleep(2);
    }
    this.assertClean();
  }

  /** Throws the first protocol violation seen on this stream (its stack shows the write). */
  assertClean(): void {
    const v = this.violations[0];
    if (v && this.options.onViolation !== 'record') throw v;
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  // ---- The check on every write ----

  #check(bytes: Buffer): void {
    const problems: string[] = [];
    let r: Response | undefined;
    try {
      r = this.#decode(bytes, problems);
    } catch (e) {
      problems.push(`not a ${this.#messageName()}: ${(e as Error).message}`);
    }
    if (this.ended) problems.push('written after the stream ended');
    if (r) {
      if (!this.#requested.has(r.typeUrl))
        problems.push(`type URL "${r.typeUrl}" was never requested on this stream`);
      if (this.variant === 'sotw' && r.version === '') problems.push('SotW response without version_info');
      this.#checkNonce(r, problems);
    }
    if (problems.length > 0) {
      const at = `response #${this.responses.length + 1} on ${this.options.nodeId} (${r?.typeUrl ?? '?'}, nonce "${r?.nonce ?? '?'}")`;
      const violation = new ProtocolViolation(`${at}: ${problems.join('; ')}`);
      this.violations.push(violation);
      if (this.options.onViolation !== 'record') this.#report(at, problems);
    }
    if (r) {
      this.responses.push(r);
      this.#hold(r);
      if (this.options.autoAck) setImmediate(() => this.#answer(r));
    }
    this.#wake();
  }

  /** Marks the running test failed at this write and lets it go on (Go's t.Errorf). */
  #report(at: string, problems: string[]): void {
    try {
      expect.soft(problems, `xDS rule broken by ${at}`).toEqual([]);
    } catch {
      // No test is running (a write after it ended): `violations` keeps it for FakeAds.assertClean.
    }
  }

  #messageName(): string {
    return this.variant === 'sotw' ? 'DiscoveryResponse' : 'DeltaDiscoveryResponse';
  }

  #decode(bytes: Buffer, problems: string[]): Response {
    const json = decodeResource(`envoy.service.discovery.v3.${this.#messageName()}`, bytes);
    const typeUrl = String(json.type_url ?? '');
    const entries = (json.resources ?? []) as EnvoyJson[];
    if (this.variant === 'sotw') {
      // Each entry an Any of the response's type.
      for (const e of entries)
        if (e['@type'] !== typeUrl) problems.push(`a resource of type "${String(e['@type'])}" in it`);
      return {
        typeUrl,
        nonce: String(json.nonce ?? ''),
        version: String(json.version_info ?? ''),
        names: entries.map(nameOf),
        resources: entries,
        versions: new Map(),
        removed: [],
        resourceBytes: resourceBytesOf(bytes),
      };
    }
    // Each entry a Resource { name, version, resource: Any of the response's type }: a SotW body read
    // as a DeltaDiscoveryResponse has no names, and its Any is not a Resource.
    const inner: EnvoyJson[] = [];
    for (const e of entries) {
      const res = e.resource as EnvoyJson | undefined;
      if (typeof e.name !== 'string' || e.name === '') problems.push('a Resource without a name in it');
      if (typeof e.version !== 'string' || e.version === '') problems.push('a Resource without a version');
      if (!res || res['@type'] !== typeUrl)
        problems.push(`a Resource of type "${String(res?.['@type'])}" in it`);
      inner.push(res ?? {});
    }
    return {
      typeUrl,
      nonce: String(json.nonce ?? ''),
      version: String(json.system_version_info ?? ''),
      names: entries.map((e) => String(e.name ?? '')),
      resources: inner,
      versions: new Map(entries.map((e) => [String(e.name ?? ''), String(e.version ?? '')])),
      removed: ((json.removed_resources ?? []) as JsonValue[]).map(String),
      resourceBytes: resourceBytesOf(bytes),
    };
  }

  #checkNonce(r: Response, problems: string[]): void {
    const nonce = r.nonce;
    if (nonce === '') {
      problems.push('empty nonce');
      return;
    }
    if (this.#nonces.has(nonce)) problems.push(`nonce "${nonce}" repeated on the stream`);
    this.#nonces.add(nonce);
    const shared = /^([sd])([0-9a-z]+)$/.exec(nonce);
    const own = /^([0-9a-z]+)-([0-9a-z]+)$/.exec(nonce);
    if (shared) {
      const prefix = this.variant === 'sotw' ? 's' : 'd';
      if (shared[1] !== prefix) problems.push(`shared nonce "${nonce}" is not a ${prefix}<seq> nonce`);
      const seq = Number.parseInt(shared[2]!, 36);
      const last = this.#sharedSeq.get(r.typeUrl) ?? 0;
      if (seq <= last)
        problems.push(
          `shared nonce "${nonce}" (seq ${seq}) does not increase on its type (last seq ${last})`,
        );
      this.#sharedSeq.set(r.typeUrl, Math.max(seq, last));
    } else if (own) {
      const prefix = own[1]!;
      if (this.#ownPrefix !== undefined && prefix !== this.#ownPrefix)
        problems.push(`nonce "${nonce}" has another stream's prefix (this stream's: ${this.#ownPrefix})`);
      this.#ownPrefix ??= prefix;
      const n = Number.parseInt(own[2]!, 36);
      if (n <= this.#ownSeq) problems.push(`nonce "${nonce}" does not increase (last ${this.#ownSeq})`);
      this.#ownSeq = Math.max(n, this.#ownSeq);
    } else {
      problems.push(`nonce "${nonce}" follows neither s<seq>/d<seq> nor <stream>-<n>`);
    }
  }

  /** What the client holds after taking `r` (as Envoy keeps it). */
  #hold(r: Response): void {
    let held = this.held.get(r.typeUrl);
    if (!held || (this.variant === 'sotw' && FULL_STATE.has(r.typeUrl))) {
      held = new Map();
      this.held.set(r.typeUrl, held);
    }
    if (this.variant === 'sotw') {
      for (const n of r.names) held.set(n, '');
    } else {
      for (const [n, v] of r.versions) held.set(n, v);
      for (const n of r.removed) held.delete(n);
    }
  }

  /** An Envoy-like answer: ACK, or NACK for `nackTypes`. */
  #answer(r: Response): void {
    if (this.ended || this.cancelled) return;
    try {
      this.#ackOrNack(r);
    } catch (e) {
      // A violation its answer surfaced is already reported at the write that made it.
      if (!(e instanceof ProtocolViolation)) throw e;
    }
  }

  #ackOrNack(r: Response): void {
    const nack = this.nackTypes.get(r.typeUrl);
    const count = nack === undefined ? this.acks : this.nacks;
    count.set(r.typeUrl, (count.get(r.typeUrl) ?? 0) + 1);
    if (this.variant === 'sotw') {
      const names = this.#names.get(r.typeUrl) ?? [];
      if (nack === undefined) this.sotw(r.typeUrl, names, { ack: r });
      else this.sotw(r.typeUrl, names, { nonce: r.nonce, error: nack });
    } else if (nack === undefined) this.delta(r.typeUrl, { ack: r });
    else this.delta(r.typeUrl, { nonce: r.nonce, error: nack });
  }
}

/** Bytes of the resources a response carries (its field 2 entries). */
function resourceBytesOf(bytes: Buffer): number {
  let n = 0;
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[i++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
      shift += 7;
    }
  };
  while (i < bytes.length) {
    const tag = varint();
    const wire = tag & 7;
    if (wire === 0) varint();
    else if (wire === 2) {
      const len = varint();
      if (tag >>> 3 === 2) n += len;
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else break;
  }
  return n;
}

type Handler = (call: ServerDuplexStream<Buffer, Buffer>) => void;

/**
 * The real XdsServer with its ADS handlers taken from `register()` (no grpc-js server): `open()`
 * starts a stream the way grpc-js would, by calling the handler with a FakeStream.
 */
export class FakeAds {
  readonly streams: FakeStream[] = [];
  readonly #handlers = new Map<string, Handler>();

  constructor(readonly server: XdsServer) {
    const registry = {
      addService: (_service: ServiceDefinition, implementation: UntypedServiceImplementation) => {
        for (const [name, fn] of Object.entries(implementation)) this.#handlers.set(name, fn as Handler);
      },
    };
    // register() only calls addService.
    server.register(registry as unknown as Server);
  }

  /** Opens a stream (nothing is sent until the test sends a request). */
  open(options: FakeStreamOptions): FakeStream {
    const method = options.variant === 'sotw' ? 'StreamAggregatedResources' : 'DeltaAggregatedResources';
    const handler = this.#handlers.get(method);
    if (!handler) throw new Error(`register() did not add ${method}`);
    const stream = new FakeStream(options);
    this.streams.push(stream);
    handler(stream.asServerCall());
    return stream;
  }

  /** Waits until the server has nothing queued and every stream's writes were taken. */
  async settle(): Promise<void> {
    for (let i = 0; i < 3; i++) {
      this.server.flush();
      await this.server.idle();
      await nextTurn();
      await nextTurn();
    }
  }

  /** Throws the first protocol violation of any stream opened here (for afterEach). */
  assertClean(): void {
    for (const s of this.streams) s.assertClean();
  }

  /** Ends every stream from the client side and forgets them. */
  closeAll(): void {
    for (const s of this.streams) if (!s.ended) s.cancel();
    this.streams.length = 0;
  }
}
