// The workload's certificate, as istio-agent keeps it: the key is made here and
// never leaves the host; the certificate comes from a replica's CreateCertificate
// (istio.v1.auth.IstioCertificateService) over TLS, first authenticated by a bootstrap token, then
// renewed with the current certificate over mTLS (no token). Rotation at half the lifetime with jitter;
// a failed renewal is retried with backoff while the current certificate keeps being served until it
// expires. Served to Envoy as SDS Secrets (`default`, `ROOTCA`), to gRPC as files for `file_watcher`,
// and to the agent's own upstream connections as grpc-js credentials.
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  createCertificate,
  createCertificateServiceClient,
  createCsr,
  generatePrivateKey,
  type KeyType,
  MemoryCertificateProvider,
  parseSpiffeId,
  SDS_DEFAULT_SECRET,
  SDS_ROOT_SECRET,
  spiffeId,
  type Timers,
  tlsCertificateSecretJson,
  validationContextSecretJson,
  type WorkloadIdentity,
} from '@meridian/ca';
import type { EnvoyJson } from '@meridian/envoy';
import { type Logger, pino } from 'pino';
import { CERTIFICATE_FILES } from './bootstrap.js';

/** The workload's current key and certificate. */
export interface CertificateMaterial {
  /** Leaf and intermediate(s), PEM, leaf first (the chain to present; the root is in `rootCertPem`). */
  readonly certChainPem: string;
  /** PKCS#8 PEM private key (ECDSA P-256 by default), made by this agent. */
  readonly keyPem: string;
  /** The trusted roots (the bundle this agent was given), PEM. */
  readonly rootCertPem: string;
  readonly expiresAt: Date;
  readonly notBefore: Date;
  /** Hex serial of the leaf. */
  readonly serial: string;
  /** The leaf's SPIFFE id (`spiffe://<td>/ns/<ns>/sa/<sa>`). */
  readonly spiffeId: string;
}

/** Why a certificate was (re)issued. */
export type RotationReason = 'initial' | 'rotation';

/** How a request authenticated: a bootstrap token, or the current certificate over mTLS. */
export type CertificateAuth = 'token' | 'mtls';

/**
 * A certificate could not be obtained or used. `field` names what was wrong: an option
 * (`caAddress`, `token`, `rootCertPem`, ...), the CA's answer (`cert_chain[i]`), the request
 * (`csr`), or `certificate` (the current certificate was refused for renewal). `code` is the gRPC
 * status name when the CA answered with one; `transient` errors are retried.
 */
export class CertificateError extends Error {
  override readonly name = 'CertificateError';
  constructor(
    readonly field: string,
    message: string,
    readonly details: {
      readonly code?: string;
      readonly transient?: boolean;
      readonly via?: CertificateAuth;
      readonly cause?: unknown;
    } = {},
  ) {
    super(`${field}: ${message}`, details.cause === undefined ? undefined : { cause: details.cause });
  }

  /** True when retrying may help (the CA was unreachable or busy). */
  get transient(): boolean {
    return this.details.transient === true;
  }
}

/** Options of {@link WorkloadCertificates}. */
export interface WorkloadCertificatesOptions {
  /** The identity to ask for; the CA issues only the identity the token or certificate proves. */
  readonly identity: WorkloadIdentity;
  /** A replica's CA address (`--ca-address`), or a function giving the current one (the relay's replica). */
  readonly caAddress: string | (() => string);
  /** The trusted roots (PEM): they verify the CA's serving certificate and the issued chain. */
  readonly rootCertPem: string;
  /**
   * The bootstrap token of the first request (a function may mint or read a fresh one). Renewals use
   * the current certificate and never send it; it is used again only once the certificate expired.
   */
  readonly token?: string | (() => string | Promise<string>);
  /** The name the CA's serving certificate must carry (default: the host of the CA address). */
  readonly serverName?: string;
  /** Requested lifetime (default 0: the CA's default, 24 h). */
  readonly ttlSeconds?: number;
  /** Workload key type (default `ecdsa-p256`). */
  readonly keyType?: KeyType;
  /** Fraction of the lifetime added or removed at random around the half-life (default 0.1). */
  readonly jitter?: number;
  /** Retry backoff after a failed request: first delay and cap (default 1 s and 60 s), ±20 % jitter. */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Deadline of one CreateCertificate call (default 10 s). */
  readonly requestTimeoutMs?: number;
  readonly channelOptions?: grpc.ChannelOptions;
  /** Clock in ms since the epoch (default Date.now); it decides when to rotate and what has expired. */
  readonly now?: () => number;
  readonly timers?: Timers;
  readonly random?: () => number;
  readonly logger?: Logger;
}

const TRANSIENT = new Set<number>([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.CANCELLED,
]);

const defaultTimers: Timers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

function pemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * The workload certificate beside a workload: `start()` makes the key and CSR and requests the first
 * certificate with the bootstrap token; later renewals (at half the lifetime, ±jitter) authenticate with
 * the current certificate over mTLS. A failed renewal is logged and retried with backoff; the current
 * certificate keeps being served until it expires (after that, the token is tried again if there is one).
 */
export class WorkloadCertificates {
  readonly #o: WorkloadCertificatesOptions;
  readonly #timers: Timers;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #spiffeId: string;
  readonly #roots: X509Certificate[];
  readonly #provider = new MemoryCertificateProvider();
  readonly #listeners = new Set<(m: CertificateMaterial, reason: RotationReason) => void>();
  #credentials: grpc.ChannelCredentials | undefined;
  #material: CertificateMaterial | undefined;
  #starting: Promise<CertificateMaterial> | undefined;
  #renewing: Promise<CertificateMaterial> | undefined;
  #timer: unknown;
  #wake: (() => void) | undefined;
  #nextAt: number | undefined;
  #failures = 0;
  #lastError: CertificateError | undefined;
  #closed = false;

  constructor(options: WorkloadCertificatesOptions) {
    this.#o = options;
    this.#timers = options.timers ?? defaultTimers;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#log = options.logger ?? pino({ name: 'meridian-agent' });
    const id = options.identity;
    this.#spiffeId = spiffeId(id);
    const parsed = parseSpiffeId(this.#spiffeId);
    if (!parsed || parsed.namespace !== id.namespace || parsed.serviceAccount !== id.serviceAccount)
      throw new CertificateError('identity', `"${this.#spiffeId}" is not an Istio SPIFFE workload identity`);
    for (const [field, value] of [
      ['identity.trustDomain', id.trustDomain],
      ['identity.namespace', id.namespace],
      ['identity.serviceAccount', id.serviceAccount],
    ] as const) {
      if (!value || /[\s/]/.test(value)) throw new CertificateError(field, `"${value}" is not a valid name`);
    }
    if (typeof options.caAddress === 'string' && !/:\d+$/.test(options.caAddress))
      throw new CertificateError('caAddress', `"${options.caAddress}" is not host:port`);
    const blocks = pemCertificates(options.rootCertPem ?? '');
    if (blocks.length === 0) throw new CertificateError('rootCertPem', 'holds no PEM certificate');
    this.#roots = blocks.map((pem, i) => {
      try {
        return new X509Certificate(pem);
      } catch (cause) {
        throw new CertificateError(`rootCertPem[${i}]`, 'is not a readable certificate', { cause });
      }
    });
    const ttl = options.ttlSeconds ?? 0;
    if (!Number.isInteger(ttl) || ttl < 0)
      throw new CertificateError('ttlSeconds', `must be a whole number of seconds >= 0, got ${ttl}`);
    const jitter = options.jitter ?? 0.1;
    if (!(jitter >= 0 && jitter < 0.5))
      throw new CertificateError('jitter', `must be in [0, 0.5), got ${jitter}`);
    this.#provider.setTrustBundle(options.rootCertPem);
  }

  /** The SPIFFE id this agent asks for. */
  get spiffeId(): string {
    return this.#spiffeId;
  }

  /**
   * Makes the key and CSR and requests the first certificate with the bootstrap token. Transient
   * failures (CA unreachable) are retried with backoff until it succeeds or `close()` is called;
   * a refusal (bad token, wrong identity) rejects with a {@link CertificateError}.
   */
  start(): Promise<CertificateMaterial> {
    if (this.#material) return Promise.resolve(this.#material);
    this.#starting ??= this.#firstIssue();
    return this.#starting;
  }

  /** The current key and certificate (undefined before the first issuance). */
  current(): CertificateMaterial | undefined {
    return this.#material;
  }

  /** When the next renewal (or retry) is due, ms since the epoch (undefined when none is scheduled). */
  get nextRenewalAt(): number | undefined {
    return this.#nextAt;
  }

  /** The last failed request since the last success (undefined when the last request succeeded). */
  get lastError(): CertificateError | undefined {
    return this.#lastError;
  }

  /**
   * Calls `listener` after every new certificate (the first one included) with the material and the
   * reason; returns an unsubscribe function (safe to call twice). Listener errors are logged.
   */
  onRotate(listener: (material: CertificateMaterial, reason: RotationReason) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Renews now over mTLS (without waiting for the half-life); resolves with the new material. On
   * failure it rejects, and the regular retry schedule continues.
   */
  renewNow(): Promise<CertificateMaterial> {
    if (!this.#material) return Promise.reject(new CertificateError('certificate', 'none issued yet'));
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    return this.#renew();
  }

  /**
   * Writes `cert-chain.pem` (leaf and intermediates, 0644), `key.pem` (0600) and `root-cert.pem`
   * (0644) into `dir` (created if missing), each atomically (a temporary file in `dir`, then a
   * rename), for gRPC's `file_watcher` provider. Call it again from `onRotate` to follow rotations.
   */
  async writeFiles(dir: string): Promise<void> {
    const m = this.#material;
    if (!m) throw new CertificateError('certificate', 'none issued yet: call start() first');
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const files: Array<[string, string, number]> = [
      [CERTIFICATE_FILES.privateKey, m.keyPem, 0o600],
      [CERTIFICATE_FILES.certificateChain, m.certChainPem, 0o644],
      [CERTIFICATE_FILES.rootCertificate, m.rootCertPem, 0o644],
    ];
    const suffix = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const temps: string[] = [];
    try {
      for (const [name, text, mode] of files) {
        const temp = join(dir, `.${name}${suffix}`);
        temps.push(temp);
        await writeFile(temp, text, { mode, flag: 'wx' });
        await chmod(temp, mode); // the umask may have narrowed it
      }
      // Renamed back to back, so a reader sees a matching key and chain but for a moment.
      for (const [i, [name]] of files.entries()) await rename(temps[i]!, join(dir, name));
    } catch (cause) {
      await Promise.all(temps.map((t) => rm(t, { force: true })));
      throw new CertificateError('dir', `could not write the certificate files to ${dir}`, { cause });
    }
  }

  /**
   * The SDS Secrets an Envoy beside this agent is served, as Envoy JSON in the shape the replica's own
   * SDS uses: `default` (tls_certificate with certificate_chain and private_key inline) and `ROOTCA`
   * (validation_context with trusted_ca). Empty before the first issuance.
   */
  secrets(): EnvoyJson[] {
    const m = this.#material;
    if (!m) return [];
    return [
      tlsCertificateSecretJson(m, SDS_DEFAULT_SECRET) as unknown as EnvoyJson,
      validationContextSecretJson(m.rootCertPem, SDS_ROOT_SECRET) as unknown as EnvoyJson,
    ];
  }

  /**
   * grpc-js mTLS channel credentials presenting the current certificate and trusting the roots (for
   * the relay's upstream and for registration). One object that follows rotations: every new
   * connection uses the certificate current at that time. Connections fail before the first issuance.
   * The server's name is checked as usual (set `grpc.ssl_target_name_override` when it differs).
   */
  channelCredentials(): grpc.ChannelCredentials {
    this.#credentials ??= grpc.experimental.createCertificateProviderChannelCredentials(
      this.#provider,
      this.#provider,
    );
    return this.#credentials;
  }

  /** Stops renewing (pending retries and timers); the current material stays readable. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#nextAt = undefined;
    this.#wake?.();
  }

  async #firstIssue(): Promise<CertificateMaterial> {
    for (;;) {
      if (this.#closed) throw new CertificateError('certificate', 'closed before the first issuance');
      try {
        const m = await this.#request('token');
        this.#install(m, 'initial');
        return m;
      } catch (error) {
        const e = this.#asError(error, 'token');
        this.#lastError = e;
        if (!e.transient) {
          this.#starting = undefined;
          throw e;
        }
        const delay = this.#backoff();
        this.#log.warn(
          { err: e.message, retryInMs: delay, caAddress: this.#address() },
          'first certificate request failed; retrying',
        );
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          this.#nextAt = this.#now() + delay;
          this.#timer = this.#timers.setTimeout(resolve, delay);
        });
        this.#wake = undefined;
      }
    }
  }

  #renew(): Promise<CertificateMaterial> {
    this.#renewing ??= (async () => {
      const current = this.#material!;
      const expired = this.#now() >= current.expiresAt.getTime();
      // Renewals authenticate with the current certificate; once it expired the CA refuses it, and
      // only a (fresh) bootstrap token can get a new one.
      const via: CertificateAuth = expired && this.#o.token !== undefined ? 'token' : 'mtls';
      try {
        const m = await this.#request(via);
        this.#install(m, 'rotation');
        return m;
      } catch (error) {
        const e = this.#asError(error, via);
        this.#lastError = e;
        if (this.#closed) throw e;
        const delay = this.#backoff();
        const expiresAt = current.expiresAt.toISOString();
        const fields = { err: e.message, code: e.details.code, via, retryInMs: delay, expiresAt };
        if (this.#now() >= current.expiresAt.getTime())
          this.#log.error(fields, 'certificate renewal failed and the certificate has expired; retrying');
        else
          this.#log.warn(
            fields,
            'certificate renewal failed; retrying, and serving the current certificate until it expires',
          );
        this.#schedule(delay);
        throw e;
      } finally {
        this.#renewing = undefined;
      }
    })();
    return this.#renewing;
  }

  #address(): string {
    const a = this.#o.caAddress;
    return typeof a === 'function' ? a() : a;
  }

  async #request(via: CertificateAuth): Promise<CertificateMaterial> {
    const address = this.#address();
    const key = generatePrivateKey(this.#o.keyType ?? 'ecdsa-p256');
    const keyPem = key.export({ format: 'pem', type: 'pkcs8' }).toString();
    const csr = createCsr({ key, uris: [this.#spiffeId] });
    let token: string | undefined;
    let credentials: grpc.ChannelCredentials;
    if (via === 'token') {
      const t = this.#o.token;
      if (t === undefined)
        throw new CertificateError('token', 'no bootstrap token: the first certificate needs one');
      try {
        token = typeof t === 'function' ? await t() : t;
      } catch (cause) {
        throw new CertificateError('token', 'could not be read', { transient: true, via, cause });
      }
      if (!token) throw new CertificateError('token', 'is empty');
      credentials = grpc.credentials.createSsl(Buffer.from(this.#o.rootCertPem));
    } else {
      const m = this.#material!;
      credentials = grpc.credentials.createSsl(
        Buffer.from(this.#o.rootCertPem),
        Buffer.from(m.keyPem),
        Buffer.from(m.certChainPem),
      );
    }
    const serverName = this.#o.serverName;
    const client = createCertificateServiceClient(address, credentials, {
      ...(serverName
        ? { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName }
        : {}),
      'grpc.use_local_subchannel_pool': 1,
      ...(this.#o.channelOptions ?? {}),
    });
    let chain: string[];
    try {
      chain = await createCertificate(
        client,
        { csr, validityDuration: this.#o.ttlSeconds ?? 0 },
        { ...(token === undefined ? {} : { token }), deadlineMs: this.#o.requestTimeoutMs ?? 10_000 },
      );
    } catch (error) {
      throw this.#asError(error, via, address);
    } finally {
      client.close();
    }
    return this.#verify(chain, keyPem, key);
  }

  /** Checks the CA's answer: our key, our SPIFFE id only, valid now, and a chain to a trusted root. */
  #verify(
    response: readonly string[],
    keyPem: string,
    key: ReturnType<typeof generatePrivateKey>,
  ): CertificateMaterial {
    const blocks = response.flatMap((pem) => pemCertificates(pem));
    if (blocks.length === 0) throw new CertificateError('cert_chain', 'the CA returned no certificate');
    const certs = blocks.map((pem, i) => {
      try {
        return new X509Certificate(pem);
      } catch (cause) {
        throw new CertificateError(`cert_chain[${i}]`, 'is not a readable certificate', { cause });
      }
    });
    const leaf = certs[0]!;
    if (!leaf.checkPrivateKey(key))
      throw new CertificateError('cert_chain[0]', 'does not certify the key of our request');
    if (leaf.ca)
      throw new CertificateError('cert_chain[0]', 'is a CA certificate, not a workload certificate');
    const sans = (leaf.subjectAltName ?? '').split(', ').filter((s) => s !== '');
    if (sans.length !== 1 || sans[0] !== `URI:${this.#spiffeId}`)
      throw new CertificateError(
        'cert_chain[0]',
        `names ${sans.join(', ') || 'nothing'}, expected exactly URI:${this.#spiffeId}`,
      );
    const now = this.#now();
    const notBefore = new Date(leaf.validFrom);
    const expiresAt = new Date(leaf.validTo);
    if (now >= expiresAt.getTime())
      throw new CertificateError('cert_chain[0]', `expired at ${expiresAt.toISOString()}`);
    for (let i = 0; i + 1 < certs.length; i++) {
      const child = certs[i]!;
      const parent = certs[i + 1]!;
      if (!child.checkIssued(parent) || !child.verify(parent.publicKey))
        throw new CertificateError(`cert_chain[${i}]`, `is not signed by cert_chain[${i + 1}]`);
    }
    // The chain ends in a trusted root, or in a certificate a trusted root signed.
    const trusted = (c: X509Certificate) => this.#roots.some((r) => r.fingerprint256 === c.fingerprint256);
    let end = certs.length;
    while (end > 1 && trusted(certs[end - 1]!)) end--;
    const top = certs[end - 1]!;
    const anchored =
      end < certs.length ||
      trusted(top) ||
      this.#roots.some((r) => top.checkIssued(r) && top.verify(r.publicKey));
    if (!anchored)
      throw new CertificateError(`cert_chain[${certs.length - 1}]`, 'does not chain to a trusted root');
    return {
      certChainPem: certs
        .slice(0, end)
        .map((c) => c.toString())
        .join(''),
      keyPem,
      rootCertPem: this.#o.rootCertPem,
      expiresAt,
      notBefore,
      serial: leaf.serialNumber.toLowerCase(),
      spiffeId: this.#spiffeId,
    };
  }

  #install(m: CertificateMaterial, reason: RotationReason): void {
    this.#material = m;
    this.#failures = 0;
    this.#lastError = undefined;
    this.#provider.setIdentity(m.certChainPem, m.keyPem);
    const now = this.#now();
    const lifetime = m.expiresAt.getTime() - now;
    const jitter = (this.#o.jitter ?? 0.1) * lifetime * (this.#random() * 2 - 1);
    const delay = Math.max(1000, Math.round(lifetime / 2 + jitter));
    this.#log.info(
      {
        spiffeId: m.spiffeId,
        serial: m.serial,
        expiresAt: m.expiresAt.toISOString(),
        renewAt: new Date(now + delay).toISOString(),
        reason,
      },
      'workload certificate issued',
    );
    if (!this.#closed) this.#schedule(delay);
    for (const l of [...this.#listeners]) {
      try {
        l(m, reason);
      } catch (err) {
        this.#log.error({ err }, 'certificate rotation listener failed');
      }
    }
  }

  #schedule(delay: number): void {
    if (this.#closed) return;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#nextAt = this.#now() + delay;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      this.#renew().catch(() => undefined);
    }, delay);
  }

  #backoff(): number {
    const initial = this.#o.retry?.initialMs ?? 1000;
    const max = this.#o.retry?.maxMs ?? 60_000;
    const base = Math.min(max, initial * 2 ** Math.min(this.#failures, 30));
    this.#failures++;
    return Math.max(1, Math.round(base * (0.8 + 0.4 * this.#random())));
  }

  #asError(error: unknown, via: CertificateAuth, address?: string): CertificateError {
    if (error instanceof CertificateError) return error;
    const e = error as Partial<grpc.ServiceError>;
    if (typeof e.code === 'number') {
      const code = grpc.status[e.code] ?? String(e.code);
      const field =
        e.code === grpc.status.UNAUTHENTICATED || e.code === grpc.status.PERMISSION_DENIED
          ? via === 'token'
            ? 'token'
            : 'certificate'
          : e.code === grpc.status.INVALID_ARGUMENT
            ? 'csr'
            : 'caAddress';
      return new CertificateError(
        field,
        `CreateCertificate at ${address ?? this.#address()}: ${e.details ?? e.message}`,
        {
          code,
          transient: TRANSIENT.has(e.code),
          via,
          cause: error,
        },
      );
    }
    return new CertificateError(
      'caAddress',
      `CreateCertificate failed: ${(error as Error)?.message ?? String(error)}`,
      {
        transient: true,
        via,
        cause: error,
      },
    );
  }
}
