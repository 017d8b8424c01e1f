// Issue 19, end to end in a real browser (the mesh: browser-mesh.ts), the session: an
// unauthenticated browser is sent to the login page and the data API refuses it; a view token logs
// in and the Mesh page lists the replicas, the federation link and c2's replica; a SIGKILLed replica
// turns red on the Mesh page; a logout revokes the session on every replica. Each page is
// screenshotted (to MERIDIAN_TEST_OUTPUT or <tmp>/meridian-dashboard-screens, not committed).
// Skips (with a message) when /usr/bin/chromium is absent: CI installs Debian's `chromium`.
import { eventually } from '@meridian/testkit';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplicaProcess } from '../../server/test/harness.js';
import { DashboardMesh, haveChromium } from './browser-mesh.js';

const mesh = new DashboardMesh();
let replicas: ReplicaProcess[] = [];
let remote: ReplicaProcess | undefined;
let context: BrowserContext | undefined;
let page: Page;
let viewToken: string;
const shot = (name: string): Promise<void> => mesh.shot(name);

describe.skipIf(!haveChromium)('the dashboard in Chromium, against 3 replicas on etcd', () => {
  beforeAll(async () => {
    await mesh.start();
    ({ replicas, remote, context, viewToken } = mesh);
    page = mesh.page!;
  }, 180_000);

  afterAll(() => mesh.stop(), 60_000);

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
