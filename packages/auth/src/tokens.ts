// Admin tokens: ES256 JWTs (issuer `meridian`, audience `meridian-admin`) naming an operator
// identity in `sub`. They carry no role: what a subject may do comes from the role bindings in etcd,
// so removing a binding takes effect at once on every replica. Pure (no I/O).
import { randomUUID } from 'node:crypto';
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  decodeProtectedHeader,
  exportJWK,
  exportPKCS8,
  generateKeyPair,
  importPKCS8,
  type JWK,
  jwtVerify,
  SignJWT,
} from 'jose';
import { InvalidAuthInputError, UnauthenticatedError } from './errors.js';

export const ADMIN_TOKEN_ISSUER = 'meridian';
export const ADMIN_TOKEN_AUDIENCE = 'meridian-admin';
const ALG = 'ES256';
/** Longest admin token lifetime: one year. */
export const MAX_ADMIN_TOKEN_TTL_S = 366 * 24 * 3600;
/** The namespace of operator identities: `spiffe://<td>/ns/meridian-system/sa/<user>`. */
export const OPERATOR_NAMESPACE = 'meridian-system';

/** A signing key as stored in etcd: its key id and PKCS#8 private key. */
export interface AdminSigningKey {
  readonly kid: string;
  readonly privateKeyPem: string;
  readonly createdAt: string;
}

/** A verified admin token. */
export interface AdminTokenClaims {
  readonly subject: string;
  readonly tokenId: string;
  readonly expiresAt: Date;
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const SPIFFE =
  /^spiffe:\/\/[a-z0-9]([-a-z0-9._]*[a-z0-9])?\/ns\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/sa\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Checks that `subject` is a SPIFFE workload/operator id; returns it. */
export function validateSubject(subject: unknown, field = 'subject'): string {
  if (typeof subject !== 'string' || !SPIFFE.test(subject) || subject.length > 512)
    throw new InvalidAuthInputError(
      field,
      `expected a SPIFFE id spiffe://<trust-domain>/ns/<namespace>/sa/<name>, got ${JSON.stringify(subject)}`,
    );
  return subject;
}

/** The identity of operator `user` in `trustDomain`. */
export function operatorSubject(trustDomain: string, user: string): string {
  if (!NAME.test(user) || user.length > 253)
    throw new InvalidAuthInputError('user', `invalid user name "${user}" (lower-case DNS label expected)`);
  return validateSubject(`spiffe://${trustDomain}/ns/${OPERATOR_NAMESPACE}/sa/${user}`, 'trustDomain');
}

/** Generates a signing key; its id is the public key's JWK thumbprint (RFC 7638). */
export async function generateAdminSigningKey(now = new Date()): Promise<AdminSigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true });
  const kid = await calculateJwkThumbprint(await exportJWK(publicKey));
  return { kid, privateKeyPem: await exportPKCS8(privateKey), createdAt: now.toISOString() };
}

/** Signs an admin token for `subject`, valid `ttlSeconds`. */
export async function mintAdminToken(
  key: AdminSigningKey,
  subject: string,
  ttlSeconds: number,
  now = new Date(),
): Promise<{ token: string; claims: AdminTokenClaims }> {
  validateSubject(subject);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_ADMIN_TOKEN_TTL_S)
    throw new InvalidAuthInputError(
      'ttlSeconds',
      `must be a whole number of seconds between 1 and ${MAX_ADMIN_TOKEN_TTL_S} (got ${String(ttlSeconds)})`,
    );
  const iat = Math.floor(now.getTime() / 1000);
  const jti = randomUUID();
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: ALG, kid: key.kid, typ: 'JWT' })
    .setIssuer(ADMIN_TOKEN_ISSUER)
    .setAudience(ADMIN_TOKEN_AUDIENCE)
    .setSubject(subject)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttlSeconds)
    .setJti(jti)
    .sign(await importPKCS8(key.privateKeyPem, ALG));
  return { token, claims: { subject, tokenId: jti, expiresAt: new Date((iat + ttlSeconds) * 1000) } };
}

/** The public JWK of a stored signing key. */
export async function publicJwk(key: AdminSigningKey): Promise<JWK> {
  const { createPublicKey } = await import('node:crypto');
  const jwk = createPublicKey(key.privateKeyPem).export({ format: 'jwk' }) as JWK;
  return { ...jwk, kid: key.kid, alg: ALG, use: 'sig' };
}

/**
 * Whether `token` is meant for the admin API (audience `meridian-admin`), judged from its payload
 * without verifying it: lets one `authorization` header carry either an admin token or a workload
 * bootstrap token and be routed to the right verifier.
 */
export function isAdminToken(token: string): boolean {
  try {
    decodeProtectedHeader(token);
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      aud?: unknown;
    };
    const aud = payload.aud;
    return aud === ADMIN_TOKEN_AUDIENCE || (Array.isArray(aud) && aud.includes(ADMIN_TOKEN_AUDIENCE));
  } catch {
    return false;
  }
}

/** Verifies admin tokens against a set of public keys. */
export class AdminTokenVerifier {
  readonly #keys: ReturnType<typeof createLocalJWKSet>;

  constructor(
    keys: readonly JWK[],
    private readonly now: () => Date = () => new Date(),
  ) {
    this.#keys = createLocalJWKSet({ keys: [...keys] });
  }

  /** The claims of a valid token; `UnauthenticatedError` with a one-line reason otherwise. */
  async verify(token: string): Promise<AdminTokenClaims> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.#keys, {
        algorithms: [ALG],
        issuer: ADMIN_TOKEN_ISSUER,
        audience: ADMIN_TOKEN_AUDIENCE,
        requiredClaims: ['exp', 'sub', 'jti'],
        currentDate: this.now(),
      }));
    } catch (err) {
      const code = (err as { code?: string }).code;
      const reason =
        code === 'ERR_JWT_EXPIRED'
          ? 'token expired'
          : code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' || code === 'ERR_JWKS_NO_MATCHING_KEY'
            ? "token signature does not verify with this cluster's keys"
            : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED'
              ? `token rejected: ${(err as Error).message}`
              : 'token is malformed';
      throw new UnauthenticatedError(reason, { cause: err });
    }
    const subject = validateSubject(payload.sub, 'token sub');
    return {
      subject,
      tokenId: String(payload.jti),
      expiresAt: new Date(Number(payload.exp) * 1000),
    };
  }
}
