// A proxyless gRPC call over mTLS configured only through the replica (issue 6, item 5):
// @grpc/grpc-js-xds (the independent xDS client) bootstraps against a meridiand whose cluster CA is
// installed in a real etcd; its workload certificate comes from that replica's CreateCertificate (a
// bootstrap token); PeerAuthentication STRICT gives the xDS server's listener a DownstreamTlsContext and
// DestinationRule ISTIO_MUTUAL gives the client's cluster an UpstreamTlsContext (file_watcher
// provider `default`). The client reads its bootstrap once per process: this file is one process.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { type EtcdCluster, eventually, freePort, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import { adminFetch, installClusterCaForTest } from './harness.js';
import {
  callPeer,
  issueWorkloadCertificate,
  startPeerIdentityXdsServer,
  withCertificateClient,
  writeWorkloadCertificateFiles,
} from './mtls-fixtures.js';

const TD = 'cluster.local';
const HOST = 'echo.shop.svc.cluster.local';
const PORT = 7070;
const ECHO_URI = `spiffe://${TD}/ns/shop/sa/echo`;
const tmp = mkdtempSync(join(tmpdir(), 'meridian-mtls-grpc-'));
let etcd: EtcdCluster;
let replica: Replica | undefined;
let echo: grpcXds.XdsServer | undefined;
let serverPort = 0;
const clients: grpc.Client[] = [];

async function apply(r: Replica, yaml: string): Promise<void> {
  const res = await adminFetch(r, '/apis/v1/apply', { method: 'POST', body: yaml });
  expect(res.status, await res.clone().text()).toBe(200);
}

beforeAll(async () => {
  etcd = await startEtcd();
  const { root, signingKeyPem } = await installClusterCaForTest(
    etcd.endpoints,
    'mtlsgrpc',
    join(tmp, 'kek'),
    TD,
  );
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'mtlsgrpc', '--cluster-id', 'c1', '--replica-id', 'grpc-1'],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--monitoring-address', 'off'],
        ...['--ca-address', '127.0.0.1:0', '--ca-kek-file', join(tmp, 'kek')],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );

  // The workload's certificate, from the replica's CreateCertificate with a bootstrap token.
  await withCertificateClient(replica.caAddress, root.certPem, async (ca) => {
    const cert = await issueWorkloadCertificate(ca, signingKeyPem, {
      trustDomain: TD,
      namespace: 'shop',
      serviceAccount: 'echo',
    });
    expect(cert.uri).toBe(ECHO_URI);
    writeWorkloadCertificateFiles(tmp, cert);
  });

  serverPort = await freePort();
  await apply(
    replica,
    `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: shop}
spec:
  hosts: [${HOST}]
  ports: [{number: ${PORT}, name: grpc, protocol: GRPC}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{address: 127.0.0.1, ports: {grpc: ${serverPort}}, locality: r1/z1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: shop}
spec:
  host: ${HOST}
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec:
  mtls: {mode: STRICT}
`,
  );

  process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
    xds_servers: [
      { server_uri: replica.xdsAddress, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] },
    ],
    node: {
      id: 'sidecar~127.0.0.1~echo-0.shop~shop.svc.cluster.local',
      metadata: { NAMESPACE: 'shop', GENERATOR: 'grpc', CLUSTER_ID: 'c1' },
      locality: { region: 'r1', zone: 'z1' },
    },
    server_listener_resource_name_template: 'xds.istio.io/grpc/lds/inbound/%s',
    certificate_providers: {
      default: {
        plugin_name: 'file_watcher',
        config: {
          certificate_file: join(tmp, 'cert-chain.pem'),
          private_key_file: join(tmp, 'key.pem'),
          ca_certificate_file: join(tmp, 'root-cert.pem'),
          refresh_interval: '1s',
        },
      },
    },
  });
  grpcXds.register();

  echo = await startPeerIdentityXdsServer(serverPort);
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.close();
  echo?.forceShutdown();
  await replica?.stop();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('proxyless gRPC mTLS through meridiand (@grpc/grpc-js-xds)', () => {
  it('STRICT + ISTIO_MUTUAL: the call goes over mTLS and the server sees the client SPIFFE id', async () => {
    const c = new grpc.Client(
      `xds:///${HOST}:${PORT}`,
      new grpcXds.XdsChannelCredentials(grpc.credentials.createInsecure()),
    );
    clients.push(c);
    expect(await eventually('a call over mTLS', () => callPeer(c), 30_000, 100)).toBe(`URI:${ECHO_URI}`);
  });

  it('STRICT: a plaintext client is refused', async () => {
    const plain = new grpc.Client(`127.0.0.1:${serverPort}`, grpc.credentials.createInsecure());
    clients.push(plain);
    const err = (await callPeer(plain).then(
      () => undefined,
      (e: unknown) => e,
    )) as grpc.ServiceError | undefined;
    expect(err?.code).toBe(grpc.status.UNAVAILABLE);
  });
});
