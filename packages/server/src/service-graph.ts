/**
 * The service graph: pure math, no I/O.
 *
 * Every access-log entry the replica accepts becomes one observation on an *edge*: (source node,
 * destination node, reporting cluster, protocol, reporter). Each edge keeps a sliding window of
 * per-second buckets (a ring of `windowSeconds` slots): requests (HTTP/gRPC requests or TCP
 * connections), errors (5xx, or a non-OK gRPC status), how many were seen with mTLS and how many
 * without (only the destination side can tell, from the peer certificate), and a small latency
 * histogram (log-spaced bounds, {@link LATENCY_BOUNDS_MS}).
 *
 * A replica summarises its edges over the window ({@link EdgeWindow}: the buckets summed), publishes
 * the summaries, and any replica merges its cluster's summaries ({@link mergeWindows}) and builds the
 * JSON of `/debug/graph` ({@link buildGraph}). When both sides of a call report it, the edge is
 * counted once: from the source's reports if there are any in the window (Kiali's choice), else
 * from the destination's; whether it was mTLS comes from the destination's reports.
 */

/** Kinds of graph node. */
export type NodeKind = 'service' | 'workload' | 'unknown';
/** Protocols of an edge. */
export type EdgeProtocol = 'http' | 'grpc' | 'tcp';
/** Which proxy reported an observation (Istio's `reporter` label). */
export type Reporter = 'source' | 'destination';

/** A node of the graph. */
export interface GraphNode {
  readonly id: string;
  readonly kind: NodeKind;
  readonly name: string;
  readonly namespace: string;
  readonly cluster: string;
}

/** An edge of `/debug/graph`. */
export interface GraphEdge {
  readonly source: string;
  readonly destination: string;
  readonly cluster: string;
  readonly protocol: EdgeProtocol;
  readonly requestsPerSecond: number;
  /** 0..1: 5xx responses or non-OK gRPC statuses over requests. */
  readonly errorRate: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly mtls: boolean;
  readonly requests: number;
}

/** The answer of `GET /debug/graph` (the dashboard reads exactly this shape). */
export interface ServiceGraph {
  readonly generatedAt: string;
  readonly windowSeconds: number;
  readonly nodes: readonly GraphNode[];
  readonly edges: readonly GraphEdge[];
}

/** What identifies an edge. */
export interface EdgeKey {
  readonly source: GraphNode;
  readonly destination: GraphNode;
  /** The cluster of the proxy that reported. */
  readonly cluster: string;
  readonly protocol: EdgeProtocol;
  readonly reporter: Reporter;
}

/** One observation: a request (HTTP, gRPC) or a closed connection (TCP). */
export interface Observation {
  /** Wall-clock time of the observation, ms since the epoch. */
  readonly atMs: number;
  readonly error: boolean;
  /** true: seen with mTLS; false: seen without; undefined: the reporter cannot tell. */
  readonly mtls: boolean | undefined;
  readonly durationMs: number;
}

/**
 * Upper bounds (ms) of the latency histogram of a bucket: 0.5 ms growing by 1.5x up to about 2.4
 * minutes, then +Inf. Percentiles are interpolated inside a bound, so they are within 50% of the
 * truth (the dashboard shows magnitudes).
 */
export const LATENCY_BOUNDS_MS: readonly number[] = Array.from({ length: 32 }, (_, i) => 0.5 * 1.5 ** i);
const HIST = LATENCY_BOUNDS_MS.length + 1;
const LN_GROWTH = Math.log(1.5);
/** Per slot: requests, errors, secured, insecure. */
const FIXED = 4;

/** The bucket index of a latency. */
export function latencyBucket(ms: number): number {
  if (!(ms > 0.5)) return 0;
  // 0.5 * 1.5^i >= ms  <=>  i >= log(ms / 0.5) / log(1.5)
  const i = Math.ceil(Math.log(ms / 0.5) / LN_GROWTH - 1e-9);
  return Math.min(i, HIST - 1);
}

/** The window of one edge, summed over its seconds (what replicas publish and merge). */
export interface EdgeWindow {
  readonly key: EdgeKey;
  readonly requests: number;
  readonly errors: number;
  readonly secured: number;
  readonly insecure: number;
  /** Latency histogram over {@link LATENCY_BOUNDS_MS} (+Inf last), sparse: [index, count] pairs. */
  readonly latency: readonly (readonly [number, number])[];
}

/** The string that identifies an edge (map key). */
export function edgeId(k: EdgeKey): string {
  return `${k.source.id}\u0000${k.destination.id}\u0000${k.cluster}\u0000${k.protocol}\u0000${k.reporter}`;
}

/** One edge's ring of per-second buckets. */
export class EdgeSeries {
  /** The second (epoch seconds) each slot holds; -1 when empty. */
  readonly #seconds: Float64Array;
  /** Per slot: requests, errors, secured, insecure. */
  readonly #counts: Uint32Array;
  /**
   * Per slot: the latency histogram, 16-bit counts that saturate at 65,535 (one edge, one second,
   * one bucket): percentiles stay right up to that rate; the counts above are exact.
   */
  readonly #hist: Uint16Array;
  lastSecond = -1;

  constructor(
    readonly key: EdgeKey,
    readonly windowSeconds: number,
  ) {
    this.#seconds = new Float64Array(windowSeconds).fill(-1);
    this.#counts = new Uint32Array(windowSeconds * FIXED);
    this.#hist = new Uint16Array(windowSeconds * HIST);
  }

  /** Adds one observation. */
  add(o: Observation): void {
    const second = Math.floor(o.atMs / 1000);
    const slot = second % this.windowSeconds;
    const c = this.#counts;
    const base = slot * FIXED;
    const hbase = slot * HIST;
    if (this.#seconds[slot] !== second) {
      // An observation older than what the slot holds (out of the window) is dropped.
      if ((this.#seconds[slot] as number) > second) return;
      this.#seconds[slot] = second;
      c.fill(0, base, base + FIXED);
      this.#hist.fill(0, hbase, hbase + HIST);
    }
    c[base] = (c[base] as number) + 1;
    if (o.error) c[base + 1] = (c[base + 1] as number) + 1;
    if (o.mtls === true) c[base + 2] = (c[base + 2] as number) + 1;
    else if (o.mtls === false) c[base + 3] = (c[base + 3] as number) + 1;
    const h = hbase + latencyBucket(o.durationMs);
    const v = this.#hist[h] as number;
    if (v < 65535) this.#hist[h] = v + 1;
    if (second > this.lastSecond) this.lastSecond = second;
  }

  /** The buckets of the last `windowSeconds` seconds before `nowMs` (inclusive), summed. */
  window(nowMs: number): EdgeWindow | undefined {
    const now = Math.floor(nowMs / 1000);
    const from = now - this.windowSeconds + 1;
    let requests = 0;
    let errors = 0;
    let secured = 0;
    let insecure = 0;
    const hist = new Array<number>(HIST).fill(0);
    const c = this.#counts;
    for (let slot = 0; slot < this.windowSeconds; slot++) {
      const s = this.#seconds[slot] as number;
      if (s < from || s > now) continue;
      const base = slot * FIXED;
      requests += c[base] as number;
      errors += c[base + 1] as number;
      secured += c[base + 2] as number;
      insecure += c[base + 3] as number;
      const hbase = slot * HIST;
      for (let i = 0; i < HIST; i++) hist[i] = (hist[i] as number) + (this.#hist[hbase + i] as number);
    }
    if (requests === 0) return undefined;
    const latency: [number, number][] = [];
    hist.forEach((n, i) => {
      if (n > 0) latency.push([i, n]);
    });
    return { key: this.key, requests, errors, secured, insecure, latency };
  }
}

/** A replica's edges: observations in, window summaries out. Edges idle for a window are dropped. */
export class EdgeStore {
  readonly #edges = new Map<string, EdgeSeries>();
  /** Observations of new edges not kept because {@link maxEdges} edges are held. */
  dropped = 0;

  constructor(
    readonly windowSeconds = 60,
    readonly maxEdges = 50_000,
  ) {}

  /** Adds an observation to the edge `key` (identified by `id`, from {@link edgeId}). */
  observe(id: string, key: EdgeKey, o: Observation): void {
    let e = this.#edges.get(id);
    if (!e) {
      if (this.#edges.size >= this.maxEdges) {
        this.dropped++;
        return;
      }
      e = new EdgeSeries(key, this.windowSeconds);
      this.#edges.set(id, e);
    }
    e.add(o);
  }

  get size(): number {
    return this.#edges.size;
  }

  /** Every edge with observations in the window ending at `nowMs`; forgets the others. */
  windows(nowMs: number): EdgeWindow[] {
    const out: EdgeWindow[] = [];
    const oldest = Math.floor(nowMs / 1000) - this.windowSeconds;
    for (const [id, e] of this.#edges) {
      if (e.lastSecond <= oldest) {
        this.#edges.delete(id);
        continue;
      }
      const w = e.window(nowMs);
      if (w) out.push(w);
    }
    return out;
  }
}

/** Sums the windows of the same edge (several replicas' summaries). */
export function mergeWindows(lists: readonly (readonly EdgeWindow[])[]): EdgeWindow[] {
  const byId = new Map<string, { w: EdgeWindow; hist: Map<number, number> }>();
  for (const list of lists)
    for (const w of list) {
      const id = edgeId(w.key);
      const m = byId.get(id);
      if (!m) {
        byId.set(id, { w: { ...w }, hist: new Map(w.latency.map(([i, c]) => [i, c])) });
        continue;
      }
      m.w = {
        key: m.w.key,
        requests: m.w.requests + w.requests,
        errors: m.w.errors + w.errors,
        secured: m.w.secured + w.secured,
        insecure: m.w.insecure + w.insecure,
        latency: [],
      };
      for (const [i, c] of w.latency) m.hist.set(i, (m.hist.get(i) ?? 0) + c);
    }
  return [...byId.values()].map(({ w, hist }) => ({
    ...w,
    latency: [...hist].sort((a, b) => a[0] - b[0]),
  }));
}

/** The latency at quantile `q` (0..1) of a sparse histogram, interpolated inside its bucket. */
export function quantileMs(latency: readonly (readonly [number, number])[], q: number): number {
  const total = latency.reduce((s, [, c]) => s + c, 0);
  if (total === 0) return 0;
  const rank = q * total;
  let seen = 0;
  for (const [i, c] of latency) {
    if (seen + c >= rank) {
      const lower = i === 0 ? 0 : (LATENCY_BOUNDS_MS[i - 1] as number);
      const upper = LATENCY_BOUNDS_MS[i] ?? lower * 1.5;
      const within = c === 0 ? 0 : Math.max(0, rank - seen) / c;
      return round(lower + (upper - lower) * within);
    }
    seen += c;
  }
  return round(LATENCY_BOUNDS_MS.at(-1) as number);
}

const round = (x: number, digits = 3) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/**
 * The graph of `/debug/graph` from merged windows: one edge per (source, destination, cluster,
 * protocol), from the source's reports when the window has any, else the destination's; `mtls`
 * when the destination saw every request of the window with mTLS (and saw some).
 */
export function buildGraph(
  windows: readonly EdgeWindow[],
  nowMs: number,
  windowSeconds: number,
): ServiceGraph {
  const nodes = new Map<string, GraphNode>();
  const pairs = new Map<string, { source?: EdgeWindow; destination?: EdgeWindow }>();
  for (const w of windows) {
    const k = w.key;
    const id = `${k.source.id}\u0000${k.destination.id}\u0000${k.cluster}\u0000${k.protocol}`;
    const p = pairs.get(id) ?? {};
    p[k.reporter] = w;
    pairs.set(id, p);
  }
  const edges: GraphEdge[] = [];
  for (const p of pairs.values()) {
    const counted = (p.source ?? p.destination) as EdgeWindow;
    const k = counted.key;
    nodes.set(k.source.id, k.source);
    nodes.set(k.destination.id, k.destination);
    const d = p.destination;
    edges.push({
      source: k.source.id,
      destination: k.destination.id,
      cluster: k.cluster,
      protocol: k.protocol,
      requestsPerSecond: round(counted.requests / windowSeconds),
      errorRate: round(counted.requests === 0 ? 0 : counted.errors / counted.requests, 6),
      p50Ms: quantileMs(counted.latency, 0.5),
      p90Ms: quantileMs(counted.latency, 0.9),
      p99Ms: quantileMs(counted.latency, 0.99),
      mtls: d !== undefined && d.secured > 0 && d.insecure === 0,
      requests: counted.requests,
    });
  }
  const byId = (a: { id?: string; source?: string; destination?: string }, b: typeof a) => {
    const x = a.id ?? `${a.source} ${a.destination}`;
    const y = b.id ?? `${b.source} ${b.destination}`;
    return x < y ? -1 : x > y ? 1 : 0;
  };
  return {
    generatedAt: new Date(nowMs).toISOString(),
    windowSeconds,
    nodes: [...nodes.values()].sort(byId),
    edges: edges.sort(
      (a, b) =>
        byId(a, b) ||
        (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0) ||
        (a.protocol < b.protocol ? -1 : 1),
    ),
  };
}

/** The node id of a service, a workload, or the unknown peer. */
export function nodeOf(kind: NodeKind, name: string, namespace: string, cluster: string): GraphNode {
  if (kind === 'unknown' || name === '' || name === 'unknown')
    return { id: 'unknown', kind: 'unknown', name: 'unknown', namespace: 'unknown', cluster: 'unknown' };
  return { id: `${kind}:${cluster}/${namespace}/${name}`, kind, name, namespace, cluster };
}
