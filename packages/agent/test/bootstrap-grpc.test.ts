// grpcBootstrap run by the real thing: a @grpc/grpc-js-xds process (testkit GrpcClientProcess) reads
// the bootstrap this module writes, against an in-process meridiand whose cluster CA is installed in a
// real etcd. Its certificates are WorkloadCertificates' files (file_watcher provider `default`), so
// with PeerAuthentication STRICT and DestinationRule ISTIO_MUTUAL the call only succeeds over mTLS
// configured entirely by the bootstrap and xDS: the XdsServer's listener is found through Istio's
// server listener template, the client's cluster through the node's namespace.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createBootstrapToken } from '@meridian/ca';
import { Replica, resolveOptions } from '@meridian/server';
import { type EtcdCluster, freePort, GrpcClientProcess, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, installClusterCaForTest } from '../../server/test/harness.js';
import { grpcBootstrap } from '../src/bootstrap.js';
import { WorkloadCertificates } from '../src/certificates.js';

const TD = 'cluster.local';
const MESH = 'agentgrpc';
const HOST = 'echo.shop.svc.cluster.local';
const PORT = 7070;
const tmp = mkdtempSync(join(tmpdir(), 'meridian-agent-grpc-'));
let etcd: EtcdCluster;
let replica: Replica;
let certs: WorkloadCertificates;
let client: GrpcClientProcess | undefined;
let serverPort = 0;

beforeAll(async () => {
  etcd = await startEtcd();
  const { root, signingKeyPem } = await installClusterCaForTest(etcd.endpoints, MESH, join(tmp, 'kek'), TD);
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', MESH, '--cluster-id', 'c1', '--replica-id', 'grpc-1'],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--monitoring-address', 'off'],
        ...['--ca-address', '127.0.0.1:0', '--ca-kek-file', join(tmp, 'kek')],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  const identity = { trustDomain: TD, namespace: 'shop', serviceAccount: 'echo' };
  certs = new WorkloadCertificates({
    identity,
    caAddress: replica.caAddress,
    rootCertPem: root.certPem,
    token: await createBootstrapToken({ signingKeyPem, identity, ttlSeconds: 600, singleUse: true }),
    logger: pino({ level: 'silent' }),
  });
  await certs.start();
  await certs.writeFiles(join(tmp, 'certs'));

  serverPort = await freePort();
  const res = await adminFetch(replica, '/apis/v1/apply', {
    method: 'POST',
    body: `apiVersion: networking.istio.io/v1
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
  });
  expect(res.status, await res.text()).toBe(200);
}, 90_000);

afterAll(async () => {
  await client?.stop();
  certs?.close();
  await replica?.stop();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('grpcBootstrap with @grpc/grpc-js-xds', () => {
  it('a proxyless server and client configured by the bootstrap call each other over mTLS', async () => {
    const bootstrap = grpcBootstrap({
      ip: '127.0.0.1',
      podName: 'echo-0',
      namespace: 'shop',
      serviceAccount: 'echo',
      clusterId: 'c1',
      meshId: MESH,
      labels: { app: 'echo' },
      locality: 'r1/z1',
      agentAddress: replica.xdsAddress, // in production, the agent's relay on loopback
      certificateDir: join(tmp, 'certs'),
      refreshInterval: '1s',
    });
    client = await GrpcClientProcess.start(JSON.stringify(bootstrap), { xdsCredentials: true });
    // XdsServer serves only once the replica answered its listener, named by Istio's template.
    await client.serve(serverPort, 'echo-0');
    await client.ready(`${HOST}:${PORT}`, { timeoutMs: 30_000 });
    const results = await client.many(`${HOST}:${PORT}`, 20, { concurrency: 4 });
    expect(results.map((r) => r.backend ?? `status ${r.code}: ${r.message}`)).toEqual(
      Array(20).fill('echo-0'),
    );

    // STRICT: the server takes TLS with a mesh certificate only; a plaintext caller is refused.
    const plain = new grpc.Client(`127.0.0.1:${serverPort}`, grpc.credentials.createInsecure());
    const code = await new Promise<number>((resolve) =>
      plain.makeUnaryRequest(
        '/meridian.test.Echo/Call',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        { deadline: Date.now() + 3000 },
        (e) => resolve(e ? e.code : grpc.status.OK),
      ),
    );
    plain.close();
    expect(code).toBe(grpc.status.UNAVAILABLE);
  });

  it('certificates rotate under continuous mTLS traffic with no failed call', async () => {
    expect(client, 'the first test started the client and server').toBeDefined();
    const c = client!;
    const first = certs.current()!;
    await c.loadStart(`${HOST}:${PORT}`, { concurrency: 4, deadlineMs: 3000, pauseMs: 5 });
    const serials = new Set([first.serial]);
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 1500));
      const next = await certs.renewNow();
      await certs.writeFiles(join(tmp, 'certs'));
      serials.add(next.serial);
    }
    // file_watcher re-reads every 1 s: give it two periods, then stop.
    await new Promise((r) => setTimeout(r, 2500));
    const results = await c.loadStop();
    expect(serials.size).toBe(4);
    expect(results.length).toBeGreaterThan(100);
    const failed = results.filter((r) => r.code !== 0);
    expect(failed, JSON.stringify(failed.slice(0, 3))).toEqual([]);
    // New connections after the rotations are made with the newest certificate (the server's handshake
    // with a fresh client succeeds only if the files on disk are a valid key and chain pair).
    const after = await c.many(`${HOST}:${PORT}`, 10, { concurrency: 2 });
    expect(after.filter((r) => r.code !== 0)).toEqual([]);
  });
});
