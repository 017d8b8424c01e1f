// Root rotation without downtime, as steps on a cluster's CA material (each step is applied to every
// cluster before the next one starts; `meridian ca rotate` runs them one at a time):
//   1. add-root:    every cluster's trust bundle gets the new root (old + new are both trusted);
//                   workloads pick the new bundle up (SDS ROOTCA / root-cert.pem).
//   2. intermediate: each cluster's intermediate is re-issued under the new root; new workload
//                   certificates chain to it, old ones still verify against the old root.
//   3. (workload certificates roll over as they renew, at half their lifetime)
//   4. remove-root: the old root leaves every bundle, once nothing chains to it any more.
// At every step each pair of workloads can complete an mTLS handshake: a peer's chain always ends at
// a root the other side trusts. test/rotation.test.ts checks it with real TLS handshakes.
import {
  type CaKeyPair,
  type ClusterCaMaterial,
  createIntermediateCa,
  parseCertificates,
  SigningCa,
} from './authority.js';
import { CaConfigError } from './errors.js';
import { TrustBundle } from './trust-bundle.js';
import type { KeyType } from './x509.js';

/** Step 1: the material with `newRootPem` added to its trust bundle. */
export function addRootToBundle(m: ClusterCaMaterial, newRootPem: string): ClusterCaMaterial {
  const bundle = TrustBundle.fromPem(m.rootCertPem).withRoots(newRootPem);
  return { ...m, rootCertPem: bundle.pem };
}

/** Step 2: a new intermediate for the same cluster, signed by `newRoot`, keeping the current bundle. */
export function reissueIntermediate(
  m: ClusterCaMaterial,
  newRoot: CaKeyPair,
  opts: { nameConstraint?: boolean; keyType?: KeyType; validityMs?: number; now?: Date } = {},
): ClusterCaMaterial {
  const bundle = TrustBundle.fromPem(m.rootCertPem);
  const [root] = parseCertificates(newRoot.certPem, 'new root');
  if (!root || !bundle.contains(root.x509)) {
    throw new CaConfigError(
      `cluster "${m.clusterId}": add the new root to the trust bundle (ca rotate add-root) before re-issuing the intermediate`,
      'root-cert.pem',
    );
  }
  return createIntermediateCa({
    root: newRoot,
    trustBundlePem: bundle.pem,
    clusterId: m.clusterId,
    trustDomain: m.trustDomain,
    ...opts,
  });
}

/** Step 4: the material without `oldRootPem` in its bundle; refused while this cluster still chains to it. */
export function removeRootFromBundle(m: ClusterCaMaterial, oldRootPem: string): ClusterCaMaterial {
  const current = SigningCa.fromMaterial(m);
  const old = TrustBundle.fromPem(oldRootPem);
  const top = parseCertificates(current.chainPems[current.chainPems.length - 1]!, 'cert-chain.pem')[0]!;
  if (old.contains(top.x509)) {
    throw new CaConfigError(
      `cluster "${m.clusterId}" still chains to the root being removed: re-issue its intermediate first (ca rotate intermediate)`,
      'cert-chain.pem',
    );
  }
  const bundle = TrustBundle.fromPem(m.rootCertPem).withoutRoots(oldRootPem);
  return { ...m, rootCertPem: bundle.pem };
}
