// Control-plane security (issue 10), against real processes and real TLS: a real etcd with the
// cluster CA installed, two meridiand replicas in-process (CA port, plaintext xDS, admin and
// monitoring ports), sidecars connected over mTLS with workload certificates from CreateCertificate.
// - every admin endpoint: no credential -> 401, wrong role -> 403, right role -> works;
// - a cross-origin, text/plain apply (the CSRF case) is refused and changes nothing;
// - the monitoring port serves health and metrics only;
// - no debug endpoint, and no log line, carries a private key or a token;
// - a workload registers only as the identity it proves and from its own address; refusals never
//   reach any replica's EDS and are counted.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import {
  type CertificateServiceClient,
  createBootstrapToken,
  createCertificateServiceClient,
  createCsr,
  type RootCa,
} from '@meridian/ca';
import { decodeResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
import { WorkloadAgent } from '@meridian/registry';
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
import { adminTokenFor, installClusterCaForTest, REPO_ROOT, spawnTs } from './harness.js';
import { issueWorkloadCertificate, type WorkloadCertificate } from './mtls-fixtures.js';

const TD = 'cluster.local';
const MESH = 'sectest';
const tmp = mkdtempSync(join(tmpdir(), 'meridian-security-test-'));
let etcd: EtcdCluster;
let root: RootCa;
let signingKeyPem: string;
const replicas: Replica[] = [];
const clients: grpc.Client[] = [];
const proxies: SimulatedProxy[] = [];
const agents: WorkloadAgent[] = [];
let ca: CertificateServiceClient;
/** Every log line both replicas wrote (scanned for secrets). */
const logLines: string[] = [];
/** Every token this test made or saw (scanned for in outputs). */
const tokens: string[] = [];
let adminToken: string;
let viewToken: string;
let editToken: string;
let registrarToken: string;

const SERVICES = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
`;

function startReplica(id: string, extra: readonly string[] = []): Promise<Replica> {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logLines.push(line);
      done();
    },
  });
  return Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', MESH, '--cluster-id', 'c1', '--replica-id', id],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
        ...['--monitoring-address', '127.0.0.1:0'],
        ...['--ca-address', '127.0.0.1:0', '--ca-kek-file', join(tmp, 'kek')],
        ...extra,
      ],
      {},
    ),
    { logger: pino({ level: 'debug', base: { replica: id } }, sink) },
  );
}

async function call(
  r: Replica,
  method: string,
  path: string,
  o: { token?: string; body?: string; type?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.type) headers['content-type'] = o.type;
  const res = await fetch(`http://${r.adminAddress}${path}`, {
    method,
    headers,
    ...(o.body === undefined ? {} : { body: o.body }),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, text: await res.text() };
}

async function mint(user: string, role: string): Promise<string> {
  const r = replicas[0]!;
  const put = await call(r, 'PUT', `/apis/v1/auth/rolebindings/${user}`, {
    token: adminToken,
    type: 'application/json',
    body: JSON.stringify({ subject: `spiffe://${TD}/ns/meridian-system/sa/${user}`, role }),
  });
  expect(put.status, put.text).toBe(200);
  const res = await call(r, 'POST', '/apis/v1/auth/tokens', {
    token: adminToken,
    type: 'application/json',
    body: JSON.stringify({ user, ttlSeconds: 600 }),
  });
  expect(res.status, res.text).toBe(200);
  const token = (JSON.parse(res.text) as { token: string }).token;
  tokens.push(token);
  return token;
}

type Identity = Pick<WorkloadCertificate, 'uri' | 'keyPem' | 'chain'>;

async function workloadIdentity(namespace: string, serviceAccount: string): Promise<Identity> {
  const cert = await issueWorkloadCertificate(ca, signingKeyPem, {
    trustDomain: TD,
    namespace,
    serviceAccount,
  });
  tokens.push(cert.token);
  return cert;
}

function tlsCredentials(who: Identity): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    Buffer.from(root.certPem),
    Buffer.from(who.keyPem),
    Buffer.from(who.chain.slice(0, -1).join('')),
  );
}

const TLS_OPTIONS = { 'grpc.ssl_target_name_override': 'localhost' };

/** A sidecar on the CA port with its workload certificate, holding its SDS secrets and EDS. */
function mtlsSidecar(r: Replica, who: Identity, i: number): SimulatedProxy {
  const client = new grpc.Client(r.caAddress, tlsCredentials(who), TLS_OPTIONS);
  clients.push(client);
  const p = new SimulatedProxy({
    nodeId: `sidecar~10.2.0.${i}~productpage-${i}.bookinfo~bookinfo.svc.cluster.local`,
    metadata: { NAMESPACE: 'bookinfo', CLUSTER_ID: 'c1', LABELS: { app: 'productpage' } },
    variant: 'sotw',
    subscriptions: [
      { typeUrl: TypeUrl.Cluster },
      { typeUrl: TypeUrl.ClusterLoadAssignment },
      { typeUrl: TypeUrl.Secret, names: ['default', 'ROOTCA'] },
    ],
    record: true,
  });
  p.connect(client);
  proxies.push(p);
  return p;
}

/** The endpoint addresses of `reviews` a proxy holds. */
function reviewsEndpoints(p: SimulatedProxy): string[] {
  const r = p.responses.findLast((x) => x.typeUrl === TypeUrl.ClusterLoadAssignment) as
    | SotwResponseView
    | undefined;
  const out: string[] = [];
  for (const bytes of r?.resources ?? []) {
    const cla = decodeResource(TypeUrl.ClusterLoadAssignment, bytes);
    if (!String(cla.cluster_name).endsWith('|reviews.bookinfo.svc.cluster.local')) continue;
    for (const group of (cla.endpoints ?? []) as EnvoyJson[])
      for (const e of (group.lb_endpoints ?? []) as EnvoyJson[]) {
        const sa = ((e.endpoint as EnvoyJson).address as EnvoyJson).socket_address as EnvoyJson;
        out.push(String(sa.address));
      }
  }
  return out;
}

function agent(
  address: string,
  spec: { name: string; serviceAccount: string; address: string },
  o: { credentials?: grpc.ChannelCredentials; token?: string } = {},
): WorkloadAgent {
  const a = new WorkloadAgent(
    address,
    {
      name: spec.name,
      namespace: 'bookinfo',
      address: spec.address,
      ports: { http: 9080 },
      labels: { app: 'reviews' },
      serviceAccount: spec.serviceAccount,
    },
    {
      ttlSeconds: 10,
      ...(o.credentials ? { credentials: o.credentials, channelOptions: TLS_OPTIONS } : {}),
      ...(o.token ? { token: o.token } : {}),
    },
  );
  agents.push(a);
  return a;
}

beforeAll(async () => {
  etcd = await startEtcd();
  ({ root, signingKeyPem } = await installClusterCaForTest(etcd.endpoints, MESH, join(tmp, 'kek'), TD));
  replicas.push(await startReplica('sec-a'), await startReplica('sec-b'));
  adminToken = await adminTokenFor(etcd.endpoints, MESH, 'c1');
  tokens.push(adminToken);
  viewToken = await mint('viewer', 'view');
  editToken = await mint('editor', 'edit');
  registrarToken = await mint('gateway-agent', 'registrar');
  const applied = await call(replicas[0]!, 'POST', '/apis/v1/apply', {
    token: editToken,
    type: 'application/yaml',
    body: SERVICES,
  });
  expect(applied.status, applied.text).toBe(200);
  ca = createCertificateServiceClient(
    replicas[0]!.caAddress,
    grpc.credentials.createSsl(Buffer.from(root.certPem)),
    TLS_OPTIONS,
  );
});

afterAll(async () => {
  for (const a of agents) a.abandon();
  for (const p of proxies) p.disconnect();
  for (const c of clients) c.close();
  ca?.close();
  await Promise.all(replicas.map((r) => r.stop().catch(() => undefined)));
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  http: [{route: [{destination: {host: reviews.bookinfo.svc.cluster.local}}]}]
`;

describe('admin API authentication and roles', () => {
  // [method, path, body type, body, role needed, expected status with the right role]
  const cases: Array<
    [string, string, string | undefined, string | undefined, 'view' | 'edit' | 'admin', number]
  > = [
    ['GET', '/debug/syncz', undefined, undefined, 'view', 200],
    ['GET', '/debug/config_dump?proxy=nobody', undefined, undefined, 'view', 404],
    ['GET', '/debug/replica', undefined, undefined, 'view', 200],
    ['GET', '/debug/leader', undefined, undefined, 'view', 200],
    ['GET', '/apis/v1/config/ServiceEntry?namespace=bookinfo', undefined, undefined, 'view', 200],
    ['GET', '/apis/v1/config/ServiceEntry/bookinfo/reviews', undefined, undefined, 'view', 200],
    ['POST', '/apis/v1/apply', 'application/yaml', VS, 'edit', 200],
    ['DELETE', '/apis/v1/config/VirtualService/bookinfo/reviews', undefined, undefined, 'edit', 200],
    ['GET', '/apis/v1/auth/rolebindings', undefined, undefined, 'admin', 200],
    [
      'PUT',
      '/apis/v1/auth/rolebindings/someone',
      'application/json',
      JSON.stringify({ subject: `spiffe://${TD}/ns/x/sa/someone`, role: 'view' }),
      'admin',
      200,
    ],
    ['DELETE', '/apis/v1/auth/rolebindings/someone', undefined, undefined, 'admin', 200],
    [
      'POST',
      '/apis/v1/auth/tokens',
      'application/json',
      JSON.stringify({ user: 'someone', ttlSeconds: 60 }),
      'admin',
      200,
    ],
  ];
  const weaker = { view: undefined, edit: 'view', admin: 'edit' } as const;

  it.each(cases)(
    '%s %s: 401 without a credential, 403 with a weaker role, works with the role it needs',
    async (method, path, type, body, role, ok) => {
      const r = replicas[1]!;
      const tokenOf = { view: viewToken, edit: editToken, admin: adminToken };
      const none = await call(r, method, path, { ...(type ? { type } : {}), ...(body ? { body } : {}) });
      expect(none.status, none.text).toBe(401);
      expect(JSON.parse(none.text)).toMatchObject({ reason: 'Unauthorized' });
      const forged = await call(r, method, path, {
        token: `${adminToken.slice(0, -4)}AAAA`,
        ...(type ? { type } : {}),
        ...(body ? { body } : {}),
      });
      expect(forged.status, forged.text).toBe(401);
      const weak = weaker[role];
      if (weak) {
        const denied = await call(r, method, path, {
          token: tokenOf[weak],
          ...(type ? { type } : {}),
          ...(body ? { body } : {}),
        });
        expect(denied.status, denied.text).toBe(403);
        expect(JSON.parse(denied.text).message).toContain(`needs role ${role}`);
      }
      // A registrar may register workloads, nothing else.
      const registrar = await call(r, method, path, {
        token: registrarToken,
        ...(type ? { type } : {}),
        ...(body ? { body } : {}),
      });
      expect(registrar.status, registrar.text).toBe(403);
      const allowed = await call(r, method, path, {
        token: tokenOf[role],
        ...(type ? { type } : {}),
        ...(body ? { body } : {}),
      });
      expect(allowed.status, allowed.text).toBe(ok);
    },
  );

  it('whoami names the caller and its roles; a deleted binding takes the role away at once', async () => {
    const r = replicas[0]!;
    const me = await call(r, 'GET', '/apis/v1/auth/whoami', { token: viewToken });
    expect(JSON.parse(me.text)).toEqual({
      subject: `spiffe://${TD}/ns/meridian-system/sa/viewer`,
      via: 'token',
      roles: ['view'],
    });
    const temp = await mint('temp', 'view');
    expect((await call(r, 'GET', '/debug/syncz', { token: temp })).status).toBe(200);
    expect((await call(r, 'DELETE', '/apis/v1/auth/rolebindings/temp', { token: adminToken })).status).toBe(
      200,
    );
    await eventually(
      'binding gone on replica b',
      async () => (await call(replicas[1]!, 'GET', '/debug/syncz', { token: temp })).status === 403,
      30_000,
      50,
    );
  });

  it('an expired token and a token of another cluster are refused', async () => {
    const { generateAdminSigningKey, mintAdminToken } = await import('@meridian/auth');
    const foreign = await mintAdminToken(
      await generateAdminSigningKey(),
      `spiffe://${TD}/ns/meridian-system/sa/test-admin`,
      600,
    );
    const res = await call(replicas[0]!, 'GET', '/debug/syncz', { token: foreign.token });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.text).message).toContain('does not verify');
  });

  it('the CSRF case: a cross-origin text/plain apply is refused and changes nothing', async () => {
    const r = replicas[0]!;
    const before = await call(r, 'GET', '/apis/v1/config/VirtualService?namespace=bookinfo', {
      token: viewToken,
    });
    const attack = VS.replace('name: reviews', 'name: evil');
    const noCred = await call(r, 'POST', '/apis/v1/apply', {
      type: 'text/plain',
      body: attack,
      headers: { origin: 'http://evil.example' },
    });
    expect(noCred.status).toBe(403);
    // Even a request that somehow carries a credential is refused for its origin and for its type.
    const withCred = await call(r, 'POST', '/apis/v1/apply', {
      token: editToken,
      type: 'text/plain',
      body: attack,
      headers: { origin: 'http://evil.example' },
    });
    expect(withCred.status).toBe(403);
    const plain = await call(r, 'POST', '/apis/v1/apply', {
      token: editToken,
      type: 'text/plain',
      body: attack,
    });
    expect(plain.status).toBe(415);
    const form = await call(r, 'POST', '/apis/v1/apply', {
      token: editToken,
      type: 'application/x-www-form-urlencoded',
      body: attack,
    });
    expect(form.status).toBe(415);
    const preflight = await call(r, 'OPTIONS', '/apis/v1/apply', {
      headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(403);
    const res = await fetch(`http://${r.adminAddress}/apis/v1/apply`, {
      method: 'OPTIONS',
      headers: { origin: 'http://evil.example' },
    });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    await res.text();
    const after = await call(r, 'GET', '/apis/v1/config/VirtualService?namespace=bookinfo', {
      token: viewToken,
    });
    expect(JSON.parse(after.text).items).toEqual(JSON.parse(before.text).items);
    // The refusals are in the audit log with the caller.
    expect(logLines.some((l) => l.includes('"audit":true') && l.includes('"outcome":"cross_origin"'))).toBe(
      true,
    );
    expect(
      logLines.some(
        (l) =>
          l.includes('"audit":true') && l.includes('sa/editor') && l.includes('"outcome":"content_type"'),
      ),
    ).toBe(true);
  });

  it('every write is in the audit log with the caller identity', async () => {
    const r = replicas[0]!;
    const res = await call(r, 'POST', '/apis/v1/apply?source=audit.yaml', {
      token: editToken,
      type: 'application/yaml',
      body: VS.replace('name: reviews', 'name: audited'),
    });
    expect(res.status, res.text).toBe(200);
    const line = logLines.find(
      (l) => l.includes('"outcome":"allowed"') && l.includes('VirtualService/bookinfo/audited'),
    );
    expect(line).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({
      audit: true,
      subject: `spiffe://${TD}/ns/meridian-system/sa/editor`,
      method: 'POST',
      status: 200,
    });
  });
});

describe('ports split by trust', () => {
  it('the monitoring port serves health, readiness and metrics, and nothing else', async () => {
    const r = replicas[0]!;
    const base = `http://${r.monitoringAddress}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('meridian_admin_requests_refused');
    for (const path of [
      '/debug/syncz',
      '/debug/config_dump?proxy=x',
      '/apis/v1/config/ServiceEntry',
      '/apis/v1/auth/whoami',
    ]) {
      const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${adminToken}` } });
      expect(res.status, path).toBe(404);
      await res.text();
    }
    const post = await fetch(`${base}/apis/v1/apply`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/yaml' },
      body: VS,
    });
    expect(post.status).toBe(405);
    await post.text();
  });

  it('plaintext xDS is off by default once a CA port is served, unless explicitly enabled', () => {
    expect(resolveOptions(['--ca-address', '0.0.0.0:15012'], {}).xdsAddress).toBe('off');
    expect(resolveOptions([], {}).xdsAddress).toBe('0.0.0.0:15010');
    expect(
      resolveOptions(['--ca-address', '0.0.0.0:15012', '--xds-address', '0.0.0.0:15010'], {}).xdsAddress,
    ).toBe('0.0.0.0:15010');
    expect(resolveOptions([], {}).adminAddress).toBe('127.0.0.1:15080');
    expect(resolveOptions([], {}).monitoringAddress).toBe('0.0.0.0:15014');
  });
});

describe('authenticated registration', () => {
  it('a workload registers only as the identity it proves, from its own address; refusals reach no EDS', async () => {
    const [a, b] = replicas as [Replica, Replica];
    const productpage = await workloadIdentity('bookinfo', 'productpage');
    const watchers = [mtlsSidecar(a, productpage, 1), mtlsSidecar(b, productpage, 2)];
    await eventually(
      'watchers hold EDS',
      () => watchers.every((w) => w.responses.some((x) => x.typeUrl === TypeUrl.ClusterLoadAssignment)),
      30_000,
      50,
    );
    const reviews = await workloadIdentity('bookinfo', 'bookinfo-reviews');
    const impostor = await workloadIdentity('bookinfo', 'ratings');

    const refusals: Array<[string, WorkloadAgent, string]> = [
      // No credential at all, on the plaintext port.
      [
        'UNAUTHENTICATED',
        agent(a.xdsAddress, { name: 'anon', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' }),
        'no credentials',
      ],
      // No client certificate on the TLS port.
      [
        'UNAUTHENTICATED',
        agent(
          a.caAddress,
          { name: 'nocert', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
          { credentials: grpc.credentials.createSsl(Buffer.from(root.certPem)) },
        ),
        'no credentials',
      ],
      // Another service account than the certificate's.
      [
        'PERMISSION_DENIED',
        agent(
          a.caAddress,
          { name: 'forged-id', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
          { credentials: tlsCredentials(impostor) },
        ),
        "is not the caller's identity",
      ],
      // The right identity, but an address it does not connect from.
      [
        'PERMISSION_DENIED',
        agent(
          a.caAddress,
          { name: 'forged-ip', serviceAccount: 'bookinfo-reviews', address: '10.66.0.1' },
          { credentials: tlsCredentials(reviews) },
        ),
        'is not the address the caller connects from',
      ],
      // A bootstrap token for another identity.
      [
        'PERMISSION_DENIED',
        agent(
          a.xdsAddress,
          { name: 'forged-token', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
          {
            token: await createBootstrapToken({
              signingKeyPem,
              identity: { trustDomain: TD, namespace: 'bookinfo', serviceAccount: 'ratings' },
              ttlSeconds: 60,
            }),
          },
        ),
        "is not the caller's identity",
      ],
      // An operator token without the registrar role.
      [
        'PERMISSION_DENIED',
        agent(
          a.xdsAddress,
          { name: 'viewer', serviceAccount: 'bookinfo-reviews', address: '10.66.0.2' },
          { token: viewToken },
        ),
        'no role allowing workload registration',
      ],
      // A garbage token.
      [
        'UNAUTHENTICATED',
        agent(
          a.xdsAddress,
          { name: 'garbage', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
          { token: 'not.a.token' },
        ),
        'bootstrap token',
      ],
    ];
    for (const [code, ag, message] of refusals) {
      const err = await ag.register().then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err, `${ag.spec.name} must be refused`).toBeInstanceOf(Error);
      expect(ag.ended?.code, `${ag.spec.name}: ${ag.ended?.details}`).toBe(
        grpc.status[code as 'UNAUTHENTICATED'],
      );
      expect(ag.ended?.details).toContain(message);
    }

    // The legitimate ones: its own certificate and address; a registrar anywhere.
    const own = agent(
      a.caAddress,
      { name: 'reviews-1', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
      { credentials: tlsCredentials(reviews) },
    );
    await own.register();
    const gateway = agent(
      b.xdsAddress,
      { name: 'reviews-remote', serviceAccount: 'bookinfo-reviews', address: '10.77.0.1' },
      { token: registrarToken },
    );
    await gateway.register();
    const bootstrap = agent(
      b.xdsAddress,
      { name: 'reviews-token', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
      {
        token: await createBootstrapToken({
          signingKeyPem,
          identity: { trustDomain: TD, namespace: 'bookinfo', serviceAccount: 'bookinfo-reviews' },
          ttlSeconds: 60,
        }),
      },
    );
    await bootstrap.register();
    await eventually(
      "registered endpoints in both replicas' EDS",
      () =>
        watchers.every((w) => {
          const eps = reviewsEndpoints(w);
          return eps.includes('127.0.0.1') && eps.includes('10.77.0.1');
        }),
      30_000,
      50,
    );
    for (const w of watchers) {
      expect(reviewsEndpoints(w)).not.toContain('10.66.0.1');
      expect(reviewsEndpoints(w)).not.toContain('10.66.0.2');
    }
    const metrics = await (await fetch(`http://${a.monitoringAddress}/metrics`)).text();
    const refused = (reason: string) =>
      Number(
        new RegExp(`meridian_registrations_refused(?:_total)?\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)`).exec(
          metrics,
        )?.[1] ?? 0,
      );
    expect(refused('unauthenticated')).toBe(3);
    expect(refused('identity_mismatch')).toBe(2);
    expect(refused('address_mismatch')).toBe(1);
    expect(refused('forbidden')).toBe(1);
  });
});

describe('secrets never leave through debug output or logs', () => {
  it('with sidecars holding their keys over mTLS, no debug endpoint and no log line carries a private key or a token', async () => {
    const [a, b] = replicas as [Replica, Replica];
    const who = await workloadIdentity('bookinfo', 'details');
    const ps = [mtlsSidecar(a, who, 11), mtlsSidecar(b, who, 12)];
    // The proxies really hold their private keys (so a dump that leaked would show one).
    await eventually(
      'SDS default with a key on both proxies',
      () =>
        ps.every((p) =>
          p.responses.some(
            (x) =>
              x.typeUrl === TypeUrl.Secret &&
              (x as SotwResponseView).resources.some((bytes) =>
                // the key travels as inline_bytes: base64 of "-----BEGIN"
                JSON.stringify(decodeResource(TypeUrl.Secret, bytes)).includes(
                  'LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t',
                ),
              ),
          ),
        ),
      30_000,
      50,
    );
    const outputs: Array<[string, string]> = [];
    for (const r of [a, b]) {
      const syncz = await call(r, 'GET', '/debug/syncz', { token: adminToken });
      expect(syncz.status).toBe(200);
      outputs.push([`${r.options.replicaId} syncz`, syncz.text]);
      const ids = (JSON.parse(syncz.text) as { proxyId: string }[]).map((s) => s.proxyId);
      expect(ids.length).toBeGreaterThan(0);
      for (const id of new Set(ids)) {
        const dump = await call(r, 'GET', `/debug/config_dump?proxy=${encodeURIComponent(id)}`, {
          token: adminToken,
        });
        expect(dump.status).toBe(200);
        outputs.push([`${r.options.replicaId} config_dump ${id}`, dump.text]);
      }
      for (const path of [
        '/debug/replica',
        '/debug/leader',
        '/debug/federation',
        '/apis/v1/auth/rolebindings',
        '/apis/v1/auth/whoami',
        '/metrics',
      ]) {
        const res = await call(r, 'GET', path, { token: adminToken });
        outputs.push([`${r.options.replicaId} ${path}`, res.text]);
      }
    }
    const dumps = outputs.filter(([what]) => what.includes('config_dump') && what.includes('productpage-1'));
    expect(dumps.length).toBeGreaterThan(0);
    expect(outputs.some(([, text]) => text.includes('[redacted]'))).toBe(true);
    outputs.push(['logs', logLines.join('\n')]);
    for (const [what, text] of outputs) {
      expect(text, what).not.toMatch(/-----BEGIN [A-Z ]*PRIVATE KEY-----/);
      // Nor base64 (inline_bytes) of a PEM private key's first line (PKCS#8, SEC1, PKCS#1).
      for (const b64 of [
        'LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t',
        'LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0t',
        'LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQ',
      ])
        expect(text, what).not.toContain(b64);
      for (const t of tokens) expect(text.includes(t), `${what} contains a token`).toBe(false);
      for (const t of tokens)
        expect(text.includes(t.split('.')[2]!), `${what} contains a token signature`).toBe(false);
    }
  });
});

describe('admin API over TLS (--admin-tls on)', () => {
  /** An HTTPS request with the given client certificate (or none); rejects on TLS failure. */
  function httpsCall(
    r: Replica,
    method: string,
    path: string,
    o: { cert?: Identity; token?: string; body?: string } = {},
  ): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        `https://${r.adminAddress}${path}`,
        {
          method,
          ca: root.certPem,
          servername: 'localhost',
          headers: {
            ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
            ...(o.body ? { 'content-type': 'application/yaml' } : {}),
          },
          ...(o.cert ? { cert: o.cert.chain.slice(0, -1).join(''), key: o.cert.keyPem } : {}),
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => {
            text += c.toString();
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on('error', reject);
      req.end(o.body);
    });
  }

  it('serves HTTPS with the CA serving certificate; a mesh client certificate authenticates its SPIFFE id', async () => {
    const r = await startReplica('sec-tls', ['--admin-tls', 'on']);
    replicas.push(r);
    // Plain HTTP is not spoken on a TLS port.
    await expect(
      fetch(`http://${r.adminAddress}/debug/syncz`, { signal: AbortSignal.timeout(5000) }),
    ).rejects.toThrow();
    expect((await httpsCall(r, 'GET', '/readyz')).status).toBe(200);
    expect((await httpsCall(r, 'GET', '/debug/syncz')).status).toBe(401);
    expect((await httpsCall(r, 'GET', '/debug/syncz', { token: viewToken })).status).toBe(200);

    const operator = await workloadIdentity('meridian-system', 'certop');
    const noRole = await httpsCall(r, 'GET', '/apis/v1/auth/whoami', { cert: operator });
    expect(JSON.parse(noRole.text)).toEqual({ subject: operator.uri, via: 'mtls', roles: [] });
    expect((await httpsCall(r, 'GET', '/debug/syncz', { cert: operator })).status).toBe(403);
    const bind = await call(replicas[0]!, 'PUT', '/apis/v1/auth/rolebindings/certop', {
      token: adminToken,
      type: 'application/json',
      body: JSON.stringify({ subject: operator.uri, role: 'edit' }),
    });
    expect(bind.status, bind.text).toBe(200);
    await eventually(
      'the binding reaches the TLS replica',
      async () => (await httpsCall(r, 'GET', '/debug/syncz', { cert: operator })).status === 200,
      30_000,
      50,
    );
    const applied = await httpsCall(r, 'POST', '/apis/v1/apply', {
      cert: operator,
      body: VS.replace('name: reviews', 'name: via-mtls'),
    });
    expect(applied.status, applied.text).toBe(200);
    expect((await httpsCall(r, 'GET', '/apis/v1/auth/rolebindings', { cert: operator })).status).toBe(403);

    // A certificate from another CA (same SPIFFE id) is not trusted.
    const { createRootCa, createIntermediateCa } = await import('@meridian/ca');
    // (the chain sent is every certificate but the last, as with the real identity)
    const otherRoot = createRootCa({ trustDomain: TD, keyType: 'ecdsa-p256' });
    const other = createIntermediateCa({
      root: otherRoot,
      clusterId: 'c1',
      trustDomain: TD,
      keyType: 'ecdsa-p256',
    });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { SigningCa, WorkloadCertificateIssuer } = await import('@meridian/ca');
    const forged = new WorkloadCertificateIssuer(SigningCa.fromMaterial(other)).issue({
      identity: { trustDomain: TD, namespace: 'meridian-system', serviceAccount: 'certop' },
      csrPem: createCsr({ key: privateKey, uris: [operator.uri] }),
      validitySeconds: 600,
      via: 'token',
    }).certChain;
    const refused = await httpsCall(r, 'GET', '/debug/syncz', {
      cert: {
        uri: operator.uri,
        keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
        chain: [...forged],
      },
    });
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.text).message).toContain('client certificate not trusted');

    // The CLI, with kubectl's flags.
    const files = { ca: join(tmp, 'root.pem'), cert: join(tmp, 'op.pem'), key: join(tmp, 'op-key.pem') };
    writeFileSync(files.ca, root.certPem);
    writeFileSync(files.cert, operator.chain.slice(0, -1).join(''));
    writeFileSync(files.key, operator.keyPem, { mode: 0o600 });
    const cli = spawnTs(
      join(REPO_ROOT, 'packages/cli/src/main.ts'),
      [
        'auth',
        'whoami',
        '--server',
        `https://localhost:${r.adminAddress.split(':').pop()}`,
        '--certificate-authority',
        files.ca,
        '--client-certificate',
        files.cert,
        '--client-key',
        files.key,
      ],
      { MERIDIAN_CREDENTIALS: join(tmp, 'none.yaml'), MERIDIAN_TOKEN: '' },
    );
    let out = '';
    let err = '';
    cli.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
    });
    cli.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
    });
    const code = await new Promise<number | null>((res) => cli.once('exit', res));
    expect(code, err).toBe(0);
    expect(out.trim()).toBe(`${operator.uri} (mtls): edit`);
  });
});
