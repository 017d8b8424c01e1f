// Telemetry on the CA's mTLS port (issue 17, item 4): a replica with the cluster CA and
// `--telemetry-plaintext off`. A reporter streams Envoy-encoded access logs over mTLS with a
// workload certificate from the replica's CreateCertificate: its identity is the reporter's, the
// downstream peer certificate of its inbound entries makes the edge mTLS and names the source
// principal. A certificate of another identity claiming the payments node is refused
// (PERMISSION_DENIED), as are TLS without a client certificate and the plaintext port
// (UNAUTHENTICATED); none of them adds a series.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { decodeResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
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
import { ALL_TYPES, adminFetch, installClusterCaForTest, xdsClient } from './harness.js';
import { issueWorkloadCertificate, withCertificateClient } from './mtls-fixtures.js';

const TD = 'cluster.local';
const FRONTEND = FRONTEND_IP;
const PAYMENTS = PAYMENTS_IP;
const tmp = mkdtempSync(join(tmpdir(), 'meridian-telemetry-mtls-'));
let etcd: EtcdCluster | undefined;
let replica: Replica | undefined;
let rootPem = '';
const creds: Record<string, { key: string; chain: string }> = {};

const CONFIG = `${PAYMENTS_YAML}---\n${FRONTEND_YAML}`;
const TELEMETRY_YAML = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: meridian}]}]
`;

const tls = (who?: string) =>
  who
    ? grpc.credentials.createSsl(
        Buffer.from(rootPem),
        Buffer.from(creds[who]!.key),
        Buffer.from(creds[who]!.chain),
      )
    : grpc.credentials.createSsl(Buffer.from(rootPem));
const TLS_OPTIONS = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };

const inbound = () =>
  httpEntry({
    direction: 'inbound',
    downstream: `${FRONTEND}:41000`,
    downstreamLocal: `${PAYMENTS}:8080`,
    upstream: '127.0.0.1:8080',
    upstreamCluster: 'inbound|8080||',
    grpcStatus: '0',
    peerUri: `spiffe://${TD}/ns/shop/sa/frontend`,
  });
const PAYMENTS_NODE = sidecarNodeId(PAYMENTS, 'payments-v2', 'pay');

async function metrics(): Promise<string> {
  return (await fetch(`http://${replica!.monitoringAddress}/metrics`)).text();
}
const istioLines = (text: string) => text.split('\n').filter((l) => l.startsWith('istio_requests_total{'));

beforeAll(async () => {
  etcd = await startEtcd();
  const { root, signingKeyPem } = await installClusterCaForTest(
    etcd.endpoints,
    'telmtls',
    join(tmp, 'kek'),
    TD,
  );
  rootPem = root.certPem;
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'telmtls', '--cluster-id', 'c1', '--replica-id', 'tm-1'],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
        ...['--monitoring-address', '127.0.0.1:0', '--snapshot-dir', 'off'],
        ...['--ca-address', '127.0.0.1:0', '--ca-kek-file', join(tmp, 'kek'), '--telemetry-plaintext', 'off'],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  const res = await adminFetch(replica, '/apis/v1/apply', { method: 'POST', body: CONFIG });
  expect(res.status, await res.clone().text()).toBe(200);
  await withCertificateClient(replica.caAddress, rootPem, async (ca) => {
    for (const [ns, sa] of [
      ['pay', 'payments'],
      ['shop', 'frontend'],
    ] as const) {
      const cert = await issueWorkloadCertificate(ca, signingKeyPem, {
        trustDomain: TD,
        namespace: ns,
        serviceAccount: sa,
      });
      creds[sa] = { key: cert.keyPem, chain: cert.chainPem };
    }
  });
  const wait = Date.now() + 30_000;
  while ((replica.snapshot?.registry.services.length ?? 0) < 2 && Date.now() < wait)
    await new Promise((r) => setTimeout(r, 50));
}, 120_000);

afterAll(async () => {
  await replica?.stop();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('telemetry on the mTLS port', () => {
  it('refuses the plaintext port (off), TLS without a client certificate, and an identity claiming another workload', async () => {
    const msg = encodeAccessLogs({ http: [inbound()] }, PAYMENTS_NODE);
    const plain = await streamAccessLogs(replica!.xdsAddress, [msg]);
    expect(plain.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(plain.details).toMatch(/unauthenticated reporters are off \(--telemetry-plaintext\)/);
    const anonymous = await streamAccessLogs(replica!.caAddress, [msg], tls(), TLS_OPTIONS);
    expect(anonymous.code).toBe(grpc.status.UNAUTHENTICATED);
    // frontend's certificate, reporting as the payments sidecar.
    const impostor = await streamAccessLogs(replica!.caAddress, [msg], tls('frontend'), TLS_OPTIONS);
    expect(impostor.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(impostor.details).toBe(
      `identifier.node.id: ${PAYMENTS} is the address of workload pay/payments-v2 (service account payments), not of the caller spiffe://${TD}/ns/shop/sa/frontend`,
    );
    expect(istioLines(await metrics())).toEqual([]);
  });

  it("the reporter's certificate and the peer certificate make an mTLS edge with both principals", async () => {
    const s = await streamAccessLogs(
      replica!.caAddress,
      [encodeAccessLogs({ http: Array.from({ length: 7 }, inbound) }, PAYMENTS_NODE)],
      tls('payments'),
      TLS_OPTIONS,
    );
    expect(s).toEqual({ code: grpc.status.OK, details: '' });
    const lines = istioLines(await metrics());
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    for (const label of [
      'reporter="destination"',
      'source_workload="frontend-v1"',
      `source_principal="spiffe://${TD}/ns/shop/sa/frontend"`,
      'destination_workload="payments-v2"',
      `destination_principal="spiffe://${TD}/ns/pay/sa/payments"`,
      'request_protocol="grpc"',
      'grpc_response_status="0"',
      'connection_security_policy="mutual_tls"',
    ])
      expect(line).toContain(label);
    expect(line).toMatch(/ 7$/);
    const graph = (await (await adminFetch(replica!, '/debug/graph')).json()) as ServiceGraph;
    expect(graph.edges).toEqual([
      expect.objectContaining({
        source: 'workload:c1/shop/frontend-v1',
        destination: 'service:c1/pay/payments',
        protocol: 'grpc',
        mtls: true,
        requests: 7,
        errorRate: 0,
      }),
    ]);
  });

  it("a sidecar is told to send its access logs to the CA's mTLS port with its workload certificate", async () => {
    const res = await adminFetch(replica!, '/apis/v1/apply', { method: 'POST', body: TELEMETRY_YAML });
    expect(res.status, await res.clone().text()).toBe(200);
    const proxy = new SimulatedProxy({
      nodeId: PAYMENTS_NODE,
      metadata: { NAMESPACE: 'pay', CLUSTER_ID: 'c1', LABELS: { app: 'payments', version: 'v2' } },
      variant: 'delta',
      subscriptions: ALL_TYPES.map((typeUrl) => ({ typeUrl })),
      record: true,
    });
    const client = xdsClient(replica!.xdsAddress);
    proxy.connect(client);
    try {
      let cluster: EnvoyJson | undefined;
      await eventually(
        'the access-log cluster',
        () => {
          for (const r of proxy.responses) {
            if (r.typeUrl !== TypeUrl.Cluster || !('resources' in r)) continue;
            for (const x of r.resources as readonly { name: string; value: Uint8Array | undefined }[])
              if (x.name === 'meridian-accesslog' && x.value)
                cluster = decodeResource(TypeUrl.Cluster, x.value) as EnvoyJson;
          }
          return cluster !== undefined;
        },
        30_000,
        50,
      );
      const [host, port] = [replica!.caAddress.split(':')[0], Number(replica!.caAddress.split(':')[1])];
      expect(JSON.stringify(cluster!.load_assignment)).toContain(`"port_value":${port}`);
      expect(cluster!.transport_socket).toMatchObject({
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          common_tls_context: {
            tls_certificate_sds_secret_configs: [{ name: 'default' }],
            combined_validation_context: {
              default_validation_context: {
                match_typed_subject_alt_names: [{ san_type: 'IP_ADDRESS', matcher: { exact: host } }],
              },
              validation_context_sds_secret_config: { name: 'ROOTCA' },
            },
          },
        },
      });
    } finally {
      proxy.disconnect();
      client.close();
    }
  });
});
