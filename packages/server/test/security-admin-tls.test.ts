// The admin port over TLS (`--admin-tls on`), against real processes: a replica serving HTTPS with
// the CA's serving certificate, mesh client certificates authenticating their SPIFFE id (and one
// from another CA refused), and the CLI with kubectl's TLS flags. The cluster is security-fixtures.ts's.
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { createCsr } from '@meridian/ca';
import { eventually } from '@meridian/testkit';
import { describe, expect, it } from 'vitest';
import type { Replica } from '../src/replica.js';
import { REPO_ROOT, spawnTs } from './harness.js';
import { call, type Identity, TD, useSecurityCluster, VS } from './security-fixtures.js';

const s = useSecurityCluster();

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
          ca: s.root.certPem,
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
    const r = await s.startReplica('sec-tls', ['--admin-tls', 'on']);
    s.replicas.push(r);
    // Plain HTTP is not spoken on a TLS port.
    await expect(
      fetch(`http://${r.adminAddress}/debug/syncz`, { signal: AbortSignal.timeout(5000) }),
    ).rejects.toThrow();
    expect((await httpsCall(r, 'GET', '/readyz')).status).toBe(200);
    expect((await httpsCall(r, 'GET', '/debug/syncz')).status).toBe(401);
    expect((await httpsCall(r, 'GET', '/debug/syncz', { token: s.viewToken })).status).toBe(200);

    const operator = await s.workloadIdentity('meridian-system', 'certop');
    const noRole = await httpsCall(r, 'GET', '/apis/v1/auth/whoami', { cert: operator });
    expect(JSON.parse(noRole.text)).toEqual({ subject: operator.uri, via: 'mtls', roles: [] });
    expect((await httpsCall(r, 'GET', '/debug/syncz', { cert: operator })).status).toBe(403);
    const bind = await call(s.replicas[0]!, 'PUT', '/apis/v1/auth/rolebindings/certop', {
      token: s.adminToken,
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
    const files = {
      ca: join(s.tmp, 'root.pem'),
      cert: join(s.tmp, 'op.pem'),
      key: join(s.tmp, 'op-key.pem'),
    };
    writeFileSync(files.ca, s.root.certPem);
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
      { MERIDIAN_CREDENTIALS: join(s.tmp, 'none.yaml'), MERIDIAN_TOKEN: '' },
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
