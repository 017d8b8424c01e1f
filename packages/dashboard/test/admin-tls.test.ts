// The dashboard on an admin port served over TLS (`--admin-tls on`): two replicas on one etcd with
// the cluster CA. The session cookie is marked Secure, and the Mesh and Proxies data of replica a
// include replica b, which a asks over HTTPS verified against the mesh trust bundle. A mesh client
// certificate (SPIFFE id with a role binding) opens a session instead of a token.
import { type ChildProcess, execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type EtcdCluster, eventually, freePorts, startEtcd } from '@meridian/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminTokenFor, installClusterCaForTest, spawnTs } from '../../server/test/harness.js';

const MAIN = fileURLToPath(new URL('../../server/src/main.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'meridian-dashboard-tls-'));
let etcd: EtcdCluster;
let rootPem: string;
let root: { certPem: string; keyPem: string };
const children: ChildProcess[] = [];
const admin: string[] = [];

/** An HTTPS call trusting only the mesh root. */
function call(
  url: string,
  init: {
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    cert?: { certPem: string; keyPem: string };
  } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: init.method ?? 'GET',
        headers: init.headers ?? {},
        ca: rootPem,
        ...(init.cert ? { cert: init.cert.certPem, key: init.cert.keyPem } : {}),
      },
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
  root = (await installClusterCaForTest(etcd.endpoints, 'test', kek)).root;
  rootPem = root.certPem;
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
    await eventually(
      `${base} ready over TLS`,
      async () => (await call(`${base}/readyz`)).status === 200,
      60_000,
      200,
    );
}, 120_000);

/**
 * A client certificate for the SPIFFE id `uri`, signed with openssl by `issuer` (a leaf right under
 * the mesh root verifies against the trust bundle, as one under the cluster intermediate does).
 */
function clientCertificate(issuer: { certPem: string; keyPem: string }, uri: string) {
  const n = randomBytes(4).toString('hex');
  const f = (name: string) => join(dir, `${n}-${name}`);
  writeFileSync(f('ca.pem'), issuer.certPem);
  writeFileSync(f('ca-key.pem'), issuer.keyPem, { mode: 0o600 });
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  run([
    ...['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
    ...['-keyout', f('key.pem'), '-out', f('csr.pem'), '-subj', '/O=meridian-test'],
    ...['-addext', `subjectAltName=URI:${uri}`],
  ]);
  run([
    ...['x509', '-req', '-in', f('csr.pem'), '-CA', f('ca.pem'), '-CAkey', f('ca-key.pem')],
    ...['-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '1', '-copy_extensions', 'copy'],
    ...['-out', f('cert.pem')],
  ]);
  return { certPem: readFileSync(f('cert.pem'), 'utf8'), keyPem: readFileSync(f('key.pem'), 'utf8') };
}

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
    await eventually(
      'both replicas answer replica a over HTTPS',
      async () => {
        const mesh = JSON.parse((await call(`${a}/ui/api/mesh`, { headers: { cookie } })).body) as {
          replicas: { id: string; reachable: boolean }[];
        };
        return mesh.replicas.length === 2 && mesh.replicas.every((r) => r.reachable);
      },
      30_000,
      50,
    );
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

  it('a mesh client certificate opens a session once its SPIFFE id has a role binding; untrusted or absent ones are refused', async () => {
    const [a, b] = admin as [string, string];
    const uri = 'spiffe://cluster.local/ns/meridian-system/sa/certviewer';
    const cert = clientCertificate(root, uri);
    const certLogin = (o: { cert?: { certPem: string; keyPem: string } } = {}) =>
      call(`${a}/ui/login`, {
        method: 'POST',
        headers: { origin: a, 'content-type': 'application/json' },
        body: JSON.stringify({ certificate: true }),
        ...o,
      });
    // No certificate presented: nothing to log in with.
    const none = await certLogin();
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body).message).toContain('no client certificate was presented');
    // A trusted certificate without a role binding: 403, no cookie.
    const noRole = await certLogin({ cert });
    expect(noRole.status, noRole.body).toBe(403);
    expect(JSON.parse(noRole.body).message).toContain(`${uri} (no role) may not open the dashboard`);
    expect(noRole.headers['set-cookie']).toBeUndefined();
    // The same SPIFFE id from a certificate another root signed is not trusted.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const otherRootKey = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const k = join(dir, 'other-root-key.pem');
    writeFileSync(k, otherRootKey, { mode: 0o600 });
    const otherRootPem = execFileSync('openssl', [
      ...['req', '-x509', '-new', '-key', k, '-subj', '/O=other-root', '-days', '1'],
    ]).toString();
    const foreign = await certLogin({
      cert: clientCertificate({ certPem: otherRootPem, keyPem: otherRootKey }, uri),
    });
    expect(foreign.status).toBe(401);
    expect(JSON.parse(foreign.body).message).toContain('client certificate not trusted');
    // Bind the certificate's identity to role view: it logs in (on any replica of the cluster).
    const token = await adminTokenFor(etcd.endpoints, 'test', 'c1');
    const bind = await call(`${a}/apis/v1/auth/rolebindings/certviewer`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ subject: uri, role: 'view' }),
    });
    expect(bind.status, bind.body).toBe(200);
    let login = await certLogin({ cert });
    await eventually(
      'the binding reaches replica a',
      async () => {
        login = await certLogin({ cert });
        return login.status === 200;
      },
      30_000,
      50,
    );
    expect(JSON.parse(login.body)).toMatchObject({ subject: uri, roles: ['view'] });
    const setCookie = String(login.headers['set-cookie']);
    expect(setCookie).toMatch(
      /^meridian_ui_c1=[^;]+; Path=\/ui; Max-Age=3600; HttpOnly; SameSite=Strict; Secure$/,
    );
    // The session works without the certificate, on the other replica too, until logout.
    const cookie = setCookie.split(';')[0]!;
    const who = await call(`${b}/ui/api/session`, { headers: { cookie } });
    expect(who.status, who.body).toBe(200);
    expect(JSON.parse(who.body)).toMatchObject({ subject: uri, roles: ['view'] });
    const out = await call(`${a}/ui/logout`, { method: 'POST', headers: { origin: a, cookie } });
    expect(JSON.parse(out.body)).toEqual({ loggedOut: true, revoked: true });
    await eventually(
      'replica b refuses the revoked session',
      async () => (await call(`${b}/ui/api/session`, { headers: { cookie } })).status === 401,
      30_000,
      50,
    );
  });
});
