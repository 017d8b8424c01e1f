// The upstream peer is checked for its exact identity, not for merely being in the trust domain
// (issue 10, item 6; Istio's buildUpstreamTLSSettings): a WorkloadEntry of service `echo` declares
// `serviceAccount: echo`, so a client's ISTIO_MUTUAL cluster accepts only a server proving
// spiffe://cluster.local/ns/shop/sa/echo. A real etcd with the cluster CA, meridiand in-process, and two
// @grpc/grpc-js-xds processes (testkit's GrpcClientProcess with xDS credentials): the echo server,
// whose mesh certificate (from the replica's CreateCertificate) is for `sa/impostor` or `sa/echo`, and
// the client, calling xds:///echo.shop.svc.cluster.local:7070. An impostor is refused, the real echo
// is answered, and a DestinationRule `subjectAltNames` naming the impostor makes it accepted. The
// Envoy sidecar CDS (a SimulatedProxy) carries exactly the expected `exact` SANs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createCertificateServiceClient } from '@meridian/ca';
import { decodeResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
import {
  type EtcdCluster,
  freePort,
  GrpcClientProcess,
  SimulatedProxy,
  type SotwResponseView,
  startEtcd,
} from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import { adminFetch, installClusterCaForTest } from './harness.js';
import {
  issueWorkloadCertificate,
  upstreamValidationContext,
  writeWorkloadCertificateFiles,
} from './mtls-fixtures.js';

/** Every admin API call of this file (config is applied through the replica's admin HTTP API, with
 * the harness's admin token and a YAML content-type). */
async function apply(r: Replica, yaml: string): Promise<void> {
  const res = await adminFetch(r, '/apis/v1/apply', { method: 'POST', body: yaml });
  expect(res.status, await res.clone().text()).toBe(200);
}

const TD = 'cluster.local';
const NS = 'shop';
const HOST = `echo.${NS}.svc.cluster.local`;
const PORT = 7070;
const TARGET = `${HOST}:${PORT}`;
const CLUSTER = `outbound|${PORT}||${HOST}`;
const uri = (sa: string) => `spiffe://${TD}/ns/${NS}/sa/${sa}`;
const tmp = mkdtempSync(join(tmpdir(), 'meridian-mtls-identity-'));
let etcd: EtcdCluster;
let replica: Replica | undefined;
let serverPort = 0;
let client: GrpcClientProcess | undefined;
let server: GrpcClientProcess | undefined;
let sidecar: SimulatedProxy | undefined;
const channels: grpc.Client[] = [];

const SERVICE = () => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: ${NS}}
spec:
  hosts: [${HOST}]
  ports: [{number: ${PORT}, name: grpc, protocol: GRPC}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-0, namespace: ${NS}}
spec:
  address: 127.0.0.1
  ports: {grpc: ${serverPort}}
  labels: {app: echo}
  locality: r1/z1
  serviceAccount: echo
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: ${NS}}
spec:
  mtls: {mode: STRICT}
`;

const destinationRule = (subjectAltNames?: string[]) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: ${NS}}
spec:
  host: ${HOST}
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
${subjectAltNames ? `      subjectAltNames: [${subjectAltNames.join(', ')}]\n` : ''}`;

/** A workload certificate for `sa` from the replica's CreateCertificate (bootstrap token), as files. */
async function certificateFiles(
  ca: ReturnType<typeof createCertificateServiceClient>,
  signingKeyPem: string,
  sa: string,
): Promise<string> {
  const cert = await issueWorkloadCertificate(ca, signingKeyPem, {
    trustDomain: TD,
    namespace: NS,
    serviceAccount: sa,
  });
  return writeWorkloadCertificateFiles(join(tmp, sa), cert);
}

/** The grpc-js-xds bootstrap of a workload in `shop` whose `default` certificate provider reads `dir`. */
function bootstrap(pod: string, dir: string): object {
  return {
    xds_servers: [
      { server_uri: replica!.xdsAddress, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] },
    ],
    node: {
      id: `sidecar~127.0.0.1~${pod}.${NS}~${NS}.svc.cluster.local`,
      metadata: { NAMESPACE: NS, GENERATOR: 'grpc', CLUSTER_ID: 'c1' },
      locality: { region: 'r1', zone: 'z1' },
    },
    server_listener_resource_name_template: 'xds.istio.io/grpc/lds/inbound/%s',
    certificate_providers: {
      default: {
        plugin_name: 'file_watcher',
        config: {
          certificate_file: join(dir, 'cert-chain.pem'),
          private_key_file: join(dir, 'key.pem'),
          ca_certificate_file: join(dir, 'root-cert.pem'),
          refresh_interval: '1s',
        },
      },
    },
  };
}

const dirs: Record<string, string> = {};

/** (Re)starts the echo server process holding the certificate of `sa`; resolves once it serves. */
async function serveAs(sa: string): Promise<void> {
  await server?.stop();
  server = await GrpcClientProcess.start(bootstrap(`echo-${sa}`, dirs[sa]!), { xdsCredentials: true });
  await server.serve(serverPort, `echo as ${sa}`);
}

/** The sidecar's last `outbound|7070||echo` cluster, decoded. */
function sidecarCluster(): EnvoyJson | undefined {
  const r = sidecar?.responses.findLast((x) => x.typeUrl === TypeUrl.Cluster) as SotwResponseView | undefined;
  for (const bytes of r?.resources ?? []) {
    const c = decodeResource(TypeUrl.Cluster, bytes);
    if (c.name === CLUSTER) return c;
  }
  return undefined;
}

const sansOf = (c: EnvoyJson | undefined) => upstreamValidationContext(c)?.match_subject_alt_names;

/** Waits until the sidecar's echo cluster checks exactly `sans`; returns them. */
async function sidecarSans(sans: unknown[]): Promise<unknown> {
  const end = Date.now() + 30_000;
  for (;;) {
    const got = sansOf(sidecarCluster());
    if (JSON.stringify(got) === JSON.stringify(sans) || Date.now() > end) return got;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The client's calls after a new channel (a channel keeps its connection backoff across servers). */
async function freshCalls(n: number) {
  await client!.close(TARGET);
  return client!.many(TARGET, n, { concurrency: 4, deadlineMs: 3000 });
}

/** Calls until one fails with a handshake (SAN) error, i.e. until the client has its mTLS cluster. */
async function refusedByIdentity(): Promise<string> {
  const end = Date.now() + 30_000;
  let last = '';
  for (;;) {
    const r = await client!.call(TARGET, { deadlineMs: 2000 });
    last = `${r.code} ${r.backend ?? r.message ?? ''}`;
    if (r.code === grpc.status.UNAVAILABLE && /subject alternative name/i.test(r.message ?? ''))
      return r.message!;
    if (Date.now() > end) throw new Error(`no call refused for the server identity; last: ${last}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

beforeAll(async () => {
  etcd = await startEtcd();
  const { root, signingKeyPem } = await installClusterCaForTest(
    etcd.endpoints,
    'mtlsident',
    join(tmp, 'kek'),
    TD,
  );
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'mtlsident', '--cluster-id', 'c1', '--replica-id', 'ident-1'],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--monitoring-address', 'off'],
        ...['--ca-address', '127.0.0.1:0', '--ca-kek-file', join(tmp, 'kek')],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  const ca = createCertificateServiceClient(
    replica.caAddress,
    grpc.credentials.createSsl(Buffer.from(root.certPem)),
    { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' },
  );
  try {
    for (const sa of ['echo', 'impostor', 'client']) dirs[sa] = await certificateFiles(ca, signingKeyPem, sa);
  } finally {
    ca.close();
  }
  serverPort = await freePort();
  await apply(replica, `${SERVICE()}---\n${destinationRule()}`);

  // An Envoy sidecar of the client's namespace, watching clusters.
  const xds = new grpc.Client(replica.xdsAddress, grpc.credentials.createInsecure());
  channels.push(xds);
  sidecar = new SimulatedProxy({
    nodeId: `sidecar~10.1.0.9~web-0.${NS}~${NS}.svc.cluster.local`,
    metadata: { NAMESPACE: NS, CLUSTER_ID: 'c1', LABELS: { app: 'web' } },
    variant: 'sotw',
    subscriptions: [{ typeUrl: TypeUrl.Cluster }],
    record: true,
  });
  sidecar.connect(xds);

  client = await GrpcClientProcess.start(bootstrap('client-0', dirs.client!), { xdsCredentials: true });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await server?.stop();
  sidecar?.disconnect();
  for (const c of channels) c.close();
  await replica?.stop();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('upstream mTLS checks the exact identity of the destination', () => {
  it('the sidecar CDS checks exactly the SPIFFE id of the WorkloadEntry service account', async () => {
    expect(await sidecarSans([{ exact: uri('echo') }])).toEqual([{ exact: uri('echo') }]);
  });

  it('a server with a valid mesh certificate for sa/impostor is refused on every call', async () => {
    await serveAs('impostor');
    expect(await refusedByIdentity()).toMatch(/subject alternative name/i);
    const results = await freshCalls(20);
    expect(results.filter((r) => r.code === grpc.status.OK)).toEqual([]);
    for (const r of results) {
      expect(r.code).toBe(grpc.status.UNAVAILABLE);
      expect(r.message).toMatch(/subject alternative name/i);
    }
  }, 90_000);

  it('the server holding the sa/echo certificate is answered', async () => {
    await serveAs('echo');
    await client!.close(TARGET);
    await client!.ready(TARGET, { timeoutMs: 30_000 });
    const results = await client!.many(TARGET, 20, { concurrency: 4, deadlineMs: 3000 });
    expect(results.map((r) => r.backend ?? `${r.code} ${r.message}`)).toEqual(
      Array.from({ length: 20 }, () => 'echo as echo'),
    );
  }, 90_000);

  it('a DestinationRule subjectAltNames naming the impostor replaces the service accounts', async () => {
    await serveAs('impostor');
    await refusedByIdentity();
    await apply(replica!, destinationRule([uri('impostor')]));
    expect(await sidecarSans([{ exact: uri('impostor') }])).toEqual([{ exact: uri('impostor') }]);
    await client!.close(TARGET);
    await client!.ready(TARGET, { timeoutMs: 30_000 });
    const results = await client!.many(TARGET, 20, { concurrency: 4, deadlineMs: 3000 });
    expect(results.map((r) => r.backend ?? `${r.code} ${r.message}`)).toEqual(
      Array.from({ length: 20 }, () => 'echo as impostor'),
    );
  }, 90_000);

  it('a new service account among the endpoints gives the sidecar a new cluster naming it', async () => {
    await apply(
      replica!,
      `${destinationRule()}---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-1, namespace: ${NS}}
spec:
  address: 127.0.0.2
  ports: {grpc: ${serverPort}}
  labels: {app: echo}
  locality: r1/z1
  serviceAccount: echo-v2
`,
    );
    const expected = [{ exact: uri('echo') }, { exact: uri('echo-v2') }];
    expect(await sidecarSans(expected)).toEqual(expected);
  }, 60_000);
});
