// Who may ask the global rate-limit service (issue 16, SECURITY.md): two in-process replicas with
// the cluster CA and `--rate-limit-plaintext off`, real gRPC over loopback TLS with workload
// certificates from the replicas' CreateCertificate.
// - A proxy of the limited workload (shop/api) gets decisions on the CA's mTLS port, counted.
// - Another identity of the same namespace whose workloads the limit does not select (shop/web),
//   and an identity of another namespace, are refused (PERMISSION_DENIED, naming the limit); the
//   namespace-only rule holds for an identity the registry does not list. TLS without a client
//   certificate and the plaintext xDS port are refused (UNAUTHENTICATED). No refused call spends
//   the limit.
// - The rate-limit cluster pushed to sidecars points at the replicas' CA ports over mTLS, checks
//   the SAN their serving certificates carry, and follows membership: a replica that joins is
//   added, one that stops is removed, and a connected proxy is sent the new cluster.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { type EnvoyJson, parseNode, TypeUrl } from '@meridian/envoy';
import { type EtcdCluster, eventually, SimulatedProxy, startEtcd } from '@meridian/testkit';
import { translateProxy } from '@meridian/translate';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { rateLimitServiceClient } from '../src/ratelimit-service.js';
import { Replica } from '../src/replica.js';
import { ALL_TYPES, adminFetch, installClusterCaForTest, xdsClient } from './harness.js';
import { issueWorkloadCertificate, withCertificateClient } from './mtls-fixtures.js';

const TD = 'cluster.local';
const MESH = 'rlmtls';
const LIMIT = 5;
const tmp = mkdtempSync(join(tmpdir(), 'meridian-ratelimit-mtls-'));
let etcd: EtcdCluster | undefined;
let rootPem = '';
let signingKeyPem = '';
const replicas: Replica[] = [];
const clients: grpc.Client[] = [];
const proxies: SimulatedProxy[] = [];
const creds: Record<string, { key: string; chain: string }> = {};

const CONFIG = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.shop.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-1, namespace: shop}
spec: {address: 10.9.0.1, ports: {http: 8080}, labels: {app: api}, serviceAccount: api}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: web}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-1, namespace: shop}
spec: {address: 10.9.0.2, ports: {http: 8080}, labels: {app: web}, serviceAccount: web}
---
apiVersion: policy.meridian.io/v1alpha1
kind: RateLimit
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  global: {limits: [{requestsPerUnit: ${LIMIT}, unit: HOUR}]}
---
apiVersion: policy.meridian.io/v1alpha1
kind: RateLimit
metadata: {name: batch, namespace: other}
spec:
  global: {limits: [{requestsPerUnit: 100, unit: HOUR}]}
`;

interface Answer {
  overall_code: string;
  statuses?: Array<{ code: string; current_limit?: { requests_per_unit: number; unit: string } }>;
}

/** A rate-limit client to `address`: TLS with `who`'s workload certificate, TLS without one, or plaintext. */
function rls(address: string, who: string | 'no-certificate' | 'plaintext') {
  const Ctor = rateLimitServiceClient();
  const c =
    who === 'plaintext'
      ? new Ctor(address, grpc.credentials.createInsecure())
      : who === 'no-certificate'
        ? new Ctor(address, grpc.credentials.createSsl(Buffer.from(rootPem)))
        : new Ctor(
            address,
            grpc.credentials.createSsl(
              Buffer.from(rootPem),
              Buffer.from(creds[who]!.key),
              Buffer.from(creds[who]!.chain),
            ),
          );
  clients.push(c);
  return c as unknown as {
    ShouldRateLimit: (req: unknown, cb: (e: grpc.ServiceError | null, res: Answer) => void) => void;
  };
}

function ask(client: ReturnType<typeof rls>, limit: string): Promise<Answer> {
  return new Promise((resolve, reject) =>
    client.ShouldRateLimit(
      {
        domain: 'meridian',
        descriptors: [{ entries: [{ key: 'meridian_limit', value: limit }] }],
        hits_addend: 1,
      },
      (e, res) => (e ? reject(e) : resolve(res)),
    ),
  );
}

async function refusal(client: ReturnType<typeof rls>, limit: string): Promise<grpc.ServiceError> {
  const error = await ask(client, limit).then(
    (a) => {
      throw new Error(`expected a refusal, got ${JSON.stringify(a)}`);
    },
    (e: grpc.ServiceError) => e,
  );
  return error;
}

async function startReplica(id: string): Promise<Replica> {
  const r = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', MESH, '--cluster-id', 'c1', '--replica-id', id],
        ...['--etcd-endpoints', etcd!.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
        ...['--monitoring-address', '127.0.0.1:0', '--snapshot-dir', 'off'],
        ...[
          '--ca-address',
          '127.0.0.1:0',
          '--ca-kek-file',
          join(tmp, 'kek'),
          '--rate-limit-plaintext',
          'off',
        ],
      ],
      {},
    ),
    { logger: pino({ level: process.env.TEST_LOG ?? 'silent' }) },
  );
  replicas.push(r);
  return r;
}

/** The rate-limit cluster a sidecar of shop/api is sent by `r` (its current push context). */
function rateLimitClusterOf(r: Replica): EnvoyJson | undefined {
  const snapshot = r.snapshot;
  if (!snapshot) return undefined;
  const proxy = parseNode({
    id: 'sidecar~10.9.0.1~api-1.shop~shop.svc.cluster.local',
    metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1', LABELS: { app: 'api' } },
  });
  return translateProxy(snapshot.config, snapshot.registry, proxy).clusters.find(
    (c) => c.name === 'meridian-ratelimit',
  )?.resource;
}

const endpointsOf = (c: EnvoyJson | undefined): string[] =>
  (
    ((c?.load_assignment as EnvoyJson | undefined)?.endpoints as EnvoyJson[] | undefined)?.[0]
      ?.lb_endpoints as EnvoyJson[] | undefined
  )?.map((e) => {
    const a = ((e.endpoint as EnvoyJson).address as EnvoyJson).socket_address as EnvoyJson;
    return `${a.address}:${a.port_value}`;
  }) ?? [];

/** The SANs of the serving certificate at `address`. */
function servingSans(address: string): Promise<string> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host, port, ca: rootPem, servername: 'localhost', ALPNProtocols: ['h2'] },
      () => {
        resolve(socket.getPeerCertificate().subjectaltname ?? '');
        socket.destroy();
      },
    );
    socket.on('error', reject);
  });
}

beforeAll(async () => {
  etcd = await startEtcd();
  const ca = await installClusterCaForTest(etcd.endpoints, MESH, join(tmp, 'kek'), TD);
  rootPem = ca.root.certPem;
  signingKeyPem = ca.signingKeyPem;
  const r = await startReplica('rl-a');
  const res = await adminFetch(r, '/apis/v1/apply', { method: 'POST', body: CONFIG });
  expect(res.status, await res.clone().text()).toBe(200);
  await withCertificateClient(r.caAddress, rootPem, async (ca) => {
    for (const [ns, sa] of [
      ['shop', 'api'],
      ['shop', 'web'],
      ['other', 'batch'],
    ] as const) {
      const cert = await issueWorkloadCertificate(ca, signingKeyPem, {
        trustDomain: TD,
        namespace: ns,
        serviceAccount: sa,
      });
      creds[sa] = { key: cert.keyPem, chain: cert.chainPem };
    }
  });
  await eventually(
    'the config and the registry are served',
    async () =>
      (r.snapshot?.config.rateLimits.length ?? 0) === 2 && (r.snapshot?.registry.services.length ?? 0) === 2,
    20_000,
    50,
  );
  // The limits are per hour: keep the test away from a window's end.
  const left = 3_600_000 - (Date.now() % 3_600_000);
  if (left < 60_000) await new Promise((resolve) => setTimeout(resolve, left + 500));
}, 120_000);

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  for (const c of clients) (c as unknown as grpc.Client).close();
  await Promise.all(replicas.map((r) => r.stop().catch(() => undefined)));
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('the rate-limit service on the CA mTLS port', () => {
  it('refuses the plaintext port, TLS without a certificate, and identities the limit does not select, spending nothing', async () => {
    const r = replicas[0]!;
    const plain = await refusal(rls(r.xdsAddress, 'plaintext'), 'shop/api/0');
    expect(plain.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(plain.details).toBe(
      'the rate-limit service needs the workload certificate (the CA mTLS port); unauthenticated callers are off (--rate-limit-plaintext)',
    );
    const anonymous = await refusal(rls(r.caAddress, 'no-certificate'), 'shop/api/0');
    expect(anonymous.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(anonymous.details).toBe(
      'the rate-limit service needs the workload certificate: none was presented',
    );

    const web = rls(r.caAddress, 'web');
    const sameNamespace = await refusal(web, 'shop/api/0');
    expect(sameNamespace.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(sameNamespace.details).toBe(
      "spiffe://cluster.local/ns/shop/sa/web may not use the limit shop/api/0: RateLimit shop/api selects none of the caller's workloads",
    );
    const batch = rls(r.caAddress, 'batch');
    const otherNamespace = await refusal(batch, 'shop/api/0');
    expect(otherNamespace.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(otherNamespace.details).toBe(
      'spiffe://cluster.local/ns/other/sa/batch may not use the limit shop/api/0: RateLimit shop/api is in namespace "shop", not the caller\'s',
    );
    // A call naming an allowed and a forbidden limit is refused whole.
    const mixed = await new Promise<grpc.ServiceError | null>((resolve) =>
      (batch as ReturnType<typeof rls>).ShouldRateLimit(
        {
          domain: 'meridian',
          descriptors: [
            { entries: [{ key: 'meridian_limit', value: 'other/batch/0' }] },
            { entries: [{ key: 'meridian_limit', value: 'shop/api/0' }] },
          ],
        },
        (e) => resolve(e),
      ),
    );
    expect(mixed?.code).toBe(grpc.status.PERMISSION_DENIED);
    // The registry does not list other/batch: its own namespace's limits are its to use.
    expect(await ask(batch, 'other/batch/0')).toMatchObject({
      overall_code: 'OK',
      statuses: [{ code: 'OK', current_limit: { requests_per_unit: 100, unit: 'HOUR' } }],
    });
  }, 60_000);

  it('an authorised proxy gets decisions, counted to the limit', async () => {
    const api = rls(replicas[0]!.caAddress, 'api');
    const codes: string[] = [];
    for (let i = 0; i < LIMIT + 2; i++) codes.push((await ask(api, 'shop/api/0')).overall_code);
    // Nothing was spent by the refused calls of the test before: exactly LIMIT allowed.
    expect(codes).toEqual([...Array(LIMIT).fill('OK'), 'OVER_LIMIT', 'OVER_LIMIT']);
  }, 60_000);

  it('sidecars reach it over mTLS, at the current replicas: joins and leaves reach a connected proxy', async () => {
    const a = replicas[0]!;
    const cluster = rateLimitClusterOf(a);
    expect(endpointsOf(cluster)).toEqual([a.caAddress]);
    expect(cluster?.transport_socket).toBeDefined();
    const tls = ((cluster!.transport_socket as EnvoyJson).typed_config as EnvoyJson)
      .common_tls_context as EnvoyJson;
    expect(tls.tls_certificate_sds_secret_configs).toEqual([
      { name: 'default', sds_config: { ads: {}, resource_api_version: 'V3' } },
    ]);
    expect(
      ((tls.combined_validation_context as EnvoyJson).default_validation_context as EnvoyJson)
        .match_typed_subject_alt_names,
    ).toEqual([{ san_type: 'IP_ADDRESS', matcher: { exact: '127.0.0.1' } }]);
    // The SAN the cluster checks is one the replica's serving certificate carries.
    expect((await servingSans(a.caAddress)).split(', ')).toContain('IP Address:127.0.0.1');

    // A sidecar of shop/api holding its clusters from replica a.
    const proxy = new SimulatedProxy({
      nodeId: 'sidecar~10.9.0.1~api-1.shop~shop.svc.cluster.local',
      metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1', LABELS: { app: 'api' } },
      variant: 'delta',
      subscriptions: ALL_TYPES.map((typeUrl) => ({ typeUrl })),
    });
    const channel = xdsClient(a.xdsAddress);
    clients.push(channel);
    proxies.push(proxy);
    proxy.connect(channel);
    const held = () => proxy.state.get(TypeUrl.Cluster)?.resources.get('meridian-ratelimit');
    await eventually('the proxy holds the rate-limit cluster', async () => held() !== undefined, 20_000, 50);
    const first = held();

    const b = await startReplica('rl-b');
    const both = [a.caAddress, b.caAddress];
    await eventually(
      'replica a points proxies at both replicas',
      async () => JSON.stringify(endpointsOf(rateLimitClusterOf(a))) === JSON.stringify(both),
      20_000,
      50,
    );
    await eventually('the proxy is sent the new cluster', async () => held() !== first, 20_000, 50);
    const second = held();
    // Replica b answers the authorised proxy as well (counters shared: the limit is used up).
    expect((await ask(rls(b.caAddress, 'api'), 'shop/api/0')).overall_code).toBe('OVER_LIMIT');
    expect(await refusal(rls(b.caAddress, 'web'), 'shop/api/0')).toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
    });

    await b.stop();
    replicas.splice(replicas.indexOf(b), 1);
    await eventually(
      'replica a drops the stopped replica',
      async () => JSON.stringify(endpointsOf(rateLimitClusterOf(a))) === JSON.stringify([a.caAddress]),
      20_000,
      50,
    );
    await eventually('the proxy is sent the cluster without it', async () => held() !== second, 20_000, 50);
  }, 90_000);
});
