// AgentRegistration against a real etcd and two in-process meridiand replicas with the cluster CA:
// the agent registers over mTLS with its WorkloadCertificates certificate (the replica checks the
// identity and the peer address), the endpoint reaches a simulated sidecar's EDS, the readiness probe
// of a real local HTTP app drives its health_status, a refused identity is reported with the field at
// fault, a stopped replica makes the agent register again on the other one (and keep the lease there),
// and close() deregisters.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createBootstrapToken, type RootCa } from '@meridian/ca';
import { decodeResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
import { Replica, resolveOptions } from '@meridian/server';
import { EtcdStore, Keyspace } from '@meridian/store';
import {
  type EtcdCluster,
  eventually,
  freePort,
  SimulatedProxy,
  type SotwResponseView,
  startEtcd,
} from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, installClusterCaForTest } from '../../server/test/harness.js';
import { WorkloadCertificates } from '../src/certificates.js';
import { AgentRegistration, type RegistrationStatus } from '../src/registration.js';

const TD = 'cluster.local';
const MESH = 'agentreg';
const tmp = mkdtempSync(join(tmpdir(), 'meridian-agent-reg-'));
const silent = pino({ level: 'silent' });
let etcd: EtcdCluster;
let root: RootCa;
let signingKeyPem: string;
let a: Replica;
let b: Replica;
let reviews: WorkloadCertificates;
let watcher: SimulatedProxy;
let app: Server | undefined;
let appPort = 0;
const cleanups: Array<() => void | Promise<void>> = [];

const SERVICES = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
`;

function startReplica(id: string): Promise<Replica> {
  return Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', MESH, '--cluster-id', 'c1', '--replica-id', id],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', 'off', '--admin-address', '127.0.0.1:0', '--monitoring-address', 'off'],
        ...['--ca-address', '127.0.0.1:0', '--ca-kek-file', join(tmp, 'kek')],
      ],
      {},
    ),
    { logger: silent },
  );
}

async function certificatesFor(serviceAccount: string): Promise<WorkloadCertificates> {
  const identity = { trustDomain: TD, namespace: 'bookinfo', serviceAccount };
  const certs = new WorkloadCertificates({
    identity,
    caAddress: a.caAddress,
    rootCertPem: root.certPem,
    token: await createBootstrapToken({ signingKeyPem, identity, ttlSeconds: 600, singleUse: true }),
    logger: silent,
  });
  cleanups.push(() => certs.close());
  await certs.start();
  return certs;
}

/** The local app: answers 200 while it runs. */
async function startApp(): Promise<void> {
  const server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(appPort, '127.0.0.1', resolve);
  });
  app = server;
}

async function stopApp(): Promise<void> {
  const server = app;
  app = undefined;
  if (!server) return;
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
}

/** health_status by address of the `reviews` endpoints the watcher holds. */
function reviewsEndpoints(p: SimulatedProxy): Map<string, string> {
  const r = p.responses.findLast((x) => x.typeUrl === TypeUrl.ClusterLoadAssignment) as
    | SotwResponseView
    | undefined;
  const out = new Map<string, string>();
  for (const bytes of r?.resources ?? []) {
    const cla = decodeResource(TypeUrl.ClusterLoadAssignment, bytes);
    if (!String(cla.cluster_name).endsWith('|reviews.bookinfo.svc.cluster.local')) continue;
    for (const group of (cla.endpoints ?? []) as EnvoyJson[])
      for (const e of (group.lb_endpoints ?? []) as EnvoyJson[]) {
        const sa = ((e.endpoint as EnvoyJson).address as EnvoyJson).socket_address as EnvoyJson;
        out.set(String(sa.address), String(e.health_status ?? 'UNKNOWN'));
      }
  }
  return out;
}

beforeAll(async () => {
  etcd = await startEtcd();
  ({ root, signingKeyPem } = await installClusterCaForTest(etcd.endpoints, MESH, join(tmp, 'kek'), TD));
  [a, b] = await Promise.all([startReplica('reg-a'), startReplica('reg-b')]);
  const res = await adminFetch(a, '/apis/v1/apply', { method: 'POST', body: SERVICES });
  expect(res.status, await res.text()).toBe(200);
  reviews = await certificatesFor('bookinfo-reviews');
  // A sidecar of productpage on replica b, over mTLS with its own agent's certificate, watching EDS.
  const productpage = await certificatesFor('productpage');
  const client = new grpc.Client(b.caAddress, productpage.channelCredentials());
  watcher = new SimulatedProxy({
    nodeId: 'sidecar~10.2.0.1~productpage-1.bookinfo~bookinfo.svc.cluster.local',
    metadata: { NAMESPACE: 'bookinfo', CLUSTER_ID: 'c1', LABELS: { app: 'productpage' } },
    variant: 'sotw',
    subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.ClusterLoadAssignment }],
    record: true,
  });
  watcher.connect(client);
  cleanups.push(() => {
    watcher.disconnect();
    client.close();
  });
  appPort = await freePort();
  await startApp();
}, 90_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await stopApp();
  await Promise.all([a, b].map((r) => r?.stop().catch(() => undefined)));
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('AgentRegistration', () => {
  let target: string;
  let reg: AgentRegistration;
  const changes: RegistrationStatus[] = [];

  it('registers over mTLS with the agent’s certificate; the endpoint reaches EDS, HEALTHY', async () => {
    target = a.caAddress;
    reg = new AgentRegistration({
      workload: {
        name: 'reviews-1',
        namespace: 'bookinfo',
        address: '127.0.0.1', // the address this agent connects from: the replica checks it
        ports: { http: 9080 },
        labels: { app: 'reviews' },
        serviceAccount: 'bookinfo-reviews',
      },
      address: () => target,
      credentials: reviews.channelCredentials(),
      ttlSeconds: 3,
      probe: { kind: 'http', url: `http://127.0.0.1:${appPort}/healthz` },
      probeIntervalMs: 150,
      probeTimeoutMs: 500,
      failureThreshold: 3,
      retry: { initialMs: 100, maxMs: 1000 },
      streamCheckMs: 50,
      logger: silent,
    });
    cleanups.push(() => reg.close());
    reg.onChange((s) => changes.push(s));
    await reg.start();
    expect(reg.status()).toMatchObject({
      state: 'registered',
      address: a.caAddress,
      replicaId: 'reg-a',
      health: 'HEALTHY',
      registrations: 1,
    });
    await eventually(
      'the endpoint in EDS, HEALTHY',
      () => reviewsEndpoints(watcher).get('127.0.0.1') === 'HEALTHY',
      30_000,
    );
  });

  it('the readiness probe: the app off makes it UNHEALTHY after 3 failures, back on HEALTHY', async () => {
    changes.length = 0;
    await stopApp();
    await eventually(
      'UNHEALTHY in EDS',
      () => reviewsEndpoints(watcher).get('127.0.0.1') === 'UNHEALTHY',
      30_000,
    );
    // Only the third consecutive failure turned it UNHEALTHY.
    const turned = changes.findIndex((s) => s.health === 'UNHEALTHY');
    expect(changes.slice(0, turned + 1).map((s) => `${s.health}/${s.consecutiveFailures}`)).toEqual([
      'HEALTHY/1',
      'HEALTHY/2',
      'UNHEALTHY/3',
    ]);
    await startApp();
    await eventually(
      'HEALTHY in EDS',
      () => reviewsEndpoints(watcher).get('127.0.0.1') === 'HEALTHY',
      30_000,
    );
    expect(reg.status()).toMatchObject({ health: 'HEALTHY', consecutiveFailures: 0, registrations: 1 });
  });

  it('a registration for another identity than the certificate’s is refused, naming the workload', async () => {
    const impostor = new AgentRegistration({
      workload: { name: 'ratings-1', namespace: 'bookinfo', address: '127.0.0.1', serviceAccount: 'ratings' },
      address: () => b.caAddress,
      credentials: reviews.channelCredentials(),
      retry: { initialMs: 60_000 },
      logger: silent,
    });
    cleanups.push(() => impostor.close());
    void impostor.start().catch(() => undefined);
    const error = await eventually('the refusal', () => impostor.status().lastError, 30_000);
    expect(error.field).toBe('workload');
    expect(error.code).toBe('PERMISSION_DENIED');
    expect(error.message).toContain("is not the caller's identity");
    expect(impostor.status().state).toBe('connecting');
    impostor.close();
    expect(reviewsEndpoints(watcher).size).toBe(1);
  });

  it('the replica stopping makes the agent register again on the next one, which keeps the lease', async () => {
    target = b.caAddress; // what the relay would now report as the current replica
    await a.stop();
    await eventually('a registration on reg-b', () => reg.status().replicaId === 'reg-b', 30_000);
    expect(reg.status()).toMatchObject({ state: 'registered', address: b.caAddress, registrations: 2 });
    expect(changes.some((s) => s.state === 'connecting' && s.lastError?.field === 'address')).toBe(true);
    const store = await EtcdStore.connect({ endpoints: etcd.endpoints, keyspace: Keyspace.of(MESH, 'c1') });
    try {
      const kv = await store.get('workloads/bookinfo/reviews-1');
      const record = JSON.parse(new TextDecoder().decode(kv!.value)) as Record<string, unknown>;
      expect(record).toMatchObject({ replicaId: 'reg-b', address: '127.0.0.1', health: 'HEALTHY' });
      expect(kv!.lease).toBe(reg.status().leaseId);
      // Longer than the 3 s TTL of the lease a's stream held: the registration is kept by b's stream.
      await new Promise((r) => setTimeout(r, 4000));
      expect(await store.get('workloads/bookinfo/reviews-1')).toBeDefined();
    } finally {
      await store.close();
    }
    expect(reviewsEndpoints(watcher).get('127.0.0.1')).toBe('HEALTHY');
  });

  it('close() deregisters: the endpoint leaves EDS without waiting for the TTL', async () => {
    reg.close();
    expect(reg.status().state).toBe('closed');
    await eventually('the endpoint gone', () => !reviewsEndpoints(watcher).has('127.0.0.1'), 2500);
  });
});
