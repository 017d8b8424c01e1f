// Bootstrap tokens: signed (ES256), expiring JWTs bound to trust domain, namespace and service
// account, issued by `meridian token create` and presented as `authorization: Bearer <token>`.
// Replicas hold only the public verification keys (published in the store); the signing key stays in
// the operator's file. A token with the claim `use: "once"` is single-use: `consumeSingleUse` records
// its `jti` in the cluster's store (create-if-absent, expiring with the token), so it is accepted once
// on whichever replica sees it first and refused everywhere after.
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
import {
  AuthenticationError,
  CaConfigError,
  CaUnavailableError,
  InvalidRequestError,
  TokenReplayError,
} from './errors.js';
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
/** The claim (name and value) that marks a token single-use; tokens without it are multi-use. */
export const SINGLE_USE_CLAIM = { name: 'use', value: 'once' } as const;
/** What a single-use token's `jti` must look like (it becomes a store key segment). */
const JTI = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

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
  /** Accepted once in the whole cluster (claim `use: "once"`); default: multi-use until it expires. */
  readonly singleUse?: boolean;
}

/** What a verified bootstrap token says (signature, issuer, audience, expiry and identity checked). */
export interface VerifiedBootstrapToken {
  readonly identity: WorkloadIdentity;
  /** The token id (`jti`); always present on single-use tokens. */
  readonly jti: string | undefined;
  /** When the token stops being accepted (`exp`). */
  readonly expiresAt: Date;
  /** True when the token may be used once only (`consumeSingleUse` must then succeed before use). */
  readonly singleUse: boolean;
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
  const claims: Record<string, string> = { td: trustDomain, ns: namespace, sa: serviceAccount };
  if (opts.singleUse) claims[SINGLE_USE_CLAIM.name] = SINGLE_USE_CLAIM.value;
  return new SignJWT(claims)
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

  /**
   * The identity a token proves; AuthenticationError with the reason otherwise. Signature and claims
   * only: it does not enforce single use (use `verifyToken` + `consumeSingleUse`, or
   * `authenticateBootstrapToken`, wherever a token grants something).
   */
  async verify(token: string): Promise<WorkloadIdentity> {
    return (await this.verifyToken(token)).identity;
  }

  /** Verifies signature and claims (like `verify`) and returns the identity, `jti`, expiry and use. */
  async verifyToken(token: string): Promise<VerifiedBootstrapToken> {
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
    const use = payload[SINGLE_USE_CLAIM.name];
    if (use !== undefined && use !== SINGLE_USE_CLAIM.value) {
      throw new AuthenticationError(`bootstrap token has an unsupported "${SINGLE_USE_CLAIM.name}" claim`);
    }
    const singleUse = use === SINGLE_USE_CLAIM.value;
    const jti = typeof payload.jti === 'string' ? payload.jti : undefined;
    if (singleUse && (jti === undefined || !JTI.test(jti))) {
      throw new AuthenticationError('single-use bootstrap token has no usable "jti" claim');
    }
    return { identity: id, jti, expiresAt: new Date((payload.exp as number) * 1000), singleUse };
  }
}

/** Options of {@link consumeSingleUse}. */
export interface ConsumeTokenOptions {
  /**
   * Seconds the used-token record outlives the token's `exp`, for replicas whose clock runs behind
   * (they would still accept the token that long). Default 5.
   */
  readonly clockSkewSeconds?: number;
  readonly now?: () => Date;
}

/** The store key recording that the single-use token `jti` was spent. */
export function usedTokenKey(jti: string): string {
  return `${CA_KEYS.usedTokens}${jti}`;
}

/**
 * Spends a single-use token: records its `jti` under `ca/tokens/used/<jti>` with a create-if-absent
 * write that expires when the token does, so exactly one caller in the cluster gets through.
 * Resolves for multi-use tokens without touching the store. Throws `TokenReplayError`
 * (UNAUTHENTICATED, "bootstrap token was already used") when it was spent before, and
 * `CaUnavailableError` (UNAVAILABLE) when the store cannot be reached: single-use tokens fail closed.
 */
export async function consumeSingleUse(
  store: CaStore | undefined,
  token: VerifiedBootstrapToken,
  opts: ConsumeTokenOptions = {},
): Promise<void> {
  if (!token.singleUse) return;
  if (!token.jti || !JTI.test(token.jti)) {
    throw new AuthenticationError('single-use bootstrap token has no usable "jti" claim');
  }
  if (!store) {
    throw new CaUnavailableError(
      'single-use bootstrap tokens are not accepted by this server (no cluster store to record their use)',
    );
  }
  const now = (opts.now ?? (() => new Date()))().getTime();
  const left = Math.ceil((token.expiresAt.getTime() - now) / 1000);
  const ttl = Math.max(left, 0) + (opts.clockSkewSeconds ?? 5);
  const record = JSON.stringify({ sub: spiffeId(token.identity), usedAt: new Date(now).toISOString() });
  let created: boolean;
  try {
    created = await store.createIfAbsent(usedTokenKey(token.jti), record, Math.max(ttl, 1));
  } catch (err) {
    throw new CaUnavailableError(
      'single-use bootstrap token refused: its use cannot be recorded because the cluster store is unavailable (retry later)',
      { cause: err },
    );
  }
  if (!created) throw new TokenReplayError(token.identity);
}

/**
 * Everything a service that accepts bootstrap tokens must do: verify the token, then spend it if it
 * is single-use. Returns what the token proves; throws a CaError (see `consumeSingleUse`) otherwise.
 */
export async function authenticateBootstrapToken(
  token: string,
  verifier: TokenVerifier,
  store: CaStore | undefined,
  opts?: ConsumeTokenOptions,
): Promise<VerifiedBootstrapToken> {
  const verified = await verifier.verifyToken(token);
  await consumeSingleUse(store, verified, opts);
  return verified;
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
