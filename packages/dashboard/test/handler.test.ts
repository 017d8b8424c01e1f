// The dashboard's login, session and refusals over real HTTP, with the real admin authority of
// @meridian/auth on a memory store (tokens signed and verified with the cluster's key, roles from
// role bindings); and the pure parts (cookie, session lifetime, graph layout, CA expiry).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ConfigObject } from '@meridian/api';
import { AdminAuthority, bootstrapCredential, deleteRoleBinding, operatorSubject } from '@meridian/auth';
import { Keyspace, MemoryStore } from '@meridian/store';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  caExpiry,
  type DashboardHost,
  edgeLabel,
  type endpointsByCluster,
  handleDashboard,
  layoutGraph,
  parseLabels,
  type RegistryService,
  readCookie,
  SESSION_TTL_SECONDS,
  sessionCookie,
  sessionCookieName,
  sessionSeconds,
  tokenExpiry,
} from '../src/index.js';

const VIEWER = operatorSubject('cluster.local', 'viewer');
const endpoint = (address: string, clusterId: string, locality: string, health: string) => {
  const [region = '', zone = '', subZone = ''] = locality.split('/');
  return {
    address,
    ports: { http: 9080 },
    labels: {},
    locality: { region, zone, subZone },
    network: clusterId === 'c1' ? '' : 'net2',
    clusterId,
    health,
    serviceAccount: 'reviews',
    weight: 1,
  };
};
/** A service with local endpoints in two zones and endpoints imported from c2 and c0. */
const REVIEWS: RegistryService = {
  hostname: 'reviews.default.svc.cluster.local',
  namespace: 'default',
  ports: [
    { name: 'http', port: 9080, protocol: 'HTTP' },
    { name: 'grpc', port: 7070, protocol: 'GRPC', targetPort: 7071 },
  ],
  endpoints: [
    endpoint('10.0.0.9', 'c0', 'region0/zone1', 'UNHEALTHY'),
    endpoint('10.8.0.1', 'c1', 'region1/zone2', 'HEALTHY'),
    endpoint('10.8.0.2', 'c1', 'region1/zone1', 'HEALTHY'),
    endpoint('10.8.0.3', 'c1', 'region1/zone1', 'DRAINING'),
    endpoint('10.9.0.1', 'c2', 'region2/zone1', 'HEALTHY'),
  ],
};
const policy = (namespace: string, name: string, action: string) =>
  ({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace },
    spec: { action, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] },
  }) as unknown as ConfigObject;
/** Namespace-wide policies: only the replica's root namespace (mesh-root here) applies mesh-wide. */
const POLICIES = [
  policy('mesh-root', 'mesh-deny', 'DENY'),
  policy('istio-system', 'not-the-root', 'DENY'),
  policy('default', 'default-allow', 'ALLOW'),
];
const NOBODY = operatorSubject('cluster.local', 'nobody');
/** `/debug/convergence` with another cluster's proxy reported over NATS (and a stray one of c1's). */
const remoteRow = (clusterId: string, replicaId: string, proxy: string) => ({
  proxy,
  namespace: 'default',
  kind: 'sidecar',
  variant: 'delta',
  types: { cds: 'SYNCED', lds: 'SYNCED', eds: 'STALE', rds: 'SYNCED' },
  syncedVersion: '12',
  syncedAgeMs: 4000,
  lastAckAgeMs: 2500,
  clusterId,
  replicaId,
  reportedAgoMs: 1200,
});
const CONVERGENCE = {
  cluster: { summary: 'revision 7 reached 100% of 0 proxies' },
  mesh: { summary: '2 clusters', clusters: [] },
  remoteProxies: {
    proxies: [remoteRow('c1', 'r9', 'own.default'), remoteRow('c2', 'w-0', 'client-0.default')],
    replicas: [
      { clusterId: 'c1', replicaId: 'r9', proxies: 1, listed: 1, omitted: 0, reportedAgoMs: 1200 },
      { clusterId: 'c2', replicaId: 'w-0', proxies: 201, listed: 1, omitted: 200, reportedAgoMs: 1200 },
    ],
  },
  remoteReplicas: [
    { clusterId: 'c1', replicaId: 'r9', reportedAgoMs: 1200 },
    {
      clusterId: 'c2',
      replicaId: 'w-0',
      reportedAgoMs: 1200,
      status: {
        leader: true,
        locality: 'region2/zone1',
        connections: 201,
        store: 'ok',
        snapshotRevision: 12,
      },
    },
  ],
};

let store: MemoryStore;
let authority: AdminAuthority;
let server: Server;
let base: string;
let viewToken: string;
let noRoleToken: string;
const audit: Record<string, unknown>[] = [];
const refused: string[] = [];

beforeAll(async () => {
  store = new MemoryStore({ keyspace: Keyspace.of('m', 'c1') });
  viewToken = (
    await bootstrapCredential(store, {
      subject: VIEWER,
      role: 'view',
      bindingName: 'viewer',
      ttlSeconds: 7200,
    })
  ).token;
  authority = await AdminAuthority.open(store);
  noRoleToken = (await authority.mint(NOBODY, 600)).token;
  const host: DashboardHost = {
    auth: authority,
    debugInfo: (path) =>
      path === '/debug/replica'
        ? { id: 'r1', clusterId: 'c1', adminAddress: '127.0.0.1:1', rootNamespace: 'mesh-root' }
        : path === '/debug/registry'
          ? { revision: 7, services: [REVIEWS] }
          : path === '/debug/federation'
            ? { remoteClusters: [{ cluster: 'c2', stale: false, heardAgoMs: 800 }] }
            : path === '/debug/convergence'
              ? CONVERGENCE
              : undefined,
    listConfig: async (kind) => ({
      revision: 1,
      items: kind === 'AuthorizationPolicy' ? POLICIES : [],
    }),
    log: {
      info: (o) => audit.push(o),
      warn: (o) => audit.push(o),
    },
    onRefused: (r) => refused.push(r),
  };
  server = createServer((req, res) => {
    void handleDashboard(host, req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.close();
  await authority?.close();
  await store?.close();
});

const login = (token: string, headers: Record<string, string> = {}) =>
  fetch(`${base}/ui/login`, {
    method: 'POST',
    headers: { origin: base, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ token }),
    redirect: 'manual',
  });

describe('dashboard login and session', () => {
  it('without a session: pages redirect to the login page, the data API answers 401', async () => {
    const page = await fetch(`${base}/ui/proxies`, { redirect: 'manual' });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/ui/login?next=%2Fui%2Fproxies');
    const api = await fetch(`${base}/ui/api/session`);
    expect(api.status).toBe(401);
    expect(((await api.json()) as { message: string }).message).toBe(
      'no dashboard session: log in at /ui/login',
    );
    // A bearer token is not a dashboard session (the cookie is the only credential here).
    const bearer = await fetch(`${base}/ui/api/session`, {
      headers: { authorization: `Bearer ${viewToken}` },
    });
    expect(bearer.status).toBe(401);
    expect(refused).toContain('unauthenticated');
  });

  it('the login page and static files are public; files outside public/ are not served', async () => {
    const page = await fetch(`${base}/ui/login`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(await page.text()).toContain('Admin token');
    const hooks = await fetch(`${base}/ui/vendor/hooks.mjs`);
    expect(hooks.status).toBe(200);
    const js = await hooks.text();
    expect(js).toContain('from"./preact.mjs"');
    expect(js).not.toContain('from"preact"');
    for (const path of [
      '/ui/assets/..%2Fsrc%2Fhandler.ts',
      '/ui/assets/../package.json',
      '/ui/vendor/jose.mjs',
    ])
      expect((await fetch(`${base}${path}`)).status, path).toBe(404);
  });

  it('refuses a login without an origin, with another body type, with a bad token, and with no role: no cookie', async () => {
    const noOrigin = await fetch(`${base}/ui/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: viewToken }),
    });
    expect(noOrigin.status).toBe(403);
    const form = await login(viewToken, { 'content-type': 'application/x-www-form-urlencoded' });
    expect(form.status).toBe(415);
    const bad = await login('x.y.z');
    expect(bad.status).toBe(401);
    const none = await login(noRoleToken);
    expect(none.status).toBe(403);
    expect(((await none.json()) as { message: string }).message).toContain(
      'may not open the dashboard: needs role view',
    );
    for (const r of [noOrigin, form, bad, none]) expect(r.headers.get('set-cookie')).toBeNull();
  });

  it('a view token gets a session: a new token of the same subject, HttpOnly, SameSite=Strict, Path=/ui, at most an hour', async () => {
    const res = await login(viewToken);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { subject: string; roles: string[]; expiresAt: string };
    expect(body.subject).toBe(VIEWER);
    expect(body.roles).toEqual(['view']);
    const cookie = res.headers.get('set-cookie')!;
    expect(cookie).toMatch(
      /^meridian_ui_c1=[\w-]+\.[\w-]+\.[\w-]+; Path=\/ui; Max-Age=3600; HttpOnly; SameSite=Strict$/,
    );
    const session = /^meridian_ui_c1=([^;]+)/.exec(cookie)![1]!;
    expect(session).not.toBe(viewToken);
    expect(tokenExpiry(session)! - Date.now() / 1000).toBeLessThanOrEqual(SESSION_TTL_SECONDS);
    // The pasted token is never written to the log.
    expect(JSON.stringify(audit)).not.toContain(viewToken);
    expect(JSON.stringify(audit)).not.toContain(session);
    const who = await fetch(`${base}/ui/api/session`, {
      headers: { cookie: `other=1; meridian_ui_c1=${session}` },
    });
    expect(who.status).toBe(200);
    expect(await who.json()).toMatchObject({
      subject: VIEWER,
      roles: ['view'],
      clusterId: 'c1',
      replica: 'r1',
    });
    const page = await fetch(`${base}/ui/mesh`, { headers: { cookie: `meridian_ui_c1=${session}` } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/ui/assets/app.js');
    // The cookie of another cluster's dashboard is not this one's.
    const other = await fetch(`${base}/ui/api/session`, { headers: { cookie: `meridian_ui_c2=${session}` } });
    expect(other.status).toBe(401);
    // Only GET: a write through the cookie is refused.
    const post = await fetch(`${base}/ui/api/session`, {
      method: 'POST',
      headers: { cookie: `meridian_ui_c1=${session}` },
    });
    expect(post.status).toBe(405);

    // Live pages are server-sent events: one `data:` event per period, with the page's data.
    const stream = await fetch(`${base}/ui/api/stream/graph`, {
      headers: { cookie: `meridian_ui_c1=${session}` },
    });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toBe('text/event-stream');
    const reader = stream.body!.getReader();
    let events = '';
    const nextEvent = async (): Promise<string> => {
      for (;;) {
        const end = events.indexOf('\n\n');
        if (end >= 0) {
          const event = events.slice(0, end);
          events = events.slice(end + 2);
          return event;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        events += new TextDecoder().decode(value);
      }
    };
    const first = await nextEvent();
    expect(first.startsWith('data: ')).toBe(true);
    expect(JSON.parse(first.slice('data: '.length))).toHaveProperty('layout');
    // An unknown live view, and a stream without a session, are refused like the rest of the API.
    expect(
      (await fetch(`${base}/ui/api/stream/config`, { headers: { cookie: `meridian_ui_c1=${session}` } }))
        .status,
    ).toBe(404);
    expect((await fetch(`${base}/ui/api/stream/graph`)).status).toBe(401);

    // Roles are read at each request: the binding deleted, the session sees nothing.
    await deleteRoleBinding(store, 'viewer');
    // An open stream re-checks the session before each event: it ends with an `end` event.
    let last = await nextEvent();
    while (last.startsWith('data: ')) last = await nextEvent();
    expect(last.startsWith('event: end')).toBe(true);
    await reader.cancel();
    await expect
      .poll(
        async () =>
          (await fetch(`${base}/ui/api/session`, { headers: { cookie: `meridian_ui_c1=${session}` } }))
            .status,
      )
      .toBe(403);
    const logout = await fetch(`${base}/ui/logout`, { method: 'POST', headers: { origin: base } });
    expect(logout.headers.get('set-cookie')).toBe(
      'meridian_ui_c1=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict',
    );
    expect(await logout.json()).toEqual({ loggedOut: true, revoked: false });
  });

  it('logout revokes the session on the server: a copied cookie is refused afterwards, and an open stream ends at once', async () => {
    await store.put(
      'auth/rolebindings/viewer',
      new TextEncoder().encode(JSON.stringify({ subject: VIEWER, role: 'view' })),
    );
    await expect.poll(async () => (await login(viewToken)).status).toBe(200);
    const session = /^meridian_ui_c1=([^;]+)/.exec((await login(viewToken)).headers.get('set-cookie')!)![1]!;
    const copied = { cookie: `meridian_ui_c1=${session}` };
    expect((await fetch(`${base}/ui/api/session`, { headers: copied })).status).toBe(200);
    // A live stream of the session (the graph's period is 5 s: an end before then is the logout's).
    const stream = await fetch(`${base}/ui/api/stream/graph`, { headers: copied });
    const reader = stream.body!.getReader();
    let events = '';
    const read = async (until: string): Promise<string> => {
      while (!events.includes(until)) {
        const { value, done } = await reader.read();
        if (done) return events;
        events += new TextDecoder().decode(value);
      }
      return events;
    };
    await read('data: ');
    const out = await fetch(`${base}/ui/logout`, { method: 'POST', headers: { origin: base, ...copied } });
    expect(out.status).toBe(200);
    expect(await out.json()).toEqual({ loggedOut: true, revoked: true });
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
    // The stream got its end event right away (no second data event in between) and closed.
    const rest = await read('event: end');
    expect(rest.split('\n\n').filter((e) => e.startsWith('data: '))).toHaveLength(1);
    expect(rest).toContain('event: end\ndata: {"message":"logged out"}');
    expect((await reader.read()).done).toBe(true);
    // The copy of the cookie no longer works: the page, the data API and a new stream are refused.
    const api = await fetch(`${base}/ui/api/session`, { headers: copied });
    expect(api.status).toBe(401);
    expect(((await api.json()) as { message: string }).message).toBe('token revoked');
    expect((await fetch(`${base}/ui/mesh`, { headers: copied, redirect: 'manual' })).status).toBe(303);
    expect((await fetch(`${base}/ui/api/stream/mesh`, { headers: copied })).status).toBe(401);
    // Logging out again with the copy changes nothing and says so.
    const again = await fetch(`${base}/ui/logout`, { method: 'POST', headers: { origin: base, ...copied } });
    expect(await again.json()).toMatchObject({ loggedOut: true, revoked: false });
    // The revocation is in the store for the other replicas (they mirror auth/revoked-tokens/).
    expect((await store.list('auth/revoked-tokens/')).items).toHaveLength(1);
    // Audited without the token.
    expect(audit.some((a) => a.outcome === 'session revoked' && a.subject === VIEWER)).toBe(true);
    expect(JSON.stringify(audit)).not.toContain(session);
  });
});

describe('dashboard data', () => {
  it("services: every endpoint by mesh cluster (local first, imported after), locality and health; policy: the replica's root namespace", async () => {
    const res = await login(viewToken);
    expect(res.status).toBe(200);
    const cookie = { cookie: /^(meridian_ui_c1=[^;]+)/.exec(res.headers.get('set-cookie')!)![1]! };
    expect((await fetch(`${base}/ui/api/services`)).status).toBe(401);
    const services = (await (await fetch(`${base}/ui/api/services`, { headers: cookie })).json()) as {
      revision: number;
      clusterId: string;
      services: ReturnType<typeof endpointsByCluster>;
      remoteClusters: { cluster: string }[];
      command: string;
    };
    expect(services.revision).toBe(7);
    expect(services.command).toContain('/debug/registry');
    expect(services.remoteClusters.map((c) => c.cluster)).toEqual(['c2']);
    const reviews = services.services[0]!;
    expect(reviews.health).toEqual({ UNHEALTHY: 1, HEALTHY: 3, DRAINING: 1 });
    expect(reviews.clusters.map((c) => [c.cluster, c.local])).toEqual([
      ['c1', true],
      ['c0', false],
      ['c2', false],
    ]);
    const c1 = reviews.clusters[0]!;
    expect(c1.health).toEqual({ HEALTHY: 2, DRAINING: 1 });
    expect(
      c1.localities.map((l) => [l.locality, l.endpoints.map((e) => `${e.address} ${e.health}`)]),
    ).toEqual([
      ['region1/zone1', ['10.8.0.2 HEALTHY', '10.8.0.3 DRAINING']],
      ['region1/zone2', ['10.8.0.1 HEALTHY']],
    ]);
    expect(reviews.clusters[2]!.localities[0]).toEqual({
      locality: 'region2/zone1',
      endpoints: [
        {
          address: '10.9.0.1',
          ports: { http: 9080, grpc: 7071 },
          health: 'HEALTHY',
          network: 'net2',
          serviceAccount: 'reviews',
          weight: 1,
        },
      ],
    });
    // The Policy page selects with the root namespace the replica reports, not a fixed one.
    const pol = (await (
      await fetch(`${base}/ui/api/policy?namespace=default&labels=app%3Dreviews`, { headers: cookie })
    ).json()) as {
      rootNamespace: string;
      selected: { deny: { name: string }[]; allow: { name: string }[] };
      command: string;
    };
    expect(pol.rootNamespace).toBe('mesh-root');
    expect(pol.selected.deny.map((p) => p.name)).toEqual(['mesh-deny']);
    expect(pol.selected.allow.map((p) => p.name)).toEqual(['default-allow']);
    expect(pol.command).toContain('meridian get ap -n mesh-root -o yaml');
  });

  it("proxies: another cluster's proxies as its replicas' summaries report them, marked remote with the report's age", async () => {
    const res = await login(viewToken);
    const cookie = { cookie: /^(meridian_ui_c1=[^;]+)/.exec(res.headers.get('set-cookie')!)![1]! };
    const body = (await (await fetch(`${base}/ui/api/proxies`, { headers: cookie })).json()) as {
      replicas: string[];
      remoteReplicas: { clusterId: string; replicaId: string; omitted: number }[];
      proxies: Record<string, unknown>[];
      errors: { replica: string }[];
      convergence: Record<string, unknown>;
    };
    // This replica's member r1 is unreachable here (127.0.0.1:1): an error, not a row.
    expect(body.replicas).toEqual(['r1']);
    expect(body.errors.map((e) => e.replica)).toEqual(['r1']);
    // Only the other cluster's rows (a row claiming this cluster is not taken from NATS).
    expect(body.proxies).toEqual([
      {
        name: 'client-0.default',
        namespace: 'default',
        kind: 'sidecar',
        variant: 'delta',
        clusterId: 'c2',
        replica: 'w-0',
        replicaCluster: 'c2',
        types: {
          cds: { state: 'SYNCED' },
          lds: { state: 'SYNCED' },
          eds: { state: 'STALE' },
          rds: { state: 'SYNCED' },
        },
        syncedVersion: '12',
        syncedAgeMs: 4000,
        lastAckAgeMs: 2500,
        remote: { reportedAgoMs: 1200 },
      },
    ]);
    expect(body.remoteReplicas).toMatchObject([{ clusterId: 'c2', replicaId: 'w-0', omitted: 200 }]);
    // The convergence as before, without the rows a second time.
    expect(body.convergence).toEqual({ cluster: CONVERGENCE.cluster, mesh: CONVERGENCE.mesh });
  });

  it("mesh: the other clusters' replicas as their summaries report them (never this cluster's from NATS)", async () => {
    const res = await login(viewToken);
    const cookie = { cookie: /^(meridian_ui_c1=[^;]+)/.exec(res.headers.get('set-cookie')!)![1]! };
    const body = (await (await fetch(`${base}/ui/api/mesh`, { headers: cookie })).json()) as {
      replicas: { id: string; reachable: boolean }[];
      remoteReplicas: unknown[];
    };
    expect(body.replicas.map((r) => [r.id, r.reachable])).toEqual([['r1', false]]);
    expect(body.remoteReplicas).toEqual([CONVERGENCE.remoteReplicas[1]]);
  });
});

describe('dashboard pure parts', () => {
  it('cookies and session lifetime', () => {
    expect(readCookie('a=1; meridian_ui_c1=tok; b=2', 'meridian_ui_c1')).toBe('tok');
    expect(readCookie('meridian_ui_c1=', 'meridian_ui_c1')).toBeUndefined();
    expect(readCookie(undefined, 'x')).toBeUndefined();
    expect(sessionCookieName('east/1')).toBe('meridian_ui_east_1');
    expect(sessionCookie('n', 'v', 60, true)).toBe(
      'n=v; Path=/ui; Max-Age=60; HttpOnly; SameSite=Strict; Secure',
    );
    expect(sessionSeconds(1000 + 7200, 1000)).toBe(SESSION_TTL_SECONDS);
    expect(sessionSeconds(1000 + 600, 1000)).toBe(600);
    expect(sessionSeconds(1000 + 30, 1000)).toBeUndefined();
    expect(tokenExpiry('not-a-jwt')).toBeUndefined();
  });

  it('the graph layout is deterministic, one column per namespace, and drops edges to unknown nodes', () => {
    const nodes = [
      { id: 'w:b', kind: 'workload' as const, name: 'b', namespace: 'shop', cluster: 'c1' },
      { id: 's:p', kind: 'service' as const, name: 'payments', namespace: 'pay', cluster: 'c1' },
      { id: 'w:a', kind: 'workload' as const, name: 'a', namespace: 'shop', cluster: 'c1' },
      { id: 'u', kind: 'unknown' as const, name: 'unknown', namespace: '', cluster: 'c1' },
    ];
    const edges = [
      { source: 'w:a', destination: 's:p', requestsPerSecond: 2, errorRate: 0.25, p99Ms: 41.6 },
      { source: 'w:a', destination: 'gone' },
    ];
    const one = layoutGraph({ nodes, edges });
    const two = layoutGraph({ nodes: [...nodes].reverse(), edges: [...edges].reverse() });
    expect(two).toEqual(one);
    expect(one.columns.map((c) => c.namespace)).toEqual(['pay', 'shop', 'unknown']);
    const at = (id: string) => one.nodes.find((n) => n.id === id)!;
    expect(at('w:a').x).toBe(at('w:b').x);
    expect(at('w:a').y).toBeLessThan(at('w:b').y);
    expect(one.edges).toHaveLength(1);
    expect(one.edges[0]!.label).toBe('2.0 rps · 25.0% err · p99 42 ms');
    expect(edgeLabel({ source: 'a', destination: 'b' })).toBe('');
  });

  it('CA expiry from the exposition; labels of the policy form', () => {
    const text =
      '# TYPE citadel_server_root_cert_expiry_timestamp gauge\ncitadel_server_root_cert_expiry_timestamp 1900000000\ncitadel_server_cert_chain_expiry_timestamp{x="y"} 1.8e9\n';
    expect(caExpiry(text)).toEqual({
      root: new Date(1_900_000_000_000).toISOString(),
      chain: new Date(1_800_000_000_000).toISOString(),
    });
    expect(caExpiry('pilot_xds 3\n')).toEqual({});
    expect(parseLabels('app=reviews, version=v1')).toEqual({ app: 'reviews', version: 'v1' });
    expect(() => parseLabels('app')).toThrow('labels: "app" is not key=value');
  });
});
