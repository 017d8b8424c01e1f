/**
 * Istio's standard metrics (istio.io, "Istio Standard Metrics", docs/reference/config/metrics),
 * derived by the replica from the proxies' access-log entries (access-log.ts) instead of by a stats
 * plugin in each proxy, and written in Prometheus text on the replica's `/metrics`, under Istio's
 * names and labels so that Istio's service dashboards and Kiali read them.
 *
 * - HTTP and gRPC: `istio_requests_total` (counter), `istio_request_duration_milliseconds`,
 *   `istio_request_bytes`, `istio_response_bytes` (histograms).
 * - TCP: `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`,
 *   `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total` (counters).
 *
 * Series are kept in plain maps keyed by their label values (one string per series, built once),
 * not in OpenTelemetry instruments: an instrument hashes its attribute object on every call, which
 * costs more than the rest of ingesting an entry. The number of series is bounded
 * ({@link IstioMetrics.maxSeries}); observations of series beyond it are counted as dropped.
 */

/** The labels of Istio's HTTP/gRPC metrics, in the order they are written. */
export const ISTIO_HTTP_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'destination_cluster',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

/** The labels of Istio's TCP metrics: the HTTP ones without the response code and gRPC status. */
export const ISTIO_TCP_LABELS = ISTIO_HTTP_LABELS.filter(
  (l) => l !== 'response_code' && l !== 'grpc_response_status',
);

/** One value per label of {@link ISTIO_HTTP_LABELS}, in that order. */
export type IstioLabelValues = readonly string[];

/**
 * Bucket bounds of `istio_request_duration_milliseconds` (Istio's proxy stats defaults, in ms).
 */
export const DURATION_BUCKETS_MS: readonly number[] = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
];
/** Bucket bounds of `istio_request_bytes` and `istio_response_bytes`: powers of ten, 1 B to 100 MB. */
export const BYTES_BUCKETS: readonly number[] = [
  1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
];

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++)
      if (v <= (b[i] as number)) {
        this.counts[i] = (this.counts[i] as number) + 1;
        return;
      }
  }
  write(name: string, labels: string, out: string[]): void {
    let cumulative = 0;
    const open = labels.length > 2 ? `${labels.slice(0, -1)},` : '{';
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i] as number;
      out.push(`${name}_bucket${open}le="${this.bounds[i]}"} ${cumulative}\n`);
    }
    out.push(`${name}_bucket${open}le="+Inf"} ${this.count}\n`);
    out.push(`${name}_sum${labels} ${this.sum}\n`, `${name}_count${labels} ${this.count}\n`);
  }
}

interface HttpSeries {
  readonly labels: string;
  requests: number;
  readonly duration: Histogram;
  readonly requestBytes: Histogram;
  readonly responseBytes: Histogram;
}

interface TcpSeries {
  readonly labels: string;
  sent: number;
  received: number;
  opened: number;
  closed: number;
}

function labelText(names: readonly string[], values: IstioLabelValues): string {
  return `{${names.map((n, i) => `${n}="${escapeLabel(values[i] ?? '')}"`).join(',')}}`;
}

/** Istio's standard metrics of this replica's proxies. */
export class IstioMetrics {
  /**
   * Series by the key of their first labels, then the key of the rest: an entry's first labels
   * (who talks to whom) are the same string object for every entry of a peer (access-log.ts caches
   * them), so a lookup hashes only the short tail.
   */
  readonly #http = new Map<string, Map<string, HttpSeries>>();
  readonly #tcp = new Map<string, Map<string, TcpSeries>>();
  #count = 0;
  /** Observations not recorded because the series limit was reached. */
  dropped = 0;

  constructor(readonly maxSeries = 20_000) {}

  get seriesCount(): number {
    return this.#count;
  }

  /**
   * One HTTP or gRPC request. Its labels, in {@link ISTIO_HTTP_LABELS} order, are `head` then
   * `tail`; `headKey` and `tailKey` identify them (by default, their values joined).
   */
  recordRequest(
    head: IstioLabelValues,
    tail: IstioLabelValues,
    durationMs: number,
    requestBytes: number,
    responseBytes: number,
    headKey = head.join('\u0000'),
    tailKey = tail.join('\u0000'),
  ): void {
    let byTail = this.#http.get(headKey);
    if (!byTail) {
      byTail = new Map();
      this.#http.set(headKey, byTail);
    }
    let s = byTail.get(tailKey);
    if (!s) {
      if (this.#count >= this.maxSeries) {
        this.dropped++;
        return;
      }
      s = {
        labels: labelText(ISTIO_HTTP_LABELS, [...head, ...tail]),
        requests: 0,
        duration: new Histogram(DURATION_BUCKETS_MS),
        requestBytes: new Histogram(BYTES_BUCKETS),
        responseBytes: new Histogram(BYTES_BUCKETS),
      };
      byTail.set(tailKey, s);
      this.#count++;
    }
    s.requests++;
    s.duration.observe(durationMs);
    s.requestBytes.observe(requestBytes);
    s.responseBytes.observe(responseBytes);
  }

  /** A TCP connection's bytes (and its opening and closing); labels as {@link recordRequest}'s, {@link ISTIO_TCP_LABELS} order. */
  recordConnection(
    head: IstioLabelValues,
    tail: IstioLabelValues,
    sent: number,
    received: number,
    opened: number,
    closed: number,
    headKey = head.join('\u0000'),
    tailKey = tail.join('\u0000'),
  ): void {
    let byTail = this.#tcp.get(headKey);
    if (!byTail) {
      byTail = new Map();
      this.#tcp.set(headKey, byTail);
    }
    let s = byTail.get(tailKey);
    if (!s) {
      if (this.#count >= this.maxSeries) {
        this.dropped++;
        return;
      }
      s = {
        labels: labelText(ISTIO_TCP_LABELS, [...head, ...tail]),
        sent: 0,
        received: 0,
        opened: 0,
        closed: 0,
      };
      byTail.set(tailKey, s);
      this.#count++;
    }
    s.sent += sent;
    s.received += received;
    s.opened += opened;
    s.closed += closed;
  }

  /** The Prometheus text (format 0.0.4) of every series; empty when there is none. */
  serialize(): string {
    const out: string[] = [];
    const head = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`);
    const http = [...this.#http.values()].flatMap((m) => [...m.values()]);
    const tcpSeries = [...this.#tcp.values()].flatMap((m) => [...m.values()]);
    if (http.length > 0) {
      head('istio_requests_total', 'counter', 'Requests handled by the mesh proxies (from access logs).');
      for (const s of http) out.push(`istio_requests_total${s.labels} ${s.requests}\n`);
      head('istio_request_duration_milliseconds', 'histogram', 'Request durations in milliseconds.');
      for (const s of http) s.duration.write('istio_request_duration_milliseconds', s.labels, out);
      head('istio_request_bytes', 'histogram', 'Request sizes (headers and body) in bytes.');
      for (const s of http) s.requestBytes.write('istio_request_bytes', s.labels, out);
      head('istio_response_bytes', 'histogram', 'Response sizes (headers and body) in bytes.');
      for (const s of http) s.responseBytes.write('istio_response_bytes', s.labels, out);
    }
    if (tcpSeries.length > 0) {
      const tcp = (name: string, help: string, value: (s: TcpSeries) => number) => {
        head(name, 'counter', help);
        for (const s of tcpSeries) out.push(`${name}${s.labels} ${value(s)}\n`);
      };
      tcp('istio_tcp_sent_bytes_total', 'Bytes sent to the downstream of TCP connections.', (s) => s.sent);
      tcp(
        'istio_tcp_received_bytes_total',
        'Bytes received from the downstream of TCP connections.',
        (s) => s.received,
      );
      tcp('istio_tcp_connections_opened_total', 'TCP connections opened.', (s) => s.opened);
      tcp('istio_tcp_connections_closed_total', 'TCP connections closed.', (s) => s.closed);
    }
    return out.join('');
  }
}
