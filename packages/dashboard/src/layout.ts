/**
 * A deterministic layout of the service graph for the dashboard's SVG: one column per namespace
 * (sorted, `unknown` sources last), nodes sorted by name within a column. The same graph always
 * gives the same picture, so a screenshot or a test can rely on positions.
 */

/** A node of `/debug/graph`. */
export interface GraphNode {
  readonly id: string;
  readonly kind: 'service' | 'workload' | 'unknown';
  readonly name: string;
  readonly namespace: string;
  readonly cluster: string;
}

/** An edge of `/debug/graph`. */
export interface GraphEdge {
  readonly source: string;
  readonly destination: string;
  readonly cluster?: string;
  readonly protocol?: string;
  readonly requestsPerSecond?: number;
  readonly errorRate?: number;
  readonly p50Ms?: number;
  readonly p90Ms?: number;
  readonly p99Ms?: number;
  readonly mtls?: boolean;
  readonly requests?: number;
}

/** What `/debug/graph` answers. */
export interface ServiceGraph {
  readonly generatedAt?: string;
  readonly windowSeconds?: number;
  readonly nodes: readonly GraphNode[];
  readonly edges: readonly GraphEdge[];
}

/** A node placed on the canvas. */
export interface PlacedNode extends GraphNode {
  readonly x: number;
  readonly y: number;
}

/** An edge with its end points and its label (`12.0 rps · 1.5% · p99 40 ms`). */
export interface PlacedEdge extends GraphEdge {
  readonly x1: number;
  readonly y1: number;
  readonly x2: number;
  readonly y2: number;
  readonly label: string;
}

export interface GraphLayout {
  readonly width: number;
  readonly height: number;
  readonly columns: readonly { readonly namespace: string; readonly x: number }[];
  readonly nodes: readonly PlacedNode[];
  readonly edges: readonly PlacedEdge[];
}

const COLUMN_WIDTH = 260;
const ROW_HEIGHT = 90;
const MARGIN = 70;

/** The label of an edge: request rate, error percentage and p99 latency, where known. */
export function edgeLabel(e: GraphEdge): string {
  const parts: string[] = [];
  if (e.requestsPerSecond !== undefined) parts.push(`${e.requestsPerSecond.toFixed(1)} rps`);
  if (e.errorRate !== undefined) parts.push(`${(e.errorRate * 100).toFixed(1)}% err`);
  if (e.p99Ms !== undefined) parts.push(`p99 ${Math.round(e.p99Ms)} ms`);
  return parts.join(' · ');
}

/** Places every node; edges whose ends are not among the nodes are dropped. */
export function layoutGraph(graph: ServiceGraph): GraphLayout {
  const byNs = new Map<string, GraphNode[]>();
  for (const n of graph.nodes) {
    const ns = n.kind === 'unknown' ? '~unknown' : n.namespace || '~unknown';
    const list = byNs.get(ns) ?? [];
    byNs.set(ns, list);
    list.push(n);
  }
  const namespaces = [...byNs.keys()].sort();
  const placed = new Map<string, PlacedNode>();
  const columns: { namespace: string; x: number }[] = [];
  let rows = 0;
  namespaces.forEach((ns, c) => {
    const x = MARGIN + c * COLUMN_WIDTH;
    columns.push({ namespace: ns === '~unknown' ? 'unknown' : ns, x });
    const list = byNs
      .get(ns)!
      .sort((a, b) => (a.name + a.cluster + a.id < b.name + b.cluster + b.id ? -1 : 1));
    rows = Math.max(rows, list.length);
    list.forEach((n, r) => {
      placed.set(n.id, { ...n, x, y: MARGIN + 30 + r * ROW_HEIGHT });
    });
  });
  const edges: PlacedEdge[] = [];
  for (const e of graph.edges) {
    const a = placed.get(e.source);
    const b = placed.get(e.destination);
    if (!a || !b) continue;
    edges.push({ ...e, x1: a.x, y1: a.y, x2: b.x, y2: b.y, label: edgeLabel(e) });
  }
  edges.sort((p, q) => (p.source + p.destination < q.source + q.destination ? -1 : 1));
  return {
    width: Math.max(400, MARGIN * 2 + Math.max(0, namespaces.length - 1) * COLUMN_WIDTH + 120),
    height: Math.max(200, MARGIN * 2 + 30 + Math.max(0, rows - 1) * ROW_HEIGHT),
    columns,
    nodes: [...placed.values()],
    edges,
  };
}
