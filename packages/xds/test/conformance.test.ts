// Conformance over gRPC loopback, written from Envoy's "xDS REST and gRPC protocol" page (issue 11):
// a client built on Envoy's protos (requests encoded, responses decoded with @meridian/envoy) on a real
// grpc-js channel. Every response is checked as it arrives: its type URL is one this stream requested,
// and its nonce is non-empty and new on this stream.
import { Client, type ClientDuplexStream, credentials } from '@grpc/grpc-js';
import {
  decodeResource,
  type EnvoyJson,
  encodeResource,
  type ResourceTypeUrl,
  TypeUrl,
} from '@meridian/envoy';
import {
  type ChangeEvent,
  ResourceCache,
  type ResourceMap,
  StaticSnapshot,
  XdsServer,
  xdsLogger,
} from '@meridian/xds';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const pass = (b: Buffer): Buffer => b;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A response as the client sees it (both variants, decoded from Envoy's protos). */
interface Response {
  readonly typeUrl: string;
  readonly nonce: string;
  /** SotW version_info or Delta system_version_info. */
  readonly version: string;
  /** Names of the resources carried. */
  readonly names: readonly string[];
  /** Delta: name -> version of the resources carried. */
  readonly versions: ReadonlyMap<string, string>;
  /** Delta only. */
  readonly removed: readonly string[];
}

function nameOf(json: EnvoyJson | undefined): string {
  return String(json?.name ?? json?.cluster_name ?? '');
}

function readResponse(variant: 'sotw' | 'delta', bytes: Buffer): Response {
  if (variant === 'sotw') {
    const r = decodeResource('envoy.service.discovery.v3.DiscoveryResponse', bytes);
    const resources = (r.resources ?? []) as EnvoyJson[];
    return {
      typeUrl: String(r.type_url ?? ''),
      nonce: String(r.nonce ?? ''),
      version: String(r.version_info ?? ''),
      names: resources.map(nameOf),
      versions: new Map(),
      removed: [],
    };
  }
  const r = decodeResource('envoy.service.discovery.v3.DeltaDiscoveryResponse', bytes);
  const resources = (r.resources ?? []) as EnvoyJson[];
  return {
    typeUrl: String(r.type_url ?? ''),
    nonce: String(r.nonce ?? ''),
    version: String(r.system_version_info ?? ''),
    names: resources.map((x) => String(x.name ?? '')),
    versions: new Map(resources.map((x) => [String(x.name ?? ''), String(x.version ?? '')])),
    removed: ((r.removed_resources ?? []) as string[]).map(String),
  };
}

/** One ADS stream driven by the test, checking every response on arrival. */
class CheckedStream {
  readonly responses: Response[] = [];
  /** Protocol violations seen (checked after every test). */
  readonly violations: string[] = [];
  readonly #nonces = new Set<string>();
  readonly #requested = new Set<string>();
  #read = 0;
  #nodeSent = false;
  readonly #call: ClientDuplexStream<Buffer, Buffer>;

  constructor(
    client: Client,
    readonly variant: 'sotw' | 'delta',
    readonly nodeId: string,
  ) {
    const method = variant === 'sotw' ? 'StreamAggregatedResources' : 'DeltaAggregatedResources';
    this.#call = client.makeBidiStreamRequest<Buffer, Buffer>(`${ADS}/${method}`, pass, pass);
    this.#call.on('data', (bytes: Buffer) => this.#onResponse(bytes));
    this.#call.on('error', () => {});
  }

  #onResponse(bytes: Buffer): void {
    const r = readResponse(this.variant, bytes);
    if (!this.#requested.has(r.typeUrl)) this.violations.push(`type URL ${r.typeUrl} was never requested`);
    if (r.nonce === '') this.violations.push('empty nonce');
    else if (this.#nonces.has(r.nonce)) this.violations.push(`nonce ${r.nonce} repeated on the stream`);
    this.#nonces.add(r.nonce);
    this.responses.push(r);
  }

  #node(): EnvoyJson | undefined {
    if (this.#nodeSent) return undefined;
    this.#nodeSent = true;
    return { id: this.nodeId };
  }

  /** A DiscoveryRequest (SotW). */
  sotw(typeUrl: string, names: readonly string[], ack?: Response): void {
    this.#requested.add(typeUrl);
    const req: EnvoyJson = { type_url: typeUrl, resource_names: [...names] };
    const node = this.#node();
    if (node) req.node = node;
    if (ack) {
      req.response_nonce = ack.nonce;
      req.version_info = ack.version;
    }
    this.#call.write(Buffer.from(encodeResource('envoy.service.discovery.v3.DiscoveryRequest', req)));
  }

  /** A DeltaDiscoveryRequest: (un)subscriptions, an ACK of `ack`, or both. */
  delta(
    typeUrl: string,
    o: {
      subscribe?: readonly string[];
      unsubscribe?: readonly string[];
      initial?: ReadonlyMap<string, string>;
      ack?: Response;
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
    if (o.ack) req.response_nonce = o.ack.nonce;
    this.#call.write(Buffer.from(encodeResource('envoy.service.discovery.v3.DeltaDiscoveryRequest', req)));
  }

  /** The next response not yet read (waits up to `timeoutMs`). */
  async next(timeoutMs = 5000): Promise<Response> {
    const end = Date.now() + timeoutMs;
    while (this.responses.length <= this.#read) {
      if (Date.now() > end) throw new Error(`${this.nodeId}: no response within ${timeoutMs} ms`);
      await sleep(5);
    }
    const r = this.responses[this.#read++]!;
    expect(this.violations).toEqual([]);
    return r;
  }

  /** Asserts no response arrives within `ms`. */
  async nothingWithin(ms: number): Promise<void> {
    await sleep(ms);
    expect(this.responses.slice(this.#read)).toEqual([]);
  }

  close(): void {
    this.#call.cancel();
  }
}

function cluster(name: string): EnvoyJson {
  return {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: name },
    connect_timeout: '1s',
  };
}

function endpoints(name: string, ip: string): EnvoyJson {
  return {
    cluster_name: name,
    endpoints: [
      {
        load_balancing_weight: 1,
        lb_endpoints: [{ endpoint: { address: { socket_address: { address: ip, port_value: 8080 } } } }],
      },
    ],
  };
}

describe('xDS conformance over loopback (issue 11)', () => {
  const server = new XdsServer({
    logger: xdsLogger({ level: 'warn', write: () => {} }),
    debounce: { quietMs: 0 },
  });
  const cache = new ResourceCache();
  let client: Client;
  let streams: CheckedStream[] = [];
  let v = 0;
  let nodes = 0;

  /** Publishes clusters and endpoints for `names` (endpoint IPs from `ip`). */
  const publish = (names: readonly string[], change?: ChangeEvent, ip = '10.0.0.1') => {
    const byType = new Map<ResourceTypeUrl, ResourceMap>([
      [CDS, cache.internAll(CDS, names.map(cluster))],
      [
        EDS,
        cache.internAll(
          EDS,
          names.map((n) => endpoints(n, ip)),
        ),
      ],
    ]);
    server.update(new StaticSnapshot(`v${++v}`, byType), change);
  };
  const full = (reason: string): ChangeEvent => ({ full: true, reason: [reason], at: performance.now() });
  const open = (variant: 'sotw' | 'delta') => {
    const n = ++nodes;
    const s = new CheckedStream(
      client,
      variant,
      `sidecar~10.8.0.${n}~conf-${n}.default~default.svc.cluster.local`,
    );
    streams.push(s);
    return s;
  };

  beforeAll(async () => {
    publish(['a', 'b']);
    const port = await server.listen();
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  });
  afterEach(() => {
    for (const s of streams) {
      expect(s.violations).toEqual([]);
      s.close();
    }
    streams = [];
  });
  afterAll(() => {
    client?.close();
    server.close();
  });

  it('case 1, Delta: a re-subscription of a resource the client holds is answered with it', async () => {
    const s = open('delta');
    s.delta(EDS, { subscribe: ['a'] });
    const first = await s.next();
    expect(first).toMatchObject({ typeUrl: EDS, names: ['a'], removed: [] });
    s.delta(EDS, { ack: first });
    await s.nothingWithin(100);
    // [§Subscribing to Resources] "the server *must* still provide those resources in the response".
    s.delta(EDS, { subscribe: ['a'] });
    const again = await s.next();
    expect(again).toMatchObject({ typeUrl: EDS, names: ['a'], removed: [] });
    expect(again.versions.get('a')).toBe(first.versions.get('a'));
    s.delta(EDS, { ack: again });

    // Held through `*`, then subscribed by name: answered with it, not with an empty response.
    s.delta(CDS, { subscribe: ['*'] });
    const wild = await s.next();
    expect(wild).toMatchObject({ typeUrl: CDS, names: ['a', 'b'] });
    s.delta(CDS, { ack: wild });
    s.delta(CDS, { subscribe: ['a'] });
    expect(await s.next()).toMatchObject({ typeUrl: CDS, names: ['a'], removed: [] });
  });

  it('case 2, Delta: unsubscribing a name the wildcard also covers is answered at once', async () => {
    const s = open('delta');
    s.delta(CDS, { subscribe: ['*', 'a', 'ghost'] });
    // One response: every cluster, and the name that does not exist as removed.
    const first = await s.next();
    expect(first).toMatchObject({ typeUrl: CDS, names: ['a', 'b'], removed: ['ghost'] });
    s.delta(CDS, { ack: first });
    // Still covered by the wildcard: in `resources`.
    s.delta(CDS, { unsubscribe: ['a'] });
    const covered = await s.next(4000);
    expect(covered).toMatchObject({ typeUrl: CDS, names: ['a'], removed: [] });
    s.delta(CDS, { ack: covered });
    // Not covered by the wildcard: in `removed_resources`.
    s.delta(CDS, { unsubscribe: ['ghost'] });
    const notCovered = await s.next(4000);
    expect(notCovered).toMatchObject({ typeUrl: CDS, names: [], removed: ['ghost'] });
    s.delta(CDS, { ack: notCovered });
    // A phantom unsubscription (a name never subscribed to) is ignored.
    s.delta(CDS, { unsubscribe: ['never'] });
    await s.nothingWithin(200);
  });

  it('case 3, Delta: a subscribed name that does not exist is reported in removed_resources', async () => {
    const s = open('delta');
    s.delta(EDS, { subscribe: ['ghost'] });
    const first = await s.next();
    expect(first).toMatchObject({ typeUrl: EDS, names: [], removed: ['ghost'] });
    s.delta(EDS, { ack: first });
    // Reported once: an unrelated change brings nothing for it.
    publish(['a', 'b'], full('unrelated'), '10.0.0.2');
    await s.nothingWithin(200);
    // With a name that exists, in one response: the resource, and the missing name as removed.
    s.delta(EDS, { subscribe: ['a', 'ghost2'] });
    expect(await s.next()).toMatchObject({ typeUrl: EDS, names: ['a'], removed: ['ghost2'] });
    // It springs into existence later: sent [§Knowing When a Requested Resource Does Not Exist].
    publish(['a', 'b', 'ghost'], full('ghost appears'), '10.0.0.2');
    const appeared = await s.next();
    expect(appeared).toMatchObject({ typeUrl: EDS, names: ['ghost'], removed: [] });
    publish(['a', 'b'], full('ghost goes'), '10.0.0.2');
    expect(await s.next()).toMatchObject({ typeUrl: EDS, names: [], removed: ['ghost'] });
    publish(['a', 'b']);
  });

  it('case 4, SotW: nonces never repeat on a stream, while streams still share responses', async () => {
    const s = open('sotw');
    s.sotw(EDS, ['a']);
    const r1 = await s.next();
    expect(r1).toMatchObject({ typeUrl: EDS, names: ['a'] });
    s.sotw(EDS, ['a', 'b'], r1);
    const r2 = await s.next();
    expect(r2.names).toEqual(['a', 'b']);
    s.sotw(EDS, ['a'], r2);
    const r3 = await s.next();
    expect(r3.names).toEqual(['a']);
    expect(r3.version).toBe(r1.version);
    expect(new Set([r1.nonce, r2.nonce, r3.nonce]).size).toBe(3);
    // The same subscription on another stream takes the shared response (nonce and all).
    const other = open('sotw');
    other.sotw(EDS, ['a']);
    expect((await other.next()).nonce).toBe(r1.nonce);
    // And a response of the other stream's is never taken again by the first (a stale nonce).
    s.sotw(EDS, ['a', 'b'], r3);
    const r4 = await s.next();
    expect(r4.names).toEqual(['a', 'b']);
    expect([r1.nonce, r2.nonce, r3.nonce]).not.toContain(r4.nonce);
    // A push after a change: every stream gets the new body, each with a new nonce.
    s.sotw(EDS, ['a', 'b'], r4);
    publish(['a', 'b'], full('endpoints move'), '10.0.0.3');
    const pushed = await s.next();
    expect(pushed.names).toEqual(['a', 'b']);
    expect((await other.next()).names).toEqual(['a']);
    publish(['a', 'b']);
  });

  it('case 4: a fan-out push is still one shared response for streams in the same state', async () => {
    const [x, y] = [open('sotw'), open('sotw')];
    for (const s of [x, y]) s.sotw(CDS, []);
    const [x1, y1] = [await x.next(), await y.next()];
    x.sotw(CDS, [], x1);
    y.sotw(CDS, [], y1);
    await sleep(50);
    publish(['a', 'b', 'c'], full('add c'));
    const [x2, y2] = [await x.next(), await y.next()];
    expect(x2.names).toEqual(['a', 'b', 'c']);
    expect(y2.nonce).toBe(x2.nonce);
    expect(x2.nonce).not.toBe(x1.nonce);
    publish(['a', 'b'], full('remove c'));
    const [x3, y3] = [await x.next(), await y.next()];
    expect(x3.names).toEqual(['a', 'b']);
    expect(y3.nonce).toBe(x3.nonce);
  });

  it('case 4, Delta: nonces never repeat on a stream', async () => {
    const s = open('delta');
    s.delta(EDS, { subscribe: ['a'] });
    const r1 = await s.next();
    s.delta(EDS, { ack: r1, subscribe: ['b'] });
    const r2 = await s.next();
    expect(r2.names).toEqual(['b']);
    s.delta(EDS, { ack: r2, unsubscribe: ['a'] });
    await s.nothingWithin(100);
    s.delta(EDS, { subscribe: ['a'] });
    const r3 = await s.next();
    expect(r3.names).toEqual(['a']);
    expect(new Set([r1.nonce, r2.nonce, r3.nonce]).size).toBe(3);
    // Another stream in the same state shares the first response.
    const other = open('delta');
    other.delta(EDS, { subscribe: ['a'] });
    expect((await other.next()).nonce).toBe(r1.nonce);
  });

  it('Delta reconnect with initial_resource_versions: nothing current is resent; a stale one is', async () => {
    const s = open('delta');
    s.delta(CDS, { subscribe: ['*'] });
    const cds = await s.next();
    s.delta(CDS, { ack: cds });
    s.delta(EDS, { subscribe: ['a'] });
    const eds = await s.next();
    s.delta(EDS, { ack: eds });
    s.close();

    // Reconnect (as to another replica) with every version held: answered, with no resource.
    const again = open('delta');
    again.delta(CDS, { subscribe: ['*'], initial: cds.versions });
    again.delta(EDS, { subscribe: ['a'], initial: eds.versions });
    expect(await again.next()).toMatchObject({ typeUrl: CDS, names: [], removed: [] });
    expect(await again.next()).toMatchObject({ typeUrl: EDS, names: [], removed: [] });
    again.close();

    // A stale version of one cluster and a cluster that has gone: exactly those are answered.
    const stale = open('delta');
    stale.delta(CDS, {
      subscribe: ['*'],
      initial: new Map([...cds.versions, ['b', 'old'], ['gone', 'v0']]),
    });
    const resent = await stale.next();
    expect(resent).toMatchObject({ typeUrl: CDS, names: ['b'], removed: [] });
    expect(await stale.next()).toMatchObject({ typeUrl: CDS, names: [], removed: ['gone'] });
  });
});
