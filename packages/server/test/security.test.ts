// Control-plane security (issue 10), against real processes and real TLS: a real etcd with the
// cluster CA installed, two meridiand replicas in-process (CA port, plaintext xDS, admin and
// monitoring ports), sidecars connected over mTLS with workload certificates from CreateCertificate
// (security-fixtures.ts).
// - every admin endpoint: no credential -> 401, wrong role -> 403, right role -> works;
// - a cross-origin, text/plain apply (the CSRF case) is refused and changes nothing;
// - the monitoring port serves health and metrics only;
// - a workload registers only as the identity it proves and from its own address; refusals never
//   reach any replica's EDS and are counted;
// - no debug endpoint, and no log line, carries a private key or a token. This scan reads every log
//   line and every token of the tests before it in this file, which is why they share one file.
// The admin port over TLS is in security-admin-tls.test.ts.
import * as grpc from '@grpc/grpc-js';
import { createBootstrapToken } from '@meridian/ca';
import { decodeResource, TypeUrl } from '@meridian/envoy';
import type { WorkloadAgent } from '@meridian/registry';
import { eventually, type SotwResponseView } from '@meridian/testkit';
import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import type { Replica } from '../src/replica.js';
import { call, reviewsEndpoints, TD, useSecurityCluster, VS } from './security-fixtures.js';

const s = useSecurityCluster();

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
      const r = s.replicas[1]!;
      const tokenOf = { view: s.viewToken, edit: s.editToken, admin: s.adminToken };
      const none = await call(r, method, path, { ...(type ? { type } : {}), ...(body ? { body } : {}) });
      expect(none.status, none.text).toBe(401);
      expect(JSON.parse(none.text)).toMatchObject({ reason: 'Unauthorized' });
      const forged = await call(r, method, path, {
        token: `${s.adminToken.slice(0, -4)}AAAA`,
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
        token: s.registrarToken,
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
    const r = s.replicas[0]!;
    const me = await call(r, 'GET', '/apis/v1/auth/whoami', { token: s.viewToken });
    expect(JSON.parse(me.text)).toEqual({
      subject: `spiffe://${TD}/ns/meridian-system/sa/viewer`,
      via: 'token',
      roles: ['view'],
    });
    const temp = await s.mint('temp', 'view');
    expect((await call(r, 'GET', '/debug/syncz', { token: temp })).status).toBe(200);
    expect((await call(r, 'DELETE', '/apis/v1/auth/rolebindings/temp', { token: s.adminToken })).status).toBe(
      200,
    );
    await eventually(
      'binding gone on replica b',
      async () => (await call(s.replicas[1]!, 'GET', '/debug/syncz', { token: temp })).status === 403,
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
    const res = await call(s.replicas[0]!, 'GET', '/debug/syncz', { token: foreign.token });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.text).message).toContain('does not verify');
  });

  it('the CSRF case: a cross-origin text/plain apply is refused and changes nothing', async () => {
    const r = s.replicas[0]!;
    const before = await call(r, 'GET', '/apis/v1/config/VirtualService?namespace=bookinfo', {
      token: s.viewToken,
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
      token: s.editToken,
      type: 'text/plain',
      body: attack,
      headers: { origin: 'http://evil.example' },
    });
    expect(withCred.status).toBe(403);
    const plain = await call(r, 'POST', '/apis/v1/apply', {
      token: s.editToken,
      type: 'text/plain',
      body: attack,
    });
    expect(plain.status).toBe(415);
    const form = await call(r, 'POST', '/apis/v1/apply', {
      token: s.editToken,
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
      token: s.viewToken,
    });
    expect(JSON.parse(after.text).items).toEqual(JSON.parse(before.text).items);
    // The refusals are in the audit log with the caller.
    expect(s.logLines.some((l) => l.includes('"audit":true') && l.includes('"outcome":"cross_origin"'))).toBe(
      true,
    );
    expect(
      s.logLines.some(
        (l) =>
          l.includes('"audit":true') && l.includes('sa/editor') && l.includes('"outcome":"content_type"'),
      ),
    ).toBe(true);
  });

  it('every write is in the audit log with the caller identity', async () => {
    const r = s.replicas[0]!;
    const res = await call(r, 'POST', '/apis/v1/apply?source=audit.yaml', {
      token: s.editToken,
      type: 'application/yaml',
      body: VS.replace('name: reviews', 'name: audited'),
    });
    expect(res.status, res.text).toBe(200);
    const line = s.logLines.find(
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
    const r = s.replicas[0]!;
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
      const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${s.adminToken}` } });
      expect(res.status, path).toBe(404);
      await res.text();
    }
    const post = await fetch(`${base}/apis/v1/apply`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.adminToken}`, 'content-type': 'application/yaml' },
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
    const [a, b] = s.replicas as [Replica, Replica];
    const productpage = await s.workloadIdentity('bookinfo', 'productpage');
    const watchers = [s.mtlsSidecar(a, productpage, 1), s.mtlsSidecar(b, productpage, 2)];
    await eventually(
      'watchers hold EDS',
      () => watchers.every((w) => w.responses.some((x) => x.typeUrl === TypeUrl.ClusterLoadAssignment)),
      30_000,
      50,
    );
    const reviews = await s.workloadIdentity('bookinfo', 'bookinfo-reviews');
    const impostor = await s.workloadIdentity('bookinfo', 'ratings');

    const refusals: Array<[string, WorkloadAgent, string]> = [
      // No credential at all, on the plaintext port.
      [
        'UNAUTHENTICATED',
        s.agent(a.xdsAddress, { name: 'anon', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' }),
        'no credentials',
      ],
      // No client certificate on the TLS port.
      [
        'UNAUTHENTICATED',
        s.agent(
          a.caAddress,
          { name: 'nocert', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
          { credentials: grpc.credentials.createSsl(Buffer.from(s.root.certPem)) },
        ),
        'no credentials',
      ],
      // Another service account than the certificate's.
      [
        'PERMISSION_DENIED',
        s.agent(
          a.caAddress,
          { name: 'forged-id', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
          { credentials: s.tlsCredentials(impostor) },
        ),
        "is not the caller's identity",
      ],
      // The right identity, but an address it does not connect from.
      [
        'PERMISSION_DENIED',
        s.agent(
          a.caAddress,
          { name: 'forged-ip', serviceAccount: 'bookinfo-reviews', address: '10.66.0.1' },
          { credentials: s.tlsCredentials(reviews) },
        ),
        'is not the address the caller connects from',
      ],
      // A bootstrap token for another identity.
      [
        'PERMISSION_DENIED',
        s.agent(
          a.xdsAddress,
          { name: 'forged-token', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
          {
            token: await createBootstrapToken({
              signingKeyPem: s.signingKeyPem,
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
        s.agent(
          a.xdsAddress,
          { name: 'viewer', serviceAccount: 'bookinfo-reviews', address: '10.66.0.2' },
          { token: s.viewToken },
        ),
        'no role allowing workload registration',
      ],
      // A garbage token.
      [
        'UNAUTHENTICATED',
        s.agent(
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
    const own = s.agent(
      a.caAddress,
      { name: 'reviews-1', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
      { credentials: s.tlsCredentials(reviews) },
    );
    await own.register();
    const gateway = s.agent(
      b.xdsAddress,
      { name: 'reviews-remote', serviceAccount: 'bookinfo-reviews', address: '10.77.0.1' },
      { token: s.registrarToken },
    );
    await gateway.register();
    const bootstrap = s.agent(
      b.xdsAddress,
      { name: 'reviews-token', serviceAccount: 'bookinfo-reviews', address: '127.0.0.1' },
      {
        token: await createBootstrapToken({
          signingKeyPem: s.signingKeyPem,
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
    const [a, b] = s.replicas as [Replica, Replica];
    const who = await s.workloadIdentity('bookinfo', 'details');
    const ps = [s.mtlsSidecar(a, who, 11), s.mtlsSidecar(b, who, 12)];
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
      const syncz = await call(r, 'GET', '/debug/syncz', { token: s.adminToken });
      expect(syncz.status).toBe(200);
      outputs.push([`${r.options.replicaId} syncz`, syncz.text]);
      const ids = (JSON.parse(syncz.text) as { proxyId: string }[]).map((s) => s.proxyId);
      expect(ids.length).toBeGreaterThan(0);
      for (const id of new Set(ids)) {
        const dump = await call(r, 'GET', `/debug/config_dump?proxy=${encodeURIComponent(id)}`, {
          token: s.adminToken,
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
        const res = await call(r, 'GET', path, { token: s.adminToken });
        outputs.push([`${r.options.replicaId} ${path}`, res.text]);
      }
    }
    const dumps = outputs.filter(([what]) => what.includes('config_dump') && what.includes('productpage-1'));
    expect(dumps.length).toBeGreaterThan(0);
    expect(outputs.some(([, text]) => text.includes('[redacted]'))).toBe(true);
    outputs.push(['logs', s.logLines.join('\n')]);
    for (const [what, text] of outputs) {
      expect(text, what).not.toMatch(/-----BEGIN [A-Z ]*PRIVATE KEY-----/);
      // Nor base64 (inline_bytes) of a PEM private key's first line (PKCS#8, SEC1, PKCS#1).
      for (const b64 of [
        'LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t',
        'LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0t',
        'LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQ',
      ])
        expect(text, what).not.toContain(b64);
      for (const t of s.tokens) expect(text.includes(t), `${what} contains a token`).toBe(false);
      for (const t of s.tokens)
        expect(text.includes(t.split('.')[2]!), `${what} contains a token signature`).toBe(false);
    }
  });
});
