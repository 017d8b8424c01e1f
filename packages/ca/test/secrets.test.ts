import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import {
  addRootToBundle,
  createRootCa,
  SigningCa,
  type Timers,
  WorkloadCertificateIssuer,
  type WorkloadSecret,
  WorkloadSecrets,
} from '@meridian/ca';
import { describe, expect, it } from 'vitest';
import { id, makeMesh, opensslVerify, quietAudit, uri } from './helpers.js';

class FakeTimers implements Timers {
  pending = new Map<number, { fn: () => void; ms: number }>();
  private next = 1;
  setTimeout(fn: () => void, ms: number): unknown {
    const h = this.next++;
    this.pending.set(h, { fn, ms });
    return h;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
  fireAll(): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const t of all) t.fn();
  }
}

describe('WorkloadSecrets: key + chain (SDS "default") and trust bundle ("ROOTCA") per identity', () => {
  const mesh = makeMesh(['east']);
  const alice = id('shop', 'alice');

  it('delivers at once, rotates at half the lifetime with jitter, re-issues when the CA changes', () => {
    const now = new Date();
    const issuer = new WorkloadCertificateIssuer(SigningCa.fromMaterial(mesh.clusters.east!), {
      audit: quietAudit(),
      now: () => now,
    });
    const timers = new FakeTimers();
    const secrets = new WorkloadSecrets(issuer, {
      ttlSeconds: 3600,
      timers,
      random: () => 1,
      now: () => now,
    });
    const got: WorkloadSecret[] = [];
    const cancel = secrets.watch(alice, (s) => got.push(s));

    expect(got).toHaveLength(1);
    const first = got[0]!;
    expect(first).toMatchObject({
      reason: 'initial',
      spiffeId: uri(alice),
      trustBundlePem: mesh.root.certPem,
    });
    const certs = first.certChainPem.match(
      /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g,
    )!;
    expect(certs).toHaveLength(3);
    expect(opensslVerify(certs[2]!, certs[1]!, certs[0]!)).toContain('OK');
    const leaf = new X509Certificate(certs[0]!);
    expect(leaf.subjectAltName).toBe(`URI:${uri(alice)}`);
    expect(leaf.publicKey.export({ format: 'pem', type: 'spki' })).toBe(
      createPublicKey(createPrivateKey(first.keyPem)).export({ format: 'pem', type: 'spki' }),
    );
    // Lifetime ~3600 s (+60 s backdating does not count): half is 1800 s, jitter +10% at random()=1.
    const [timer] = [...timers.pending.values()];
    expect(timer!.ms).toBe(3600_000 / 2 + 0.1 * 3600_000);
    expect(first.refreshAt.getTime()).toBe(now.getTime() + timer!.ms);

    timers.fireAll();
    expect(got).toHaveLength(2);
    expect(got[1]!.reason).toBe('rotation');
    expect(got[1]!.serial).not.toBe(first.serial);
    expect(got[1]!.keyPem).not.toBe(first.keyPem);
    expect(timers.pending.size).toBe(1);

    const newRoot = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
    secrets.setSigningCa(SigningCa.fromMaterial(addRootToBundle(mesh.clusters.east!, newRoot.certPem)));
    expect(got).toHaveLength(3);
    expect(got[2]!.reason).toBe('ca-changed');
    expect(got[2]!.trustBundlePem).toBe(mesh.root.certPem + newRoot.certPem);
    expect(timers.pending.size).toBe(1);

    cancel();
    cancel();
    expect(timers.pending.size).toBe(0);
    timers.fireAll();
    expect(got).toHaveLength(3);
    expect(issuer.audit.counters.issued).toBe(3);
  });

  it('refuses an identity from another trust domain', () => {
    const issuer = new WorkloadCertificateIssuer(SigningCa.fromMaterial(mesh.clusters.east!), {
      audit: quietAudit(),
    });
    const secrets = new WorkloadSecrets(issuer, { timers: new FakeTimers() });
    expect(() => secrets.watch(id('shop', 'alice', 'other.mesh'), () => {})).toThrow(
      'identity spiffe://other.mesh/ns/shop/sa/alice is not in this CA\'s trust domain "cluster.local"',
    );
    expect(issuer.audit.counters).toEqual({
      issued: 0,
      refused: 1,
      refusedByCode: { PERMISSION_DENIED: 1 },
      csrRequests: 0,
      csrIssued: 0,
    });
  });
});
