// Issue 18 (replica-restart-without-etcd), end to end with real processes: a replica whose only xDS
// port is the CA's TLS port (`--xds-address off`, as `meridian up` runs it) keeps its serving
// certificate, key (sealed with the KEK, file mode 0600) and trust bundle on disk; SIGKILLed and
// restarted while etcd is down, it opens that TLS port with them and serves, over mTLS:
// - a real @grpc/grpc-js-xds client (through a byte relay that holds the workload certificate: grpc-js-xds
//   has no TLS channel credentials for its xDS server), whose calls to the echo backend succeed;
// - a proxy presenting its workload certificate: config and `ROOTCA`, no `default` (nothing is issued
//   offline), and CreateCertificate answers UNAVAILABLE;
// a client claiming the same identity with a certificate of another root is served as anonymous. When etcd returns the
// CA loads on the same listener: the proxy's stream is kept and gets `default`, CreateCertificate issues
// again, and a newer serving certificate is kept on disk. A file altered on disk is refused.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  CaAudit,
  type CertificateServiceClient,
  createCertificate,
  createCertificateServiceClient,
  createCsr,
  createIntermediateCa,
  createRootCa,
  parseKek,
  SigningCa,
  WorkloadCertificateIssuer,
} from '@meridian/ca';
import { decodeResource, TypeUrl } from '@meridian/envoy';
import {
  countByBackend,
  type EchoBackend,
  type EtcdCluster,
  eventually,
  freePorts,
  GrpcClientProcess,
  SimulatedProxy,
  type SotwResponseView,
  startEchoBackend,
  startEtcd,
} from '@meridian/testkit';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadServingMaterial, ServingMaterialError, servingMaterialFile } from '../src/serving-material.js';
import { installClusterCaForTest, ReplicaProcess, snapshotWritten, type TestClusterCa } from './harness.js';
import { issueWorkloadCertificate } from './mtls-fixtures.js';

const HOST = 'echo.shop.svc.cluster.local';
const PORT = 7070;
const TARGET = `${HOST}:${PORT}`;
const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

let tmp: string;
let etcd: EtcdCluster;
let replica: ReplicaProcess;
let ca: TestClusterCa;
let caPort: number;
let backend: EchoBackend | undefined;
let relay: grpc.Server | undefined;
let relayPort: number;
const clients: grpc.Client[] = [];
const proxies: SimulatedProxy[] = [];
const grpcClients: GrpcClientProcess[] = [];
let identity: { keyPem: string; chainPem: string };

const pass = (x: Buffer) => x;
const raw = {
  requestSerialize: pass,
  requestDeserialize: pass,
  responseSerialize: pass,
  responseDeserialize: pass,
};

async function bind(server: grpc.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
}

const echo = (port: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: shop}
spec:
  hosts: [${HOST}]
  ports: [{number: ${PORT}, name: grpc, protocol: GRPC}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{address: 127.0.0.1, ports: {grpc: ${port}}}]
`;

/** mTLS credentials of the workload identity (or of another mesh's root, to be refused). */
function mtls(who = identity, roots = ca.root.certPem): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(Buffer.from(roots), Buffer.from(who.keyPem), Buffer.from(who.chainPem));
}

const caAddress = () => `127.0.0.1:${caPort}`;

function channel(creds = mtls()): grpc.Client {
  const c = new grpc.Client(caAddress(), creds, { 'grpc.ssl_target_name_override': 'localhost' });
  clients.push(c);
  return c;
}

function certificateClient(creds = mtls()): CertificateServiceClient {
  const c = createCertificateServiceClient(caAddress(), creds, {
    'grpc.ssl_target_name_override': 'localhost',
  });
  clients.push(c);
  return c;
}

/** A proxy of shop/client over mTLS: CDS and the two SDS secrets. */
function proxy(creds = mtls()): SimulatedProxy {
  const p = new SimulatedProxy({
    nodeId: `sidecar~127.0.0.1~probe-${proxies.length}.shop~shop.svc.cluster.local`,
    metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1' },
    variant: 'sotw',
    subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.Secret, names: ['default', 'ROOTCA'] }],
    record: true,
  });
  p.connect(channel(creds));
  proxies.push(p);
  return p;
}

/** The names of the Secrets in the proxy's last SDS response. */
function secretNames(p: SimulatedProxy): string[] {
  const last = p.responses.filter((r) => r.typeUrl === TypeUrl.Secret).at(-1) as SotwResponseView | undefined;
  return (last?.resources ?? [])
    .map((b) => (decodeResource(TypeUrl.Secret, b) as { name: string }).name)
    .sort();
}

/**
 * The ADS stream of a local plaintext client, relayed byte for byte over mTLS to the replica's TLS
 * port with the workload certificate (what meridian-agent does, without its replica discovery).
 */
async function startRelay(): Promise<number> {
  const server = new grpc.Server();
  const upstream = channel();
  server.addService(
    { StreamAggregatedResources: { path: ADS, requestStream: true, responseStream: true, ...raw } },
    {
      StreamAggregatedResources: (down: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        const up = upstream.makeBidiStreamRequest(ADS, pass, pass);
        down.on('data', (m: Buffer) => up.write(m));
        down.on('end', () => up.end());
        down.on('error', () => up.cancel());
        up.on('data', (m: Buffer) => down.write(m));
        up.on('error', (e: grpc.ServiceError) => down.destroy(e));
        up.on('end', () => down.end());
      },
    },
  );
  relay = server;
  return bind(server, 0);
}

async function grpcXdsClient(id: string): Promise<GrpcClientProcess> {
  const c = await GrpcClientProcess.start({
    xds_servers: [
      {
        server_uri: `127.0.0.1:${relayPort}`,
        channel_creds: [{ type: 'insecure' }],
        server_features: ['xds_v3'],
      },
    ],
    node: {
      id: `sidecar~127.0.0.1~${id}.shop~shop.svc.cluster.local`,
      metadata: { NAMESPACE: 'shop', GENERATOR: 'grpc', CLUSTER_ID: 'c1' },
      locality: { region: 'region1', zone: 'zone1' },
    },
    server_listener_resource_name_template: 'xds.istio.io/grpc/lds/inbound/%s',
  });
  grpcClients.push(c);
  return c;
}

/** shop/client's identity in a certificate of another mesh's root (and its own intermediate). */
function strangerIdentity(): { keyPem: string; chainPem: string } {
  const other = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
  const issuer = new WorkloadCertificateIssuer(
    SigningCa.fromMaterial(
      createIntermediateCa({
        root: other,
        clusterId: 'c1',
        trustDomain: 'cluster.local',
        keyType: 'ecdsa-p256',
      }),
    ),
    { audit: new CaAudit(pino({ level: 'silent' })) },
  );
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const out = issuer.issue({
    identity: { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'client' },
    csrPem: createCsr({ key: privateKey, uris: ['spiffe://cluster.local/ns/shop/sa/client'] }),
    validitySeconds: 3600,
    via: 'token',
  });
  return {
    keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    chainPem: out.certChain.slice(0, -1).join(''),
  };
}

let servingFile: string;
let applied: number;
let kekFile: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'meridian-restart-tls-'));
  etcd = await startEtcd();
  kekFile = join(tmp, 'kek');
  ca = await installClusterCaForTest(etcd.endpoints, 'test', kekFile);
  const [xdsPort, adminPort, port] = (await freePorts(3)) as [number, number, number];
  caPort = port;
  backend = await startEchoBackend('echo-v1', '/meridian.test.Echo/Call');
  const backendPort = backend.port;
  const snapshotDir = join(tmp, 'snapshot');
  servingFile = servingMaterialFile(snapshotDir, 'test', 'c1');
  replica = new ReplicaProcess({
    id: 'a',
    etcd: etcd.endpoints,
    xdsPort,
    adminPort,
    extraArgs: [
      ...['--debounce-ms', '20', '--store-timeout-ms', '1000', '--snapshot-dir', snapshotDir],
      ...['--ca-address', caAddress(), '--ca-kek-file', kekFile],
      // The TLS port is the only xDS port, as `meridian up` runs replicas.
      ...['--xds-address', 'off'],
    ],
  });
  await replica.start();
  const res = await replica.apply(echo(backendPort));
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  applied = res.body.revision as number;
  // The workload identity shop/client, issued by the replica's CreateCertificate with a bootstrap token.
  const who = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'client' };
  const tlsOnly = grpc.credentials.createSsl(Buffer.from(ca.root.certPem));
  const cert = await issueWorkloadCertificate(certificateClient(tlsOnly), ca.signingKeyPem, who);
  identity = { keyPem: cert.keyPem, chainPem: cert.chainPem };
  relayPort = await startRelay();
}, 180_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') console.log(`--- replica\n${replica?.output.slice(-40).join('\n')}`);
});

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  await Promise.all(grpcClients.map((c) => c.stop()));
  for (const c of clients) c.close();
  relay?.forceShutdown();
  backend?.server.forceShutdown();
  await replica?.kill('SIGKILL');
  await etcd?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe('the TLS port of a replica restarted while etcd is down (issue 18)', () => {
  let keptBefore: Date;

  it('keeps its serving certificate on disk: mode 0600, the key sealed (no PEM key in the file)', async () => {
    await eventually('serving certificate kept on disk', () => statSync(servingFile).size > 0, 30_000, 50);
    expect(statSync(servingFile).mode & 0o777).toBe(0o600);
    const text = readFileSync(servingFile, 'utf8');
    expect(text).not.toContain('PRIVATE KEY');
    const m = await loadServingMaterial(servingFile, parseKek(ca.kekText, 'test'), 'c1');
    expect(m.trustBundlePem).toBe(ca.root.certPem);
    expect(m.trustDomain).toBe('cluster.local');
    keptBefore = m.writtenAt;
    // The config snapshot to serve from disk has the echo service (the replica serves config from it).
    const lkg = join(tmp, 'snapshot', 'test.c1.lkg');
    await snapshotWritten(lkg, applied);
  }, 60_000);

  it('SIGKILLed and restarted with etcd down: serves a grpc-js-xds client and an mTLS proxy on its TLS port', async () => {
    await replica.kill('SIGKILL');
    await Promise.all(etcd.members.map((m) => m.kill('SIGKILL')));
    await replica.start(60_000);
    expect(
      replica.output.some((l) => l.includes('the TLS port serves with the certificate kept on disk')),
    ).toBe(true);

    // A real grpc-js-xds client, its xDS over mTLS to the TLS port: its calls succeed.
    const client = await grpcXdsClient('fresh');
    await client.ready(TARGET, { timeoutMs: 30_000 });
    expect(countByBackend(await client.many(TARGET, 20))).toEqual({ 'echo-v1': 20 });

    // A proxy presenting its workload certificate: config and ROOTCA, no `default` (nothing issued).
    const p = proxy();
    await eventually(
      'CDS and SDS answered',
      () => secretNames(p).length > 0 && (p.state.get(TypeUrl.Cluster)?.resources.size ?? 0) > 0,
      30_000,
      50,
    );
    expect(secretNames(p)).toEqual(['ROOTCA']);
    await expect(
      createCertificate(certificateClient(), {
        csr: createCsr({ key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, uris: [] }),
      }),
    ).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });

    // A client claiming the same identity with a certificate of another root is not authenticated:
    // served as anonymous (ROOTCA only), now and after the CA loads.
    const stranger = proxy(mtls(strangerIdentity(), ca.root.certPem));
    await eventually('the stranger answered', () => secretNames(stranger).length > 0, 30_000, 50);
    expect(secretNames(stranger)).toEqual(['ROOTCA']);

    // etcd returns: the CA loads on the same listener, the proxy's stream is kept and gets `default`.
    await Promise.all(etcd.members.map((m) => m.restart()));
    await eventually(
      '`default` pushed once the CA loaded',
      () => secretNames(p).includes('default'),
      60_000,
      50,
    );
    expect(p.ended).toBeUndefined();
    expect(secretNames(stranger)).toEqual(['ROOTCA']);
    const reissued = await createCertificate(certificateClient(), {
      csr: createCsr({
        key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
        uris: ['spiffe://cluster.local/ns/shop/sa/client'],
      }),
    });
    expect(reissued.length).toBeGreaterThan(1);
    await eventually(
      'a newer serving certificate kept on disk',
      async () => {
        const m = await loadServingMaterial(servingFile, parseKek(ca.kekText, 'test'), 'c1');
        return m.writtenAt > keptBefore;
      },
      30_000,
      50,
    );
    expect(countByBackend(await client.many(TARGET, 10))).toEqual({ 'echo-v1': 10 });
  }, 240_000);

  it('a file altered on disk, or opened with another KEK, is refused', async () => {
    const kek = parseKek(ca.kekText, 'test');
    const stored = JSON.parse(readFileSync(servingFile, 'utf8')) as Record<string, string>;
    const other = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
    const altered = join(tmp, 'altered.serving.json');
    writeFileSync(
      altered,
      JSON.stringify({ ...stored, trustBundlePem: stored.trustBundlePem + other.certPem }),
    );
    await expect(loadServingMaterial(altered, kek, 'c1')).rejects.toThrow(
      `serving certificate on disk refused (${altered}): the key does not open with this key-encryption key (another KEK, or the file was altered)`,
    );
    await expect(loadServingMaterial(servingFile, Buffer.alloc(32, 7), 'c1')).rejects.toBeInstanceOf(
      ServingMaterialError,
    );
    await expect(loadServingMaterial(servingFile, kek, 'c2')).rejects.toThrow(
      'foreign: written for cluster "c1", this replica is cluster "c2"',
    );
    await expect(
      loadServingMaterial(servingFile, kek, 'c1', new Date(Date.now() + 400 * 86_400_000)),
    ).rejects.toThrow(/the serving certificate is not valid now/);
  });
});
