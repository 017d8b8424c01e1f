// Workload certificate issuance: policy (who may get what) on top of x509.ts.
import { createPublicKey } from 'node:crypto';
import { type AuthMethod, CaAudit } from './audit.js';
import { generatePrivateKey, privateKeyPem, type SigningCa } from './authority.js';
import { toPem } from './der.js';
import { CaError, InvalidRequestError, PermissionDeniedError } from './errors.js';
import { spiffeId, type WorkloadIdentity } from './spiffe.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  encodeTbs,
  extKeyUsage,
  KU,
  keyUsage,
  newSerial,
  OID,
  type ParsedCsr,
  parseCsr,
  signTbs,
  subjectAltName,
} from './x509.js';

/** Default workload certificate lifetime: 24 h. */
export const DEFAULT_WORKLOAD_TTL_S = 24 * 3600;
/** Longest workload certificate lifetime: 90 days; longer requests are clamped to it. */
export const MAX_WORKLOAD_TTL_S = 90 * 24 * 3600;

/** A certificate request from an authenticated caller. */
export interface IssueRequest {
  /** Who the caller proved to be (token or mTLS). The certificate is for this identity only. */
  readonly identity: WorkloadIdentity;
  /** PEM PKCS#10 request. */
  readonly csrPem: string | Buffer;
  /** Requested lifetime in seconds; 0/undefined: the default; above the maximum: clamped. */
  readonly validitySeconds?: number | bigint;
  readonly via?: AuthMethod;
}

/** An issued certificate. */
export interface IssuedCertificate {
  /** PEM chain: leaf, intermediate, ..., root. */
  readonly certChain: readonly string[];
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spiffeId: string;
}

export interface IssuerOptions {
  readonly audit?: CaAudit;
  readonly now?: () => Date;
  readonly defaultTtlSeconds?: number;
  readonly maxTtlSeconds?: number;
}

const EMPTY_NAME = Buffer.from([0x30, 0x00]);
const CLIENT_SERVER_EKU = extKeyUsage([OID.serverAuth, OID.clientAuth]);
const LEAF_BC = basicConstraints(false);
const KU_RSA = keyUsage([KU.digitalSignature, KU.keyEncipherment]);
const KU_EC = keyUsage([KU.digitalSignature]);

/** Resolves the requested lifetime: INVALID_ARGUMENT when negative, default when 0, clamped at max. */
export function resolveTtlSeconds(
  requested: number | bigint | undefined,
  defaultTtl: number,
  maxTtl: number,
): number {
  const v = typeof requested === 'bigint' ? Number(requested) : (requested ?? 0);
  if (!Number.isFinite(v) || !Number.isInteger(v)) {
    throw new InvalidRequestError(
      'validity_duration',
      `must be a whole number of seconds (got ${String(requested)})`,
    );
  }
  if (v < 0) throw new InvalidRequestError('validity_duration', `must not be negative (got ${v})`);
  if (v === 0) return defaultTtl;
  return Math.min(v, maxTtl);
}

/**
 * Signs workload certificates with a cluster's intermediate. Issues only for the authenticated
 * identity: the CSR must carry exactly its SPIFFE URI SAN and nothing else. Every decision goes to
 * the audit (log + counters). `issue` is synchronous: its cost is one CSR signature check and one
 * signature with the CA key.
 */
export class WorkloadCertificateIssuer {
  readonly audit: CaAudit;
  private readonly now: () => Date;
  private readonly defaultTtl: number;
  private readonly maxTtl: number;
  private akid: Buffer;

  constructor(
    private ca: SigningCa,
    opts: IssuerOptions = {},
  ) {
    this.audit = opts.audit ?? new CaAudit();
    this.now = opts.now ?? (() => new Date());
    this.defaultTtl = opts.defaultTtlSeconds ?? DEFAULT_WORKLOAD_TTL_S;
    this.maxTtl = opts.maxTtlSeconds ?? MAX_WORKLOAD_TTL_S;
    this.akid = authorityKeyIdentifier(ca.cert.parts.keyId);
  }

  /** The CA currently signing. */
  get signingCa(): SigningCa {
    return this.ca;
  }

  /** Switches to another intermediate (re-issued or reloaded); later issuances use it. */
  setSigningCa(ca: SigningCa): void {
    this.ca = ca;
    this.akid = authorityKeyIdentifier(ca.cert.parts.keyId);
  }

  /** Issues a certificate, or throws a CaError (and records the refusal). */
  issue(req: IssueRequest): IssuedCertificate {
    const identity = spiffeId(req.identity);
    try {
      const ttl = resolveTtlSeconds(req.validitySeconds, this.defaultTtl, this.maxTtl);
      const csr = parseCsr(req.csrPem);
      this.checkNames(csr, req.identity, identity);
      const out = this.sign(csr, identity, ttl);
      this.audit.record({
        outcome: 'issued',
        identity,
        serial: out.serial,
        notAfter: out.notAfter,
        keyType: csr.keyType,
        via: req.via ?? 'internal',
      });
      return out;
    } catch (err) {
      if (err instanceof CaError) {
        this.audit.record({
          outcome: 'refused',
          identity,
          code: err.status,
          reason: err.message,
          via: req.via ?? 'internal',
        });
      }
      throw err;
    }
  }

  private checkNames(csr: ParsedCsr, id: WorkloadIdentity, expected: string): void {
    if (id.trustDomain !== this.ca.trustDomain) {
      throw new PermissionDeniedError(
        `identity ${expected} is not in this CA's trust domain "${this.ca.trustDomain}"`,
        expected,
      );
    }
    const extra: string[] = [
      ...csr.uris.filter((u) => u !== expected).map((u) => `URI:${u}`),
      ...csr.dnsNames.map((d) => `DNS:${d}`),
      ...csr.ipAddresses.map((ip) => `IP:${ip}`),
      ...csr.emails.map((e) => `email:${e}`),
      ...(csr.otherNames > 0 ? [`${csr.otherNames} other name(s)`] : []),
    ];
    if (extra.length > 0) {
      throw new PermissionDeniedError(
        `csr: caller ${expected} may not request ${extra.slice(0, 4).join(', ')}${extra.length > 4 ? ` and ${extra.length - 4} more` : ''}`,
        expected,
      );
    }
    if (csr.uris.length === 0) {
      throw new InvalidRequestError('csr', `no URI subjectAltName; expected ${expected}`);
    }
  }

  /**
   * Generates a key for an already authenticated identity and issues its certificate (for SDS, where
   * the control plane delivers key and chain to the proxy). Audited like `issue`.
   */
  issueWithNewKey(
    identity: WorkloadIdentity,
    opts: { ttlSeconds?: number; keyType?: 'ecdsa-p256' | 'rsa2048' } = {},
  ): IssuedCertificate & { readonly keyPem: string } {
    const uri = spiffeId(identity);
    if (identity.trustDomain !== this.ca.trustDomain) {
      const err = new PermissionDeniedError(
        `identity ${uri} is not in this CA's trust domain "${this.ca.trustDomain}"`,
        uri,
      );
      this.audit.record({
        outcome: 'refused',
        identity: uri,
        code: err.status,
        reason: err.message,
        via: 'internal',
      });
      throw err;
    }
    const ttl = resolveTtlSeconds(opts.ttlSeconds, this.defaultTtl, this.maxTtl);
    const key = generatePrivateKey(opts.keyType ?? 'ecdsa-p256');
    const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
    const out = this.signSpki(spki, key.asymmetricKeyType === 'rsa', [uri], [], ttl);
    this.audit.record({
      outcome: 'issued',
      identity: uri,
      serial: out.serial,
      notAfter: out.notAfter,
      keyType: opts.keyType ?? 'ecdsa-p256',
      via: 'internal',
    });
    return { ...out, spiffeId: uri, keyPem: privateKeyPem(key) };
  }

  /**
   * A serving certificate for the replica's own endpoints (such as the CA service itself): each name
   * becomes a DNS SAN, or an IP SAN when it is an IP address. Not reachable from CreateCertificate.
   */
  issueServingCertificate(
    dnsNames: readonly string[],
    ttlSeconds = DEFAULT_WORKLOAD_TTL_S,
  ): IssuedCertificate & { readonly keyPem: string } {
    const key = generatePrivateKey('ecdsa-p256');
    const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
    const out = this.signSpki(spki, false, [], dnsNames, ttlSeconds);
    this.audit.record({
      outcome: 'issued',
      identity: `dns:${dnsNames.join(',')}`,
      serial: out.serial,
      notAfter: out.notAfter,
      keyType: 'ecdsa-p256',
      via: 'internal',
    });
    return { ...out, keyPem: privateKeyPem(key) };
  }

  private sign(csr: ParsedCsr, uri: string, ttlSeconds: number): IssuedCertificate {
    return this.signSpki(csr.spki, csr.publicKey.asymmetricKeyType === 'rsa', [uri], [], ttlSeconds);
  }

  private signSpki(
    spki: Buffer,
    rsa: boolean,
    uris: readonly string[],
    dnsNames: readonly string[],
    ttlSeconds: number,
  ): IssuedCertificate {
    const now = this.now().getTime();
    const notBefore = new Date(now - 60_000);
    const notAfter = new Date(Math.min(now + ttlSeconds * 1000, this.ca.notAfter.getTime()));
    const serial = newSerial();
    const tbs = encodeTbs(
      {
        serial,
        issuer: this.ca.cert.parts.subject,
        subject: EMPTY_NAME,
        spki,
        notBefore,
        notAfter,
        extensions: [
          LEAF_BC,
          rsa ? KU_RSA : KU_EC,
          CLIENT_SERVER_EKU,
          this.akid,
          subjectAltName(uris, dnsNames, true),
        ],
      },
      this.ca.algorithm,
    );
    const der = signTbs(tbs, this.ca.algorithm, this.ca.key);
    return {
      certChain: [toPem(der, 'CERTIFICATE'), ...this.ca.chainPems],
      serial: serial.toString('hex'),
      notBefore,
      notAfter,
      spiffeId: uris[0] ?? '',
    };
  }
}
