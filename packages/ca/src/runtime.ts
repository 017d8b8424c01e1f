// Everything a replica runs for its cluster's CA, wired once: the intermediate loaded from the store
// (and reloaded when a rotation step or re-install changes it), the issuer, bootstrap-token
// verification keys (reloaded when published) and the spent single-use tokens (recorded in the same
// store), the CA endpoint's own serving certificate (renewed at half its lifetime) and trust bundle,
// and the workload secrets (issued and rotated per identity) with a notice when the signing CA changes.
// The server package mounts it and serves the secrets over SDS; this package knows nothing of xDS.
import { performance } from 'node:perf_hooks';
import type * as grpc from '@grpc/grpc-js';
import type { Store, Watch } from '@meridian/store';
import type { JWK } from 'jose';
import type { Logger } from 'pino';
import { CaAudit, istioCaMetrics } from './audit.js';
import { SigningCa } from './authority.js';
import { AuthenticationError } from './errors.js';
import { addCertificateService, MemoryCertificateProvider } from './grpc.js';
import { WorkloadCertificateIssuer } from './issuer.js';
import {
  SDS_DEFAULT_SECRET,
  SDS_ROOT_SECRET,
  WorkloadSecrets,
  type WorkloadSecretsOptions,
} from './secrets.js';
import { CA_KEYS, type CaStore, caStoreFrom, loadClusterCa, parseStoredClusterCa } from './storage.js';
import {
  authenticateBootstrapToken,
  type ConsumeTokenOptions,
  readTokenKeys,
  TokenVerifier,
  type VerifiedBootstrapToken,
} from './token.js';

export interface ClusterCaRuntimeOptions {
  /** The cluster's store (keyspace of this cluster). */
  readonly store: Store;
  readonly clusterId: string;
  /** Key-encryption key of the cluster CA (loadKek). */
  readonly kek: Buffer;
  /** DNS names of the CA endpoint's serving certificate (default `localhost`). */
  readonly servingDnsNames?: readonly string[];
  readonly logger?: Logger;
  /** SDS rotation settings (lifetime, jitter, timers). */
  readonly secrets?: WorkloadSecretsOptions;
  /** Clock skew allowance of spent single-use token records (default 5 s past the token's expiry). */
  readonly tokenReplay?: ConsumeTokenOptions;
}

/**
 * The secrets that changed for every identity at once, in the CA's own terms: the signing CA (a new
 * intermediate or trust bundle) was switched and every watched identity of `secrets` was re-issued.
 * Rotations of one identity are told to its `WorkloadSecrets.watch` listener instead.
 */
export interface SecretChange {
  /** The SDS secret names whose content changed (`default`, `ROOTCA`). */
  readonly names: ReadonlySet<string>;
  readonly reason: 'ca-changed';
  /** `performance.now()` when it happened. */
  readonly at: number;
}

/** A replica's CA: start with `ClusterCaRuntime.start`, stop with `close`. */
export class ClusterCaRuntime {
  /** TLS identity and trust bundle of the CA endpoint: `createCaServerCredentials(runtime.serving)`. */
  readonly serving = new MemoryCertificateProvider();
  /** The cluster store seen by the CA; single-use tokens are recorded as spent here. */
  readonly caStore: CaStore;
  private tokens: TokenVerifier | undefined;
  private watch: Watch | undefined;
  private servingTimer: NodeJS.Timeout | undefined;
  private readonly secretListeners = new Set<(change: SecretChange) => void>();
  private closed = false;

  private constructor(
    private readonly opts: ClusterCaRuntimeOptions,
    readonly issuer: WorkloadCertificateIssuer,
    /** Keys and chains per watched identity, rotated at half the lifetime (serve them over SDS). */
    readonly secrets: WorkloadSecrets,
  ) {
    this.caStore = caStoreFrom(opts.store);
  }

  /** Loads the CA and token keys from the store, starts following changes, issues the serving cert. */
  static async start(opts: ClusterCaRuntimeOptions): Promise<ClusterCaRuntime> {
    const ca = await loadClusterCa(caStoreFrom(opts.store), { clusterId: opts.clusterId, kek: opts.kek });
    const issuer = new WorkloadCertificateIssuer(ca, { audit: new CaAudit(opts.logger) });
    const secrets = new WorkloadSecrets(issuer, opts.secrets);
    const runtime = new ClusterCaRuntime(opts, issuer, secrets);
    await runtime.loadTokens();
    runtime.renewServing();
    runtime.watch = opts.store.watchPrefix('ca/', (batch) => runtime.onBatch(batch), {
      onError: (err) => issuer.audit.logger.error({ err }, 'CA watch error'),
    });
    await runtime.watch.ready;
    return runtime;
  }

  /** The signing CA in use. */
  get ca(): SigningCa {
    return this.issuer.signingCa;
  }

  /** The current bootstrap-token verifier (undefined until a verification key is published). */
  get tokenVerifier(): TokenVerifier | undefined {
    return this.tokens;
  }

  /**
   * Authenticates a bootstrap token as CreateCertificate does: verifies it with the current keys and,
   * if it is single-use, spends it cluster-wide (`authenticateBootstrapToken`). For every other service
   * of the replica that accepts bootstrap tokens. Throws a CaError (UNAUTHENTICATED, UNAVAILABLE).
   */
  async authenticateToken(token: string): Promise<VerifiedBootstrapToken> {
    const verifier = this.tokens;
    if (!verifier) throw new AuthenticationError('bootstrap tokens are not accepted by this server');
    return authenticateBootstrapToken(token, verifier, this.caStore, this.opts.tokenReplay);
  }

  /** The CA counters and expiry gauges under istiod's metric names, for the replica's /metrics. */
  metrics(): Record<string, number> {
    const roots = this.ca.trustBundle.roots.map((r) => new Date(r.x509.validTo).getTime());
    return istioCaMetrics(this.issuer.audit, {
      rootNotAfter: new Date(Math.min(...roots)),
      chainNotAfter: this.ca.notAfter,
    });
  }

  /**
   * Tells `listener` when the signing CA is switched (reloaded from the store), after `secrets` has
   * re-issued every watched identity. Returns a function that stops telling it (safe to call twice).
   */
  onSecretChange(listener: (change: SecretChange) => void): () => void {
    this.secretListeners.add(listener);
    return () => {
      this.secretListeners.delete(listener);
    };
  }

  /** Adds IstioCertificateService to a grpc-js server (bind it with createCaServerCredentials(serving)). */
  mount(server: grpc.Server): void {
    addCertificateService(server, {
      issuer: this.issuer,
      tokens: () => this.tokens,
      tokenStore: this.caStore,
      ...(this.opts.tokenReplay ? { tokenReplay: this.opts.tokenReplay } : {}),
    });
  }

  /** Stops the watch, the serving-certificate renewal and every secret rotation timer. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.servingTimer) clearTimeout(this.servingTimer);
    this.secretListeners.clear();
    this.secrets.close();
    await this.watch?.close();
  }

  private async loadTokens(): Promise<void> {
    this.setTokenKeys(await readTokenKeys(this.caStore));
  }

  private setTokenKeys(keys: JWK[]): void {
    this.tokens = keys.length > 0 ? new TokenVerifier(this.ca.trustDomain, keys) : undefined;
  }

  private renewServing(): void {
    const ttl = 24 * 3600;
    const out = this.issuer.issueServingCertificate(this.opts.servingDnsNames ?? ['localhost'], ttl);
    this.serving.setIdentity(out.certChain.slice(0, -1).join(''), out.keyPem);
    this.serving.setTrustBundle(this.ca.trustBundle.pem);
    if (this.servingTimer) clearTimeout(this.servingTimer);
    this.servingTimer = setTimeout(() => this.renewServing(), (ttl * 1000) / 2);
    this.servingTimer.unref();
  }

  private onBatch(batch: Parameters<Parameters<Store['watchPrefix']>[1]>[0]): void {
    const latest = new Map<string, Uint8Array>();
    if (batch.kind === 'events') {
      for (const e of batch.events) if (e.type === 'put') latest.set(e.kv.key, e.kv.value);
    } else {
      for (const kv of batch.items) latest.set(kv.key, kv.value);
    }
    const log = this.issuer.audit.logger;
    const ca = latest.get(CA_KEYS.intermediate);
    if (ca) {
      try {
        const next = SigningCa.fromMaterial(
          parseStoredClusterCa(new TextDecoder().decode(ca), this.opts.kek, this.opts.clusterId),
        );
        this.secrets.setSigningCa(next);
        const change: SecretChange = {
          names: new Set([SDS_DEFAULT_SECRET, SDS_ROOT_SECRET]),
          reason: 'ca-changed',
          at: performance.now(),
        };
        for (const listener of [...this.secretListeners]) listener(change);
        this.renewServing();
        log.info(
          { cluster: this.opts.clusterId, roots: next.trustBundle.roots.length },
          'cluster CA reloaded from the store',
        );
      } catch (err) {
        log.error({ err }, 'cluster CA in the store is unusable; keeping the current one');
      }
    }
    const keys = latest.get(CA_KEYS.tokenKeys);
    if (keys) {
      try {
        const parsed = JSON.parse(new TextDecoder().decode(keys)) as { keys?: JWK[] };
        this.setTokenKeys(Array.isArray(parsed.keys) ? parsed.keys : []);
      } catch (err) {
        log.error({ err }, 'token verification keys in the store are unusable; keeping the current ones');
      }
    }
  }
}
