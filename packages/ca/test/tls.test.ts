import { createCsr, SigningCa, WorkloadCertificateIssuer } from '@meridian/ca';
import { describe, expect, it } from 'vitest';
import { ecKey, id, makeMesh, mtlsHandshake, quietAudit, rsaKey, uri, workload } from './helpers.js';

describe('mTLS between workloads (node:tls, real handshakes over loopback)', () => {
  const mesh = makeMesh(['east', 'west']);
  const foreign = makeMesh(['east']);
  const alice = id('shop', 'alice');
  const bob = id('billing', 'bob');

  it('succeeds between workloads whose certificates come from different clusters', async () => {
    const a = workload(mesh.issuers.east!, alice);
    const b = workload(mesh.issuers.west!, bob, rsaKey());
    const r = await mtlsHandshake(a, b);
    expect(r).toMatchObject({ ok: true, serverSaw: uri(bob), clientSaw: uri(alice) });
    const back = await mtlsHandshake(b, a);
    expect(back).toMatchObject({ ok: true, serverSaw: uri(alice), clientSaw: uri(bob) });
  });

  it('fails when the client certificate comes from a foreign root', async () => {
    const a = workload(mesh.issuers.east!, alice);
    const intruder = workload(foreign.issuers.east!, bob);
    // The intruder trusts our root (worst case), but our server does not trust its root.
    const r = await mtlsHandshake(a, { ...intruder, bundlePem: a.bundlePem });
    expect(r.ok).toBe(false);
    expect(r.serverSaw).toBeUndefined();
    expect(r.serverError).toBe('UNABLE_TO_GET_ISSUER_CERT_LOCALLY');
  });

  it('fails when the server certificate comes from a foreign root', async () => {
    const a = workload(mesh.issuers.east!, alice);
    const intruder = workload(foreign.issuers.east!, bob);
    const r = await mtlsHandshake({ ...intruder, bundlePem: a.bundlePem }, a);
    expect(r.ok).toBe(false);
    expect(r.clientError).toBe('UNABLE_TO_GET_ISSUER_CERT_LOCALLY');
  });

  it('fails with an expired client certificate', async () => {
    const past = new Date(Date.now() - 3 * 3600_000);
    const old = new WorkloadCertificateIssuer(SigningCa.fromMaterial(mesh.clusters.east!), {
      audit: quietAudit(),
      now: () => past,
    });
    const key = ecKey();
    const out = old.issue({
      identity: bob,
      csrPem: createCsr({ key, uris: [uri(bob)] }),
      validitySeconds: 3600,
    });
    const expired = {
      keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
      certChain: [...out.certChain],
      bundlePem: mesh.root.certPem,
    };
    const r = await mtlsHandshake(workload(mesh.issuers.west!, alice), expired);
    expect(r.ok).toBe(false);
    expect(r.serverError).toBe('CERT_HAS_EXPIRED');
  });
});
