// @grpc/grpc-js-xds (an independent xDS client) with xDS security: a client whose certificate comes
// from cluster A's intermediate calls an xDS-enabled server whose certificate comes from cluster B's,
// over mTLS configured only through xDS (file_watcher certificate providers, XdsChannelCredentials,
// XdsServerCredentials). The client reads its bootstrap once per process: this file is one process.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, credentials, status } from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { type EnvoyJson, TypeUrl } from '@meridian/envoy';
import {
  clusterName,
  eventually,
  freePort,
  listenerName,
  nextSnapshot,
  type TestService,
  translateServices,
} from '@meridian/testkit';
import { grpcServerTransportSocket, upstreamTransportSocket } from '@meridian/translate';
import { ResourceCache, type StaticSnapshot, XdsServer } from '@meridian/xds';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { id, makeMesh, uri, workload } from './ca-mesh.js';
import { callPeer, startPeerIdentityXdsServer } from './mtls-fixtures.js';

const HOST = 'echo.shop.svc.cluster.local';
const SERVICE_PORT = 7070;
const TARGET = `xds:///${listenerName({ host: HOST, port: SERVICE_PORT })}`;

/** The server listener a proxyless gRPC server asks for (Istio's name template), with its TLS. */
function serverListener(port: number, transportSocket: EnvoyJson | undefined): EnvoyJson {
  const routeName = `inbound|${port}||`;
  return {
    name: `xds.istio.io/grpc/lds/inbound/127.0.0.1:${port}`,
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [
      {
        name: routeName,
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type':
                'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: routeName,
              route_config: {
                name: routeName,
                virtual_hosts: [
                  {
                    name: routeName,
                    domains: ['*'],
                    routes: [{ match: { prefix: '/' }, non_forwarding_action: {} }],
                  },
                ],
              },
              http_filters: [
                {
                  name: 'envoy.filters.http.router',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
                  },
                },
              ],
            },
          },
        ],
        ...(transportSocket ? { transport_socket: transportSocket } : {}),
      },
    ],
  };
}

describe('proxyless gRPC mTLS across clusters through Meridian xDS (@grpc/grpc-js-xds)', () => {
  const mesh = makeMesh(['east', 'west']);
  const client = workload(mesh.issuers.east!, id('shop', 'frontend'));
  const server = workload(mesh.issuers.west!, id('shop', 'echo'));
  const dir = mkdtempSync(join(tmpdir(), 'meridian-ca-xds-'));
  const cache = new ResourceCache();
  let snapshot: StaticSnapshot | undefined;
  let xds: XdsServer;
  let echo: grpcXds.XdsServer;
  let serverPort = 0;
  const clients: Client[] = [];

  const files = (name: string, w: typeof client) => {
    writeFileSync(join(dir, `${name}-cert-chain.pem`), w.certChain.slice(0, -1).join(''));
    writeFileSync(join(dir, `${name}-key.pem`), w.keyPem);
    writeFileSync(join(dir, `${name}-root-cert.pem`), w.bundlePem);
    return {
      plugin_name: 'file_watcher',
      config: {
        certificate_file: join(dir, `${name}-cert-chain.pem`),
        private_key_file: join(dir, `${name}-key.pem`),
        ca_certificate_file: join(dir, `${name}-root-cert.pem`),
        refresh_interval: '1s',
      },
    };
  };

  beforeAll(async () => {
    serverPort = await freePort();
    const svc: TestService = {
      host: HOST,
      port: SERVICE_PORT,
      endpoints: [{ address: '127.0.0.1', port: serverPort, region: 'r1', zone: 'z1' }],
    };
    const resources = translateServices([svc]);
    // Client side: DestinationRule ISTIO_MUTUAL for a proxyless client (cluster A's identity).
    const cluster = resources[TypeUrl.Cluster]![0]!;
    cluster.transport_socket = upstreamTransportSocket(
      {
        service: { hostname: HOST, namespace: 'shop' },
        port: { port: SERVICE_PORT },
        subset: '',
        tls: { mode: 'ISTIO_MUTUAL' },
        proxy: { kind: 'grpc' },
      },
      { trustDomain: 'cluster.local', peerAuthentications: [], grpcCertificateInstance: 'client' },
    )!;
    // Server side: PeerAuthentication STRICT for the gRPC server (cluster B's identity).
    resources[TypeUrl.Listener]!.push(
      serverListener(serverPort, grpcServerTransportSocket('STRICT', 'server')),
    );
    snapshot = nextSnapshot(cache, snapshot, 'v1', resources);
    xds = new XdsServer({ logger: pino({ level: 'silent' }), debounce: { quietMs: 10, maxDelayMs: 100 } });
    xds.update(snapshot);
    const xdsPort = await xds.listen('127.0.0.1', 0);

    process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
      xds_servers: [
        {
          server_uri: `127.0.0.1:${xdsPort}`,
          channel_creds: [{ type: 'insecure' }],
          server_features: ['xds_v3'],
        },
      ],
      node: {
        id: 'sidecar~127.0.0.1~app-0.shop~shop.svc.cluster.local',
        metadata: { NAMESPACE: 'shop', GENERATOR: 'grpc', CLUSTER_ID: 'east' },
        locality: { region: 'r1', zone: 'z1' },
      },
      server_listener_resource_name_template: 'xds.istio.io/grpc/lds/inbound/%s',
      certificate_providers: { client: files('client', client), server: files('server', server) },
    });
    grpcXds.register();

    echo = await startPeerIdentityXdsServer(serverPort);
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    echo?.forceShutdown();
    xds?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the client (cluster A) reaches the server (cluster B) over mTLS; the server sees its SPIFFE id', async () => {
    const c = new Client(TARGET, new grpcXds.XdsChannelCredentials(credentials.createInsecure()));
    clients.push(c);
    const seen = await eventually('a call over mTLS', async () => callPeer(c), 20_000, 100);
    expect(seen).toBe(`URI:${uri(id('shop', 'frontend'))}`);
    expect(clusterName({ host: HOST, port: SERVICE_PORT })).toBe(`outbound|${SERVICE_PORT}||${HOST}`);
  });

  it('STRICT: a plaintext client is refused', async () => {
    const plain = new Client(`127.0.0.1:${serverPort}`, credentials.createInsecure());
    clients.push(plain);
    const err = (await callPeer(plain).then(
      () => undefined,
      (e: unknown) => e,
    )) as { code: number } | undefined;
    expect(err?.code).toBe(status.UNAVAILABLE);
  });
});
