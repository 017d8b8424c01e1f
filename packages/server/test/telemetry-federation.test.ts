// The service graph across clusters (issue 17, item 4): two in-process replicas of two clusters
// (c1, c2, each its own etcd keyspace on one etcd) federated over one NATS server (JetStream, as
// federation needs). c1's caller reports its outbound calls to c1's replica, c2's callee its inbound
// side to c2's replica; each replica's /debug/graph shows both clusters' edges (the other cluster's
// from NATS), and c1 resolves the callee's endpoint imported from c2 (destination_cluster c2).
import * as grpc from '@grpc/grpc-js';
import {
  type EtcdCluster,
  eventually,
  type StandaloneNatsServer,
  startEtcd,
  startNats,
} from '@meridian/testkit';
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
import { adminFetch } from './harness.js';

const FRONTEND = FRONTEND_IP;
const PAYMENTS = PAYMENTS_IP;
let etcd: EtcdCluster | undefined;
let nats: StandaloneNatsServer | undefined;
const replicas: Replica[] = [];

async function start(cluster: string, id: string): Promise<Replica> {
  const r = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'telfed', '--cluster-id', cluster, '--replica-id', id],
        ...['--etcd-endpoints', etcd!.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
        ...['--monitoring-address', '127.0.0.1:0', '--snapshot-dir', 'off', '--telemetry-plaintext', 'on'],
        ...['--nats-url', nats!.url],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  replicas.push(r);
  return r;
}

async function graph(r: Replica): Promise<ServiceGraph> {
  return (await (await adminFetch(r, '/debug/graph')).json()) as ServiceGraph;
}

beforeAll(async () => {
  [etcd, nats] = await Promise.all([startEtcd(), startNats({ jetstream: true })]);
  const [r1, r2] = [await start('c1', 'f1'), await start('c2', 'f2')];
  for (const [r, yaml] of [
    [r1!, FRONTEND_YAML],
    [r2!, PAYMENTS_YAML],
  ] as const) {
    const res = await adminFetch(r, '/apis/v1/apply', { method: 'POST', body: yaml });
    expect(res.status, await res.clone().text()).toBe(200);
  }
  // c1 imports payments (and its endpoint in c2) through federation.
  await eventually(
    'payments imported into c1',
    () => (r1!.snapshot?.registry.endpoints.get('payments.pay.svc.cluster.local')?.length ?? 0) > 0,
    60_000,
    50,
  );
}, 120_000);

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop().catch(() => undefined)));
  await nats?.stop();
  await etcd?.stop();
}, 60_000);

describe('the service graph across federated clusters', () => {
  it("each cluster's graph holds the other's edges; c1 names the callee's cluster from the imported endpoint", async () => {
    const [r1, r2] = replicas as [Replica, Replica];
    const out = (code: number) =>
      httpEntry({
        direction: 'outbound',
        downstream: `${FRONTEND}:41000`,
        upstream: `${PAYMENTS}:8080`,
        upstreamCluster: 'outbound|8080||payments.pay.svc.cluster.local',
        code,
      });
    const s1 = await streamAccessLogs(r1.xdsAddress, [
      encodeAccessLogs(
        { http: [...Array.from({ length: 9 }, () => out(200)), out(503)] },
        sidecarNodeId(FRONTEND, 'frontend-v1', 'shop'),
      ),
    ]);
    expect(s1.code).toBe(grpc.status.OK);
    const inbound = httpEntry({
      direction: 'inbound',
      downstream: `${FRONTEND}:41000`,
      downstreamLocal: `${PAYMENTS}:8080`,
      upstream: '127.0.0.1:8080',
      upstreamCluster: 'inbound|8080||',
    });
    const s2 = await streamAccessLogs(r2.xdsAddress, [
      encodeAccessLogs(
        { http: Array.from({ length: 4 }, () => inbound) },
        sidecarNodeId(PAYMENTS, 'payments-v2', 'pay'),
      ),
    ]);
    expect(s2.code).toBe(grpc.status.OK);

    const c1Edge = (g: ServiceGraph) => g.edges.find((e) => e.cluster === 'c1');
    const c2Edge = (g: ServiceGraph) => g.edges.find((e) => e.cluster === 'c2');
    for (const r of [r1, r2])
      await eventually(
        `${r.options.clusterId}: both clusters' edges`,
        async () => {
          const g = await graph(r);
          return c1Edge(g)?.requests === 10 && c2Edge(g)?.requests === 4;
        },
        30_000,
        250,
      );
    const g = await graph(r2);
    expect(c1Edge(g)).toMatchObject({
      source: 'workload:c1/shop/frontend-v1',
      destination: 'service:c2/pay/payments',
      errorRate: 0.1,
    });
    expect(c2Edge(g)).toMatchObject({ destination: 'service:c2/pay/payments', requests: 4 });
    // c1's metrics name the callee's cluster from the endpoint imported through federation.
    const m1 = await (await fetch(`http://${r1.monitoringAddress}/metrics`)).text();
    expect(m1).toMatch(
      /istio_requests_total\{[^}]*destination_workload="payments"[^}]*destination_cluster="c2"[^}]*response_code="200"[^}]*\} 9/,
    );
  }, 90_000);
});
