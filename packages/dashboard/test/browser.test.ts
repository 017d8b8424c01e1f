// Issue 19, end to end in a real browser: a 3-member etcd, 3 meridiand processes serving the
// dashboard on their admin ports, simulated sidecars (testkit), and Debian's Chromium driven by
// playwright-core. Each page is loaded with real data and screenshotted (to MERIDIAN_TEST_OUTPUT or
// <tmp>/meridian-dashboard-screens, not committed); an unauthenticated browser is sent to the login
// page and the data API refuses it; a SIGKILLed replica turns red on the Mesh page; a logout revokes
// the session on every replica.
// Skips (with a message) when /usr/bin/chromium is absent: CI installs Debian's `chromium`.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@grpc/grpc-js';
import { bootstrapCredential, operatorSubject } from '@meridian/auth';
import { EtcdStore, Keyspace } from '@meridian/store';
import {
  type EtcdCluster,
  eventually,
  freePorts,
  SimulatedProxy,
  type StandaloneNatsServer,
  startEtcdCluster,
  startNats,
} from '@meridian/testkit';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encodeAccessLogs,
  FRONTEND_IP,
  FRONTEND_YAML,
  httpEntry,
  PAYMENTS_IP,
  PAYMENTS_YAML,
  sidecarNodeId,
  streamAccessLogs,
} from '../../server/test/access-log-client.js';
import {
  ALL_TYPES,
  installClusterCaForTest,
  type ReplicaProcess,
  sidecar,
  startReplicas,
  xdsClient,
} from '../../server/test/harness.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium)
  console.warn(
    `dashboard browser tests SKIPPED: ${CHROMIUM} not found (install Debian's chromium: apt-get install -y chromium)`,
  );

const SHOTS = process.env.MERIDIAN_TEST_OUTPUT ?? join(tmpdir(), 'meridian-dashboard-screens');

const FRONTEND = FRONTEND_IP;
const PAYMENTS = PAYMENTS_IP;
const EDGE = 'workload:c1/shop/frontend-v1->service:c1/pay/payments';
const CONFIG = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.8.0.1, labels: {app: reviews}, locality: region1/zone1}
  - {address: 10.8.0.2, labels: {app: reviews}, locality: region1/zone2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v9, port: {number: 9080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: default}
spec:
  address: 10.8.0.1
  labels: {app: reviews, version: v1}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-from-client, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/client]}}]
    to: [{operation: {methods: [GET]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-only, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/admin]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny-debug, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: [/debug/*]}}]
---
${PAYMENTS_YAML}---
${FRONTEND_YAML}`;
/** Cluster c2's reviews endpoint: exported over NATS, imported by c1's replicas beside their own. */
const REMOTE_CONFIG = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.9.0.1, labels: {app: reviews}, locality: region2/zone1}
`;

let etcd: EtcdCluster;
let replicas: ReplicaProcess[] = [];
let remote: ReplicaProcess | undefined;
let nats: StandaloneNatsServer | undefined;
let context: BrowserContext | undefined;
let page: Page;
let viewToken: string;
const clients: Client[] = [];
const proxies: SimulatedProxy[] = [];
const profile = mkdtempSync(join(tmpdir(), 'meridian-chromium-'));

async function shot(name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

describe.skipIf(!haveChromium)('the dashboard in Chromium, against 3 replicas on etcd', () => {
  beforeAll(async () => {
    etcd = await startEtcdCluster({ size: 3, fastElection: true });
    // The cluster CA, so the Mesh page has certificate expiry to show.
    const kekFile = join(profile, 'kek');
    await installClusterCaForTest(etcd.endpoints, 'test', kekFile);
    // Federation: one NATS server with JetStream, and a replica of a second cluster c2 (its own
    // keyspace on the same etcd) whose heartbeats c1's replicas import.
    nats = await startNats({ jetstream: true });
    const ports = await freePorts(11);
    replicas = await startReplicas(
      ['a', 'b', 'c'].map((id, i) => ({
        id,
        etcd: etcd.endpoints,
        xdsPort: ports[2 * i]!,
        adminPort: ports[2 * i + 1]!,
        extraArgs: [
          ...['--debounce-ms', '20', '--locality', `region1/zone${i + 1}`, '--telemetry-plaintext', 'on'],
          ...['--ca-address', `127.0.0.1:${ports[6 + i]}`, '--ca-kek-file', kekFile],
          ...['--nats-url', nats!.url],
        ],
      })),
    );
    [remote] = await startReplicas([
      {
        id: 'w',
        etcd: etcd.endpoints,
        xdsPort: ports[9]!,
        adminPort: ports[10]!,
        extraArgs: ['--cluster-id', 'c2', '--locality', 'region2/zone1', '--nats-url', nats.url],
      },
    ]);
    // A second operator with role view only: enough to look.
    const store = await EtcdStore.connect({ endpoints: etcd.endpoints, keyspace: Keyspace.of('test', 'c1') });
    try {
      await replicas[0]!.token(); // the signing key and the admin binding first
      viewToken = (
        await bootstrapCredential(store, {
          subject: operatorSubject('cluster.local', 'viewer'),
          role: 'view',
          bindingName: 'viewer',
          ttlSeconds: 3600,
        })
      ).token;
    } finally {
      await store.close();
    }
    const applied = await replicas[0]!.apply(CONFIG);
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    const remoteApplied = await remote!.apply(REMOTE_CONFIG);
    expect(remoteApplied.status, JSON.stringify(remoteApplied.body)).toBe(200);
    for (const [i, r] of [
      [1, replicas[1]!],
      [2, replicas[2]!],
    ] as const) {
      const client = xdsClient(r.xds);
      clients.push(client);
      const p = sidecar(i, i === 1 ? 'delta' : 'sotw');
      p.connect(client);
      proxies.push(p);
    }
    // A sidecar of c2 on its replica w: c1's Proxies page lists it from w's convergence summary
    // over NATS (c2's replicas are not asked: their admin keys differ).
    {
      const client = xdsClient(remote!.xds);
      clients.push(client);
      const p = new SimulatedProxy({
        nodeId: 'sidecar~10.2.0.9~remote-0.default~default.svc.cluster.local',
        metadata: { NAMESPACE: 'default', CLUSTER_ID: 'c2', LABELS: { app: 'remote' } },
        variant: 'delta',
        subscriptions: ALL_TYPES.map((typeUrl) => ({ typeUrl })),
      });
      p.connect(client);
      proxies.push(p);
    }
    await eventually(
      'the sidecars hold all four types',
      () => proxies.every((p) => p.state.size === 4),
      30_000,
      50,
    );
    // Demo traffic for the graph: frontend -> payments, 40 answered and 10 failed, reported by the
    // caller's proxy to replicas a and b (Envoy's access-log service).
    const call = (code: number) =>
      httpEntry({
        direction: 'outbound',
        downstream: `${FRONTEND}:41000`,
        upstream: `${PAYMENTS}:8080`,
        upstreamCluster: 'outbound|8080||payments.pay.svc.cluster.local',
        code,
        durationMs: 12,
      });
    const node = sidecarNodeId(FRONTEND, 'frontend-v1', 'shop');
    for (const [r, ok, failed] of [
      [replicas[0]!, 25, 4],
      [replicas[1]!, 15, 6],
    ] as const) {
      await eventually(
        `${r.spec.id} takes the access logs`,
        async () => {
          const sent = await streamAccessLogs(r.xds, [
            encodeAccessLogs(
              {
                http: [
                  ...Array.from({ length: ok }, () => call(200)),
                  ...Array.from({ length: failed }, () => call(503)),
                ],
              },
              node,
            ),
          ]);
          return sent.code === 0;
        },
        30_000,
        50,
      );
    }
    // A fresh profile directory (playwright takes it as the persistent context's user data dir).
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1400, height: 900 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await context.newPage();
  }, 180_000);

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    for (const p of proxies) p.disconnect();
    for (const c of clients) c.close();
    await Promise.all([...replicas, ...(remote ? [remote] : [])].map((r) => r.kill('SIGKILL')));
    await nats?.stop();
    await etcd?.stop();
    rmSync(profile, { recursive: true, force: true });
    console.log(`dashboard screenshots: ${SHOTS}`);
  }, 60_000);

  it('an unauthenticated browser is sent to the login page; the data API and a forged session are refused', async () => {
    const a = replicas[0]!;
    await page.goto(`${a.admin}/ui/mesh`);
    expect(new URL(page.url()).pathname).toBe('/ui/login');
    expect(new URL(page.url()).searchParams.get('next')).toBe('/ui/mesh');
    await expect(page.locator('#token').isVisible()).resolves.toBe(true);
    const api = await page.evaluate(async () => {
      const res = await fetch('/ui/api/mesh');
      return { status: res.status, body: await res.text() };
    });
    expect(api.status).toBe(401);
    expect(api.body).not.toContain('"replicas"');
    // A forged cookie (another signing key's token shape) and the admin API through a cookie.
    const forged = await fetch(`${a.admin}/ui/api/proxies`, {
      headers: { cookie: 'meridian_ui_c1=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln' },
    });
    expect(forged.status).toBe(401);
    const viaCookie = await fetch(`${a.admin}/debug/syncz`, {
      headers: { cookie: `meridian_ui_c1=${viewToken}` },
    });
    expect(viaCookie.status).toBe(401);
    // A cross-origin login is refused before the token is looked at.
    const cross = await fetch(`${a.admin}/ui/login`, {
      method: 'POST',
      headers: { origin: 'http://evil.example', 'content-type': 'application/json' },
      body: JSON.stringify({ token: viewToken }),
    });
    expect(cross.status).toBe(403);
    expect(cross.headers.get('set-cookie')).toBeNull();
    // A bad token on the page: refused, no cookie.
    await page.fill('#token', 'not-a-token');
    await page.click('button[type=submit]');
    await page.locator('#error').filter({ hasText: 'Refused (401)' }).waitFor({ timeout: 10_000 });
    expect(await context!.cookies()).toEqual([]);
    await shot('0-login-refused');
  });

  it('a view token logs in: HttpOnly SameSite=Strict session cookie, then the Mesh page lists the replicas', async () => {
    await page.fill('#token', viewToken);
    await page.click('button[type=submit]');
    await page.waitForURL('**/ui/mesh', { timeout: 10_000 });
    const cookies = await context!.cookies();
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatchObject({
      name: 'meridian_ui_c1',
      httpOnly: true,
      sameSite: 'Strict',
      path: '/ui',
    });
    expect(cookies[0]!.value).not.toBe(viewToken); // a session token of its own, not the pasted one
    // The admin server's browser checks hold for the dashboard too: with a valid session, a request
    // from another origin or marked cross-site is refused before the dashboard runs.
    const session = `meridian_ui_c1=${cookies[0]!.value}`;
    const api = `${replicas[0]!.admin}/ui/api/mesh`;
    expect((await fetch(api, { headers: { cookie: session } })).status).toBe(200);
    expect((await fetch(api, { headers: { cookie: session, origin: 'http://evil.example' } })).status).toBe(
      403,
    );
    expect((await fetch(api, { headers: { cookie: session, 'sec-fetch-site': 'cross-site' } })).status).toBe(
      403,
    );
    for (const id of ['a', 'b', 'c'])
      await page.locator(`tr[data-replica="${id}"][data-state="up"]`).waitFor({ timeout: 15_000 });
    await page
      .locator('[data-testid=leader]')
      .filter({ hasText: /^[abc]$/ })
      .waitFor({ timeout: 15_000 });
    // The equivalent call, with this replica's own address filled in.
    expect(await page.locator('[data-testid=command]').first().textContent()).toContain(
      `${replicas[0]!.admin}/debug/replicas`,
    );
    expect(await page.locator('tr[data-replica="b"]').textContent()).toContain('region1/zone2');
    expect(await page.locator('header .who').textContent()).toContain('viewer (view)');
    const ca = (await page.locator('[data-testid=ca]').textContent()) ?? '';
    expect(ca).toMatch(/root expires 20\d\d-\d\d-\d\d .* UTC \(\d+ days left\)/);
    expect(ca).toMatch(/intermediate expires 20\d\d-/);
    // The federation link to c2, live, with the age of its last heartbeat; c2's replica is not c1's.
    const link = page.locator('[data-testid=federation] tr[data-remote="c2"][data-state="live"]');
    await link.waitFor({ timeout: 30_000 });
    expect(await link.locator('td').nth(2).textContent()).toMatch(/^\d+(\.\d)? (ms|s)$/);
    expect(await page.locator('tr[data-replica="w"]').count()).toBe(0);
    // c2's replica w, as its convergence summary over NATS reports itself (never asked): under
    // c2's heading, 'via federation' with the report's age, its locality, leading c2, its sidecar
    // as its load, its store healthy.
    const w = page.locator(
      '[data-testid=remote-replicas][data-cluster="c2"] tr[data-remote-replica="w"][data-source="federation"]',
    );
    await w.waitFor({ timeout: 30_000 });
    let cells: string[] = [];
    await eventually(
      "w's reported state on c1's Mesh page",
      async () => {
        cells = (await w.locator('td').allTextContents()).map((t) => t.trim());
        return cells[3] === '★ leader' && cells[4] === '1';
      },
      30_000,
      250,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last: ${JSON.stringify(cells)}`);
    });
    expect(cells[0]).toBe('w');
    expect(cells[1]).toMatch(/^c2 ?\(via federation, \d+(\.\d)? (ms|s) ago\)$/);
    expect(cells[2]).toBe('region2/zone1');
    expect(cells[6]).toBe('ok');
    expect(await w.textContent()).not.toContain(remote!.admin.replace(/^https?:\/\//, ''));
    await shot('1-mesh');
  });

  it("Proxies: the simulated sidecars of every replica with their sync state, c2's reported over federation, and the convergence", async () => {
    await page.click('header nav a:has-text("Proxies")');
    await page.waitForURL('**/ui/proxies');
    const row1 = page.locator('tr[data-proxy="client-1.default"]');
    const row2 = page.locator('tr[data-proxy="client-2.default"]');
    await row1.waitFor({ timeout: 15_000 });
    await row2.waitFor({ timeout: 15_000 });
    await eventually(
      'both proxies SYNCED on every type',
      async () => {
        const [t1, t2] = [await row1.textContent(), await row2.textContent()];
        return (t1?.match(/SYNCED/g)?.length ?? 0) === 4 && (t2?.match(/SYNCED/g)?.length ?? 0) === 4;
      },
      30_000,
      50,
    );
    expect(await row1.locator('td').nth(2).textContent()).toBe('b');
    expect(await row2.locator('td').nth(2).textContent()).toBe('c');
    await page
      .locator('[data-testid=convergence]')
      .filter({ hasText: /revision \d+ reached/ })
      .waitFor({ timeout: 20_000 });
    // Cluster c2's sidecar, reported by its replica w over federation, with its state and c2's
    // convergence line.
    const remoteRow = page.locator(
      'tr[data-proxy="remote-0.default"][data-cluster="c2"][data-source="federation"]',
    );
    await remoteRow.waitFor({ timeout: 20_000 });
    await eventually(
      "c2's proxy SYNCED on every type",
      async () => ((await remoteRow.textContent())?.match(/SYNCED/g)?.length ?? 0) === 4,
      30_000,
      50,
    );
    expect(await remoteRow.locator('td').nth(1).textContent()).toMatch(
      /^c2 ?\(via federation, \d+(\.\d)? (ms|s) ago\)$/,
    );
    expect(await remoteRow.locator('td').nth(2).textContent()).toBe('w');
    expect(await remoteRow.locator('td').nth(8).textContent()).toMatch(/^\d+(\.\d)? (ms|s|min)$/); // last ACK
    expect(await remoteRow.locator('a').count()).toBe(0); // its config is c2's to show
    expect(await row1.getAttribute('data-cluster')).toBe('c1');
    await page
      .locator('[data-testid=convergence-cluster][data-cluster="c2"]')
      .filter({ hasText: /revision \d+ reached 100% of 1 proxies/ })
      .waitFor({ timeout: 20_000 });
    expect(await page.locator('[data-testid=command]').first().textContent()).toContain(
      'meridian proxy-status',
    );
    await shot('2-proxies');
  });

  it('Services and graph: the demo traffic as an edge with rate, errors and p99, and the endpoints by locality', async () => {
    // The replicas merge their graphs through etcd: wait until replica a's has both reports.
    await eventually(
      'the merged edge on replica a',
      async () => {
        const g = JSON.parse((await replicas[0]!.text('/debug/graph')).body) as {
          edges: { source: string; destination: string; requests: number }[];
        };
        return g.edges.some((e) => `${e.source}->${e.destination}` === EDGE && e.requests === 50);
      },
      30_000,
      50,
    );
    await page.click('header nav a:has-text("Services")');
    await page.waitForURL('**/ui/graph');
    const edge = page.locator(`svg[data-testid=graph] g[data-edge="${EDGE}"]`);
    await edge.waitFor({ timeout: 15_000 });
    const label = (await edge.textContent()) ?? '';
    expect(label).toMatch(/\d+\.\d rps/);
    expect(label).toContain('20.0% err'); // 10 of 50 failed
    expect(label).toMatch(/p99 \d+ ms/);
    expect(
      await page.locator('svg[data-testid=graph] g[data-node="workload:c1/shop/frontend-v1"]').count(),
    ).toBe(1);
    expect(await page.locator('svg[data-testid=graph] g[data-node="service:c1/pay/payments"]').count()).toBe(
      1,
    );
    expect(await page.locator('svg[data-testid=graph] text.column').allTextContents()).toEqual([
      'pay',
      'shop',
    ]);
    // Endpoints by mesh cluster, locality and health, from the registry: c1's own and the one
    // imported from c2 through federation.
    const reviews = page.locator('[data-testid=services] [data-service="reviews.default.svc.cluster.local"]');
    await reviews
      .locator('tr[data-cluster="c2"][data-endpoint="10.9.0.1"][data-health="HEALTHY"]')
      .waitFor({ timeout: 30_000 });
    const imported = (await reviews.locator('tr[data-cluster="c2"]').textContent()) ?? '';
    expect(imported).toContain('c2 (imported, link live)');
    expect(imported).toContain('region2/zone1');
    const local = reviews.locator('tr[data-cluster="c1"]');
    expect(await local.count()).toBe(2);
    // Cells: cluster, locality, address, ports (the service's), network, account, weight, health.
    expect(await local.nth(0).locator('td').allTextContents()).toEqual([
      'c1 (local)',
      'region1/zone1',
      '10.8.0.1',
      'http:9080',
      '—',
      '—',
      '1',
      'HEALTHY',
    ]);
    expect(await local.nth(1).textContent()).toContain('region1/zone2');
    expect(await reviews.locator('h3').textContent()).toContain('3 healthy');
    expect(await page.locator('[data-testid=command]').nth(1).textContent()).toContain(
      `${replicas[0]!.admin}/debug/registry`,
    );
    await shot('3-graph');
    // The same endpoints as one proxy is given them (its EDS), with the local ones preferred.
    await page.locator('[data-testid=eds] summary').click();
    const endpoints = page.locator('[data-testid=endpoints]');
    await endpoints.filter({ hasText: '10.8.0.2:9080' }).waitFor({ timeout: 15_000 });
    const text = (await endpoints.textContent()) ?? '';
    expect(text).toContain('outbound|9080||reviews.default.svc.cluster.local');
    expect(text).toContain('region1/zone1');
    expect(text).toContain('region1/zone2');
    await shot('3b-graph-eds');
  });

  it('Config: objects by kind with the analyze warning, and a proxy effective config', async () => {
    await page.click('header nav a:has-text("Config")');
    await page.waitForURL('**/ui/config');
    await page.locator('tr[data-object="ServiceEntry/default/reviews"]').waitFor({ timeout: 15_000 });
    const analysis = (await page.locator('[data-testid=analysis]').textContent()) ?? '';
    expect(analysis).toContain('IST0101');
    expect(analysis).toContain('VirtualService/default/reviews');
    expect(await page.locator('tr[data-object="VirtualService/default/reviews"]').textContent()).toContain(
      'IST0101',
    );
    await page.selectOption('[data-testid=kind]', 'AuthorizationPolicy');
    await eventually(
      'only AuthorizationPolicies listed',
      async () => (await page.locator('tr[data-object]').count()) === 3,
      30_000,
      50,
    );
    await page.fill('input[name=proxy]', 'client-1.default');
    await page.click('form.filters button[type=submit]');
    await page.locator('[data-testid=dump-cds]').waitFor({ timeout: 15_000 });
    await page.locator('[data-testid=dump-cds] summary').click();
    expect(await page.locator('[data-testid=dump-cds]').textContent()).toContain(
      'outbound|9080||reviews.default.svc.cluster.local',
    );
    expect(await page.locator('body').textContent()).not.toContain('PRIVATE KEY');
    await shot('4-config');
  });

  it('Policy: the AuthorizationPolicies that apply to a workload, and what they allow', async () => {
    await page.click('header nav a:has-text("Policy")');
    await page.waitForURL('**/ui/policy');
    await page.locator('[data-testid=policies]').waitFor({ timeout: 15_000 });
    await page.click('button.chip:has-text("default/reviews-1")');
    const result = page.locator('[data-testid=policy-result]');
    await result.waitFor({ timeout: 15_000 });
    expect(await result.locator('[data-policy="default/reviews-from-client"]').count()).toBe(1);
    expect(await result.locator('[data-policy="default/ratings-only"]').count()).toBe(0);
    // The replica's root namespace (its translator's, from /debug/replica): its policy applies mesh-wide.
    expect(await result.locator('[data-policy="istio-system/mesh-deny-debug"]').count()).toBe(1);
    const text = (await result.textContent()) ?? '';
    expect(text).toContain('policies of the root namespace istio-system apply mesh-wide');
    expect(text).toContain('ALLOW policies apply');
    expect(await page.locator('[data-testid=policies]').textContent()).toContain(
      'mesh-deny-debugDENY(every workload of the mesh: root namespace)',
    );
    expect(text).toContain('cluster.local/ns/default/sa/client');
    await shot('5-policy');
  });

  it('a SIGKILLed replica turns red on the Mesh page within seconds', async () => {
    await page.click('header nav a:has-text("Mesh")');
    await page.waitForURL('**/ui/mesh');
    await page.locator('tr[data-replica="c"][data-state="up"]').waitFor({ timeout: 15_000 });
    const killedAt = performance.now();
    await replicas[2]!.kill('SIGKILL');
    await page.locator('tr[data-replica="c"][data-state="down"]').waitFor({ timeout: 10_000 });
    console.log(`replica c shown down ${((performance.now() - killedAt) / 1000).toFixed(1)} s after SIGKILL`);
    expect(await page.locator('tr[data-replica="a"]').getAttribute('data-state')).toBe('up');
    await shot('6-mesh-replica-down');
  });

  it('logging out revokes the session on every replica: a copied cookie is refused, open streams end', async () => {
    const [a, b] = [replicas[0]!, replicas[1]!];
    const value = (await context!.cookies()).find((c) => c.name === 'meridian_ui_c1')!.value;
    const copied = { cookie: `meridian_ui_c1=${value}` };
    expect((await fetch(`${b.admin}/ui/api/session`, { headers: copied })).status).toBe(200);
    // Streams of the session opened elsewhere (another tab, a copied cookie) on replicas a and b.
    const open = async (base: string) => {
      const res = await fetch(`${base}/ui/api/stream/mesh`, { headers: copied });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      let text = '';
      return async (until: string): Promise<string> => {
        while (!text.includes(until)) {
          const { value: chunk, done } = await reader.read();
          if (done) break;
          text += new TextDecoder().decode(chunk);
        }
        return text;
      };
    };
    const [onA, onB] = [await open(a.admin), await open(b.admin)];
    await onA('data: ');
    await onB('data: ');
    await page.click('header button:has-text("Log out")');
    // (the page's own stream may end first and send it to /ui/login?next=...: either is the login page)
    await page.waitForURL((url) => url.pathname === '/ui/login', { timeout: 10_000 });
    expect(await context!.cookies()).toEqual([]);
    // Replica a (which took the logout) ends its stream at once; replica b at its next session check.
    expect(await onA('event: end')).toContain('event: end\ndata: {"message":"logged out"}');
    expect(await onB('event: end')).toContain('event: end\ndata: {"message":"token revoked"}');
    // The copied cookie is refused by both replicas, for pages, data and streams.
    for (const r of [a, b]) {
      const api = await fetch(`${r.admin}/ui/api/mesh`, { headers: copied });
      expect(api.status, r.spec.id).toBe(401);
      expect(((await api.json()) as { message: string }).message).toBe('token revoked');
      expect((await fetch(`${r.admin}/ui/proxies`, { headers: copied, redirect: 'manual' })).status).toBe(
        303,
      );
      expect((await fetch(`${r.admin}/ui/api/stream/proxies`, { headers: copied })).status).toBe(401);
    }
    // And the browser, back on a page, is sent to the login page.
    await page.goto(`${a.admin}/ui/mesh`);
    expect(new URL(page.url()).pathname).toBe('/ui/login');
  });
});
