// Issue 17, item 4, across real boundaries: three in-process replicas on one etcd (cluster c1: r1 and
// r2; cluster c2: r3), access-log entries encoded with Envoy's protos streamed over gRPC (loopback)
// by an access-log client, for calls from `frontend` (c1) to `payments` (c2). The caller's proxy
// reports its outbound calls half to r1 and half to r2; the callee's proxy reports the inbound side
// to r3. `/debug/graph` (authenticated admin port) on either c1 replica shows the c1 edge with the
// counts of both replicas merged through etcd; each replica's `/metrics` shows the istio_* series of
// what it received; c2's graph names the caller from Istio's peer metadata. Bad and oversized
// messages are refused with the right codes and the replicas keep serving.
import * as grpc from '@grpc/grpc-js';
import { lookupMessage, TypeUrl } from '@meridian/envoy';
import { type EtcdCluster, eventually, SimulatedProxy, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import type { ServiceGraph } from '../src/service-graph.js';
import {
  encodeAccessLogs,
  FRONTEND_IP,
  FRONTEND_YAML,
  httpEntry,
  PAYMENTS_IP,
  PAYMENTS_YAML,
  sidecarNodeId,
  streamAccessLogs,
} from './access-log-client.js';
import { adminFetch, xdsClient } from './harness.js';

const FRONTEND = FRONTEND_IP;
const PAYMENTS = PAYMENTS_IP;
const OUT = 'outbound|8080||payments.pay.svc.cluster.local';
let etcd: EtcdCluster | undefined;
const replicas: Replica[] = [];
const proxies: SimulatedProxy[] = [];

const yamlFor = (cluster: 'c1' | 'c2') =>
  cluster === 'c1' ? `${PAYMENTS_YAML}---\n${FRONTEND_YAML}` : PAYMENTS_YAML;

async function start(cluster: string, id: string): Promise<Replica> {
  const r = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'telemetry', '--cluster-id', cluster, '--replica-id', id],
        ...['--etcd-endpoints', etcd!.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
        ...['--monitoring-address', '127.0.0.1:0', '--snapshot-dir', 'off', '--telemetry-plaintext', 'on'],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  replicas.push(r);
  return r;
}

async function graph(r: Replica): Promise<ServiceGraph> {
  const res = await adminFetch(r, '/debug/graph');
  expect(res.status).toBe(200);
  return (await res.json()) as ServiceGraph;
}

async function metrics(r: Replica): Promise<string> {
  return (await fetch(`http://${r.monitoringAddress}/metrics`)).text();
}

const istioLine = (text: string, match: Record<string, string>) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('istio_requests_total{'))
    .find((l) => Object.entries(match).every(([k, v]) => l.includes(`${k}="${v}"`)));

/** Istio's peer metadata of the caller, as filter state (a google.protobuf.Struct in an Any). */
function peerFilterState(): Record<string, unknown> {
  const struct = lookupMessage('google.protobuf.Struct')!;
  const value = struct
    .encode(
      struct.fromObject({
        fields: {
          WORKLOAD_NAME: { stringValue: 'frontend-v1' },
          NAMESPACE: { stringValue: 'shop' },
          CLUSTER_ID: { stringValue: 'c1' },
          LABELS: {
            structValue: { fields: { app: { stringValue: 'frontend' }, version: { stringValue: 'v1' } } },
          },
        },
      }),
    )
    .finish();
  return { downstream_peer: { type_url: 'type.googleapis.com/google.protobuf.Struct', value } };
}

beforeAll(async () => {
  etcd = await startEtcd();
  const [r1, r2, r3] = [await start('c1', 'r1'), await start('c1', 'r2'), await start('c2', 'r3')];
  for (const [r, cluster] of [
    [r1!, 'c1'],
    [r3!, 'c2'],
  ] as const) {
    const res = await adminFetch(r, '/apis/v1/apply', { method: 'POST', body: yamlFor(cluster) });
    expect(res.status, await res.clone().text()).toBe(200);
  }
  // Every replica has the workloads in its registry before entries arrive.
  await eventually(
    'the registries',
    () => replicas.every((r) => (r.snapshot?.registry.services.length ?? 0) >= 1),
    30_000,
    50,
  );
  await eventually(
    'c1 registries',
    () => [r1!, r2!].every((r) => r.snapshot?.registry.services.length === 2),
    30_000,
    50,
  );
}, 120_000);

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  await Promise.all(replicas.map((r) => r.stop().catch(() => undefined)));
  await etcd?.stop();
}, 60_000);

describe('telemetry through replicas', () => {
  it('outbound calls reported to two replicas of c1 and inbound ones to c2: merged graph and istio_* series', async () => {
    const [r1, r2, r3] = replicas as [Replica, Replica, Replica];
    const node = sidecarNodeId(FRONTEND, 'frontend-v1', 'shop');
    const call = (code: number) =>
      httpEntry({
        direction: 'outbound',
        downstream: `${FRONTEND}:41000`,
        upstream: `${PAYMENTS}:8080`,
        upstreamCluster: OUT,
        code,
        durationMs: 12,
      });
    // r1: 30 OK and 2 failures (two messages on one stream); r2: 18 OK and 10 failures.
    const s1 = await streamAccessLogs(r1.xdsAddress, [
      encodeAccessLogs({ http: Array.from({ length: 20 }, () => call(200)) }, node),
      encodeAccessLogs({ http: [...Array.from({ length: 10 }, () => call(200)), call(503), call(500)] }),
    ]);
    expect(s1).toEqual({ code: grpc.status.OK, details: '' });
    const s2 = await streamAccessLogs(r2.xdsAddress, [
      encodeAccessLogs(
        {
          http: [
            ...Array.from({ length: 18 }, () => call(200)),
            ...Array.from({ length: 10 }, () => call(503)),
          ],
        },
        node,
      ),
    ]);
    expect(s2.code).toBe(grpc.status.OK);
    // The callee's proxy in c2 reports the same 60 calls inbound; the caller is known by peer metadata.
    const inbound = (code: number) => ({
      ...httpEntry({
        direction: 'inbound',
        downstream: `${FRONTEND}:41000`,
        downstreamLocal: `${PAYMENTS}:8080`,
        upstream: '127.0.0.1:8080',
        upstreamCluster: 'inbound|8080||',
        code,
      }),
    });
    const inboundEntries = [
      ...Array.from({ length: 48 }, () => inbound(200)),
      ...Array.from({ length: 12 }, () => inbound(503)),
    ];
    for (const e of inboundEntries)
      (e.common_properties as Record<string, unknown>).filter_state_objects = peerFilterState();
    const s3 = await streamAccessLogs(r3.xdsAddress, [
      encodeAccessLogs({ http: inboundEntries }, sidecarNodeId(PAYMENTS, 'payments-v2', 'pay')),
    ]);
    expect(s3.code).toBe(grpc.status.OK);

    // Each replica's /metrics: what it received, under Istio's names and labels.
    const m1 = await metrics(r1);
    const m2 = await metrics(r2);
    const base = {
      reporter: 'source',
      source_workload: 'frontend-v1',
      source_workload_namespace: 'shop',
      destination_workload: 'payments-v2',
      destination_service: 'payments.pay.svc.cluster.local',
      destination_service_name: 'payments',
      source_app: 'frontend',
      destination_version: 'v2',
    };
    expect(istioLine(m1, { ...base, response_code: '200' })).toMatch(/ 30$/);
    expect(istioLine(m1, { ...base, response_code: '503' })).toMatch(/ 1$/);
    expect(istioLine(m1, { ...base, response_code: '500' })).toMatch(/ 1$/);
    expect(istioLine(m2, { ...base, response_code: '200' })).toMatch(/ 18$/);
    expect(istioLine(m2, { ...base, response_code: '503' })).toMatch(/ 10$/);
    const m3 = await metrics(r3);
    expect(
      istioLine(m3, {
        reporter: 'destination',
        source_workload: 'frontend-v1',
        source_cluster: 'c1',
        destination_workload: 'payments-v2',
        destination_cluster: 'c2',
        response_code: '503',
      }),
    ).toMatch(/ 12$/);
    expect(m1).toContain('# TYPE istio_request_duration_milliseconds histogram');

    // Either c1 replica: the edge with both replicas' counts (merged through etcd).
    const edgeFrom = (g: ServiceGraph) =>
      g.edges.find(
        (e) => e.source === 'workload:c1/shop/frontend-v1' && e.destination === 'service:c1/pay/payments',
      );
    for (const r of [r1, r2]) {
      await eventually(
        `${r.options.replicaId}'s merged graph`,
        async () => edgeFrom(await graph(r))?.requests === 60,
        20_000,
        200,
      );
      const g = await graph(r);
      expect(g.windowSeconds).toBe(60);
      expect(Number.isNaN(Date.parse(g.generatedAt))).toBe(false);
      expect(edgeFrom(g)).toMatchObject({
        cluster: 'c1',
        protocol: 'http',
        requests: 60,
        requestsPerSecond: 1,
        errorRate: 0.2,
        mtls: false,
      });
      expect(edgeFrom(g)!.p50Ms).toBeGreaterThan(8);
      expect(edgeFrom(g)!.p50Ms).toBeLessThan(20);
      expect(g.nodes).toEqual(
        expect.arrayContaining([
          {
            id: 'workload:c1/shop/frontend-v1',
            kind: 'workload',
            name: 'frontend-v1',
            namespace: 'shop',
            cluster: 'c1',
          },
          {
            id: 'service:c1/pay/payments',
            kind: 'service',
            name: 'payments',
            namespace: 'pay',
            cluster: 'c1',
          },
        ]),
      );
    }
    // c2's graph: its own proxies' reports (the caller named by peer metadata), not c1's.
    const g3 = await graph(r3);
    expect(g3.edges).toHaveLength(1);
    expect(g3.edges[0]).toMatchObject({
      source: 'workload:c1/shop/frontend-v1',
      destination: 'service:c2/pay/payments',
      cluster: 'c2',
      requests: 60,
      errorRate: 0.2,
    });
    // The graph is an admin path: no credential, no graph.
    expect((await fetch(`http://${r1.adminAddress}/debug/graph`)).status).toBe(401);
  }, 90_000);

  it('bad, oversized and unidentified messages are refused; the replica keeps serving', async () => {
    const [r1] = replicas as [Replica];
    const node = sidecarNodeId(FRONTEND, 'frontend-v1', 'shop');
    const garbage = await streamAccessLogs(r1.xdsAddress, [
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2]),
    ]);
    expect(garbage.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(garbage.details).toMatch(/^StreamAccessLogsMessage does not decode: /);
    const noId = await streamAccessLogs(r1.xdsAddress, [
      encodeAccessLogs({
        http: [
          httpEntry({
            direction: 'outbound',
            downstream: `${FRONTEND}:1`,
            upstream: `${PAYMENTS}:8080`,
            upstreamCluster: OUT,
          }),
        ],
      }),
    ]);
    expect(noId).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'identifier.node.id: the first message of a stream must identify the proxy',
    });
    const huge = encodeAccessLogs(
      {
        http: [
          {
            ...httpEntry({
              direction: 'outbound',
              downstream: `${FRONTEND}:1`,
              upstream: `${PAYMENTS}:8080`,
              upstreamCluster: OUT,
            }),
            request: { path: 'x'.repeat(2 * 1024 * 1024) },
          },
        ],
      },
      node,
    );
    const big = await streamAccessLogs(r1.xdsAddress, [huge], undefined, {
      'grpc.max_send_message_length': 8 * 1024 * 1024,
    });
    expect(big.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const before = await metrics(r1);
    // Still serving: a good stream after the bad ones is counted.
    const ok = await streamAccessLogs(r1.xdsAddress, [
      encodeAccessLogs(
        {
          http: [
            httpEntry({
              direction: 'outbound',
              downstream: `${FRONTEND}:1`,
              upstream: `${PAYMENTS}:8080`,
              upstreamCluster: OUT,
              code: 404,
            }),
          ],
        },
        node,
      ),
    ]);
    expect(ok.code).toBe(grpc.status.OK);
    expect(istioLine(before, { response_code: '404' })).toBeUndefined();
    expect(istioLine(await metrics(r1), { response_code: '404', source_workload: 'frontend-v1' })).toMatch(
      / 1$/,
    );
    expect(await metrics(r1)).toMatch(/meridian_telemetry_refused\{reason="undecodable"\} 1/);
  }, 60_000);

  it("a Telemetry naming the meridian provider points a sidecar's listeners at the replicas", async () => {
    const [r1, r2] = replicas as [Replica, Replica];
    const node = sidecarNodeId(FRONTEND, 'frontend-v1', 'shop');
    const proxy = new SimulatedProxy({
      nodeId: node,
      metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1', LABELS: { app: 'frontend', version: 'v1' } },
      variant: 'sotw',
      subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.Listener }],
    });
    proxy.connect(xdsClient(r1.xdsAddress));
    proxies.push(proxy);
    const dump = async () => {
      const res = await adminFetch(r1, `/debug/config_dump?proxy=${encodeURIComponent(node)}`);
      return res.status === 200 ? await res.text() : '';
    };
    await eventually('the sidecar on r1', async () => (await dump()).includes('virtualOutbound'), 30_000, 50);
    expect(await dump()).not.toContain('envoy.access_loggers.http_grpc');
    const res = await adminFetch(r1, '/apis/v1/apply', {
      method: 'POST',
      body: `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: meridian}]}]
`,
    });
    expect(res.status, await res.clone().text()).toBe(200);
    await eventually(
      'access loggers in the sidecar listeners',
      async () => (await dump()).includes('envoy.access_loggers.http_grpc'),
      30_000,
      50,
    );
    const text = await dump();
    expect(text).toContain('envoy.access_loggers.tcp_grpc');
    expect(text).toContain('meridian-accesslog');
    // The cluster lists both replicas of c1 (their xDS addresses, from membership).
    for (const r of [r1, r2]) expect(text).toContain(`"port_value": ${Number(r.xdsAddress.split(':')[1])}`);
  }, 60_000);
});
