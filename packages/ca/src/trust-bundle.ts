// Trust bundles: the set of mesh roots a workload accepts. Several roots are held at once during a
// root rotation (add new root, re-issue intermediates, roll workloads, remove old root).
import { X509Certificate } from 'node:crypto';
import { pemBlocks, toPem } from './der.js';
import { CaConfigError } from './errors.js';

/** One root of a bundle. */
export interface BundleRoot {
  readonly x509: X509Certificate;
  readonly pem: string;
}

/** An immutable, ordered, duplicate-free set of root certificates. */
export class TrustBundle {
  private constructor(readonly roots: readonly BundleRoot[]) {}

  /** Parses one or more PEM certificates; each must be a self-signed CA. Duplicates are dropped. */
  static fromPem(pem: string): TrustBundle {
    const roots: BundleRoot[] = [];
    for (const der of pemBlocks(pem, ['CERTIFICATE'])) {
      let x509: X509Certificate;
      try {
        x509 = new X509Certificate(der);
      } catch (err) {
        throw new CaConfigError(
          `root-cert.pem: unreadable certificate: ${(err as Error).message}`,
          'root-cert.pem',
          {
            cause: err,
          },
        );
      }
      if (!x509.ca || !x509.checkIssued(x509) || !x509.verify(x509.publicKey)) {
        throw new CaConfigError(
          `root-cert.pem: ${x509.subject.replace(/\n/g, ', ')} is not a self-signed CA certificate`,
          'root-cert.pem',
        );
      }
      if (!roots.some((r) => r.x509.fingerprint256 === x509.fingerprint256)) {
        roots.push({ x509, pem: toPem(der, 'CERTIFICATE') });
      }
    }
    if (roots.length === 0) throw new CaConfigError('root-cert.pem: no certificate found', 'root-cert.pem');
    return new TrustBundle(roots);
  }

  /** The bundle as concatenated PEM (what root-cert.pem and the ROOTCA secret hold). */
  get pem(): string {
    return this.roots.map((r) => r.pem).join('');
  }

  /** SHA-256 fingerprints of the roots, in order. */
  get fingerprints(): string[] {
    return this.roots.map((r) => r.x509.fingerprint256);
  }

  contains(cert: X509Certificate): boolean {
    return this.roots.some((r) => r.x509.fingerprint256 === cert.fingerprint256);
  }

  /** A bundle with the roots of `pem` added at the end (already present ones are kept once). */
  withRoots(pem: string): TrustBundle {
    return TrustBundle.fromPem(this.pem + pem);
  }

  /** A bundle without the roots of `pem`; refuses to remove the last root. */
  withoutRoots(pem: string): TrustBundle {
    const drop = new Set(TrustBundle.fromPem(pem).fingerprints);
    const kept = this.roots.filter((r) => !drop.has(r.x509.fingerprint256));
    if (kept.length === 0)
      throw new CaConfigError('refusing to remove every root from the trust bundle', 'root-cert.pem');
    return new TrustBundle(kept);
  }
}
