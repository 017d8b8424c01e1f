// Issue 19, end to end in a real browser (the mesh: browser-mesh.ts), the pages after login: Proxies
// (every replica's sidecars with their sync state, c2's over federation, the convergence), Services
// and graph (the demo edge, endpoints by cluster and locality, a proxy's EDS), Config (objects by kind
// with the analyze warning, a proxy's effective config) and Policy (what applies to a workload). Each
// page is screenshotted (to MERIDIAN_TEST_OUTPUT or <tmp>/meridian-dashboard-screens, not committed).
// Skips (with a message) when /usr/bin/chromium is absent: CI installs Debian's `chromium`.
import { eventually } from '@meridian/testkit';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplicaProcess } from '../../server/test/harness.js';
import { DashboardMesh, haveChromium } from './browser-mesh.js';

const EDGE = 'workload:c1/shop/frontend-v1->service:c1/pay/payments';

const mesh = new DashboardMesh();
let replicas: ReplicaProcess[] = [];
let page: Page;
const shot = (name: string): Promise<void> => mesh.shot(name);

describe.skipIf(!haveChromium)('the dashboard in Chromium, against 3 replicas on etcd', () => {
  beforeAll(async () => {
    await mesh.start();
    ({ replicas } = mesh);
    page = mesh.page!;
  }, 180_000);

  beforeAll(async () => {
    // Logged in with the view token through the login page, as browser-session.test.ts checks.
    await page.goto(`${replicas[0]!.admin}/ui/mesh`);
    await page.fill('#token', mesh.viewToken);
    await page.click('button[type=submit]');
    await page.waitForURL('**/ui/mesh', { timeout: 10_000 });
  });

  afterAll(() => mesh.stop(), 60_000);

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
});
