import {
  addRootToBundle,
  CaConfigError,
  type ClusterCaMaterial,
  createRootCa,
  reissueIntermediate,
  removeRootFromBundle,
  SigningCa,
  TrustBundle,
  WorkloadCertificateIssuer,
} from '@meridian/ca';
import { describe, expect, it } from 'vitest';
import { id, makeMesh, mtlsHandshake, quietAudit, type Workload, workload } from './helpers.js';

const alice = id('shop', 'alice');
const bob = id('billing', 'bob');

/** Every ordered pair of workloads completes an mTLS handshake (each side verifying the other). */
async function allPairsHandshake(ws: Record<string, Workload>): Promise<Record<string, boolean>> {
  const out: Record<string, boolean> = {};
  for (const [sn, s] of Object.entries(ws)) {
    for (const [cn, c] of Object.entries(ws)) {
      if (sn !== cn) out[`${cn}->${sn}`] = (await mtlsHandshake(s, c)).ok;
    }
  }
  return out;
}

function expectConfigError(fn: () => unknown, message: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CaConfigError);
  expect((err as Error).message).toBe(message);
}

const allTrue = (r: Record<string, boolean>) => Object.fromEntries(Object.keys(r).map((k) => [k, true]));

describe('root rotation without downtime: a handshake check after each step', () => {
  it('add new root, re-issue intermediates, roll workloads, remove old root', async () => {
    const mesh = makeMesh(['east', 'west']);
    const oldRoot = mesh.root;
    let east: ClusterCaMaterial = mesh.clusters.east!;
    let west: ClusterCaMaterial = mesh.clusters.west!;
    const issuers = {
      east: new WorkloadCertificateIssuer(SigningCa.fromMaterial(east), { audit: quietAudit() }),
      west: new WorkloadCertificateIssuer(SigningCa.fromMaterial(west), { audit: quietAudit() }),
    };
    const ws: Record<string, Workload> = {
      a1: workload(issuers.east, alice),
      b1: workload(issuers.west, bob),
    };
    // Workloads receive the current bundle of their cluster (what SDS ROOTCA / root-cert.pem deliver).
    const refreshBundles = () => {
      for (const k of Object.keys(ws)) {
        ws[k]!.bundlePem = (k.startsWith('a') ? east : west).rootCertPem;
      }
    };

    let r = await allPairsHandshake(ws);
    expect(r).toEqual(allTrue(r));

    const newRoot = createRootCa({ trustDomain: oldRoot.trustDomain, keyType: 'ecdsa-p256' });

    // Re-issuing before the new root is in the bundle is refused.
    expectConfigError(
      () => reissueIntermediate(east, newRoot),
      'cluster "east": add the new root to the trust bundle (ca rotate add-root) before re-issuing the intermediate',
    );

    // Step 1: both roots in every cluster's bundle.
    east = addRootToBundle(east, newRoot.certPem);
    west = addRootToBundle(west, newRoot.certPem);
    expect(TrustBundle.fromPem(east.rootCertPem).roots).toHaveLength(2);
    refreshBundles();
    r = await allPairsHandshake(ws);
    expect(r).toEqual(allTrue(r));

    // Step 2: east's intermediate re-issued under the new root; new east workloads chain to it, while
    // west is still on the old root.
    east = reissueIntermediate(east, newRoot, { nameConstraint: true });
    issuers.east.setSigningCa(SigningCa.fromMaterial(east));
    ws.a2 = workload(issuers.east, alice);
    refreshBundles();
    expect(ws.a2.certChain[2]).toBe(newRoot.certPem);
    r = await allPairsHandshake(ws);
    expect(r).toEqual(allTrue(r));

    // Removing the old root while west still chains to it is refused.
    expectConfigError(
      () => removeRootFromBundle(west, oldRoot.certPem),
      'cluster "west" still chains to the root being removed: re-issue its intermediate first (ca rotate intermediate)',
    );

    west = reissueIntermediate(west, newRoot, { nameConstraint: true });
    issuers.west.setSigningCa(SigningCa.fromMaterial(west));
    ws.b2 = workload(issuers.west, bob);
    refreshBundles();
    r = await allPairsHandshake(ws);
    expect(r).toEqual(allTrue(r));

    // Step 3: workload certificates roll: the old-root ones are gone.
    delete ws.a1;
    delete ws.b1;
    r = await allPairsHandshake(ws);
    expect(r).toEqual(allTrue(r));

    // Step 4: the old root leaves every bundle.
    east = removeRootFromBundle(east, oldRoot.certPem);
    west = removeRootFromBundle(west, oldRoot.certPem);
    expect(TrustBundle.fromPem(east.rootCertPem).pem).toBe(newRoot.certPem);
    refreshBundles();
    r = await allPairsHandshake(ws);
    expect(r).toEqual({ 'b2->a2': true, 'a2->b2': true });

    // Why the order matters: a workload still holding an old-root certificate is now refused.
    const straggler = workload(
      new WorkloadCertificateIssuer(SigningCa.fromMaterial(mesh.clusters.east!), { audit: quietAudit() }),
      alice,
    );
    const refused = await mtlsHandshake(ws.b2!, { ...straggler, bundlePem: east.rootCertPem });
    expect(refused.ok).toBe(false);
    expect(refused.serverError).toBe('UNABLE_TO_GET_ISSUER_CERT_LOCALLY');
  });
});
