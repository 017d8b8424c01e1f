// Mesh identity on the replica (issue 6, items 4 and 5): a real etcd, the cluster CA installed in it,
// meridiand in-process with --ca-address. PeerAuthentication drives the virtualInbound listener a
// simulated sidecar receives; DestinationRule ISTIO_MUTUAL gives clusters an UpstreamTlsContext with
// the SDS secret names; a proxy authenticated with its workload certificate (obtained from the
// replica's CreateCertificate with a bootstrap token) receives its own `default` secret, never
// another identity's, and a new one when the cluster CA is re-installed.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type CertificateServiceClient,
  caStoreFrom,
  createCertificateServiceClient,
  createIntermediateCa,
  installClusterCa,
  parseKek,
  type RootCa,
} from '@meridian/ca';
import { decodeResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
import { EtcdStore, Keyspace } from '@meridian/store';
import {
  type EtcdCluster,
  eventually,
  SimulatedProxy,
  type SotwResponseView,
  startEtcd,
} from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import { adminFetch, installClusterCaForTest } from './harness.js';
import { issueWorkloadCertificate, type WorkloadCertificate } from './mtls-fixtures.js';

const TD = 'cluster.local';
const tmp = mkdtempSync(join(tmpdir(), 'meridian-mtls-test-'));
let etcd: EtcdCluster;
let replica: Replica | undefined;
let plain: Replica | undefined;
let ca: CertificateServiceClient | undefined;
let root: RootCa;
let kekText: string;
let signingKeyPem: string;
const clients: grpc.Client[] = [];
const proxies: SimulatedProxy[] = [];

const SERVICES = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1, labels: {app: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings.shop.svc.cluster.local]
  ports: [{number: 9090, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.2, labels: {app: ratings}}]
`;

const peerAuthentication = (mode: string) => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec:
  mtls: {mode: ${mode}}
`;

const destinationRule = (mode: string) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: shop}
spec:
  host: ratings.shop.svc.cluster.local
  trafficPolicy: {tls: {mode: ${mode}}}
`;

async function apply(r: Replica, yaml: string): Promise<void> {
  const res = await adminFetch(r, '/apis/v1/apply', { method: 'POST', body: yaml });
  expect(res.status, await res.clone().text()).toBe(200);
}

/** testkit's eventually with this file's bound. */
const until = <T>(what: string, probe: () => T | undefined | false) => eventually(what, probe, 30_000, 25);

/** A simulated sidecar of `reviews` (10.1.0.1, namespace shop) watching listeners and clusters. */
function sidecar(address: string, creds = grpc.credentials.createInsecure()): SimulatedProxy {
  const client = new grpc.Client(address, creds, { 'grpc.ssl_target_name_override': 'localhost' });
  clients.push(client);
  const p = new SimulatedProxy({
    nodeId: 'sidecar~10.1.0.1~reviews-1.shop~shop.svc.cluster.local',
    metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1', LABELS: { app: 'reviews' } },
    variant: 'sotw',
    subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.Listener }],
    record: true,
  });
  p.connect(client);
  proxies.push(p);
  return p;
}

/** The last response of `typeUrl`, decoded, as name -> resource. */
function latest(p: SimulatedProxy, typeUrl: string): Map<string, EnvoyJson> | undefined {
  const r = p.responses.findLast((x) => x.typeUrl === typeUrl) as SotwResponseView | undefined;
  if (!r) return undefined;
  return new Map(
    r.resources.map((bytes) => {
      const j = decodeResource(typeUrl, bytes);
      return [String(j.name ?? j.cluster_name), j];
    }),
  );
}

/** The virtualInbound filter chains for port 9080, once they satisfy `ok`. */
async function inbound9080(p: SimulatedProxy, ok: (chains: EnvoyJson[]) => boolean): Promise<EnvoyJson[]> {
  return until('the inbound chains of port 9080', () => {
    const l = latest(p, TypeUrl.Listener)?.get('virtualInbound');
    const chains = ((l?.filter_chains ?? []) as EnvoyJson[]).filter(
      (c) => (c.filter_chain_match as EnvoyJson | undefined)?.destination_port === 9080,
    );
    return chains.length > 0 && ok(chains) ? chains : undefined;
  });
}

const protocolOf = (c: EnvoyJson) =>
  (c.filter_chain_match as EnvoyJson | undefined)?.transport_protocol as string | undefined;
const socketType = (x: EnvoyJson | undefined) =>
  ((x?.transport_socket as EnvoyJson | undefined)?.typed_config as EnvoyJson | undefined)?.['@type'];
const DOWNSTREAM = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const UPSTREAM = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const RATINGS = 'outbound|9090||ratings.shop.svc.cluster.local';

function startReplica(id: string, withCa: boolean): Promise<Replica> {
  return Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'mtlstest', '--cluster-id', 'c1', '--replica-id', id],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--monitoring-address', 'off'],
        ...(withCa ? ['--ca-address', '127.0.0.1:0', '--ca-kek-file', join(tmp, 'kek')] : []),
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
}

beforeAll(async () => {
  etcd = await startEtcd();
  ({ root, kekText, signingKeyPem } = await installClusterCaForTest(
    etcd.endpoints,
    'mtlstest',
    join(tmp, 'kek'),
    TD,
  ));
  replica = await startReplica('mtls-1', true);
  await apply(replica, SERVICES);
  ca = createCertificateServiceClient(
    replica.caAddress,
    grpc.credentials.createSsl(Buffer.from(root.certPem)),
    {
      'grpc.ssl_target_name_override': 'localhost',
      'grpc.default_authority': 'localhost',
    },
  );
}, 90_000);

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  for (const c of clients) c.close();
  ca?.close();
  await replica?.stop();
  await plain?.stop();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('PeerAuthentication -> inbound listener', () => {
  it('PERMISSIVE by default, STRICT gives a TLS-only chain, DISABLE returns plaintext', async () => {
    const p = sidecar(replica!.xdsAddress);
    const permissive = await inbound9080(p, () => true);
    expect(permissive.map(protocolOf).sort()).toEqual(['raw_buffer', 'tls']);

    await apply(replica!, peerAuthentication('STRICT'));
    const strict = await inbound9080(p, (c) => c.length === 1);
    expect(protocolOf(strict[0]!)).toBe('tls');
    expect(socketType(strict[0])).toBe(DOWNSTREAM);
    const tls = (strict[0]!.transport_socket as EnvoyJson).typed_config as EnvoyJson;
    expect(tls.require_client_certificate).toBe(true);
    expect(
      ((tls.common_tls_context as EnvoyJson).tls_certificate_sds_secret_configs as EnvoyJson[]).map(
        (s) => s.name,
      ),
    ).toEqual(['default']);
    const inspector = latest(p, TypeUrl.Listener)?.get('virtualInbound')?.listener_filters as EnvoyJson[];
    expect(inspector.map((f) => f.name)).toContain('envoy.filters.listener.tls_inspector');

    await apply(replica!, peerAuthentication('DISABLE'));
    const disabled = await inbound9080(p, (c) => c.length === 1 && protocolOf(c[0]!) === undefined);
    expect(disabled[0]!.transport_socket).toBeUndefined();
  });

  it('a replica without a CA keeps plaintext chains even with a STRICT policy', async () => {
    await apply(replica!, peerAuthentication('STRICT'));
    plain = await startReplica('plain-1', false);
    const p = sidecar(plain.xdsAddress);
    const chains = await inbound9080(p, () => true);
    expect(chains).toHaveLength(1);
    expect(protocolOf(chains[0]!)).toBeUndefined();
    expect(chains[0]!.transport_socket).toBeUndefined();
    const ratings = await until('the ratings cluster', () => latest(p, TypeUrl.Cluster)?.get(RATINGS));
    expect(socketType(ratings)).toBeUndefined();
    await apply(replica!, peerAuthentication('PERMISSIVE'));
  });
});

describe('PeerAuthentication levels', () => {
  it('mesh STRICT, namespace PERMISSIVE over it, workload STRICT over that, port DISABLE over the workload', async () => {
    const p = sidecar(replica!.xdsAddress);
    const del = await adminFetch(replica!, '/apis/v1/config/PeerAuthentication/shop/default', {
      method: 'DELETE',
    });
    expect(del.status, await del.text()).toBe(200);
    await apply(
      replica!,
      `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: mesh, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`,
    );
    await inbound9080(p, (c) => c.length === 1 && protocolOf(c[0]!) === 'tls');
    await apply(replica!, peerAuthentication('PERMISSIVE'));
    await inbound9080(p, (c) => c.length === 2);
    const workload = (ports: string) => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
${ports}`;
    await apply(replica!, workload(''));
    await inbound9080(p, (c) => c.length === 1 && protocolOf(c[0]!) === 'tls');
    await apply(replica!, workload("  portLevelMtls: {'9080': {mode: DISABLE}}\n"));
    const chains = await inbound9080(p, (c) => c.length === 1 && protocolOf(c[0]!) === undefined);
    expect(chains[0]!.transport_socket).toBeUndefined();
  });
});

describe('DestinationRule -> upstream TLS', () => {
  it('ISTIO_MUTUAL gives an UpstreamTlsContext with the SDS secrets; tls DISABLE gives plaintext', async () => {
    const p = sidecar(replica!.xdsAddress);
    await apply(replica!, destinationRule('DISABLE'));
    await until('a plaintext ratings cluster', () => {
      const c = latest(p, TypeUrl.Cluster)?.get(RATINGS);
      return c && socketType(c) === undefined ? c : undefined;
    });
    await apply(replica!, destinationRule('ISTIO_MUTUAL'));
    const cluster = await until('an mTLS ratings cluster', () => {
      const c = latest(p, TypeUrl.Cluster)?.get(RATINGS);
      return c && socketType(c) === UPSTREAM ? c : undefined;
    });
    const tls = (cluster.transport_socket as EnvoyJson).typed_config as EnvoyJson;
    expect(tls.sni).toBe('outbound_.9090_._.ratings.shop.svc.cluster.local');
    const common = tls.common_tls_context as EnvoyJson;
    expect((common.tls_certificate_sds_secret_configs as EnvoyJson[]).map((s) => s.name)).toEqual([
      'default',
    ]);
    const validation = common.combined_validation_context as EnvoyJson;
    expect((validation.validation_context_sds_secret_config as EnvoyJson).name).toBe('ROOTCA');
    expect((validation.default_validation_context as EnvoyJson).match_subject_alt_names).toEqual([
      { prefix: `spiffe://${TD}/` },
    ]);
  });
});

describe('automatic mTLS', () => {
  const REVIEWS = 'outbound|9080||reviews.shop.svc.cluster.local';
  it('Envoy sidecars get mTLS to a destination that accepts it, proxyless gRPC only with ISTIO_MUTUAL', async () => {
    const envoy = sidecar(replica!.xdsAddress);
    const auto = await until('the reviews cluster', () => latest(envoy, TypeUrl.Cluster)?.get(REVIEWS));
    expect(socketType(auto)).toBe(UPSTREAM);

    const client = new grpc.Client(replica!.xdsAddress, grpc.credentials.createInsecure());
    clients.push(client);
    const g = new SimulatedProxy({
      nodeId: 'sidecar~10.1.0.7~app-0.shop~shop.svc.cluster.local',
      metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1', GENERATOR: 'grpc' },
      variant: 'sotw',
      subscriptions: [{ typeUrl: TypeUrl.Cluster, names: [REVIEWS, RATINGS] }],
      record: true,
    });
    g.connect(client);
    proxies.push(g);
    const clusters = await until('the gRPC clusters', () => {
      const m = latest(g, TypeUrl.Cluster);
      return m?.has(REVIEWS) && m.has(RATINGS) ? m : undefined;
    });
    expect(socketType(clusters.get(REVIEWS))).toBeUndefined();
    expect(socketType(clusters.get(RATINGS))).toBe(UPSTREAM);
    const common = ((clusters.get(RATINGS)!.transport_socket as EnvoyJson).typed_config as EnvoyJson)
      .common_tls_context as EnvoyJson;
    expect(common.tls_certificate_provider_instance).toEqual({
      instance_name: 'default',
      certificate_name: 'default',
    });
  });
});

type Identity = WorkloadCertificate;

function workloadIdentity(namespace: string, serviceAccount: string): Promise<Identity> {
  return issueWorkloadCertificate(ca!, signingKeyPem, { trustDomain: TD, namespace, serviceAccount });
}

function secretProxy(who: Identity | undefined): SimulatedProxy {
  const creds = who
    ? grpc.credentials.createSsl(
        Buffer.from(root.certPem),
        Buffer.from(who.keyPem),
        Buffer.from(who.chain.slice(0, -1).join('')),
      )
    : grpc.credentials.createSsl(Buffer.from(root.certPem));
  const client = new grpc.Client(replica!.caAddress, creds, { 'grpc.ssl_target_name_override': 'localhost' });
  clients.push(client);
  const p = new SimulatedProxy({
    nodeId: `sidecar~10.1.0.9~p${proxies.length}.shop~shop.svc.cluster.local`,
    metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1' },
    variant: 'sotw',
    subscriptions: [{ typeUrl: TypeUrl.Secret, names: ['default', 'ROOTCA'] }],
    record: true,
  });
  p.connect(client);
  proxies.push(p);
  return p;
}

interface SecretView {
  readonly name: string;
  readonly leafSan?: string;
  readonly key?: string;
  readonly trustedCa?: string;
}

function secretsIn(r: SotwResponseView): SecretView[] {
  return r.resources.map((bytes) => {
    const j = decodeResource(TypeUrl.Secret, bytes) as {
      name: string;
      tls_certificate?: {
        certificate_chain: { inline_bytes: string };
        private_key: { inline_bytes: string };
      };
      validation_context?: { trusted_ca: { inline_bytes: string } };
    };
    const text = (s: string) => Buffer.from(s, 'base64').toString();
    const chain = j.tls_certificate && text(j.tls_certificate.certificate_chain.inline_bytes);
    return {
      name: j.name,
      leafSan: chain === undefined ? undefined : new X509Certificate(chain).subjectAltName,
      key: j.tls_certificate && text(j.tls_certificate.private_key.inline_bytes),
      trustedCa: j.validation_context && text(j.validation_context.trusted_ca.inline_bytes),
    };
  });
}

const secretResponses = (p: SimulatedProxy) =>
  p.responses.filter((r) => r.typeUrl === TypeUrl.Secret).map((r) => secretsIn(r as SotwResponseView));

describe('SDS on the CA TLS port', () => {
  it('an authenticated proxy gets its own default secret, never another identity; anonymous gets ROOTCA', async () => {
    const a = await workloadIdentity('shop', 'reviews');
    const b = await workloadIdentity('shop', 'ratings');
    const pa = secretProxy(a);
    const pb = secretProxy(b);
    const anon = secretProxy(undefined);
    for (const [p, who] of [
      [pa, a],
      [pb, b],
    ] as const) {
      const got = await until('secrets', () => secretResponses(p)[0]);
      expect(got.map((s) => s.name).sort()).toEqual(['ROOTCA', 'default']);
      expect(got.find((s) => s.name === 'default')!.leafSan).toBe(`URI:${who.uri}`);
      expect(got.find((s) => s.name === 'ROOTCA')!.trustedCa?.trim()).toBe(root.certPem.trim());
    }
    const anonymous = await until('anonymous secrets', () => secretResponses(anon)[0]);
    expect(anonymous.map((s) => s.name)).toEqual(['ROOTCA']);

    // Re-installing the cluster CA (an intermediate rotation) pushes every proxy a new key and chain.
    const before = secretResponses(pa).length;
    const firstKey = secretResponses(pa)[0]!.find((s) => s.name === 'default')!.key;
    const store = await EtcdStore.connect({
      endpoints: etcd.endpoints,
      keyspace: Keyspace.of('mtlstest', 'c1'),
    });
    try {
      const next = createIntermediateCa({ root, clusterId: 'c1', trustDomain: TD, keyType: 'ecdsa-p256' });
      await installClusterCa(caStoreFrom(store), next, parseKek(kekText, 'test'));
    } finally {
      await store.close();
    }
    const rotated = await until('the rotated default secret', () => {
      const all = secretResponses(pa);
      if (all.length <= before) return undefined;
      const d = all.at(-1)!.find((s) => s.name === 'default');
      return d && d.key !== firstKey ? d : undefined;
    });
    expect(rotated.leafSan).toBe(`URI:${a.uri}`);

    for (const r of secretResponses(pa).flat()) if (r.leafSan) expect(r.leafSan).toBe(`URI:${a.uri}`);
    for (const r of secretResponses(pb).flat()) if (r.leafSan) expect(r.leafSan).toBe(`URI:${b.uri}`);
    for (const r of secretResponses(anon).flat()) expect(r.name).toBe('ROOTCA');
  });
});
