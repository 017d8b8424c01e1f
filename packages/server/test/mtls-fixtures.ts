// Workload certificates for the mTLS tests: issued by a replica's CreateCertificate with a
// bootstrap token signed by the cluster CA's key, as a sidecar or proxyless workload gets them.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type CertificateServiceClient,
  createBootstrapToken,
  createCertificate,
  createCsr,
  type WorkloadIdentity,
} from '@meridian/ca';

/** A workload's certificate as CreateCertificate issued it, with its new P-256 key. */
export interface WorkloadCertificate {
  /** The SPIFFE ID in the certificate's URI SAN. */
  readonly uri: string;
  /** The private key, PKCS#8 PEM. */
  readonly keyPem: string;
  /** As CreateCertificate returns it: the leaf first, the root last. */
  readonly chain: readonly string[];
  /** The chain without the root: what the workload presents. */
  readonly chainPem: string;
  /** The bootstrap token it was issued for. */
  readonly token: string;
}

/**
 * Issues the certificate of `identity` from `ca` (a replica's CreateCertificate): a bootstrap token
 * for it signed with `signingKeyPem` (10 minutes), a CSR of a new P-256 key naming its SPIFFE ID.
 */
export async function issueWorkloadCertificate(
  ca: CertificateServiceClient,
  signingKeyPem: string,
  identity: WorkloadIdentity,
): Promise<WorkloadCertificate> {
  const token = await createBootstrapToken({ signingKeyPem, identity, ttlSeconds: 600 });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const uri = `spiffe://${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
  const chain = await createCertificate(ca, { csr: createCsr({ key: privateKey, uris: [uri] }) }, { token });
  return {
    uri,
    keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    chain,
    chainPem: chain.slice(0, -1).join(''),
    token,
  };
}

/**
 * Writes `cert` as a file-watcher certificate provider reads it: `cert-chain.pem` (without the
 * root), `key.pem` and `root-cert.pem` in `dir` (created if missing). Returns `dir`.
 */
export function writeWorkloadCertificateFiles(dir: string, cert: WorkloadCertificate): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'cert-chain.pem'), cert.chainPem);
  writeFileSync(join(dir, 'key.pem'), cert.keyPem);
  writeFileSync(join(dir, 'root-cert.pem'), cert.chain.at(-1) as string);
  return dir;
}
