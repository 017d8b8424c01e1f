// Bootstrap tokens: signed (ES256), expiring JWTs bound to trust domain, namespace and service
// account, issued by `meridian token create` and presented as `authorization: Bearer <token>`.
// Replicas hold only the public verification keys (published in the store); the signing key stays in
// the operator's file.
import { createPublicKey, randomUUID } from 'node:crypto';
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  exportJWK,
  exportPKCS8,
  generateKeyPair,
  importPKCS8,
  type JWK,
  jwtVerify,
  SignJWT,
} from 'jose';
import { AuthenticationError, CaConfigError, InvalidRequestError } from './errors.js';
import {
  parseSpiffeId,
  spiffeId,
  validateName,
  validateTrustDomain,
  type WorkloadIdentity,
} from './spiffe.js';
import { CA_KEYS, type CaStore } from './storage.js';

export const TOKEN_ISSUER = 'meridian';
export const TOKEN_AUDIENCE = 'meridian-ca';
const ALG = 'ES256';
/** Longest bootstrap token lifetime accepted by createBootstrapToken: 30 days. */
export const MAX_TOKEN_TTL_S = 30 * 24 * 3600;

/** A token signing key: private key PEM (kept by the operator) and its public JWK (for replicas). */
export interface TokenSigningKey {
  readonly privateKeyPem: string;
  readonly publicJwk: JWK & { kid: string };
}

/** Generates an ES256 signing key; the key id is the public key's JWK thumbprint (RFC 7638). */
export async function generateTokenSigningKey(): Promise<TokenSigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { privateKeyPem: await exportPKCS8(privateKey), publicJwk: { ...jwk, kid, alg: ALG, use: 'sig' } };
}

/** The public JWK (with kid) of a signing key PEM. */
export async function publicJwkOf(privateKeyPem: string): Promise<JWK & { kid: string }> {
  const jwk = createPublicKey(privateKeyPem).export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk);
  return { ...jwk, kid, alg: ALG, use: 'sig' };
}

export interface CreateTokenOptions {
  readonly signingKeyPem: string;
  readonly identity: WorkloadIdentity;
  readonly ttlSeconds: number;
  readonly now?: Date;
}

/** Creates a bootstrap token for one identity. */
export async function createBootstrapToken(opts: CreateTokenOptions): Promise<string> {
  const { trustDomain, namespace, serviceAccount } = opts.identity;
  validateTrustDomain(trustDomain);
  validateName(namespace, 'namespace');
  validateName(serviceAccount, 'serviceAccount');
  if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds <= 0 || opts.ttlSeconds > MAX_TOKEN_TTL_S) {
    throw new InvalidRequestError(
      'ttl',
      `must be between 1 s and ${MAX_TOKEN_TTL_S} s (got ${opts.ttlSeconds})`,
    );
  }
  let key: Awaited<ReturnType<typeof importPKCS8>>;
  try {
    key = await importPKCS8(opts.signingKeyPem, ALG);
  } catch (err) {
    throw new CaConfigError(
      'token signing key: not an ES256 (P-256) PKCS#8 private key',
      'token-signing-key',
      {
        cause: err,
      },
    );
  }
  const jwk = await publicJwkOf(opts.signingKeyPem);
  const iat = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  return new SignJWT({ td: trustDomain, ns: namespace, sa: serviceAccount })
    .setProtectedHeader({ alg: ALG, kid: jwk.kid, typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setSubject(spiffeId(opts.identity))
    .setIssuedAt(iat)
    .setExpirationTime(iat + opts.ttlSeconds)
    .setJti(randomUUID())
    .sign(key);
}

/** Verifies bootstrap tokens against a set of public keys, for one trust domain. */
export class TokenVerifier {
  private readonly keySet: ReturnType<typeof createLocalJWKSet>;

  constructor(
    readonly trustDomain: string,
    keys: readonly JWK[],
    private readonly now: () => Date = () => new Date(),
  ) {
    this.keySet = createLocalJWKSet({ keys: [...keys] });
  }

  /** The identity a token proves; AuthenticationError with the reason otherwise. */
  async verify(token: string): Promise<WorkloadIdentity> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.keySet, {
        algorithms: [ALG],
        issuer: TOKEN_ISSUER,
        audience: TOKEN_AUDIENCE,
        requiredClaims: ['exp', 'sub'],
        currentDate: this.now(),
      }));
    } catch (err) {
      const code = (err as { code?: string }).code;
      const reason =
        code === 'ERR_JWT_EXPIRED'
          ? 'bootstrap token expired'
          : code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' || code === 'ERR_JWKS_NO_MATCHING_KEY'
            ? 'bootstrap token signature does not verify'
            : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED'
              ? `bootstrap token rejected: ${(err as Error).message}`
              : 'bootstrap token is malformed';
      throw new AuthenticationError(reason, { cause: err });
    }
    const id = typeof payload.sub === 'string' ? parseSpiffeId(payload.sub) : undefined;
    if (
      !id ||
      payload.td !== id.trustDomain ||
      payload.ns !== id.namespace ||
      payload.sa !== id.serviceAccount
    ) {
      throw new AuthenticationError('bootstrap token claims are inconsistent');
    }
    if (id.trustDomain !== this.trustDomain) {
      throw new AuthenticationError(
        `bootstrap token is for trust domain "${id.trustDomain}", not "${this.trustDomain}"`,
      );
    }
    return id;
  }
}

/** Adds a public verification key to the cluster's published set (idempotent by kid). */
export async function publishTokenKey(store: CaStore, jwk: JWK & { kid: string }): Promise<void> {
  const keys = await readTokenKeys(store);
  if (!keys.some((k) => k.kid === jwk.kid)) keys.push(jwk);
  await store.put(CA_KEYS.tokenKeys, JSON.stringify({ keys }));
}

/** The published verification keys (empty when none). */
export async function readTokenKeys(store: CaStore): Promise<Array<JWK & { kid: string }>> {
  const raw = await store.get(CA_KEYS.tokenKeys);
  if (raw === undefined) return [];
  try {
    const parsed = JSON.parse(raw) as { keys?: Array<JWK & { kid: string }> };
    return Array.isArray(parsed.keys) ? parsed.keys : [];
  } catch (err) {
    throw new CaConfigError(`${CA_KEYS.tokenKeys}: not valid JSON`, CA_KEYS.tokenKeys, { cause: err });
  }
}
