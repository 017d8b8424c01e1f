// The dashboard on an admin port served over TLS (`--admin-tls on`): two replicas on one etcd with
// the cluster CA. The session cookie is marked Secure, and the Mesh and Proxies data of replica a
// include replica b, which a asks over HTTPS verified against the mesh trust bundle.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type EtcdCluster, freePorts, startEtcd } from '@meridian/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminTokenFor, installClusterCaForTest, spawnTs, waitUntil } from '../../server/test/harness.js';

const MAIN = fileURLToPath(new URL('../../server/src/main.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'meridian-dashboard-tls-'));
let etcd: EtcdCluster;
let rootPem: string;
const children: ChildProcess[] = [];
const admin: string[] = [];

/** An HTTPS call trusting only the mesh root. */
function call(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: init.method ?? 'GET', headers: init.headers ?? {}, ca: rootPem },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

beforeAll(async () => {
  etcd = await startEtcd();
  const kek = join(dir, 'kek');
  rootPem = (await installClusterCaForTest(etcd.endpoints, 'test', kek)).root.certPem;
  const ports = await freePorts(6);
  for (const [i, id] of ['a', 'b'].entries()) {
    const [xds, adminPort, ca] = [ports[3 * i]!, ports[3 * i + 1]!, ports[3 * i + 2]!];
    children.push(
      spawnTs(MAIN, [
        ...['--mesh-id', 'test', '--cluster-id', 'c1', '--replica-id', id],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--xds-address', `127.0.0.1:${xds}`],
        ...['--admin-address', `127.0.0.1:${adminPort}`, '--monitoring-address', '127.0.0.1:0'],
        ...['--ca-address', `127.0.0.1:${ca}`, '--ca-kek-file', kek, '--admin-tls', 'on'],
      ]),
    );
    admin.push(`https://127.0.0.1:${adminPort}`);
  }
  for (const base of admin)
    await waitUntil(
      `${base} ready over TLS`,
      async () => (await call(`${base}/readyz`)).status === 200,
      60_000,
      200,
    );
}, 120_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await etcd?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('the dashboard over admin TLS', () => {
  it('a Secure session cookie; replica a asks replica b over HTTPS with the mesh trust bundle', async () => {
    const [a] = admin as [string, string];
    const token = await adminTokenFor(etcd.endpoints, 'test', 'c1');
    const login = await call(`${a}/ui/login`, {
      method: 'POST',
      headers: { origin: a, 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
    });
    expect(login.status, login.body).toBe(200);
    const setCookie = String(login.headers['set-cookie']);
    expect(setCookie).toMatch(
      /^meridian_ui_c1=[^;]+; Path=\/ui; Max-Age=3600; HttpOnly; SameSite=Strict; Secure$/,
    );
    const cookie = setCookie.split(';')[0]!;
    await waitUntil('both replicas answer replica a over HTTPS', async () => {
      const mesh = JSON.parse((await call(`${a}/ui/api/mesh`, { headers: { cookie } })).body) as {
        replicas: { id: string; reachable: boolean }[];
      };
      return mesh.replicas.length === 2 && mesh.replicas.every((r) => r.reachable);
    });
    const mesh = JSON.parse((await call(`${a}/ui/api/mesh`, { headers: { cookie } })).body) as {
      ca: { root?: string; chain?: string };
    };
    expect(Date.parse(mesh.ca.root!)).toBeGreaterThan(Date.now());
    expect(Date.parse(mesh.ca.chain!)).toBeGreaterThan(Date.now());
    const proxies = JSON.parse((await call(`${a}/ui/api/proxies`, { headers: { cookie } })).body) as {
      replicas: string[];
      errors: unknown[];
    };
    expect(proxies).toMatchObject({ replicas: ['a', 'b'], errors: [] });
  });
});
