// Workload secrets for SDS: for an authenticated proxy identity, a key and certificate chain
// (Envoy secret `default`) and the trust bundle (`ROOTCA`), re-issued at half the lifetime with
// jitter, and re-sent when the cluster CA or trust bundle changes. The xDS server subscribes per
// identity; this module knows nothing about xDS.
import type { SigningCa } from './authority.js';
import type { WorkloadCertificateIssuer } from './issuer.js';
import { spiffeId, type WorkloadIdentity } from './spiffe.js';

/** Name of the secret holding the proxy's own key and chain (Istio/Envoy convention). */
export const SDS_DEFAULT_SECRET = 'default';
/** Name of the secret holding the trust bundle (Istio/Envoy convention). */
export const SDS_ROOT_SECRET = 'ROOTCA';

/** One delivery to a watcher. */
export interface WorkloadSecret {
  readonly identity: WorkloadIdentity;
  readonly spiffeId: string;
  /** PKCS#8 PEM private key. */
  readonly keyPem: string;
  /** Leaf, intermediate(s), root: concatenated PEM. */
  readonly certChainPem: string;
  /** Every trusted root, concatenated PEM. */
  readonly trustBundlePem: string;
  readonly serial: string;
  readonly notAfter: Date;
  /** When the next rotation is scheduled. */
  readonly refreshAt: Date;
  readonly reason: 'initial' | 'rotation' | 'ca-changed';
}

/** Timer functions, injectable for tests. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface WorkloadSecretsOptions {
  /** Lifetime of issued certificates (default: the issuer's default, 24 h). */
  readonly ttlSeconds?: number;
  /** Fraction of the lifetime added or removed at random around the half-life (default 0.1). */
  readonly jitter?: number;
  readonly timers?: Timers;
  readonly random?: () => number;
  readonly now?: () => Date;
}

interface Watch {
  readonly identity: WorkloadIdentity;
  readonly listener: (s: WorkloadSecret) => void;
  timer?: unknown;
  closed: boolean;
}

/**
 * Issues and rotates workload secrets. `watch(identity, listener)` delivers synchronously once, then
 * again before expiry; the returned cancel function is safe to call twice.
 */
export class WorkloadSecrets {
  private readonly watches = new Set<Watch>();
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly now: () => Date;

  constructor(
    private readonly issuer: WorkloadCertificateIssuer,
    private readonly opts: WorkloadSecretsOptions = {},
  ) {
    this.timers = opts.timers ?? {
      setTimeout: (fn, ms) => {
        const t = setTimeout(fn, ms);
        t.unref?.();
        return t;
      },
      clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
    };
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? (() => new Date());
  }

  /** The trust domain identities must belong to (the signing CA's). */
  get trustDomain(): string {
    return this.issuer.signingCa.trustDomain;
  }

  /** The current trust bundle PEM (the `ROOTCA` secret). */
  trustBundlePem(): string {
    return this.issuer.signingCa.trustBundle.pem;
  }

  /** Subscribes an authenticated identity; the caller must have verified who the proxy is. */
  watch(identity: WorkloadIdentity, listener: (s: WorkloadSecret) => void): () => void {
    const w: Watch = { identity, listener, closed: false };
    this.watches.add(w);
    try {
      this.deliver(w, 'initial');
    } catch (err) {
      this.watches.delete(w);
      w.closed = true;
      throw err;
    }
    return () => {
      if (w.closed) return;
      w.closed = true;
      if (w.timer !== undefined) this.timers.clearTimeout(w.timer);
      this.watches.delete(w);
    };
  }

  /** Switches the signing CA (rotation, reload) and re-issues for every watcher. */
  setSigningCa(ca: SigningCa): void {
    this.issuer.setSigningCa(ca);
    for (const w of [...this.watches]) this.deliver(w, 'ca-changed');
  }

  /** Cancels every watch. */
  close(): void {
    for (const w of [...this.watches]) {
      w.closed = true;
      if (w.timer !== undefined) this.timers.clearTimeout(w.timer);
    }
    this.watches.clear();
  }

  private deliver(w: Watch, reason: WorkloadSecret['reason']): void {
    if (w.closed) return;
    if (w.timer !== undefined) this.timers.clearTimeout(w.timer);
    const out = this.issuer.issueWithNewKey(w.identity, { ttlSeconds: this.opts.ttlSeconds });
    const now = this.now().getTime();
    const lifetime = out.notAfter.getTime() - now;
    const jitter = (this.opts.jitter ?? 0.1) * lifetime * (this.random() * 2 - 1);
    const delay = Math.max(1000, Math.round(lifetime / 2 + jitter));
    w.timer = this.timers.setTimeout(() => this.deliver(w, 'rotation'), delay);
    w.listener({
      identity: w.identity,
      spiffeId: spiffeId(w.identity),
      keyPem: out.keyPem,
      certChainPem: out.certChain.join(''),
      trustBundlePem: this.trustBundlePem(),
      serial: out.serial,
      notAfter: out.notAfter,
      refreshAt: new Date(now + delay),
      reason,
    });
  }
}
