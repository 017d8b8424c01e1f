// Mesh root CA, per-cluster intermediate CAs, Istio plug-in CA file layout, and the loaded signing CA
// that every replica issues workload certificates with.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  X509Certificate,
} from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pemBlocks, toPem } from './der.js';
import { CaConfigError, InvalidRequestError } from './errors.js';
import { validateTrustDomain } from './spiffe.js';
import { TrustBundle } from './trust-bundle.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  type CertificateParts,
  certificateParts,
  encodeName,
  encodeTbs,
  type KeyType,
  KU,
  keyIdentifier,
  keyUsage,
  newSerial,
  type SignatureAlgorithm,
  signatureAlgorithmFor,
  signTbs,
  subjectKeyIdentifier,
  uriNameConstraint,
} from './x509.js';

const HOUR = 3600_000;
/** Default root validity: 10 years (87600h). */
export const DEFAULT_ROOT_VALIDITY_MS = 87_600 * HOUR;
/** Default intermediate validity: 1 year. */
export const DEFAULT_INTERMEDIATE_VALIDITY_MS = 8_760 * HOUR;
/** Issued certificates start this much in the past, to tolerate clock skew between machines. */
export const BACKDATE_MS = 60_000;

/** Key types a mesh root may use. */
export type RootKeyType = 'rsa4096' | 'ecdsa-p384' | 'ecdsa-p256';

/** Generates a private key of the given type with native crypto. */
export function generatePrivateKey(type: KeyType): KeyObject {
  switch (type) {
    case 'rsa2048':
    case 'rsa3072':
    case 'rsa4096':
      return generateKeyPairSync('rsa', { modulusLength: Number(type.slice(3)) }).privateKey;
    case 'ecdsa-p256':
      return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    case 'ecdsa-p384':
      return generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
  }
}

/** PKCS#8 PEM of a private key. */
export const privateKeyPem = (key: KeyObject): string =>
  key.export({ format: 'pem', type: 'pkcs8' }).toString();
const spkiOf = (key: KeyObject): Buffer => createPublicKey(key).export({ format: 'der', type: 'spki' });

/** A CA certificate and its private key, PEM. */
export interface CaKeyPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** The mesh root: what `meridian ca init` writes (root-cert.pem, root-key.pem, mesh.json). */
export interface RootCa extends CaKeyPair {
  readonly trustDomain: string;
}

export interface RootCaOptions {
  readonly trustDomain: string;
  readonly keyType?: RootKeyType;
  readonly validityMs?: number;
  readonly now?: Date;
}

function checkValidity(ms: number, field: string): number {
  if (!Number.isFinite(ms) || ms <= 0)
    throw new InvalidRequestError(field, `must be a positive duration (got ${ms} ms)`);
  return ms;
}

/** Creates a mesh root CA: a new key and a self-signed certificate (CA, keyCertSign/cRLSign). */
export function createRootCa(opts: RootCaOptions): RootCa {
  const trustDomain = validateTrustDomain(opts.trustDomain);
  const now = opts.now ?? new Date();
  const validity = checkValidity(opts.validityMs ?? DEFAULT_ROOT_VALIDITY_MS, 'validity');
  const key = generatePrivateKey(opts.keyType ?? 'ecdsa-p384');
  const spki = spkiOf(key);
  const ski = keyIdentifier(spki);
  // A generation tag in the name keeps successive roots apart during rotation (RFC 5280 6.1: chain
  // building matches names; the key identifiers disambiguate further).
  const generation = now.toISOString().slice(0, 19).replace(/[-:]/g, '');
  const name = encodeName([
    { type: 'O', value: 'Meridian' },
    { type: 'OU', value: trustDomain },
    { type: 'CN', value: `Meridian Root CA ${generation}` },
  ]);
  const alg = signatureAlgorithmFor(key);
  const tbs = encodeTbs(
    {
      serial: newSerial(),
      issuer: name,
      subject: name,
      spki,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(now.getTime() + validity),
      extensions: [basicConstraints(true), keyUsage([KU.keyCertSign, KU.cRLSign]), subjectKeyIdentifier(ski)],
    },
    alg,
  );
  return { trustDomain, certPem: toPem(signTbs(tbs, alg, key), 'CERTIFICATE'), keyPem: privateKeyPem(key) };
}

/** A cluster's CA material: Istio's plug-in CA layout, plus the cluster id and trust domain. */
export interface ClusterCaMaterial {
  readonly clusterId: string;
  readonly trustDomain: string;
  /** ca-cert.pem: the intermediate certificate. */
  readonly caCertPem: string;
  /** ca-key.pem: the intermediate's private key (PKCS#8 or PKCS#1/SEC1 PEM). */
  readonly caKeyPem: string;
  /** cert-chain.pem: the intermediate and its issuers up to the root. */
  readonly certChainPem: string;
  /** root-cert.pem: the trust bundle, one or more roots (several during a root rotation). */
  readonly rootCertPem: string;
}

const CLUSTER_ID = /^[A-Za-z0-9]([-A-Za-z0-9._]{0,61}[A-Za-z0-9])?$/;

/** Checks a cluster id (letters, digits, `-`, `.`, `_`, at most 63 characters). */
export function validateClusterId(id: string): string {
  if (!CLUSTER_ID.test(id)) throw new InvalidRequestError('cluster', `invalid cluster id "${id}"`);
  return id;
}

export interface IntermediateOptions {
  /** The root that signs the intermediate. */
  readonly root: CaKeyPair;
  /** Roots that workloads of this cluster trust; defaults to the signing root alone. */
  readonly trustBundlePem?: string;
  readonly clusterId: string;
  readonly trustDomain: string;
  /** Adds a critical nameConstraints extension permitting only URIs of the trust domain. */
  readonly nameConstraint?: boolean;
  /** Intermediate key type; default RSA 2048, like the CA Istio creates itself. */
  readonly keyType?: KeyType;
  readonly validityMs?: number;
  readonly now?: Date;
}

/**
 * Issues a cluster intermediate CA under the root: CA:true, pathLen 0, keyCertSign/cRLSign, the
 * cluster id in the subject (OU and CN), optionally the URI name constraint to the trust domain.
 */
export function createIntermediateCa(opts: IntermediateOptions): ClusterCaMaterial {
  const clusterId = validateClusterId(opts.clusterId);
  const trustDomain = validateTrustDomain(opts.trustDomain);
  const now = opts.now ?? new Date();
  const rootKey = loadPrivateKey(opts.root.keyPem, 'root-key.pem');
  const rootCert = parseCertificate(opts.root.certPem, 'root-cert.pem');
  if (!rootCert.x509.ca) throw new CaConfigError('root-cert.pem is not a CA certificate', 'root-cert.pem');
  assertKeyMatches(rootKey, rootCert.parts, 'root-key.pem');
  const rootNotAfter = new Date(rootCert.x509.validTo).getTime();
  const validity = checkValidity(opts.validityMs ?? DEFAULT_INTERMEDIATE_VALIDITY_MS, 'validity');
  const notAfter = new Date(Math.min(now.getTime() + validity, rootNotAfter));
  const key = generatePrivateKey(opts.keyType ?? 'rsa2048');
  const spki = spkiOf(key);
  const extensions = [
    basicConstraints(true, 0),
    keyUsage([KU.keyCertSign, KU.cRLSign]),
    subjectKeyIdentifier(keyIdentifier(spki)),
    authorityKeyIdentifier(rootCert.parts.keyId),
  ];
  if (opts.nameConstraint) extensions.push(uriNameConstraint(trustDomain));
  const alg = signatureAlgorithmFor(rootKey);
  const tbs = encodeTbs(
    {
      serial: newSerial(),
      issuer: rootCert.parts.subject,
      subject: encodeName([
        { type: 'O', value: 'Meridian' },
        { type: 'OU', value: clusterId },
        { type: 'CN', value: `Meridian Intermediate CA ${clusterId}` },
      ]),
      spki,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter,
      extensions,
    },
    alg,
  );
  const caCertPem = toPem(signTbs(tbs, alg, rootKey), 'CERTIFICATE');
  const rootPem = toPem(rootCert.parts.der, 'CERTIFICATE');
  return {
    clusterId,
    trustDomain,
    caCertPem,
    caKeyPem: privateKeyPem(key),
    certChainPem: caCertPem + rootPem,
    rootCertPem: opts.trustBundlePem ?? rootPem,
  };
}

/** File names of Istio's plug-in CA layout (istio `cacerts` secret). */
export const PLUGIN_FILES = {
  rootCert: 'root-cert.pem',
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  certChain: 'cert-chain.pem',
} as const;

/** Writes a cluster's CA material in the plug-in layout (key file mode 0600). */
export async function writePluginCa(dir: string, m: ClusterCaMaterial): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, PLUGIN_FILES.rootCert), m.rootCertPem);
  await writeFile(join(dir, PLUGIN_FILES.caCert), m.caCertPem);
  await writeFile(join(dir, PLUGIN_FILES.caKey), m.caKeyPem, { mode: 0o600 });
  await writeFile(join(dir, PLUGIN_FILES.certChain), m.certChainPem);
}

/**
 * Reads the plug-in layout from a directory (ours or one prepared for Istio). A missing cert-chain.pem
 * is taken as ca-cert.pem followed by the root, as Istio does for a root used directly.
 */
export async function readPluginCa(
  dir: string,
  ids: { clusterId: string; trustDomain: string },
): Promise<ClusterCaMaterial> {
  const read = async (name: string, optional = false): Promise<string | undefined> => {
    try {
      return await readFile(join(dir, name), 'utf8');
    } catch (err) {
      if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new CaConfigError(`cannot read ${join(dir, name)}: ${(err as Error).message}`, name, {
        cause: err,
      });
    }
  };
  const rootCertPem = (await read(PLUGIN_FILES.rootCert))!;
  const caCertPem = (await read(PLUGIN_FILES.caCert))!;
  const caKeyPem = (await read(PLUGIN_FILES.caKey))!;
  const certChainPem = (await read(PLUGIN_FILES.certChain, true)) ?? caCertPem;
  const m: ClusterCaMaterial = {
    clusterId: validateClusterId(ids.clusterId),
    trustDomain: validateTrustDomain(ids.trustDomain),
    caCertPem,
    caKeyPem,
    certChainPem,
    rootCertPem,
  };
  SigningCa.fromMaterial(m); // validates consistency now, not at first issuance
  return m;
}

/** Writes a root to a directory: root-cert.pem, root-key.pem (0600), mesh.json. */
export async function writeRootCa(dir: string, root: RootCa): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'root-cert.pem'), root.certPem);
  await writeFile(join(dir, 'root-key.pem'), root.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'mesh.json'), `${JSON.stringify({ trustDomain: root.trustDomain }, null, 2)}\n`);
}

/** Reads a root written by writeRootCa. */
export async function readRootCa(dir: string): Promise<RootCa> {
  try {
    const certPem = await readFile(join(dir, 'root-cert.pem'), 'utf8');
    const keyPem = await readFile(join(dir, 'root-key.pem'), 'utf8');
    const mesh = JSON.parse(await readFile(join(dir, 'mesh.json'), 'utf8')) as { trustDomain?: unknown };
    if (typeof mesh.trustDomain !== 'string') throw new Error('mesh.json: trustDomain missing');
    return { certPem, keyPem, trustDomain: mesh.trustDomain };
  } catch (err) {
    throw new CaConfigError(`cannot read the root CA in ${dir}: ${(err as Error).message}`, dir, {
      cause: err,
    });
  }
}

/** A parsed certificate: native X509Certificate plus the DER parts issuance needs. */
export interface ParsedCertificate {
  readonly x509: X509Certificate;
  readonly parts: CertificateParts;
  readonly pem: string;
}

/** Parses exactly one PEM certificate; CaConfigError naming `what` otherwise. */
export function parseCertificate(pem: string, what: string): ParsedCertificate {
  const all = parseCertificates(pem, what);
  if (all.length !== 1)
    throw new CaConfigError(`${what}: expected one certificate, found ${all.length}`, what);
  return all[0]!;
}

/** Parses every PEM certificate in a text, in order. */
export function parseCertificates(pem: string, what: string): ParsedCertificate[] {
  return pemBlocks(pem, ['CERTIFICATE']).map((der, i) => {
    try {
      return { x509: new X509Certificate(der), parts: certificateParts(der), pem: toPem(der, 'CERTIFICATE') };
    } catch (err) {
      throw new CaConfigError(
        `${what}: certificate #${i + 1} is unreadable: ${(err as Error).message}`,
        what,
        {
          cause: err,
        },
      );
    }
  });
}

/** Loads a private key PEM (PKCS#8, PKCS#1 or SEC1). */
export function loadPrivateKey(pem: string, what: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new CaConfigError(`${what}: unreadable private key`, what, { cause: err });
  }
}

function assertKeyMatches(key: KeyObject, parts: CertificateParts, what: string): void {
  if (!spkiOf(key).equals(parts.spki)) {
    throw new CaConfigError(`${what} does not match the public key of its certificate`, what);
  }
}

/**
 * A cluster's intermediate CA, loaded and checked, ready to sign: the key, the chain to hand out
 * (intermediate ... root) and the trust bundle. Build one with SigningCa.fromMaterial.
 */
export class SigningCa {
  private constructor(
    readonly clusterId: string,
    readonly trustDomain: string,
    readonly key: KeyObject,
    readonly algorithm: SignatureAlgorithm,
    readonly cert: ParsedCertificate,
    /** PEMs from the intermediate to the root, each ending in a newline. */
    readonly chainPems: readonly string[],
    readonly trustBundle: TrustBundle,
    readonly material: ClusterCaMaterial,
  ) {}

  /** notAfter of the intermediate: no certificate is issued beyond it. */
  get notAfter(): Date {
    return new Date(this.cert.x509.validTo);
  }

  /**
   * Checks and loads material: the key matches ca-cert.pem, it is a CA, cert-chain.pem links
   * certificate by certificate to a root in root-cert.pem, and nothing in the chain has expired.
   */
  static fromMaterial(m: ClusterCaMaterial, now: Date = new Date()): SigningCa {
    const cert = parseCertificate(m.caCertPem, PLUGIN_FILES.caCert);
    if (!cert.x509.ca) throw new CaConfigError('ca-cert.pem is not a CA certificate', PLUGIN_FILES.caCert);
    const key = loadPrivateKey(m.caKeyPem, PLUGIN_FILES.caKey);
    assertKeyMatches(key, cert.parts, PLUGIN_FILES.caKey);
    const bundle = TrustBundle.fromPem(m.rootCertPem);
    const chain = parseCertificates(m.certChainPem, PLUGIN_FILES.certChain);
    if (chain.length === 0 || !chain[0]!.parts.der.equals(cert.parts.der)) {
      chain.unshift(cert);
    }
    // Complete the chain with the root from the bundle when cert-chain.pem stops below it.
    const last = chain[chain.length - 1]!;
    if (!last.x509.checkIssued(last.x509) || !last.x509.verify(last.x509.publicKey)) {
      const root = bundle.roots.find(
        (r) => last.x509.checkIssued(r.x509) && last.x509.verify(r.x509.publicKey),
      );
      if (!root) {
        throw new CaConfigError(
          'cert-chain.pem does not lead to a root in root-cert.pem',
          PLUGIN_FILES.certChain,
        );
      }
      chain.push({ x509: root.x509, pem: root.pem, parts: certificateParts(root.x509.raw) });
    }
    for (let i = 0; i + 1 < chain.length; i++) {
      const child = chain[i]!.x509;
      const parent = chain[i + 1]!.x509;
      if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
        throw new CaConfigError(
          `cert-chain.pem: certificate #${i + 1} (${child.subject.replace(/\n/g, ', ')}) is not signed by #${i + 2}`,
          PLUGIN_FILES.certChain,
        );
      }
    }
    const top = chain[chain.length - 1]!;
    if (!bundle.contains(top.x509)) {
      throw new CaConfigError('the root of cert-chain.pem is not in root-cert.pem', PLUGIN_FILES.rootCert);
    }
    for (const c of chain) {
      if (new Date(c.x509.validTo).getTime() <= now.getTime()) {
        throw new CaConfigError(
          `${c.x509.subject.replace(/\n/g, ', ')} expired at ${c.x509.validTo}`,
          'cert-chain.pem',
        );
      }
    }
    return new SigningCa(
      validateClusterId(m.clusterId),
      validateTrustDomain(m.trustDomain),
      key,
      signatureAlgorithmFor(key),
      cert,
      chain.map((c) => c.pem),
      bundle,
      m,
    );
  }
}
