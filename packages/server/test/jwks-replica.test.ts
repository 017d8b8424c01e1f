// RequestAuthentication end to end on a replica: the replica fetches the jwksUri itself, the
// proxy's inbound listener carries jwt_authn with the keys inlined (pushed once fetched), a second
// issuer whose server fails gets keys nobody holds, and /debug/jwks (authenticated) says so. Rotation
// and last-good-after-failure are in jwks.test.ts (the resolver, with short refresh periods).
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TypeUrl } from '@meridian/envoy';
import { type EtcdCluster, eventually, SimulatedProxy, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import { adminFetch, xdsClient } from './harness.js';

let etcd: EtcdCluster | undefined;
let replica: Replica | undefined;
let jwksServer: Server;
let jwksPort = 0;
const served: { mode: 'ok' | 'error'; body: string } = { mode: 'ok', body: '' };
const proxies: SimulatedProxy[] = [];

function keySet(kid: string): string {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
  return JSON.stringify({ keys: [{ ...jwk, kid, alg: 'ES256', use: 'sig' }] });
}

beforeAll(async () => {
  jwksServer = createServer((_req, res) => {
    if (served.mode === 'error') res.writeHead(503).end();
    else res.writeHead(200, { 'content-type': 'application/json' }).end(served.body);
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', () => r()));
  jwksPort = (jwksServer.address() as AddressInfo).port;
  etcd = await startEtcd();
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'jwks', '--cluster-id', 'c1', '--replica-id', 'jwks-a'],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
        ...['--monitoring-address', 'off', '--snapshot-dir', 'off'],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
}, 90_000);

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  await replica?.stop().catch(() => undefined);
  await etcd?.stop();
  jwksServer.closeAllConnections();
  await new Promise<void>((r) => jwksServer.close(() => r()));
});

const NODE = 'sidecar~10.9.0.1~api-0.default~default.svc.cluster.local';

async function inboundDump(): Promise<string> {
  const res = await adminFetch(replica!, `/debug/config_dump?proxy=${encodeURIComponent(NODE)}`);
  return res.status === 200 ? await res.text() : '';
}

describe('RequestAuthentication on a replica', () => {
  it('inlines the fetched JWKS into jwt_authn; a failing source fails closed and shows in /debug/jwks', async () => {
    served.mode = 'ok';
    served.body = keySet('kid-one');
    const uri = `http://127.0.0.1:${jwksPort}/jwks.json`;
    const apply = await adminFetch(replica!, '/apis/v1/apply?source=t.yaml', {
      method: 'POST',
      body: `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.9.0.1, labels: {app: api}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: api}}
  jwtRules: [{issuer: "https://issuer.test", jwksUri: "${uri}"}]
`,
    });
    expect(apply.status).toBe(200);
    // An apply of a RequestAuthentication is flagged for proxyless gRPC servers (MER0002).
    expect(JSON.stringify(await apply.json())).toContain('MER0002');

    const proxy = new SimulatedProxy({
      nodeId: NODE,
      metadata: { NAMESPACE: 'default', CLUSTER_ID: 'c1', LABELS: { app: 'api' } },
      variant: 'sotw',
      subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.Listener }],
    });
    proxy.connect(xdsClient(replica!.xdsAddress));
    proxies.push(proxy);

    await eventually(
      'jwt_authn with kid-one',
      async () => (await inboundDump()).includes('kid-one'),
      30_000,
      50,
    );
    expect(await inboundDump()).toContain('envoy.filters.http.jwt_authn');

    type Status = Array<{
      issuer: string;
      uri: string;
      lastSuccess?: string;
      lastError?: { message: string };
      stale: boolean;
      kids: string[];
    }>;
    const status = async () => (await (await adminFetch(replica!, '/debug/jwks')).json()) as Status;
    const first = (await status())[0];
    expect(first).toMatchObject({ issuer: 'https://issuer.test', uri, stale: false, kids: ['kid-one'] });
    expect(first?.lastSuccess).toBeDefined();
    // /debug/jwks is authenticated like every /debug path.
    expect((await fetch(`http://${replica!.adminAddress}/debug/jwks`)).status).toBe(401);

    // A second issuer whose server fails: its tokens are refused (keys nobody holds), the first
    // issuer keeps its keys, and /debug/jwks shows the error.
    served.mode = 'error';
    const bad = `http://127.0.0.1:${jwksPort}/other.json`;
    const second = await adminFetch(replica!, '/apis/v1/apply?source=t2.yaml', {
      method: 'POST',
      body: `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt2, namespace: default}
spec:
  selector: {matchLabels: {app: api}}
  jwtRules: [{issuer: "https://other.test", jwksUri: "${bad}"}]
`,
    });
    expect(second.status).toBe(200);
    await eventually(
      'the failed fetch in /debug/jwks',
      async () => (await status()).some((s) => s.lastError),
      30_000,
      50,
    );
    const failed = (await status()).find((s) => s.issuer === 'https://other.test');
    expect(failed).toMatchObject({ uri: bad, stale: false, kids: [] });
    expect(failed?.lastError?.message).toBe(`${bad}: HTTP 503`);
    await eventually(
      'both providers on the proxy',
      async () => (await inboundDump()).includes('meridian-jwks-unavailable'),
      30_000,
      50,
    );
    const dump = await inboundDump();
    expect(dump).toContain('kid-one');
    expect(dump).toContain('https://other.test');
  }, 60_000);
});
