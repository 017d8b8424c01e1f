/**
 * The TLS port's serving identity kept on disk: the CA port's
 * own serving certificate chain, its private key and the trust bundle, written whenever the CA runtime
 * issues a new serving certificate, so that a replica restarted while etcd is unreachable can open its
 * TLS port (xDS over mTLS, the only xDS port when `--xds-address off`) with what it served last. The
 * cluster CA itself (its intermediate key) stays in etcd only: offline, the replica authenticates
 * proxies and serves them config and `ROOTCA`, and issues nothing.
 *
 * File `<snapshot dir>/<mesh>.<cluster>.serving.json`, mode 0600, one JSON object:
 * `{format, clusterId, trustDomain, certChainPem, trustBundlePem, writtenAt, sealedKey}`. The key is
 * sealed with the cluster CA's key-encryption key (AES-256-GCM, `sealPrivateKey` of @meridian/ca);
 * the associated data is the format, the cluster id and a SHA-256 of the trust domain, chain and
 * bundle, so a file whose public parts were altered does not decrypt, and a sealed key copied to
 * another purpose or cluster does not either. Writes go to a temporary file renamed over the old one.
 *
 * The serving certificate names the replica's hosts as DNS or IP SANs: `localhost`, a specific bind
 * host, the advertised host (`--advertise-address`, which proxies' rate-limit and access-log clusters
 * check) and `--serving-names`. The loader reports them ({@link namesNotCovered}), so a replica
 * restarted from disk with other names says which ones the kept certificate lacks until the CA issues
 * a new one.
 */
import { createHash, createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { openPrivateKey, type SealedKey, sealPrivateKey, TrustBundle } from '@meridian/ca';

/** The format tag of the file. */
export const SERVING_MATERIAL_FORMAT = 'meridian-serving/1';

/** The serving identity of the CA port and the roots client certificates are verified against. */
export interface ServingMaterial {
  readonly trustDomain: string;
  /** Leaf first, then the intermediate(s), PEM. */
  readonly certChainPem: string;
  /** PKCS#8 PEM. */
  readonly keyPem: string;
  /** Every trusted root, PEM. */
  readonly trustBundlePem: string;
}

/** A file that cannot be served: absent, unreadable, foreign, altered, expired or inconsistent. */
export class ServingMaterialError extends Error {
  override readonly name = 'ServingMaterialError';
  constructor(
    readonly file: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`serving certificate on disk refused (${file}): ${reason}`, options);
  }
}

interface StoredMaterial {
  readonly format: string;
  readonly clusterId: string;
  readonly trustDomain: string;
  readonly certChainPem: string;
  readonly trustBundlePem: string;
  readonly writtenAt: string;
  readonly sealedKey: SealedKey;
}

/** The serving material file of one replica's mesh and cluster. */
export function servingMaterialFile(dir: string, meshId: string, clusterId: string): string {
  return join(dir, `${meshId}.${clusterId}.serving.json`);
}

/** The associated data binding the sealed key to its cluster and to the public parts beside it. */
function associatedData(clusterId: string, m: Omit<ServingMaterial, 'keyPem'>): string {
  const digest = createHash('sha256')
    .update(m.trustDomain)
    .update('\0')
    .update(m.certChainPem)
    .update('\0')
    .update(m.trustBundlePem)
    .digest('hex');
  return `${SERVING_MATERIAL_FORMAT}:${clusterId}:${digest}`;
}

/** Writes `m` to `file` (mode 0600, its directory 0700), the key sealed with `kek`. */
export async function saveServingMaterial(
  file: string,
  m: ServingMaterial,
  kek: Buffer,
  clusterId: string,
  now = new Date(),
): Promise<void> {
  const stored: StoredMaterial = {
    format: SERVING_MATERIAL_FORMAT,
    clusterId,
    trustDomain: m.trustDomain,
    certChainPem: m.certChainPem,
    trustBundlePem: m.trustBundlePem,
    writtenAt: now.toISOString(),
    sealedKey: sealPrivateKey(m.keyPem, kek, associatedData(clusterId, m)),
  };
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(stored)}\n`, { mode: 0o600 });
  await rename(tmp, file).catch(async (error: unknown) => {
    await rm(tmp, { force: true });
    throw error;
  });
}

/**
 * Which of `names` (DNS names or IP addresses) the leaf (first certificate) of `certChainPem` does not
 * carry as a SAN (exact DNS match, no wildcards, the subject CN ignored; IPs compared as addresses).
 */
export function namesNotCovered(certChainPem: string, names: readonly string[]): string[] {
  const leaf = certsOf(certChainPem)[0];
  if (!leaf) return [...names];
  return names.filter((name) =>
    isIP(name) !== 0
      ? leaf.checkIP(name) === undefined
      : leaf.checkHost(name, { subject: 'never', wildcards: false }) === undefined,
  );
}

/** The DNS and IP SANs of the leaf of `certChainPem`, as Node prints them (`DNS:a`, `IP Address:b`). */
export function servingNamesOf(certChainPem: string): string[] {
  const san = certsOf(certChainPem)[0]?.subjectAltName ?? '';
  return san
    .split(', ')
    .filter((n) => n.startsWith('DNS:') || n.startsWith('IP Address:'))
    .map((n) => n.slice(n.indexOf(':') + 1));
}

const certsOf = (pem: string): X509Certificate[] =>
  (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (block) => new X509Certificate(block),
  );

/**
 * Reads `file` back: throws a ServingMaterialError unless it is of this format and cluster, its key
 * opens with `kek` (so nothing in it was altered), the leaf is valid at `now`, matches the key, and
 * chains to a root of the bundle. `servingNames` are the leaf's DNS and IP SANs.
 */
export async function loadServingMaterial(
  file: string,
  kek: Buffer,
  clusterId: string,
  now = new Date(),
): Promise<
  ServingMaterial & {
    readonly writtenAt: Date;
    readonly notAfter: Date;
    readonly servingNames: readonly string[];
  }
> {
  const refuse = (reason: string, cause?: unknown): never => {
    throw new ServingMaterialError(file, reason, cause === undefined ? undefined : { cause });
  };
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    refuse(code === 'ENOENT' ? 'no such file' : `unreadable (${code ?? String(error)})`, error);
  }
  let s: StoredMaterial | undefined;
  try {
    s = JSON.parse(text) as StoredMaterial;
  } catch (error) {
    refuse('corrupt (not JSON)', error);
  }
  if (s?.format !== SERVING_MATERIAL_FORMAT) return refuse(`unknown format ${JSON.stringify(s?.format)}`);
  if (s.clusterId !== clusterId)
    return refuse(`foreign: written for cluster "${s.clusterId}", this replica is cluster "${clusterId}"`);
  if (
    typeof s.trustDomain !== 'string' ||
    typeof s.certChainPem !== 'string' ||
    typeof s.trustBundlePem !== 'string' ||
    typeof s.sealedKey !== 'object' ||
    s.sealedKey === null
  )
    return refuse('corrupt (fields missing)');
  let keyPem = '';
  try {
    keyPem = openPrivateKey(s.sealedKey, kek, associatedData(clusterId, s));
  } catch (error) {
    refuse(
      'the key does not open with this key-encryption key (another KEK, or the file was altered)',
      error,
    );
  }
  let chain: X509Certificate[] = [];
  let bundle: TrustBundle | undefined;
  try {
    chain = certsOf(s.certChainPem);
    bundle = TrustBundle.fromPem(s.trustBundlePem);
  } catch (error) {
    refuse(`unreadable certificate (${(error as Error).message})`, error);
  }
  const leaf = chain[0];
  if (!leaf || !bundle) return refuse('no serving certificate');
  const t = now.getTime();
  const notAfter = new Date(leaf.validTo);
  if (t < new Date(leaf.validFrom).getTime() || t >= notAfter.getTime())
    return refuse(`the serving certificate is not valid now (valid ${leaf.validFrom} to ${leaf.validTo})`);
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem)))
    return refuse('the key does not match the certificate');
  // Leaf -> intermediate(s) -> a root of the bundle, each signature checked.
  for (let i = 0; i + 1 < chain.length; i++)
    if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey))
      return refuse('the certificate chain is broken');
  const top = chain.at(-1)!;
  if (!bundle.roots.some((r) => top.checkIssued(r.x509) && top.verify(r.x509.publicKey)))
    return refuse('the certificate chain does not lead to a root of the trust bundle');
  return {
    trustDomain: s.trustDomain,
    certChainPem: s.certChainPem,
    keyPem,
    trustBundlePem: s.trustBundlePem,
    writtenAt: new Date(s.writtenAt),
    notAfter,
    servingNames: servingNamesOf(s.certChainPem),
  };
}
