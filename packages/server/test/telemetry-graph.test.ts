// Issue 17, item 4, without I/O: the service graph's math (service-graph.ts), Istio's metric names
// and labels, and access-log messages encoded with Envoy's protos decoded and derived by the ingest
// (no gRPC, no etcd: TelemetryIngest.ingestAccessLogs on encoded bytes).
import * as grpc from '@grpc/grpc-js';
import type { RegistrySnapshot } from '@meridian/translate';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ISTIO_HTTP_LABELS, ISTIO_TCP_LABELS } from '../src/istio-metrics.js';
import {
  buildGraph,
  type EdgeKey,
  EdgeStore,
  edgeId,
  LATENCY_BOUNDS_MS,
  latencyBucket,
  mergeWindows,
  nodeOf,
  quantileMs,
} from '../src/service-graph.js';
import { TelemetryIngest, TelemetryRefusedError } from '../src/telemetry-ingest.js';
import { encodeAccessLogs, httpEntry, sidecarNodeId, tcpEntry } from './access-log-client.js';

// Istio's standard metrics and their labels, as listed on istio.io "Istio Standard Metrics"
// (https://istio.io/latest/docs/reference/config/metrics/), the subset issue 17 asks for.
const ISTIO_LABELS_FROM_DOCS = [
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
];
const ISTIO_HTTP_METRICS = [
  ['istio_requests_total', 'counter'],
  ['istio_request_duration_milliseconds', 'histogram'],
  ['istio_request_bytes', 'histogram'],
  ['istio_response_bytes', 'histogram'],
];
const ISTIO_TCP_METRICS = [
  'istio_tcp_sent_bytes_total',
  'istio_tcp_received_bytes_total',
  'istio_tcp_connections_opened_total',
  'istio_tcp_connections_closed_total',
];

const key = (over: Partial<EdgeKey> = {}): EdgeKey => ({
  source: nodeOf('workload', 'frontend', 'shop', 'c1'),
  destination: nodeOf('service', 'payments', 'pay', 'c2'),
  cluster: 'c1',
  protocol: 'http',
  reporter: 'source',
  ...over,
});

describe('service graph math', () => {
  it('latency buckets and percentiles interpolate inside log-spaced bounds', () => {
    expect(latencyBucket(0.1)).toBe(0);
    expect(latencyBucket(0.5)).toBe(0);
    expect(latencyBucket(0.6)).toBe(1);
    expect(latencyBucket(1e9)).toBe(32);
    // 100 observations of 10 ms: every percentile inside 10 ms's bucket (8.54..12.81 ms).
    const b = latencyBucket(10);
    expect([LATENCY_BOUNDS_MS[b - 1], LATENCY_BOUNDS_MS[b]]).toEqual([0.5 * 1.5 ** 7, 0.5 * 1.5 ** 8]);
    const one = [[b, 100] as const];
    for (const q of [0.5, 0.9, 0.99]) {
      expect(quantileMs(one, q)).toBeGreaterThan(8.54);
      expect(quantileMs(one, q)).toBeLessThanOrEqual(12.82);
    }
    expect(quantileMs([], 0.5)).toBe(0);
  });

  it('a sliding window of per-second buckets: rates, error rate, percentiles; older seconds fall out', () => {
    const store = new EdgeStore(60);
    const k = key();
    const t0 = 1_700_000_000_000;
    for (let i = 0; i < 90; i++)
      store.observe(edgeId(k), k, {
        atMs: t0 + i * 1000,
        error: i % 10 === 0,
        mtls: undefined,
        durationMs: i < 45 ? 2 : 200,
      });
    const [w] = store.windows(t0 + 89_000);
    // Seconds 30..89: 60 requests, errors at 30, 40, ..., 80.
    expect(w).toMatchObject({ requests: 60, errors: 6 });
    const g = buildGraph([w!], t0 + 89_000, 60);
    expect(g.edges).toHaveLength(1);
    expect(g.edges[0]).toMatchObject({
      requestsPerSecond: 1,
      errorRate: 0.1,
      requests: 60,
      mtls: false,
      protocol: 'http',
    });
    // 15 of 60 at 2 ms, 45 at 200 ms: p50 and p90 in 200 ms's bucket, not 2 ms's.
    expect(g.edges[0]!.p50Ms).toBeGreaterThan(130);
    expect(g.edges[0]!.p99Ms).toBeLessThan(300);
    expect(g.nodes.map((n) => n.id)).toEqual(['service:c2/pay/payments', 'workload:c1/shop/frontend']);
    // After a full idle window the edge is gone.
    expect(store.windows(t0 + 89_000 + 61_000)).toEqual([]);
    expect(store.size).toBe(0);
  });

  it('edges beyond the cap are dropped and counted, the held ones kept', () => {
    const store = new EdgeStore(60, 2);
    const t = 1_700_000_000_000;
    for (const name of ['a', 'b', 'c']) {
      const k = key({ source: nodeOf('workload', name, 'ns', 'c1') });
      store.observe(edgeId(k), k, { atMs: t, error: false, mtls: undefined, durationMs: 1 });
    }
    expect(store.size).toBe(2);
    expect(store.dropped).toBe(1);
    expect(store.windows(t).map((w) => w.key.source.name)).toEqual(['a', 'b']);
  });

  it('replicas merge by summing; the source side is counted, mTLS comes from the destination side', () => {
    const t = 1_700_000_000_000;
    const a = new EdgeStore(60);
    const b = new EdgeStore(60);
    const src = key();
    const dst = key({ reporter: 'destination' });
    for (let i = 0; i < 30; i++)
      a.observe(edgeId(src), src, { atMs: t, error: false, mtls: undefined, durationMs: 4 });
    for (let i = 0; i < 10; i++)
      b.observe(edgeId(src), src, { atMs: t, error: true, mtls: undefined, durationMs: 4 });
    for (let i = 0; i < 40; i++)
      b.observe(edgeId(dst), dst, { atMs: t, error: false, mtls: true, durationMs: 3 });
    const merged = mergeWindows([a.windows(t), b.windows(t)]);
    expect(merged).toHaveLength(2);
    const g = buildGraph(merged, t, 60);
    expect(g.edges).toHaveLength(1);
    expect(g.edges[0]).toMatchObject({ requests: 40, errorRate: 0.25, mtls: true });
    // One request without mTLS seen by the destination: the edge is not mTLS.
    b.observe(edgeId(dst), dst, { atMs: t, error: false, mtls: false, durationMs: 3 });
    expect(buildGraph(mergeWindows([a.windows(t), b.windows(t)]), t, 60).edges[0]!.mtls).toBe(false);
  });
});

// ---- the ingest, on messages encoded with Envoy's protos

const FRONTEND = '10.1.0.5';
const PAYMENTS = '10.2.0.7';
const registry: RegistrySnapshot = {
  revision: 1,
  services: [
    {
      hostname: 'payments.pay.svc.cluster.local',
      namespace: 'pay',
      ports: [{ name: 'http', port: 8080, protocol: 'HTTP' }],
      labels: {},
      exportTo: ['*'],
      resolution: 'EDS',
    },
    {
      hostname: 'frontend.shop.svc.cluster.local',
      namespace: 'shop',
      ports: [{ name: 'http', port: 80, protocol: 'HTTP' }],
      labels: {},
      exportTo: ['*'],
      resolution: 'EDS',
    },
  ] as RegistrySnapshot['services'],
  endpoints: new Map([
    [
      'payments.pay.svc.cluster.local',
      [
        {
          address: PAYMENTS,
          ports: { http: 8080 },
          labels: { app: 'payments', version: 'v2' },
          locality: { region: '', zone: '', subZone: '' },
          network: '',
          clusterId: 'c2',
          health: 'HEALTHY' as const,
          serviceAccount: 'payments',
          weight: 1,
        },
      ],
    ],
    [
      'frontend.shop.svc.cluster.local',
      [
        {
          address: FRONTEND,
          ports: { http: 80 },
          labels: { app: 'frontend', version: 'v1' },
          locality: { region: '', zone: '', subZone: '' },
          network: '',
          clusterId: 'c1',
          health: 'HEALTHY' as const,
          serviceAccount: 'frontend',
          weight: 1,
        },
      ],
    ],
  ]),
};

function ingest(plaintext = true): TelemetryIngest {
  const i = new TelemetryIngest({
    clusterId: 'c1',
    replicaId: 'r1',
    trustDomain: 'cluster.local',
    plaintext,
    log: pino({ level: 'silent' }),
    maxMessageBytes: 64 * 1024,
    maxEntriesPerMessage: 100,
  });
  i.setRegistry(registry, new Map([[FRONTEND, 'frontend-7f9c']]));
  return i;
}

const OUT = 'outbound|8080||payments.pay.svc.cluster.local';
const outbound = (code: number) =>
  httpEntry({
    direction: 'outbound',
    downstream: `${FRONTEND}:41000`,
    upstream: `${PAYMENTS}:8080`,
    upstreamCluster: OUT,
    code,
  });

/** The sample lines of `name` whose labels include every `k="v"` of `match`. */
function samples(text: string, name: string, match: Record<string, string>): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`))
    .filter((l) => Object.entries(match).every(([k, v]) => l.includes(`${k}="${v}"`)));
}

describe('TelemetryIngest on Envoy-encoded access-log messages', () => {
  it('derives Istio labels from the registry and writes Istio metric names exactly', () => {
    expect([...ISTIO_HTTP_LABELS]).toEqual(ISTIO_LABELS_FROM_DOCS);
    expect([...ISTIO_TCP_LABELS]).toEqual(
      ISTIO_LABELS_FROM_DOCS.filter((l) => l !== 'response_code' && l !== 'grpc_response_status'),
    );
    const t = ingest();
    const s = t.openStream();
    t.ingestAccessLogs(
      s,
      encodeAccessLogs(
        { http: [outbound(200), outbound(200), outbound(503)] },
        sidecarNodeId(FRONTEND, 'frontend-7f9c', 'shop'),
      ),
    );
    t.ingestAccessLogs(
      s,
      encodeAccessLogs({
        tcp: [
          tcpEntry({
            direction: 'outbound',
            downstream: `${FRONTEND}:41001`,
            upstream: `${PAYMENTS}:8080`,
            upstreamCluster: OUT,
            sent: 700,
            received: 300,
          }),
        ],
      }),
    );
    const text = t.istio.serialize();
    for (const [name, type] of ISTIO_HTTP_METRICS) expect(text).toContain(`# TYPE ${name} ${type}\n`);
    for (const name of ISTIO_TCP_METRICS) expect(text).toContain(`# TYPE ${name} counter\n`);
    const ok = samples(text, 'istio_requests_total', { response_code: '200' });
    expect(ok).toHaveLength(1);
    const line = ok[0]!;
    // Every label of Istio's list, in that order.
    expect([...line.matchAll(/([a-z_]+)="/g)].map((m) => m[1])).toEqual(ISTIO_LABELS_FROM_DOCS);
    expect(line).toBe(
      'istio_requests_total{reporter="source",source_workload="frontend-7f9c",source_workload_namespace="shop",source_principal="unknown",source_app="frontend",source_version="v1",source_cluster="c1",destination_workload="payments",destination_workload_namespace="pay",destination_principal="unknown",destination_app="payments",destination_version="v2",destination_service="payments.pay.svc.cluster.local",destination_service_name="payments",destination_service_namespace="pay",destination_cluster="c2",request_protocol="http",response_code="200",grpc_response_status="",response_flags="-",connection_security_policy="unknown"} 2',
    );
    expect(samples(text, 'istio_requests_total', { response_code: '503' })[0]).toMatch(/ 1$/);
    expect(samples(text, 'istio_tcp_sent_bytes_total', { request_protocol: 'tcp' })[0]).toMatch(/ 700$/);
    expect(samples(text, 'istio_tcp_received_bytes_total', { request_protocol: 'tcp' })[0]).toMatch(/ 300$/);
    expect(samples(text, 'istio_tcp_connections_closed_total', {})[0]).toMatch(/ 1$/);
    // Duration histogram: 5 ms requests fall in le="5".
    expect(
      samples(text, 'istio_request_duration_milliseconds_bucket', { response_code: '200', le: '5' })[0],
    ).toMatch(/ 2$/);
    const g = t.graph();
    expect(g.edges.find((e) => e.protocol === 'http')).toMatchObject({
      source: 'workload:c1/shop/frontend-7f9c',
      destination: 'service:c2/pay/payments',
      requests: 3,
      errorRate: 0.333333,
      cluster: 'c1',
    });
    expect(g.edges.find((e) => e.protocol === 'tcp')).toMatchObject({ requests: 1 });
  });

  it('gRPC status and mTLS: believed from an mTLS reporter, never from an unauthenticated one', () => {
    const inbound = httpEntry({
      direction: 'inbound',
      downstream: `${FRONTEND}:41000`,
      downstreamLocal: `${PAYMENTS}:8080`,
      upstream: '127.0.0.1:8080',
      upstreamCluster: 'inbound|8080||',
      grpcStatus: '14',
      peerUri: 'spiffe://cluster.local/ns/shop/sa/frontend',
    });
    const node = sidecarNodeId(PAYMENTS, 'payments-0', 'pay');
    const plain = ingest();
    plain.ingestAccessLogs(plain.openStream(), encodeAccessLogs({ http: [inbound] }, node));
    const p = samples(plain.istio.serialize(), 'istio_requests_total', {})[0]!;
    expect(p).toContain('connection_security_policy="unknown"');
    expect(p).toContain('source_principal="unknown"');
    expect(p).toContain('destination_principal="unknown"');
    expect(plain.graph().edges[0]).toMatchObject({ mtls: false, protocol: 'grpc', errorRate: 1 });

    const secure = ingest(false);
    secure.ingestAccessLogs(
      secure.openStream({ namespace: 'pay', serviceAccount: 'payments' }),
      encodeAccessLogs({ http: [inbound] }, node),
    );
    const m = samples(secure.istio.serialize(), 'istio_requests_total', {})[0]!;
    expect(m).toContain('reporter="destination"');
    expect(m).toContain('source_principal="spiffe://cluster.local/ns/shop/sa/frontend"');
    expect(m).toContain('destination_principal="spiffe://cluster.local/ns/pay/sa/payments"');
    expect(m).toContain('connection_security_policy="mutual_tls"');
    expect(m).toContain('request_protocol="grpc"');
    expect(m).toContain('grpc_response_status="14"');
    expect(m).toContain('destination_service="payments.pay.svc.cluster.local"');
    expect(secure.graph().edges[0]).toMatchObject({
      mtls: true,
      protocol: 'grpc',
      errorRate: 1,
      source: 'workload:c1/shop/frontend-7f9c',
    });
  });

  it('refuses bad, oversized and mis-identified messages, recording nothing of them', () => {
    const t = ingest();
    const refusal = (f: () => void) => {
      try {
        f();
      } catch (error) {
        expect(error).toBeInstanceOf(TelemetryRefusedError);
        return error as TelemetryRefusedError;
      }
      throw new Error('not refused');
    };
    const node = sidecarNodeId(FRONTEND, 'frontend-7f9c', 'shop');
    const garbage = refusal(() =>
      t.ingestAccessLogs(t.openStream(), Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2])),
    );
    expect(garbage).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, reason: 'undecodable' });
    expect(garbage.message).toMatch(/^StreamAccessLogsMessage does not decode: /);
    const noId = refusal(() =>
      t.ingestAccessLogs(t.openStream(), encodeAccessLogs({ http: [outbound(200)] })),
    );
    expect(noId).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, reason: 'no_identifier' });
    expect(noId.message).toBe('identifier.node.id: the first message of a stream must identify the proxy');
    const big = encodeAccessLogs(
      { http: Array.from({ length: 60 }, () => ({ ...outbound(200), request: { path: 'x'.repeat(2000) } })) },
      node,
    );
    expect(refusal(() => t.ingestAccessLogs(t.openStream(), big))).toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
      reason: 'oversized',
    });
    const many = encodeAccessLogs({ http: Array.from({ length: 101 }, () => outbound(200)) }, node);
    expect(refusal(() => t.ingestAccessLogs(t.openStream(), many)).message).toBe(
      'log_entries: 101 entries exceed the limit of 100 per message',
    );
    // An mTLS reporter whose node address is another identity's workload.
    const secure = ingest(false);
    const impostor = refusal(() =>
      secure.ingestAccessLogs(
        secure.openStream({ namespace: 'shop', serviceAccount: 'frontend' }),
        encodeAccessLogs({ http: [outbound(200)] }, sidecarNodeId(PAYMENTS, 'x', 'pay')),
      ),
    );
    expect(impostor).toMatchObject({ code: grpc.status.PERMISSION_DENIED, reason: 'identity' });
    expect(impostor.message).toContain(
      '10.2.0.7 is the address of workload pay/payments (service account payments)',
    );
    expect(t.istio.seriesCount + secure.istio.seriesCount).toBe(0);
    expect(t.graph().edges).toEqual([]);
  });
});
