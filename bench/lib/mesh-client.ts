// A client process of the `mesh` benchmark (forked by bench/mesh.ts, driven over IPC): simulated
// SotW sidecars, each following Envoy's order on one ADS stream: CDS by wildcard, then EDS for the
// EDS clusters it was sent, then LDS by wildcard, then RDS for the route names its listeners use,
// ACKing every response (and re-subscribing when the names change). Also the floor's clients:
// bare streams to the floor server that count what they receive.
//
// Times are epoch milliseconds (performance.timeOrigin + performance.now()), comparable across
// the benchmark's processes.
import { Client, type ClientDuplexStream, credentials } from '@grpc/grpc-js';
import { encodeResource, type JsonValue } from '@meridian/envoy';
import { sotwRequestBytes } from '@meridian/testkit';
import {
  clusterEdsName,
  listenerRdsNames,
  loadAssignmentName,
  maxEndpointWeight,
  readSotw,
} from './mesh-wire.js';

export const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
export const EDS = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
export const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';
export const RDS = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
const TYPES = [CDS, EDS, LDS, RDS] as const;
const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const pass = (b: Buffer): Buffer => b;
export const epochNow = (): number => performance.timeOrigin + performance.now();

/** One simulated sidecar as the benchmark describes it. */
export interface ProxySpec {
  readonly index: number;
  readonly address: string;
  readonly node: { id: string; metadata: { [key: string]: JsonValue }; locality: Record<string, string> };
}

/** Commands from the benchmark process. */
export type ClientCommand =
  | { cmd: 'init'; proxies: ProxySpec[]; streamsPerConnection: number }
  | { cmd: 'connect' }
  | { cmd: 'status' }
  | { cmd: 'mark' }
  | { cmd: 'progress'; types: string[] }
  | { cmd: 'since'; types: string[] }
  | { cmd: 'capture'; types: string[]; changedOnly?: boolean }
  | { cmd: 'floor-connect'; address: string; count: number }
  | { cmd: 'floor-mark'; expect: number }
  | { cmd: 'floor-status'; detail: boolean }
  | { cmd: 'churn-track'; on: boolean }
  | { cmd: 'churn-report'; changes: [host: string, seq: number, at: number][] }
  | { cmd: 'close' };

interface TypeState {
  version: string;
  nonce: string;
  acks: number;
  /** Names requested (EDS, RDS), sorted and joined, or undefined before the first request. */
  names: string[] | undefined;
  namesKey: string;
  /** A request for new names is not answered yet. */
  pending: boolean;
}

interface Since {
  responses: number;
  bytes: number;
  first: number;
  last: number;
  changed: boolean;
}

const newType = (): TypeState => ({
  version: '',
  nonce: '',
  acks: 0,
  names: undefined,
  namesKey: '',
  pending: false,
});

/** EDS names of a CDS version and RDS names of an LDS version, as read from a response of that
 * version (SotW versions name the content; a few recent ones are kept). */
const namesByVersion = new Map<string, Set<string>>();
/** The version, resource count and resources' byte span of a response: equal keys, equal content. */
function contentKey(prefix: string, version: string, r: readonly number[]): string {
  return version === '' || r.length === 0
    ? ''
    : `${prefix}${version}|${r.length}|${r[r.length - 1]! - r[0]!}`;
}
function remember(key: string, names: Set<string>): void {
  if (key === '') return; // no version: do not cache
  namesByVersion.set(key, names);
  if (namesByVersion.size > 256) namesByVersion.delete(namesByVersion.keys().next().value!);
}
/** Why streams ended (the server's status), counted. */
const endReasons = new Map<string, number>();

class Sidecar {
  readonly types = new Map<string, TypeState>(TYPES.map((t) => [t, newType()]));
  call: ClientDuplexStream<Buffer, Buffer> | undefined;
  node: Uint8Array;
  nodeSent = false;
  ldsRequested = false;
  syncedAt = 0;
  ended: string | undefined;
  /** Per type, what arrived since the last mark. */
  since = new Map<string, Since>();
  versionsAtMark = new Map<string, string>();
  /** The first few local sidecars keep their last raw response of each type (for the floor). */
  last: Map<string, Buffer> | undefined;
  /** Churn tracking: host -> flat [maxWeight, at, maxWeight, at, ...] in arrival order. */
  deliveries: Map<string, number[]> | undefined;
  maxWeight: Map<string, number> | undefined;

  constructor(readonly spec: ProxySpec) {
    this.node = encodeResource('envoy.config.core.v3.Node', spec.node);
  }

  /** Times the stream ended (by the server or a bad response) and was opened again. */
  reconnects = 0;
  closing = false;

  connect(client: Client): void {
    const call = client.makeBidiStreamRequest<Buffer, Buffer>(ADS, pass, pass);
    this.call = call;
    call.on('data', (b: Buffer) => {
      try {
        this.onResponse(b);
      } catch (error) {
        this.ended = `bad response: ${(error as Error).message}`;
      }
    });
    call.on('status', (s: { code: number; details: string }) => {
      if (this.call !== call || this.closing) return;
      this.ended = `stream ended: code ${s.code} ${s.details}`;
      const reason = `code ${s.code} ${s.details.replace(/\d+/g, 'N')}`;
      endReasons.set(reason, (endReasons.get(reason) ?? 0) + 1);
      // As Envoy does: open a new stream after a back-off, asking again for what it holds (the
      // versions it accepted, its names re-subscribed as the responses come).
      setTimeout(() => {
        if (this.closing) return;
        this.reconnects++;
        this.nodeSent = false;
        this.ldsRequested = false;
        for (const st of this.types.values()) {
          st.nonce = '';
          st.names = undefined;
          st.namesKey = '';
          st.pending = false;
        }
        this.connect(client);
      }, 1000).unref();
    });
    call.on('error', () => {});
    this.request(CDS, [], this.types.get(CDS)!.version, '');
  }

  request(typeUrl: string, names: readonly string[], version: string, nonce: string): void {
    const node = this.nodeSent ? undefined : this.node;
    this.nodeSent = true;
    const call = this.call;
    if (!call || call.writableEnded) return;
    call.write(
      sotwRequestBytes({
        ...(node ? { node } : {}),
        typeUrl,
        resourceNames: names,
        versionInfo: version,
        responseNonce: nonce,
      }),
    );
  }

  get synced(): boolean {
    const t = (u: string) => this.types.get(u)!;
    const named = (u: string) => {
      const s = t(u);
      return s.names !== undefined && (s.names.length === 0 || (s.acks > 0 && !s.pending));
    };
    return t(CDS).acks > 0 && named(EDS) && t(LDS).acks > 0 && named(RDS);
  }

  onResponse(buf: Buffer): void {
    const at = epochNow();
    const view = readSotw(buf);
    const type = view.typeUrl;
    const st = this.types.get(type);
    if (!st) return;
    if (this.last) this.last.set(type, buf);
    let since = this.since.get(type);
    if (!since) {
      since = { responses: 0, bytes: 0, first: at, last: at, changed: false };
      this.since.set(type, since);
    }
    since.responses++;
    since.bytes += buf.length;
    since.last = at;
    if (view.versionInfo !== (this.versionsAtMark.get(type) ?? '')) since.changed = true;

    st.version = view.versionInfo;
    st.nonce = view.nonce;
    st.acks++;
    st.pending = false;
    const r = view.resources;
    if (type === CDS) {
      this.request(CDS, [], st.version, st.nonce); // ACK
      // The names follow from the content, which the version names: read once per version.
      const key = contentKey('c', st.version, r);
      let names = namesByVersion.get(key);
      if (!names) {
        names = new Set<string>();
        for (let i = 0; i < r.length; i += 2) {
          const n = clusterEdsName(buf, r[i]!, r[i + 1]!);
          if (n !== undefined) names.add(n);
        }
        remember(key, names);
      }
      this.subscribe(EDS, names);
      if (names.size === 0 && !this.ldsRequested) this.requestLds();
    } else if (type === EDS) {
      const eds = this.types.get(EDS)!;
      this.request(EDS, eds.names ?? [], st.version, st.nonce);
      if (!this.ldsRequested) this.requestLds();
      if (this.deliveries) this.trackWeights(buf, r, at);
    } else if (type === LDS) {
      this.request(LDS, [], st.version, st.nonce);
      const key = contentKey('l', st.version, r);
      let names = namesByVersion.get(key);
      if (!names) {
        names = new Set<string>();
        for (let i = 0; i < r.length; i += 2) listenerRdsNames(buf, r[i]!, r[i + 1]!, names);
        remember(key, names);
      }
      this.subscribe(RDS, names);
    } else {
      this.request(RDS, st.names ?? [], st.version, st.nonce);
    }
    if (this.syncedAt === 0 && this.synced) this.syncedAt = at;
  }

  requestLds(): void {
    this.ldsRequested = true;
    this.request(LDS, [], this.types.get(LDS)!.version, '');
  }

  /** Requests `names` of `type` when they differ from what is subscribed (Envoy's behaviour). */
  subscribe(type: string, names: Set<string>): void {
    const st = this.types.get(type)!;
    const list = [...names].sort();
    const key = list.join('\n');
    if (st.names !== undefined && key === st.namesKey) return;
    st.names = list;
    st.namesKey = key;
    if (list.length === 0) {
      st.pending = false;
      if (st.acks === 0) return;
    } else st.pending = true;
    this.request(type, list, st.version, st.nonce);
  }

  trackWeights(buf: Buffer, r: number[], at: number): void {
    for (let i = 0; i < r.length; i += 2) {
      const name = loadAssignmentName(buf, r[i]!, r[i + 1]!);
      if (!name.startsWith('outbound|8080||')) continue;
      const host = name.slice('outbound|8080||'.length);
      const w = maxEndpointWeight(buf, r[i]!, r[i + 1]!);
      const prev = this.maxWeight!.get(host) ?? 1;
      if (w <= prev) continue;
      this.maxWeight!.set(host, w);
      let list = this.deliveries!.get(host);
      if (!list) {
        list = [];
        this.deliveries!.set(host, list);
      }
      list.push(w, at);
    }
  }

  mark(): void {
    this.since.clear();
    for (const [t, s] of this.types) this.versionsAtMark.set(t, s.version);
  }

  close(): void {
    this.closing = true;
    const call = this.call;
    this.call = undefined;
    if (call) {
      call.removeAllListeners('data');
      call.cancel();
    }
  }
}

/** A floor client: one bare stream that counts what it receives and answers each with a request. */
class FloorStream {
  count = 0;
  last = 0;
  call: ClientDuplexStream<Buffer, Buffer> | undefined;
  connect(client: Client): void {
    const call = client.makeBidiStreamRequest<Buffer, Buffer>(ADS, pass, pass);
    this.call = call;
    call.on('data', () => {
      this.count++;
      this.last = epochNow();
      if (!call.writableEnded) call.write(sotwRequestBytes({ typeUrl: RDS, responseNonce: 'f' }));
    });
    call.on('error', () => {});
    // Reopened when the server ends it (as the sidecars are), so the floor keeps its N streams.
    call.on('status', () => {
      if (this.call !== call || closingAll) return;
      setTimeout(() => {
        if (!closingAll) this.connect(client);
      }, 1000).unref();
    });
    call.write(sotwRequestBytes({ typeUrl: RDS }));
  }
}

function newClient(address: string): Client {
  return new Client(address, credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.max_receive_message_length': -1,
    'grpc-node.flow_control_window': 16 * 1024 * 1024,
  });
}

const proxies: Sidecar[] = [];
const clients: Client[] = [];
const floor: FloorStream[] = [];
let floorExpect = 1;
let closingAll = false;
let streamsPerConnection = 20;
const send = (m: unknown) => process.send?.(m);

function handle(m: ClientCommand): unknown {
  switch (m.cmd) {
    case 'init':
      streamsPerConnection = m.streamsPerConnection;
      for (const spec of m.proxies) proxies.push(new Sidecar(spec));
      // A few sidecars keep their last raw responses (the floor writes the same bytes).
      for (const p of proxies.slice(0, 16)) p.last = new Map();
      return { ok: true };
    case 'connect': {
      const byAddress = new Map<string, Sidecar[]>();
      for (const p of proxies) byAddress.set(p.spec.address, [...(byAddress.get(p.spec.address) ?? []), p]);
      for (const [address, list] of byAddress) {
        let client: Client | undefined;
        list.forEach((p, i) => {
          if (!client || i % streamsPerConnection === 0) {
            client = newClient(address);
            clients.push(client);
          }
          p.connect(client);
        });
      }
      return { ok: true };
    }
    case 'status': {
      let synced = 0;
      let lastSynced = 0;
      let ended = 0;
      let reconnects = 0;
      let firstEnded: string | undefined;
      const acked = { cds: 0, eds: 0, lds: 0, rds: 0 };
      for (const p of proxies) {
        if (p.syncedAt) {
          synced++;
          lastSynced = Math.max(lastSynced, p.syncedAt);
        }
        reconnects += p.reconnects;
        if (p.ended) {
          ended++;
          firstEnded ??= `${p.spec.node.id}: ${p.ended}`;
        }
        if (p.types.get(CDS)!.acks) acked.cds++;
        if (p.types.get(EDS)!.acks) acked.eds++;
        if (p.types.get(LDS)!.acks) acked.lds++;
        if (p.types.get(RDS)!.acks) acked.rds++;
      }
      return {
        total: proxies.length,
        synced,
        lastSynced,
        ended,
        reconnects,
        firstEnded,
        acked,
        endReasons: Object.fromEntries(endReasons),
      };
    }
    case 'mark':
      for (const p of proxies) p.mark();
      return { at: epochNow() };
    case 'progress': {
      // Proxies that received a new version of any of `types` since the mark, and the latest arrival.
      let changed = 0;
      let last = 0;
      for (const p of proxies) {
        let c = false;
        for (const t of m.types) {
          const s = p.since.get(t);
          if (s) {
            last = Math.max(last, s.last);
            if (s.changed) c = true;
          }
        }
        if (c) changed++;
      }
      return { changed, last };
    }
    case 'since': {
      // Per proxy that got a new version of `types`: its last arrival of them; bytes of every type.
      const lasts: number[] = [];
      const notPushed: number[] = [];
      let bytes = 0;
      let responses = 0;
      let anyResponse = 0;
      for (const p of proxies) {
        let last = 0;
        let got = false;
        for (const [t, s] of p.since) {
          bytes += s.bytes;
          responses += s.responses;
          got = true;
          if (m.types.includes(t) && s.changed) last = Math.max(last, s.last);
        }
        if (got) anyResponse++;
        if (last) lasts.push(last);
        else notPushed.push(p.spec.index);
      }
      return { lasts, bytes, responses, anyResponse, notPushed };
    }
    case 'capture': {
      // From the first keeping sidecar that got a new version of one of `types` (when
      // `changedOnly`): its last response of each type it got a new version of.
      const from = m.changedOnly
        ? proxies.find((p) => p.last && m.types.some((t) => p.since.get(t)?.changed))
        : proxies[0];
      const out: string[] = [];
      for (const t of m.types) {
        if (m.changedOnly && !from?.since.get(t)?.changed) continue;
        const b = from?.last?.get(t);
        if (b) out.push(b.toString('base64'));
      }
      return { buffers: out };
    }
    case 'floor-connect': {
      let client: Client | undefined;
      for (let i = 0; i < m.count; i++) {
        if (!client || i % streamsPerConnection === 0) {
          client = newClient(m.address);
          clients.push(client);
        }
        const f = new FloorStream();
        f.connect(client);
        floor.push(f);
      }
      return { ok: true };
    }
    case 'floor-mark':
      floorExpect = m.expect;
      for (const f of floor) f.count = 0;
      return { ok: true };
    case 'floor-status': {
      let done = 0;
      let last = 0;
      const lasts: number[] = [];
      for (const f of floor)
        if (f.count >= floorExpect) {
          done++;
          last = Math.max(last, f.last);
          if (m.detail) lasts.push(f.last);
        }
      return { done, total: floor.length, last, lasts };
    }
    case 'churn-track':
      for (const p of proxies) {
        p.deliveries = m.on ? new Map() : undefined;
        p.maxWeight = m.on ? new Map() : undefined;
      }
      return { ok: true };
    case 'churn-report': {
      // For each change (host, weight seq, write returned at) and each proxy: the first arrival of
      // that host's load assignment with a weight >= seq. Latencies bucketed by ms.
      const buckets: Record<number, number> = {};
      let delivered = 0;
      let missing = 0;
      for (const p of proxies) {
        const d = p.deliveries;
        if (!d) continue;
        for (const [host, seq, at] of m.changes) {
          const list = d.get(host);
          let found = -1;
          if (list) {
            for (let i = 0; i < list.length; i += 2)
              if (list[i]! >= seq) {
                found = list[i + 1]!;
                break;
              }
          }
          if (found < 0) {
            missing++;
            continue;
          }
          delivered++;
          const ms = Math.max(0, Math.round(found - at));
          buckets[ms] = (buckets[ms] ?? 0) + 1;
        }
      }
      return { buckets, delivered, missing };
    }
    case 'close':
      closingAll = true;
      for (const f of floor) f.call?.cancel();
      for (const p of proxies) p.close();
      for (const c of clients) c.close();
      return { ok: true };
  }
}

process.on('message', (m: ClientCommand & { id: number }) => {
  let reply: unknown;
  try {
    reply = handle(m);
  } catch (error) {
    reply = { error: (error as Error).stack ?? String(error) };
  }
  send({ id: m.id, reply });
  if (m.cmd === 'close') setTimeout(() => process.exit(0), 100);
});
process.on('disconnect', () => process.exit(0));
