// The agent in TLS mode against a real replica with the cluster CA: the workload key is made by the
// agent, the certificate comes from CreateCertificate, and the agent serves SDS itself (SotW and
// Delta); the replica never sees a Secret request; a rotation reaches the proxy; the relayed xDS
// stream to the replica runs over mTLS with the agent's certificate.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Agent, certificateSecrets, WorkloadCertificates } from '@meridian/agent';
import { createBootstrapToken, type RootCa } from '@meridian/ca';
import { decodeResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
import { Replica, resolveOptions } from '@meridian/server';
import { type EtcdCluster, eventually, SimulatedProxy, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, installClusterCaForTest } from '../../server/test/harness.js';

const TD = 'cluster.local';
const tmp = mkdtempSync(join(tmpdir(), 'meridian-agent-sds-'));
let etcd: EtcdCluster;
let replica: Replica;
let root: RootCa;
let certs: WorkloadCertificates;
let agent: Agent;
const proxies: SimulatedProxy[] = [];
const clients: grpc.Client[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  const installed = await installClusterCaForTest(etcd.endpoints, 'agentsds', join(tmp, 'kek'), TD);
  root = installed.root;
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'agentsds', '--cluster-id', 'c1', '--replica-id', 'sds-1', '--locality', 'r1/z1'],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--admin-address', '127.0.0.1:0', '--monitoring-address', 'off'],
        ...['--ca-address', '127.0.0.1:0', '--ca-kek-file', join(tmp, 'kek')],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  const res = await adminFetch(replica, '/apis/v1/apply', {
    method: 'POST',
    body: `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}]
`,
  });
  expect(res.status, await res.text()).toBe(200);
  const token = await createBootstrapToken({
    signingKeyPem: installed.signingKeyPem,
    identity: { trustDomain: TD, namespace: 'shop', serviceAccount: 'reviews' },
    ttlSeconds: 600,
    singleUse: true,
  });
  certs = new WorkloadCertificates({
    identity: { trustDomain: TD, namespace: 'shop', serviceAccount: 'reviews' },
    caAddress: replica.caAddress,
    rootCertPem: root.certPem,
    token,
    serverName: 'localhost',
    logger: pino({ level: 'silent' }),
  });
  await certs.start();
  agent = await Agent.start({
    seeds: [replica.caAddress],
    place: { clusterId: 'c1', locality: 'r1/z1' },
    listenAddress: '127.0.0.1:0',
    tlsCredentials: () => certs.channelCredentials(),
    channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
    secrets: certificateSecrets(certs),
    logger: pino({ level: 'silent' }),
  });
});

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  for (const c of clients) c.close();
  await agent?.stop();
  certs?.close();
  await replica?.stop();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function proxy(variant: 'sotw' | 'delta', i: number): SimulatedProxy {
  const client = new grpc.Client(agent.address, grpc.credentials.createInsecure());
  clients.push(client);
  const p = new SimulatedProxy({
    nodeId: `sidecar~10.1.0.${i}~reviews-${i}.shop~shop.svc.cluster.local`,
    metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1', SERVICE_ACCOUNT: 'reviews' },
    variant,
    subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.Secret, names: ['default', 'ROOTCA'] }],
    record: true,
  });
  p.connect(client);
  proxies.push(p);
  return p;
}

/** The leaf certificate PEM of the `default` secret in the proxy's last Secret response. */
function defaultSecretLeaf(p: SimulatedProxy): string | undefined {
  const r = p.responses.findLast((x) => x.typeUrl === TypeUrl.Secret);
  if (!r) return undefined;
  for (const bytes of r.resources as unknown as (Uint8Array | { value: Uint8Array | undefined })[]) {
    const value = bytes instanceof Uint8Array ? bytes : bytes.value;
    if (!value) continue;
    const s = decodeResource(TypeUrl.Secret, value);
    if (s.name !== 'default') continue;
    const chain = ((s.tls_certificate as EnvoyJson).certificate_chain as EnvoyJson).inline_bytes as string;
    return Buffer.from(chain, 'base64').toString().split('-----END CERTIFICATE-----')[0];
  }
  return undefined;
}

describe('meridian-agent with the workload certificate', () => {
  it.each(['sotw', 'delta'] as const)(
    '%s: SDS is served by the agent from its own key; a rotation is pushed; CDS comes through the replica',
    async (variant) => {
      const p = proxy(variant, variant === 'sotw' ? 1 : 2);
      await eventually(
        'secrets and clusters',
        () => defaultSecretLeaf(p) !== undefined && (p.state.get(TypeUrl.Cluster)?.resources.size ?? 0) > 0,
        30_000,
        50,
      );
      const mine = certs.current()!;
      expect(defaultSecretLeaf(p)).toBe(mine.certChainPem.split('-----END CERTIFICATE-----')[0]);
      // The replica saw this proxy's xDS stream (over mTLS, as the agent's identity) but no SDS request.
      const syncz = (await (await adminFetch(replica, '/debug/syncz')).json()) as {
        proxyId: string;
        authenticatedIdentity?: string;
        types: Record<string, unknown>;
      }[];
      const me = syncz.find((s) => s.proxyId.includes(`reviews-${variant === 'sotw' ? 1 : 2}.shop`));
      expect(me?.authenticatedIdentity).toBe('spiffe://cluster.local/ns/shop/sa/reviews');
      expect(Object.keys(me?.types ?? {})).not.toContain('sds');
      // Rotation: the new certificate reaches the proxy without a request from it.
      const before = defaultSecretLeaf(p);
      const next = await certs.renewNow();
      await eventually('rotated secret', () => defaultSecretLeaf(p) !== before, 30_000, 50);
      expect(defaultSecretLeaf(p)).toBe(next.certChainPem.split('-----END CERTIFICATE-----')[0]);
    },
  );
});
