// Certificates for the SDS and proxyless-mTLS tests that moved here from @meridian/ca (issue 12,
// item 5): a mesh root with one intermediate per cluster, workload keys and chains, and an openssl
// check of a chain (an independent implementation). The same fixtures as packages/ca/test/helpers.ts.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CaAudit,
  type ClusterCaMaterial,
  createCsr,
  createIntermediateCa,
  createRootCa,
  type RootCa,
  SigningCa,
  WorkloadCertificateIssuer,
  type WorkloadIdentity,
} from '@meridian/ca';
import { pino } from 'pino';

export const TD = 'cluster.local';

export function id(namespace: string, serviceAccount: string, trustDomain = TD): WorkloadIdentity {
  return { trustDomain, namespace, serviceAccount };
}

export const uri = (i: WorkloadIdentity): string =>
  `spiffe://${i.trustDomain}/ns/${i.namespace}/sa/${i.serviceAccount}`;

export function quietAudit(): CaAudit {
  return new CaAudit(pino({ level: 'silent' }));
}

export interface Mesh {
  root: RootCa;
  clusters: Record<string, ClusterCaMaterial>;
  issuers: Record<string, WorkloadCertificateIssuer>;
}

/** A root (ECDSA P-256: fast) and one intermediate per cluster id. */
export function makeMesh(clusterIds: string[]): Mesh {
  const root = createRootCa({ trustDomain: TD, keyType: 'ecdsa-p256' });
  const clusters: Record<string, ClusterCaMaterial> = {};
  const issuers: Record<string, WorkloadCertificateIssuer> = {};
  for (const c of clusterIds) {
    clusters[c] = createIntermediateCa({
      root,
      clusterId: c,
      trustDomain: TD,
      nameConstraint: true,
      keyType: 'ecdsa-p256',
    });
    issuers[c] = new WorkloadCertificateIssuer(SigningCa.fromMaterial(clusters[c]), { audit: quietAudit() });
  }
  return { root, clusters, issuers };
}

const ecKey = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
const pkcs8 = (k: KeyObject): string => k.export({ format: 'pem', type: 'pkcs8' }).toString();

/** A workload: key, chain and bundle, as its TLS stack would hold them. */
export interface Workload {
  keyPem: string;
  certChain: string[];
  bundlePem: string;
}

export function workload(issuer: WorkloadCertificateIssuer, who: WorkloadIdentity, key = ecKey()): Workload {
  const out = issuer.issue({ identity: who, csrPem: createCsr({ key, uris: [uri(who)] }) });
  return { keyPem: pkcs8(key), certChain: [...out.certChain], bundlePem: issuer.signingCa.trustBundle.pem };
}

/** `openssl verify -CAfile root -untrusted intermediate leaf`: returns its output, throws on failure. */
export function opensslVerify(rootPem: string, untrustedPem: string, leafPem: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-server-ca-'));
  try {
    writeFileSync(join(dir, 'root.pem'), rootPem);
    writeFileSync(join(dir, 'int.pem'), untrustedPem);
    writeFileSync(join(dir, 'leaf.pem'), leafPem);
    return execFileSync(
      'openssl',
      ['verify', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'int.pem'), join(dir, 'leaf.pem')],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
